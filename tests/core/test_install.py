"""A non-editable install finds its shipped pipeline and scenarios (package data), from any folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_built_wheel_replays_and_simulates_with_defaults(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    run = ("import sys; sys.path.insert(0, sys.argv[1]); import detector; "
           "assert detector.__file__.startswith(sys.argv[1]), detector.__file__; "
           "from detector.cli import main; sys.exit(main(sys.argv[2:]))")
    work = tmp_path / "elsewhere"
    work.mkdir()

    def cli(*args):
        return subprocess.run([sys.executable, "-c", run, str(site), *args], cwd=work, capture_output=True,
                              text=True)

    sim = cli("simulate", "demo", "--out", "events.jsonl", "--duration-s", "300")
    assert sim.returncode == 0, sim.stderr
    rep = cli("replay", "--input", "events.jsonl", "--output", "out.jsonl")
    assert rep.returncode == 0, rep.stderr
    assert (work / "out.jsonl").exists() and "events" in rep.stderr
    assert (site / "detector" / "data" / "default.toml").is_file()
    assert not (site / "detector" / "data" / "default.toml").is_symlink()
