//! Eight bytes at a time: where the hot loops look for the few bytes that need work (blanks
//! other than single spaces; characters JSON escapes), so that plain text is skipped fast.

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Each byte of `x` repeated across a word.
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// The high bit of each byte of `x` that is zero, and of no other (exact, no carries).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// The high bit of each byte below 0x20 (control characters, among them every blank but
/// the space).
#[inline]
fn control_bytes(x: u64) -> u64 {
    zero_bytes(x & splat(0xe0))
}

#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buffer)
}

/// Position of the first byte JSON must escape (`"`, `\`, a control character), or None.
pub fn find_json_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + 8 <= bytes.len() {
        let x = word(bytes, at);
        let mask = zero_bytes(x ^ splat(b'"')) | zero_bytes(x ^ splat(b'\\')) | control_bytes(x);
        if mask != 0 {
            return Some(at + (mask.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    (at..bytes.len()).find(|&i| matches!(bytes[i], b'"' | b'\\' | 0x00..=0x1f))
}

/// Whether `bytes` has no control character and no two spaces in a row: text whose blanks
/// are single spaces already.
pub fn has_single_spaces_only(bytes: &[u8]) -> bool {
    let mut at = 0;
    let mut space_before = false; // the last byte of the previous word was a space
    while at + 8 <= bytes.len() {
        let x = word(bytes, at);
        let spaces = zero_bytes(x ^ splat(b' '));
        if control_bytes(x) != 0
            || spaces & (spaces >> 8) != 0
            || (space_before && spaces & 0x80 != 0)
        {
            return false;
        }
        space_before = spaces >> 63 != 0;
        at += 8;
    }
    for &byte in &bytes[at..] {
        let space = byte == b' ';
        if byte < 0x20 || (space && space_before) {
            return false;
        }
        space_before = space;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_escapes_anywhere() {
        let text = b"abcdefghijklmnopqrstuvwxyz";
        assert_eq!(find_json_escape(text, 0), None);
        for at in 0..text.len() {
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                let mut copy = text.to_vec();
                copy[at] = special;
                assert_eq!(find_json_escape(&copy, 0), Some(at));
            }
        }
        assert_eq!(find_json_escape("é\u{7f}ü".as_bytes(), 0), None);
    }

    #[test]
    fn single_spaces() {
        for text in ["", "a", "a b c", "word word word word word", "a b\u{a0}\u{a0}c"] {
            assert!(has_single_spaces_only(text.as_bytes()), "{text:?}");
        }
        let base = "abcdefghijklmnopqrstuvwxyz".to_string();
        for at in 0..base.len() - 1 {
            let mut two = base.clone().into_bytes();
            two[at] = b' ';
            two[at + 1] = b' ';
            assert!(!has_single_spaces_only(&two), "{at}");
            let mut tab = base.clone().into_bytes();
            tab[at] = b'\t';
            assert!(!has_single_spaces_only(&tab), "{at}");
        }
    }
}
