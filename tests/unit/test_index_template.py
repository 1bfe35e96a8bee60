"""The index template maps exactly the document model's fields, each with a fitting type."""

from __future__ import annotations

import copy
import datetime as dt
import re
import types
import typing
from typing import Any, NotRequired, Required, get_args, get_origin, get_type_hints

import pytest
from pydantic import BaseModel
from typing_extensions import is_typeddict

from schemas.document import Document
from schemas.index_template import (
    DOCUMENT_PROPERTIES,
    ENTRY_FIELDS,
    TEMPLATE_VERSION,
    UNIQUE_RAW_FIELDS,
    build_index_template,
    document_properties,
)
from tests.helpers import sample_documents
from tests.unit.test_documents import RICH
from worker.documents import record_to_document
from worker.index_admin import missing_properties

#: Each test runs with the compiled parser and with the Python one.
pytestmark = pytest.mark.usefixtures("parser_mode")

#: Mapping types that fit each Python type of the model.
FITTING = {
    str: {"keyword", "text"},
    int: {"short", "integer", "long"},
    bool: {"boolean"},
    dt.date: {"date"},
    dt.datetime: {"date"},
}


def _leaf_types(annotation: Any) -> list[Any]:
    """The types inside ``X``, ``list[X]``, ``X | None``, ``Annotated[X, ...]``,
    ``Required[X]``."""
    origin = get_origin(annotation)
    if origin in (typing.Annotated, Required, NotRequired):
        return _leaf_types(get_args(annotation)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        return [t for arg in get_args(annotation) if arg is not ... for t in _leaf_types(arg)]
    return [] if annotation is type(None) else [annotation]


def _fields(model: Any) -> dict[str, Any]:
    """Field name → annotation of the document model or of one of its parts (TypedDicts)."""
    if is_typeddict(model):
        return get_type_hints(model, include_extras=True)
    return {name: field.annotation for name, field in model.model_fields.items()}


def _is_object(leaf: Any) -> bool:
    return is_typeddict(leaf) or (isinstance(leaf, type) and issubclass(leaf, BaseModel))


def _compare(model: Any, properties: dict[str, Any], path: str) -> list[str]:
    problems = []
    annotations = _fields(model)
    fields, mapped = set(annotations), set(properties)
    problems += [f"{path}{name}: in the model, not mapped" for name in sorted(fields - mapped)]
    problems += [f"{path}{name}: mapped, not in the model" for name in sorted(mapped - fields)]
    for name in sorted(fields & mapped):
        mapping = properties[name]
        for leaf in _leaf_types(annotations[name]):
            if _is_object(leaf):
                if mapping.get("type", "object") not in ("object", "nested"):
                    problems.append(f"{path}{name}: a {leaf.__name__} needs object or nested")
                problems += _compare(leaf, mapping.get("properties", {}), f"{path}{name}.")
            elif get_origin(leaf) is dict:
                if mapping.get("type") != "object":
                    problems.append(f"{path}{name}: a dict needs an object")
            elif mapping.get("type") not in FITTING[leaf]:
                problems.append(f"{path}{name}: {leaf.__name__} mapped as {mapping.get('type')}")
    return problems


@pytest.mark.parametrize("mapping", ["nested", "flat"])
def test_template_and_model_have_the_same_fields_with_fitting_types(mapping: str) -> None:
    properties = build_index_template("m", mapping=mapping)["template"]["mappings"]["properties"]
    assert _compare(Document, properties, "") == []


def test_the_comparison_would_notice_a_difference() -> None:
    broken = {**DOCUMENT_PROPERTIES, "surplus": {"type": "keyword"}}
    broken["completed"] = {"type": "keyword"}
    del broken["doi"]
    assert _compare(Document, broken, "") == [
        "doi: in the model, not mapped",
        "surplus: mapped, not in the model",
        "completed: date mapped as keyword",
    ]


def _mappings_in(mapping: Any) -> list[dict[str, Any]]:
    if isinstance(mapping, dict):
        # A mapping has a type name; {"value": ..., "type": {...}} is properties, not one.
        found = [mapping] if isinstance(mapping.get("type"), str) else []
        return found + [m for value in mapping.values() for m in _mappings_in(value)]
    if isinstance(mapping, list):
        return [m for value in mapping for m in _mappings_in(value)]
    return []


def test_nested_where_queries_need_it_and_only_built_in_analysis() -> None:
    for name in ("authors", "investigators", "mesh", "history"):
        assert DOCUMENT_PROPERTIES[name]["type"] == "nested", name
    assert DOCUMENT_PROPERTIES["title"]["type"] == "text"
    assert DOCUMENT_PROPERTIES["abstract"]["type"] == "text"
    assert DOCUMENT_PROPERTIES["pub_date"]["properties"]["raw"]["type"] == "keyword"
    mappings = _mappings_in(build_index_template("medline"))
    assert {m["analyzer"] for m in mappings if "analyzer" in m} == {"standard"}
    # Types a plain server has (no x-pack mapper plugins such as flattened).
    assert {m["type"] for m in mappings} <= {
        "keyword",
        "text",
        "date",
        "boolean",
        "short",
        "nested",
        "object",
    }


def test_flat_mapping_has_no_nested_entries_and_no_unique_raw_terms() -> None:
    template = build_index_template("medline", mapping="flat")["template"]
    properties = template["mappings"]["properties"]
    assert "nested" not in {m["type"] for m in _mappings_in(properties)}
    for name in ENTRY_FIELDS:
        assert "type" not in properties[name], name
        assert properties[name]["properties"] == DOCUMENT_PROPERTIES[name]["properties"]
    for name in UNIQUE_RAW_FIELDS:
        assert "fields" not in properties[name] and properties[name]["type"] == "text", name
    # Everything else as the nested mapping has it.
    unchanged = set(DOCUMENT_PROPERTIES) - set(ENTRY_FIELDS) - set(UNIQUE_RAW_FIELDS)
    assert {n: properties[n] for n in unchanged} == {n: DOCUMENT_PROPERTIES[n] for n in unchanged}
    assert "index.mapping.nested_objects.limit" not in template["settings"]
    meta = template["mappings"]["_meta"]
    assert meta == {"mapping": "flat", "template_version": TEMPLATE_VERSION}
    # The nested mapping is left as it was.
    assert document_properties("nested") == DOCUMENT_PROPERTIES
    assert DOCUMENT_PROPERTIES["authors"]["type"] == "nested"


def test_template_targets_versioned_indices_of_the_alias_and_is_strict() -> None:
    template = build_index_template("pubmed", shards=3, replicas=1)
    assert template["index_patterns"] == ["pubmed-v*"]
    assert template["version"] == TEMPLATE_VERSION
    settings = template["template"]["settings"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == (3, 1)
    mappings = template["template"]["mappings"]
    assert mappings["dynamic"] == "strict"
    assert mappings["properties"]["extra"] == {"type": "object", "dynamic": True}
    (only,) = mappings["dynamic_templates"]
    assert only["extra_as_keyword"]["path_match"] == "extra.*"
    assert only["extra_as_keyword"]["mapping"]["type"] == "keyword"


def test_each_call_gives_an_independent_template() -> None:
    first = build_index_template("a")
    first["template"]["mappings"]["properties"]["title"]["type"] = "keyword"
    assert build_index_template("a")["template"]["mappings"]["properties"]["title"]["type"] == (
        "text"
    )


@pytest.mark.parametrize("mapping", ["nested", "flat"])
def test_an_older_index_is_given_the_fields_it_lacks_at_any_depth(mapping: str) -> None:
    wanted = document_properties(mapping)
    older = copy.deepcopy(wanted)
    del older["book_revised"]
    del older["mesh"]["properties"]["major_qualifiers"]

    missing = missing_properties(wanted, older)

    mesh = {
        **wanted["mesh"],
        "properties": {"major_qualifiers": wanted["mesh"]["properties"]["major_qualifiers"]},
    }
    assert missing == {"book_revised": wanted["book_revised"], "mesh": mesh}
    assert ("type" in missing["mesh"]) == (mapping == "nested")  # nested stays nested
    assert missing_properties(wanted, wanted) == {}


#: What strict_date_optional_time accepts, in the two shapes the model writes.
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2})?")


def _dates(body: Any, properties: dict[str, Any]) -> list[str]:
    found = []
    for name, value in body.items():
        mapping = properties.get(name, {})
        values = value if isinstance(value, list) else [value]
        for item in values:
            if mapping.get("type") == "date":
                found.append(item)
            elif isinstance(item, dict) and "properties" in mapping:
                found += _dates(item, mapping["properties"])
    return found


def test_every_date_the_documents_hold_is_in_a_shape_the_mapping_accepts() -> None:
    docs = [record_to_document(RICH), *sample_documents()]
    dates = [d for doc in docs for d in _dates(doc.index_body(), DOCUMENT_PROPERTIES)]
    assert len(dates) > 100
    assert all(_DATE_SHAPE.fullmatch(d) for d in dates), dates
    assert all(
        m["format"] == "strict_date_optional_time"
        for m in _mappings_in(DOCUMENT_PROPERTIES)
        if m["type"] == "date"
    )
