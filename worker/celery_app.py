"""The Celery application: Redis broker, JSON only, late acknowledgement.

Delivery guarantees come from this configuration:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a batch is acknowledged only after its
  outcome is committed; if the worker process dies, the batch goes back to the queue.
- ``visibility_timeout``: a batch taken by a worker that vanished (SIGKILL of the whole worker,
  machine lost) is redelivered after this many seconds; it must exceed the longest batch.
- ``worker_prefetch_multiplier = 1``: a worker holds one batch per process, so a dying worker
  strands little and the queue depth tells the truth.
- ``accept_content = ["json"]``: pickle is never accepted from the broker.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.schedules import crontab

from schemas.messages import BatchMessage, BatchRef, PackedBatch
from worker.redis_client import broker_url_with_password
from worker.settings import Settings, crontab_fields, get_settings
from worker.thread_pool_wakeup import ThreadPoolWakeup

#: Name under which the batch task is registered; producers send to it by name.
INGEST_TASK = "medline.ingest_batch"
#: Name of the periodic inbox scan (scheduled ingestion).
SCAN_INBOX_TASK = "medline.scan_inbox"
#: Publishing retries while the broker is unreachable: about five minutes in all.
PUBLISH_RETRY_POLICY = {
    "max_retries": 75,
    "interval_start": 0.5,
    "interval_step": 0.5,
    "interval_max": 5.0,
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for ``settings``."""
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        # Look for abandoned batches (their worker vanished) every tenth of the visibility
        # timeout, and really scan each time: kombu's default sweep is ~100 s apart.
        "unacked_restore_interval": max(1, min(60, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "retry_on_timeout": True,
    }
    config: dict[str, Any] = {
        "broker_url": broker_url_with_password(settings),
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # reconnect for ever; the operator sees it in logs
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.ingest_queue,
        "task_create_missing_queues": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # Task events let Flower and `celery events` show live work out of the box.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_timeout": 10,
        "worker_enable_remote_control": True,
    }
    if settings.broker_url.startswith("rediss://"):
        tls: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.redis_ca_file:
            tls["ssl_ca_certs"] = settings.redis_ca_file
        config["broker_use_ssl"] = tls
    return config


def scan_schedule(settings: Settings) -> crontab | float:
    """When beat scans the inbox: ``MEDLINE_SCHEDULE_CRONTAB`` if set, else every
    ``MEDLINE_SCHEDULE_INTERVAL`` seconds."""
    if settings.schedule_crontab:
        return crontab(**crontab_fields(settings.schedule_crontab))
    return settings.schedule_interval


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Beat's schedule: the inbox scan (see :mod:`worker.inbox`), when an inbox is set."""
    if not settings.inbox_dir:
        return {}
    return {
        "scan-inbox": {
            "task": SCAN_INBOX_TASK,
            "schedule": scan_schedule(settings),
            "options": {"queue": settings.ingest_queue},
        }
    }


def make_app(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``, with the project's tasks registered."""
    app = Celery("medline_ingest", include=["worker.tasks"])
    app.conf.update(celery_config(settings))
    app.conf.task_routes = {
        INGEST_TASK: {"queue": settings.ingest_queue},
        SCAN_INBOX_TASK: {"queue": settings.ingest_queue},
    }
    app.conf.beat_schedule = beat_schedule(settings)
    app.steps["consumer"].add(ThreadPoolWakeup)
    return app


app = make_app(get_settings())


def batch_publisher(settings: Settings) -> Callable[[BatchMessage | PackedBatch], None]:
    """A function that sends a batch to the ingest task on ``settings.ingest_queue``.

    Only the batch's :class:`~schemas.messages.BatchRef` goes on the broker: the caller must
    have stored the batch with :meth:`worker.jobs.JobStore.track_pending` first, which every
    producer does anyway (it is what the reaper recovers lost batches from).
    """

    def publish(batch: BatchMessage | PackedBatch) -> None:
        ref = BatchRef(job_id=batch.job_id, batch_id=batch.batch_id)
        app.send_task(INGEST_TASK, args=[ref.model_dump()], queue=settings.ingest_queue)

    return publish
