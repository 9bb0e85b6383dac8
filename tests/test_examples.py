"""Every script in examples/ runs to the end with a tiny budget and prints what it promises."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> str:
    """:return: The stdout of ``examples/<name>`` run with ``args``, which must succeed."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("algo", ["reinforce", "offpolicy_pg", "ppo_kl", "nstep_ac"])
def test_quickstart(algo: str, tmp_path: Path) -> None:
    out = run_example("quickstart.py", "--algo", algo, "--timesteps", "300", "--save-dir", str(tmp_path))
    saved = tmp_path / f"{algo}_CartPole-v1.zip"
    assert saved.exists()
    assert "saved to" in out and "first action of the reloaded policy" in out
    if algo == "reinforce":
        kept = saved.read_bytes()
        again = [sys.executable, str(EXAMPLES / "quickstart.py"), "--timesteps", "300", "--save-dir", str(tmp_path)]
        done = subprocess.run(again, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 2 and "rather than overwrite it" in done.stderr
        assert saved.read_bytes() == kept


def test_compare_variance() -> None:
    out = run_example("compare_variance.py", "--train-steps", "300", "--batches", "2", "--episodes", "2")
    assert "## CartPole-v1, fresh policy" in out and "after 300 training steps" in out and "rtg_optimal" in out


def test_reuse_episodes() -> None:
    assert "ESS fraction median" in run_example("reuse_episodes.py", "--timesteps", "1500")


def test_kl_vs_clip() -> None:
    out = run_example("kl_vs_clip.py", "--timesteps", "512")
    assert "KL penalty, adaptive beta (PPOKL): evaluation" in out and "clipped surrogate (PPO): evaluation" in out


@pytest.mark.parametrize("algo", ["reinforce", "ppo_kl", "nstep_ac"])
def test_rollout_buffer_callback(algo: str) -> None:
    assert "rollouts: buffer return" in run_example("rollout_buffer_callback.py", "--algo", algo, "--timesteps", "600")


def test_tune_postgres(postgres: str, tmp_path: Path) -> None:
    out = run_example(
        "tune_postgres.py",
        "--storage",
        postgres,
        "--workers",
        "2",
        "--trials",
        "3",
        "--timesteps",
        "300",
        "--log-folder",
        str(tmp_path),
    )
    match = re.search(r"(\d+) trials; best #", out)
    assert match is not None, out
    # Each worker checks the study's trial count before it starts a trial, so two workers may both start the last one.
    assert 3 <= int(match.group(1)) <= 4
