"""A generated corpus of realistic MEDLINE records for the benchmarks.

Records have the shape of real PubMed exports: 1 to 12 authors with affiliations and some
ORCIDs, an abstract of 100 to 300 words, 3 to 15 MeSH headings with qualifiers and major
flags, keywords, substances, grants, history dates and article ids. The generator is seeded,
so a run is repeatable, and streams to disk, so it makes corpora of any size in constant memory.

As in real exports, about half of the records hold characters beyond ASCII (names and places
with diacritics, symbols such as ± and ≥ in abstracts): text that is ASCII only would flatter
every contender's decoding, since Python keeps ASCII strings in their compact form.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

#: Seed of the default corpus, for repeatable benchmark runs.
DEFAULT_SEED = 20261125

_WORDS = (
    "immune response patients treatment cells protein expression disease clinical study "
    "results analysis significant increased reduced associated risk factors receptor gene "
    "mice model therapy outcome cohort trial randomized placebo controlled dose effect "
    "inflammation cytokine antibody lesion cortex neuronal signaling pathway mutation "
    "tumor growth survival mortality incidence prevalence children adults women men "
    "measured observed compared baseline follow-up months years higher lower levels"
).split()
_SURNAMES = "Smith Jones Garcia Chen Wang Mueller Rossi Sorensen Kim Nguyen Silva Ivanov".split()
#: Surnames with diacritics, taken for one author in :data:`ACCENTED_SHARE`.
_ACCENTED_SURNAMES = "Sørensen Müller García Çelik Nováková Łukasiewicz".split()
ACCENTED_SHARE = 0.08
#: The affiliation of an author with an accented surname, spelt as its institution spells it.
_ACCENTED_PLACE = "Institut für Immunologie, Charité - Universitätsmedizin Berlin, Germany."
_GIVEN = "Per Anna John Maria Wei Li Hans Sofia Jin Lucas Elena Omar".split()
_PLACES = (
    "Department of Neurology, Copenhagen University Hospital, Denmark.",
    "Department of Medicine, University of California, San Francisco, CA, USA.",
    "Institute of Immunology, Charite, Berlin, Germany.",
    "School of Public Health, Peking University, Beijing, China.",
)
_MESH = (
    "Humans",
    "Animals",
    "Mice",
    "Multiple Sclerosis",
    "Immunoglobulin G",
    "Disease Progression",
    "Central Nervous System",
    "Neoplasms",
    "Brain",
    "Risk Factors",
    "Child",
    "Adult",
)
_QUALIFIERS = ("therapy", "immunology", "pathology", "drug therapy", "metabolism", "genetics")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_TYPES = ("Journal Article", "Review", "Randomized Controlled Trial", "Comparative Study")


def _wrap(tag: str, text: str, width: int = 82) -> list[str]:
    """A tag line and its continuation lines, wrapped as PubMed wraps them."""
    lines: list[str] = []
    current = f"{tag:<4}- "
    for word in text.split():
        if len(current) + len(word) + 1 > width and current.strip():
            lines.append(current.rstrip())
            current = "      "
        current += word + " "
    lines.append(current.rstrip())
    return lines


#: Measurements as abstracts write them, with symbols beyond ASCII.
_MEASURES = ("(mean ± SD 4.2 ± 1.1)", "(≥ 18 years)", "(10 µg/kg)", "(37 °C)", "(P < 0.05)")


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def record(pmid: int, rng: random.Random) -> str:
    """One realistic MEDLINE record."""
    year = rng.randint(1975, 2025)
    month = rng.randrange(12)
    lines = [
        f"PMID- {pmid}",
        "OWN - NLM",
        "STAT- MEDLINE",
        f"DCOM- {year}{month + 1:02d}{rng.randint(1, 28):02d}",
        f"LR  - {min(year + rng.randint(0, 20), 2025)}"
        f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        f"IS  - {rng.randint(1000, 9999)}-{rng.randint(100, 999)}X (Print)",
        f"IS  - {rng.randint(1000, 9999)}-{rng.randint(100, 999)}X (Linking)",
        f"VI  - {rng.randint(1, 400)}",
        f"IP  - {rng.randint(1, 12)}",
        f"DP  - {year} {_MONTHS[month]} {rng.randint(1, 28)}",
    ]
    lines += _wrap("TI", _sentence(rng, rng.randint(8, 20)))
    lines.append(f"PG  - {rng.randint(1, 500)}-{rng.randint(501, 999)}")
    lines.append(f"LID - 10.{rng.randint(1000, 9999)}/j.bench.{pmid} [doi]")
    abstract = " ".join(_sentence(rng, rng.randint(12, 30)) for _ in range(rng.randint(6, 12)))
    if rng.random() < 0.15:
        abstract += f" Results {rng.choice(_MEASURES)} held."
    lines += _wrap("AB", abstract)
    for _ in range(rng.randint(1, 12)):
        accented = rng.random() < ACCENTED_SHARE
        surname = rng.choice(_ACCENTED_SURNAMES if accented else _SURNAMES)
        given = rng.choice(_GIVEN)
        lines.append(f"FAU - {surname}, {given}")
        lines.append(f"AU  - {surname} {given[0]}")
        if rng.random() < 0.3:
            lines.append(f"AUID- ORCID: 0000-000{rng.randint(1, 9)}-{rng.randint(1000, 9999)}-1234")
        lines += _wrap("AD", _ACCENTED_PLACE if accented else rng.choice(_PLACES))
    lines += ["LA  - eng"]
    lines += [f"GR  - R01 NS{rng.randint(10000, 99999)}/NS/NINDS NIH HHS/United States"]
    lines += [f"PT  - {t}" for t in rng.sample(_TYPES, rng.randint(1, 2))]
    lines += [
        f"DEP - {year}{month + 1:02d}{rng.randint(1, 28):02d}",
        "PL  - Netherlands",
        "TA  - J Neurol Sci",
        "JT  - Journal of the neurological sciences",
        "JID - 0375403",
        "RN  - 0 (Immunoglobulin G)",
        "SB  - IM",
    ]
    for heading in rng.sample(_MESH, rng.randint(3, min(12, len(_MESH)))):
        qualifiers = rng.sample(_QUALIFIERS, rng.randint(0, 2))
        parts = [("*" if rng.random() < 0.2 else "") + heading]
        parts += [("*" if rng.random() < 0.3 else "") + q for q in qualifiers]
        lines.append(f"MH  - {'/'.join(parts)}")
    lines += [f"OT  - {rng.choice(_WORDS)} {rng.choice(_WORDS)}" for _ in range(rng.randint(0, 5))]
    stamp = f"{year}/{month + 1:02d}/01 00:00"
    lines += [
        f"EDAT- {stamp}",
        f"MHDA- {stamp}",
        f"CRDT- {stamp}",
        f"PHST- {stamp} [pubmed]",
        f"PHST- {stamp} [medline]",
        f"AID - 10.{rng.randint(1000, 9999)}/j.bench.{pmid} [doi]",
        f"AID - S{rng.randint(10**9, 10**10 - 1)} [pii]",
        "PST - ppublish",
        f"SO  - J Neurol Sci. {year} {_MONTHS[month]};{rng.randint(1, 400)}:1-10.",
    ]
    return "\n".join(lines)


def iter_records(
    count: int, seed: int = DEFAULT_SEED, first_pmid: int = 10_000_000
) -> Iterator[str]:
    rng = random.Random(seed)
    for i in range(count):
        yield record(first_pmid + i, rng)


def write_corpus(path: Path, count: int, seed: int = DEFAULT_SEED) -> Path:
    """Write ``count`` records to ``path`` (blank-line separated), streaming."""
    with path.open("w", encoding="utf-8") as out:
        for text in iter_records(count, seed):
            out.write(text)
            out.write("\n\n")
    return path


def write_corpus_of_size(path: Path, min_bytes: int, seed: int = DEFAULT_SEED) -> int:
    """Write records until ``path`` holds at least ``min_bytes``; returns the record count."""
    written = count = 0
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        while written < min_bytes:
            text = record(10_000_000 + count, rng) + "\n\n"
            out.write(text)
            written += len(text)
            count += 1
    return count
