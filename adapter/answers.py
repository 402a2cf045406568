"""Answer extraction: one sampled response -> one vote, or None when the response gives no answer.

TTRV rewards a response by how many of its sibling samples gave the same *answer*, so the extractor decides
what counts as "the same". Two rules (see shared/notes/ttrv-algorithm.md, step 3):

* multiple choice (the paper's case): upper-case the text and take the **last standalone option letter**;
* free form: a light normaliser (case, whitespace, surrounding punctuation), so "Seven." and "seven" agree.

The guard: a response with no answer is **None**, never the raw text. The released code falls back to the
stripped text, so the empty response becomes an answer class of its own; once a few samples are empty they
vote for each other, earn frequency reward and the run collapses to 1-token responses (DTD: accuracy
46.8 -> 0.0 in the logs). None is excluded from voting by `adapter.rewards`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Protocol

LETTERS = string.ascii_uppercase

# Characters stripped from both ends of a free-form answer: sentence punctuation, quotes, brackets and
# markdown emphasis. Signs, '%', '$' and '#' are kept because they change what a number means ("-3" != "3").
_SURROUNDING = ".,;:!?\"'`*_()[]{}<>“”‘’«»"
_SPACES = re.compile(r"\s+")


class Extractor(Protocol):
    """Maps one response text to its answer, or None when the response gives no usable answer."""

    def __call__(self, text: str | None, /) -> str | None: ...


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


def matches_label(answer: str, label: str) -> bool:
    """Whether an extracted answer matches a label written as a person would ("7.", "b" for option B).

    >>> matches_label("7", "7."), matches_label("B", "b"), matches_label("1", "7"), matches_label("", "")
    (True, True, False, False)
    """
    wanted = extract_answer(label, None) or label.strip()
    return answer != "" and answer.lower() == wanted.lower()
