"""MEDLINE dates: keep the raw string, derive a year and a best-effort ISO date.

Shapes, all legal, none an error:

- DP (publication date): ``2003 Feb 15``, ``1998 Jan-Feb``, ``2003 Winter``,
  ``2001 Dec 15-2002 Jan 3``, ``2003``, ``2003 Feb``, ``2000 Spring-Summer``,
  ``1999 Jul 13-19``, ``Winter 2003``. The derived date is the first day the string can mean;
  seasons start in their northern-hemisphere month (Spring March, Summer June, Fall
  September, Winter December). No year, no date: the raw string alone is kept.
- DCOM, LR, DEP: ``20030402``.
- EDAT, MHDA, CRDT: ``2003/02/01 04:00`` (or without the time); PHST the same followed by its
  status, ``2003/02/01 04:00 [pubmed]``.

A string of no known shape gives ``None`` where a date would be; callers keep the raw text.
The ``*_iso`` helpers give the ISO text that goes into the indexed JSON, and remember recent
answers: the same few dates recur across a file (every record of a daily update shares its
EDAT), so most calls are one dictionary lookup.
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
#: Earliest and latest year taken for a publication year; anything else is not a year.
YEAR_RANGE = (1000, 2999)
#: Entries each remembered-answer table keeps before it starts afresh (bounds memory).
CACHE_SIZE = 20_000


def _year(token: str) -> int | None:
    if len(token) == 4 and token.isascii() and token.isdigit():
        year = int(token)
        return year if YEAR_RANGE[0] <= year <= YEAR_RANGE[1] else None
    return None


def parse_publication_date(raw: str) -> tuple[int | None, date | None]:
    """(year, first day) of a DP string.

    :param raw: the DP value, e.g. ``2001 Dec 15-2002 Jan 3``.
    :returns: ``(None, None)`` when no year can be read; ``(year, None)`` when a year can but
        no day can be built from it. Never raises.
    """
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
            following = tokens[1] if len(tokens) > 1 else ""
            if len(following) <= 2 and following.isascii() and following.isdigit():
                day = int(following)
        elif word in SEASONS:
            month = SEASONS[word]
        elif word.isascii() and word.isdigit() and 1 <= int(word) <= 12:
            month = int(word)
    try:
        return year, date(year, month, day)
    except ValueError:  # "2019 Feb 30": the month is still right
        return year, date(year, month, 1)


def parse_compact_date(raw: str) -> date | None:
    """``20030402`` (DCOM, LR, DEP) as a date; None when it is not one. Never raises."""
    text = raw.strip()
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def parse_stamp(raw: str) -> datetime | None:
    """``2003/02/01 04:00`` or ``2003/02/01`` (EDAT, MHDA, CRDT, PHST) as a datetime; None
    when it is not one. Never raises."""
    text = raw.strip()
    # Sliced by hand: strptime costs more than the rest of a record's dates together.
    if len(text) not in (10, 16) or text[4:5] != "/" or text[7:8] != "/":
        return None
    digits = text[:4] + text[5:7] + text[8:10]
    if len(text) == 16:
        if text[10] != " " or text[13] != ":":
            return None
        digits += text[11:13] + text[14:16]
    if not digits.isascii() or not digits.isdigit():
        return None
    try:
        if len(text) == 16:
            return datetime(
                int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16])
            )
        return datetime(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return None


def split_history(raw: str) -> tuple[str, str | None]:
    """``2003/02/01 04:00 [pubmed]`` → (``2003/02/01 04:00``, ``pubmed``). Never raises."""
    text = raw.strip()
    if text.endswith("]") and "[" in text:
        stamp, _, status = text[:-1].rpartition("[")
        return stamp.strip(), status.strip() or None
    return text, None


# --- cached ISO forms for the indexed JSON --------------------------------------------------

_PUBLICATION: dict[str, tuple[int | None, str | None]] = {}
_COMPACT: dict[str, str | None] = {}
_STAMP: dict[str, str | None] = {}
_HISTORY: dict[str, tuple[str | None, str] | None] = {}


def _remember(table: dict, key: str, value):  # type: ignore[no-untyped-def]
    if len(table) >= CACHE_SIZE:
        table.clear()
    table[key] = value
    return value


def publication_date_iso(raw: str) -> tuple[int | None, str | None]:
    """(year, ISO first day) of a DP string, as :func:`parse_publication_date`."""
    found = _PUBLICATION.get(raw)
    if found is not None:
        return found
    year, day = parse_publication_date(raw)
    return _remember(_PUBLICATION, raw, (year, day.isoformat() if day else None))


def compact_date_iso(raw: str) -> str | None:
    """``20030402`` → ``2003-04-02``; None when it is not a date."""
    try:
        return _COMPACT[raw]
    except KeyError:
        day = parse_compact_date(raw)
        return _remember(_COMPACT, raw, day.isoformat() if day else None)


def stamp_iso(raw: str) -> str | None:
    """``2003/02/01 04:00`` → ``2003-02-01T04:00:00``; None when it is not a date."""
    try:
        return _STAMP[raw]
    except KeyError:
        moment = parse_stamp(raw)
        return _remember(_STAMP, raw, moment.isoformat() if moment else None)


def history_iso(raw: str) -> tuple[str | None, str] | None:
    """``2003/02/01 04:00 [pubmed]`` → (``pubmed``, ``2003-02-01T04:00:00``); None when the
    date cannot be read."""
    try:
        return _HISTORY[raw]
    except KeyError:
        stamp, status = split_history(raw)
        moment = stamp_iso(stamp)
        return _remember(_HISTORY, raw, None if moment is None else (status, moment))
