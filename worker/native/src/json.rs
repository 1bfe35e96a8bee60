//! The index body as a tree of JSON values, written compactly as UTF-8.

use std::borrow::Cow;

use crate::swar::find_json_escape;

/// A JSON value of the body. Objects keep their keys in insertion order.
pub enum Json<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object: keys in the order they were set.
pub type Object<'a> = Vec<(Cow<'a, str>, Json<'a>)>;


/// The value of `key` in `object`, if set.
pub fn get_mut<'o, 'a>(object: &'o mut Object<'a>, key: &str) -> Option<&'o mut Json<'a>> {
    object.iter_mut().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Whether `object` has `key`.
pub fn has(object: &Object<'_>, key: &str) -> bool {
    object.iter().any(|(k, _)| *k == key)
}

/// `value` as compact JSON, appended to `out`.
pub fn write(value: &Json<'_>, out: &mut Vec<u8>) {
    match value {
        Json::Str(text) => write_str(text, out),
        Json::Int(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Json::Object(entries) => {
            out.push(b'{');
            for (n, (key, item)) in entries.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_str(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(at) = find_json_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        let byte = bytes[at];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 0xf) as usize]);
            }
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
