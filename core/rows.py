"""TTRV JSONL rows (`{"id", "prompt", "image_path", "answer"?, "source"?}`), read lazily for replay.

`image_path` is relative to the JSONL file's folder unless absolute, as `ttrv data` writes it, so a stream
can be moved as a whole. A bad line stops the read with its file and line number: a replay that silently
skipped rows would report an accuracy over a different set than the user thinks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError


class Row(BaseModel):
    """One request of a stream; `answer` is its label (evaluation only, never used to adapt)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str
    prompt: str
    image_path: Path
    answer: str | None = None
    source: str | None = None


class RowError(ValueError):
    """A line of a JSONL file that is not a valid row; the message names the file and the line."""


def read_rows(path: Path) -> Iterator[Row]:
    """The rows of `path` in order, blank lines skipped, with `image_path` made absolute."""
    folder = path.parent
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = Row.model_validate_json(line)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors()
                )
                raise RowError(
                    f"{path}:{number}: not a TTRV row ({problems}); "
                    'each line must be a JSON object with "id", "prompt" and "image_path"'
                ) from None
            if not row.image_path.is_absolute():
                row = row.model_copy(update={"image_path": folder / row.image_path})
            yield row
