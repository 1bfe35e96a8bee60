"""Settings for every process of medline-ingest, read from ``MEDLINE_*`` environment variables.

One model serves the producer, the workers, beat, the exporter and the CLI, so a deployment
sets each variable once. Defaults point at the local services started by
``deploy/local/services up``. Every field is listed in the README; a test checks that the
README, the compose file and the Kubernetes manifests name only variables that exist here.

Credentials are ``SecretStr``: their ``repr`` and ``str`` are masked, so logging a
``Settings`` object never leaks them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.index_template import DEFAULT_MAPPING, IndexMapping
from schemas.messages import BatchCompression
from worker.process_priority import DEFAULT_WORKER_NICE, MAX_NICE

ENV_PREFIX = "MEDLINE_"
#: Files already applied that an earlier-sorting new file may replay without an operator: a
#: late daily update replays a few; a year's worth of updates (hundreds) waits for one.
DEFAULT_INBOX_MAX_REPLAY = 50


class Settings(BaseSettings):
    """Configuration of medline-ingest. Field ``foo_bar`` is set by ``MEDLINE_FOO_BAR``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- broker (Redis) -----------------------------------------------------------------------
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL of the Celery broker; also holds jobs, dead letters and the ledger. "
        "Use rediss:// for TLS.",
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password, if not given in the URL."
    )
    redis_ca_file: str | None = Field(
        None, description="CA certificate file to verify Redis over TLS (rediss://)."
    )
    ingest_queue: str = Field(
        "ingest", description="Name of the Celery queue that carries batches."
    )
    key_prefix: str = Field(
        "medline",
        description="Prefix of every Redis key the program owns (jobs, dead letters, ledger).",
    )
    visibility_timeout: int = Field(
        3600,
        gt=0,
        description="Seconds before an unacknowledged batch is redelivered to another worker; "
        "must exceed the longest batch.",
    )

    # --- Elasticsearch ------------------------------------------------------------------------
    es_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch URL (http or https).")
    es_api_key: SecretStr | None = Field(
        None, description="Elasticsearch API key (base64 'id:key')."
    )
    es_username: str | None = Field(None, description="Elasticsearch user for basic auth.")
    es_password: SecretStr | None = Field(None, description="Elasticsearch password.")
    es_ca_file: str | None = Field(None, description="CA certificate file to verify Elasticsearch.")
    es_fingerprint: str | None = Field(
        None, description="SHA-256 fingerprint of the Elasticsearch certificate, instead of a CA."
    )
    es_allow_insecure_credentials: bool = Field(
        False,
        description="Allow Elasticsearch credentials over plain http (never in production).",
    )
    es_request_timeout: float = Field(60.0, gt=0, description="Seconds per Elasticsearch request.")
    index: str = Field(
        "medline", description="Alias that the documents are written to and searched through."
    )
    index_shards: int = Field(1, ge=1, description="Primary shards of a newly created index.")
    index_replicas: int = Field(0, ge=0, description="Replicas of a newly created index.")
    index_mapping: IndexMapping = Field(
        DEFAULT_MAPPING,
        description="Mapping of a newly created index: flat (plain objects, each field queried "
        "on its own; PubMed's MeSH and date searches are fields of their own) or nested (an "
        "author's or history event's fields queried together, for about a fifth more "
        "Elasticsearch CPU per document).",
    )

    # --- batching -----------------------------------------------------------------------------
    # Two bulk requests' worth (see bulk_chunk_docs): a worker then parses the second half
    # while Elasticsearch indexes the first. 2,000 records in requests of 1,000 made 1.05-1.06x
    # the records/s of 1,000 in requests of 500 (2026-12-07); 2,000 in requests of 500, 1.00x.
    batch_records: int = Field(2000, ge=1, description="Most records the producer puts in a batch.")
    batch_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Most raw bytes the producer puts in a batch."
    )
    # LZ4 stores a batch in a third to a half of the bytes; Redis then copies, appends to its
    # AOF and frees that much less: 4-8 against 16-28 µs of Redis CPU per record, 9-12 % more
    # records/s end to end (README "Benchmarks"), for 4.5 µs to compress and 1.5 to decompress.
    batch_compression: BatchCompression = Field(
        "lz4",
        description="How enqueue and replay store each batch's text in Redis: lz4 (one LZ4 "
        "frame, a third to a half of the bytes) or none (as is). Workers read both.",
    )
    # About 0.4 GB of Redis at 2,000 records of 3.3 KB (0.13-0.2 GB compressed); the backlog
    # is also what an AOF rewrite copies.
    max_queued_batches: int = Field(
        64,
        ge=0,
        description=(
            "enqueue waits while this many batches are in Redis, not yet done (all jobs); "
            "0: no limit."
        ),
    )
    # Half a batch (see batch_records): fewer requests cost the worker and the node less per
    # document than 500 did, and two per batch keep parsing and indexing overlapped.
    bulk_chunk_docs: int = Field(1000, ge=1, description="Most documents per _bulk request.")
    bulk_chunk_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Most bytes per _bulk request."
    )
    # One: a process parses its next chunk while Elasticsearch indexes this one, and the node
    # holds one request per worker process. Two (until 2026-12-07) put four requests of 1,000
    # documents in the node at once with two processes: more heap garbage (its GC pauses 8-11
    # against 5-8 µs per document), and one gave 1.052x, 1.025x and 0.988x the records/s of
    # two in three interleaved runs on a shared 2-core host (bench_settings.py; 9 of 13 rounds
    # won, 1.028x in the median of the rounds): a small gain at most, and less heap churn. A
    # worker that handles one batch at a time keeps two unless this is set (worker_defaults).
    bulk_in_flight: int = Field(
        1,
        ge=1,
        le=16,
        description="Most _bulk requests in flight at once for each batch being indexed (a "
        "prefork process indexes one batch at a time, a threads pool one per thread); a worker "
        "that handles one batch at a time (one process, or the solo pool) keeps 2 unless this "
        "is set.",
    )
    max_record_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="A record larger than this is dead-lettered as too large.",
    )
    parser: Literal["auto", "native", "python"] = Field(
        "auto",
        description="MEDLINE parser: the compiled one when it is built (auto), or insist on "
        "it (native), or the pure-Python reference (python).",
    )

    # --- retries ------------------------------------------------------------------------------
    item_retries: int = Field(
        8, ge=0, description="Retries of documents Elasticsearch answers with 429 or 5xx."
    )
    item_backoff_initial: float = Field(
        0.5, gt=0, description="First wait in seconds before retrying 429/5xx documents."
    )
    item_backoff_max: float = Field(30.0, gt=0, description="Longest wait between item retries.")
    batch_retry_budget: float = Field(
        900.0,
        gt=0,
        description="Seconds a batch keeps being retried while Elasticsearch is unreachable, "
        "before it goes to the 'exhausted' dead-letter queue.",
    )
    batch_backoff_initial: float = Field(
        2.0, gt=0, description="First wait in seconds before a failed batch is retried."
    )
    batch_backoff_max: float = Field(60.0, gt=0, description="Longest wait between batch retries.")
    max_deliveries: int = Field(
        5,
        ge=1,
        description="A batch delivered this often without finishing (it keeps killing its "
        "worker) goes to the 'exhausted' dead-letter queue.",
    )
    dead_letter_high_water: int = Field(
        1_000_000,
        ge=1,
        description="Total dead-letter entries at which workers stop taking new batches "
        "until an operator replays or purges.",
    )

    # --- worker -------------------------------------------------------------------------------
    worker_concurrency: int | None = Field(
        None, ge=1, description="Worker processes per worker; default: one per CPU."
    )
    worker_pool: Literal["prefork", "solo", "threads"] = Field(
        "prefork",
        description="Celery pool type of the worker: prefork, solo or threads (the README says "
        "what each does).",
    )
    worker_nice: int = Field(
        DEFAULT_WORKER_NICE,
        ge=0,
        le=MAX_NICE,
        description="Niceness the worker's processes take (0: unchanged), so that "
        "Elasticsearch on the same host comes first.",
    )

    # A pool process faulted in 2.8 fresh pages per record when glibc handed each freed batch
    # back to the kernel: 8-12 µs of system CPU per record, 2-4 with this (README "Benchmarks").
    keep_freed_memory: bool = Field(
        True,
        description="Raise glibc's malloc thresholds in the worker and enqueue so that memory "
        "a batch frees is reused by the next batch instead of returned to the kernel and "
        "faulted in again (peak memory unchanged). Ignored when MALLOC_*_ or GLIBC_TUNABLES "
        "is set, and on other C libraries.",
    )

    # --- scheduled ingestion ------------------------------------------------------------------
    inbox_dir: str | None = Field(None, description="Directory that beat scans for new files.")
    inbox_patterns: str = Field(
        "*.txt,*.nbib,*.medline,*.xml,*.xml.gz,*.txt.gz",
        description="Comma-separated glob patterns of inbox files to ingest.",
    )
    inbox_require_md5: bool = Field(
        False,
        description="Ingest an inbox file only once NAME.md5 is beside it; a new or changed "
        "file is checked against a .md5 that is there in any case, and a mismatch blocks it.",
    )
    inbox_max_replay: int = Field(
        DEFAULT_INBOX_MAX_REPLAY,
        ge=0,
        description="Most files already applied that a new or changed inbox file sorting before "
        "them may make the scan apply again; past it the file blocks the inbox until "
        "`schedule run-now --allow-replay` (a new year's baseline put where it sorts before the "
        "year's updates would replay all of them).",
    )
    schedule_interval: float = Field(300.0, gt=0, description="Seconds between inbox scans.")
    schedule_crontab: str | None = Field(
        None, description="Crontab ('m h dom mon dow') for inbox scans; overrides the interval."
    )

    # --- operations ---------------------------------------------------------------------------
    log_format: Literal["text", "json"] = Field("text", description="Log format: text or json.")
    log_level: str = Field("INFO", description="Log level.")
    metrics_port: int = Field(9808, ge=0, le=65535, description="Port of the /metrics exporter.")
    worker_metrics_port: int = Field(
        9809,
        ge=0,
        le=65535,
        description="Port of each worker's own /metrics (batch and record counters); 0: none.",
    )

    @field_validator("es_url")
    @classmethod
    def _es_url_has_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("broker_url")
    @classmethod
    def _broker_is_redis(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("schedule_crontab")
    @classmethod
    def _crontab_is_valid(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from celery.schedules import crontab

        crontab(**crontab_fields(value))  # raises ValueError, saying why, for a bad field
        return " ".join(value.split())

    def key(self, *parts: str) -> str:
        """A Redis key owned by this program: ``{key_prefix}:{part}:{part}...``."""
        return ":".join((self.key_prefix, *parts))


def crontab_fields(text: str) -> dict[str, str]:
    """``'m h dom mon dow'`` as keyword arguments of ``celery.schedules.crontab``."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError("needs 5 fields: minute hour day-of-month month day-of-week")
    names = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    return dict(zip(names, fields, strict=True))


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


#: Bulk requests in flight for a worker that indexes one batch at a time, unless
#: MEDLINE_BULK_IN_FLIGHT says otherwise: with one, Elasticsearch indexes that worker's
#: requests on one core while the process parses the next chunk. Two gave 1.30x the records/s
#: with one process beside a 2-core node (bench_settings.py --workers 1, 3 rounds of 3 won).
ONE_BATCH_AT_A_TIME_IN_FLIGHT = 2


def worker_defaults(settings: Settings, pool: str, batches_at_once: int) -> dict[str, str]:
    """The ``MEDLINE_*`` variables a worker sets for itself before it starts, from what it
    runs: two bulk requests in flight when it handles one batch at a time (the ``solo`` pool,
    or one process or thread) and ``MEDLINE_BULK_IN_FLIGHT`` is not set.

    :param pool: the Celery pool the worker runs.
    :param batches_at_once: its processes (or threads) as given or defaulted.
    :returns: variable → value, empty when the settings stand as they are.
    """
    one_at_a_time = pool == "solo" or batches_at_once == 1
    if one_at_a_time and "bulk_in_flight" not in settings.model_fields_set:
        return {f"{ENV_PREFIX}BULK_IN_FLIGHT": str(ONE_BATCH_AT_A_TIME_IN_FLIGHT)}
    return {}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
