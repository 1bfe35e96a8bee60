//! A MEDLINE byte stream → raw records with their byte offsets, as
//! `worker.medline_text._Splitter` does it (that Python class is the reference; a
//! differential test holds the two equal). Fed chunk by chunk; memory is bounded by the
//! largest record plus one chunk.
//!
//! A record ends at a blank line or where the next one starts; a record starts at `PMID-`
//! (an optional space, then a digit) at the start of a line or, in collapsed text, after
//! whitespace inside a line that is not an indented continuation or another field.

use memchr::{memchr_iter, memmem};

use crate::fields::field_head;
use crate::pystr::is_blank;

/// Bytes of a UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";
/// Bytes looked at again once more data arrives, so that a record start split across two
/// chunks is found: len(b"PMID-  1").
const RESCAN: usize = 8;

/// Where each record goes: its offset in the stream and its bytes, blanks trimmed.
pub trait Emit: FnMut(usize, &[u8]) {}
impl<F: FnMut(usize, &[u8])> Emit for F {}

pub struct Splitter {
    buffer: Vec<u8>,
    /// Stream offset of `buffer[0]`.
    base: usize,
    /// First byte of the record being read (everything before it was yielded).
    start: usize,
    max_record_bytes: usize,
    /// Absolute offset from which to look for the next "PMID-".
    pmid_from: usize,
    /// The line whose verdict (may a "PMID-" inside it start a record?) was last worked
    /// out, by its absolute offset, and that verdict.
    line_start: Option<usize>,
    line_allows_records: bool,
    /// Length of a byte-order mark at the start of the stream (0 or 3).
    bom: usize,
    /// Whether the start of the stream is still to be looked at for a byte-order mark.
    first: bool,
}

/// Whether `head` (up to six bytes) is a field line's head: 2 to 4 capitals, spaces, "- ".
fn is_tag_line_head(head: &[u8]) -> bool {
    // A head that ends at the dash (the line's value is empty) does not count here.
    matches!(field_head(head), Some((_, value)) if head[value - 1] == b' ')
}

/// `\n[ \t\r\f\v]*\n` in `content` from `from`: (start, end) of the first match.
fn find_blank_line(content: &[u8], from: usize) -> Option<(usize, usize)> {
    for newline in memchr_iter(b'\n', &content[from..]).map(|at| from + at) {
        let mut next = newline + 1;
        while next < content.len() && matches!(content[next], b' ' | b'\t' | b'\r' | 0x0b | 0x0c) {
            next += 1;
        }
        if next < content.len() && content[next] == b'\n' {
            return Some((newline, next + 1));
        }
    }
    None
}

fn strip_start(data: &[u8]) -> &[u8] {
    let begin = data.iter().position(|b| !is_blank(*b)).unwrap_or(data.len());
    &data[begin..]
}

fn strip_end(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|b| !is_blank(*b)).map_or(0, |at| at + 1);
    &data[..end]
}

impl Splitter {
    pub fn new(max_record_bytes: usize) -> Splitter {
        Splitter {
            buffer: Vec::new(),
            base: 0,
            start: 0,
            max_record_bytes: max_record_bytes.max(2 * RESCAN),
            pmid_from: 0,
            line_start: None,
            line_allows_records: true,
            bom: 0,
            first: true,
        }
    }

    /// The records completed by `chunk`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl Emit) {
        self.buffer.extend_from_slice(chunk);
        if !self.look_for_bom(!chunk.is_empty()) {
            return;
        }
        let end = self.buffer.len();
        while let Some(at) = self.next_start(end) {
            self.cut(at, out);
        }
        if end - self.start > self.max_record_bytes {
            self.cut(end - RESCAN, out);
        }
        // Drop what has been yielded; keep the record being read.
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.base += self.start;
            self.start = 0;
        }
    }

    /// The records left at the end of the stream.
    pub fn finish(&mut self, out: &mut impl Emit) {
        self.look_for_bom(false);
        let end = self.buffer.len();
        while let Some(at) = self.next_start(end) {
            self.cut(at, out);
        }
        self.cut(self.buffer.len(), out);
    }

    /// False while too little of the stream is in to tell whether it starts with a BOM.
    fn look_for_bom(&mut self, more_to_come: bool) -> bool {
        if self.first {
            if self.buffer.len() < UTF8_BOM.len() && more_to_come {
                return false;
            }
            self.first = false;
            if self.buffer.starts_with(UTF8_BOM) {
                self.bom = UTF8_BOM.len();
            }
        }
        true
    }

    // A "PMID-" inside a line starts a record only in collapsed text. A line that is a
    // continuation (indented) or another field of a line-structured record never holds one.
    fn line_allows_records(&mut self, at: usize) -> bool {
        // Look back no further than the record being read, so the scan stays linear: if its
        // first byte is on this line, the verdict for this line is known already.
        let newline = self.buffer[self.start..at].iter().rposition(|b| *b == b'\n');
        let mut line_start = match newline {
            Some(found) => self.start + found + 1,
            None if self.base > 0 || self.start > 0 => return self.line_allows_records,
            None => 0,
        };
        let absolute = self.base + line_start;
        if self.line_start != Some(absolute) {
            if absolute == 0 {
                line_start += self.bom;
            }
            let head = &self.buffer[line_start.min(self.buffer.len())..];
            let head = &head[..head.len().min(6)];
            let indented = matches!(head.first(), Some(b' ' | b'\t'));
            let other_field = is_tag_line_head(head) && !head.starts_with(b"PMID");
            self.line_start = Some(absolute);
            self.line_allows_records = !(indented || other_field);
        }
        self.line_allows_records
    }

    /// Whether the "PMID-" at buffer position `at` (> 0) starts a record.
    fn is_record_start(&mut self, at: usize) -> bool {
        let buffer = &self.buffer;
        let absolute = self.base + at;
        let at_line_start = absolute == self.bom || buffer[at - 1] == b'\n';
        if !at_line_start && !is_blank(buffer[at - 1]) {
            return false;
        }
        // "PMID-", an optional space, a digit.
        let mut following = buffer[at + 5];
        if following == b' ' {
            following = buffer[at + 6];
        }
        if !following.is_ascii_digit() {
            return false;
        }
        if at_line_start {
            // This line begins with a record: PMIDs further along it start records too.
            self.line_start = Some(absolute);
            self.line_allows_records = true;
            return true;
        }
        self.line_allows_records(at)
    }

    /// Buffer position of the next record start before `end`.
    fn next_start(&mut self, end: usize) -> Option<usize> {
        let mut position = self.pmid_from.saturating_sub(self.base).max(self.start + 1);
        loop {
            let found = if position < end {
                memmem::find(&self.buffer[position..end], b"PMID-").map(|at| position + at)
            } else {
                None
            };
            match found {
                Some(at) if at + 7 <= end => {
                    if self.is_record_start(at) {
                        self.pmid_from = self.base + at + 5;
                        return Some(at);
                    }
                    position = at + 5;
                }
                // Nothing (complete) here: look again at the tail once more bytes are in.
                Some(at) => {
                    self.pmid_from = self.base + at;
                    return None;
                }
                None => {
                    self.pmid_from = self.base + position.max(end.saturating_sub(RESCAN));
                    return None;
                }
            }
        }
    }

    /// The records in `buffer[start..stop]`: one, or several where blank lines part it.
    fn cut(&mut self, stop: usize, out: &mut impl Emit) {
        let mut begin = self.base + self.start;
        let mut segment = &self.buffer[self.start..stop];
        self.start = stop;
        if begin == 0 && self.bom > 0 {
            segment = &segment[self.bom.min(segment.len())..];
            begin = self.bom;
        }
        let content = strip_end(segment);
        if content.is_empty() {
            return;
        }
        let mut position = 0;
        while let Some((blank_start, blank_end)) = find_blank_line(content, position) {
            record(&content[position..blank_start], begin + position, out);
            position = blank_end - 1;
        }
        record(&content[position..], begin + position, out);
    }
}

fn record(data: &[u8], offset: usize, out: &mut impl Emit) {
    let text = strip_start(data);
    if !text.is_empty() {
        out(offset + data.len() - text.len(), strip_end(text));
    }
}
