"""MEDLINE dates: keep the raw string, derive a year and a best-effort ISO date.

Publication dates (DP) come in many legal shapes — ``2003 Feb 15``, ``1998 Jan-Feb``,
``2003 Winter``, ``2001 Dec 15-2002 Jan 3``, ``2003``, ``1999 Jul 13-19`` — and all are
valid: an unrecognised shape keeps its raw string with no derived date, it is never an error.
The derived date is the first day the string can mean.
"""

from __future__ import annotations

from datetime import date, datetime

#: Month abbreviations (and full names) to month numbers.
MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
#: Seasons to the month they start in (northern hemisphere, as PubMed sorts them).
SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}


def _year(token: str) -> int | None:
    if len(token) == 4 and token.isdigit():
        year = int(token)
        return year if 1000 <= year <= 2999 else None
    return None


def parse_publication_date(raw: str) -> tuple[int | None, date | None]:
    """(year, first day) of a DP string; (None, None) when no year can be read."""
    tokens = raw.replace("-", " - ").replace("/", " ").split()
    if not tokens:
        return None, None
    year = _year(tokens[0])
    if year is None:
        # Some records put the season or month first ("Winter 2003").
        year = next((y for y in map(_year, tokens) if y is not None), None)
        if year is None:
            return None, None
        tokens = [t for t in tokens if _year(t) != year]
    else:
        tokens = tokens[1:]
    month = 1
    day = 1
    if tokens and tokens[0] != "-":
        word = tokens[0].lower().rstrip(".,")
        if word in MONTHS:
            month = MONTHS[word]
            if len(tokens) > 1 and tokens[1].isdigit():
                day = int(tokens[1])
        elif word in SEASONS:
            month = SEASONS[word]
        elif word.isdigit() and 1 <= int(word) <= 12:
            month = int(word)
    try:
        return year, date(year, month, day)
    except ValueError:
        try:
            return year, date(year, month, 1)
        except ValueError:
            return year, None


def parse_compact_date(raw: str) -> date | None:
    """``20030402`` (DCOM, LR, DEP) as a date; None when it is not one."""
    text = raw.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def parse_stamp(raw: str) -> datetime | None:
    """``2003/02/01 04:00`` (EDAT, MHDA, CRDT, PHST) as a datetime; None when it is not one."""
    text = raw.strip()
    # Sliced by hand: strptime costs more than the rest of a record's dates together.
    try:
        if text[4] != "/" or text[7] != "/":
            return None
        year, month, day = int(text[:4]), int(text[5:7]), int(text[8:10])
        if len(text) >= 16 and text[13] == ":":
            return datetime(year, month, day, int(text[11:13]), int(text[14:16]))
        return datetime(year, month, day)
    except (ValueError, IndexError):
        return None


def split_history(raw: str) -> tuple[str, str | None]:
    """``2003/02/01 04:00 [pubmed]`` → (``2003/02/01 04:00``, ``pubmed``)."""
    text = raw.strip()
    if text.endswith("]") and "[" in text:
        stamp, _, status = text[:-1].rpartition("[")
        return stamp.strip(), status.strip() or None
    return text, None
