"""The audit store's tests run on both engines: ``home`` is an issuer on a SQLite file and
on a PostgreSQL database (tests marked ``sqlite_only`` look at the SQLite file itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import home_on


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "postgresql" and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("looks at the SQLite file itself")
    return home_on(request.param, request, tmp_path)
