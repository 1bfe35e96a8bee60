"""MEDLINE records written for the tests: valid ones by number, and kinds of malformed ones."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def medline_record(pmid: int | str, title: str | None = None, lr: str = "20200101") -> str:
    """A valid line-structured MEDLINE record with a few authors, MeSH terms and a DOI."""
    title = title or f"Test citation {pmid} on remyelination in multiple sclerosis."
    return "\n".join(
        [
            f"PMID- {pmid}",
            "OWN - NLM",
            "STAT- MEDLINE",
            "DCOM- 20030402",
            f"LR  - {lr}",
            "IS  - 0022-510X (Print)",
            "VI  - 206",
            "IP  - 2",
            "DP  - 2003 Feb 15",
            f"TI  - {title}",
            "PG  - 123-30",
            "AB  - Intravenous immunoglobulin (IVIG) has several effects on the immune system",
            "      that could have a beneficial influence on disease processes.",
            "FAU - Sorensen, Per Soelberg",
            "AU  - Sorensen PS",
            "AD  - MS Research Unit, Copenhagen University Hospital, Denmark.",
            "LA  - eng",
            "PT  - Journal Article",
            "PL  - Netherlands",
            "TA  - J Neurol Sci",
            "JT  - Journal of the neurological sciences",
            "JID - 0375403",
            "SB  - IM",
            "MH  - Humans",
            "MH  - Multiple Sclerosis/pathology/*therapy",
            "EDAT- 2003/02/01 04:00",
            "MHDA- 2003/04/04 05:00",
            "CRDT- 2003/02/01 04:00",
            "PHST- 2003/02/01 04:00 [pubmed]",
            f"AID - 10.1016/test.{pmid} [doi]",
            "PST - ppublish",
            "SO  - J Neurol Sci. 2003 Feb 15;206(2):123-30.",
        ]
    )


#: Records that must be dead-lettered as malformed, by what is wrong with them.
MALFORMED = {
    "empty title": "PMID- 99000001\nOWN - NLM\nSTAT- MEDLINE\nTI  -    \nDP  - 2003 Feb 15",
    "pmid not digits": "PMID- 99ABC\nTI  - A title that is fine.\nDP  - 2003",
}


def write_records(path: Path, records: Iterable[str]) -> Path:
    """Write records separated by blank lines, as PubMed exports them."""
    path.write_text("\n\n".join(records) + "\n", encoding="utf-8")
    return path
