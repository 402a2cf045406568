"""Label-free drift signals for `ttrv_drift_score{signal}` (docs/design.md, metrics contract).

Three signals, none of which needs a label:

- ``answers``: Jensen-Shannon divergence between the answer distribution of a reference window and that of
  the most recent requests (the model answers differently, or it is asked about different things);
- ``inputs``: standardized mean shift of cheap image statistics (brightness, contrast, sharpness), the
  kind of shift that blur, noise or a new camera causes;
- ``agreement``: how far the rollouts' vote agreement fell below its level in the first adaptation rounds
  (the model grows unsure of itself before anything else is visible).

>>> m = DriftMonitor(window=4, min_current=2)
>>> for answer in ["1", "1", "2", "2", "1", "2"]:
...     m.observe(answer, None)
>>> m.scores()
{'answers': 0.0}
>>> for answer in ["7", "7", "7", "7"]:
...     m.observe(answer, None)
>>> m.scores()
{'answers': 1.0}
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass

import numpy as np
from PIL import Image

SIGNALS = ("answers", "inputs", "agreement")

# Images are reduced to this side before their statistics: decoding and differencing stay cheap on large
# uploads, and neighbour differences (sharpness) mean the same thing whatever the upload's resolution.
FEATURE_SIDE = 256
# Floor under the reference spread: a near-constant reference (one camera, one scene) would otherwise turn
# a tiny change in a 0..1 statistic into a huge number of standard deviations.
SHIFT_EPS = 1e-2
AGREEMENT_ROUNDS = 3
_STATE_VERSION = 1


@dataclass(frozen=True)
class ImageFeatures:
    """Cheap statistics of one image, on 0..1 scales."""

    brightness: float  # mean luminance / 255
    contrast: float  # std of luminance / 255
    sharpness: (
        float  # mean absolute difference of neighbouring pixels / 255 (blur lowers it, noise raises it)
    )


def image_features(data: bytes) -> ImageFeatures:
    """Brightness, contrast and sharpness of an encoded image; ValueError if it cannot be decoded.

    >>> buf = io.BytesIO()
    >>> Image.new("L", (4, 4), 255).save(buf, "PNG")
    >>> image_features(buf.getvalue())
    ImageFeatures(brightness=1.0, contrast=0.0, sharpness=0.0)
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (FEATURE_SIDE, FEATURE_SIDE))  # JPEG only: decode at reduced scale
            gray = image.convert("L")
            gray.thumbnail((FEATURE_SIDE, FEATURE_SIDE))
    except Exception as exc:  # PIL's decoders raise a zoo of types on malformed input
        raise ValueError(f"unreadable image: {exc}") from exc
    pixels = np.asarray(gray, dtype=np.float64) / 255.0
    dx = np.abs(np.diff(pixels, axis=1))
    dy = np.abs(np.diff(pixels, axis=0))
    pairs = dx.size + dy.size
    return ImageFeatures(
        brightness=float(pixels.mean()),
        contrast=float(pixels.std()),
        sharpness=float((dx.sum() + dy.sum()) / pairs) if pairs else 0.0,
    )


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence (base 2, so in [0, 1]) of two distributions given as counts or probabilities.

    >>> js_divergence({"a": 3, "b": 1}, {"a": 0.75, "b": 0.25})
    0.0
    >>> js_divergence({"a": 1}, {"b": 5})
    1.0
    >>> round(js_divergence({"a": 1, "b": 1}, {"a": 1}), 4)
    0.3113
    >>> js_divergence({}, {"a": 1})
    0.0
    """
    if any(v < 0 for v in (*p.values(), *q.values())):
        raise ValueError("counts and probabilities must be non-negative")
    p_total, q_total = sum(p.values()), sum(q.values())
    if p_total <= 0 or q_total <= 0:
        return 0.0  # no distribution to compare against: report no drift rather than a made-up one
    total = 0.0
    for key in p.keys() | q.keys():
        pi, qi = p.get(key, 0.0) / p_total, q.get(key, 0.0) / q_total
        mi = (pi + qi) / 2
        if pi > 0:
            total += 0.5 * pi * math.log2(pi / mi)
        if qi > 0:
            total += 0.5 * qi * math.log2(qi / mi)
    return min(1.0, max(0.0, total))  # rounding can step just outside the bounds


def input_shift(reference: Sequence[ImageFeatures], current: Sequence[ImageFeatures]) -> float:
    """Largest standardized mean difference over the three features (in reference standard deviations).

    >>> ref = [ImageFeatures(0.4, 0.2, 0.05), ImageFeatures(0.6, 0.2, 0.05)]
    >>> input_shift(ref, ref)
    0.0
    >>> round(input_shift(ref, [ImageFeatures(0.2, 0.2, 0.05)]), 2)
    2.73
    >>> input_shift([], ref)
    0.0
    """
    if not reference or not current:
        return 0.0
    ref = np.array([astuple(f) for f in reference], dtype=np.float64)
    cur = np.array([astuple(f) for f in current], dtype=np.float64)
    shift = np.abs(cur.mean(axis=0) - ref.mean(axis=0)) / (ref.std(axis=0) + SHIFT_EPS)
    return float(shift.max())


Observation = tuple[str, ImageFeatures | None]


class DriftMonitor:
    """Compares a reference window (the first `window` observations after start or reset) with a sliding
    current window (the last `window` observations).

    The windows never overlap: observations fill the reference first, and only then the current window.
    """

    def __init__(self, window: int = 200, min_current: int = 50) -> None:
        if window < 1 or not 1 <= min_current <= window:
            raise ValueError(
                f"need 1 <= min_current <= window, got window={window}, min_current={min_current}"
            )
        self.window = window
        self.min_current = min_current
        self._reference: list[Observation] = []
        self._current: deque[Observation] = deque(maxlen=window)
        self._ref_agreement: list[float] = []
        # The last few rounds, so that a reset can make them the new reference like the request windows.
        self._recent_agreement: deque[float] = deque(maxlen=AGREEMENT_ROUNDS)

    def observe(self, answer: str, features: ImageFeatures | None) -> None:
        """Record one served request; "" (unparseable) is a class of its own, `features` may be None."""
        if len(self._reference) < self.window:
            self._reference.append((answer, features))
        else:
            self._current.append((answer, features))

    def observe_agreement(self, agreement: float) -> None:
        """Record the mean vote agreement (0..1) of one adaptation round's rollouts."""
        if not 0.0 <= agreement <= 1.0:  # also rejects NaN
            raise ValueError(f"agreement must be in [0, 1], got {agreement}")
        if len(self._ref_agreement) < AGREEMENT_ROUNDS:
            self._ref_agreement.append(agreement)
        else:
            self._recent_agreement.append(agreement)

    def scores(self) -> dict[str, float]:
        """The signals that have enough data, keyed by name from SIGNALS; the others are left out."""
        out: dict[str, float] = {}
        if len(self._reference) == self.window and len(self._current) >= self.min_current:
            out["answers"] = js_divergence(
                Counter(a for a, _ in self._reference), Counter(a for a, _ in self._current)
            )
            ref_features = [f for _, f in self._reference if f is not None]
            cur_features = [f for _, f in self._current if f is not None]
            if ref_features and len(cur_features) >= self.min_current:
                out["inputs"] = input_shift(ref_features, cur_features)
        if len(self._ref_agreement) == AGREEMENT_ROUNDS and self._recent_agreement:
            baseline = sum(self._ref_agreement) / AGREEMENT_ROUNDS
            out["agreement"] = max(0.0, baseline - self._recent_agreement[-1])
        return out

    def reset(self) -> None:
        """Make the current window the new reference (after a promotion, what is now normal has changed).

        A current window shorter than `window` becomes a partial reference that the next observations fill.
        """
        self._reference = list(self._current)
        self._current.clear()
        self._ref_agreement = list(self._recent_agreement)
        self._recent_agreement.clear()

    def to_json(self) -> str:
        def encode(observations: Sequence[Observation]) -> list[list[object]]:
            return [[a, None if f is None else list(astuple(f))] for a, f in observations]

        return json.dumps(
            {
                "version": _STATE_VERSION,
                "window": self.window,
                "min_current": self.min_current,
                "reference": encode(self._reference),
                "current": encode(self._current),
                "ref_agreement": self._ref_agreement,
                "recent_agreement": list(self._recent_agreement),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> DriftMonitor:
        """Restore a monitor saved by `to_json`; ValueError on anything else."""

        def decode(rows: list[list[object]]) -> list[Observation]:
            out: list[Observation] = []
            for answer, feats in rows:
                if not isinstance(answer, str) or not (feats is None or isinstance(feats, list)):
                    raise ValueError("bad observation in drift state")
                out.append((answer, None if feats is None else ImageFeatures(*map(float, feats))))
            return out

        try:
            state = json.loads(text)
            if state.get("version") != _STATE_VERSION:
                raise ValueError(f"unsupported drift state version {state.get('version')!r}")
            monitor = cls(int(state["window"]), int(state["min_current"]))
            monitor._reference = decode(state["reference"])[: monitor.window]
            monitor._current.extend(decode(state["current"]))
            monitor._ref_agreement = [float(x) for x in state["ref_agreement"]][:AGREEMENT_ROUNDS]
            monitor._recent_agreement.extend(float(x) for x in state["recent_agreement"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"bad drift state: {exc}") from exc
        return monitor
