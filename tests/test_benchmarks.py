"""Smoke test of the benchmark harness through its command line: one short run, resume, report."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def harness(*args: str) -> str:
    """Run ``python -m benchmarks.<args>`` from the repository root and return its stdout."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout


def test_run_resume_report(tmp_path: Path) -> None:
    results = tmp_path / "results"
    argv = ["benchmarks.run", "--algos", "a2c", "--envs", "CartPole-v1", "--seeds", "0", "--timesteps", "2000"]
    argv += ["--eval-freq", "1000", "--eval-episodes", "3", "--jobs", "1", "--results", str(results)]
    harness(*argv)
    (record,) = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    assert (record["algo"], record["env"], record["seed"], record["timesteps"]) == ("a2c", "CartPole-v1", 0, 2000)
    assert record["eval_timesteps"][0] == 0 and record["eval_timesteps"][-1] == record["env_steps"] >= 2000
    assert len(record["eval_mean"]) == len(record["eval_timesteps"]) >= 3
    assert record["steps_per_s"] > 0

    assert "1 of 1 runs already" in harness(*argv)
    assert len((results / "runs.jsonl").read_text().splitlines()) == 1

    harness("benchmarks.report", "--results", str(results), "--out", str(tmp_path), "--threshold", "CartPole-v1=50")
    assert "| CartPole-v1 | a2c | 2,000 | 1 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "curves_CartPole-v1.png").stat().st_size > 0
