"""The built-in data: a fixed disjoint split, graded shifts, reproducible TTRV rows on disk."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapter.digits.dataset import SPLITS, load_split, stream_split, write_stream
from adapter.digits.shifts import SHIFTS, apply_shift
from adapter.digits.task import ADAPT_SIZE, IMAGE_SIDE, PROMPT, TRAIN_SIZE


def test_splits_are_disjoint_and_cover_all_digits() -> None:
    sizes = {s: len(load_split(s)) for s in SPLITS}
    assert sizes == {"train": TRAIN_SIZE, "adapt": ADAPT_SIZE, "eval": 1797 - TRAIN_SIZE - ADAPT_SIZE}
    flat = {s: {im.tobytes() for im in load_split(s).images} for s in SPLITS}
    # sklearn's digits hold a few exact duplicates; the splits must not share more than those.
    assert len(flat["train"] & flat["eval"]) <= 2
    assert len(flat["adapt"] & flat["eval"]) <= 2


def test_images_are_56px_rgb_uint8() -> None:
    images = load_split("eval").images
    assert images.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE, 3)
    assert images.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_severity_grades_the_distance_from_clean(name: str) -> None:
    clean = load_split("eval").images[:64].astype(np.float64) / 255
    distances = [
        np.abs(apply_shift(clean, name, s, np.random.default_rng(0)) - clean).mean() for s in range(1, 6)
    ]
    assert all(a < b for a, b in itertools.pairwise(distances)), distances
    assert distances[0] > 0


def test_shift_rejects_unknown_names_and_severities() -> None:
    x = np.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="unknown shift"):
        apply_shift(x, "fog", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity"):
        apply_shift(x, "contrast", 6, np.random.default_rng(0))


def test_written_stream_is_reproducible_and_in_ttrv_format(tmp_path: Path) -> None:
    first = write_stream(tmp_path / "a", "gaussian_noise", 2, seed=7)
    second = write_stream(tmp_path / "b", "gaussian_noise", 2, seed=7)
    rows = [json.loads(line) for line in first["eval"].read_text().splitlines()]
    assert len(rows) == 1797 - TRAIN_SIZE - ADAPT_SIZE
    assert set(rows[0]) == {"id", "prompt", "image_path", "answer", "source"}
    assert rows[0]["prompt"] == PROMPT
    assert all(r["answer"] in "0123456789" for r in rows)
    image = np.asarray(Image.open(first["eval"].parent / rows[0]["image_path"]))
    np.testing.assert_array_equal(image, stream_split("eval", "gaussian_noise", 2, 7).images[0])
    assert first["adapt"].read_text() == second["adapt"].read_text()
    for split in ("adapt", "eval"):
        a = sorted(p.read_bytes() for p in first[split].parent.glob("images/*.png"))
        b = sorted(p.read_bytes() for p in second[split].parent.glob("images/*.png"))
        assert a == b
    adapt_ids = {json.loads(line)["id"] for line in first["adapt"].read_text().splitlines()}
    assert not adapt_ids & {r["id"] for r in rows}
