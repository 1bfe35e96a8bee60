"""The Elasticsearch index template, checked against the document model.

Mapping choices:

- ``keyword`` for ids, codes and names that are filtered or aggregated on; ``text`` with the
  ``standard`` analyzer for what is searched as words (title, abstract, affiliations, ...),
  with a ``raw`` keyword sub-field where exact match or sorting makes sense. The local node
  has no ``analysis-common`` module, so only analyzers built into the server are used.
- ``date`` for dates, in the two shapes the model writes (``2003-02-15`` and
  ``2003-02-01T04:00:00``); the raw DP string is kept as a keyword beside its derived date.
- ``flat`` entries by default: a citation's authors, investigators, MeSH headings and history
  events are plain objects, each field queried on its own, and the document is one Lucene
  document. PubMed's own searches need no more: its MeSH searches ([majr], term/subheading)
  are plain terms of their own (``mesh_major_topics``, ``mesh_qualified_terms``), its date
  searches fields of their own. ``MEDLINE_INDEX_MAPPING=nested`` maps the entries ``nested``
  instead, for queries on two fields of the *same* entry (an author *with* an affiliation, a
  history status *with* its date), and keeps a ``raw`` sub-field on the title and the source
  (a unique term per citation each). Each nested entry is a hidden Lucene document of its own,
  some 15-25 per citation: Elasticsearch spends about a fifth more CPU per document
  (``tests/benchmarks/bench_mapping.py``). The documents are the same under both; only what a
  query can ask differs.
- ``extra`` (tags the model does not map) is an object whose sub-fields are mapped as
  keywords on first sight, so they stay searchable; everything else is ``dynamic: strict``, so
  a field the template does not know is a clear rejection rather than a silent guess.

``tests/unit/test_index_template.py`` checks that every model field has a mapping of a fitting
type and that nothing else is mapped.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

#: Bump whenever a field's mapping changes: new indices are named ``{alias}-v{TEMPLATE_VERSION}``.
#: A field added needs no bump: ``worker.index_admin.ensure_index`` adds it to an existing index.
TEMPLATE_VERSION = 2
#: Template priority, above the server's built-in templates.
TEMPLATE_PRIORITY = 200
#: Nested objects one document may hold (authors + investigators + MeSH + history); the
#: server's default of 10,000 is too low for consortium papers with thousands of authors.
NESTED_OBJECTS_LIMIT = 50_000
#: Longest keyword indexed; longer values stay in ``_source`` and full-text fields only.
KEYWORD_LIMIT = 1024

_KEYWORD = {"type": "keyword", "ignore_above": KEYWORD_LIMIT}
_TEXT = {"type": "text", "analyzer": "standard"}
_TEXT_AND_RAW = {**_TEXT, "fields": {"raw": _KEYWORD}}
_DATE = {"type": "date", "format": "strict_date_optional_time"}
_TYPED_VALUE = {"properties": {"value": _KEYWORD, "type": _KEYWORD}}
_PERSON = {
    "type": "nested",
    "properties": {
        "full_name": _TEXT_AND_RAW,
        "short_name": _KEYWORD,
        "affiliations": _TEXT,
        "identifiers": _KEYWORD,
    },
}

#: Field → mapping, for every field of :class:`schemas.document.Document`.
DOCUMENT_PROPERTIES: dict[str, Any] = {
    "pmid": _KEYWORD,
    "pmid_version": {"type": "short"},
    "title": _TEXT_AND_RAW,
    "abstract": _TEXT,
    "other_abstracts": _TEXT,
    "transliterated_title": _TEXT,
    "authors": _PERSON,
    "corporate_authors": _TEXT_AND_RAW,
    "investigators": _PERSON,
    "mesh": {
        "type": "nested",
        "properties": {
            "descriptor": _KEYWORD,
            "qualifiers": _KEYWORD,
            "major": {"type": "boolean"},
            "descriptor_major": {"type": "boolean"},
            "major_qualifiers": _KEYWORD,
        },
    },
    # Derived from the headings (see the document): plain terms in both mappings.
    "mesh_major_topics": _KEYWORD,
    "mesh_qualified_terms": _KEYWORD,
    "keywords": {**_KEYWORD, "fields": {"text": _TEXT}},
    "substances": {"properties": {"registry_number": _KEYWORD, "name": _KEYWORD}},
    "publication_types": _KEYWORD,
    "languages": _KEYWORD,
    "grants": {
        "properties": {
            "raw": _KEYWORD,
            "grant_id": _KEYWORD,
            "acronym": _KEYWORD,
            "agency": _KEYWORD,
            "country": _KEYWORD,
        }
    },
    "journal": {
        "properties": {
            "title": _TEXT_AND_RAW,
            "iso_abbrev": _KEYWORD,
            "nlm_id": _KEYWORD,
            "issns": _TYPED_VALUE,
            "volume": _KEYWORD,
            "issue": _KEYWORD,
            "pages": _KEYWORD,
            "country": _KEYWORD,
        }
    },
    "pub_date": {"properties": {"raw": _KEYWORD, "year": {"type": "short"}, "date": _DATE}},
    "electronic_pub_date": _DATE,
    "completed": _DATE,
    "revised": _DATE,
    "book_revised": _DATE,
    "entrez_date": _DATE,
    "mesh_date": _DATE,
    "created": _DATE,
    "history": {"type": "nested", "properties": {"status": _KEYWORD, "date": _DATE}},
    "doi": _KEYWORD,
    "pii": _KEYWORD,
    "pmc": _KEYWORD,
    "article_ids": _TYPED_VALUE,
    "status": _KEYWORD,
    "owner": _KEYWORD,
    "publication_status": _KEYWORD,
    "subsets": _KEYWORD,
    "source": _TEXT_AND_RAW,
    # Tags the model does not map: the tag set is open, so sub-fields appear as they come,
    # each a keyword (see the dynamic template below).
    "extra": {"type": "object", "dynamic": True},
}


#: How an index maps the entries of a citation (see the module's docstring).
IndexMapping = Literal["nested", "flat"]
#: The mapping of a new index unless ``MEDLINE_INDEX_MAPPING`` says otherwise: PubMed's own
#: searches need no nested query (README, "Index mapping"), and flat costs the node less.
DEFAULT_MAPPING: IndexMapping = "flat"
#: Fields that are ``nested`` in the nested mapping and plain objects in the flat one.
ENTRY_FIELDS = ("authors", "investigators", "mesh", "history")
#: Fields whose ``raw`` sub-field the flat mapping leaves out: one unique term per citation.
UNIQUE_RAW_FIELDS = ("title", "source")


def document_properties(mapping: IndexMapping = DEFAULT_MAPPING) -> dict[str, Any]:
    """:data:`DOCUMENT_PROPERTIES` as ``mapping`` maps them; a new dict each call."""
    properties = copy.deepcopy(DOCUMENT_PROPERTIES)
    if mapping == "flat":
        for name in ENTRY_FIELDS:
            properties[name] = {k: v for k, v in properties[name].items() if k != "type"}
        for name in UNIQUE_RAW_FIELDS:
            properties[name] = {k: v for k, v in properties[name].items() if k != "fields"}
    return properties


def build_index_template(
    alias: str, shards: int = 1, replicas: int = 0, mapping: IndexMapping = DEFAULT_MAPPING
) -> dict[str, Any]:
    """The body of ``PUT _index_template/<alias>``, for the indices ``{alias}-v*``.

    :param alias: the alias documents are written to and searched through.
    :param shards: primary shards of each new index.
    :param replicas: replicas of each new index.
    :param mapping: ``nested`` or ``flat`` entries (see the module's docstring).
    :returns: a new dict each call (callers may add to it).
    """
    settings: dict[str, Any] = {"number_of_shards": shards, "number_of_replicas": replicas}
    if mapping == "nested":
        settings["index.mapping.nested_objects.limit"] = NESTED_OBJECTS_LIMIT
    return {
        "index_patterns": [f"{alias}-v*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "template": {
            "settings": settings,
            "mappings": {
                # Which mapping an index was made with, for whoever reads its mapping later.
                "_meta": {"mapping": mapping, "template_version": TEMPLATE_VERSION},
                "dynamic": "strict",
                # Only under "extra" may fields appear, and only as keywords: no guessing of
                # dates or numbers from a tag's first value.
                "date_detection": False,
                "numeric_detection": False,
                "dynamic_templates": [
                    {"extra_as_keyword": {"path_match": "extra.*", "mapping": _KEYWORD}}
                ],
                "properties": document_properties(mapping),
            },
        },
    }
