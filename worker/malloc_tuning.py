"""Keep the memory one batch frees for the next batch (glibc's malloc).

A worker handles batch after batch, and each brings a few megabytes at once: the stored
frame, its decompressed text, the bulk bodies, the responses. By default glibc gives blocks
that large back to the kernel when they are freed (they are mapped on their own, or the top
of the heap is trimmed), and the next batch has every page of them faulted in and zeroed
again. Measured in a worker's pool processes: 2.8 page faults and 8-12 µs of system CPU per
record by default, 0.3 faults and 2-4 µs with the thresholds below, with the same peak
memory (README, "Benchmarks"). The producer packs and compresses batches of the same size.

The thresholds change when freed memory goes back to the kernel; what a process frees, it
reuses for the next batch, so its peak is still set by the batch size (measured: workers and
the producer peak where they did without, README).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Blocks up to this size come from the heap instead of a mapping of their own, so freeing
#: one keeps its pages. 32 MiB is the most glibc accepts on 64-bit systems; a batch's largest
#: block (4 MiB of text, MEDLINE_BATCH_BYTES) is well under it.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: The heap gives memory back to the kernel only once this much is free at its top: more
#: than a worker process's whole peak (about 90 MiB), so in practice it keeps what it has.
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Environment variables through which an operator tunes glibc's malloc directly; when one
#: is set, that choice wins and nothing is changed here.
OPERATOR_VARIABLES = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def _glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (the only one whose mallopt takes these parameters)."""
    try:
        # The process's own symbols, the C library's among them: no search for its file.
        process = ctypes.CDLL(None)
    except OSError:
        return None
    return process if hasattr(process, "gnu_get_libc_version") else None


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds for this process and the processes it forks
    later (:data:`MMAP_THRESHOLD_BYTES`, :data:`TRIM_THRESHOLD_BYTES`).

    Never fails: on another C library, or when the operator set glibc's own variables
    (:data:`OPERATOR_VARIABLES`), it changes nothing and says so at debug level.

    :param environ: the environment to look for the operator's variables in (``os.environ``).
    :returns: whether the thresholds were set.
    """
    environ = os.environ if environ is None else environ
    chosen = [name for name in OPERATOR_VARIABLES if name in environ]
    if chosen:
        log.debug("malloc left as the environment sets it (%s)", ", ".join(chosen))
        return False
    libc = _glibc()
    if libc is None:
        log.debug("malloc left alone: the C library is not glibc")
        return False
    # mallopt returns 1 on success, 0 for a value it refuses.
    done = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    done = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and done
    if not done:
        log.warning("glibc refused the malloc thresholds; freed batches go back to the kernel")
    return done
