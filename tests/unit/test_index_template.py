"""The index template maps exactly the document model's fields."""

from __future__ import annotations

import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from schemas.document import Document
from schemas.index_template import DOCUMENT_PROPERTIES, build_index_template


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``list[X]`` or ``X | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    if get_origin(annotation) is typing.Annotated:
        return _model_of(get_args(annotation)[0])
    return None


def _compare(model: type[BaseModel], properties: dict[str, Any], path: str) -> list[str]:
    problems = []
    fields = set(model.model_fields)
    mapped = set(properties)
    problems += [f"{path}{name}: in the model, not mapped" for name in fields - mapped]
    problems += [f"{path}{name}: mapped, not in the model" for name in mapped - fields]
    for name in fields & mapped:
        sub = _model_of(model.model_fields[name].annotation)
        if sub is not None:
            problems += _compare(sub, properties[name].get("properties", {}), f"{path}{name}.")
    return problems


def test_template_and_model_have_the_same_fields() -> None:
    assert _compare(Document, DOCUMENT_PROPERTIES, "") == []


def test_nested_where_queries_need_it_and_dates_as_dates() -> None:
    assert DOCUMENT_PROPERTIES["authors"]["type"] == "nested"
    assert DOCUMENT_PROPERTIES["mesh"]["type"] == "nested"
    assert DOCUMENT_PROPERTIES["pub_date"]["properties"]["date"]["type"] == "date"
    assert DOCUMENT_PROPERTIES["pub_date"]["properties"]["raw"]["type"] == "keyword"
    assert DOCUMENT_PROPERTIES["title"]["analyzer"] == "standard"


def test_template_targets_versioned_indices_of_the_alias() -> None:
    template = build_index_template("pubmed", shards=3, replicas=1)
    assert template["index_patterns"] == ["pubmed-v*"]
    assert template["template"]["settings"]["number_of_shards"] == 3
    assert template["template"]["mappings"]["dynamic"] == "strict"
