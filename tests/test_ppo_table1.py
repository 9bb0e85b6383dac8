"""Smoke test of the PPO Table-1 harness: two short runs and the random policy, resume, report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.ppo_table1 import normalised_scores

REPO = Path(__file__).resolve().parents[1]


def table1(*args: str) -> str:
    """Run ``python -m benchmarks.ppo_table1 <args>`` from the repository root and return its stdout."""
    command = [sys.executable, "-m", "benchmarks.ppo_table1", *args]
    return subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, timeout=240).stdout


def test_run_resume_report(tmp_path: Path) -> None:
    settings = ["no clipping or penalty", "clipping, eps=0.2"]
    argv = ["run", "--envs", "Pendulum-v1", "--settings", *settings, "--seeds", "0", "--timesteps", "4096"]
    argv += ["--jobs", "1", "--out", str(tmp_path)]
    table1(*argv)
    records = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert sorted(record["algo"] for record in records) == sorted([*settings, "random policy"])
    trained = [record for record in records if record["algo"] != "random policy"]
    assert {record["class"] for record in trained} == {"PPO", "PPOKL"}
    for record in trained:
        # Pendulum's episodes last 200 steps: 4 envs x 1024 steps hold 20 of them.
        assert record["env_steps"] == 4096 and len(record["episode_returns"]) == 20
        assert record["score"] == pytest.approx(sum(record["episode_returns"]) / 20)

    assert "3 of 3 runs already" in table1(*argv)
    table1("report", "--out", str(tmp_path))
    table = (tmp_path / "table1.md").read_text()
    assert "| no clipping or penalty | " in table and "| fixed KL, beta=10.0 | - | - | - |" in table
    assert (tmp_path / "table1.png").stat().st_size > 0


def test_normalisation() -> None:
    by_setting = {("A-v0", "x"): [10.0, 20.0], ("A-v0", "y"): [5.0], ("B-v0", "x"): [-1.0]}
    normalised = normalised_scores({"A-v0": 0.0, "B-v0": -3.0}, by_setting)
    assert normalised == {("A-v0", "x"): 1.0, ("A-v0", "y"): pytest.approx(1 / 3), ("B-v0", "x"): 1.0}


def test_normalisation_against_reference_settings() -> None:
    by_setting = {("A-v0", "x"): [10.0], ("A-v0", "variant"): [15.0]}
    normalised = normalised_scores({"A-v0": 0.0}, by_setting, reference=["x"])
    assert normalised == {("A-v0", "x"): 1.0, ("A-v0", "variant"): 1.5}


def test_report_lists_variants_apart(tmp_path: Path) -> None:
    def record(setting: str, score: float, seed: int = 0) -> dict[str, object]:
        return {"algo": setting, "env": "Pendulum-v1", "seed": seed, "timesteps": 1000, "score": score}

    records = [
        {**record("random policy", -1000.0), "timesteps": 0},
        record("clipping, eps=0.2", -200.0),
        record("adaptive KL, d_targ=0.01", -400.0),
        record("adaptive KL, d_targ=0.01, early stop", -150.0),
        record("adaptive KL, d_targ=0.01, early stop", -250.0, seed=1),
    ]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    table1("report", "--out", str(tmp_path))
    main, variants = (tmp_path / "table1.md").read_text().split("Variants beyond the paper's table")
    assert "| clipping, eps=0.2 | -200.0 ± 0.0 (1) | 1.00 |" in main
    assert "| adaptive KL, d_targ=0.01 | -400.0 ± 0.0 (1) | 0.75 |" in main
    assert "early stop" not in main
    assert "| adaptive KL, d_targ=0.01, early stop | -200.0 ± 50.0 (2) | 1.00 |" in variants
