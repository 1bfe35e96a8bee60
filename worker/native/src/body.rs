//! A record's fields → the index body as JSON (nothing null or empty), as
//! `worker.documents` maps them (that Python module is the reference; a differential test
//! holds the two equal, and the body is then validated by the pydantic model).
//!
//! AD and AUID lines belong to the author before them, IRAD to the investigator; a
//! single-valued field given twice keeps the first value and puts the others in `extra`; a
//! date that cannot be read goes to `extra` under its tag; every tag the model does not map
//! goes to `extra` with its values in order. Nothing is dropped silently.
//!
//! The JSON is written as the fields are read, without a tree of values in between: a
//! citation has some 25 objects and 100 strings, and allocating each was a third of the time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::dates::{compact_date_iso, history_iso, publication_date_iso, stamp_iso};
use crate::fields::Field;
use crate::json::write_str;
use crate::pystr::strip;

/// How a simply mapped tag becomes a field (the numbers of `worker.documents`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Single,
    List,
    Journal,
    CompactDate,
    Stamp,
}

impl Kind {
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::Single,
            1 => Kind::List,
            2 => Kind::Journal,
            3 => Kind::CompactDate,
            4 => Kind::Stamp,
            _ => return None,
        })
    }
}

/// A tag as a number: its bytes, packed, when it has at most four and no NUL (then the
/// number stands for the tag exactly and comparing tags is comparing numbers), else None.
#[inline]
pub fn tag_key(tag: &str) -> Option<u32> {
    let bytes = tag.as_bytes();
    if bytes.len() > 4 || bytes.contains(&0) {
        return None;
    }
    Some(bytes.iter().fold(0u32, |key, byte| (key << 8) | u32::from(*byte)))
}

/// A hasher for tag keys (small integers): one multiplication, where SipHash took longer
/// than the rest of a lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u8(*byte);
        }
    }
    fn write_u8(&mut self, byte: u8) {
        self.write_u64(u64::from(byte));
    }
    fn write_u32(&mut self, key: u32) {
        self.write_u64(u64::from(key));
    }
    fn write_u64(&mut self, key: u64) {
        self.0 = (self.0.rotate_left(5) ^ key).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Tag key → a value, hashed by [`KeyHasher`].
type KeyMap<V> = HashMap<u32, V, BuildHasherDefault<KeyHasher>>;

fn same_tag(a: (Option<u32>, &str), b: (Option<u32>, &str)) -> bool {
    match (a.0, b.0) {
        (Some(x), Some(y)) => x == y,
        _ => a.1 == b.1,
    }
}

/// The table of simply mapped tags, given by Python (`worker.documents.SIMPLE_TAGS`).
pub struct Mapping {
    /// Tags of up to four bytes, by key, and any others by name: (kind, document field).
    by_key: KeyMap<(Kind, String)>,
    by_name: HashMap<String, (Kind, String)>,
}

impl Mapping {
    pub fn new(simple: HashMap<String, (Kind, String)>) -> Mapping {
        let mut mapping = Mapping { by_key: KeyMap::default(), by_name: HashMap::new() };
        for (tag, entry) in simple {
            match tag_key(&tag) {
                Some(key) => mapping.by_key.insert(key, entry),
                None => mapping.by_name.insert(tag, entry),
            };
        }
        mapping
    }

    fn simple(&self, key: Option<u32>, tag: &str) -> Option<(Kind, &str)> {
        let entry = match key {
            Some(key) => self.by_key.get(&key),
            None => self.by_name.get(tag),
        };
        entry.map(|(kind, field)| (*kind, field.as_str()))
    }
}

/// Tags whose meaning depends on the person line before them; read in record order.
const PEOPLE_TAGS: [&str; 8] = ["FAU", "AU", "AD", "AUID", "FIR", "IR", "IRAD", "CN"];

fn is_people_tag(key: Option<u32>, tag: &str) -> bool {
    PEOPLE_TAGS.iter().any(|people| same_tag((tag_key(people), people), (key, tag)))
}

// --- writing JSON ----------------------------------------------------------------------------

/// A JSON object being written: keys are added with a comma before all but the first.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Object<'o> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Write `"key":` and hand back the output for the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(key, self.out);
        self.out.push(b':');
        self.out
    }

    fn text(&mut self, key: &str, value: &str) {
        write_str(value, self.key(key));
    }

    fn texts<'v>(&mut self, key: &str, values: impl IntoIterator<Item = &'v str>) {
        write_array(self.key(key), values, |out, value| write_str(value, out));
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

// --- the parts of a document -----------------------------------------------------------------

/// `10.1/x [doi]` → (`10.1/x`, `doi`); `0022-510X (Print)` → (..., `Print`).
fn split_typed(value: &str, bracket: bool) -> (&str, Option<&str>) {
    let (opener, closer) = if bracket { (" [", ']') } else { (" (", ')') };
    if value.ends_with(closer) {
        // Identifiers may hold brackets ("10.1002/(SICI)..."): the type is the last group.
        let at = if bracket { value.rfind(opener) } else { value.find(opener) };
        if let Some(at) = at.filter(|at| *at > 0) {
            let kind = strip(&value[at + 2..value.len() - 1]);
            return (&value[..at], if kind.is_empty() { None } else { Some(kind) });
        }
    }
    (value, None)
}

fn write_typed_value(out: &mut Vec<u8>, value: &str, bracket: bool) {
    let (ident, kind) = split_typed(value, bracket);
    let mut object = Object::open(out);
    object.text("value", ident);
    if let Some(kind) = kind {
        object.text("type", kind);
    }
    object.close();
}

/// An MH line read: the line without its stars, and whether it had one.
struct Heading<'v> {
    line: &'v str,
    unstarred: Cow<'v, str>,
    major: bool,
}

impl<'v> Heading<'v> {
    fn read(value: &'v str) -> Heading<'v> {
        let major = value.contains('*');
        let unstarred = if major { Cow::Owned(value.replace('*', "")) } else { Cow::Borrowed(value) };
        Heading { line: value, unstarred, major }
    }

    /// Whether the star is on the descriptor itself (NLM stars the descriptor, or the qualifier
    /// that makes the heading a main topic).
    fn descriptor_major(&self) -> bool {
        self.major && self.line.split('/').next().map_or(false, |first| first.contains('*'))
    }

    /// The starred qualifiers, without their stars.
    fn major_qualifiers(&self) -> Vec<String> {
        if !self.major {
            return Vec::new();
        }
        let starred = self.line.split('/').skip(1).filter(|qualifier| qualifier.contains('*'));
        starred.map(|qualifier| qualifier.replace('*', "")).collect()
    }

    fn descriptor(&self) -> &str {
        self.unstarred.split_once('/').map_or(&self.unstarred, |(descriptor, _)| descriptor)
    }

    fn qualifiers(&self) -> impl Iterator<Item = &str> {
        self.unstarred.split_once('/').into_iter().flat_map(|(_, qualifiers)| qualifiers.split('/'))
    }
}

/// The headings, then their major topics and descriptor/qualifier pairs as terms of their own.
fn write_mesh<'f>(body: &mut Object<'_>, values: impl Iterator<Item = &'f str>) {
    let headings: Vec<Heading> = values.map(Heading::read).collect();
    write_array(body.key("mesh"), &headings, |out, heading| {
        let mut object = Object::open(out);
        object.text("descriptor", heading.descriptor());
        if heading.unstarred.contains('/') {
            object.texts("qualifiers", heading.qualifiers());
        }
        object.key("major").extend_from_slice(if heading.major { b"true" } else { b"false" });
        if heading.descriptor_major() {
            object.key("descriptor_major").extend_from_slice(b"true");
        }
        let major_qualifiers = heading.major_qualifiers();
        if !major_qualifiers.is_empty() {
            object.texts("major_qualifiers", major_qualifiers.iter().map(String::as_str));
        }
        object.close();
    });
    if headings.iter().any(|heading| heading.major) {
        let majors = headings.iter().filter(|heading| heading.major);
        body.texts("mesh_major_topics", majors.map(Heading::descriptor));
    }
    let mut pairs = headings
        .iter()
        .flat_map(|heading| heading.qualifiers().map(move |q| (heading.descriptor(), q)))
        .peekable();
    if pairs.peek().is_some() {
        let mut pair = String::new();
        write_array(body.key("mesh_qualified_terms"), pairs, |out, (descriptor, qualifier)| {
            pair.clear();
            pair.push_str(descriptor);
            pair.push('/');
            pair.push_str(qualifier);
            write_str(&pair, out);
        });
    }
}

fn write_substance(out: &mut Vec<u8>, value: &str) {
    let mut object = Object::open(out);
    match split_typed(value, false) {
        (number, Some(name)) => {
            object.text("registry_number", number);
            object.text("name", name);
        }
        (_, None) => object.text("name", value),
    }
    object.close();
}

const GRANT_PARTS: [&str; 4] = ["grant_id", "acronym", "agency", "country"];

fn write_grant(out: &mut Vec<u8>, value: &str) {
    let mut object = Object::open(out);
    object.text("raw", value);
    let mut write_parts = |pieces: &mut dyn Iterator<Item = &str>| {
        for (name, piece) in GRANT_PARTS.iter().zip(pieces) {
            let piece = strip(piece);
            if !piece.is_empty() {
                object.text(name, piece);
            }
        }
    };
    if value.split('/').count() > GRANT_PARTS.len() {
        // A grant id holding '/': the last three parts are the acronym, agency and country.
        let mut pieces: Vec<&str> = value.rsplitn(GRANT_PARTS.len(), '/').collect();
        pieces.reverse();
        write_parts(&mut pieces.into_iter());
    } else {
        write_parts(&mut value.split('/'));
    }
    object.close();
}

fn write_pub_date(out: &mut Vec<u8>, value: &str) {
    let (year, day) = publication_date_iso(value);
    let mut object = Object::open(out);
    object.text("raw", value);
    if let Some(year) = year {
        object.key("year").extend_from_slice(year.to_string().as_bytes());
    }
    if let Some(day) = day {
        object.text("date", &day);
    }
    object.close();
}

// --- people ----------------------------------------------------------------------------------

#[derive(Default)]
struct Person<'f> {
    full_name: Option<&'f str>,
    short_name: Option<&'f str>,
    affiliations: Vec<&'f str>,
    identifiers: Vec<&'f str>,
}

impl Person<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut object = Object::open(out);
        if let Some(name) = self.full_name {
            object.text("full_name", name);
        }
        if let Some(name) = self.short_name {
            object.text("short_name", name);
        }
        if !self.affiliations.is_empty() {
            object.texts("affiliations", self.affiliations.iter().copied());
        }
        if !self.identifiers.is_empty() {
            object.texts("identifiers", self.identifiers.iter().copied());
        }
        object.close();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Author,
    Investigator,
}

/// Where the lines that belong to nobody go: tag → values, tags in the order first added.
type Extra<'f> = Vec<(&'f str, Vec<&'f str>)>;

fn add_extra<'f>(extra: &mut Extra<'f>, tag: &'f str, values: impl IntoIterator<Item = &'f str>) {
    match extra.iter_mut().find(|(t, _)| *t == tag) {
        Some((_, found)) => found.extend(values),
        None => extra.push((tag, values.into_iter().collect())),
    }
}

/// Authors, investigators and groups, with the lines that belong to each.
fn write_people<'f>(people: &[(&'f str, &'f str)], body: &mut Object<'_>, extra: &mut Extra<'f>) {
    let mut authors: Vec<Person<'f>> = vec![];
    let mut investigators: Vec<Person<'f>> = vec![];
    let mut groups: Vec<&'f str> = vec![];
    // The role of the person being read, if any: the last of that role's list.
    let mut current: Option<Role> = None;
    for &(tag, value) in people {
        match tag {
            "FAU" | "FIR" => {
                let person = Person { full_name: Some(value), ..Person::default() };
                if tag == "FAU" {
                    authors.push(person);
                    current = Some(Role::Author);
                } else {
                    investigators.push(person);
                    current = Some(Role::Investigator);
                }
            }
            "AU" | "IR" => {
                let role = if tag == "AU" { Role::Author } else { Role::Investigator };
                let list = if role == Role::Author { &mut authors } else { &mut investigators };
                // The short name of the full name just read, or a person of its own.
                match list.last_mut().filter(|p| current == Some(role) && p.short_name.is_none()) {
                    Some(person) => person.short_name = Some(value),
                    None => {
                        list.push(Person { short_name: Some(value), ..Person::default() });
                        current = Some(role);
                    }
                }
            }
            "CN" => {
                groups.push(value);
                current = None; // what follows a group belongs to the group
            }
            _ => {
                // AD, AUID, IRAD: to the person being read; IRAD only to an investigator.
                let person = match current {
                    Some(Role::Author) if tag != "IRAD" => authors.last_mut(),
                    Some(Role::Investigator) => investigators.last_mut(),
                    _ => None,
                };
                match person {
                    Some(person) if tag == "AUID" => person.identifiers.push(value),
                    Some(person) => person.affiliations.push(value),
                    None => add_extra(extra, tag, [value]),
                }
            }
        }
    }
    for (key, list) in [("authors", &authors), ("investigators", &investigators)] {
        if !list.is_empty() {
            write_array(body.key(key), list.iter(), |out, person| person.write(out));
        }
    }
    if !groups.is_empty() {
        body.texts("corporate_authors", groups);
    }
}

/// Every LID and AID with its type, in record order (LID lines come before AID lines).
/// The doi and pii are the first AID of that type, else the first LID of that type.
fn write_article_ids<'f>(lids: &[&'f str], aids: &[&'f str], body: &mut Object<'_>) {
    // The first (AID doi, AID pii, LID doi, LID pii).
    let mut chosen: [Option<&'f str>; 4] = [None; 4];
    let all = lids.iter().map(|v| (false, *v)).chain(aids.iter().map(|v| (true, *v)));
    write_array(body.key("article_ids"), all, |out, (is_aid, value)| {
        let (ident, kind) = split_typed(value, true);
        let slot = match kind {
            Some("doi") => Some(0),
            Some("pii") => Some(1),
            _ => None,
        };
        if let Some(slot) = slot.map(|s| if is_aid { s } else { s + 2 }) {
            chosen[slot].get_or_insert(ident);
        }
        let mut object = Object::open(out);
        object.text("value", ident);
        if let Some(kind) = kind {
            object.text("type", kind);
        }
        object.close();
    });
    for (slot, key) in ["doi", "pii"].iter().enumerate() {
        if let Some(ident) = chosen[slot].or(chosen[slot + 2]).filter(|i| !i.is_empty()) {
            body.text(key, ident);
        }
    }
}

// --- the body ----------------------------------------------------------------------------------

/// A tag and where its values are: the fields of a record, grouped by tag in the order each
/// tag first appears, without a list per tag (`next` chains each field to the next one of
/// the same tag).
struct Group<'f> {
    key: Option<u32>,
    tag: &'f str,
    first: usize,
    last: usize,
}

const END: usize = usize::MAX;

struct Grouped<'f> {
    fields: &'f [Field<'f>],
    next: Vec<usize>,
    groups: Vec<Group<'f>>,
    people: Vec<(&'f str, &'f str)>,
}

impl<'f> Grouped<'f> {
    fn new(fields: &'f [Field<'f>]) -> Grouped<'f> {
        let mut next = vec![END; fields.len()];
        let mut groups: Vec<Group<'f>> = Vec::with_capacity(32);
        // Group of each tag key (tags that have no key are looked for one by one).
        let mut index: KeyMap<usize> = KeyMap::with_capacity_and_hasher(64, Default::default());
        let mut people = vec![];
        for (at, (tag, value)) in fields.iter().enumerate() {
            let tag: &'f str = tag;
            let key = tag_key(tag);
            if is_people_tag(key, tag) {
                people.push((tag, value.as_ref()));
                continue;
            }
            let found = match key {
                Some(key) => index.get(&key).copied(),
                None => groups.iter().position(|g| g.key.is_none() && g.tag == tag),
            };
            match found {
                Some(number) => {
                    let group = &mut groups[number];
                    next[group.last] = at;
                    group.last = at;
                }
                None => {
                    if let Some(key) = key {
                        index.insert(key, groups.len());
                    }
                    groups.push(Group { key, tag, first: at, last: at });
                }
            }
        }
        Grouped { fields, next, groups, people }
    }

    fn values(&self, group: &Group<'f>) -> impl Iterator<Item = &'f str> + '_ {
        let fields = self.fields;
        let mut at = group.first;
        std::iter::from_fn(move || {
            if at == END {
                return None;
            }
            let value: &'f str = &fields[at].1;
            at = self.next[at];
            Some(value)
        })
    }

    fn find(&self, tag: &str) -> Option<&Group<'f>> {
        self.groups.iter().find(|g| g.tag == tag)
    }
}

/// The index body of a record's fields, appended to `out` as compact JSON, with
/// `pmid_version` when it is above 1 (PubMed XML's `<PMID Version>`; MEDLINE text has none,
/// so 1).
pub fn write_body(mapping: &Mapping, fields: &[Field<'_>], pmid_version: u32, out: &mut Vec<u8>) {
    let grouped = Grouped::new(fields);
    let mut body = Object::open(out);
    let mut journal: Vec<(&str, &str)> = vec![];
    let mut issns: Option<&Group> = None;
    let mut extra: Extra = vec![];
    let mut has_title = false;
    let mut substances_written = false;
    for group in &grouped.groups {
        let tag = group.tag;
        let mut values = grouped.values(group);
        if let Some((kind, key)) = mapping.simple(group.key, tag) {
            if kind == Kind::List {
                body.texts(key, values);
                continue;
            }
            let first = values.next().unwrap_or_default();
            match kind {
                Kind::Single => {
                    has_title |= key == "title";
                    body.text(key, first);
                }
                Kind::Journal => journal.push((key, first)),
                _ => {
                    let moment = if kind == Kind::CompactDate {
                        compact_date_iso(first)
                    } else {
                        stamp_iso(first)
                    };
                    match moment {
                        Some(moment) => body.text(key, &moment),
                        // Kept as written, under its tag.
                        None => add_extra(&mut extra, tag, std::iter::once(first)),
                    }
                }
            }
            add_extra_if_any(&mut extra, tag, values);
            continue;
        }
        match tag {
            "MH" => write_mesh(&mut body, values),
            "RN" | "NM" if !substances_written => {
                // RN and NM both: one list, in the order the tags first came.
                substances_written = true;
                let parts = grouped.groups.iter().filter(|g| g.tag == "RN" || g.tag == "NM");
                let items = parts.flat_map(|g| grouped.values(g).map(move |v| (g.tag, v)));
                write_array(body.key("substances"), items, |out, (tag, value)| {
                    if tag == "RN" {
                        write_substance(out, value);
                    } else {
                        let mut object = Object::open(out);
                        object.text("name", value);
                        object.close();
                    }
                });
            }
            "RN" | "NM" => {}
            "PHST" => {
                let mut events = vec![];
                let mut unread = vec![];
                for value in values {
                    match history_iso(value) {
                        Some(event) => events.push(event),
                        None => unread.push(value), // kept as written
                    }
                }
                if !unread.is_empty() {
                    add_extra(&mut extra, tag, unread);
                }
                if !events.is_empty() {
                    write_array(body.key("history"), events, |out, (status, moment)| {
                        let mut object = Object::open(out);
                        if let Some(status) = status {
                            object.text("status", status);
                        }
                        object.text("date", &moment);
                        object.close();
                    });
                }
            }
            "IS" => issns = Some(group),
            "DP" => {
                write_pub_date(body.key("pub_date"), values.next().unwrap_or_default());
                add_extra_if_any(&mut extra, tag, values);
            }
            "GR" => write_array(body.key("grants"), values, write_grant),
            "LID" | "AID" => {}
            _ => add_extra(&mut extra, tag, values), // not in the model: kept as it is
        }
    }
    if !grouped.people.is_empty() {
        write_people(&grouped.people, &mut body, &mut extra);
    }
    if !journal.is_empty() || issns.is_some() {
        let mut object = Object::open(body.key("journal"));
        for (key, value) in journal {
            object.text(key, value);
        }
        if let Some(group) = issns {
            let values = grouped.values(group);
            write_array(object.key("issns"), values, |out, v| write_typed_value(out, v, false));
        }
        object.close();
    }
    let lids: Vec<&str> = grouped.find("LID").map_or(vec![], |g| grouped.values(g).collect());
    let aids: Vec<&str> = grouped.find("AID").map_or(vec![], |g| grouped.values(g).collect());
    if !lids.is_empty() || !aids.is_empty() {
        write_article_ids(&lids, &aids, &mut body);
    }
    if !has_title {
        // A book's title is BTI; a citation with no English title is shown under its
        // vernacular one (TT), as PubMed shows it (see documents.py).
        if let Some(fallback) = grouped.find("BTI").or_else(|| grouped.find("TT")) {
            body.text("title", grouped.values(fallback).next().unwrap_or_default());
        }
    }
    if !extra.is_empty() {
        let mut object = Object::open(body.key("extra"));
        for (tag, values) in extra {
            object.texts(tag, values);
        }
        object.close();
    }
    if pmid_version > 1 {
        body.key("pmid_version").extend_from_slice(pmid_version.to_string().as_bytes());
    }
    body.close();
}

fn add_extra_if_any<'f>(extra: &mut Extra<'f>, tag: &'f str, rest: impl Iterator<Item = &'f str>) {
    let mut rest = rest.peekable();
    if rest.peek().is_some() {
        add_extra(extra, tag, rest);
    }
}
