package medline.local;

import com.carrotsearch.randomizedtesting.RandomizedRunner;
import com.carrotsearch.randomizedtesting.annotations.ThreadLeakScope;
import com.carrotsearch.randomizedtesting.annotations.Timeout;
import com.carrotsearch.randomizedtesting.annotations.TimeoutSuite;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.node.MockNode;
import org.elasticsearch.transport.netty4.Netty4Plugin;
import org.junit.Test;
import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.RunWith;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.concurrent.CountDownLatch;

/**
 * Runs one real Elasticsearch node (server jar + netty4 HTTP) for local development and CI.
 *
 * <p>The node is started through the test framework's {@link MockNode}, which loads plugins from
 * the classpath, so no distribution tarball is needed. MockNode's start-up goes through
 * ESTestCase and Randomness, which expect a randomized-testing context on every node thread;
 * running the node as the single test of a {@link RandomizedRunner} suite gives it that context
 * (threads inherit the suite's thread group). The node serves until the process gets SIGTERM,
 * when a shutdown hook closes it cleanly.
 *
 * <p>System properties: {@code medline.es.home} (required; data and logs go below it),
 * {@code medline.es.http_port} (default 9200), {@code medline.es.transport_port} (default 9300),
 * {@code medline.es.cluster} (default medline-local).
 */
@RunWith(RandomizedRunner.class)
@ThreadLeakScope(ThreadLeakScope.Scope.NONE)
@TimeoutSuite(millis = Integer.MAX_VALUE)
public class LocalNode {

    public static void main(String[] args) {
        Result result = JUnitCore.runClasses(LocalNode.class);
        result.getFailures().forEach(failure -> System.err.println(failure.getTrace()));
        System.exit(result.wasSuccessful() ? 0 : 1);
    }

    @Test
    @Timeout(millis = Integer.MAX_VALUE)
    public void serve() throws Exception {
        Path home = Paths.get(required("medline.es.home")).toAbsolutePath();
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", System.getProperty("medline.es.cluster", "medline-local"))
            .put("node.name", "medline-local-1")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", System.getProperty("medline.es.http_port", "9200"))
            .put("transport.port", System.getProperty("medline.es.transport_port", "9300"))
            // A development machine's disk is often fuller than the production watermarks allow;
            // without this the node turns indices read-only and every bulk request fails.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.destructive_requires_name", false)
            .build();

        MockNode node = new MockNode(settings, List.of(Netty4Plugin.class), null, true, () -> {});
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                System.err.println("error while closing the node: " + e);
            } finally {
                stopped.countDown();
            }
        }, "medline-local-shutdown"));
        node.start();
        System.out.println("medline-local-elasticsearch started on 127.0.0.1:" + settings.get("http.port"));
        stopped.await();
    }

    private static String required(String name) {
        String value = System.getProperty(name);
        if (value == null || value.isBlank()) {
            throw new IllegalArgumentException("system property " + name + " is required");
        }
        return value;
    }
}
