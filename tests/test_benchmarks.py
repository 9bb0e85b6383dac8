"""Smoke tests of the benchmark harness through its command line (one short run, resume, report) and of its callbacks."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from rliable import metrics
from stable_baselines3 import A2C
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pgnotes.common import collection

from benchmarks import anchors, report, run, throughput
from benchmarks.registry import ALGOS, resolve
from benchmarks.run import make_env
from benchmarks.steps_to_threshold import StopAtThreshold

REPO = Path(__file__).resolve().parents[1]


def harness(*args: str) -> str:
    """Run ``python -m benchmarks.<args>`` from the repository root and return its stdout."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, check=True, capture_output=True, text=True, timeout=240
    ).stdout


def test_run_resume_report(tmp_path: Path) -> None:
    results = tmp_path / "results"
    argv = ["benchmarks.run", "--algos", "a2c", "--envs", "CartPole-v1", "--seeds", "0", "--timesteps", "2000"]
    argv += ["--eval-freq", "1000", "--eval-episodes", "3", "--jobs", "1", "--results", str(results)]
    harness(*argv)
    (record,) = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    assert (record["algo"], record["env"], record["seed"], record["timesteps"]) == ("a2c", "CartPole-v1", 0, 2000)
    assert record["eval_timesteps"][0] == 0 and record["eval_timesteps"][-1] == record["env_steps"] >= 2000
    assert len(record["eval_mean"]) == len(record["eval_timesteps"]) == len(record["eval_train_s"]) >= 3
    # Training seconds before each evaluation: from 0, increasing, and never more than the run's time outside them.
    train_seconds = record["eval_train_s"]
    assert train_seconds[0] < 0.05 and all(np.diff(train_seconds) > 0)
    assert train_seconds[-1] <= record["wall_time_s"] - record["eval_time_s"] + 1e-6
    assert record["steps_per_s"] > 0

    assert "1 of 1 runs already" in harness(*argv)
    assert len((results / "runs.jsonl").read_text().splitlines()) == 1
    # A rerun appends a second record of the cell; the report counts the latest alone.
    assert "0 of 1 runs already" in harness(*argv, "--rerun")
    assert len((results / "runs.jsonl").read_text().splitlines()) == 2

    report = ["benchmarks.report", "--results", str(results), "--out", str(tmp_path), "--reps", "50", "--min-runs", "1"]
    harness(*report, "--threshold", "CartPole-v1=50")
    text = (tmp_path / "report.md").read_text()
    assert "| a2c | 2,000 | 1 |" in text and "Threshold: 50." in text
    assert (
        "| [rl-zoo3 PPO](https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md) | CartPole-v1 | 100,000 |"
        in text
    )
    for figure in ("curves_CartPole-v1", "aggregate_discrete", "profiles_discrete"):
        assert (tmp_path / f"{figure}.png").read_bytes().startswith(b"\x89PNG")
    assert set(json.loads((results / "random_policy.json").read_text())) == {"CartPole-v1"}


def test_run_variant_records_its_overrides_under_its_own_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    argv = ["benchmarks.run", "--algos", "a2c", "--envs", "CartPole-v1", "--seeds", "0", "--timesteps", "500"]
    argv += ["--eval-freq", "500", "--eval-episodes", "1", "--jobs", "1", "--results", str(results)]
    harness(*argv)
    variant = [*argv, "--label", "short", "--set", "n_steps=4", "--set", "learning_rate=1e-3"]
    assert "0 of 1 runs already" in harness(*variant)
    assert "1 of 1 runs already" in harness(*variant)
    entry, short = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    assert entry["algo"] == "a2c" and "overrides" not in entry
    assert short["algo"] == "a2c:short" and short["overrides"] == {"n_steps": 4, "learning_rate": 1e-3}
    assert short["hyperparams"]["n_steps"] == "4" and "0.001" in short["hyperparams"]["learning_rate"]
    assert entry["hyperparams"].get("n_steps") != "4"
    with pytest.raises(subprocess.CalledProcessError):
        harness(*argv, "--set", "n_steps=4")  # a variant needs a label
    # The label names its settings: other --set values under it would be skipped as done.
    with pytest.raises(SystemExit):
        run.main([*argv[1:], "--label", "short", "--set", "n_steps=8"])
    assert "--label short already names a2c:short with {'n_steps': 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eval-freq", "0"], "--eval-freq: must be >= 1; got 0"),
        (["--eval-episodes", "0"], "--eval-episodes: must be >= 1; got 0"),
        (["--timesteps", "-5"], "--timesteps: must be >= 1; got -5"),
        (["--seeds", "-1"], "--seeds: must be >= 0; got -1"),
        (["--envs", "Nope-v0", "CartPole-v1"], "--envs Nope-v0: "),
    ],
)
def test_run_refuses_bad_arguments_before_any_run(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--algos", "a2c", "--envs", "CartPole-v1", "--timesteps", "500", "--jobs", "1", "--results", str(tmp_path)]
    with pytest.raises(SystemExit):
        run.main([*argv, *extra])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs.jsonl").exists()


def test_anchors_name_envs_of_the_registry_and_stay_beside_their_env() -> None:
    assert all(anchor.env_id in gym.registry for anchor in anchors.ANCHORS)
    hopper = anchors.anchor_lines("Hopper-v5")
    assert any(line.startswith("| [Tianshou REINFORCE](") and "| 10,000,000 | 416.0 |" in line for line in hopper)
    assert anchors.anchor_lines("NoAnchors-v0") == []


def test_an_env_enters_the_aggregates_once_sb3s_algorithms_have_run_there() -> None:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        ("Pendulum-v1", "ppo"): [],
        ("Pendulum-v1", "a2c"): [],
        ("Pendulum-v1", "reinforce"): [],
        ("Hopper-v5", "reinforce"): [],
        ("Hopper-v5", "ppo"): [],
        ("HalfCheetah-v5", "ppo"): [],
        ("HalfCheetah-v5", "a2c"): [],
        ("HalfCheetah-v5", "reinforce"): [],
        ("CartPole-v1", "reinforce"): [],
    }
    envs = ["HalfCheetah-v5", "Hopper-v5", "Pendulum-v1"]
    # Hopper-v5 waits for A2C, though every other algorithm has run there.
    assert report.aggregated_envs(envs, runs) == ["HalfCheetah-v5", "Pendulum-v1"]
    # A group without SB3's runs compares ours alone.
    assert report.aggregated_envs(["CartPole-v1"], runs) == ["CartPole-v1"]


def test_a_partly_run_env_waits_rather_than_pushing_algorithms_out_of_the_aggregates() -> None:
    algos = (*report.OURS, "a2c", "ppo")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        (env_id, algo): [] for env_id in ("Pendulum-v1", "Hopper-v5") for algo in algos
    }
    # SB3's algorithms and two of ours have run on the new env, the other two of ours not yet.
    runs |= {("LunarLanderContinuous-v3", algo): [] for algo in ("a2c", "ppo", "ppo_kl", "nstep_ac")}
    envs = ["Hopper-v5", "LunarLanderContinuous-v3", "Pendulum-v1"]
    assert report.aggregated_envs(envs, runs) == ["Hopper-v5", "Pendulum-v1"]
    runs |= {("LunarLanderContinuous-v3", algo): [] for algo in ("reinforce", "offpolicy_pg")}
    assert report.aggregated_envs(envs, runs) == envs
    # An algorithm that has run on one env of three waits out instead of holding the aggregates to that env.
    runs[("Pendulum-v1", "sac")] = []
    assert report.aggregated_envs(envs, runs) == envs


def test_report_refuses_a_folder_without_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        report.main(["--results", str(tmp_path / "typo"), "--out", str(tmp_path)])
    assert "no run records there" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def fake_run(algo: str, env_id: str, seed: int, final: float) -> dict[str, Any]:
    """:return: A run record whose last evaluation scores ``final``."""
    return {"algo": algo, "env": env_id, "seed": seed, "timesteps": 100, "eval_mean": [0.0, final]}


def test_normalised_scores_and_probability_of_improvement() -> None:
    # Per env, 0 is the random policy and 1 the best IQM; reinforce beats a2c in every pair of runs on both envs.
    runs = {
        ("A", "reinforce"): [fake_run("reinforce", "A", seed, 10.0 + seed) for seed in range(4)],
        ("A", "a2c"): [fake_run("a2c", "A", seed, 5.0) for seed in range(5)],
        ("B", "reinforce"): [fake_run("reinforce", "B", seed, 100.0) for seed in range(5)],
        ("B", "a2c"): [fake_run("a2c", "B", seed, 50.0 + seed) for seed in range(5)],
        ("A", "ppo"): [fake_run("ppo", "A", 0, 1.0)],
    }
    scores, best = report.normalised_scores(runs, ["A", "B"], {"A": 0.0, "B": 0.0})
    # ppo lacks env B; reinforce has 4 runs on A, so 4 on each env; a2c keeps 5; the IQM of 10..13 is 11.5.
    assert list(scores) == ["reinforce", "a2c"] and best == {"A": 11.5, "B": 100.0}
    np.testing.assert_allclose(scores["reinforce"][:, 0], np.arange(10.0, 14.0) / 11.5)
    np.testing.assert_allclose(scores["a2c"], np.stack([np.full(5, 5.0 / 11.5), np.arange(50.0, 55.0) / 100.0], 1))
    assert metrics.probability_of_improvement(scores["reinforce"], scores["a2c"]) == 1.0


def test_default_thresholds_cover_the_matrix_envs_that_register_none() -> None:
    assert report.default_threshold("CartPole-v1") == 475.0  # registered
    assert report.default_threshold("Pendulum-v1") == -200.0  # registers none
    assert report.default_threshold("MountainCarContinuous-v0") == 90.0


def test_steps_and_seconds_to_threshold_are_medians_with_never_as_infinite() -> None:
    def timed(returns: list[float], seconds: list[float]) -> dict[str, Any]:
        return {"eval_timesteps": [0, 10, 20, 30], "eval_mean": returns, "eval_train_s": seconds}

    # The step-0 evaluation never counts, even when it scores above the threshold.
    fast = timed([200.0, 50.0, 120.0, 130.0], [0.0, 1.0, 2.0, 3.0])
    slow = timed([0.0, 10.0, 90.0, 100.0], [0.0, 4.0, 8.0, 12.0])
    never = timed([0.0, 10.0, 20.0, 30.0], [0.0, 1.0, 2.0, 3.0])
    assert report.steps_to_threshold(fast, 100.0) == 20 and report.steps_to_threshold(never, 100.0) is None
    assert report.seconds_to_threshold([fast, slow, never], 100.0) == 12.0
    assert report.median_steps_to_threshold([fast, slow, never], 100.0) == 30.0
    assert report.median_steps_to_threshold([fast, never, never], 100.0) == np.inf
    assert report.seconds_to_threshold([fast, never, never], 100.0) == np.inf
    assert report.seconds_to_threshold([fast, slow], 95.0) == 7.0
    assert report.seconds_to_threshold([fast, fake_run("a2c", "A", 0, 1.0)], 95.0) is None


def test_steps_to_threshold_stops_at_threshold_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "screen.jsonl"
    argv = ["benchmarks.steps_to_threshold", "--algo", "a2c", "--label", "lr", "--set", "learning_rate=1e-3"]
    argv += ["--seeds", "0", "--timesteps", "3000", "--eval-freq", "500", "--eval-episodes", "2", "--jobs", "1"]
    reached = [*argv, "--threshold", "1", "--out", str(out)]
    harness(*reached)
    never = [*argv, "--threshold", "1000", "--out", str(out)]
    harness(*never)
    first, unreached = [json.loads(line) for line in out.read_text().splitlines()]
    # Every CartPole episode returns at least 1: the first evaluation reaches it and stops the run.
    assert first["first"] == first["curve"][0][0] >= 500 and len(first["curve"]) == 1
    assert first["overrides"] == {"learning_rate": "0.001"}
    assert unreached["first"] is None and unreached["curve"][-1][0] >= 2500
    # Seconds of training before the first evaluation, evaluations excluded (and timed apart).
    assert 0 < first["first_train_s"] == first["curve"][0][2] < first["wall_time_s"] and first["eval_s"] > 0
    assert unreached["first_train_s"] is None and unreached["eval_s"] > first["eval_s"]

    harness(*reached)
    assert len(out.read_text().splitlines()) == 2
    summary = harness("benchmarks.steps_to_threshold", "--algo", "a2c", "--summary", "--out", str(out))
    reached_row = f"| CartPole-v1 | 1 | a2c | lr | 0-0 | 1/1 | {first['first']:,} | {first['first'] / 1000:g}k "
    assert f"{reached_row}| {first['first_train_s']:.1f} | {first['eval_s']:.1f} |" in summary
    assert f"| CartPole-v1 | 1000 | a2c | lr | 0-0 | 0/1 | 3,000 | - | - | {unreached['eval_s']:.1f} |" in summary


def test_time_to_solve_alternates_the_algorithms(tmp_path: Path) -> None:
    out = tmp_path / "solve.jsonl"
    argv = ["benchmarks.steps_to_threshold", "--algos", "a2c", "ppo", "--seeds", "0", "1", "--threshold", "1"]
    harness(*argv, "--timesteps", "1000", "--eval-freq", "200", "--eval-episodes", "1", "--jobs", "1", "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(record["seed"], record["algo"]) for record in records] == [(0, "a2c"), (0, "ppo"), (1, "ppo"), (1, "a2c")]


def table_rows(lines: list[str], first_cells: tuple[str, ...]) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines if line.startswith(first_cells)]


@pytest.mark.parametrize(("analogue_rollout", "theirs_steps_per_update"), [("matched", 128), ("zoo", 40)])
def test_throughput_reports_ratio_and_phases(tmp_path: Path, analogue_rollout: str, theirs_steps_per_update: int) -> None:
    out = tmp_path / "throughput.md"
    argv = ["benchmarks.throughput", "--algos", "nstep_ac", "--env", "CartPole-v1", "--timesteps", "400", "--rounds", "2"]
    harness(*argv, "--analogue-rollout", analogue_rollout, "--out", str(out))
    lines = out.read_text().splitlines()
    assert f"--analogue-rollout {analogue_rollout} --out {out}`." in lines[2]
    [ratio_row] = table_rows(lines, ("| nstep_ac | a2c |",))
    assert ratio_row[2] == "8" and ratio_row[-1] == "2"
    phase_rows = table_rows(lines, ("| nstep_ac | 8 |", "| a2c | 8 |"))
    # NStepAC's YAML rollout (8 envs x 16 steps); A2C's matched to it, or rl-zoo3's (8 envs x A2C's default 5)
    assert [row[2] for row in phase_rows] == ["128", str(theirs_steps_per_update)]
    for row in phase_rows:
        shares = [float(cell.rstrip("%")) for cell in row[4:-1]]
        assert len(shares) == len(throughput.PHASES) and abs(sum(shares) - 100) <= len(shares)
        env_step, acting, _, _, update, *_ = shares
        assert env_step > 0 and acting > 0 and update > 0


def matched_throughput(tmp_path: Path, algo: str, analogue: str, n_envs: int, rollout: str) -> tuple[int, int]:
    """
    Run the throughput mode for ``algo`` at ``n_envs`` for one round, check that both ran about the same steps per
    update, and return the two numbers of its rollout sentence, which must match ``rollout`` (a regex).
    """
    out = tmp_path / "throughput.md"
    harness(
        "benchmarks.throughput",
        "--algos",
        algo,
        "--n-envs",
        str(n_envs),
        "--timesteps",
        "2400",
        "--rounds",
        "1",
        "--out",
        str(out),
    )
    text = out.read_text()
    match = re.search(rf"- {algo}, {n_envs} envs: {rollout}", text)
    assert match is not None, text
    assert len(table_rows(text.splitlines(), (f"| {algo} | {analogue} | {n_envs} |",))) == 1
    phase_rows = table_rows(text.splitlines(), (f"| {algo} | {n_envs} |", f"| {analogue} | {n_envs} |"))
    ours_steps, theirs_steps = (float(row[2]) for row in phase_rows)
    assert ours_steps == pytest.approx(theirs_steps, rel=0.3)
    first, second = map(int, match.groups())
    return first, second


def test_throughput_matches_episodes_per_update(tmp_path: Path) -> None:
    # 12 envs: the 10 episodes per update are raised to 12, for OffPolicyPG and for its Reinforce analogue, and
    # OffPolicyPG updates as often per env step as Reinforce, which waits for every env's episode.
    rollout = (
        r"Both use 12 episodes per update; offpolicy_pg_matched updates every (\d+) steps per env, matching the (\d+) "
        r"steps per update of a pilot reinforce_fixed_policy run."
    )
    train_freq, pilot_steps = matched_throughput(tmp_path, "offpolicy_pg_matched", "reinforce_fixed_policy", 12, rollout)
    assert train_freq == round(pilot_steps / 12) and pilot_steps > 12 * 22


def test_throughput_matches_a2c_rollout_to_offpolicy_pg_steps_per_update(tmp_path: Path) -> None:
    rollout = r"a2c uses n_steps=(\d+), matching the (\d+) steps per update of a pilot offpolicy_pg_matched_a2c run."
    n_steps, pilot_steps = matched_throughput(tmp_path, "offpolicy_pg_matched_a2c", "a2c", 2, rollout)
    # 10 episodes of a fixed random CartPole-v1 policy, about 22 steps each.
    assert n_steps == round(pilot_steps / 2) and pilot_steps > 10 * 15


def test_phase_timer_restores_what_it_wrapped() -> None:
    model = A2C("MlpPolicy", "CartPole-v1", n_steps=5, seed=0)
    timer = throughput.PhaseTimer()
    model.learn(50, callback=timer)
    assert timer.seconds["env step"] > 0 and timer.seconds["acting"] > 0 and timer.n_rollouts == 10
    assert "train" not in model.__dict__ and "forward" not in model.policy.__dict__
    assert collection.sample_actions.__module__ == collection.__name__


def test_stop_at_threshold_evaluates_with_the_training_normalisation() -> None:
    env = make_env("CartPole-v1", 2, 0, {"norm_obs": True, "norm_reward": False})
    eval_env = make_env("CartPole-v1", 1, 1, {"norm_obs": True, "norm_reward": False}, training=False)
    assert isinstance(env, VecNormalize) and isinstance(eval_env, VecNormalize)
    model = A2C("MlpPolicy", env, n_steps=5, seed=0)
    # Unreachable threshold: every evaluation happens, the last one after 200 steps of training statistics.
    model.learn(total_timesteps=200, callback=StopAtThreshold(eval_env, 100, 1, threshold=1e9))
    assert eval_env.obs_rms.count > 100
    np.testing.assert_allclose(eval_env.obs_rms.mean, env.obs_rms.mean)


def test_optimal_baseline_variance_table(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    harness("benchmarks.optimal_baseline_variance", "--episodes", "4", "--batches", "3", "--out", str(out))
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "| 4 |" in line]
    assert len(rows) == 6
    for row in rows:
        optimal, exact_time, exact_value, none, *cosines, norm_ratio = (float(cell) for cell in row.strip("|").split("|")[2:])
        assert min(optimal, exact_time, exact_value, none, norm_ratio) > 0 and all(-1 <= cosine <= 1 for cosine in cosines)


def test_variance_table(tmp_path: Path) -> None:
    argv = ["benchmarks.variance_table", "--envs", "CartPole-v1", "--train-steps", "300", "--batches", "2"]
    harness(*argv, "--episodes", "2", "3", "--out", str(tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert (
        "## CartPole-v1, reinforce, initial policy" in text and "## CartPole-v1, reinforce, after 300 training steps" in text
    )
    rows = [line for line in text.splitlines() if line.startswith(("| 2 |", "| 3 |"))]
    assert len(rows) == 4
    for row in rows:
        cells = [float(cell) for cell in row.strip("|").split("|")[1:]]
        # The batch mean's own relative variance is 1 by construction.
        assert len(cells) == 10 and cells[2] == 1 and all(cell > 0 for cell in cells)


def test_episodic_analogue_sets_its_episodes_on_envs_without_an_entry() -> None:
    # On an env that no YAML entry covers, the Reinforce analogue still has episodes per update to match.
    for name in ("offpolicy_pg_matched", "reinforce_fixed_policy"):
        kwargs = resolve(ALGOS[name], "MountainCar-v0").model_kwargs
        assert throughput.episodes_per_update(kwargs) is not None, name


def test_sb3_entries_fall_back_to_rl_zoo3s_entry_for_an_earlier_env_version() -> None:
    # rl-zoo3 tunes PPO on Hopper-v4; the matrix runs Hopper-v5 with that entry, and says so.
    config = resolve(ALGOS["ppo"], "Hopper-v5")
    assert config.source == "ppo.yml (Hopper-v4 entry)"
    assert config.model_kwargs["n_steps"] == 512 and config.model_kwargs["gamma"] == 0.999
    assert resolve(ALGOS["ppo"], "CartPole-v1").source == "ppo.yml"
    assert resolve(ALGOS["reinforce"], "Hopper-v5").source == "reinforce.yml"
    assert resolve(ALGOS["reinforce"], "Swimmer-v5").source == "registry"


@pytest.mark.parametrize("n_runs", [3, 4, 5, 10])
def test_curve_iqm_is_rliables_iqm_per_column(n_runs: int) -> None:
    scores = np.random.default_rng(n_runs).normal(size=(n_runs, 2, 6))
    point, interval = report.iqm_interval(scores, reps=50)
    np.testing.assert_allclose(point, [metrics.aggregate_iqm(scores[..., t]) for t in range(6)])
    assert interval.shape == (2, 6) and np.all(interval[0] <= interval[1])


def test_report_intervals_are_reproducible_and_leave_numpys_generator_alone() -> None:
    scores = np.random.default_rng(0).normal(size=(5, 1, 4))
    np.random.seed(1)
    _, first = report.iqm_interval(scores, reps=200)
    after_first = np.random.random()
    np.random.seed(1)
    _, second = report.iqm_interval(scores, reps=200)
    np.testing.assert_array_equal(first, second)
    assert np.random.random() == after_first == np.random.RandomState(1).random_sample()


def test_matrix_compares_algorithms_at_one_budget_per_env() -> None:
    def seeds(algo: str, env_id: str, n_seeds: int = report.MIN_RUNS) -> list[dict]:
        return [fake_run(algo, env_id, seed, 1.0) for seed in range(n_seeds)]

    # On env A three algorithms share 200k and one has moved on to 1M: A is compared at 200k, without the 1M runs.
    # On env C two algorithms have begun a 1M sweep with fewer seeds than MIN_RUNS: C stays at 200k.
    groups = {
        ("A", "a2c", 200_000): seeds("a2c", "A"),
        ("A", "nstep_ac", 200_000): seeds("nstep_ac", "A"),
        ("A", "ppo", 200_000): seeds("ppo", "A"),
        ("A", "ppo", 1_000_000): seeds("ppo", "A"),
        ("B", "ppo", 1_000_000): seeds("ppo", "B"),
        ("B", "a2c", 200_000): seeds("a2c", "B"),
        ("B", "nstep_ac_online", 200_000): seeds("nstep_ac_online", "B"),
        ("C", "a2c", 200_000): seeds("a2c", "C"),
        ("C", "a2c", 1_000_000): seeds("a2c", "C", report.MIN_RUNS - 1),
        ("C", "ppo", 1_000_000): seeds("ppo", "C", 1),
        ("C", "reinforce", 200_000): seeds("reinforce", "C", report.MIN_RUNS - 1),
    }
    runs = report.matrix_groups(groups)
    # On B the tie (one compared algorithm at each budget) goes to the larger budget; variants are not compared.
    # On C an algorithm short of MIN_RUNS seeds at the chosen budget is left out too.
    assert runs == {
        ("A", "a2c"): groups["A", "a2c", 200_000],
        ("A", "nstep_ac"): groups["A", "nstep_ac", 200_000],
        ("A", "ppo"): groups["A", "ppo", 200_000],
        ("B", "ppo"): groups["B", "ppo", 1_000_000],
        ("C", "a2c"): groups["C", "a2c", 200_000],
    }


@pytest.mark.parametrize("env_id", ["CartPole-v1", "LunarLander-v3", "Pendulum-v1"])
def test_defaults_entries_build_what_a_user_gets_first(env_id: str) -> None:
    for name in ("reinforce", "nstep_ac", "ppo_kl", "offpolicy_pg", "ppo", "a2c"):
        config = resolve(ALGOS[f"{name}_defaults"], env_id)
        assert (config.n_envs, config.policy, config.model_kwargs, config.normalize_kwargs) == (1, "MlpPolicy", {}, None)
        assert config.algo_class is ALGOS[name].load_class()


def test_run_variant_with_a_tuple_override_is_found_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    results.mkdir()
    # A recorded variant whose override was a tuple: the JSON record holds a list.
    record = {"algo": "offpolicy_pg:freq", "env": "CartPole-v1", "seed": 0, "timesteps": 500}
    record["overrides"] = {"train_freq": [2, "episode"]}
    (results / "runs.jsonl").write_text(json.dumps(record) + "\n")
    argv = ["--algos", "offpolicy_pg", "--envs", "CartPole-v1", "--seeds", "0", "--timesteps", "500", "--jobs", "1"]
    run.main([*argv, "--results", str(results), "--label", "freq", "--set", "train_freq=(2, 'episode')"])
    assert "1 of 1 runs already" in capsys.readouterr().out


def test_throughput_analogue_takes_our_network_epochs_and_minibatch() -> None:
    ours = {"n_steps": 2048, "n_epochs": 10, "batch_size": 64, "kl_target": 0.01}
    zoo_ppo = {"n_steps": 512, "n_epochs": 20, "batch_size": 32, "clip_range": 0.1, "policy_kwargs": {"net_arch": [256]}}
    matched = throughput.matched_work(ours, zoo_ppo)
    # The default network, as ours; the PPO arguments ours does not have are kept.
    assert matched == {"n_steps": 512, "n_epochs": 10, "batch_size": 64, "clip_range": 0.1}
    with_network = throughput.matched_work({**ours, "policy_kwargs": {"net_arch": [64, 64]}}, zoo_ppo)
    assert with_network["policy_kwargs"] == {"net_arch": [64, 64]}
    # An A2C analogue has no epochs or minibatches to take.
    assert throughput.matched_work({"batch_size": 10}, {"n_steps": 5}) == {"n_steps": 5}
