"""From a question and the engine's samples to one answer: option rendering, extraction, the vote."""

from __future__ import annotations

import collections
import string
from collections.abc import Sequence

from adapter.answers import extract_answer


def render_question(question: str, options: Sequence[str] | None) -> str:
    """The prompt text: multiple-choice options become lettered lines, as TTRV's prompts have them.

    >>> print(render_question("Which animal?", ["cat", "dog"]))
    Which animal?
    Options:
    A. cat
    B. dog
    """
    if not options:
        return question
    lines = [f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, options, strict=False)]
    return question + "\nOptions:\n" + "\n".join(lines)


def vote(texts: Sequence[str], options: Sequence[str] | None) -> tuple[str, float | None]:
    """The majority answer among the samples and its vote share (None for a single sample).

    Unparseable samples do not vote; ties go to the answer seen first. If nothing parses, the answer is "".

    >>> vote(["7", "1", "7"], None)
    ('7', 0.6666666666666666)
    >>> vote(["B", "no idea", "B", "A"], ["x", "y"])
    ('B', 0.5)
    >>> vote(["7"], None)
    ('7', None)
    """
    answers = [a for a in (extract_answer(t, options) for t in texts) if a is not None]
    if not answers:
        return "", (0.0 if len(texts) > 1 else None)
    counts = collections.Counter(answers)
    best = max(counts, key=lambda a: (counts[a], -answers.index(a)))
    return best, (counts[best] / len(texts) if len(texts) > 1 else None)
