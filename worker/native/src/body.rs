//! A record's fields → the index body (JSON types, nothing null or empty), as
//! `worker.documents` maps them (that Python module is the reference; a differential test
//! holds the two equal, and the body is then validated by the pydantic model).
//!
//! AD and AUID lines belong to the author before them, IRAD to the investigator; a
//! single-valued field given twice keeps the first value and puts the others in `extra`; a
//! date that cannot be read goes to `extra` under its tag; every tag the model does not map
//! goes to `extra` with its values in order. Nothing is dropped silently.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::dates::{compact_date_iso, history_iso, publication_date_iso, stamp_iso};
use crate::fields::Field;
use crate::json::{get_mut, has, Json, Object};
use crate::pystr::strip;

/// A key of the body.
fn k(name: &str) -> Cow<'_, str> {
    Cow::Borrowed(name)
}

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

/// A tag packed into a number (its bytes, for tags of up to four): compared first, so that
/// looking a tag up costs an integer comparison; the text is compared only on a match.
pub const fn tag_key(tag: &[u8]) -> u32 {
    let mut key = 0u32;
    let mut at = 0;
    while at < tag.len() && at < 4 {
        key = (key << 8) | tag[at] as u32;
        at += 1;
    }
    key
}

/// The table of simply mapped tags, given by Python (`worker.documents.SIMPLE_TAGS`).
pub struct Mapping {
    /// (tag key, tag, kind, document field).
    simple: Vec<(u32, String, Kind, String)>,
}

impl Mapping {
    pub fn new(simple: HashMap<String, (Kind, String)>) -> Mapping {
        let simple = simple
            .into_iter()
            .map(|(tag, (kind, field))| (tag_key(tag.as_bytes()), tag, kind, field))
            .collect();
        Mapping { simple }
    }

    fn simple(&self, key: u32, tag: &str) -> Option<(Kind, &str)> {
        self.simple
            .iter()
            .find(|entry| entry.0 == key && entry.1 == tag)
            .map(|entry| (entry.2, entry.3.as_str()))
    }
}

type Values<'a> = Vec<Cow<'a, str>>;
/// `extra`: tag → values, tags in the order they were first added.
type Extra<'a> = Vec<(Cow<'a, str>, Values<'a>)>;

/// Like Python's `dict.setdefault(key, []).extend(values)` on `extra`.
fn add_extra<'a>(extra: &mut Extra<'a>, tag: &Cow<'a, str>, values: Values<'a>) {
    match extra.iter_mut().find(|(t, _)| t == tag) {
        Some((_, found)) => found.extend(values),
        None => extra.push((tag.clone(), values)),
    }
}

fn strings<'a>(values: Values<'a>) -> Json<'a> {
    Json::Array(values.into_iter().map(Json::Str).collect())
}

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

/// A borrowed part of a value, or an owned one when the value itself is owned.
fn part<'a>(value: &Cow<'a, str>, piece: &str) -> Cow<'a, str> {
    match value {
        Cow::Borrowed(whole) => {
            let start = piece.as_ptr() as usize - whole.as_ptr() as usize;
            Cow::Borrowed(&whole[start..start + piece.len()])
        }
        Cow::Owned(_) => Cow::Owned(piece.to_string()),
    }
}

fn typed_value<'a>(value: &Cow<'a, str>, bracket: bool) -> Json<'a> {
    let (ident, kind) = split_typed(value, bracket);
    let mut object: Object<'a> = vec![(k("value"), Json::Str(part(value, ident)))];
    if let Some(kind) = kind {
        object.push((k("type"), Json::Str(part(value, kind))));
    }
    Json::Object(object)
}

fn mesh<'a>(value: Cow<'a, str>) -> Json<'a> {
    let major = value.contains('*');
    let value = if major { Cow::Owned(value.replace('*', "")) } else { value };
    if !value.contains('/') {
        return Json::Object(vec![(k("descriptor"), Json::Str(value)), (k("major"), Json::Bool(major))]);
    }
    let mut pieces = value.split('/');
    let descriptor = part(&value, pieces.next().unwrap_or(""));
    let qualifiers = pieces.map(|piece| Json::Str(part(&value, piece))).collect();
    Json::Object(vec![
        (k("descriptor"), Json::Str(descriptor)),
        (k("qualifiers"), Json::Array(qualifiers)),
        (k("major"), Json::Bool(major)),
    ])
}

fn substance<'a>(value: &Cow<'a, str>) -> Json<'a> {
    match split_typed(value, false) {
        (number, Some(name)) => Json::Object(vec![
            (k("registry_number"), Json::Str(part(value, number))),
            (k("name"), Json::Str(part(value, name))),
        ]),
        (_, None) => Json::Object(vec![(k("name"), Json::Str(value.clone()))]),
    }
}

const GRANT_PARTS: [&str; 4] = ["grant_id", "acronym", "agency", "country"];

fn grant<'a>(value: Cow<'a, str>) -> Json<'a> {
    let mut pieces: Vec<&str> = value.split('/').collect();
    if pieces.len() > GRANT_PARTS.len() {
        // A grant id holding '/': the last three parts are the acronym, agency and country.
        let mut tail: Vec<&str> = value.rsplitn(GRANT_PARTS.len(), '/').collect();
        tail.reverse();
        pieces = tail;
    }
    let mut object: Object<'a> = vec![];
    for (name, piece) in GRANT_PARTS.iter().zip(pieces) {
        let piece = strip(piece);
        if !piece.is_empty() {
            object.push((k(name), Json::Str(part(&value, piece))));
        }
    }
    object.insert(0, (k("raw"), Json::Str(value)));
    Json::Object(object)
}

fn pub_date(value: Cow<'_, str>) -> Json<'_> {
    let (year, day) = publication_date_iso(&value);
    let mut object: Object<'_> = vec![(k("raw"), Json::Str(value))];
    if let Some(year) = year {
        object.push((k("year"), Json::Int(year.into())));
    }
    if let Some(day) = day {
        object.push((k("date"), Json::Str(Cow::Owned(day))));
    }
    Json::Object(object)
}

#[derive(Default)]
struct Person<'a> {
    full_name: Option<Cow<'a, str>>,
    short_name: Option<Cow<'a, str>>,
    affiliations: Values<'a>,
    identifiers: Values<'a>,
}

impl<'a> Person<'a> {
    fn into_json(self) -> Json<'a> {
        let mut object: Object<'a> = vec![];
        if let Some(name) = self.full_name {
            object.push((k("full_name"), Json::Str(name)));
        }
        if let Some(name) = self.short_name {
            object.push((k("short_name"), Json::Str(name)));
        }
        if !self.affiliations.is_empty() {
            object.push((k("affiliations"), strings(self.affiliations)));
        }
        if !self.identifiers.is_empty() {
            object.push((k("identifiers"), strings(self.identifiers)));
        }
        Json::Object(object)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Author,
    Investigator,
}

/// Authors, investigators and groups, with the lines that belong to each.
fn people<'a>(
    fields: Vec<Field<'a>>,
    body: &mut Object<'a>,
    extra: &mut Extra<'a>,
) {
    let mut authors: Vec<Person<'a>> = vec![];
    let mut investigators: Vec<Person<'a>> = vec![];
    let mut groups: Values<'a> = vec![];
    // The role of the person being read, if any: the last of that role's list.
    let mut current: Option<Role> = None;
    for (tag, value) in fields {
        match tag.as_ref() {
            "FAU" | "FIR" => {
                let role = if tag == "FAU" { Role::Author } else { Role::Investigator };
                let person = Person { full_name: Some(value), ..Person::default() };
                match role {
                    Role::Author => authors.push(person),
                    Role::Investigator => investigators.push(person),
                }
                current = Some(role);
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
            "AD" | "IRAD" | "AUID" => {
                let person = match current {
                    Some(Role::Author) if tag != "IRAD" => authors.last_mut(),
                    Some(Role::Investigator) => investigators.last_mut(),
                    _ => None,
                };
                match person {
                    Some(person) if tag == "AUID" => person.identifiers.push(value),
                    Some(person) => person.affiliations.push(value),
                    None => add_extra(extra, &tag, vec![value]),
                }
            }
            "CN" => {
                groups.push(value);
                current = None; // what follows a group belongs to the group
            }
            _ => add_extra(extra, &tag, vec![value]),
        }
    }
    if !authors.is_empty() {
        body.push((k("authors"), Json::Array(authors.into_iter().map(Person::into_json).collect())));
    }
    if !investigators.is_empty() {
        let list = investigators.into_iter().map(Person::into_json).collect();
        body.push((k("investigators"), Json::Array(list)));
    }
    if !groups.is_empty() {
        body.push((k("corporate_authors"), strings(groups)));
    }
}

/// Every LID and AID with its type, in record order (LID lines come before AID lines).
/// The doi and pii are the first AID of that type, else the first LID of that type.
fn article_ids<'a>(lids: Values<'a>, aids: Values<'a>, body: &mut Object<'a>) {
    let mut ids = vec![];
    let mut chosen: Vec<(bool, &'a str, Cow<'a, str>)> = vec![]; // (is AID, type, id)
    for (is_aid, values) in [(false, lids), (true, aids)] {
        for value in values {
            let (ident, kind) = split_typed(&value, true);
            let ident = part(&value, ident);
            match kind {
                None => ids.push(Json::Object(vec![(k("value"), Json::Str(ident))])),
                Some(kind) => {
                    let kind = part(&value, kind);
                    for wanted in ["doi", "pii"] {
                        if kind == wanted && !chosen.iter().any(|c| c.0 == is_aid && c.1 == wanted) {
                            chosen.push((is_aid, wanted, ident.clone()));
                        }
                    }
                    ids.push(Json::Object(vec![(k("value"), Json::Str(ident)), (k("type"), Json::Str(kind))]));
                }
            }
        }
    }
    body.push((k("article_ids"), Json::Array(ids)));
    for wanted in ["doi", "pii"] {
        let pick = |aid: bool| chosen.iter().find(|c| c.0 == aid && c.1 == wanted);
        if let Some((_, _, ident)) = pick(true).or_else(|| pick(false)) {
            if !ident.is_empty() {
                body.push((k(wanted), Json::Str(ident.clone())));
            }
        }
    }
}

/// Tags whose meaning depends on the person line before them; read in record order.
const PEOPLE_TAGS: [&str; 8] = ["FAU", "AU", "AD", "AUID", "FIR", "IR", "IRAD", "CN"];
const PEOPLE_KEYS: [u32; 8] = [
    tag_key(b"FAU"),
    tag_key(b"AU"),
    tag_key(b"AD"),
    tag_key(b"AUID"),
    tag_key(b"FIR"),
    tag_key(b"IR"),
    tag_key(b"IRAD"),
    tag_key(b"CN"),
];

fn is_people_tag(key: u32, tag: &str) -> bool {
    PEOPLE_KEYS.iter().zip(PEOPLE_TAGS).any(|(k, t)| *k == key && t == tag)
}

/// The index body of a record's fields.
pub fn fields_to_body<'a>(mapping: &'a Mapping, fields: Vec<Field<'a>>) -> Json<'a> {
    // Tags in the order they first appear, each with its values in order.
    let mut grouped: Vec<(u32, Cow<'a, str>, Values<'a>)> = Vec::with_capacity(32);
    let mut people_fields: Vec<Field<'a>> = vec![];
    for (tag, value) in fields {
        let key = tag_key(tag.as_bytes());
        if is_people_tag(key, &tag) {
            people_fields.push((tag, value));
            continue;
        }
        match grouped.iter_mut().find(|(k, t, _)| *k == key && *t == tag) {
            Some((_, _, values)) => values.push(value),
            None => grouped.push((key, tag, vec![value])),
        }
    }
    let mut body: Object<'a> = vec![];
    let mut journal: Object<'a> = vec![];
    let mut extra: Extra<'a> = vec![];
    let (mut lids, mut aids, mut book_title) = (vec![], vec![], None);
    for (tag_key, tag_name, mut values) in grouped {
        let tag: &str = &tag_name;
        if let Some((kind, key)) = mapping.simple(tag_key, tag) {
            let key = k(key);
            let rest = values.split_off(1);
            let first = values.pop().unwrap_or_default();
            match kind {
                Kind::List => {
                    let mut all = vec![first];
                    all.extend(rest);
                    body.push((key, strings(all)));
                    continue;
                }
                Kind::Single => body.push((key, Json::Str(first))),
                Kind::Journal => journal.push((key, Json::Str(first))),
                Kind::CompactDate | Kind::Stamp => {
                    let moment = if kind == Kind::CompactDate {
                        compact_date_iso(&first)
                    } else {
                        stamp_iso(&first)
                    };
                    match moment {
                        Some(moment) => body.push((key, Json::Str(Cow::Owned(moment)))),
                        None => {
                            let mut all = vec![first];
                            all.extend(rest);
                            add_extra(&mut extra, &tag_name, all); // kept as written
                            continue;
                        }
                    }
                }
            }
            if !rest.is_empty() {
                add_extra(&mut extra, &tag_name, rest);
            }
            continue;
        }
        match tag {
            "MH" => body.push((k("mesh"), Json::Array(values.into_iter().map(mesh).collect()))),
            "RN" | "NM" => {
                let items: Vec<Json<'a>> = if tag == "RN" {
                    values.iter().map(substance).collect()
                } else {
                    let name = |v| Json::Object(vec![(k("name"), Json::Str(v))]);
                    values.into_iter().map(name).collect()
                };
                // RN and NM both: one list, in the order the tags came.
                match get_mut(&mut body, "substances") {
                    Some(Json::Array(list)) => list.extend(items),
                    _ => body.push((k("substances"), Json::Array(items))),
                }
            }
            "PHST" => {
                let mut events = vec![];
                let mut unread = vec![];
                for value in values {
                    match history_iso(&value) {
                        Some((status, moment)) => {
                            let mut event: Object<'a> = vec![];
                            if let Some(status) = status {
                                event.push((k("status"), Json::Str(part(&value, status))));
                            }
                            event.push((k("date"), Json::Str(Cow::Owned(moment))));
                            events.push(Json::Object(event));
                        }
                        None => unread.push(value), // kept as written
                    }
                }
                if !unread.is_empty() {
                    add_extra(&mut extra, &tag_name, unread);
                }
                if !events.is_empty() {
                    body.push((k("history"), Json::Array(events)));
                }
            }
            "IS" => {
                let issns = values.iter().map(|v| typed_value(v, false)).collect();
                journal.push((k("issns"), Json::Array(issns)));
            }
            "DP" => {
                let rest = values.split_off(1);
                body.push((k("pub_date"), pub_date(values.pop().unwrap_or_default())));
                if !rest.is_empty() {
                    add_extra(&mut extra, &tag_name, rest);
                }
            }
            "GR" => body.push((k("grants"), Json::Array(values.into_iter().map(grant).collect()))),
            "LID" => lids = values,
            "AID" => aids = values,
            _ => {
                if tag == "BTI" {
                    book_title = values.first().cloned();
                }
                add_extra(&mut extra, &tag_name, values); // not in the model: kept as it is
            }
        }
    }
    if !people_fields.is_empty() {
        people(people_fields, &mut body, &mut extra);
    }
    if !journal.is_empty() {
        body.push((k("journal"), Json::Object(journal)));
    }
    if !lids.is_empty() || !aids.is_empty() {
        article_ids(lids, aids, &mut body);
    }
    if !has(&body, "title") {
        if let Some(title) = book_title {
            body.push((k("title"), Json::Str(title))); // a book: its title is BTI
        }
    }
    if !extra.is_empty() {
        let entries = extra.into_iter().map(|(tag, values)| (tag, strings(values))).collect();
        body.push((k("extra"), Json::Object(entries)));
    }
    Json::Object(body)
}
