"""glibc's malloc keeps the memory a batch frees for the next batch, unless the operator chose."""

from __future__ import annotations

import pytest

from tests.helpers import REPO, python_output
from worker import malloc_tuning
from worker.malloc_tuning import OPERATOR_VARIABLES, keep_freed_memory

#: A worker's round with one batch, in a fresh process: unpack a stored batch of 3.8 MB (an
#: LZ4 frame, as enqueue stores it; 100 copies of the 25 sample citations), build one body of
#: all its text, free both. Prints the page faults of 20 rounds after 3 to warm up.
BATCH_ROUNDS = """
import resource, sys
from pathlib import Path
from schemas.messages import PackedBatch
from worker.malloc_tuning import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory({})
text = Path("tests/data/sample.medline").read_bytes().rstrip(b"\\n") + b"\\n\\n"
texts = [text] * 100
offsets = [len(text) * n for n in range(len(texts))]
stored = PackedBatch.pack(
    job_id="job", batch_id="batch", source="source", format="medline", offsets=offsets,
    texts=texts, compression="lz4",
).stored

def one_batch():
    batch = PackedBatch.unpack(stored)
    body = b"\\n".join(batch.data[begin:end] for _, begin, end in batch.spans())
    return len(body)

for _ in range(3):
    one_batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_in_batch_rounds(variant: str) -> int:
    return int(
        python_output(BATCH_ROUNDS, variant, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    )


@pytest.mark.skipif(malloc_tuning._glibc() is None, reason="the C library is not glibc")
def test_batch_after_batch_reuses_the_pages_instead_of_faulting_them_in_again() -> None:
    default = faults_in_batch_rounds("default")
    if default < 200:
        pytest.skip(f"this kernel faulted only {default} pages in 20 batches by default")
    kept = faults_in_batch_rounds("keep")
    assert kept < default / 10, f"{kept} page faults with the thresholds, {default} without"


@pytest.mark.parametrize("variable", OPERATOR_VARIABLES)
def test_the_operators_own_malloc_variables_win(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_glibc_wanted() -> None:
        raise AssertionError("malloc was tuned although the operator set " + variable)

    monkeypatch.setattr(malloc_tuning, "_glibc", no_glibc_wanted)
    assert keep_freed_memory({variable: "1"}) is False


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc_tuning, "_glibc", lambda: None)
    assert keep_freed_memory({}) is False


def test_a_refused_threshold_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Refusing:
        def mallopt(self, parameter: int, value: int) -> int:
            return 0

    monkeypatch.setattr(malloc_tuning, "_glibc", lambda: Refusing())
    assert keep_freed_memory({}) is False
    assert "refused" in caplog.text
