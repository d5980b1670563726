"""Artifact previews the run graph and run pages show for a file of unknown kind: its first bytes
as text when they are text (JSON pretty-printed), as KFP shows them; a binary file stays a size."""

from __future__ import annotations

import json
from pathlib import Path

from nbpipe.serializers import TEXT_HEAD, preview_artifact


def preview(path: Path) -> dict:
    return preview_artifact("Artifact", str(path), {}, path.stat().st_size)


def test_a_small_text_file_shows_its_text(tmp_path: Path) -> None:
    f = tmp_path / "notes"
    f.write_text("accuracy went up\nsee run 12 ✓\n")
    size = f.stat().st_size
    assert preview(f) == {"type": "multi", "items": [{"type": "file", "size": size},
                                                      {"type": "text", "text": "accuracy went up\nsee run 12 ✓\n"}]}


def test_a_json_file_is_pretty_printed_and_keeps_its_floats(tmp_path: Path) -> None:
    f = tmp_path / "result"
    f.write_text(json.dumps({"c": 1.0, "ids": [1, 2]}))
    assert preview(f)["items"][1] == {"type": "text", "text": '{\n  "c": 1.0,\n  "ids": [\n    1,\n    2\n  ]\n}'}


def test_a_large_text_file_shows_its_first_bytes_without_cutting_a_character(tmp_path: Path) -> None:
    f = tmp_path / "log"
    f.write_text("a" * (TEXT_HEAD - 1) + "é" * 5000)  # "é" is 2 bytes: the limit falls inside one
    text = preview(f)["items"][1]["text"]
    assert text == "a" * (TEXT_HEAD - 1) + "…"


def test_binary_and_empty_files_stay_a_size(tmp_path: Path) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(bytes(range(256)))
    assert preview(blob) == {"type": "file", "size": 256}
    latin = tmp_path / "latin"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    assert preview(latin) == {"type": "file", "size": 4}
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert preview(empty) == {"type": "file", "size": 0}
    assert preview_artifact("Artifact", "", {}, 10) == {"type": "file", "size": 10}  # a folder artifact
