"""TTRV JSONL rows: relative image paths resolve against the file's folder; bad lines name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.rows import Row, RowError, read_rows


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_relative_paths_resolve_against_the_jsonl_folder_and_absolute_ones_stay(tmp_path: Path) -> None:
    elsewhere = tmp_path / "other" / "x.png"
    data = write(
        tmp_path / "stream" / "adapt.jsonl",
        json.dumps(
            {"id": "a", "prompt": "Which?", "image_path": "images/0.png", "answer": "7", "source": "s"}
        ),
        json.dumps({"id": "b", "prompt": "Which?", "image_path": str(elsewhere)}),
    )
    rows = list(read_rows(data))
    assert rows == [
        Row(
            id="a",
            prompt="Which?",
            image_path=tmp_path / "stream" / "images" / "0.png",
            answer="7",
            source="s",
        ),
        Row(id="b", prompt="Which?", image_path=elsewhere),
    ]


def test_reading_from_another_working_directory_gives_the_same_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write(tmp_path / "d" / "eval.jsonl", json.dumps({"id": "a", "prompt": "q", "image_path": "i.png"}))
    monkeypatch.chdir(tmp_path)
    (row,) = read_rows(Path("d/eval.jsonl"))
    assert row.image_path.resolve() == (data.parent / "i.png").resolve()


def test_blank_lines_are_skipped_numbers_become_strings_and_extra_keys_are_ignored(tmp_path: Path) -> None:
    data = write(
        tmp_path / "rows.jsonl",
        "",
        json.dumps({"id": 12, "prompt": "q", "image_path": "a.png", "answer": 7, "extra": [1]}),
        "   ",
    )
    (row,) = read_rows(data)
    assert (row.id, row.answer) == ("12", "7")


def test_a_line_that_is_not_json_names_the_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "prompt": "q", "image_path": "a.png"})
    data = write(tmp_path / "rows.jsonl", good, "", "{not json")
    rows = read_rows(data)
    assert next(rows).id == "a"  # rows before the bad line are read (the read is lazy)
    with pytest.raises(RowError, match=rf"^{data}:3: not a TTRV row"):
        next(rows)


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    data = write(tmp_path / "rows.jsonl", json.dumps({"id": "a", "image_path": "a.png"}))
    with pytest.raises(RowError, match=r"rows\.jsonl:1: .*prompt: Field required"):
        list(read_rows(data))
