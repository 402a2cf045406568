"""The canary gate's rules, each on its own, with numbers checked by hand."""

from __future__ import annotations

import pytest

from adapter.gate import GateConfig, SliceStats, decide, slice_stats

NOW = SliceStats(agreement=0.8, top_share=0.15, parseable=0.99, mean_length=2.0, records=40)


def with_(**changes: float) -> SliceStats:
    return SliceStats(**{**NOW.__dict__, **changes})


def test_a_similar_candidate_passes() -> None:
    decision = decide(with_(agreement=0.9, top_share=0.2), NOW, GateConfig())
    assert decision.passed
    assert decision.reasons == []
    assert decision.metrics["gate_agreement"] == 0.9


def test_each_guard_rejects_on_its_own() -> None:
    cfg = GateConfig()
    assert "unparseable" in decide(with_(parseable=0.85), NOW, cfg).reasons[0]
    assert "length" in decide(with_(mean_length=0.9), NOW, cfg).reasons[0]
    assert "collapse onto one answer" in decide(with_(top_share=0.6), NOW, cfg).reasons[0]
    assert "probe accuracy dropped" in decide(NOW, NOW, cfg, {"probe": (0.80, 0.85)}).reasons[0]


def test_bounds_are_inclusive_where_stated() -> None:
    cfg = GateConfig()
    assert decide(with_(parseable=0.90), NOW, cfg).passed  # a drop of 0.09 is allowed
    assert decide(NOW, NOW, cfg, {"probe": (0.84, 0.85)}).passed  # within the 2-point tolerance
    # A stream that is mostly one class already is not a collapse when the candidate keeps it so.
    skewed = with_(top_share=0.7)
    assert decide(with_(top_share=0.75), skewed, cfg).passed


def test_slice_stats_by_hand() -> None:
    stats = slice_stats([["7", "7", "1", "7"], ["3", None, "3", "3"], ["7", "2", "2", "7"]], [[2] * 4] * 3)
    # majorities: 7 (3/4), 3 (3/3 parseable), 7 (tie 2-2: first sampled wins) -> top answer 7 on 2 of 3
    assert stats.top_share == 2 / 3
    assert stats.agreement == (0.75 + 1.0 + 0.5) / 3
    assert stats.parseable == (1 + 0.75 + 1) / 3
    assert stats.mean_length == 2.0


SHORT = "probe accuracy not yet 3% above the base model: 87.0% (base 86.0%)"
BELOW = "probe accuracy below the base model: 85.0% (base 86.0%)"


@pytest.mark.parametrize(
    ("stats", "probe", "current", "served", "kept", "reasons"),
    [
        # harmless but short of the gain over the base: not served, trained on from
        (NOW, 0.87, 0.86, False, True, [SHORT]),
        (NOW, 0.86, 0.86, False, True, None),  # level with the base: no ground lost
        (NOW, 0.89, 0.89, True, True, []),  # exactly min_gain is enough (0.89 - 0.86 is not 0.03 in floats)
        # thrown away: below the base, lost against the current version, collapsed
        (NOW, 0.85, 0.85, False, False, [BELOW]),
        (NOW, 0.90, 0.93, False, False, None),
        (with_(top_share=0.6), 0.90, 0.86, False, False, None),
    ],
)
def test_what_is_served_kept_to_train_on_or_thrown_away(
    stats: SliceStats, probe: float, current: float, served: bool, kept: bool, reasons: list[str] | None
) -> None:
    decision = decide(
        stats, NOW, GateConfig(min_gain=0.03), {"probe": (probe, current)}, {"probe": (probe, 0.86)}
    )
    assert (decision.passed, decision.keep_training) == (served, kept)
    if reasons is not None:
        assert decision.reasons == reasons


def test_without_labels_only_the_label_free_guards_decide() -> None:
    cfg = GateConfig(min_gain=0.03)
    assert decide(NOW, NOW, cfg).passed, "without labels only the label-free guards decide"
