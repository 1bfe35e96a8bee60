//! One PubMed XML record → the MEDLINE `(tag, value)` fields PubMed prints for it, as
//! `worker.pubmed_xml` renders them (that Python module is the reference; a differential test
//! over thousands of altered records holds the two equal).
//!
//! Only the records the producer makes are handled here: one well-formed `PubmedArticle`,
//! `MedlineCitation` or `PubmedBookArticle` element in UTF-8, with comments and processing
//! instructions inside it read as lxml reads them. Anything
//! else -- a `DeleteCitation`, CDATA, a DTD, a namespace, an entity lxml would not
//! resolve, a control character, no PMID, a `Version` out of range, a date Python could not
//! read -- gives None, and the Python module handles the record, with its own words for
//! whatever is wrong. So the two cannot disagree about bad input: only one of them sees it.

use std::borrow::Cow;
use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::fields::Field;
use crate::pystr::{is_py_space, split};
use crate::swar::has_single_spaces_only;

/// The format's tables, given from Python (`worker.pubmed_xml`, `worker.dates`).
pub struct Tables {
    /// Lower-case month names and abbreviations → 1..12.
    pub months: HashMap<String, u32>,
    /// 1..12 → the abbreviation MEDLINE prints.
    pub month_names: HashMap<u32, String>,
    /// `CommentsCorrections` RefType → MEDLINE tag.
    pub comment_tags: HashMap<String, String>,
    /// RefTypes left out.
    pub skipped_ref_types: Vec<String>,
    /// `PubMedPubDate` status → the tag its first stamp gives (EDAT, MHDA, CRDT).
    pub stamp_tags: Vec<(String, String)>,
    /// Highest PMID version taken.
    pub version_max: u32,
}

/// No element (a link of [`Node`]).
const NONE: usize = usize::MAX;

/// An element: its name, attributes, text before its first child and tail, borrowed from the
/// record where no entity had to be replaced, and its links to its first child and next
/// sibling (a tree without a vector per element: a citation has some two hundred).
struct Node<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, Cow<'a, str>)>,
    text: Cow<'a, str>,
    tail: Cow<'a, str>,
    first_child: usize,
    last_child: usize,
    next: usize,
}

/// A record's elements, the root first.
struct Tree<'a> {
    nodes: Vec<Node<'a>>,
}

/// Why a record is left to Python; never shown (Python words its own errors).
struct Declined;

type Mapped<T> = Result<T, Declined>;

/// Whether `text` holds a character lxml refuses in a document (XML 1.0's `Char`
/// production: controls other than tab and line ends, U+FFFE, U+FFFF), which Python would
/// report as not well-formed.
fn has_refused_char(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        || memchr::memmem::find(bytes, "\u{fffe}".as_bytes()).is_some()
        || memchr::memmem::find(bytes, "\u{ffff}".as_bytes()).is_some()
}

/// `part`, a slice of `text`'s own bytes, as the str it is there (no copy, no new UTF-8
/// check); Declined for bytes from elsewhere: a copy lives in an allocation of its own, never
/// inside `text`, so its address tells it apart, and `get` checks the bounds either way.
fn within<'a>(text: &'a str, part: &[u8]) -> Mapped<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize).ok_or(Declined)?;
    text.get(start..start + part.len()).ok_or(Declined)
}

/// Escaped text of the record, `raw` → its value: borrowed unless an entity was replaced,
/// and then checked, since only a replaced value can hold what the record's own check did
/// not see (`&#1;`). Declined for bytes that are not the record's own (a copy).
fn unescaped<'a>(text: &'a str, raw: &[u8]) -> Mapped<Cow<'a, str>> {
    let value = quick_xml::escape::unescape(within(text, raw)?).map_err(|_| Declined)?;
    if let Cow::Owned(ref owned) = value {
        if has_refused_char(owned) {
            return Err(Declined);
        }
    }
    Ok(value)
}

/// A name Python's lookups would read as lxml does: no namespace prefix (lxml names those
/// `{uri}local`, and an undeclared prefix is an error there).
fn plain_name<'a>(text: &'a str, name: &[u8]) -> Mapped<&'a str> {
    if name.contains(&b':') {
        return Err(Declined);
    }
    within(text, name)
}

fn node<'a>(text: &'a str, start: &BytesStart<'a>) -> Mapped<Node<'a>> {
    let mut attrs = vec![];
    for attr in start.attributes() {
        let attr = attr.map_err(|_| Declined)?;
        let key = attr.key.into_inner();
        // `xml:lang` and the like are read by nothing here; `xmlns` would change the names.
        if key == b"xmlns" || (key.contains(&b':') && !key.starts_with(b"xml:")) {
            return Err(Declined);
        }
        if attr.value.contains(&b'<') {
            return Err(Declined);
        }
        attrs.push((within(text, key)?, unescaped(text, &attr.value)?));
    }
    Ok(Node {
        name: plain_name(text, start.name().as_ref())?,
        attrs,
        text: Cow::Borrowed(""),
        tail: Cow::Borrowed(""),
        first_child: NONE,
        last_child: NONE,
        next: NONE,
    })
}

/// Make `at` the last child of `parent`.
fn link(nodes: &mut [Node<'_>], parent: usize, at: usize) {
    match nodes[parent].last_child {
        NONE => nodes[parent].first_child = at,
        last => nodes[last].next = at,
    }
    nodes[parent].last_child = at;
}

/// `to` with `more` appended (text split around a comment).
fn append<'a>(to: &mut Cow<'a, str>, more: Cow<'a, str>) {
    if to.is_empty() {
        *to = more;
    } else {
        to.to_mut().push_str(&more);
    }
}

impl<'a> Tree<'a> {
    fn parse(text: &'a str) -> Mapped<Tree<'a>> {
        if has_refused_char(text) {
            return Err(Declined);
        }
        let mut reader = Reader::from_str(text);
        reader.config_mut().expand_empty_elements = true;
        let mut nodes: Vec<Node<'a>> = Vec::with_capacity(256);
        let mut open: Vec<usize> = vec![];
        loop {
            match reader.read_event().map_err(|_| Declined)? {
                Event::Start(start) => {
                    if open.is_empty() && !nodes.is_empty() {
                        return Err(Declined); // a second root
                    }
                    let at = nodes.len();
                    nodes.push(node(text, &start)?);
                    if let Some(&parent) = open.last() {
                        link(&mut nodes, parent, at);
                    }
                    open.push(at);
                }
                // lxml keeps a processing instruction (NLM's files put `<?pmcsd ?>` in some
                // records' PubmedData) as a child whose tail takes the text after it, and its
                // own text out of `itertext`: a node that no name matches, with no text.
                Event::PI(_) if !open.is_empty() => {
                    let at = nodes.len();
                    nodes.push(Node {
                        name: "",
                        attrs: vec![],
                        text: Cow::Borrowed(""),
                        tail: Cow::Borrowed(""),
                        first_child: NONE,
                        last_child: NONE,
                        next: NONE,
                    });
                    link(&mut nodes, open[open.len() - 1], at);
                }
                // Python's parser removes comments, and the text on either side of one joins
                // (`append`), as here.
                Event::Comment(_) if !open.is_empty() => {}
                Event::End(_) => {
                    open.pop();
                }
                Event::Text(raw) => {
                    let value = unescaped(text, &raw)?;
                    match open.last() {
                        Some(&parent) => match nodes[parent].last_child {
                            NONE => append(&mut nodes[parent].text, value),
                            last => append(&mut nodes[last].tail, value),
                        },
                        None if value.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) => {}
                        None => return Err(Declined),
                    }
                }
                Event::Eof => break,
                _ => return Err(Declined), // CDATA, declarations, DTDs, anything outside the root
            }
        }
        if nodes.is_empty() || !open.is_empty() {
            return Err(Declined);
        }
        Ok(Tree { nodes })
    }

    fn name(&self, at: usize) -> &str {
        self.nodes[at].name
    }

    /// `elem.get(name)`.
    fn attr(&self, at: usize, name: &str) -> Option<&str> {
        self.nodes[at].attrs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_ref())
    }

    /// The children of `at`, in order (none for no element).
    fn kids(&self, at: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        let mut next = at.map_or(NONE, |at| self.nodes[at].first_child);
        std::iter::from_fn(move || {
            let at = next;
            (at != NONE).then(|| {
                next = self.nodes[at].next;
                at
            })
        })
    }

    /// The children of `at` named `name`, in order (none for no element).
    fn children<'t>(&'t self, at: Option<usize>, name: &'t str) -> impl Iterator<Item = usize> + 't {
        self.kids(at).filter(move |&child| self.nodes[child].name == name)
    }

    /// `find(name)`.
    fn first(&self, at: Option<usize>, name: &str) -> Option<usize> {
        self.children(at, name).next()
    }

    /// `findtext(name)`: the first child's text ('' when it has none), None without one.
    fn first_text(&self, at: Option<usize>, name: &str) -> Option<&str> {
        self.first(at, name).map(|child| self.nodes[child].text.as_ref())
    }

    /// `iterfind("parent/child")`.
    fn path<'t>(&'t self, at: Option<usize>, parent: &'t str, child: &'t str) -> impl Iterator<Item = usize> + 't {
        self.children(at, parent).flat_map(move |p| self.children(Some(p), child))
    }

    /// `findtext("parent/child")`.
    fn path_text(&self, at: Option<usize>, parent: &str, child: &str) -> Option<&str> {
        self.path(at, parent, child).next().map(|found| self.nodes[found].text.as_ref())
    }

    /// `elem.iter(name)`: the element and its descendants named `name`, in document order.
    fn descendants(&self, at: usize, name: &str, out: &mut Vec<usize>) {
        if self.nodes[at].name == name {
            out.push(at);
        }
        for child in self.kids(Some(at)) {
            self.descendants(child, name, out);
        }
    }

    fn itertext(&self, at: usize, out: &mut String) {
        out.push_str(&self.nodes[at].text);
        for child in self.kids(Some(at)) {
            self.itertext(child, out);
            out.push_str(&self.nodes[child].tail);
        }
    }

    /// `_text`: all the text of an element, normalised ('' for no element).
    fn text(&self, at: Option<usize>) -> String {
        match at {
            Some(at) if self.nodes[at].first_child == NONE => norm(&self.nodes[at].text).into_owned(),
            Some(at) => {
                let mut all = String::new();
                self.itertext(at, &mut all);
                norm(&all).into_owned()
            }
            None => String::new(),
        }
    }

    /// `_norm(elem.get(name))`.
    fn norm_attr(&self, at: usize, name: &str) -> String {
        norm(self.attr(at, name).unwrap_or("")).into_owned()
    }

    /// `_norm(elem.findtext(name))`.
    fn norm_text(&self, at: Option<usize>, name: &str) -> String {
        norm(self.first_text(at, name).unwrap_or("")).into_owned()
    }
}

/// Whether `text` is its own `" ".join(text.split())`: not empty, single spaces between
/// words, no other whitespace.
fn is_normal(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes[0] != b' '
        && bytes[bytes.len() - 1] != b' '
        && has_single_spaces_only(bytes)
        && (text.is_ascii() || !text.chars().any(|c| !c.is_ascii() && is_py_space(c)))
}

/// `" ".join(text.split())`: `text` itself when it is that already.
fn norm(text: &str) -> Cow<'_, str> {
    if is_normal(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for word in split(text) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

/// `" ".join(p for p in parts if p)`, with `sep`.
fn join_present(parts: &[&str], sep: &str) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(sep)
}

/// `value.isdigit()`, for ASCII values; a value with other characters is left to Python,
/// whose `isdigit` and `int` read digits of every script.
fn is_digits(value: &str) -> Mapped<bool> {
    if !value.is_ascii() {
        return Err(Declined);
    }
    Ok(!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
}

/// `value.zfill(2)` of digits.
fn two_digits(value: &str) -> String {
    if value.len() >= 2 {
        value.to_owned()
    } else {
        format!("0{value}")
    }
}

/// `_two`.
fn two(value: &str) -> Mapped<String> {
    Ok(if is_digits(value)? { two_digits(value) } else { value.to_owned() })
}

/// `int(digits)` when it is small enough to be a month or a day of any table.
fn small_number(digits: &str) -> Option<u32> {
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 9 {
        return None;
    }
    Some(trimmed.parse().unwrap_or(0))
}

struct Mapper<'t> {
    tables: &'t Tables,
    tree: &'t Tree<'t>,
    items: Vec<Field<'static>>,
}

impl<'t> Mapper<'t> {
    fn add(&mut self, tag: &'static str, value: &str) {
        let value = norm(value);
        if !value.is_empty() {
            self.items.push((Cow::Borrowed(tag), Cow::Owned(value.into_owned())));
        }
    }

    fn add_owned_tag(&mut self, tag: String, value: &str) {
        let value = norm(value);
        if !value.is_empty() {
            self.items.push((Cow::Owned(tag), Cow::Owned(value.into_owned())));
        }
    }

    fn month_number(&self, value: &str) -> Mapped<String> {
        if is_digits(value)? {
            return Ok(two_digits(value));
        }
        Ok(match self.tables.months.get(&value.to_lowercase()) {
            Some(number) => format!("{number:02}"),
            None => value.to_owned(),
        })
    }

    fn or_default(value: String, default: &str) -> String {
        if value.is_empty() {
            default.to_owned()
        } else {
            value
        }
    }

    /// `_compact_date`.
    fn compact_date(&self, at: Option<usize>) -> Mapped<String> {
        let t = self.tree;
        if at.is_none() || t.first_text(at, "Year").map_or(true, str::is_empty) {
            return Ok(String::new());
        }
        let year = t.norm_text(at, "Year");
        let month = self.month_number(&Self::or_default(t.norm_text(at, "Month"), "01"))?;
        let day = two(&Self::or_default(t.norm_text(at, "Day"), "01"))?;
        Ok(format!("{year}{month}{day}"))
    }

    /// `_stamp`.
    fn stamp(&self, at: usize) -> Mapped<String> {
        let t = self.tree;
        let at = Some(at);
        let year = t.norm_text(at, "Year");
        let month = self.month_number(&Self::or_default(t.norm_text(at, "Month"), "01"))?;
        let day = two(&Self::or_default(t.norm_text(at, "Day"), "01"))?;
        let hour = two(&Self::or_default(t.norm_text(at, "Hour"), "00"))?;
        let minute = two(&Self::or_default(t.norm_text(at, "Minute"), "00"))?;
        Ok(format!("{year}/{month}/{day} {hour}:{minute}"))
    }

    /// `_pub_date`.
    fn pub_date(&self, at: Option<usize>) -> Mapped<String> {
        let t = self.tree;
        if at.is_none() {
            return Ok(String::new());
        }
        let medline_date = t.norm_text(at, "MedlineDate");
        if !medline_date.is_empty() {
            return Ok(medline_date);
        }
        let year = t.norm_text(at, "Year");
        let month = t.norm_text(at, "Month");
        let (second, third);
        if !month.is_empty() {
            second = if is_digits(&month)? {
                small_number(&month)
                    .and_then(|n| self.tables.month_names.get(&n))
                    .cloned()
                    .unwrap_or_else(|| month.clone())
            } else {
                month.clone()
            };
            third = t.norm_text(at, "Day");
        } else {
            second = t.norm_text(at, "Season");
            third = String::new();
        }
        Ok(join_present(&[&year, &second, &third], " "))
    }

    /// `_abstract`.
    fn abstract_text(&self, at: Option<usize>) -> String {
        let t = self.tree;
        let mut parts = vec![];
        for section in t.children(at, "AbstractText") {
            let text = t.text(Some(section));
            let label = t.norm_attr(section, "Label");
            parts.push(if !label.is_empty() && !text.is_empty() {
                format!("{label}: {text}")
            } else if !text.is_empty() {
                text
            } else {
                label
            });
        }
        join_present(&parts.iter().map(String::as_str).collect::<Vec<_>>(), " ")
    }

    /// `_Fields.people`.
    fn people(&mut self, persons: Vec<usize>, full: &'static str, short: &'static str, affiliation: &'static str) {
        let t = self.tree;
        for person in persons {
            let at = Some(person);
            let last = t.norm_text(at, "LastName");
            if last.is_empty() {
                self.add("CN", t.first_text(at, "CollectiveName").unwrap_or(""));
                continue;
            }
            let fore = t.norm_text(at, "ForeName");
            let initials = t.norm_text(at, "Initials");
            let suffix = t.norm_text(at, "Suffix");
            let name = if fore.is_empty() { last.clone() } else { format!("{last}, {fore}") };
            self.add(full, &join_present(&[&name, &suffix], " "));
            self.add(short, &join_present(&[&last, &initials, &suffix], " "));
            for info in t.children(at, "AffiliationInfo") {
                self.add(affiliation, t.first_text(Some(info), "Affiliation").unwrap_or(""));
            }
            for ident in t.children(at, "Identifier") {
                let source = t.norm_attr(ident, "Source");
                let value = t.text(Some(ident));
                let line = if source.is_empty() { value } else { format!("{source}: {value}") };
                self.add("AUID", &line);
            }
        }
    }

    /// `_Fields.locations`.
    fn locations(&mut self, parent: Option<usize>) {
        let t = self.tree;
        for location in t.children(parent, "ELocationID") {
            let kind = t.norm_attr(location, "EIdType");
            let value = t.text(Some(location));
            let line = if kind.is_empty() { value } else { format!("{value} [{kind}]") };
            self.add("LID", &line);
        }
    }

    /// `_Fields.abstract`.
    fn abstract_fields(&mut self, at: Option<usize>) {
        if at.is_some() {
            let text = self.abstract_text(at);
            self.add("AB", &text);
            self.add("CI", self.tree.first_text(at, "CopyrightInformation").unwrap_or(""));
        }
    }

    /// `_Fields.grants`.
    fn grants(&mut self, parent: Option<usize>) {
        let t = self.tree;
        for grant in t.path(parent, "GrantList", "Grant") {
            let at = Some(grant);
            let mut parts: Vec<String> =
                ["GrantID", "Acronym", "Agency", "Country"].iter().map(|p| t.norm_text(at, p)).collect();
            while parts.last().map_or(false, String::is_empty) {
                parts.pop();
            }
            self.add("GR", &parts.join("/"));
        }
    }

    /// `_Fields.keywords`.
    fn keywords(&mut self, parent: Option<usize>) {
        let t = self.tree;
        for keywords in t.children(parent, "KeywordList") {
            self.add("OTO", t.attr(keywords, "Owner").unwrap_or(""));
            for keyword in t.children(Some(keywords), "Keyword") {
                self.add("OT", &t.text(Some(keyword)));
            }
        }
    }

    /// `_Fields.history`.
    fn history(&mut self, at: Option<usize>) -> Mapped<()> {
        let t = self.tree;
        let at = match at {
            Some(at) => at,
            None => return Ok(()),
        };
        let mut found = vec![];
        t.descendants(at, "PubMedPubDate", &mut found);
        let mut dates = vec![];
        for date in found {
            dates.push((t.norm_attr(date, "PubStatus"), self.stamp(date)?));
        }
        for (status, tag) in &self.tables.stamp_tags {
            if let Some((_, stamp)) = dates.iter().find(|(s, _)| s == status) {
                self.add_owned_tag(tag.clone(), stamp);
            }
        }
        for (status, stamp) in &dates {
            let line = if status.is_empty() { stamp.clone() } else { format!("{stamp} [{status}]") };
            self.add("PHST", &line);
        }
        Ok(())
    }

    /// `_Fields.article_ids`: the PMC id and the manuscript id.
    fn article_ids(&mut self, at: Option<usize>) -> (Option<String>, Option<String>) {
        let t = self.tree;
        let (mut pmc, mut mid) = (None, None);
        for ident in t.children(at, "ArticleId") {
            let kind = t.norm_attr(ident, "IdType");
            let value = t.text(Some(ident));
            match &*kind {
                "pubmed" => {}
                "pmc" => pmc = Some(value),
                "mid" => mid = Some(value),
                "" => self.add("AID", &value),
                _ => self.add("AID", &format!("{value} [{kind}]")),
            }
        }
        (pmc, mid)
    }

    /// `_date_words` of a DEP value, or Declined where Python's `int` would fail on it.
    fn date_words(&self, compact: &str) -> Mapped<String> {
        if !compact.is_ascii() || compact.len() < 7 || compact.len() > 16 {
            return Err(Declined);
        }
        let (month, day) = (&compact[4..6], &compact[6..]);
        if !is_digits(month)? || !is_digits(day)? {
            return Err(Declined);
        }
        let name = small_number(month)
            .and_then(|n| self.tables.month_names.get(&n))
            .cloned()
            .unwrap_or_else(|| month.to_owned());
        Ok(format!("{} {name} {}", &compact[..4], small_number(day).ok_or(Declined)?))
    }

    /// `_source_line`.
    fn source_line(&self) -> Mapped<String> {
        let first = |tag: &str| -> &str {
            self.items.iter().find(|(t, _)| t == tag).map_or("", |(_, v)| v.as_ref())
        };
        let head = join_present(&[first("TA"), first("DP")], ". ");
        if head.is_empty() {
            return Ok(String::new());
        }
        let mut place = first("VI").to_owned();
        if !first("IP").is_empty() {
            place += &format!("({})", first("IP"));
        }
        if !first("PG").is_empty() {
            place += &format!(":{}", first("PG"));
        }
        let mut line = if place.is_empty() { format!("{head}.") } else { format!("{head};{place}.") };
        let doi = self.items.iter().find_map(|(t, v)| {
            ((t == "LID" || t == "AID") && v.ends_with(" [doi]")).then(|| &v[..v.len() - " [doi]".len()])
        });
        if let Some(doi) = doi.filter(|d| !d.is_empty()) {
            line += &format!(" doi: {doi}.");
        }
        if !first("DEP").is_empty() {
            line += &format!(" Epub {}.", self.date_words(first("DEP"))?);
        }
        Ok(line)
    }

    /// `citation_fields`.
    fn citation(&mut self, citation: usize, pubmed_data: Option<usize>) -> Mapped<()> {
        let t = self.tree;
        let c = Some(citation);
        let a = t.first(c, "Article");
        let j = t.first(a, "Journal");
        let issue = t.first(j, "JournalIssue");
        let info = t.first(c, "MedlineJournalInfo");

        self.add("PMID", t.first_text(c, "PMID").unwrap_or(""));
        self.add("OWN", t.attr(citation, "Owner").unwrap_or(""));
        self.add("STAT", t.attr(citation, "Status").unwrap_or(""));
        for (tag, name) in [("DA", "DateCreated"), ("DCOM", "DateCompleted"), ("LR", "DateRevised")] {
            let date = self.compact_date(t.first(c, name))?;
            self.add(tag, &date);
        }
        for issn in t.children(j, "ISSN") {
            let kind = t.norm_attr(issn, "IssnType");
            let value = t.text(Some(issn));
            self.add("IS", &if kind.is_empty() { value } else { format!("{value} ({kind})") });
        }
        if info.is_some() && !t.first_text(info, "ISSNLinking").unwrap_or("").is_empty() {
            self.add("IS", &format!("{} (Linking)", t.norm_text(info, "ISSNLinking")));
        }
        if issue.is_some() {
            self.add("VI", t.first_text(issue, "Volume").unwrap_or(""));
            self.add("IP", t.first_text(issue, "Issue").unwrap_or(""));
            let date = self.pub_date(t.first(issue, "PubDate"))?;
            self.add("DP", &date);
        }
        self.add("TI", &t.text(t.first(a, "ArticleTitle")));
        let mut pages = norm(t.path_text(a, "Pagination", "MedlinePgn").unwrap_or("")).into_owned();
        if pages.is_empty() {
            let start = norm(t.path_text(a, "Pagination", "StartPage").unwrap_or("")).into_owned();
            let end = norm(t.path_text(a, "Pagination", "EndPage").unwrap_or("")).into_owned();
            pages = if !start.is_empty() && !end.is_empty() { format!("{start}-{end}") } else { start };
        }
        self.add("PG", &pages);
        self.locations(a);
        self.abstract_fields(t.first(a, "Abstract"));
        self.people(t.path(a, "AuthorList", "Author").collect(), "FAU", "AU", "AD");
        for language in t.children(a, "Language") {
            self.add("LA", &t.nodes[language].text);
        }
        for bank in t.path(a, "DataBankList", "DataBank") {
            let name = t.norm_text(Some(bank), "DataBankName");
            for accession in t.path(Some(bank), "AccessionNumberList", "AccessionNumber") {
                let value = t.text(Some(accession));
                self.add("SI", &if name.is_empty() { value } else { format!("{name}/{value}") });
            }
        }
        self.grants(a);
        for kind in t.path(a, "PublicationTypeList", "PublicationType") {
            self.add("PT", &t.nodes[kind].text);
        }
        for date in t.children(a, "ArticleDate") {
            let kind = t.attr(date, "DateType").filter(|k| !k.is_empty()).unwrap_or("Electronic");
            if norm(kind) == "Electronic" {
                let compact = self.compact_date(Some(date))?;
                self.add("DEP", &compact);
            }
        }
        self.add("TT", &t.text(t.first(a, "VernacularTitle")));
        if info.is_some() {
            self.add("PL", t.first_text(info, "Country").unwrap_or(""));
            self.add("TA", t.first_text(info, "MedlineTA").unwrap_or(""));
        }
        self.add("JT", t.first_text(j, "Title").unwrap_or(""));
        if info.is_some() {
            self.add("JID", t.first_text(info, "NlmUniqueID").unwrap_or(""));
        }
        for chemical in t.path(c, "ChemicalList", "Chemical") {
            let number = t.norm_text(Some(chemical), "RegistryNumber");
            let name = t.text(t.first(Some(chemical), "NameOfSubstance"));
            self.add("RN", &if number.is_empty() { name } else { format!("{number} ({name})") });
        }
        for supplement in t.path(c, "SupplMeshList", "SupplMeshName") {
            self.add("NM", &t.text(Some(supplement)));
        }
        for subset in t.children(c, "CitationSubset") {
            self.add("SB", &t.nodes[subset].text);
        }
        self.add("COIS", &t.text(t.first(c, "CoiStatement")));
        for comment in t.path(c, "CommentsCorrectionsList", "CommentsCorrections") {
            let ref_type = t.norm_attr(comment, "RefType");
            if self.tables.skipped_ref_types.iter().any(|skipped| *skipped == *ref_type) {
                continue;
            }
            let source = t.norm_text(Some(comment), "RefSource");
            let pmid = t.norm_text(Some(comment), "PMID");
            let tag = match self.tables.comment_tags.get(&*ref_type) {
                Some(tag) => tag.clone(),
                None if ref_type.is_empty() => "CC".to_owned(),
                None => ref_type,
            };
            let line = if pmid.is_empty() { source } else { format!("{source} PMID: {pmid}") };
            self.add_owned_tag(tag, &line);
        }
        for symbol in t.path(c, "GeneSymbolList", "GeneSymbol") {
            self.add("GS", &t.nodes[symbol].text);
        }
        for heading in t.path(c, "MeshHeadingList", "MeshHeading") {
            let descriptor = match t.first(Some(heading), "DescriptorName") {
                Some(descriptor) => descriptor,
                None => continue,
            };
            let star = |at: usize| if t.attr(at, "MajorTopicYN") == Some("Y") { "*" } else { "" };
            let mut names = vec![format!("{}{}", star(descriptor), t.text(Some(descriptor)))];
            for qualifier in t.children(Some(heading), "QualifierName") {
                names.push(format!("{}{}", star(qualifier), t.text(Some(qualifier))));
            }
            self.add("MH", &names.join("/"));
        }
        for subject in t.path(c, "PersonalNameSubjectList", "PersonalNameSubject") {
            let at = Some(subject);
            let last = t.norm_text(at, "LastName");
            let fore = t.norm_text(at, "ForeName");
            let initials = t.norm_text(at, "Initials");
            self.add("FPS", &if fore.is_empty() { last.clone() } else { format!("{last}, {fore}") });
            self.add("PS", &join_present(&[&last, &initials], " "));
        }
        self.add("RF", t.first_text(c, "NumberOfReferences").unwrap_or(""));
        for other_id in t.children(c, "OtherID") {
            let source = t.norm_attr(other_id, "Source");
            let value = t.text(Some(other_id));
            self.add("OID", &if source.is_empty() { value } else { format!("{source}: {value}") });
        }
        self.keywords(c);
        for note in t.children(c, "GeneralNote") {
            self.add("GN", &t.text(Some(note)));
        }
        self.people(t.path(c, "InvestigatorList", "Investigator").collect(), "FIR", "IR", "IRAD");
        for other in t.children(c, "OtherAbstract") {
            let kind = t.norm_attr(other, "Type");
            let text = self.abstract_text(Some(other));
            let line = if !kind.is_empty() && !text.is_empty() { format!("{kind}: {text}") } else { text };
            self.add("OAB", &line);
            self.add("OABL", t.attr(other, "Language").unwrap_or(""));
            self.add("OCI", t.first_text(Some(other), "CopyrightInformation").unwrap_or(""));
        }
        for mission in t.children(c, "SpaceFlightMission") {
            self.add("SFM", &t.nodes[mission].text);
        }
        self.history(t.first(pubmed_data, "History"))?;
        let (pmc, mid) = self.article_ids(t.first(pubmed_data, "ArticleIdList"));
        self.add("PMC", pmc.as_deref().unwrap_or(""));
        self.add("MID", mid.as_deref().unwrap_or(""));
        self.add("PST", t.first_text(pubmed_data, "PublicationStatus").unwrap_or(""));
        let source = self.source_line()?;
        self.add("SO", &source);
        Ok(())
    }

    /// `book_fields`.
    fn book(&mut self, book: usize) -> Mapped<()> {
        let t = self.tree;
        let d = t.first(Some(book), "BookDocument");
        let about = t.first(d, "Book");
        let data = t.first(Some(book), "PubmedBookData");
        let publisher = t.first(about, "Publisher");
        self.add("PMID", t.first_text(d, "PMID").unwrap_or(""));
        let revised = self.compact_date(t.first(d, "DateRevised"))?;
        self.add("DRDT", &revised);
        let contributed = self.compact_date(t.first(d, "ContributionDate"))?;
        self.add("CTDT", &contributed);
        if publisher.is_some() {
            self.add("PB", t.first_text(publisher, "PublisherName").unwrap_or(""));
        }
        let date = self.pub_date(t.first(about, "PubDate"))?;
        self.add("DP", &date);
        self.add("TI", &t.text(t.first(d, "ArticleTitle")));
        self.add("BTI", &t.text(t.first(about, "BookTitle")));
        self.add("CTI", &t.text(t.first(about, "CollectionTitle")));
        self.add("VTI", &t.text(t.first(about, "VolumeTitle")));
        self.add("EN", t.first_text(about, "Edition").unwrap_or(""));
        self.locations(d);
        self.abstract_fields(t.first(d, "Abstract"));
        for editors in t.children(about, "AuthorList") {
            if t.attr(editors, "Type") != Some("editors") {
                continue;
            }
            for editor in t.children(Some(editors), "Author") {
                let at = Some(editor);
                let last = t.norm_text(at, "LastName");
                let fore = t.norm_text(at, "ForeName");
                self.add("FED", &if fore.is_empty() { last.clone() } else { format!("{last}, {fore}") });
                self.add("ED", &join_present(&[&last, &t.norm_text(at, "Initials")], " "));
            }
        }
        for authors in t.children(d, "AuthorList") {
            if t.attr(authors, "Type").unwrap_or("authors") == "authors" {
                self.people(t.children(Some(authors), "Author").collect(), "FAU", "AU", "AD");
            }
        }
        for language in t.children(d, "Language") {
            self.add("LA", &t.nodes[language].text);
        }
        self.grants(d);
        for kind in t.children(d, "PublicationType") {
            self.add("PT", &t.nodes[kind].text);
        }
        if publisher.is_some() {
            self.add("PL", t.first_text(publisher, "PublisherLocation").unwrap_or(""));
        }
        self.keywords(d);
        for isbn in t.children(about, "Isbn") {
            self.add("ISBN", &t.nodes[isbn].text);
        }
        self.history(t.first(data, "History"))?;
        self.article_ids(t.first(d, "ArticleIdList"));
        if data.is_some() {
            self.article_ids(t.first(data, "ArticleIdList"));
            self.add("PST", t.first_text(data, "PublicationStatus").unwrap_or(""));
        }
        Ok(())
    }
}

/// `_pmid_version`: the PMID element's `Version`, 1 without one; Declined when Python would
/// refuse it.
fn pmid_version(tree: &Tree, pmid: Option<usize>, max: u32) -> Mapped<u32> {
    let raw = norm(pmid.and_then(|at| tree.attr(at, "Version")).unwrap_or(""));
    if raw.is_empty() {
        return Ok(1);
    }
    if !is_digits(&raw)? {
        return Err(Declined);
    }
    match small_number(&raw) {
        Some(version) if (1..=max).contains(&version) => Ok(version),
        _ => Err(Declined),
    }
}

/// The MEDLINE fields of one PubMed XML record and its PMID version, or None to leave the
/// record to Python (see the module's documentation).
pub fn xml_fields(tables: &Tables, text: &str) -> Option<(Vec<Field<'static>>, u32)> {
    let tree = Tree::parse(text).ok()?;
    let mut mapper = Mapper { tables, tree: &tree, items: Vec::with_capacity(64) };
    let pmid = match tree.name(0) {
        "PubmedArticle" => {
            let citation = tree.first(Some(0), "MedlineCitation")?;
            mapper.citation(citation, tree.first(Some(0), "PubmedData")).ok()?;
            tree.first(Some(citation), "PMID")
        }
        "MedlineCitation" => {
            mapper.citation(0, None).ok()?;
            tree.first(Some(0), "PMID")
        }
        "PubmedBookArticle" => {
            mapper.book(0).ok()?;
            tree.path(Some(0), "BookDocument", "PMID").next()
        }
        _ => return None,
    };
    let fields = mapper.items;
    if fields.first().map_or(true, |(tag, _)| tag != "PMID") {
        return None;
    }
    let version = pmid_version(&tree, pmid, tables.version_max).ok()?;
    Some((fields, version))
}
