"""
Share one sweep of runs between worker processes on several machines through an Optuna study.

The study holds one trial per cell (algorithm x env x seed x budget). The first worker to create the study adds every
cell that its own results file does not already hold as a WAITING trial; every worker then takes waiting trials one at
a time, and Optuna hands each waiting trial to exactly one worker. A running trial sends heartbeats; when a worker dies,
its trial goes stale, is marked FAIL by the next worker that looks, and Optuna's retry callback queues the same cell
again. Each finished run's record is kept in its trial, and every worker, once nothing is left, appends the records its
results file lacks, so any machine ends with the whole sweep.

Example, one command per machine: ``python -m benchmarks.run --algos a2c ppo --envs CartPole-v1 --timesteps 20000
--storage postgresql://user@host/db --study-name matrix``.
"""

import os
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from benchmarks.results import RunKey, append_records, load_records, run_key
from sb3_pgnotes.zoo.optimize import open_storage

Task = dict[str, Any]
#: The trial parameter naming a trial's cell.
CELL = "cell"
#: Study attributes: the tasks by cell key, and the flag set once every cell is queued.
TASKS_ATTR, READY_ATTR = "tasks", "grid_ready"
#: Trial attributes: the worker running it (host:pid) and the finished run's record.
WORKER_ATTR, RECORD_ATTR = "worker", "record"
#: Seconds a joining worker waits for the study's creator to queue every cell.
READY_TIMEOUT = 600


def cell_key(task: Task) -> str:
    """:return: The text form of a task's ``(algo, env, seed, timesteps)`` identity."""
    return "|".join(map(str, run_key(task)))


def open_sweep(storage: str, study_name: str, tasks: list[Task], heartbeat_interval: int) -> optuna.Study:
    """
    Create the study with a WAITING trial per task, or join it once its creator has queued every cell.

    :param storage: A database URL (``postgresql://...``, ``sqlite:///...``).
    :param study_name: The sweep's study name.
    :param tasks: The cells still to run, as this worker sees them; a worker that joins runs the creator's cells.
    :param heartbeat_interval: Seconds between the heartbeats of a running cell.
    :return: The study.
    """
    database = open_storage(storage, heartbeat_interval)
    by_key = {cell_key(task): task for task in tasks}
    try:
        study = optuna.create_study(study_name=study_name, storage=database)
    except DuplicatedStudyError:
        study = join_sweep(storage, study_name, heartbeat_interval)
        foreign = [key for key in by_key if key not in study.user_attrs[TASKS_ATTR]]
        if foreign:
            raise ValueError(
                f"study {study_name!r} holds another sweep: {len(foreign)} of this command's cells are not in it "
                f"(e.g. {foreign[0]}). Give this sweep its own --study-name"
            ) from None
        return study
    study.set_user_attr(TASKS_ATTR, by_key)
    if by_key:
        distribution = CategoricalDistribution(list(by_key))
        for key in by_key:
            cell = optuna.trial.create_trial(state=TrialState.WAITING, params={CELL: key}, distributions={CELL: distribution})
            study.add_trial(cell)
    study.set_user_attr(READY_ATTR, True)
    return study


def join_sweep(storage: str, study_name: str, heartbeat_interval: int) -> optuna.Study:
    """
    :param storage: A database URL.
    :param study_name: The sweep's study name.
    :param heartbeat_interval: Seconds between the heartbeats of a running cell.
    :return: The existing study, once its creator has queued every cell.
    """
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, heartbeat_interval))
    deadline = time.monotonic() + READY_TIMEOUT
    while READY_ATTR not in study.user_attrs:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"study {study_name!r} exists, but its creator has not queued its cells after {READY_TIMEOUT} s: if "
                f"it died, delete the study (optuna delete-study --storage URL --study-name {study_name}) and start again"
            )
        time.sleep(1)
    return study


def work(
    study: optuna.Study,
    run_one: Callable[[Task], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
    heartbeat_interval: int,
) -> int:
    """
    Run waiting cells until none is waiting or running.

    :param study: The sweep's study.
    :param run_one: Runs a task and returns its record.
    :param describe: One line on a finished record.
    :param heartbeat_interval: Seconds between the heartbeats of a running cell, also the wait for a dead worker's.
    :return: How many cells failed with an error in this worker.
    """
    tasks: dict[str, Task] = study.user_attrs[TASKS_ATTR]
    failures = 0

    def objective(trial: optuna.Trial) -> float:
        if CELL not in trial.params:
            # Another worker took the last waiting cell between our look and our ask: this trial is a spare.
            raise optuna.TrialPruned("no cell left")
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        record = run_one(tasks[trial.params[CELL]])
        trial.set_user_attr(RECORD_ATTR, record)
        print(describe(record), flush=True)
        return float(record["eval_mean"][-1])

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            fail_stale_trials(study)
        trial_states = [trial.state for trial in study.get_trials(deepcopy=False)]
        if TrialState.WAITING not in trial_states:
            if TrialState.RUNNING not in trial_states:
                return failures
            # A running cell may belong to a dead worker; wait until its heartbeat goes stale and it is queued again.
            time.sleep(heartbeat_interval)
            continue
        try:
            study.optimize(objective, n_trials=1)
        except Exception:
            failures += 1
            print(f"FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)


def export_records(study: optuna.Study, results: Path, replace: bool = False) -> int:
    """
    Append the study's finished records that the results file lacks.

    :param study: The sweep's study.
    :param results: The results folder.
    :param replace: Also append a record whose cell the file already holds with another record (a rerun: the latest
        record of a cell is the one read); identical records are never repeated.
    :return: How many records were appended.
    """
    existing = load_records(results)
    known = {run_key(record) for record in existing}
    new: dict[RunKey, dict] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = trial.user_attrs[RECORD_ATTR]
        if (replace or run_key(record) not in known) and record not in existing:
            new.setdefault(run_key(record), record)
    append_records(results, list(new.values()))
    return len(new)
