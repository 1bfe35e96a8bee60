"""Checksums of input files: the SHA-256 the inbox's ledger keeps, and the MD5 that NLM
publishes beside each PubMed file (``pubmed25n0001.xml.gz.md5``), checked before a file is
enqueued so that a download cut short or a corrupt copy is refused whole instead of being
ingested in part."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

from worker.errors import MedlineIngestError

#: Bytes read at a time while computing a checksum.
HASH_CHUNK = 1 << 20
#: Suffix of the file beside an input that publishes its MD5, as NLM's
#: ``pubmed25n0001.xml.gz.md5``.
MD5_SUFFIX = ".md5"
#: An MD5 in hex, in NLM's ``MD5(name)= hex`` as in md5sum's ``hex  name``.
_MD5_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])")


class ChecksumMismatch(MedlineIngestError):
    """A file's bytes do not match the MD5 published beside it, or that MD5 cannot be read:
    the file is not ingested."""


def file_digest(
    path: str, algorithm: str = "sha256", on_chunk: Callable[[], None] | None = None
) -> str:
    """The file's digest (a :mod:`hashlib` algorithm) in hex, read in chunks (constant memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
            if on_chunk is not None:
                on_chunk()
    return digest.hexdigest()


def published_md5(path: str) -> str | None:
    """The MD5 that ``path`` + :data:`MD5_SUFFIX` publishes for ``path`` (lower-case hex), or
    None when there is no such file.

    :raises ChecksumMismatch: the ``.md5`` file holds no MD5 (or cannot be read).
    """
    md5_path = path + MD5_SUFFIX
    try:
        with open(md5_path, encoding="ascii", errors="replace") as stream:
            text = stream.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChecksumMismatch(f"{md5_path} cannot be read: {exc}") from exc
    found = _MD5_HEX.search(text)
    if found is None:
        raise ChecksumMismatch(f"{md5_path} holds no MD5 (32 hex digits)")
    return found.group(0).lower()


def check_published_md5(
    path: str, required: bool, on_chunk: Callable[[], None] | None = None
) -> bool:
    """Whether ``path`` may be ingested as far as its published MD5 goes: True when its
    ``.md5`` matches, or is absent and not ``required``; False when it is absent and
    ``required`` (the caller waits for it).

    :raises ChecksumMismatch: the file's MD5 differs from the published one, or the ``.md5``
        holds none.
    """
    expected = published_md5(path)
    if expected is None:
        return not required
    actual = file_digest(path, "md5", on_chunk)
    if actual != expected:
        raise ChecksumMismatch(
            f"its MD5 is {actual}, but {os.path.basename(path)}{MD5_SUFFIX} says {expected} "
            "(an incomplete or corrupt download?)"
        )
    return True
