"""The index behind the alias: template, versioned index, alias, and bulk-time tuning.

Documents are written to the alias ``settings.index`` (default ``medline``), which points at
``{alias}-v{TEMPLATE_VERSION}-flat`` (``{alias}-v{TEMPLATE_VERSION}`` with
``MEDLINE_INDEX_MAPPING=nested``). A field whose mapping changes bumps the template version, and
``MEDLINE_INDEX_MAPPING`` only decides how a new index is made: an existing index keeps its
mapping, and a reindex into the new index and an alias swap then switch readers and writers
without downtime. A field added needs neither: it is added to the existing index in place,
inside an entry's object as at the top. The template in place is replaced only by one at least
as new (:func:`put_template_unless_newer`), so that mixed versions during a rolling upgrade
never take fields away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from schemas.index_template import (
    DEFAULT_MAPPING,
    TEMPLATE_VERSION,
    IndexMapping,
    build_index_template,
    document_properties,
)
from worker.settings import Settings

log = logging.getLogger(__name__)


def versioned_index_name(
    alias: str, version: int = TEMPLATE_VERSION, mapping: IndexMapping = DEFAULT_MAPPING
) -> str:
    """The concrete index for ``alias`` at template ``version``: ``{alias}-v{version}``, with
    ``-flat`` for the flat mapping (changing the mapping, like the version, means a new index)."""
    return f"{alias}-v{version}" + ("-flat" if mapping == "flat" else "")


def ensure_index(client: Elasticsearch, settings: Settings, alias: str | None = None) -> str:
    """Put the index template, and create the versioned index with its alias if missing, or
    bring the existing one up to date (:func:`bring_up_to_date`).

    Safe to call from many processes at once: a concurrent creation is not an error.

    :param alias: the alias to ensure; default ``settings.index``.
    :returns: the name of the index the alias writes to.
    :raises elasticsearch.ApiError: Elasticsearch refused the template or the index.
    :raises elastic_transport.ConnectionError: Elasticsearch unreachable.
    """
    alias = alias or settings.index
    template = build_index_template(
        alias, settings.index_shards, settings.index_replicas, settings.index_mapping
    )
    put_template_unless_newer(client, alias, template)
    if client.indices.exists_alias(name=alias):
        current = client.indices.get_alias(name=alias)
        writers = [
            name
            for name, spec in current.items()
            if spec["aliases"][alias].get("is_write_index", len(current) == 1)
        ]
        index = writers[0] if writers else next(iter(current))
        bring_up_to_date(client, index, settings.index_mapping)
        return index
    index = versioned_index_name(alias, mapping=settings.index_mapping)
    try:
        client.indices.create(index=index, aliases={alias: {"is_write_index": True}})
    except ApiError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
        client.indices.put_alias(index=index, name=alias, is_write_index=True)
    return index


def put_template_unless_newer(client: Elasticsearch, name: str, template: dict[str, Any]) -> bool:
    """Put the index template ``name``, unless the one in place is a newer version's.

    Newer means a higher template version, or the same version with fields this one does not
    map (fields are added without a version bump). During a rolling upgrade a process of the
    old version may start after the new ones, and putting its template would take the new
    fields away from any index made from it later; the new version's template serves the old
    version's documents as well. A different mapping (flat or nested) or different shard
    counts of the same fields are put: the operator changed a setting.

    :returns: whether the template was put.
    :raises elasticsearch.ApiError: Elasticsearch refused the template.
    """
    try:
        found = client.indices.get_index_template(name=name)["index_templates"]
    except NotFoundError:
        found = []
    if found:
        in_place = found[0]["index_template"]
        ours = template.get("version", 0)
        theirs = in_place.get("version", 0)
        properties = in_place.get("template", {}).get("mappings", {}).get("properties", {})
        only_theirs = missing_properties(properties, template["template"]["mappings"]["properties"])
        if theirs > ours or (theirs == ours and only_theirs):
            log.warning(
                "index template %s is left as it is: a newer version put it (template version "
                "%s, this one's %s; fields this version does not map: %s)",
                name,
                theirs,
                ours,
                ", ".join(_field_paths(only_theirs)) or "none",
            )
            return False
    client.indices.put_index_template(name=name, **template)
    return True


def bring_up_to_date(client: Elasticsearch, index: str, wanted: IndexMapping) -> None:
    """Add the fields ``index`` lacks, and warn when it was made with another mapping.

    Fields are added as the index's own mapping maps them: the index is strict, and without
    them a newer worker's documents would be refused and dead-lettered. A field that changed
    its type cannot be changed in place; that bumps the template version instead.

    Writes still go to ``index`` whatever ``wanted`` says: the setting only decides how a *new*
    index is made, and splitting one job's documents over two indices would be worse. An index
    made by hand, or before the mapping was recorded in ``_meta``, is taken as made with
    ``wanted``, without a warning.

    :raises elasticsearch.ApiError: Elasticsearch refused the added fields.
    """
    mappings = client.indices.get_mapping(index=index)[index]["mappings"]
    made_with = mappings.get("_meta", {}).get("mapping")
    if made_with is not None and made_with != wanted:
        log.warning(
            "index %s was made with the %s mapping, but MEDLINE_INDEX_MAPPING is %s: documents "
            "go on to %s as it is; to switch, reindex into a new index and move the alias "
            "(README, Index mapping)",
            index,
            made_with,
            wanted,
            index,
        )
    wanted_properties = document_properties(made_with or wanted)
    missing = missing_properties(wanted_properties, mappings.get("properties", {}))
    if missing:
        client.indices.put_mapping(index=index, properties=missing)
        log.info("index %s: added the fields %s", index, ", ".join(_field_paths(missing)))


def missing_properties(wanted: dict[str, Any], has: dict[str, Any]) -> dict[str, Any]:
    """The part of the mapping ``wanted`` that ``has`` lacks, as ``put_mapping`` takes it.

    A field inside an object (``mesh.major_qualifiers``) counts as much as a field at the top:
    the object's mapping comes with it, so that a nested object stays nested.
    """
    missing: dict[str, Any] = {}
    for name, spec in wanted.items():
        if name not in has:
            missing[name] = spec
        elif "properties" in spec:
            inner = missing_properties(spec["properties"], has[name].get("properties", {}))
            if inner:
                missing[name] = {**spec, "properties": inner}
    return missing


def _field_paths(properties: dict[str, Any], prefix: str = "") -> list[str]:
    """``mesh.major_qualifiers`` and the like: the leaves of a mapping, for a log line."""
    paths = []
    for name, spec in sorted(properties.items()):
        inner = spec.get("properties")
        paths += _field_paths(inner, f"{prefix}{name}.") if inner else [prefix + name]
    return paths


def delete_index(client: Elasticsearch, alias: str) -> None:
    """Delete the alias, its indices and its template (tests and benchmarks only)."""
    if client.indices.exists_alias(name=alias):
        for index in client.indices.get_alias(name=alias):
            client.indices.delete(index=index, ignore_unavailable=True)
    client.indices.delete(index=f"{alias}-v*", ignore_unavailable=True, allow_no_indices=True)
    try:
        client.indices.delete_index_template(name=alias)
    except ApiError as exc:
        if exc.meta.status != 404:
            raise


#: Index settings applied during a bulk load: no periodic refresh, no replicas to copy to.
BULK_LOAD_SETTINGS = {"refresh_interval": "-1", "number_of_replicas": 0}


def write_index(client: Elasticsearch, alias: str) -> str:
    """The concrete index that writes to ``alias`` go to."""
    current = client.indices.get_alias(name=alias)
    for name, spec in current.items():
        if spec["aliases"][alias].get("is_write_index"):
            return name
    return next(iter(current))


@contextmanager
def bulk_load_tuning(client: Elasticsearch, alias: str) -> Iterator[None]:
    """Turn off refresh and replicas on the alias's write index for a bulk load, and restore
    the previous values afterwards, also when the load fails. A refresh runs at the end so the
    documents are searchable at once.

    :raises elasticsearch.ApiError: the settings could not be changed (nothing to restore then).
    """
    index = write_index(client, alias)
    current = client.indices.get_settings(index=index)[index]["settings"]["index"]
    previous = {key: current.get(key) for key in BULK_LOAD_SETTINGS}
    client.indices.put_settings(index=index, settings={"index": BULK_LOAD_SETTINGS})
    try:
        yield
    finally:
        # None resets a setting to its default, which is what an unset value meant.
        client.indices.put_settings(index=index, settings={"index": previous})
        client.indices.refresh(index=index)
