"""The Elasticsearch index template, checked against the document model.

Mapping choices: ``keyword`` for ids, codes and names that are filtered or aggregated on;
``text`` (standard analyzer) for title and abstract, with a ``keyword`` sub-field on the title
for sorting and exact match; ``date`` for dates; ``nested`` for authors, investigators and
MeSH headings so a query can ask for one author *with* one affiliation, or one descriptor that
is *major*. The local node has no ``analysis-common`` module, so only the built-in
``standard`` analyzer is used. ``dynamic: strict`` makes an unmapped field a clear rejection.
"""

from __future__ import annotations

from typing import Any

#: Bump when the mapping changes: new indices are ``{alias}-v{TEMPLATE_VERSION}``.
TEMPLATE_VERSION = 1
#: Template priority; above the built-in templates.
TEMPLATE_PRIORITY = 200

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_TEXT = {"type": "text", "analyzer": "standard"}
_DATE = {"type": "date"}

_PERSON = {
    "type": "nested",
    "properties": {
        "full_name": {**_TEXT, "fields": {"raw": _KEYWORD}},
        "short_name": _KEYWORD,
        "affiliations": _TEXT,
        "identifiers": _KEYWORD,
    },
}
_TYPED = {"properties": {"value": _KEYWORD, "type": _KEYWORD}}

#: Field → mapping, for every field of :class:`schemas.document.Document`.
DOCUMENT_PROPERTIES: dict[str, Any] = {
    "pmid": _KEYWORD,
    "title": {**_TEXT, "fields": {"raw": _KEYWORD}},
    "abstract": _TEXT,
    "other_abstracts": _TEXT,
    "transliterated_title": _TEXT,
    "authors": _PERSON,
    "corporate_authors": {**_TEXT, "fields": {"raw": _KEYWORD}},
    "investigators": _PERSON,
    "mesh": {
        "type": "nested",
        "properties": {
            "descriptor": _KEYWORD,
            "qualifiers": _KEYWORD,
            "major": {"type": "boolean"},
        },
    },
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
            "title": {**_TEXT, "fields": {"raw": _KEYWORD}},
            "iso_abbrev": _KEYWORD,
            "nlm_id": _KEYWORD,
            "issns": _TYPED,
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
    "entrez_date": _DATE,
    "mesh_date": _DATE,
    "created": _DATE,
    "history": {"properties": {"status": _KEYWORD, "date": _DATE, "raw": _KEYWORD}},
    "doi": _KEYWORD,
    "pii": _KEYWORD,
    "pmc": _KEYWORD,
    "article_ids": _TYPED,
    "status": _KEYWORD,
    "owner": _KEYWORD,
    "publication_status": _KEYWORD,
    "subsets": _KEYWORD,
    "source": {**_TEXT, "fields": {"raw": _KEYWORD}},
    # Tags the model does not map: kept in _source, searchable as keywords under extra.*;
    # dynamic here because the tag set is open.
    "extra": {"type": "object", "dynamic": True},
}


def build_index_template(alias: str, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Keyword arguments for ``indices.put_index_template`` for indices ``{alias}-v*``."""
    return {
        "index_patterns": [f"{alias}-v*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "index.mapping.nested_objects.limit": 50_000,
            },
            "mappings": {
                "dynamic": "strict",
                "dynamic_templates": [
                    {"extra_as_keyword": {"path_match": "extra.*", "mapping": _KEYWORD}}
                ],
                "properties": DOCUMENT_PROPERTIES,
            },
        },
    }
