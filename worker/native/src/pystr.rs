//! Python's string semantics where the parser relies on them: which characters
//! `str.split()` and `str.strip()` (no arguments) treat as whitespace.

/// Whether `c` is whitespace to Python's `str.isspace()`: Rust's `White_Space`
/// plus the information separators U+001C..U+001F, which Python counts too.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `s.split()`.
pub fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|part| !part.is_empty())
}

/// ASCII whitespace as the MEDLINE format knows it: the only blanks between words.
pub fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// `s.strip(" \t\r\n\f\v")`.
pub fn strip_blanks(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_blank(c as u8))
}

/// The first `limit` characters of `s`.
pub fn head(s: &str, limit: usize) -> &str {
    match s.char_indices().nth(limit) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}
