"""Secure connections against the real services: Elasticsearch and Redis over TLS.

The local services speak plain TCP on 127.0.0.1, so each test puts a TLS-terminating proxy in
front of them (pure Python: asyncio + ssl), with a certificate signed by a CA the test makes.
The product's own client factories (``worker.es_client.make_client``,
``worker.redis_client.make_redis``, the Celery app) must then

- reach the service over HTTPS / ``rediss://`` when given that CA (or the certificate's
  fingerprint), and write to it;
- refuse it, with an error that says why, when given another CA or fingerprint, before a
  single byte reaches the service;
- refuse to send Elasticsearch credentials over plain http at all.

Certificates come from the ``cryptography`` package when it is installed, otherwise from the
``openssl`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import shutil
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import elastic_transport
import pytest
import redis
from kombu.exceptions import OperationalError

from tests.helpers import REPO
from tests.integration.conftest import ES_URL, REDIS_HOST, REDIS_PORT
from worker.errors import ConfigurationError
from worker.es_client import cluster_health, make_client
from worker.redis_client import make_redis
from worker.settings import Settings

pytestmark = pytest.mark.integration

#: Seconds any single network step of these tests may take.
STEP_TIMEOUT = 20.0


# --- a CA and a server certificate ---------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate that signed the server certificate
    other_ca: Path  # an unrelated CA: verification against it must fail
    cert: Path  # the server certificate (SAN: localhost, 127.0.0.1)
    key: Path  # its private key

    def fingerprint(self) -> str:
        """SHA-256 of the server certificate (DER), as ``AB:CD:...``."""
        der = ssl.PEM_cert_to_DER_cert(self.cert.read_text())
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _pki_with_cryptography(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    validity = (now - dt.timedelta(minutes=5), now + dt.timedelta(days=1))

    def write_pem(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        return path

    def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = make_ca("medline-test-ca")
    _, other_cert = make_ca("medline-test-other-ca")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca=write_pem(directory / "ca.pem", ca_cert.public_bytes(pem)),
        other_ca=write_pem(directory / "other-ca.pem", other_cert.public_bytes(pem)),
        cert=write_pem(directory / "server.pem", server_cert.public_bytes(pem)),
        key=write_pem(
            directory / "server.key",
            server_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
    )


def _pki_with_openssl(directory: Path) -> Pki:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    for name in ("ca", "other-ca"):
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1",
            "-subj", f"/CN=medline-test-{name}",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "server.ext",
    )  # fmt: skip
    return Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
    )


def make_pki(directory: Path) -> Pki:
    """A CA, an unrelated CA, and a server certificate for 127.0.0.1 signed by the first."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        return _pki_with_openssl(directory)
    return _pki_with_cryptography(directory)


# --- a TLS-terminating TCP proxy -----------------------------------------------------------------


class TlsProxy:
    """Listens on 127.0.0.1 (TLS, or plain TCP when ``ssl_context`` is None) and pipes every
    accepted connection to ``upstream``. Runs an asyncio loop in a thread of its own.

    Counts what happened, so a test can tell that traffic really went through it, and that a
    refused handshake let nothing through to the service.
    """

    def __init__(self, upstream: tuple[str, int], ssl_context: ssl.SSLContext | None) -> None:
        self.upstream = upstream
        self.ssl_context = ssl_context
        self.connections = 0  # connections whose handshake (if any) succeeded
        self.bytes_upstream = 0  # bytes forwarded from clients to the service
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(STEP_TIMEOUT) or not self.port:
            raise RuntimeError("the TLS proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STEP_TIMEOUT)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._loop.set_exception_handler(lambda *_: None)  # refused handshakes are expected
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._ready.set()  # never leave __enter__ waiting on a proxy that failed to start
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tls = {} if self.ssl_context is None else {"ssl_handshake_timeout": STEP_TIMEOUT}
        server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl_context, **tls
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio hands over a connection only once its TLS handshake succeeded.
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, count=True),
            self._pipe(up_reader, writer, count=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self.bytes_upstream += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.cert, pki.key)
    return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _es_upstream() -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(ES_URL)
    return parts.hostname or "127.0.0.1", parts.port or 9200


@pytest.fixture
def es_tls(services: None, pki: Pki) -> Iterator[TlsProxy]:
    """HTTPS in front of the local Elasticsearch."""
    with TlsProxy(_es_upstream(), _server_context(pki)) as proxy:
        yield proxy


@pytest.fixture
def redis_tls(services: None, pki: Pki) -> Iterator[TlsProxy]:
    """TLS in front of the local Redis."""
    with TlsProxy((REDIS_HOST, REDIS_PORT), _server_context(pki)) as proxy:
        yield proxy


@pytest.fixture
def index_name(services: None) -> Iterator[str]:
    """A unique index name; the index is deleted afterwards (straight, without the proxy)."""
    name = f"test-tls-{uuid.uuid4().hex[:12]}"
    yield name
    from elasticsearch import Elasticsearch

    Elasticsearch(ES_URL, request_timeout=STEP_TIMEOUT).indices.delete(
        index=name, ignore_unavailable=True
    )


def es_settings(proxy: TlsProxy, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "es_url": f"https://{proxy.address}",
        "es_request_timeout": STEP_TIMEOUT,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


# --- Elasticsearch over HTTPS --------------------------------------------------------------------


def test_the_right_ca_reaches_elasticsearch_over_https_and_writes(
    es_tls: TlsProxy, pki: Pki, index_name: str
) -> None:
    # Credentials too: they are sent, over TLS (the local node has no security, so it ignores
    # them; what matters here is that the client accepts them on https and verifies the CA).
    settings = es_settings(
        es_tls, es_ca_file=str(pki.ca), es_username="medline", es_password="not-a-real-secret"
    )
    client = make_client(settings)
    health = cluster_health(client)
    assert health["status"] in ("green", "yellow")
    operations: list[dict[str, object]] = []
    for pmid in ("101", "102", "103"):
        operations += [{"index": {"_index": index_name, "_id": pmid}}, {"pmid": pmid}]
    response = client.bulk(operations=operations, refresh="wait_for")
    assert response["errors"] is False, response
    assert client.count(index=index_name)["count"] == 3
    # It really went through the TLS proxy, not around it.
    assert es_tls.connections >= 1
    assert es_tls.bytes_upstream > 0


def test_the_certificate_fingerprint_works_instead_of_a_ca(es_tls: TlsProxy, pki: Pki) -> None:
    client = make_client(es_settings(es_tls, es_fingerprint=pki.fingerprint()))
    assert cluster_health(client)["status"] in ("green", "yellow")


def test_a_wrong_fingerprint_is_refused(es_tls: TlsProxy, pki: Pki) -> None:
    wrong = ":".join(["00"] * 32)
    client = make_client(es_settings(es_tls, es_fingerprint=wrong))
    with pytest.raises(elastic_transport.TransportError) as caught:
        cluster_health(client)
    assert "fingerprint" in caught.value.message.lower()
    assert es_tls.bytes_upstream == 0


def test_a_wrong_ca_is_refused_before_anything_reaches_elasticsearch(
    es_tls: TlsProxy, pki: Pki
) -> None:
    settings = es_settings(es_tls, es_ca_file=str(pki.other_ca), es_api_key="bm90LWEtcmVhbC1rZXk=")
    with pytest.raises(elastic_transport.TlsError) as caught:
        cluster_health(make_client(settings))
    assert "certificate verify failed" in caught.value.message.lower()
    # The handshake failed, so no request (and no API key) ever reached the node.
    assert es_tls.connections == 0
    assert es_tls.bytes_upstream == 0


def test_without_a_ca_the_system_trust_store_refuses_a_private_ca(es_tls: TlsProxy) -> None:
    with pytest.raises(elastic_transport.TlsError):
        cluster_health(make_client(es_settings(es_tls)))
    assert es_tls.bytes_upstream == 0


def test_the_cli_reports_a_wrong_ca_in_one_plain_line(es_tls: TlsProxy, pki: Pki) -> None:
    secret = "cli-secret-password-1234"
    env = {
        **os.environ,
        "MEDLINE_ES_URL": f"https://{es_tls.address}",
        "MEDLINE_ES_CA_FILE": str(pki.other_ca),
        "MEDLINE_ES_USERNAME": "medline",
        "MEDLINE_ES_PASSWORD": secret,
        "MEDLINE_ES_REQUEST_TIMEOUT": str(STEP_TIMEOUT),
        "MEDLINE_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "search", "anything"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 3, proc.stderr  # EXIT_UNAVAILABLE
    assert "Traceback" not in proc.stderr
    assert "certificate verify failed" in proc.stderr.lower()
    assert secret not in proc.stderr + proc.stdout


def test_a_missing_ca_file_is_a_configuration_error_that_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    settings = Settings(es_url="https://127.0.0.1:9", es_ca_file=str(missing))
    with pytest.raises(ConfigurationError, match="MEDLINE_ES_CA_FILE") as caught:
        make_client(settings)
    assert str(missing) in str(caught.value)


# --- credentials never over plain http -----------------------------------------------------------


@pytest.fixture
def plain_listener(services: None) -> Iterator[TlsProxy]:
    """A plain TCP proxy in front of Elasticsearch that counts the connections it gets."""
    with TlsProxy(_es_upstream(), None) as proxy:
        yield proxy


@pytest.mark.parametrize(
    "credentials",
    [{"es_api_key": "bm90LWEtcmVhbC1rZXk="}, {"es_username": "u", "es_password": "p"}],
    ids=["api-key", "password"],
)
def test_credentials_over_plain_http_are_refused_before_connecting(
    plain_listener: TlsProxy, credentials: dict[str, str]
) -> None:
    settings = Settings(es_url=f"http://{plain_listener.address}", **credentials)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="plain http"):
        cluster_health(make_client(settings))
    assert plain_listener.connections == 0
    # Explicitly allowed, the same settings do connect: the refusal above was the check's doing.
    allowed = Settings(
        es_url=f"http://{plain_listener.address}",
        es_allow_insecure_credentials=True,
        **credentials,  # type: ignore[arg-type]
    )
    assert cluster_health(make_client(allowed))["status"] in ("green", "yellow")
    assert plain_listener.connections >= 1


# --- Redis over TLS ------------------------------------------------------------------------------


def test_redis_over_tls_with_the_right_ca(redis_tls: TlsProxy, pki: Pki) -> None:
    settings = Settings(broker_url=f"rediss://{redis_tls.address}/0", redis_ca_file=str(pki.ca))
    client = make_redis(settings)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert redis_tls.connections >= 1


def test_redis_over_tls_with_a_wrong_ca_is_refused(redis_tls: TlsProxy, pki: Pki) -> None:
    settings = Settings(
        broker_url=f"rediss://{redis_tls.address}/0", redis_ca_file=str(pki.other_ca)
    )
    client = redis.Redis.from_url(
        settings.broker_url,
        ssl_ca_certs=settings.redis_ca_file,
        ssl_cert_reqs="required",
        socket_connect_timeout=STEP_TIMEOUT,
    )
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        client.ping()
    assert redis_tls.bytes_upstream == 0


def test_the_celery_broker_connection_verifies_the_redis_ca(redis_tls: TlsProxy, pki: Pki) -> None:
    from worker.celery_app import make_app

    good = make_app(
        Settings(broker_url=f"rediss://{redis_tls.address}/0", redis_ca_file=str(pki.ca))
    )
    with good.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=STEP_TIMEOUT)
        assert connection.default_channel.client.ping() is True
    bad = make_app(
        Settings(broker_url=f"rediss://{redis_tls.address}/0", redis_ca_file=str(pki.other_ca))
    )
    before = redis_tls.bytes_upstream
    with (
        pytest.raises(OperationalError, match=r"(?i)certificate verify failed"),
        bad.connection_for_write() as connection,
    ):
        connection.ensure_connection(max_retries=0, timeout=STEP_TIMEOUT)
    assert redis_tls.bytes_upstream == before
