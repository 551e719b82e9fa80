"""`make clean` leaves the checkout as a fresh clone: everything the targets and tests create goes,
and nothing tracked or written by the user does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What `make .venv/.installed`, `make demo`, `make test`, `make lint`, `make bench` and a wheel
# build leave behind.
CREATED = [
    ".venv/bin/python",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/0.1/x",
    ".hypothesis/examples/x",
    "build/lib/edge_agent/x.py",
    "dist/smelter_edge_agent-0.1.0-py3-none-any.whl",
    "smelter_edge_agent.egg-info/PKG-INFO",
    ".demo/outbox.db",
    ".demo/agent.log",
    ".bench/x",
    "edge_agent/__pycache__/cli.cpython-311.pyc",
    "tests/__pycache__/conftest.cpython-311-pytest-8.pyc",
]


def test_make_clean_removes_what_the_targets_and_tests_create(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    for name in CREATED:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("x")
    (checkout / "my-plant.toml").write_text("[agent]\n")  # the user's own file stays

    subprocess.run(["make", "clean"], cwd=checkout, check=True, capture_output=True, timeout=60)

    left = [name for name in CREATED if (checkout / name).exists()]
    left += [str(p.relative_to(checkout)) for p in checkout.rglob("__pycache__")]
    untracked_tops = {n.split("/")[0] for n in CREATED} - {t.split("/")[0] for t in tracked}
    left += [name for name in untracked_tops if (checkout / name).exists()]
    assert left == []
    assert (checkout / "my-plant.toml").exists()
    assert all((checkout / name).exists() for name in tracked if (ROOT / name).is_file())
