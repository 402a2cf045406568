"""The model card written beside the built-in model's weights (`model_card.json`).

Only pydantic here, so `ttrv model info` and the tests can read a card without torch.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from rich.table import Table

CARD_FILE = "model_card.json"


class Accuracies(BaseModel):
    greedy: float = Field(description="share of images whose most likely answer is right")
    per_sample: float = Field(
        description="mean probability of the right answer: accuracy of one sample at T=1"
    )
    majority_at_32: float = Field(description="accuracy of the majority of 32 samples at T=1")


class ModelCard(BaseModel):
    name: str
    recipe: str = Field(
        description="hash of everything that determines the weights; a change forces a rebuild"
    )
    seed: int
    prompt: str
    image_side: int
    answers: list[str]
    architecture: dict[str, object]
    pretraining: dict[str, object]
    parameters: int
    train_images: int
    eval_images: int
    build_seconds: float
    final_loss: float
    accuracy: dict[str, Accuracies] = Field(
        description="on the evaluation split: 'clean' and '<shift>-<severity>' for every built-in shift"
    )
    default_severity: int
    versions: dict[str, str]
    created_at: str

    def write(self, model_dir: Path) -> None:
        (model_dir / CARD_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, model_dir: Path) -> ModelCard:
        return cls.model_validate_json((model_dir / CARD_FILE).read_text())


def model_dir(home: Path, seed: int) -> Path:
    """Where the built-in model of `seed` lives in the cache folder `home`."""
    return home / "models" / f"tiny-qwen2vl-digits-s{seed}"


def card_table(card: ModelCard, all_severities: bool = False) -> Table:
    """Held-out accuracy, clean and under each shift (at the default severity unless `all_severities`)."""
    table = Table(title=f"{card.name}: held-out accuracy ({card.eval_images} digits)")
    for col in ("condition", "greedy", "per-sample", "majority@32"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    suffix = "" if all_severities else f"-{card.default_severity}"
    for key, a in card.accuracy.items():
        if key == "clean" or key.endswith(suffix):
            table.add_row(key, f"{a.greedy:.1%}", f"{a.per_sample:.1%}", f"{a.majority_at_32:.1%}")
    return table
