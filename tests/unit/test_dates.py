"""MEDLINE date shapes: raw kept, year and first day derived, never an error."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.dates import parse_compact_date, parse_publication_date, parse_stamp, split_history


@pytest.mark.parametrize(
    ("raw", "year", "first_day"),
    [
        ("2003 Feb 15", 2003, date(2003, 2, 15)),
        ("1998 Jan-Feb", 1998, date(1998, 1, 1)),
        ("2003 Winter", 2003, date(2003, 12, 1)),
        ("2000 Spring-Summer", 2000, date(2000, 3, 1)),
        ("2001 Dec 15-2002 Jan 3", 2001, date(2001, 12, 15)),
        ("1999 Jul 13-19", 1999, date(1999, 7, 13)),
        ("2003", 2003, date(2003, 1, 1)),
        ("2003 Feb", 2003, date(2003, 2, 1)),
        ("2000 Dec-2001 Jan", 2000, date(2000, 12, 1)),
        ("2019 Feb 30", 2019, date(2019, 2, 1)),
        ("Winter 2003", 2003, date(2003, 12, 1)),
        ("in press", None, None),
    ],
)
def test_publication_date_shapes(raw: str, year: int | None, first_day: date | None) -> None:
    assert parse_publication_date(raw) == (year, first_day)


def test_compact_and_stamped_dates() -> None:
    assert parse_compact_date("20030402") == date(2003, 4, 2)
    assert parse_compact_date("20031302") is None
    assert parse_compact_date("2003") is None
    assert parse_stamp("2003/02/01 04:00") == datetime(2003, 2, 1, 4, 0)
    assert parse_stamp("2003/02/01") == datetime(2003, 2, 1)
    assert parse_stamp("yesterday") is None
    assert split_history("2003/02/01 04:00 [pubmed]") == ("2003/02/01 04:00", "pubmed")
    assert split_history("2003/02/01 04:00") == ("2003/02/01 04:00", None)


@given(st.text(max_size=60))
def test_no_date_string_raises(raw: str) -> None:
    parse_publication_date(raw)
    parse_compact_date(raw)
    parse_stamp(raw)
    split_history(raw)
