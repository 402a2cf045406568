"""scikit-learn's digits as 56 px RGB images, split once, and written as TTRV rows (PNG + JSONL).

A row is `{"id", "prompt", "image_path", "answer", "source"}` as in TTRV's data; `image_path` is relative to
the JSONL file's folder, so a written stream can be moved or copied as a whole. The label (`answer`) is for
evaluation only: adaptation never reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from sklearn.datasets import load_digits

from adapter.digits.shifts import apply_shift
from adapter.digits.task import ADAPT_SIZE, IMAGE_SIDE, PROMPT, SPLIT_SEED, TRAIN_SIZE

SPLITS = ("train", "adapt", "eval")


@dataclass(frozen=True)
class Digits:
    """Images as uint8 N x 56 x 56 x 3 and their labels 0..9."""

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)


def _render(raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """8x8 intensities 0..16 -> 56x56x3 floats in [0, 1] (nearest-neighbour upscale x7)."""
    scale = IMAGE_SIDE // 8
    big = np.kron(raw / 16.0, np.ones((scale, scale)))
    return np.repeat(big[..., None], 3, axis=-1)


def load_split(split: str) -> Digits:
    """One of the fixed, disjoint splits 'train', 'adapt' or 'eval' of sklearn's 1797 digits."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    data = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.target))
    bounds = {"train": (0, TRAIN_SIZE), "adapt": (TRAIN_SIZE, TRAIN_SIZE + ADAPT_SIZE)}
    lo, hi = bounds.get(split, (TRAIN_SIZE + ADAPT_SIZE, len(order)))
    idx = order[lo:hi]
    floats = np.stack([_render(data.images[i]) for i in idx])
    return Digits(to_uint8(floats), data.target[idx].astype(np.int64))


def to_uint8(images: NDArray[np.float64]) -> NDArray[np.uint8]:
    return np.asarray(np.round(np.clip(images, 0.0, 1.0) * 255.0), dtype=np.uint8)


def shifted(digits: Digits, shift: str, severity: int, seed: int) -> Digits:
    """The same digits under `shift` at `severity` ('clean' leaves them as they are)."""
    if shift == "clean":
        return digits
    rng = np.random.default_rng(seed)
    out = apply_shift(digits.images.astype(np.float64) / 255.0, shift, severity, rng)
    return Digits(to_uint8(out), digits.labels)


def stream_name(shift: str, severity: int) -> str:
    return "clean" if shift == "clean" else f"{shift}-{severity}"


def write_rows(digits: Digits, out_dir: Path, name: str, split: str) -> Path:
    """Write PNGs under `out_dir/images/` and `out_dir/<split>.jsonl`; returns the JSONL path."""
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / f"{split}.jsonl"
    with jsonl.open("w") as f:
        for i, (image, label) in enumerate(zip(digits.images, digits.labels, strict=True)):
            row_id = f"{name}-{split}-{i:04d}"
            rel = Path("images") / f"{row_id}.png"
            Image.fromarray(image).save(out_dir / rel)
            row = {
                "id": row_id,
                "prompt": PROMPT,
                "image_path": str(rel),
                "answer": str(int(label)),
                "source": f"digits/{name}",
            }
            f.write(json.dumps(row) + "\n")
    return jsonl


def write_stream(root: Path, shift: str, severity: int, seed: int) -> dict[str, Path]:
    """Write the adaptation stream and the evaluation set of one shift into `root/<name>/`.

    The two use different random draws of the shift (seed and seed + 1), as a live stream and a later
    evaluation would. Rewrites the folder's rows if it exists.
    """
    name = stream_name(shift, severity)
    return {
        split: write_rows(stream_split(split, shift, severity, seed), root / name, name, split)
        for split in ("adapt", "eval")
    }


def stream_split(split: str, shift: str, severity: int, seed: int) -> Digits:
    """The images `write_stream` writes for `split` ('adapt' or 'eval'), without writing them."""
    offset = {"adapt": 0, "eval": 1}[split]
    return shifted(load_split(split), shift, severity, seed + offset)
