//! `worker._native`: the MEDLINE record parser and document mapper, and the PubMed XML
//! record mapper, compiled.
//!
//! The Python modules `worker.medline_text` and `worker.documents` are the reference
//! implementation and the fallback when this extension is not built; `worker.native_parser`
//! loads it and gives it the format's tables, so that they are written once, in Python.
//! What comes out is the index body as JSON bytes, which the pydantic model then validates.

mod body;
mod dates;
mod fields;
mod json;
mod pystr;
mod splitter;
mod swar;
mod xml;

use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use body::{write_body, Kind, Mapping};
use fields::{parse_fields, Format};
use xml::{xml_fields, Tables};

create_exception!(
    _native,
    ParseError,
    PyValueError,
    "Not a MEDLINE record; args are (kind, quoted text), worded by worker.medline_text."
);

/// Bytes reserved for a body before writing it: a typical citation's JSON fits.
const BODY_CAPACITY: usize = 8192;

/// A parser configured with the format's tables.
#[pyclass(frozen, module = "worker._native")]
struct Parser {
    format: Format,
    mapping: Mapping,
}

impl Parser {
    fn parse<'a>(&'a self, text: &'a str) -> PyResult<Vec<fields::Field<'a>>> {
        parse_fields(&self.format, text).map_err(|error| {
            let (kind, quoted) = error.parts();
            ParseError::new_err((kind, quoted.to_string()))
        })
    }

    fn body_bytes<'py>(&self, py: Python<'py>, fields: &[fields::Field<'_>]) -> Bound<'py, PyBytes> {
        let mut out = Vec::with_capacity(BODY_CAPACITY);
        write_body(&self.mapping, fields, 1, &mut out);
        PyBytes::new(py, &out)
    }
}

#[pymethods]
impl Parser {
    /// :param known_tags: the MEDLINE tag set (collapsed text splits at these only).
    /// :param simple_tags: tag → (kind code, document field), as worker.documents has it.
    /// :param quote_limit: characters of a record quoted in an error.
    #[new]
    fn new(
        known_tags: Vec<String>,
        simple_tags: HashMap<String, (u8, String)>,
        quote_limit: usize,
    ) -> PyResult<Self> {
        let mut simple = HashMap::with_capacity(simple_tags.len());
        for (tag, (code, field)) in simple_tags {
            let kind = Kind::from_code(code)
                .ok_or_else(|| PyValueError::new_err(format!("unknown kind {code} for {tag}")))?;
            simple.insert(tag, (kind, field));
        }
        Ok(Parser {
            format: Format { known_tags: known_tags.into_iter().collect(), quote_limit },
            mapping: Mapping::new(simple),
        })
    }

    /// The record's (tag, value) pairs in order. Raises ParseError.
    fn fields(&self, text: &str) -> PyResult<Vec<(String, String)>> {
        let found = self.parse(text)?;
        Ok(found.into_iter().map(|(tag, value)| (tag.into_owned(), value.into_owned())).collect())
    }

    /// The record's index body as compact JSON. Raises ParseError.
    fn body_json<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
        let found = self.parse(text)?;
        Ok(self.body_bytes(py, &found))
    }

    /// The index body of the record `data[start..end]`, UTF-8 (invalid bytes replaced, as
    /// the splitter does), as compact JSON: a record of a packed batch, read in place,
    /// without a str made of it. Raises ParseError, or ValueError for a span outside `data`.
    fn body_json_at<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        start: usize,
        end: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = data
            .get(start..end)
            .ok_or_else(|| PyValueError::new_err(format!("no bytes {start}..{end} in the batch")))?;
        // The check alone first: it reads ASCII a word at a time, where the lossy decoder goes
        // byte by byte, and a packed batch holds valid UTF-8 unless it was damaged.
        let text = match std::str::from_utf8(bytes) {
            Ok(valid) => Cow::Borrowed(valid),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        let found = self.parse(&text)?;
        Ok(self.body_bytes(py, &found))
    }

    /// The index body of (tag, value) pairs, values already trimmed, as compact JSON.
    fn fields_body_json<'py>(
        &self,
        py: Python<'py>,
        fields: Vec<(String, String)>,
    ) -> Bound<'py, PyBytes> {
        let owned = fields.into_iter().map(|(tag, value)| (Cow::Owned(tag), Cow::Owned(value)));
        let owned: Vec<fields::Field<'_>> = owned.collect();
        self.body_bytes(py, &owned)
    }

    /// The MEDLINE fields of one PubMed XML record and its PMID version, as
    /// ``worker.pubmed_xml`` renders them; None for a record the Python module is to handle
    /// (a deletion, anything unusual, anything wrong).
    fn xml_fields(&self, text: &str, tables: &XmlTables) -> Option<(Vec<(String, String)>, u32)> {
        let (found, version) = xml_fields(&tables.inner, text)?;
        Some((found.into_iter().map(|(tag, value)| (tag.into_owned(), value.into_owned())).collect(), version))
    }

    /// The index body of the PubMed XML record `data[start..end]` as compact JSON, its PMID
    /// version included when above 1; None when the Python module is to handle the record
    /// (see ``xml_fields``; bytes that are not UTF-8 too). ValueError for a span outside
    /// `data`.
    fn xml_body_json_at<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        start: usize,
        end: usize,
        tables: &XmlTables,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let bytes = data
            .get(start..end)
            .ok_or_else(|| PyValueError::new_err(format!("no bytes {start}..{end} in the batch")))?;
        // Not UTF-8, or not a record the compiled mapping takes: Python's to handle.
        let (found, version) = match std::str::from_utf8(bytes).ok().and_then(|text| xml_fields(&tables.inner, text)) {
            Some(mapped) => mapped,
            None => return Ok(None),
        };
        let mut out = Vec::with_capacity(BODY_CAPACITY);
        write_body(&self.mapping, &found, version, &mut out);
        Ok(Some(PyBytes::new(py, &out)))
    }
}

/// The tables of the PubMed XML format, given once from Python (`worker.pubmed_xml`).
#[pyclass(frozen, module = "worker._native")]
struct XmlTables {
    inner: Tables,
}

#[pymethods]
impl XmlTables {
    /// :param months: lower-case month names and abbreviations → 1..12.
    /// :param month_names: 1..12 → the abbreviation MEDLINE prints.
    /// :param comment_tags: ``CommentsCorrections`` RefType → MEDLINE tag.
    /// :param skipped_ref_types: RefTypes left out.
    /// :param stamp_tags: (``PubMedPubDate`` status, tag) pairs: EDAT, MHDA, CRDT.
    /// :param version_max: highest PMID version taken.
    #[new]
    fn new(
        months: HashMap<String, u32>,
        month_names: HashMap<u32, String>,
        comment_tags: HashMap<String, String>,
        skipped_ref_types: Vec<String>,
        stamp_tags: Vec<(String, String)>,
        version_max: u32,
    ) -> Self {
        XmlTables {
            inner: Tables { months, month_names, comment_tags, skipped_ref_types, stamp_tags, version_max },
        }
    }
}

/// A MEDLINE byte stream, fed chunk by chunk, split into (offset, text) records.
#[pyclass(module = "worker._native")]
struct RecordSplitter {
    inner: splitter::Splitter,
    /// Whether a record's text comes as UTF-8 bytes (what a packed batch stores) instead of
    /// a str.
    as_bytes: bool,
}

#[pymethods]
impl RecordSplitter {
    /// :param max_record_bytes: a record growing past this is yielded in pieces.
    /// :param as_bytes: give each record's text as UTF-8 bytes, not as a str.
    #[new]
    #[pyo3(signature = (max_record_bytes, as_bytes = false))]
    fn new(max_record_bytes: usize, as_bytes: bool) -> Self {
        RecordSplitter { inner: splitter::Splitter::new(max_record_bytes), as_bytes }
    }

    /// The records that `chunk` (not empty) completes: a list of (offset, text).
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        collect_records(py, self.as_bytes, |mut out| inner.feed(chunk, &mut out))
    }

    /// The records left once the stream has ended: a list of (offset, text).
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        collect_records(py, self.as_bytes, |mut out| inner.finish(&mut out))
    }
}

/// The records that `split` hands to its callback, as a list of (offset, text) pairs: the
/// text a str, or UTF-8 bytes if `as_bytes`.
fn collect_records<'py>(
    py: Python<'py>,
    as_bytes: bool,
    split: impl FnOnce(&mut dyn FnMut(usize, &[u8])),
) -> PyResult<Bound<'py, PyList>> {
    let records = PyList::empty(py);
    let mut failed = None;
    split(&mut |offset: usize, text: &[u8]| {
        let appended = if as_bytes {
            append_record_bytes(&records, offset, text)
        } else {
            decode_replace(py, text).and_then(|decoded| records.append((offset, decoded)))
        };
        if let Err(error) = appended {
            failed.get_or_insert(error);
        }
    });
    failed.map_or(Ok(records), Err)
}

/// `text` decoded by Python's own UTF-8 decoder with invalid bytes replaced (U+FFFD), as
/// ``decode("utf-8", errors="replace")`` does: one pass, straight into the str.
fn decode_replace<'py>(py: Python<'py>, text: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let length = isize::try_from(text.len()).map_err(|_| PyValueError::new_err("record too large"))?;
    // SAFETY: a valid pointer and length of initialised bytes, and a NUL-terminated error
    // handler name; the new reference (or NULL with an exception set) is taken over at once.
    unsafe {
        let raw = pyo3::ffi::PyUnicode_DecodeUTF8(
            text.as_ptr().cast(),
            length,
            b"replace\0".as_ptr().cast(),
        );
        Bound::from_owned_ptr_or_err(py, raw)
    }
}

/// Append (offset, bytes) to `records`: `text` itself when it is valid UTF-8 (a check at
/// memory speed, no str made), else the UTF-8 of its str as :func:`decode_replace` makes it,
/// so that either way the bytes are what ``text.encode()`` of the str records would give.
fn append_record_bytes(records: &Bound<'_, PyList>, offset: usize, text: &[u8]) -> PyResult<()> {
    let py = records.py();
    if std::str::from_utf8(text).is_ok() {
        return records.append((offset, PyBytes::new(py, text)));
    }
    let decoded = decode_replace(py, text)?;
    records.append((offset, decoded.call_method0("encode")?))
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Parser>()?;
    module.add_class::<RecordSplitter>()?;
    module.add_class::<XmlTables>()?;
    module.add("ParseError", module.py().get_type::<ParseError>())?;
    Ok(())
}
