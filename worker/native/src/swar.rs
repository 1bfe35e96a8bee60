//! Sixteen (SSE2) or eight bytes at a time: where the hot loops look for the few bytes that
//! need work (blanks other than single spaces; characters JSON escapes), so that plain text
//! is skipped fast.

#[cfg(not(target_arch = "x86_64"))]
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Each byte of `x` repeated across a word.
#[cfg(not(target_arch = "x86_64"))]
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// The high bit of each byte of `x` that is zero, and of no other (exact, no carries).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

#[cfg(not(target_arch = "x86_64"))]
/// The high bit of each byte below 0x20 (control characters, among them every blank but
/// the space).
#[inline]
fn control_bytes(x: u64) -> u64 {
    zero_bytes(x & splat(0xe0))
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buffer)
}

/// Position of the first byte JSON must escape (`"`, `\`, a control character), or None.
pub fn find_json_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of x86_64: 16 bytes a step.
        while at + 16 <= bytes.len() {
            let mask = sse2::json_escapes(&bytes[at..at + 16]);
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
        }
        // The tail (most strings are shorter than 16 bytes), padded with letters.
        let tail = padded(&bytes[at..], b'a');
        let mask = sse2::json_escapes(&tail[..]) & ((1 << (bytes.len() - at)) - 1);
        return if mask != 0 { Some(at + mask.trailing_zeros() as usize) } else { None };
    }
    #[cfg(not(target_arch = "x86_64"))]
    while at + 8 <= bytes.len() {
        let x = word(bytes, at);
        let mask = zero_bytes(x ^ splat(b'"')) | zero_bytes(x ^ splat(b'\\')) | control_bytes(x);
        if mask != 0 {
            return Some(at + (mask.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    #[allow(unreachable_code)]
    bytes[at..].iter().position(|b| NEEDS_ESCAPE[*b as usize]).map(|found| at + found)
}

/// `tail` (under 16 bytes) in a 16-byte block, the rest filled with `filler`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn padded(tail: &[u8], filler: u8) -> [u8; 16] {
    let mut block = [filler; 16];
    block[..tail.len()].copy_from_slice(tail);
    block
}

/// The bytes JSON escapes in a string.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Whether `bytes` has no control character and no two spaces in a row: text whose blanks
/// are single spaces already.
pub fn has_single_spaces_only(bytes: &[u8]) -> bool {
    let mut at = 0;
    let mut space_before = false; // the last byte looked at was a space
    #[cfg(target_arch = "x86_64")]
    {
        while at + 16 <= bytes.len() {
            let (controls, spaces) = sse2::controls_and_spaces(&bytes[at..at + 16]);
            if controls != 0 || spaces & (spaces >> 1) != 0 || (space_before && spaces & 1 != 0) {
                return false;
            }
            space_before = spaces & 0x8000 != 0;
            at += 16;
        }
        // The tail, padded with letters (neither blank nor control).
        let (controls, spaces) = sse2::controls_and_spaces(&padded(&bytes[at..], b'a')[..]);
        return controls == 0 && spaces & (spaces >> 1) == 0 && !(space_before && spaces & 1 != 0);
    }
    #[cfg(not(target_arch = "x86_64"))]
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
    #[allow(unreachable_code)]
    for &byte in &bytes[at..] {
        let space = byte == b' ';
        if byte < 0x20 || (space && space_before) {
            return false;
        }
        space_before = space;
    }
    true
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// One bit per byte of `block` (16 bytes) that is at most 0x1f.
    #[inline]
    fn controls(x: __m128i) -> __m128i {
        // SAFETY: SSE2 intrinsics, always available on x86_64.
        unsafe { _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f)) }
    }

    #[inline]
    fn load(block: &[u8]) -> __m128i {
        assert!(block.len() >= 16);
        // SAFETY: 16 readable bytes (checked above); unaligned load.
        unsafe { _mm_loadu_si128(block.as_ptr().cast()) }
    }

    /// Bit i set when byte i of `block` (16 bytes) must be escaped in JSON.
    #[inline]
    pub fn json_escapes(block: &[u8]) -> u32 {
        let x = load(block);
        // SAFETY: SSE2 intrinsics, always available on x86_64.
        unsafe {
            let quotes = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
            let backslashes = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quotes, backslashes), controls(x))) as u32
        }
    }

    /// (control characters, spaces) of `block` (16 bytes), one bit per byte.
    #[inline]
    pub fn controls_and_spaces(block: &[u8]) -> (u32, u32) {
        let x = load(block);
        // SAFETY: SSE2 intrinsics, always available on x86_64.
        unsafe {
            let spaces = _mm_cmpeq_epi8(x, _mm_set1_epi8(b' ' as i8));
            (_mm_movemask_epi8(controls(x)) as u32, _mm_movemask_epi8(spaces) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_escapes_anywhere() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        assert_eq!(find_json_escape(text, 0), None);
        for at in 0..text.len() {
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                let mut copy = text.to_vec();
                copy[at] = special;
                assert_eq!(find_json_escape(&copy, 0), Some(at));
            }
        }
        assert_eq!(find_json_escape("é\u{7f}ü".as_bytes(), 0), None);
        assert_eq!(find_json_escape("é\u{7f}ü\u{a0}\u{ff}é\u{7f}üabcdefghij\u{2028}".as_bytes(), 0), None);
    }

    #[test]
    fn single_spaces() {
        for text in ["", "a", "a b c", "word word word word word", "a b\u{a0}\u{a0}c"] {
            assert!(has_single_spaces_only(text.as_bytes()), "{text:?}");
        }
        let base = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ".to_string();
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
