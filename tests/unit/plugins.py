"""A task of one's own, as a user would plug it in (TTRV_ANSWER_EXTRACTOR, TTRV_REWARD): used by
tests/unit/test_plugins.py."""

from __future__ import annotations

from collections.abc import Sequence


def first_word(text: str | None, options: Sequence[str] | None) -> str | None:
    """The first word, lower-cased: "Seven apples" and "seven." are the same answer."""
    words = (text or "").lower().replace(".", " ").split()
    return words[0] if words else None


def unanimity(answers: Sequence[str | None]) -> list[float]:
    """1 to answers that match the first parseable answer, else 0 (None gets 0)."""
    first = next((a for a in answers if a is not None), None)
    return [1.0 if a is not None and a == first else 0.0 for a in answers]


def not_a_function() -> None:
    return None


NOT_CALLABLE = 3
