"""Answer extraction: the paper's last-standalone-letter rule, the free-form normaliser, None for none."""

from __future__ import annotations

import pytest

from adapter.answers import (
    extract_answer,
    extract_choice,
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
