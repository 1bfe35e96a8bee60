//! MEDLINE dates to the ISO text that is indexed, as `worker.dates` derives them (that
//! module is the reference). A string of no known shape gives `None`; the caller keeps it.

use crate::pystr::{split, strip};

/// Earliest and latest year taken for a publication year.
const YEAR_RANGE: (u32, u32) = (1000, 2999);

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Whether year-month-day is a day of the proleptic Gregorian calendar (years 1 to 9999).
fn is_date(year: u32, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=9999).contains(&year) && (1..=days).contains(&day)
}

fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `20030402` (DCOM, LR, DEP) → `2003-04-02`.
pub fn compact_date_iso(raw: &str) -> Option<String> {
    let text = strip(raw);
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, month, day) = (digits(&text[..4])?, digits(&text[4..6])?, digits(&text[6..])?);
    if !is_date(year, month, day) {
        return None;
    }
    let mut iso = String::with_capacity(10);
    for (n, part) in [&text[..4], &text[4..6], &text[6..]].iter().enumerate() {
        if n > 0 {
            iso.push('-');
        }
        iso.push_str(part);
    }
    Some(iso)
}

/// `2003/02/01 04:00` or `2003/02/01` (EDAT, MHDA, CRDT, PHST) → `2003-02-01T04:00:00`.
pub fn stamp_iso(raw: &str) -> Option<String> {
    let text = strip(raw);
    // Every position of both shapes is a digit or a separator, so ASCII is required.
    let bytes = text.as_bytes();
    if !text.is_ascii() || (bytes.len() != 10 && bytes.len() != 16) {
        return None;
    }
    if bytes[4] != b'/' || bytes[7] != b'/' {
        return None;
    }
    let (year, month, day) = (digits(&text[..4])?, digits(&text[5..7])?, digits(&text[8..10])?);
    let (hour, minute) = if bytes.len() == 16 {
        if bytes[10] != b' ' || bytes[13] != b':' {
            return None;
        }
        (digits(&text[11..13])?, digits(&text[14..16])?)
    } else {
        (0, 0)
    };
    if !is_date(year, month, day) || hour > 23 || minute > 59 {
        return None;
    }
    // Written by hand: format! costs more than the rest of the function.
    let mut iso = String::with_capacity(19);
    iso.push_str(&text[..4]);
    iso.push('-');
    iso.push_str(&text[5..7]);
    iso.push('-');
    iso.push_str(&text[8..10]);
    iso.push('T');
    push_two_digits(&mut iso, hour);
    iso.push(':');
    push_two_digits(&mut iso, minute);
    iso.push_str(":00");
    Some(iso)
}

/// `2003/02/01 04:00 [pubmed]` → (`pubmed`, `2003-02-01T04:00:00`); None when the date
/// cannot be read.
pub fn history_iso(raw: &str) -> Option<(Option<&str>, String)> {
    let text = strip(raw);
    let (stamp, status) = if text.ends_with(']') && text.contains('[') {
        let inner = &text[..text.len() - 1];
        let at = inner.rfind('[').unwrap_or(0);
        let status = strip(&inner[at + 1..]);
        (strip(&inner[..at]), if status.is_empty() { None } else { Some(status) })
    } else {
        (text, None)
    };
    stamp_iso(stamp).map(|moment| (status, moment))
}

fn year_of(token: &str) -> Option<u32> {
    if token.len() != 4 {
        return None;
    }
    digits(token).filter(|year| (YEAR_RANGE.0..=YEAR_RANGE.1).contains(year))
}

fn month_of(word: &str) -> Option<u32> {
    Some(match word {
        "jan" | "january" => 1,
        "feb" | "february" => 2,
        "mar" | "march" => 3,
        "apr" | "april" => 4,
        "may" => 5,
        "jun" | "june" => 6,
        "jul" | "july" => 7,
        "aug" | "august" => 8,
        "sep" | "sept" | "september" => 9,
        "oct" | "october" => 10,
        "nov" | "november" => 11,
        "dec" | "december" => 12,
        _ => return None,
    })
}

fn season_of(word: &str) -> Option<u32> {
    Some(match word {
        "spring" => 3,
        "summer" => 6,
        "fall" | "autumn" => 9,
        "winter" => 12,
        _ => return None,
    })
}

/// A number written in ASCII digits, however many leading zeros, if it is at most 99.
fn small_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = text.trim_start_matches('0');
    if significant.len() > 2 {
        return None;
    }
    Some(significant.parse().unwrap_or(0))
}

fn push_two_digits(iso: &mut String, number: u32) {
    iso.push(char::from(b'0' + (number / 10 % 10) as u8));
    iso.push(char::from(b'0' + (number % 10) as u8));
}

/// (year, ISO first day) of a DP string: `2003 Feb 15`, `1998 Jan-Feb`, `2003 Winter`,
/// `2001 Dec 15-2002 Jan 3`, `Winter 2003`, ...; (None, None) when no year can be read.
pub fn publication_date_iso(raw: &str) -> (Option<u32>, Option<String>) {
    let spaced = raw.replace('-', " - ").replace('/', " ");
    let all: Vec<&str> = split(&spaced).collect();
    if all.is_empty() {
        return (None, None);
    }
    let (year, tokens): (u32, Vec<&str>) = match year_of(all[0]) {
        Some(year) => (year, all[1..].to_vec()),
        None => match all.iter().find_map(|token| year_of(token)) {
            // Some records put the season or month first ("Winter 2003").
            Some(year) => {
                (year, all.iter().copied().filter(|token| year_of(token) != Some(year)).collect())
            }
            None => return (None, None),
        },
    };
    let mut month = 1;
    let mut day = 1;
    if let Some(first) = tokens.first().filter(|token| **token != "-") {
        // Non-ASCII letters never lower-case into a month or season name.
        let word = first.to_ascii_lowercase();
        let word = word.trim_end_matches(['.', ',']);
        if let Some(number) = month_of(word) {
            month = number;
            let following = tokens.get(1).copied().unwrap_or("");
            if following.len() <= 2 {
                if let Some(number) = digits(following) {
                    day = number;
                }
            }
        } else if let Some(number) = season_of(word) {
            month = number;
        } else if let Some(number) = small_number(word).filter(|n| (1..=12).contains(n)) {
            month = number;
        }
    }
    if !is_date(year, month, day) {
        day = 1; // "2019 Feb 30": the month is still right
    }
    (Some(year), Some(format!("{:04}-{:02}-{:02}", year, month, day)))
}
