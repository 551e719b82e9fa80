"""write_atomic: a state file holds the old content or the new, and no temporary is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.state_files import write_atomic


def test_write_replaces_the_content_and_leaves_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    write_atomic(path, "old")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.txt"
    write_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "caf\u00e9", encoding="ascii")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.txt"]
