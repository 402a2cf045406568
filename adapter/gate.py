"""The canary gate: a candidate version is promoted only if it has not collapsed, judged without labels.

Raw test-time RL swings widely from run to run and sometimes collapses (shared/notes: onto the empty
answer, onto one constant letter). The gate compares the candidate with the current version on the same
held-back records (never trained on), from answers each of them sampled:

- unparseable answers rising: the candidate's parseable share drops by more than `max_parseable_drop`;
- output-length collapse: its mean answer length falls below `min_length_ratio` of the current one's;
- collapse onto one class: one answer takes over the records' majority answers (it is the majority answer
  of at least `collapse_top_share` of the records, up by more than `max_top_share_rise`): different images
  no longer get different answers, however confident the votes look;
- where labels exist (a probe file, delayed feedback), accuracy must not drop by more than `tolerance`.

A candidate that fails any of those is thrown away. The probe then decides two more things, against the
base model (where adaptation started): a candidate answering it worse than the base model is thrown away
too, and one is *served* only when it beats the base model by `min_gain` (the served model never sits below
where adaptation started, and a gain within the probe's noise is not a gain). A candidate in between, no
worse than the base model but not yet `min_gain` above it, is not served, but the next round trains on from
it (`keep_training`): one round is a small step, and its progress is not thrown away, while a step that lost
ground is.

>>> now = SliceStats(agreement=0.80, top_share=0.15, parseable=1.0, mean_length=2.0, records=40)
>>> decide(SliceStats(0.85, 0.17, 1.0, 2.0, 40), now, GateConfig()).passed
True
>>> collapsed = SliceStats(agreement=0.99, top_share=0.90, parseable=1.0, mean_length=2.0, records=40)
>>> decide(collapsed, now, GateConfig()).reasons
['collapse onto one answer: agreement 0.99, top answer 90% of records (was 15%)']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapter.rewards import vote_stats


@dataclass(frozen=True)
class GateConfig:
    max_parseable_drop: float = 0.10
    min_length_ratio: float = 0.5
    collapse_top_share: float = 0.5
    max_top_share_rise: float = 0.30
    tolerance: float = 0.02  # accuracy (as a fraction) a labelled check may lose against the current version
    min_gain: float = 0.03  # probe accuracy a served candidate must have above the base model's


@dataclass(frozen=True)
class SliceStats:
    """How one version answered the held-back records."""

    agreement: float  # mean share of the majority answer in each record's votes
    top_share: float  # share of records whose majority answer is the most common majority answer
    parseable: float  # mean share of parseable answers
    mean_length: float  # mean answer length in tokens
    records: int


def slice_stats(answers: Sequence[Sequence[str | None]], lengths: Sequence[Sequence[int]]) -> SliceStats:
    """Statistics of sampled answers, one list of votes (and token lengths) per record.

    >>> slice_stats([["7", "7", "1"], ["3", None, "3"]], [[2, 2, 2], [2, 5, 2]]).top_share
    0.5
    """
    votes = [vote_stats(a) for a in answers]
    majorities = Counter(v.majority for v in votes if v.majority is not None)
    n = max(1, len(votes))
    flat = [x for row in lengths for x in row]
    return SliceStats(
        agreement=sum(v.agreement for v in votes) / n,
        top_share=(majorities.most_common(1)[0][1] / n) if majorities else 0.0,
        parseable=sum(v.parseable_share for v in votes) / n,
        mean_length=sum(flat) / max(1, len(flat)),
        records=len(votes),
    )


@dataclass
class GateDecision:
    passed: bool  # serve it
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    keep_training: bool = True  # not served, but the next round trains on from it


def decide(
    candidate: SliceStats,
    current: SliceStats,
    cfg: GateConfig,
    accuracy: dict[str, tuple[float, float]] | None = None,
    floors: dict[str, tuple[float, float]] | None = None,
) -> GateDecision:
    """Pass or reject `candidate` against `current`.

    `accuracy` maps each labelled check (probe set, delayed feedback) to (candidate, current) accuracy;
    `floors` maps a labelled check to (candidate, base model) accuracy: at least the base model's to train
    on from the candidate, `min_gain` above it to serve it.

    >>> ok = SliceStats(0.8, 0.15, 1.0, 2.0, 40)
    >>> held = decide(ok, ok, GateConfig(), {"probe": (0.87, 0.86)}, {"probe": (0.87, 0.86)})
    >>> held.passed, held.keep_training, held.reasons
    (False, True, ['probe accuracy not yet 3% above the base model: 87.0% (base 86.0%)'])
    >>> decide(ok, ok, GateConfig(), {"probe": (0.89, 0.86)}, {"probe": (0.89, 0.86)}).passed
    True
    >>> lost = decide(ok, ok, GateConfig(), {"probe": (0.85, 0.86)}, {"probe": (0.85, 0.86)})
    >>> lost.passed, lost.keep_training, lost.reasons
    (False, False, ['probe accuracy below the base model: 85.0% (base 86.0%)'])
    """
    reasons = []
    if candidate.parseable < current.parseable - cfg.max_parseable_drop:
        reasons.append(
            f"unparseable answers rising: parseable {candidate.parseable:.0%} (was {current.parseable:.0%})"
        )
    if current.mean_length > 0 and candidate.mean_length < cfg.min_length_ratio * current.mean_length:
        reasons.append(
            f"output length collapse: {candidate.mean_length:.1f} tokens (was {current.mean_length:.1f})"
        )
    takeover = candidate.top_share > current.top_share + cfg.max_top_share_rise
    if candidate.top_share >= cfg.collapse_top_share and takeover:
        reasons.append(
            f"collapse onto one answer: agreement {candidate.agreement:.2f}, "
            f"top answer {candidate.top_share:.0%} of records (was {current.top_share:.0%})"
        )
    for name, (cand, cur) in (accuracy or {}).items():
        if cand < cur - cfg.tolerance:
            reasons.append(f"{name} accuracy dropped: {cand:.1%} (was {cur:.1%})")
    short = []  # not served, but kept to train on from
    for name, (cand, base) in (floors or {}).items():
        gain = round(cand - base, 9)  # 0.89 - 0.86 is 0.0299999... in floating point
        if gain < 0:
            reasons.append(f"{name} accuracy below the base model: {cand:.1%} (base {base:.1%})")
        elif gain < cfg.min_gain:
            short.append(
                f"{name} accuracy not yet {cfg.min_gain:.0%} above the base model: "
                f"{cand:.1%} (base {base:.1%})"
            )
    keep_training = not reasons
    reasons += short
    metrics = {
        "gate_agreement": candidate.agreement,
        "gate_top_share": candidate.top_share,
        "gate_parseable": candidate.parseable,
        "gate_mean_length": candidate.mean_length,
        "gate_records": float(candidate.records),
    }
    for name, (cand, cur) in (accuracy or {}).items():
        metrics[f"{name}_accuracy"] = cand
        metrics[f"{name}_accuracy_current"] = cur
    for name, (_, base) in (floors or {}).items():
        metrics[f"{name}_accuracy_base"] = base
    return GateDecision(not reasons, reasons, metrics, keep_training=keep_training)
