"""Shared test set-up: tests under tests/integration/ and tests/e2e/ (real processes) are marked
`integration` automatically."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_PARTS_DIRS = (Path(__file__).parent / "integration", Path(__file__).parent / "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(folder in Path(str(item.fspath)).parents for folder in REAL_PARTS_DIRS):
            item.add_marker(pytest.mark.integration)
