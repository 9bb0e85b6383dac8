"""``train -optimize``: the embedded study, PostgreSQL workers sharing one study, dead workers, trial loading."""

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import pytest
import torch
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from sb3_pgnotes.zoo.cli import main
from sb3_pgnotes.zoo.optimize import (
    DEFAULT_HEARTBEAT_INTERVAL,
    FinishedTrialsCap,
    NextTrialLock,
    StudyOptions,
    best_trial_entry,
    open_storage,
    parse_trial_choice,
    select_trial,
    study_arguments,
    worker_sampler_seed,
)
from sb3_pgnotes.zoo.samplers import convert_reinforce_params

#: A search made of short trials: a few hundred steps of REINFORCE on CartPole-v1, one evaluation of two episodes.
SEARCH = [
    "train",
    "--algo",
    "reinforce",
    "--env",
    "CartPole-v1",
    "--seed",
    "0",
    "-optimize",
    "--n-evaluations",
    "1",
    "--eval-episodes",
    "2",
    "--sampler",
    "random",
    "--pruner",
    "none",
    "--num-threads",
    "1",
    "--heartbeat-interval",
    "1",
]
#: Seconds a worker process is given to finish.
WORKER_TIMEOUT = 240


def start_worker(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """
    Start ``python -m sb3_pgnotes`` in its own process.

    :param args: the script and its arguments
    :param log: file that receives the process's output
    :return: the process
    """
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "sb3_pgnotes", *args], stdout=out, stderr=subprocess.STDOUT)


def finish(worker: subprocess.Popen[bytes], log: Path) -> None:
    """
    Wait for a worker and check that it succeeded.

    :param worker: the worker process
    :param log: its output file
    """
    assert worker.wait(timeout=WORKER_TIMEOUT) == 0, log.read_text()


def trials(storage: str, study_name: str) -> list[FrozenTrial]:
    """
    :param storage: the storage URL
    :param study_name: the study name
    :return: the study's trials, [] while the study does not exist
    """
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials
    except KeyError:
        return []


def wait_for(condition: str, check: Callable[[], bool], timeout: float = WORKER_TIMEOUT) -> None:
    """
    Poll until a condition holds.

    :param condition: what is waited for, for the failure message
    :param check: returns whether the condition holds
    :param timeout: seconds before the test fails
    """
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.2)


def states(study_trials: list[FrozenTrial]) -> list[TrialState]:
    """
    :param study_trials: trials
    :return: their states
    """
    return [trial.state for trial in study_trials]


def n_finished(study_trials: list[FrozenTrial]) -> int:
    """
    :param study_trials: trials
    :return: how many are COMPLETE or PRUNED
    """
    return sum(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states(study_trials))


def latest_run(logs: Path) -> Path:
    """
    :param logs: a log folder
    :return: the newest folder of a REINFORCE run on CartPole-v1 in it
    """
    return max((logs / "reinforce").glob("CartPole-v1_*"), key=lambda path: int(path.name.split("_")[-1]))


def test_study_arguments(tmp_path: Path) -> None:
    args = ["--algo", "reinforce", "--env", "CartPole-v1", "-f", str(tmp_path), "-n", "100"]
    assert study_arguments(args) == (args, None)
    zoo_args, options = study_arguments([*args, "-optimize", "--heartbeat-interval", "5", "--seed", "-1"])
    storage = f"sqlite:///{tmp_path / 'reinforce' / 'reinforce_CartPole-v1.db'}"
    assert zoo_args == [*args, "-optimize", "--seed", "-1", "--storage", storage, "--study-name", "reinforce_CartPole-v1"]
    assert options == StudyOptions(storage, "reinforce_CartPole-v1", None, 5)
    # --trial-id is ours (0 included, and best); a given storage and study name are kept.
    for value, trial in [("0", 0), ("12", 12), ("best", "best")]:
        given = [*args, "--storage", "postgresql://host/db", "--study-name", "s", "--trial-id", value]
        zoo_args, options = study_arguments(given)
        assert zoo_args == given[:-2]
        assert options == StudyOptions("postgresql://host/db", "s", trial, DEFAULT_HEARTBEAT_INTERVAL)
    assert parse_trial_choice("0") == 0
    with pytest.raises(SystemExit):
        study_arguments([*args, "--trial-id", "-1"])
    with pytest.raises(SystemExit):
        study_arguments([*args, "-optimize", "--trial-id", "best"])
    # rl-zoo3 accepts abbreviations; unseen here, they would send the study elsewhere.
    for abbreviation in ("--optimize", "--stor=postgresql://host/db", "--study", "--log-fold", "--trial"):
        with pytest.raises(SystemExit):
            study_arguments([*args, "-optimize", abbreviation])


def test_worker_sampler_seed() -> None:
    # A new study with one worker is reproducible; a restart, or another worker, proposes other trials.
    assert worker_sampler_seed(7, 0) == 7
    assert worker_sampler_seed(7, 3) == worker_sampler_seed(7, 3) != worker_sampler_seed(7, 4)
    assert len({worker_sampler_seed(7, 0, token) for token in ("a", "b", "c")}) == 3
    assert all(0 <= worker_sampler_seed(seed, 5) < 2**32 for seed in range(20))


def test_best_trial_entry() -> None:
    params = {
        "learning_rate": 0.001,
        "n_episodes": 4,
        "one_minus_gamma": 0.01,
        "reward_to_go": True,
        "baseline": "mean",
        "ent_coef": 1e-5,
        "net_arch": "small",
        "activation_fn": "relu",
        "normalize_advantage": True,
    }
    distributions = {
        name: FloatDistribution(1e-9, 1.0) if isinstance(value, float) else CategoricalDistribution([value])
        for name, value in params.items()
    }
    trial = optuna.trial.create_trial(params=params, distributions=distributions, value=321.5)
    fixed = {"n_envs": 1, "n_timesteps": 200000.0, "policy": "MlpPolicy", "n_critic_updates": 10}
    text = best_trial_entry("CartPole-v1", fixed, convert_reinforce_params, trial, "study")
    assert text.startswith("# Trial -1 of study 'study': mean evaluation reward 321.5\n")
    (entry,) = yaml.safe_load(text).values()
    assert list(entry)[:3] == ["n_envs", "n_timesteps", "policy"]
    expected = {**fixed, **convert_reinforce_params(params)}
    # rl-zoo3 evaluates policy_kwargs with torch.nn as nn.
    entry["policy_kwargs"] = eval(entry["policy_kwargs"], {"nn": torch.nn})
    assert entry == expected


def test_embedded_study_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    search = [*SEARCH, "-n", "1000", "-f", str(logs), "--max-total-trials", "4"]
    storage = f"sqlite:///{logs / 'reinforce' / 'reinforce_CartPole-v1.db'}"
    study_name = "reinforce_CartPole-v1"

    # A search killed after its first trial...
    first = start_worker(*search, log=tmp_path / "first.log")
    wait_for("a first finished trial", lambda: n_finished(trials(storage, study_name)) >= 1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = [trial for trial in trials(storage, study_name) if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 1 <= len(before) < 4

    # ... resumes: the same command keeps the finished trials and runs the others.
    main([*search, "--no-optim-plots"])
    after = trials(storage, study_name)
    assert n_finished(after) == 4
    assert TrialState.RUNNING not in states(after)
    for trial in before:
        assert (after[trial.number].state, after[trial.number].params) == (trial.state, trial.params)
    finished_params = [trial.params for trial in after if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len({tuple(sorted(params.items())) for params in finished_params}) == len(finished_params)
    out = capsys.readouterr().out
    best_yaml = logs / "reinforce" / f"{study_name}_best.yml"
    assert f"Best hyperparameters (rl-zoo3 YAML entry): {best_yaml}" in out
    assert "Optimization history" not in out

    # The exported entry is a hyperparameter file that train reads.
    main(["train", "--algo", "reinforce", "--env", "CartPole-v1", "-n", "200", "-f", str(logs), "--conf-file", str(best_yaml)])
    assert f"Saved model: {latest_run(logs) / 'CartPole-v1.zip'}" in capsys.readouterr().out

    # --trial-id 0 and --trial-id best load from the same embedded study.
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    for choice, trial in [("0", study.trials[0]), ("best", study.best_trial)]:
        main(["train", "--algo", "reinforce", "--env", "CartPole-v1", "-n", "200", "-f", str(logs), "--trial-id", choice])
        assert f"Loading trial {trial.number} of study '{study_name}'" in capsys.readouterr().out
        config = dict(yaml.unsafe_load((latest_run(logs) / "CartPole-v1" / "config.yml").read_text()))
        assert config["learning_rate"] == trial.params["learning_rate"]
    with pytest.raises(SystemExit, match="--trial-id 99: study 'reinforce_CartPole-v1' has no trial number 99"):
        main(["train", "--algo", "reinforce", "--env", "CartPole-v1", "-f", str(logs), "--trial-id", "99"])
    with pytest.raises(SystemExit, match="--trial-id best: no study file"):
        main(["train", "--algo", "reinforce", "--env", "CartPole-v1", "-f", str(tmp_path / "empty"), "--trial-id", "best"])


# Importances over three trials come with optuna's warnings about too few trials per value.
@pytest.mark.filterwarnings("ignore:Some regimes for parameter")
def test_search_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([*SEARCH, "-n", "300", "-f", str(tmp_path), "--n-trials", "3"])
    out = capsys.readouterr().out
    for title, suffix in [("Optimization history", "history"), ("Parameter importances", "importances")]:
        png = tmp_path / "reinforce" / f"reinforce_CartPole-v1_{suffix}.png"
        assert f"{title}: {png}" in out
        assert png.read_bytes().startswith(b"\x89PNG")


def test_postgres_workers_share_a_study(postgres: str, tmp_path: Path) -> None:
    # Two workers given the same seed: the study ends with exactly the cap and no parameter set twice.
    search = [*SEARCH, "-n", "500", "--storage", postgres, "--study-name", "shared", "--max-total-trials", "4"]
    workers = [
        (start_worker(*search, "-f", str(tmp_path / name), log=tmp_path / f"{name}.log"), tmp_path / f"{name}.log")
        for name in "ab"
    ]
    for worker, log in workers:
        finish(worker, log)
    study_trials = trials(postgres, "shared")
    # No trial failed (a PRUNED one, a NaN in training, counts as finished).
    seen = [(trial.number, trial.state.name, trial.user_attrs.get("worker")) for trial in study_trials]
    assert n_finished(study_trials) == len(study_trials) == 4, seen
    assert len({tuple(sorted(trial.params.items())) for trial in study_trials}) == 4
    assert {trial.user_attrs["worker"].split(":")[1] for trial in study_trials} <= {str(worker.pid) for worker, _ in workers}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_postgres_killed_worker(postgres: str, tmp_path: Path) -> None:
    # A worker killed mid-trial: its trial becomes FAIL, is retried by the other worker, and the cap is still reached.
    search = [*SEARCH, "-n", "4000", "--storage", postgres, "--study-name", "killed", "--max-total-trials", "4"]
    survivor_log, victim_log = tmp_path / "survivor.log", tmp_path / "victim.log"
    survivor = start_worker(*search, "-f", str(tmp_path / "survivor"), log=survivor_log)
    victim = start_worker(*search, "-f", str(tmp_path / "victim"), log=victim_log)

    def victim_trial() -> list[FrozenTrial]:
        # Both workers started, and the victim in a trial: the one it is killed in.
        assert survivor.poll() is None and victim.poll() is None, survivor_log.read_text() + victim_log.read_text()
        study_trials = trials(postgres, "killed")
        workers = {trial.user_attrs.get("worker", "").split(":")[-1] for trial in study_trials}
        if str(survivor.pid) not in workers:
            return []
        return [
            trial
            for trial in study_trials
            # A trial just created has no worker attribute yet.
            if trial.state == TrialState.RUNNING and trial.user_attrs.get("worker", "").endswith(f":{victim.pid}")
        ]

    wait_for("a trial of each worker", lambda: bool(victim_trial()))
    (killed,) = victim_trial()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(survivor, survivor_log)

    study_trials = trials(postgres, "killed")
    assert n_finished(study_trials) == 4
    assert study_trials[killed.number].state == TrialState.FAIL
    assert TrialState.RUNNING not in states(study_trials)
    (retry,) = [
        trial for trial in study_trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) == killed.number
    ]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    # The retry reuses every parameter the killed trial had drawn. Compared with the stored trial, not the snapshot
    # taken before the kill: a trial is seen RUNNING while its sampler is still drawing parameters.
    failed = study_trials[killed.number]
    assert failed.params and failed.params.items() <= retry.params.items()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_postgres_workers_tpe_pruning_restart(postgres: str, tmp_path: Path) -> None:
    # rl-zoo3's default sampler and pruner, three workers, one killed mid-trial and started again with the same command.
    search = [*SEARCH, "-n", "3000", "--storage", postgres, "--study-name", "tpe", "--max-total-trials", "10"]
    search += ["--sampler", "tpe", "--pruner", "median", "--n-startup-trials", "2", "--n-evaluations", "4"]
    logs = [tmp_path / f"{name}.log" for name in ("a", "b", "c", "c_again")]
    workers = [start_worker(*search, "-f", str(tmp_path / log.stem), log=log) for log in logs[:3]]

    def running_in_last_worker() -> bool:
        return any(
            trial.state == TrialState.RUNNING and trial.user_attrs.get("worker", "").endswith(f":{workers[2].pid}")
            for trial in trials(postgres, "tpe")
        )

    wait_for("a trial of the third worker", running_in_last_worker)
    workers[2].send_signal(signal.SIGKILL)
    workers[2].wait()
    workers[2] = start_worker(*search, "-f", str(tmp_path / "c_again"), log=logs[3])
    for worker, log in zip(workers, [logs[0], logs[1], logs[3]], strict=True):
        finish(worker, log)

    study_trials = trials(postgres, "tpe")
    finished = [trial for trial in study_trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 10
    assert TrialState.FAIL in states(study_trials)
    assert TrialState.RUNNING not in states(study_trials)
    assert len({tuple(sorted(trial.params.items())) for trial in finished}) == 10


def test_next_trial_lock_excludes_other_workers_until_the_trial_exists(postgres: str) -> None:
    # Two locks on one PostgreSQL study stand for two worker processes: each has its own database session.
    storage = open_storage(postgres)
    study = optuna.create_study(storage=storage, study_name="locked")
    mine, theirs = NextTrialLock(storage, "locked"), NextTrialLock(storage, "locked")
    cap = FinishedTrialsCap(2, next_trial_lock=mine)
    study.tell(study.ask(), 1.0)
    cap(study, study.trials[0])  # one finished of two: go on, holding the lock until the next trial exists

    def count_in_the_other_worker() -> None:
        theirs.acquire()
        theirs.release()

    other_worker = threading.Thread(target=count_in_the_other_worker)
    other_worker.start()
    other_worker.join(timeout=1.0)
    assert other_worker.is_alive(), "the other worker counted trials while this one was deciding"
    with mock.patch.object(optuna.Study, "ask", mine.guarded(optuna.Study.ask)):
        trial = study.ask()
    other_worker.join(timeout=5.0)
    assert not other_worker.is_alive()
    # By the time the other worker counts, the new trial is in the study, RUNNING.
    assert study.trials[trial.number].state == TrialState.RUNNING


def test_cap_counts_finished_and_running_trials_in_one_read() -> None:
    # Three finished trials and one running, cap 4: the running trial finishes just after a read of the study
    # (another worker's). Counted from two reads it would be in neither count, and a fifth trial would start.
    study = optuna.create_study()
    for _ in range(3):
        study.tell(study.ask(), 1.0)
    running = study.ask()
    read_trials = study.get_trials

    def read_then_other_worker_finishes(*args: Any, **kwargs: Any) -> list[FrozenTrial]:
        study_trials = read_trials(*args, **kwargs)
        if study._storage.get_trial(running._trial_id).state == TrialState.RUNNING:
            study.tell(running, 2.0)
        return study_trials

    with (
        mock.patch.object(study, "get_trials", read_then_other_worker_finishes),
        mock.patch.object(study, "stop") as stop,
    ):
        FinishedTrialsCap(4, heartbeat_interval=0)(study, read_trials()[2])
    stop.assert_called_once()


def test_best_trial_of_a_study_without_a_completed_one_is_explained() -> None:
    study = optuna.create_study(study_name="failing")
    study.tell(study.ask(), state=TrialState.FAIL)
    with pytest.raises(ValueError, match="study 'failing' has no completed trial yet, so no best one"):
        select_trial(study, "best")
    assert select_trial(study, 0).state == TrialState.FAIL  # its parameters can still be loaded
