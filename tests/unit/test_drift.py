"""Label-free drift signals: JS divergence, image statistics, input shift and the windowed monitor."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from adapter.drift import (
    SIGNALS,
    DriftMonitor,
    ImageFeatures,
    image_features,
    input_shift,
    js_divergence,
)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def scene(seed: int, scale: float = 1.0, offset: float = 0.0, side: int = 32) -> Image.Image:
    """A random textured grey image; `scale` squeezes contrast, `offset` shifts brightness (0..255 units)."""
    rng = np.random.default_rng(seed)
    pixels = 128 + scale * (rng.uniform(0, 255, (side, side)) - 128) + offset
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def features(n: int, seed: int, brightness: float = 0.5) -> list[ImageFeatures]:
    rng = np.random.default_rng(seed)
    return [
        ImageFeatures(float(b), float(c), float(s))
        for b, c, s in zip(
            rng.normal(brightness, 0.05, n), rng.normal(0.2, 0.02, n), rng.normal(0.1, 0.01, n), strict=True
        )
    ]


# --- js_divergence


def test_js_identical_is_zero_and_counts_equal_probabilities() -> None:
    assert js_divergence({"a": 2, "b": 6}, {"a": 2, "b": 6}) == 0.0
    assert js_divergence({"a": 2, "b": 6}, {"a": 0.25, "b": 0.75}) == pytest.approx(0.0, abs=1e-12)


def test_js_disjoint_is_one() -> None:
    assert js_divergence({"a": 3, "b": 1}, {"c": 1, "": 4}) == pytest.approx(1.0)


def test_js_is_symmetric_and_bounded() -> None:
    rng = np.random.default_rng(0)
    keys = list("abcdef")
    for _ in range(50):
        p = {k: float(v) for k, v in zip(keys, rng.integers(0, 5, 6), strict=True)}
        q = {k: float(v) for k, v in zip(keys, rng.integers(0, 5, 6), strict=True)}
        d = js_divergence(p, q)
        assert 0.0 <= d <= 1.0
        assert d == pytest.approx(js_divergence(q, p))


def test_js_empty_is_zero_and_negative_is_rejected() -> None:
    assert js_divergence({}, {}) == 0.0
    assert js_divergence({"a": 0}, {"a": 1}) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence({"a": -1}, {"a": 1})


# --- image_features


def test_lower_contrast_image_has_lower_contrast() -> None:
    assert image_features(png(scene(1, scale=0.3))).contrast < image_features(png(scene(1))).contrast


def test_blurred_image_has_lower_sharpness() -> None:
    sharp = scene(2)
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert image_features(png(blurred)).sharpness < image_features(png(sharp)).sharpness


def test_brighter_image_has_higher_brightness() -> None:
    dark, bright = (
        image_features(png(scene(3, scale=0.5, offset=-60))),
        image_features(png(scene(3, 0.5, 60))),
    )
    assert bright.brightness > dark.brightness
    assert all(0.0 <= v <= 1.0 for v in (*vars(dark).values(), *vars(bright).values()))


def test_colour_and_jpeg_images_are_read() -> None:
    rgb = Image.merge("RGB", [scene(4), scene(5), scene(6)])
    buf = io.BytesIO()
    rgb.save(buf, "JPEG")
    feats = image_features(buf.getvalue())
    assert 0.0 < feats.brightness < 1.0
    assert feats.sharpness > 0.0


@pytest.mark.parametrize("data", [b"", b"not an image", png(scene(7))[:40]])
def test_unreadable_bytes_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="unreadable image"):
        image_features(data)


# --- input_shift


def test_input_shift_is_small_for_the_same_distribution() -> None:
    assert input_shift(features(200, 1), features(200, 2)) < 0.5


def test_input_shift_is_large_for_shifted_brightness() -> None:
    assert input_shift(features(200, 1), features(100, 2, brightness=0.3)) > 3.0


def test_input_shift_is_zero_when_a_side_is_empty() -> None:
    assert input_shift([], features(5, 1)) == 0.0
    assert input_shift(features(5, 1), []) == 0.0


# --- DriftMonitor


def feed(monitor: DriftMonitor, answers: list[str], feats: list[ImageFeatures] | None = None) -> None:
    for answer, f in zip(answers, feats or itertools.repeat(None), strict=False):
        monitor.observe(answer, f)


def cycle(values: str, n: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(values), n))


def test_no_score_before_the_reference_fills() -> None:
    m = DriftMonitor(window=20, min_current=5)
    feed(m, cycle("0123", 20))
    assert m.scores() == {}
    feed(m, cycle("0123", 4))
    assert m.scores() == {}  # current window below min_current
    feed(m, ["0"])
    assert set(m.scores()) == {"answers"}  # no features were given, so no input signal


def test_answers_signal_rises_when_the_distribution_changes() -> None:
    m = DriftMonitor(window=40, min_current=10)
    feed(m, cycle("0123", 80))
    steady = m.scores()["answers"]
    feed(m, cycle("7", 40))
    assert steady < 0.05
    assert m.scores()["answers"] > 0.8


def test_unparseable_answers_count_as_their_own_class() -> None:
    m = DriftMonitor(window=10, min_current=10)
    feed(m, ["1"] * 10 + [""] * 10)
    assert m.scores()["answers"] == pytest.approx(1.0)


def test_inputs_signal_rises_on_darker_images() -> None:
    normal = [image_features(png(scene(i, scale=0.5))) for i in range(30)]
    darker = [image_features(png(scene(i, scale=0.5, offset=-70))) for i in range(30, 45)]
    m = DriftMonitor(window=15, min_current=10)
    feed(m, cycle("1", 30), normal)
    assert m.scores()["inputs"] < 1.0
    feed(m, cycle("1", 15), darker)
    assert m.scores()["inputs"] > 3.0


def test_agreement_drop_after_four_rounds() -> None:
    m = DriftMonitor()
    for a in (0.8, 0.9, 0.85):
        m.observe_agreement(a)
    assert "agreement" not in m.scores()
    m.observe_agreement(0.95)
    assert m.scores()["agreement"] == 0.0  # agreement rising is not drift
    m.observe_agreement(0.45)
    assert m.scores()["agreement"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="agreement"):
        m.observe_agreement(float("nan"))


def test_reset_makes_the_current_window_the_reference() -> None:
    m = DriftMonitor(window=20, min_current=5)
    feed(m, cycle("01", 20) + cycle("7", 20))
    for a in (0.9, 0.9, 0.9, 0.5, 0.5, 0.5):
        m.observe_agreement(a)
    assert m.scores() == {"answers": pytest.approx(1.0), "agreement": pytest.approx(0.4)}
    m.reset()
    assert m.scores() == {}
    feed(m, cycle("7", 5))
    m.observe_agreement(0.5)
    assert m.scores() == {"answers": 0.0, "agreement": 0.0}


def test_partial_current_window_becomes_a_partial_reference() -> None:
    m = DriftMonitor(window=10, min_current=2)
    feed(m, cycle("0", 10) + cycle("1", 4))
    m.reset()
    feed(m, cycle("1", 6) + cycle("2", 2))  # 6 fill the reference, 2 reach the current window
    assert m.scores()["answers"] == pytest.approx(1.0)


def test_json_round_trip_preserves_scores_and_windows() -> None:
    m = DriftMonitor(window=30, min_current=10)
    feed(m, cycle("01", 30) + ["0"] * 10 + [""] * 10, features(50, 3))
    for a in (0.9, 0.8, 0.7, 0.6):
        m.observe_agreement(a)
    restored = DriftMonitor.from_json(m.to_json())
    assert set(m.scores()) == set(SIGNALS)
    assert restored.scores() == m.scores()
    # Both keep going identically: the restored one knows how full each window is.
    for monitor in (m, restored):
        feed(monitor, cycle("5", 30))
    assert restored.scores() == m.scores()
    assert restored.to_json() == m.to_json()


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"version": 99}', json.dumps({"version": 1, "window": 5}), "not json"],
)
def test_from_json_rejects_bad_state(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  various messages, one contract
        DriftMonitor.from_json(text)


def test_invalid_windows_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_current"):
        DriftMonitor(window=10, min_current=20)
