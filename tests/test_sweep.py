"""Workers sharing a benchmark sweep through the real PostgreSQL server: each cell runs once, a dead worker's again."""

import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from benchmarks.results import append_records, load_records, run_key
from benchmarks.sweep import CELL, RECORD_ATTR, WORKER_ATTR, export_records, open_sweep, work
from sb3_pgnotes.zoo.optimize import open_storage

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a worker is given to finish.
WORKER_TIMEOUT = 240


def start_worker(
    storage: str, study_name: str, results: Path, timesteps: int, seeds: str, jobs: int = 1
) -> subprocess.Popen[bytes]:
    """:return: ``benchmarks.run`` with ``jobs`` workers on a grid of A2C and PPO on CartPole-v1, one-second heartbeats."""
    argv = ["--algos", "a2c", "ppo", "--envs", "CartPole-v1", "--seeds", *seeds.split(), "--timesteps", str(timesteps)]
    argv += ["--eval-freq", str(timesteps), "--eval-episodes", "1", "--jobs", str(jobs), "--results", str(results)]
    argv += ["--storage", storage, "--study-name", study_name, "--heartbeat-interval", "1"]
    log = results.with_suffix(".log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "benchmarks.run", *argv], cwd=ROOT, stdout=log, stderr=log)


def finish(worker: subprocess.Popen[bytes], results: Path) -> None:
    assert worker.wait(timeout=WORKER_TIMEOUT) == 0, results.with_suffix(".log").read_text()


def study_trials(storage: str, study_name: str) -> list[FrozenTrial]:
    """:return: The sweep's trials, [] while it does not exist."""
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials
    except KeyError:
        return []


def completed_cells(trials: list[FrozenTrial]) -> Counter[str]:
    """:return: How many COMPLETE trials each cell has."""
    return Counter(trial.params[CELL] for trial in trials if trial.state == TrialState.COMPLETE)


def test_two_workers_run_each_cell_once(postgres: str, tmp_path: Path) -> None:
    results = [tmp_path / "a", tmp_path / "b"]
    # Three workers: two in the first command's process pool, one in the second command.
    workers = [
        start_worker(postgres, "shared", folder, 300, "0 1", jobs) for folder, jobs in zip(results, (2, 1), strict=True)
    ]
    for worker, folder in zip(workers, results, strict=True):
        finish(worker, folder)
    trials = study_trials(postgres, "shared")
    cells = completed_cells(trials)
    assert len(cells) == 4 and set(cells.values()) == {1}
    # Every trial either ran a cell or was a spare that found none left.
    assert {trial.state for trial in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(
        trial.user_attrs[WORKER_ATTR].startswith(socket.gethostname())
        for trial in trials
        if trial.state == TrialState.COMPLETE
    )
    # Each worker's results file ends with the whole sweep, each cell once.
    run = {run_key(trial.user_attrs[RECORD_ATTR]) for trial in trials if trial.state == TrialState.COMPLETE}
    for folder in results:
        keys = [run_key(record) for record in load_records(folder)]
        assert len(keys) == 4 and set(keys) == run


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_killed_workers_cell_runs_again_in_another(postgres: str, tmp_path: Path) -> None:
    victim_results, survivor_results = tmp_path / "victim", tmp_path / "survivor"
    victim = start_worker(postgres, "killed", victim_results, 10_000, "0")

    def running_cell() -> list[FrozenTrial]:
        assert victim.poll() is None, victim_results.with_suffix(".log").read_text()
        trials = study_trials(postgres, "killed")
        return [trial for trial in trials if trial.state == TrialState.RUNNING and WORKER_ATTR in trial.user_attrs]

    deadline = time.monotonic() + WORKER_TIMEOUT
    while not running_cell():
        assert time.monotonic() < deadline, "the victim never started a cell"
        time.sleep(0.2)
    (killed,) = running_cell()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = start_worker(postgres, "killed", survivor_results, 10_000, "0")
    finish(survivor, survivor_results)

    trials = study_trials(postgres, "killed")
    assert trials[killed.number].state == TrialState.FAIL
    (retry,) = [trial for trial in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert completed_cells(trials) == {"a2c|CartPole-v1|0|10000": 1, "ppo|CartPole-v1|0|10000": 1}
    assert len(load_records(survivor_results)) == 2


def test_sweep_queues_only_the_cells_missing_from_the_results_file(tmp_path: Path) -> None:
    # In one process on SQLite: what the creator's results file already holds is neither queued nor exported twice.
    tasks = [{"algo": "a2c", "env": "CartPole-v1", "seed": seed, "timesteps": 100} for seed in range(3)]
    done = {**tasks[0], "eval_mean": [1.0]}
    append_records(tmp_path, [done])
    pending = [task for task in tasks if run_key(task) != run_key(done)]
    study = open_sweep(f"sqlite:///{tmp_path / 'sweep.db'}", "resume", pending, heartbeat_interval=1)
    ran: list[int] = []

    def run_one(task: dict[str, Any]) -> dict[str, Any]:
        ran.append(task["seed"])
        return {**task, "eval_mean": [float(task["seed"])]}

    assert work(study, run_one, str, heartbeat_interval=1) == 0
    assert sorted(ran) == [1, 2]
    assert export_records(study, tmp_path) == 2
    assert export_records(study, tmp_path) == 0
    assert sorted(record["seed"] for record in load_records(tmp_path)) == [0, 1, 2]
    # A rerun's records replace the file's (appended; the latest of a cell is the one read), never repeated.
    assert export_records(study, tmp_path, replace=True) == 0
    rerun = open_sweep(f"sqlite:///{tmp_path / 'rerun.db'}", "rerun", tasks[:1], heartbeat_interval=1)
    assert work(rerun, lambda task: {**task, "eval_mean": [9.0]}, str, heartbeat_interval=1) == 0
    assert export_records(rerun, tmp_path) == 0
    assert export_records(rerun, tmp_path, replace=True) == 1
    assert export_records(rerun, tmp_path, replace=True) == 0
    assert load_records(tmp_path)[-1]["eval_mean"] == [9.0]


def test_a_study_of_another_sweep_is_refused_not_joined(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    task = {"algo": "a2c", "env": "CartPole-v1", "seed": 0, "timesteps": 100}
    open_sweep(storage, "benchmarks", [task], heartbeat_interval=1)
    open_sweep(storage, "benchmarks", [task], heartbeat_interval=1)  # the same sweep: joined
    with pytest.raises(ValueError, match=r"holds another sweep: 1 of this command's cells .*own --study-name"):
        open_sweep(storage, "benchmarks", [{**task, "seed": 1}], heartbeat_interval=1)


def test_a_results_file_cut_short_by_a_killed_run_stays_readable(tmp_path: Path) -> None:
    append_records(tmp_path, [{"algo": "a2c", "seed": 0}, {"algo": "a2c", "seed": 1}])
    path = tmp_path / "runs.jsonl"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="line 2 is cut short"):
        assert load_records(tmp_path) == [{"algo": "a2c", "seed": 0}]
    # The next append drops it rather than extend it.
    with pytest.warns(UserWarning, match="dropping its last line, cut short"):
        append_records(tmp_path, [{"algo": "a2c", "seed": 2}])
    assert [record["seed"] for record in load_records(tmp_path)] == [0, 2]
    path.write_text('{"seed": 0}\n{broken\n{"seed": 1}\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON record"):
        load_records(tmp_path)
