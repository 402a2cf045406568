"""Answer extraction: the paper's last-standalone-letter rule, the free-form normaliser, None for none; and
the one correctness rule (`is_correct`) every accuracy in the project is computed with."""

from __future__ import annotations

import pytest

from core.answers import (
    extract_answer,
    extract_choice,
    is_correct,
    make_extractor,
    normalize_free_form,
    option_letters,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A", "A"),
        ("d", "D"),  # upper-cased first, as in the paper
        ("I think A, no B", "B"),  # the last standalone letter wins
        ("Answer: (C).", "C"),
        ("B\n\nFinal answer: A", "A"),
        ("**D**", "D"),
        ("ABC", None),  # letters inside a word are not standalone: no guess at which was meant
        ("BAD", None),
        ("E", None),  # beyond the 4 options
        ("The image shows a cat", "A"),  # the article "a": a known cost of the paper's rule, kept on purpose
        ("", None),
        ("   ", None),
        (None, None),
        ("no letter here", None),
    ],
)
def test_choice_takes_the_last_standalone_option_letter(text: str | None, expected: str | None) -> None:
    assert extract_choice(text, n_options=4) == expected


def test_the_letter_range_follows_the_number_of_options() -> None:
    assert extract_choice("C", n_options=2) is None
    assert extract_choice("B or C", n_options=2) == "B"
    assert extract_choice("F", n_options=6) == "F"
    assert option_letters(26) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    with pytest.raises(ValueError, match="1 to 26 options"):
        option_letters(0)
    with pytest.raises(ValueError, match="1 to 26 options"):
        make_extractor([str(i) for i in range(27)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Seven. ", "seven"),
        ("7", "7"),  # digits stay digits, words stay words
        ("7.", "7"),
        ("3.5", "3.5"),  # an inner period is part of the answer
        ("-3", "-3"),  # signs are kept: "-3" and "3" are different answers
        ('"Golden   Retriever"\n', "golden retriever"),
        ("( 42 )", "42"),
        ("Paris!", "paris"),
        ("", None),
        ("  \n ", None),
        ("...", None),  # punctuation only: no answer, not an answer class of its own
        (None, None),
    ],
)
def test_free_form_is_normalised_and_empty_is_none(text: str | None, expected: str | None) -> None:
    assert normalize_free_form(text) == expected


def test_spellings_of_one_answer_vote_together() -> None:
    assert len({normalize_free_form(t) for t in ["Seven", "seven.", " SEVEN ", "*seven*", "'Seven'"]}) == 1


def test_extractor_uses_letters_with_options_and_free_form_without() -> None:
    options = ["cat", "dog", "fox", "owl"]
    with_options = make_extractor(options)
    free = make_extractor(None)
    assert with_options("I'd say b.") == "B"
    assert with_options("fox") is None  # an option's text is not its letter: the paper's rule, kept
    assert free("Fox.") == "fox"
    assert make_extractor([])("A.") == "a"  # no options: free form
    assert extract_answer("b", options) == "B"
    assert extract_answer(" Seven. ") == "seven"
    assert extract_answer("", options) is None


OPTIONS = ["cat", "dog", "fox"]


@pytest.mark.parametrize(
    ("answer", "label", "options", "right"),
    [
        # punctuation and whitespace around a free-form answer or label
        ("7", "7.", None, True),
        ("7", " 7 ", None, True),
        (" Seven. ", "seven", None, True),
        ("**7**", "(7)", None, True),
        ("-3", "3", None, False),  # a sign changes what a number means
        # case
        ("Golden Retriever", "golden  retriever", None, True),
        ("B", "b", None, True),  # free form: "B" and "b" are one answer
        # option letters against letters, letter spellings and option text
        ("B", "b", OPTIONS, True),
        ("B", "(B)", OPTIONS, True),
        ("B", "B. dog", OPTIONS, True),
        ("B", "Dog", OPTIONS, True),
        ("I think it is c", "fox", OPTIONS, True),  # a raw response is extracted the same way
        ("B", "cat", OPTIONS, False),
        ("B", "A", OPTIONS, False),
        ("D", "D", OPTIONS, False),  # beyond the options: no answer on either side
        # unparseable answers or labels are never right
        ("", "7", None, False),
        (None, "7", None, False),
        ("   ", "", None, False),
        ("no idea", "fish", OPTIONS, False),
        ("7", "...", None, False),
    ],
)
def test_one_rule_decides_whether_an_answer_is_right(
    answer: str | None, label: str, options: list[str] | None, right: bool
) -> None:
    assert is_correct(answer, label, options) is right


def test_correctness_is_symmetric_in_spelling_of_a_free_form_answer() -> None:
    spellings = ["7", "7.", " 7", "(7)", "**7**"]
    assert all(is_correct(a, b) for a in spellings for b in spellings)
