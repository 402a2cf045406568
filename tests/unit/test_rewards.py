"""Label-free rewards: hand-checked numbers, the None guard, tie-breaking, the random control."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adapter.grpo import group_advantages
from adapter.rewards import (
    REWARD_KINDS,
    compute_rewards,
    frequency_rewards,
    majority_rewards,
    random_rewards,
    ttrv_rewards,
    vote_stats,
)


def test_ttrv_on_a_tie_is_half_minus_the_full_entropy_weight() -> None:
    # p = 1/2 each, H = log 2, M = 2, Hn = 1.
    assert ttrv_rewards(["A", "A", "B", "B"]) == pytest.approx([-0.25] * 4)
    assert ttrv_rewards(["A", "A", "B", "B"], alpha=0.0) == pytest.approx([0.5] * 4)


def test_ttrv_on_a_single_class_is_one() -> None:
    assert ttrv_rewards(["A"] * 4) == [1.0] * 4
    assert ttrv_rewards(["7"]) == [1.0]


def test_ttrv_on_a_mix_matches_the_formula_by_hand() -> None:
    # 4 votes: A x2, B, C. p = 1/2, 1/4, 1/4; H = 1.5 log 2; M = 3; Hn = 1.5 log 2 / log 3 = 0.94639.
    hn = 1.5 * math.log(2) / math.log(3)
    expected = [0.5 - 0.75 * hn, 0.25 - 0.75 * hn, 0.5 - 0.75 * hn, 0.25 - 0.75 * hn]
    assert ttrv_rewards(["A", "B", "A", "C"]) == pytest.approx(expected)
    assert ttrv_rewards(["A", "B", "A", "C"])[0] == pytest.approx(-0.20979, abs=1e-5)


def test_unparseable_answers_do_not_vote_and_rank_last() -> None:
    # The Nones do not dilute p: A has 2 of 3 parseable votes.
    assert frequency_rewards(["A", None, "A", "B", None]) == pytest.approx([2 / 3, 0, 2 / 3, 1 / 3, 0])
    rewards = ttrv_rewards(["A", None, "A", "B"])
    hn = (math.log(3) - 2 / 3 * math.log(2)) / math.log(2)
    assert rewards == pytest.approx([2 / 3 - 0.75 * hn, -0.75 * hn, 2 / 3 - 0.75 * hn, 1 / 3 - 0.75 * hn])
    # A None must never out-earn a parseable answer, even when the entropy term makes rewards negative.
    assert rewards[1] < min(r for r, a in zip(rewards, ["A", None, "A", "B"], strict=True) if a is not None)
    # A flood of empty responses cannot become the majority.
    assert vote_stats([None] * 30 + ["C", "C"]).majority == "C"


def test_all_unparseable_or_empty_gives_zero() -> None:
    for kind in REWARD_KINDS:
        assert compute_rewards(kind, [None, None, None], rng=random.Random(0)) == [0.0, 0.0, 0.0]
        assert compute_rewards(kind, [], rng=random.Random(0)) == []


def test_majority_is_binary_and_ties_go_to_the_first_sampled() -> None:
    assert majority_rewards(["A", "B", "B", None]) == [0.0, 1.0, 1.0, 0.0]
    assert majority_rewards(["A", "A", "B", "B"]) == [1.0, 1.0, 0.0, 0.0]
    assert majority_rewards(["B", "A", "A", "B"]) == [1.0, 0.0, 0.0, 1.0]  # not "smallest letter wins"
    assert majority_rewards([None, "C"]) == [0.0, 1.0]


def test_vote_stats() -> None:
    tie = vote_stats(["A", "A", "B", "B"])
    assert (tie.majority, tie.agreement, tie.distinct) == ("A", 0.5, 2)
    assert tie.entropy_ratio == pytest.approx(1.0)
    single = vote_stats(["A"] * 4)
    assert (single.agreement, single.entropy_ratio, single.distinct) == (1.0, 0.0, 1)
    assert single.parseable_share == 1.0
    mixed = vote_stats(["A", "B", "A", "C", None])
    assert mixed.majority == "A"
    assert mixed.agreement == 0.5  # over the 4 parseable votes
    assert mixed.entropy_ratio == pytest.approx(1.5 * math.log(2) / math.log(3))
    assert (mixed.distinct, mixed.parseable_share, mixed.total) == (3, 0.8, 5)
    empty = vote_stats([])
    assert (empty.majority, empty.agreement, empty.parseable_share, empty.total) == (None, 0.0, 0.0, 0)


def test_random_rewards_are_reproducible_from_the_rng() -> None:
    answers = ["A", None, "B", "C", None, "A"]
    first = random_rewards(answers, random.Random(7))
    assert first == random_rewards(answers, random.Random(7))
    assert first != random_rewards(answers, random.Random(8))
    assert first[1] == first[4] == 0.0
    assert all(0.0 <= r < 1.0 for r in first)
    # numpy generators work too, and reproduce as well.
    from_numpy = random_rewards(answers, np.random.default_rng(3))
    assert from_numpy == random_rewards(answers, np.random.default_rng(3))
    # Draws align by position, whatever the answers: the control carries no signal.
    same_positions = random_rewards(["A"] * 6, random.Random(7))
    assert [same_positions[i] for i in (0, 2, 3, 5)] == [first[i] for i in (0, 2, 3, 5)]


def test_dispatcher_matches_the_functions_and_explains_errors() -> None:
    answers = ["A", "B", "A", None]
    assert compute_rewards("ttrv", answers, alpha=0.5) == ttrv_rewards(answers, alpha=0.5)
    assert compute_rewards("frequency", answers) == frequency_rewards(answers)
    assert compute_rewards("majority", answers) == majority_rewards(answers)
    expected = random_rewards(answers, random.Random(1))
    assert compute_rewards("random", answers, rng=random.Random(1)) == expected
    with pytest.raises(ValueError, match="needs an rng"):
        compute_rewards("random", answers)
    with pytest.raises(ValueError, match="TTRV_REWARD='gold' is neither a built-in"):
        compute_rewards("gold", answers)


@given(st.lists(st.one_of(st.none(), st.sampled_from("ABCD")), min_size=2, max_size=32))
def test_entropy_term_cancels_in_group_advantages(answers: list[str | None]) -> None:
    """TTRV minus frequency is one constant per group, so their advantages agree (the notes' observation)."""
    ttrv, freq = ttrv_rewards(answers), frequency_rewards(answers)
    assert max(t - f for t, f in zip(ttrv, freq, strict=True)) == pytest.approx(
        min(t - f for t, f in zip(ttrv, freq, strict=True))
    )
    a_ttrv = group_advantages(torch.tensor(ttrv, dtype=torch.float64))
    a_freq = group_advantages(torch.tensor(freq, dtype=torch.float64))
    assert torch.allclose(a_ttrv, a_freq, atol=1e-6)
