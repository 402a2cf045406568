"""Label-free rewards for one prompt's group of sampled answers (pure functions, no torch).

Input is the extracted answers of the G samples of one prompt (`core.answers`), None where a response
gave no answer. Votes are counted over the *parseable* answers only; None never votes, so the empty response
cannot become the majority class (the collapse in shared/notes/ttrv-algorithm.md, "What goes wrong").

TTRV's reward (ttrv-algorithm.md, step 4): with p(a) the vote share of answer a, H = -sum p log p (natural
log) over the M distinct answers, and Hn = H / log M (0 when M <= 1),

    r_j = p(a_j) - alpha * Hn.

A None answer has vote share 0, so the same formula gives it -alpha * Hn: the lowest reward in its group.
(A flat 0.0 would rank "no answer" *above* every parseable answer whenever alpha * Hn > p(a_j), e.g. a
50/50 split; that would reopen the empty-response hole the None guard closes.)

The entropy term is one constant per group, so GRPO's group normalisation (`adapter.grpo.group_advantages`)
removes it: inside the advantage TTRV equals `frequency_rewards` (adaptation-experiments.md measured exactly
that). The entropy can act only outside the advantage, through `vote_stats` (a per-prompt gate or weight).

Your own reward (`TTRV_REWARD=package.module:function`, loaded by `load_reward`): a pure function of one
group's answers, `fn(answers: Sequence[str | None]) -> Sequence[float]`, one finite reward per answer (None
where the response gave no answer; give it the group's lowest reward, as the built-ins do).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast, get_args

from core.plugins import load_plugin

Answers = Sequence[str | None]
RewardKind = Literal["ttrv", "frequency", "majority", "random"]
REWARD_KINDS: tuple[RewardKind, ...] = get_args(RewardKind)
CustomReward = Callable[[Answers], Sequence[float]]
DEFAULT_ALPHA = 0.75  # the released run script's entropy weight


class UniformSource(Protocol):
    """Anything with `random() -> float` in [0, 1): `random.Random`, `numpy.random.Generator`."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class VoteStats:
    """What one group's votes say about the model's certainty, for gating, weighting and metrics.

    `agreement` (the majority ratio) and `entropy_ratio` are over parseable votes only, so read them together
    with `parseable_share`: one parseable answer out of 32 has agreement 1.0.
    """

    majority: str | None  # most frequent parseable answer, ties to the one sampled first; None if none parse
    agreement: float  # p(majority)
    entropy_ratio: float  # Hn = H / log M, in [0, 1]; 0 when M <= 1
    distinct: int  # M, the number of distinct parseable answers
    parseable_share: float  # parseable answers / all answers (0 for an empty group)
    total: int  # all answers, parseable or not


def _shares(answers: Answers) -> dict[str, float]:
    """Vote share of each parseable answer, in first-sampled order (Counter keeps insertion order)."""
    counts = Counter(a for a in answers if a is not None)
    n = sum(counts.values())
    return {a: c / n for a, c in counts.items()}


def _entropy_ratio(shares: dict[str, float]) -> float:
    if len(shares) <= 1:
        return 0.0
    entropy = -sum(p * math.log(p) for p in shares.values())
    return entropy / math.log(len(shares))


def vote_stats(answers: Answers) -> VoteStats:
    """Majority, agreement, normalised entropy and parseable share of one group.

    >>> vote_stats(["A", "A", "B", "B"])
    VoteStats(majority='A', agreement=0.5, entropy_ratio=1.0, distinct=2, parseable_share=1.0, total=4)
    >>> vote_stats(["B", None, "B", None])
    VoteStats(majority='B', agreement=1.0, entropy_ratio=0.0, distinct=1, parseable_share=0.5, total=4)
    >>> vote_stats([None, None])
    VoteStats(majority=None, agreement=0.0, entropy_ratio=0.0, distinct=0, parseable_share=0.0, total=2)
    """
    shares = _shares(answers)
    parseable = sum(a is not None for a in answers)
    # max() returns the first maximal item, i.e. the answer sampled first among tied ones. Samples are i.i.d.,
    # so this breaks ties at random without bias; "smallest letter wins" would push every tie towards A,
    # the constant-letter collapse of the logs.
    majority = max(shares, key=shares.__getitem__, default=None)
    return VoteStats(
        majority=majority,
        agreement=shares[majority] if majority is not None else 0.0,
        entropy_ratio=_entropy_ratio(shares),
        distinct=len(shares),
        parseable_share=parseable / len(answers) if answers else 0.0,
        total=len(answers),
    )


def ttrv_rewards(answers: Answers, alpha: float = DEFAULT_ALPHA) -> list[float]:
    """TTRV: r_j = p(a_j) - alpha * H / log M, with p(None) = 0 (see the module docstring).

    A 50/50 tie: p = 0.5, H = log 2, M = 2, Hn = 1, r = 0.5 - 0.75 = -0.25 for all.

    >>> ttrv_rewards(["A", "A", "B", "B"])
    [-0.25, -0.25, -0.25, -0.25]

    One class: p = 1, Hn = 0, r = 1. None gets p = 0 minus the group's entropy term (0 here).

    >>> ttrv_rewards(["A", "A", "A", None])
    [1.0, 1.0, 1.0, 0.0]

    A mix, by hand: 3 parseable votes, p(A) = 2/3, p(B) = 1/3, H = log 3 - (2/3) log 2 = 0.6365,
    Hn = 0.6365 / log 2 = 0.9183, alpha * Hn = 0.6887.

    >>> [round(r, 4) for r in ttrv_rewards(["A", "B", "A", None])]
    [-0.0221, -0.3554, -0.0221, -0.6887]
    >>> ttrv_rewards([None, None]), ttrv_rewards([])
    ([0.0, 0.0], [])
    """
    shares = _shares(answers)
    penalty = alpha * _entropy_ratio(shares)
    return [(shares[a] if a is not None else 0.0) - penalty for a in answers]


def frequency_rewards(answers: Answers) -> list[float]:
    """The vote share p(a_j) alone (TTRV as it acts inside the advantage); 0 for None.

    >>> frequency_rewards(["A", "A", "B", None])
    [0.6666666666666666, 0.6666666666666666, 0.3333333333333333, 0.0]
    """
    shares = _shares(answers)
    return [shares[a] if a is not None else 0.0 for a in answers]


def majority_rewards(answers: Answers) -> list[float]:
    """TTRL's binary reward: 1.0 for the majority answer, else 0.0 (None: 0.0).

    A tie goes to the answer sampled first (see `vote_stats`), so only one of the tied classes is rewarded.

    >>> majority_rewards(["B", "A", "A", "B", None])
    [1.0, 0.0, 0.0, 1.0, 0.0]
    """
    majority = vote_stats(answers).majority
    return [1.0 if a is not None and a == majority else 0.0 for a in answers]


def random_rewards(answers: Answers, rng: UniformSource) -> list[float]:
    """The control: uniform [0, 1) per parseable answer, 0.0 for None.

    One number is drawn for *every* answer, parseable or not, so the rng advances by len(answers) whatever
    the model said and two runs with one seed draw the same stream.

    >>> import random
    >>> first = random_rewards(["A", None, "B"], random.Random(0))
    >>> first == random_rewards(["C", None, "D"], random.Random(0))
    True
    >>> first[1]
    0.0
    """
    draws = [rng.random() for _ in answers]
    return [u if a is not None else 0.0 for a, u in zip(answers, draws, strict=True)]


def load_reward(spec: str) -> RewardKind | CustomReward:
    """A built-in reward's name, or the function `package.module:function` names (`core/plugins.py`).

    >>> load_reward("majority")
    'majority'
    >>> load_reward("ttrv_rewards")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TTRV_REWARD='ttrv_rewards' is neither a built-in (ttrv, frequency, majority, random) nor ...
    """
    found = load_plugin(spec, {k: k for k in REWARD_KINDS}, "TTRV_REWARD")
    if isinstance(found, str):
        return found
    return cast(CustomReward, found)


@functools.lru_cache(maxsize=8)
def _custom(spec: str) -> CustomReward:
    found = load_reward(spec)
    assert not isinstance(found, str)
    return found


def compute_rewards(
    kind: str,
    answers: Answers,
    *,
    alpha: float = DEFAULT_ALPHA,
    rng: UniformSource | None = None,
) -> list[float]:
    """Dispatch on the reward kind (a worker setting): a built-in name or `package.module:function`.
    `rng` is needed by, and only by, "random".

    >>> compute_rewards("majority", ["A", "B", "B"])
    [0.0, 1.0, 1.0]
    >>> compute_rewards("random", ["A"])
    Traceback (most recent call last):
    ...
    ValueError: the "random" reward needs an rng (e.g. random.Random(seed)) so the control is reproducible
    """
    if kind == "random":
        if rng is None:
            raise ValueError(
                'the "random" reward needs an rng (e.g. random.Random(seed)) so the control is reproducible'
            )
        return random_rewards(answers, rng)
    rules: dict[str, Callable[[Answers], list[float]]] = {
        "ttrv": lambda a: ttrv_rewards(a, alpha),
        "frequency": frequency_rewards,
        "majority": majority_rewards,
    }
    if kind in rules:
        return rules[kind](answers)
    rewards = [float(r) for r in _custom(kind)(answers)]
    if len(rewards) != len(answers) or not all(math.isfinite(r) for r in rewards):
        raise ValueError(
            f"the reward {kind!r} gave {len(rewards)} rewards for {len(answers)} answers, or one that is not "
            "finite; it must return one finite number per answer"
        )
    return rewards
