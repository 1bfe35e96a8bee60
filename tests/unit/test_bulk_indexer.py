"""Chunking, backoff and per-item outcome sorting of the bulk indexer.

The client here is a scripted stand-in that answers ``bulk`` with given item statuses: it tests
this module's decisions per status. Real indexing is proved in tests/integration.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from worker.bulk_indexer import (
    BULK_FILTER_PATH,
    BulkAction,
    BulkLimits,
    BulkWriter,
    TransientBulkError,
    backoff_delay,
    bulk_write,
    chunk_actions,
    request_body,
)
from worker.settings import Settings


def action(i: int, size: int = 10, **kw: Any) -> BulkAction:
    return BulkAction(op="index", doc_id=str(i), source=b"{" + b"x" * size + b"}", **kw)


class ScriptedClient:
    """Answers each bulk call with the next list of statuses, one per item sent."""

    def __init__(self, *rounds: list[int]) -> None:
        self.rounds = list(rounds)
        self.sent: list[list[str]] = []

    def bulk(
        self, operations: bytes, index: str, require_alias: bool, filter_path: str
    ) -> dict[str, Any]:
        assert require_alias
        assert filter_path == BULK_FILTER_PATH
        assert operations.endswith(b"\n")
        lines = operations.splitlines()
        ids = [line.split(b'"_id":"')[1].split(b'"')[0].decode() for line in lines[::2]]
        self.sent.append(ids)
        statuses = self.rounds.pop(0)
        assert len(statuses) == len(ids)
        items = []
        for status in statuses:
            outcome: dict[str, Any] = {"status": status}
            if status >= 300:
                outcome["error"] = {"type": f"type_{status}", "reason": f"reason {status}"}
            items.append({"index": outcome})
        return {"errors": any(s >= 300 for s in statuses), "items": items}


def test_chunks_respect_count_and_bytes() -> None:
    actions = [action(i) for i in range(10)]
    assert [len(c) for c in chunk_actions(actions, max_docs=4, max_bytes=10**6)] == [4, 4, 2]
    one = actions[0].size()
    assert [len(c) for c in chunk_actions(actions, max_docs=100, max_bytes=3 * one)] == [3, 3, 3, 1]


def test_an_action_larger_than_the_byte_limit_goes_alone() -> None:
    actions = [action(0), action(1, size=5000), action(2)]
    chunks = list(chunk_actions(actions, max_docs=100, max_bytes=1000))
    assert [[a.doc_id for a in c] for c in chunks] == [["0"], ["1"], ["2"]]


def test_backoff_is_bounded_and_jittered() -> None:
    delays = [backoff_delay(attempt, 0.5, 4.0) for attempt in range(10) for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 10


def test_items_are_sorted_into_written_stale_rejected() -> None:
    client = ScriptedClient([201, 200, 409, 400])
    actions = [action(0), action(1), action(2, version=3), action(3)]
    result = bulk_write(client, "idx", actions, BulkLimits(), sleep=lambda s: None)  # type: ignore[arg-type]
    assert [a.doc_id for a in result.written] == ["0", "1"]
    assert [a.doc_id for a in result.stale] == ["2"]
    assert [(a.doc_id, status) for a, status, _ in result.rejected] == [("3", 400)]
    assert result.rejected[0][2]["type"] == "type_400"


def test_429_and_5xx_items_are_retried_alone_until_written() -> None:
    client = ScriptedClient([201, 429, 503], [429, 201], [201])
    sleeps: list[float] = []
    result = bulk_write(
        client,  # type: ignore[arg-type]
        "idx",
        [action(0), action(1), action(2)],
        BulkLimits(item_retries=5, backoff_initial=0.01, backoff_max=0.02),
        sleep=sleeps.append,
    )
    assert client.sent == [["0", "1", "2"], ["1", "2"], ["1"]]
    assert sorted(a.doc_id for a in result.written) == ["0", "1", "2"]
    assert len(sleeps) == 2
    assert result.item_retries == 3


def test_items_still_failing_after_the_retry_budget_raise_transient() -> None:
    client = ScriptedClient([503], [503], [503])
    with pytest.raises(TransientBulkError, match=r"\[503\].*after 2 retries"):
        bulk_write(
            client,  # type: ignore[arg-type]
            "idx",
            [action(0)],
            BulkLimits(item_retries=2),
            sleep=lambda s: None,
        )


def test_versioned_actions_use_external_gte() -> None:
    header = action(1, version=20240101).lines()[0]
    assert b'"version":20240101' in header
    assert b'"version_type":"external_gte"' in header
    assert BulkAction(op="delete", doc_id="7").lines() == [b'{"delete":{"_id":"7"}}']


def test_sizes_and_the_request_body_agree() -> None:
    actions = [action(1, version=3), action(2), BulkAction(op="delete", doc_id="9")]
    body = request_body(actions)
    assert len(body) == sum(a.size() for a in actions)
    assert body.splitlines() == [line for a in actions for line in a.lines()]


def test_the_writer_sorts_every_chunk_into_one_result_in_order() -> None:
    client = ScriptedClient([201, 201], [409, 201], [400])
    actions = [action(0), action(1), action(2, version=1), action(3), action(4)]
    with BulkWriter(client, "idx", BulkLimits(chunk_docs=2, in_flight=1)) as writer:  # type: ignore[arg-type]
        writer.submit(actions[:4])
        writer.submit(actions[4:])
        result = writer.result()
    assert [a.doc_id for a in result.written] == ["0", "1", "3"]
    assert [a.doc_id for a in result.stale] == ["2"]
    assert [a.doc_id for a, _, _ in result.rejected] == ["4"]
    assert result.requests == 3


def test_the_writer_raises_a_chunk_failure_after_the_others_finish() -> None:
    client = ScriptedClient([503], [201])
    with BulkWriter(  # type: ignore[arg-type]
        client, "idx", BulkLimits(chunk_docs=1, item_retries=0, in_flight=1), sleep=lambda s: None
    ) as writer:
        writer.submit([action(0), action(1)])
        with pytest.raises(TransientBulkError, match=r"\[503\]"):
            writer.result()
    assert client.sent == [["0"], ["1"]]


class OverlapClient:
    """Answers every bulk call at once with success, noting how many were in flight together;
    each call first waits up to ``linger`` seconds for another to join it."""

    def __init__(self, linger: float) -> None:
        self.linger = linger
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.joined = threading.Event()

    def bulk(self, operations: bytes, **_: Any) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight > 1:
                self.joined.set()
        self.joined.wait(self.linger)
        with self.lock:
            self.in_flight -= 1
        return {"errors": False}


@pytest.mark.parametrize("in_flight", [1, 2])
def test_the_writer_keeps_as_many_requests_in_flight_as_the_setting_says(in_flight: int) -> None:
    limits = BulkLimits.from_settings(Settings(bulk_in_flight=in_flight, bulk_chunk_docs=1))
    # Two requests overlap at once when allowed; one at a time lingers its full second first.
    client = OverlapClient(linger=30 if in_flight > 1 else 1)
    with BulkWriter(client, "idx", limits) as writer:  # type: ignore[arg-type]
        writer.submit([action(0), action(1)])
        assert len(writer.result().written) == 2
    assert client.peak == in_flight


def test_one_request_in_flight_per_process_is_the_default() -> None:
    assert Settings().bulk_in_flight == BulkLimits().in_flight == 1
