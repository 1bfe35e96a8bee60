"""MEDLINE date shapes: raw kept, year and first day derived, never an error."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.dates import (
    compact_date_iso,
    history_iso,
    parse_compact_date,
    parse_publication_date,
    parse_stamp,
    publication_date_iso,
    split_history,
    stamp_iso,
)

#: Every DP shape PubMed uses, with the year and first day it means.
PUBLICATION_DATES = [
    ("2003 Feb 15", 2003, date(2003, 2, 15)),
    ("1998 Jan-Feb", 1998, date(1998, 1, 1)),
    ("2003 Winter", 2003, date(2003, 12, 1)),
    ("2001 Dec 15-2002 Jan 3", 2001, date(2001, 12, 15)),
    ("2003", 2003, date(2003, 1, 1)),
    ("2003 Feb", 2003, date(2003, 2, 1)),
    ("2000 Spring-Summer", 2000, date(2000, 3, 1)),
    ("2009 Fall", 2009, date(2009, 9, 1)),
    ("1999 Jul 13-19", 1999, date(1999, 7, 13)),
    ("2015 May 28-Jun 3", 2015, date(2015, 5, 28)),
    ("2000 Dec-2001 Jan", 2000, date(2000, 12, 1)),
    ("2012 Sep-Oct", 2012, date(2012, 9, 1)),
    ("1975-1976", 1975, date(1975, 1, 1)),
    ("2016 Sep/Oct", 2016, date(2016, 9, 1)),
    ("2019 Feb 30", 2019, date(2019, 2, 1)),  # no such day: the month still holds
    ("Winter 2003", 2003, date(2003, 12, 1)),
    ("2004 September", 2004, date(2004, 9, 1)),
    ("in press", None, None),
    ("", None, None),
]


@pytest.mark.parametrize(("raw", "year", "first_day"), PUBLICATION_DATES)
def test_publication_date_shapes(raw: str, year: int | None, first_day: date | None) -> None:
    assert parse_publication_date(raw) == (year, first_day)
    assert publication_date_iso(raw) == (year, first_day.isoformat() if first_day else None)


def test_compact_dates() -> None:
    assert parse_compact_date("20030402") == date(2003, 4, 2)
    assert compact_date_iso("20030402") == "2003-04-02"
    full_width = "".join(chr(0xFF10 + int(d)) for d in "20030402")  # digits, but not ASCII
    for bad in ("20031302", "20030230", "2003", "2003-04-02", full_width, ""):
        assert parse_compact_date(bad) is None and compact_date_iso(bad) is None, bad


def test_stamps_and_history() -> None:
    assert parse_stamp("2003/02/01 04:00") == datetime(2003, 2, 1, 4, 0)
    assert parse_stamp("2003/02/01") == datetime(2003, 2, 1)
    assert stamp_iso("2003/02/01 04:00") == "2003-02-01T04:00:00"
    assert stamp_iso("2003/02/01") == "2003-02-01T00:00:00"
    for bad in ("yesterday", "2003/02/30 04:00", "2003/02/01 25:00", "2003-02-01 04:00", ""):
        assert parse_stamp(bad) is None and stamp_iso(bad) is None, bad
    assert split_history("2003/02/01 04:00 [pubmed]") == ("2003/02/01 04:00", "pubmed")
    assert split_history("2003/02/01 04:00") == ("2003/02/01 04:00", None)
    assert history_iso("2019/03/14 00:00 [received]") == ("received", "2019-03-14T00:00:00")
    assert history_iso("2019/03/14 00:00") == (None, "2019-03-14T00:00:00")
    assert history_iso("soon [received]") is None


@given(st.text(max_size=40))
def test_no_date_string_raises_and_cached_answers_agree(raw: str) -> None:
    year, day = parse_publication_date(raw)
    assert publication_date_iso(raw) == (year, day.isoformat() if day else None)
    assert day is None or day.year == year
    compact = parse_compact_date(raw)
    assert compact_date_iso(raw) == (compact.isoformat() if compact else None)
    stamp = parse_stamp(raw)
    assert stamp_iso(raw) == (stamp.isoformat() if stamp else None)
    split_history(raw)
    history_iso(raw)


@given(st.dates(min_value=date(1000, 1, 1), max_value=date(2999, 12, 31)))
def test_every_real_day_reads_back_in_every_shape(day: date) -> None:
    assert parse_compact_date(day.strftime("%Y%m%d")) == day
    assert parse_stamp(day.strftime("%Y/%m/%d 13:45")) == datetime(
        day.year, day.month, day.day, 13, 45
    )
    assert parse_publication_date(f"{day.year} {day.strftime('%b')} {day.day}") == (day.year, day)
