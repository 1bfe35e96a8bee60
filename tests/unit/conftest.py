"""Fixtures of the unit tests: the two MEDLINE parsers, compiled and Python."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from worker import native
from worker.documents import compiled_parser
from worker.settings import get_settings

#: Set (by `make test`, hence CI) to fail, not skip, when the compiled parser is not built.
REQUIRE_NATIVE = "MEDLINE_REQUIRE_NATIVE"


def require_native() -> None:
    """Skip the calling test when the compiled parser is not built, or fail where it must be."""
    if not native.BUILT:
        if os.environ.get(REQUIRE_NATIVE):
            pytest.fail(
                f"the compiled parser (worker._native) is not built and {REQUIRE_NATIVE} is set"
            )
        pytest.skip("the compiled parser (worker._native) is not built")


@pytest.fixture(params=["native", "python"])
def parser_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once with each parser (MEDLINE_PARSER=native, then python)."""
    if request.param == "native":
        require_native()
    monkeypatch.setenv("MEDLINE_PARSER", request.param)
    forget_parser_choice()
    yield request.param
    forget_parser_choice()


def forget_parser_choice() -> None:
    get_settings.cache_clear()
    native.enabled.cache_clear()
    compiled_parser.cache_clear()
