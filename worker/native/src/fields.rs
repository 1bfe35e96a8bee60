//! One raw record → its `(tag, value)` fields, as `worker.medline_text.parse_fields` gives
//! them (that Python function is the reference; a differential test holds the two equal).
//!
//! Line-structured records: a line is a tag padded to four columns, `- ` and the value; any
//! other line continues the previous value. Collapsed records (no line structure): fields
//! start only at known tags written as `TAG - `. In both, every run of ASCII whitespace in a
//! value becomes one space and values are trimmed. Linear in the record's length.

use std::borrow::Cow;
use std::collections::HashSet;

use memchr::{memchr, memchr_iter};

use crate::pystr::{head, is_blank, strip_blanks};
use crate::swar::has_single_spaces_only;

/// A field: its tag and its value.
pub type Field<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Why a text is not a MEDLINE record, with the quoted text the message shows.
pub enum ParseError {
    Empty,
    NoTagOnFirstLine(String),
    TextBeforeFirstTag(String),
    NoTagFound(String),
    FirstNotPmid(String),
}

impl ParseError {
    /// (kind, quoted text): Python words the message (`worker.medline_text.parse_error`).
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            ParseError::Empty => ("empty", ""),
            ParseError::NoTagOnFirstLine(quote) => ("no_tag_on_first_line", quote),
            ParseError::TextBeforeFirstTag(quote) => ("text_before_first_tag", quote),
            ParseError::NoTagFound(quote) => ("no_tag_found", quote),
            ParseError::FirstNotPmid(tag) => ("first_not_pmid", tag),
        }
    }
}

/// What the parser needs to know of the format.
pub struct Format {
    /// The MEDLINE tag set: in collapsed text only these start a field.
    pub known_tags: HashSet<String>,
    /// Characters of a record quoted in an error message.
    pub quote_limit: usize,
}

/// The record's fields in order; the first is PMID.
pub fn parse_fields<'a>(format: &'a Format, text: &'a str) -> Result<Vec<Field<'a>>, ParseError> {
    let body = strip_blanks(text);
    let fields = if memchr(b'\r', body.as_bytes()).is_some() {
        let unix = body.replace("\r\n", "\n").replace('\r', "\n");
        into_owned(split_fields(format, &unix)?)
    } else {
        split_fields(format, body)?
    };
    if fields[0].0 != "PMID" {
        return Err(ParseError::FirstNotPmid(fields[0].0.to_string()));
    }
    Ok(fields)
}

fn into_owned(fields: Vec<Field<'_>>) -> Vec<Field<'static>> {
    fields
        .into_iter()
        .map(|(tag, value)| (Cow::Owned(tag.into_owned()), Cow::Owned(value.into_owned())))
        .collect()
}

fn split_fields<'a>(format: &'a Format, text: &'a str) -> Result<Vec<Field<'a>>, ParseError> {
    // The lines that are not blank, each with its field head if it has one.
    let mut lines: Vec<Line<'a>> = Vec::with_capacity(128);
    let mut start = 0;
    let mut structured = 0; // lines after the first that start with a tag or an indent
    for end in memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len())) {
        // Newlines are ASCII: every cut falls on a character boundary.
        let line = &text[start..end];
        start = end + 1;
        if is_blank_line(line) {
            continue;
        }
        let head = field_head(line.as_bytes());
        if !lines.is_empty() && (head.is_some() || line.starts_with([' ', '\t'])) {
            structured += 1;
        }
        lines.push((line, head));
    }
    if lines.is_empty() {
        return Err(ParseError::Empty);
    }
    let rest = lines.len() - 1;
    // One line, or lines that mostly do not start with a tag or an indent (collapsed text
    // wrapped at some width): no line structure to go by, split at known tags.
    if rest == 0 || 2 * structured < rest {
        let mut joined = String::with_capacity(text.len());
        let mut pending = false;
        for (line, _) in &lines {
            push_collapsed(&mut joined, line, &mut pending);
            pending = true;
        }
        return collapsed_fields(format, &joined).map(into_owned);
    }
    line_fields(format, &lines)
}

/// A line and its field head (see [`field_head`]).
type Line<'a> = (&'a str, Option<(usize, usize)>);

/// (tag length, start of the value) when `line` starts with a field head: 2 to 4 capitals,
/// optional spaces, `-`, then a space or the end of the line.
pub fn field_head(line: &[u8]) -> Option<(usize, usize)> {
    let bytes = line;
    let letters = bytes.iter().take(5).take_while(|b| b.is_ascii_uppercase()).count();
    if !(2..=4).contains(&letters) {
        return None;
    }
    let mut at = letters;
    while at < bytes.len() && bytes[at] == b' ' {
        at += 1;
    }
    if at == bytes.len() || bytes[at] != b'-' {
        return None;
    }
    at += 1;
    if at == bytes.len() {
        Some((letters, at))
    } else if bytes[at] == b' ' {
        Some((letters, at + 1))
    } else {
        None
    }
}

/// Append `piece` to `out` with every run of blanks as one space; a space owed from before
/// (`pending`) is written only if text follows, so the result is trimmed.
fn push_collapsed(out: &mut String, piece: &str, pending: &mut bool) {
    let bytes = piece.as_bytes();
    let begin = bytes.iter().position(|b| !is_blank(*b)).unwrap_or(bytes.len());
    if begin > 0 {
        *pending = true;
    }
    if begin == bytes.len() {
        return;
    }
    let end = bytes.iter().rposition(|b| !is_blank(*b)).map_or(begin, |at| at + 1);
    // Blanks are ASCII, so every cut below falls on a character boundary.
    let core = &piece[begin..end];
    if has_single_spaces_only(core.as_bytes()) {
        // The usual case: words and single spaces.
        if *pending && !out.is_empty() {
            out.push(' ');
        }
        out.push_str(core);
    } else {
        let core_bytes = core.as_bytes();
        let mut at = 0;
        while at < core_bytes.len() {
            if is_blank(core_bytes[at]) {
                *pending = true;
                at += 1;
                continue;
            }
            let start = at;
            while at < core_bytes.len() && !is_blank(core_bytes[at]) {
                at += 1;
            }
            if *pending && !out.is_empty() {
                out.push(' ');
            }
            *pending = false;
            out.push_str(&core[start..at]);
        }
    }
    *pending = end < bytes.len();
}

/// Whether `value` is already as a value should be: no blank but single inner spaces.
fn is_clean(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.first() != Some(&b' ') && bytes.last() != Some(&b' ') && has_single_spaces_only(bytes)
}

/// Whether a line holds nothing but blanks.
fn is_blank_line(line: &str) -> bool {
    line.bytes().all(is_blank)
}

fn line_fields<'a>(format: &'a Format, lines: &[Line<'a>]) -> Result<Vec<Field<'a>>, ParseError> {
    let mut fields: Vec<Field<'a>> = Vec::with_capacity(lines.len());
    // The value being read: its first piece, and the joined text once a second one comes.
    let mut first: Option<&'a str> = None;
    let mut joined: Option<(String, bool)> = None;
    let mut tag: &'a str = "";
    let finish = |tag: &'a str, first: &'a str, joined: Option<(String, bool)>| -> Field<'a> {
        let value = match joined {
            Some((text, _)) => Cow::Owned(text),
            None if is_clean(first) => Cow::Borrowed(first),
            None => {
                let mut text = String::with_capacity(first.len());
                push_collapsed(&mut text, first, &mut false);
                Cow::Owned(text)
            }
        };
        (Cow::Borrowed(tag), value)
    };
    for &(line, field_start) in lines {
        if let Some((letters, value_at)) = field_start {
            if let Some(piece) = first.take() {
                fields.push(finish(tag, piece, joined.take()));
            }
            tag = &line[..letters];
            first = Some(&line[value_at..]);
        } else if let Some(piece) = first {
            let (text, pending) = joined.get_or_insert_with(|| {
                let mut text = String::with_capacity(piece.len() + line.len() + 1);
                let mut pending = false;
                push_collapsed(&mut text, piece, &mut pending);
                (text, true)
            });
            *pending = true;
            push_collapsed(text, line, pending);
        } else {
            return Err(ParseError::NoTagOnFirstLine(head(line, format.quote_limit).to_string()));
        }
    }
    if let Some(piece) = first {
        fields.push(finish(tag, piece, joined));
    }
    Ok(fields)
}

/// (start of the tag, end of the match) of the collapsed tag that ends at the dash at
/// `dash`, starting no earlier than `from`: 4 capitals then `-`, or 2-3 capitals, a space
/// and `-`; followed by a space or the end of the text.
fn collapsed_tag_at(bytes: &[u8], dash: usize, from: usize) -> Option<(usize, usize)> {
    let followed = dash + 1 == bytes.len() || bytes[dash + 1] == b' ';
    if !followed {
        return None;
    }
    let capitals = |start: usize, end: usize| bytes[start..end].iter().all(u8::is_ascii_uppercase);
    // The leftmost start wins, as in a left-to-right regular-expression scan.
    for start in dash.saturating_sub(4).max(from)..dash.saturating_sub(2).max(from) {
        let length = dash - start;
        let four = length == 4 && capitals(start, dash);
        let padded = (length == 3 || length == 4)
            && bytes[dash - 1] == b' '
            && capitals(start, dash - 1);
        if four || padded {
            return Some((start, dash + 1));
        }
    }
    None
}

fn collapsed_fields<'a>(format: &'a Format, text: &'a str) -> Result<Vec<Field<'a>>, ParseError> {
    let bytes = text.as_bytes();
    let mut fields: Vec<Field<'a>> = Vec::new();
    let mut tag: Option<&'a str> = None;
    let mut value_start = 0;
    let mut scanned = 0; // where the previous match ended: matches do not overlap
    let mut search = 0;
    while let Some(found) = text[search..].find('-') {
        let dash = search + found;
        search = dash + 1;
        let (at, end) = match collapsed_tag_at(bytes, dash, scanned) {
            Some(found) => found,
            None => continue,
        };
        scanned = end;
        if at > 0 && bytes[at - 1] != b' ' {
            continue; // "XIVIG - ", "(AB - ": part of a word
        }
        let candidate = text[at..dash].trim_end_matches(' ');
        let known = match format.known_tags.get(candidate) {
            Some(known) => known,
            None => continue,
        };
        match tag {
            Some(previous) => {
                fields.push((Cow::Borrowed(previous), Cow::Borrowed(text[value_start..at].trim_matches(' '))))
            }
            None if !text[..at].trim_matches(' ').is_empty() => {
                let quoted = head(&text[..at], format.quote_limit);
                return Err(ParseError::TextBeforeFirstTag(quoted.to_string()));
            }
            None => {}
        }
        tag = Some(known.as_str());
        value_start = end;
    }
    match tag {
        Some(last) => {
            fields.push((Cow::Borrowed(last), Cow::Borrowed(text[value_start..].trim_matches(' '))));
            Ok(fields)
        }
        None => Err(ParseError::NoTagFound(head(text, format.quote_limit).to_string())),
    }
}
