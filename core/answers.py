"""Answers: one sampled response -> one vote, the vote over samples, and whether an answer is right.

TTRV rewards a response by how many of its sibling samples gave the same *answer*, so the extractor decides
what counts as "the same". Two rules (see docs/design.md and the TTRV algorithm notes, step 3):

* multiple choice (the paper's case): upper-case the text and take the **last standalone option letter**;
* free form: a light normaliser (case, whitespace, surrounding punctuation), so "Seven." and "seven" agree.

The guard: a response with no answer is **None**, never the raw text. The released code falls back to the
stripped text, so the empty response becomes an answer class of its own; once a few samples are empty they
vote for each other, earn frequency reward and the run collapses to 1-token responses (DTD: accuracy
46.8 -> 0.0 in the logs). None is excluded from voting here and by `adapter.rewards`.

`is_correct` is the one rule for "is this answer right?": the feedback route, the gate, the rollback check,
the replay report, the demo's evaluation, the offline protocol and the benchmarks all call it, so accuracy
per version, rollback decisions and the README's tables agree about the same answers.

The gateway and the worker both import this module; it needs nothing beyond the standard library.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from typing import Protocol

from core.plugins import load_plugin

LETTERS = string.ascii_uppercase

# Characters stripped from both ends of a free-form answer: sentence punctuation, quotes, brackets and
# markdown emphasis. Signs, '%', '$' and '#' are kept because they change what a number means ("-3" != "3").
_SURROUNDING = ".,;:!?\"'`*_()[]{}<>“”‘’«»"
_SPACES = re.compile(r"\s+")


class Extractor(Protocol):
    """Maps one response text to its answer, or None when the response gives no usable answer."""

    def __call__(self, text: str | None, /) -> str | None: ...


class AnswerExtractor(Protocol):
    """`extract_answer`'s signature: what a task's own extractor provides (`core/plugins.py`)."""

    def __call__(self, text: str | None, options: Sequence[str] | None, /) -> str | None: ...


def option_letters(n_options: int) -> str:
    """The letters naming `n_options` options, in order.

    >>> option_letters(4)
    'ABCD'
    >>> option_letters(27)
    Traceback (most recent call last):
    ...
    ValueError: a multiple-choice question needs 1 to 26 options (one letter each), got 27
    """
    if not 1 <= n_options <= len(LETTERS):
        raise ValueError(
            f"a multiple-choice question needs 1 to {len(LETTERS)} options (one letter each), got {n_options}"
        )
    return LETTERS[:n_options]


def extract_choice(text: str | None, n_options: int = 4) -> str | None:
    """The last standalone option letter of `text` (the paper's rule `\\b(A|B|C|D)\\b`, for n options).

    The text is upper-cased first, as in the paper, so a lower-case "b" counts; the price is that the
    article "a" counts as option A too (it does in the released code as well).

    >>> extract_choice("B")
    'B'
    >>> extract_choice("I think A, no B")
    'B'
    >>> extract_choice("The answer is (c).")
    'C'
    >>> extract_choice("B is a guess")  # the article "a" is a standalone letter once upper-cased
    'A'

    A letter inside a word is not standalone, so "ABC" gives no answer rather than a guess at which letter
    was meant; a letter beyond the options is no answer either.

    >>> extract_choice("ABC") is None
    True
    >>> extract_choice("E", n_options=4) is None
    True
    >>> extract_choice("E", n_options=5)
    'E'
    >>> extract_choice("") is None and extract_choice(None) is None
    True
    """
    if not text:
        return None
    letters = option_letters(n_options)
    found = re.findall(rf"\b([{letters}])\b", text.upper())
    return found[-1] if found else None


def normalize_free_form(text: str | None) -> str | None:
    """A free-form answer in a canonical spelling: stripped, lower-case, single spaces, no surrounding
    punctuation (so a trailing period goes). Digits stay digits: "7" and "seven" remain different answers.

    >>> normalize_free_form(" Seven. ")
    'seven'
    >>> normalize_free_form("  The   Golden\\nRetriever! ")
    'the golden retriever'
    >>> normalize_free_form("**7**")
    '7'
    >>> normalize_free_form("3.5"), normalize_free_form("-3."), normalize_free_form("(42%)")
    ('3.5', '-3', '42%')
    >>> normalize_free_form(" ... ") is None and normalize_free_form("") is None
    True
    """
    if text is None:
        return None
    collapsed = _SPACES.sub(" ", text.lower()).strip()
    # Stripping punctuation can expose spaces ("( 7 )"), and stripping spaces can expose punctuation.
    while collapsed and (stripped := collapsed.strip(_SURROUNDING).strip()) != collapsed:
        collapsed = stripped
    return collapsed or None


def extract_answer(text: str | None, options: Sequence[str] | None = None) -> str | None:
    """The answer of one response: an option letter when the question has options, else the normalised text.

    >>> extract_answer("Answer: b", options=["cat", "dog"])
    'B'
    >>> extract_answer(" Seven. ")
    'seven'
    >>> extract_answer("   ", options=["cat", "dog"]) is None
    True
    """
    if options:
        return extract_choice(text, len(options))
    return normalize_free_form(text)


def make_extractor(options: Sequence[str] | None = None) -> Extractor:
    """An `Extractor` for one question, fixed once so a group of samples is read with one rule.

    >>> extract = make_extractor(["cat", "dog", "fox"])
    >>> [extract(t) for t in ["C", "c.", "I'd say B", "fox", ""]]
    ['C', 'C', 'B', None, None]
    """
    n_options = len(options) if options else 0
    if n_options:
        option_letters(n_options)  # fail at set-up, not on the first response

        def choice(text: str | None, /) -> str | None:
            return extract_choice(text, n_options)

        return choice
    return normalize_free_form


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
    lines = [f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=False)]
    return question + "\nOptions:\n" + "\n".join(lines)


def vote(
    texts: Sequence[str], options: Sequence[str] | None, extract: AnswerExtractor | None = None
) -> tuple[str, float | None]:
    """The majority answer among the samples and its vote share (None for a single sample).

    Unparseable samples do not vote; ties go to the answer seen first. If nothing parses, the answer is "".

    >>> vote(["7", "1", "7"], None)
    ('7', 0.6666666666666666)
    >>> vote(["B", "no idea", "B", "A"], ["x", "y"])
    ('B', 0.5)
    >>> vote(["7"], None)
    ('7', None)
    """
    extract = extract or extract_answer
    answers = [a for a in (extract(t, options) for t in texts) if a is not None]
    if not answers:
        return "", (0.0 if len(texts) > 1 else None)
    counts = collections.Counter(answers)
    best = max(counts, key=lambda a: (counts[a], -answers.index(a)))
    return best, (counts[best] / len(texts) if len(texts) > 1 else None)


def label_answer(
    label: str, options: Sequence[str] | None = None, extract: AnswerExtractor | None = None
) -> str | None:
    """A label as the answer it stands for, read like a response, so it compares with extracted answers.

    With options, a label may name the letter ("b", "(B)", "B. dog") or the option's text ("Dog"); without
    them it is normalised like a free-form answer. None when the label says nothing usable.

    >>> label_answer("7."), label_answer(" Seven "), label_answer("b", ["cat", "dog"])
    ('7', 'seven', 'B')
    >>> label_answer("Dog", ["cat", "dog"]), label_answer("B. dog", ["cat", "dog"])
    ('B', 'B')
    >>> label_answer("...") is None, label_answer("fish", ["cat", "dog"]) is None
    (True, True)
    """
    if options:
        text = normalize_free_form(label)
        for letter, option in zip(LETTERS, options, strict=False):
            if text is not None and text == normalize_free_form(option):
                return letter
    return (extract or extract_answer)(label, options)


def is_correct(
    answer: str | None,
    label: str,
    options: Sequence[str] | None = None,
    extract: AnswerExtractor | None = None,
) -> bool:
    """Whether `answer` (a response, or an answer already extracted from one) matches `label`.

    Both sides go through the same extraction, so an extracted answer, the raw text it came from and a
    label written as a person would write it ("7.", "b" for option B, the option's text) all compare alike.
    No answer, or a label that says nothing usable, is never right. `extract` is the task's extractor
    (`TTRV_ANSWER_EXTRACTOR`; default `extract_answer`): labels are read with it too.

    >>> is_correct("7", "7."), is_correct("B", "b", ["cat", "dog"]), is_correct("B", "dog", ["cat", "dog"])
    (True, True, True)
    >>> is_correct("1", "7"), is_correct("", ""), is_correct(None, "7"), is_correct("7", "...")
    (False, False, False, False)
    """
    wanted = label_answer(label, options, extract)
    got = (extract or extract_answer)(answer, options)
    return wanted is not None and got is not None and got.casefold() == wanted.casefold()


def exact_answer(text: str | None, options: Sequence[str] | None = None) -> str | None:
    """The response as it is, stripped: for tasks where case and punctuation are part of the answer.

    >>> exact_answer(" Paris. "), exact_answer("   ") is None
    ('Paris.', True)
    """
    stripped = (text or "").strip()
    return stripped or None


EXTRACTORS: dict[str, AnswerExtractor] = {"default": extract_answer, "exact": exact_answer}


def load_extractor(spec: str, variable: str = "TTRV_ANSWER_EXTRACTOR") -> AnswerExtractor:
    """The extractor a setting names: a built-in of `EXTRACTORS` or `package.module:function`."""
    extractor: AnswerExtractor = load_plugin(spec, EXTRACTORS, variable)
    return extractor
