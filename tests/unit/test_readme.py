"""The README documents every setting and nothing that does not exist."""

from __future__ import annotations

import re

from tests.helpers import REPO
from worker.settings import Settings

#: Variables the README may name that are not Settings fields (read by deploy/local/services).
LOCAL_SERVICE_VARIABLES = {
    "MEDLINE_LOCAL_STATE_DIR",
    "MEDLINE_LOCAL_REDIS_PORT",
    "MEDLINE_LOCAL_ES_PORT",
    "MEDLINE_LOCAL_ES_TRANSPORT_PORT",
    "MEDLINE_LOCAL_ES_HEAP",
    "MEDLINE_LOCAL_TIMEOUT",
}


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    text = readme()
    table = text[text.index(start) : text.index(end)]
    missing = [
        f"MEDLINE_{name.upper()}"
        for name in Settings.model_fields
        if f"`MEDLINE_{name.upper()}`" not in table
    ]
    assert not missing, f"settings missing from the README table: {missing}"


def test_the_readme_names_no_setting_that_does_not_exist() -> None:
    named = set(re.findall(r"MEDLINE_[A-Z0-9_]+", readme()))
    known = {f"MEDLINE_{name.upper()}" for name in Settings.model_fields} | LOCAL_SERVICE_VARIABLES
    assert named - known == set()


def test_the_readme_table_gives_each_setting_its_default() -> None:
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    text = readme()
    table = text[text.index(start) : text.index(end)]
    rows = dict(re.findall(r"^\| `MEDLINE_([A-Z0-9_]+)` \| ([^|]+) \|", table, re.MULTILINE))
    wrong = {}
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        expected = "—" if default is None else f"`{default}`"
        written = rows[name.upper()].strip()
        if written != expected:
            wrong[name] = (written, expected)
    assert not wrong, f"README defaults (written, actual): {wrong}"
