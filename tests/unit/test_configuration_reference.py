"""docs/configuration.md is exactly what the settings classes say (regenerate: python -m stack.reference)."""

from __future__ import annotations

from pathlib import Path

from stack.reference import SECTIONS, settings_reference

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_reference_matches_the_code() -> None:
    assert DOC.read_text() == settings_reference(), "run `python -m stack.reference` and commit the result"


def test_every_setting_has_help_text() -> None:
    missing = [
        f"{cls.__name__}.{n}" for _, cls in SECTIONS for n, f in cls.model_fields.items() if not f.description
    ]
    assert not missing, f"settings without a description: {missing}"
