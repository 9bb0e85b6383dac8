"""Hyperparameter search with ``train -optimize``: one study per algorithm and environment, on one machine or many.

rl-zoo3 runs the search; this module fixes what goes wrong when a search is stopped, resumed or shared:

- **Embedded default storage.** Without ``--storage``, the study lives in an SQLite file under the log folder,
  ``<log-folder>/<algo>/<study-name>.db``, and the study name defaults to ``<algo>_<env>``, so running the same
  command again resumes the search. ``--storage postgresql://...`` shares one study between workers.
- **Dead workers.** With a database storage the workers send a heartbeat (``--heartbeat-interval``); a trial whose
  worker stopped sending it is marked FAIL and retried once by another worker. ``--max-total-trials`` counts
  finished (COMPLETE or PRUNED) trials: a worker whose last trial would be the one too many waits for the trials
  still running instead of stopping early, and picks up their retry if their worker died. The count and the
  creation of the next trial happen under one lock (on PostgreSQL, an advisory lock), so that two workers finishing
  together cannot both take the last place.
- **Distinct proposals.** Each worker seeds its Optuna sampler from ``--seed`` and the number of trials already in
  the study, and, on a shared database, from a random worker token too, so that workers given the same seed do not
  propose the same trials; a search on the embedded storage stays reproducible.
- **Trial loading.** ``--trial-id N`` loads trial number N, 0 included (upstream ignores it), and
  ``--trial-id best`` the best trial, from the same storage and study name as the search.
- **Results.** After a search, the best trial is written as a ready-to-paste entry of an rl-zoo3 hyperparameter
  file, with the optimisation history and parameter importances as PNG files.
"""

import argparse
import functools
import hashlib
import os
import re
import socket
import sys
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pprint import pprint
from typing import Any, Literal
from unittest import mock

import optuna
import rl_zoo3.exp_manager
import sqlalchemy.engine
import sqlalchemy.exc
import yaml
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER
from sb3_pgnotes.zoo.registry import check_schedule_strings

#: Seconds between two heartbeats of a running trial; a trial without one for twice as long is marked FAIL.
DEFAULT_HEARTBEAT_INTERVAL = 60
#: How many times a trial whose worker died is run again, with the same parameters.
MAX_RETRIES = 1
#: Trial states that count against ``--max-total-trials``.
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
#: Attempts at opening a database storage: workers that start together race to create Optuna's tables.
OPEN_ATTEMPTS = 5
#: Seconds to wait for a PostgreSQL server to answer.
CONNECT_TIMEOUT = 5

#: A ``--trial-id`` value: a trial number, or the best trial.
TrialChoice = int | Literal["best"]


def parse_trial_choice(value: str) -> TrialChoice:
    """
    The value of ``--trial-id``.

    :param value: a trial number (0 or more) or ``best``
    :return: the trial number, or ``"best"``
    """
    if value == "best":
        return "best"
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a trial number (0, 1, ...) or 'best', got {value!r}")
    return int(value)


def default_study_name(algo: str, env_id: str) -> str:
    """
    :param algo: zoo name of the algorithm
    :param env_id: environment id
    :return: ``<algo>_<env>``, with characters other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``
    """
    return re.sub(r"[^\w.-]", "_", f"{algo}_{env_id}")


def is_shared_storage(storage: str) -> bool:
    """
    :param storage: an Optuna storage URL or journal file path
    :return: whether the storage is a database server that workers on several machines can share
    """
    return not (storage.startswith("sqlite:") or storage.endswith(".log"))


@dataclass(frozen=True)
class StudyOptions:
    """
    Where the study of a ``train`` run is and how its workers behave.

    :param storage: Optuna storage: a database URL (``sqlite:///...``, ``postgresql://...``) or a ``.log`` journal file
    :param study_name: the study's name in the storage
    :param trial: with ``--trial-id``, the trial whose hyperparameters ``train`` uses
    :param heartbeat_interval: seconds between the heartbeats of a running trial (database storages only)
    """

    storage: str
    study_name: str
    trial: TrialChoice | None = None
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL


def study_arguments(args: Sequence[str]) -> tuple[list[str], StudyOptions | None]:
    """
    Read the study options of a ``train`` command and rewrite its arguments for rl-zoo3.

    ``--trial-id`` and ``--heartbeat-interval`` are ours: they are taken out. With ``-optimize`` or ``--trial-id``,
    ``--storage`` (default: the embedded SQLite file) and ``--study-name`` (default: ``<algo>_<env>``) are set.

    :param args: the ``train`` arguments
    :return: the arguments for rl-zoo3's ``train``, and the study options (None without ``-optimize`` or ``--trial-id``)
    """
    parser = argparse.ArgumentParser(prog="sb3-pgnotes train", add_help=False, allow_abbrev=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--log-folder", default="logs")
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    parser.add_argument("--storage")
    parser.add_argument("--study-name")
    ours = argparse.ArgumentParser(prog="sb3-pgnotes train", add_help=False, allow_abbrev=False)
    ours.add_argument("--trial-id", type=parse_trial_choice)
    ours.add_argument("--heartbeat-interval", type=int, default=DEFAULT_HEARTBEAT_INTERVAL)
    # rl-zoo3 would take an abbreviation (--optimize, --stor, ...) that these parsers do not see: the study would
    # then go elsewhere, or our defaults override the user's. Ask for the full name instead.
    full_names = [name for p in (parser, ours) for action in p._actions for name in action.option_strings]
    for arg in args:
        option = arg.split("=", 1)[0]
        abbreviated = [name for name in full_names if name.startswith("--") and name.startswith(option) and name != option]
        if option.startswith("--") and len(option) > 2 and abbreviated and option not in full_names:
            parser.error(f"write {option} in full ({' or '.join(abbreviated)}): the study options are read unabbreviated")
    known, _ = parser.parse_known_args(args)
    own, zoo_args = ours.parse_known_args(args)
    if own.heartbeat_interval < 1:
        ours.error("--heartbeat-interval must be at least 1 second")
    if known.optimize_hyperparameters and own.trial_id is not None:
        ours.error("--trial-id trains with a finished search's trial: run it after -optimize, not with it")
    if not known.optimize_hyperparameters and own.trial_id is None:
        return zoo_args, None
    study_name = known.study_name or default_study_name(known.algo, known.env)
    storage = known.storage
    if storage is None:
        storage = "sqlite:///" + os.path.abspath(os.path.join(known.log_folder, known.algo, f"{study_name}.db"))
        zoo_args += ["--storage", storage]
    if known.study_name is None:
        zoo_args += ["--study-name", study_name]
    return zoo_args, StudyOptions(storage, study_name, own.trial_id, own.heartbeat_interval)


def open_storage(url: str, heartbeat_interval: int | None = None) -> BaseStorage:
    """
    Open an Optuna storage, creating the folder of a local file.

    A database storage gets the heartbeat and the retry of stale trials when ``heartbeat_interval`` is given; a
    ``.log`` journal file has no heartbeat.

    :param url: a database URL or the path of a ``.log`` journal file
    :param heartbeat_interval: seconds between the heartbeats of a running trial, None for no heartbeat
    :return: the storage
    """
    if url.endswith(".log"):
        os.makedirs(os.path.dirname(os.path.abspath(url)), exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))), exist_ok=True)
    try:
        location = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise ValueError(
            f"--storage {url!r} is not a database URL (sqlite:///FILE, postgresql://USER@HOST:PORT/DB, ...) nor a "
            ".log journal file"
        ) from error
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            return _rdb_storage(url, heartbeat_interval)
        except sqlalchemy.exc.NoSuchModuleError as error:
            raise ValueError(
                f"--storage {url!r}: unknown database scheme {location.drivername!r}; use sqlite:///FILE, "
                "postgresql://USER@HOST:PORT/DB (the distributed extra) or a .log journal file"
            ) from error
        except sqlalchemy.exc.OperationalError as error:
            if location.host is not None and _unreachable(error):
                raise ValueError(
                    f"--storage: cannot reach the database server at {location.host}:{location.port or 'default port'} "
                    f"(one try, {CONNECT_TIMEOUT} s connection timeout): {str(error.orig).strip().splitlines()[0]}"
                ) from error
            if attempt == OPEN_ATTEMPTS:
                raise
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == OPEN_ATTEMPTS:
                raise
        # Another worker was creating the tables at the same moment.
        time.sleep(attempt)
    raise AssertionError("unreachable")


def _unreachable(error: sqlalchemy.exc.OperationalError) -> bool:
    """:return: Whether the error says that no server answered (as opposed to a busy or locked database)"""
    text = str(error.orig).lower()
    return any(
        phrase in text for phrase in ("connection refused", "timeout", "timed out", "could not translate host", "no route")
    )


def _rdb_storage(url: str, heartbeat_interval: int | None) -> RDBStorage:
    """
    :param url: a database URL; ``postgresql://`` uses psycopg 3 (the ``distributed`` extra), whatever SQLAlchemy's
        default driver
    :param heartbeat_interval: seconds between the heartbeats of a running trial, None for no heartbeat
    :return: the database storage, with the retry of stale trials when it has a heartbeat
    """
    engine_kwargs = {}
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    with warnings.catch_warnings():
        # The heartbeat and the retry callback are marked experimental.
        warnings.simplefilter("ignore", ExperimentalWarning)
        if heartbeat_interval is None:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        return RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, heartbeat_stale_trial_callback=retry
        )


def load_study(options: StudyOptions) -> optuna.Study:
    """
    :param options: the study's storage and name
    :return: the study, without sampler state (for reading its trials)
    """
    if options.storage.startswith("sqlite:///") and not os.path.exists(options.storage.removeprefix("sqlite:///")):
        raise ValueError(
            f"no study file {options.storage.removeprefix('sqlite:///')}: run train -optimize first, or give --storage"
        )
    storage = open_storage(options.storage)
    try:
        return optuna.load_study(study_name=options.study_name, storage=storage)
    except KeyError as e:
        raise ValueError(f"no study {options.study_name!r} in {options.storage}") from e


def select_trial(study: optuna.Study, choice: TrialChoice) -> FrozenTrial:
    """
    :param study: the study
    :param choice: a trial number or ``"best"``
    :return: the chosen trial (its parameters are what is loaded, whatever its state)
    """
    if choice == "best":
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise ValueError(f"study {study.study_name!r} has no completed trial yet, so no best one")
        return study.best_trial
    for trial in study.get_trials(deepcopy=False):
        if trial.number == choice:
            return trial
    raise ValueError(f"study {study.study_name!r} has no trial number {choice} (it has {len(study.trials)} trials)")


def worker_sampler_seed(seed: int, n_existing_trials: int, worker_token: str = "") -> int:
    """
    The seed of one worker's Optuna sampler.

    A new study searched by one worker uses ``seed`` itself. A worker joining a study that has trials, or given a
    worker token, gets another seed, so that it does not propose the trials already proposed by another worker
    (or by itself, before a restart) with the same ``seed``.

    :param seed: the ``--seed`` of the run
    :param n_existing_trials: number of trials in the study when the worker joins it
    :param worker_token: a token unique to the worker, empty for a reproducible search
    :return: a seed in ``[0, 2**32)``
    """
    if n_existing_trials == 0 and not worker_token:
        return seed
    digest = hashlib.sha256(f"{seed}/{n_existing_trials}/{worker_token}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def count_trials(storage: BaseStorage, study_name: str) -> int:
    """
    :param storage: an Optuna storage
    :param study_name: a study name
    :return: number of trials of the study in the storage, 0 when there is no such study
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


class NextTrialLock:
    """
    Held from a worker's decision to start another trial until that trial exists in the study.

    Between :class:`FinishedTrialsCap`'s count and ``study.ask()`` creating the next trial, another worker counting
    would not see that trial yet, and both would take the last free place under the cap. The lock makes the count
    and the creation one step: a thread of this process at a time (a ``threading.Lock``) and, on PostgreSQL, a
    process at a time (a session advisory lock keyed by the study name; the server frees it if the worker dies).

    :param storage: the storage of the study
    :param study_name: the study's name
    """

    def __init__(self, storage: BaseStorage, study_name: str) -> None:
        self._thread_lock = threading.Lock()
        self._holder: int | None = None
        self._key = int.from_bytes(hashlib.sha256(f"sb3_pgnotes/{study_name}".encode()).digest()[:8], "little", signed=True)
        engine = storage.engine if isinstance(storage, RDBStorage) else None
        self._engine = engine if engine is not None and engine.dialect.name == "postgresql" else None
        # A connection only while the lock is held: one kept open through hours of training could be dropped.
        self._connection: sqlalchemy.engine.Connection | None = None

    def acquire(self) -> None:
        """Wait for the lock, unless this thread holds it already."""
        if self._holder == threading.get_ident():
            return
        self._thread_lock.acquire()
        if self._engine is not None:
            self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
        self._holder = threading.get_ident()

    def release(self) -> None:
        """Free the lock if this thread holds it."""
        if self._holder != threading.get_ident():
            return
        self._holder = None
        if self._connection is not None:
            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            self._connection.close()
            self._connection = None
        self._thread_lock.release()

    def guarded(self, ask: Callable[..., optuna.Trial]) -> Callable[..., optuna.Trial]:
        """
        :param ask: ``optuna.Study.ask``
        :return: ``ask`` that creates its trial under the lock and frees the lock once the trial exists
        """

        @functools.wraps(ask)
        def ask_under_lock(*args: Any, **kwargs: Any) -> optuna.Trial:
            self.acquire()
            try:
                return ask(*args, **kwargs)
            finally:
                self.release()

        return ask_under_lock


class FinishedTrialsCap:
    """
    Stop a worker once ``n_trials`` trials of the study are COMPLETE or PRUNED.

    Used in place of Optuna's ``MaxTrialsCallback``, which rl-zoo3 makes count RUNNING trials too, so that workers
    do not run more trials than the cap; a worker that died then leaves its RUNNING trial counted forever. This
    callback fails stale trials first (their retry is queued), and while the cap would be reached by the trials
    still running, waits for them rather than stop: they may fail, and their retry needs a worker. Without a
    heartbeat (a journal file storage) no trial is ever stale, and the running ones are counted, as rl-zoo3 does.

    The decision to go on is taken under ``next_trial_lock``, which stays held until the next trial is created.

    :param n_trials: number of finished trials to reach
    :param states: ignored, part of ``MaxTrialsCallback``'s signature that rl-zoo3 calls
    :param heartbeat_interval: the storage's heartbeat interval in seconds, None when it has no heartbeat
    :param next_trial_lock: the lock that the study's ``ask`` frees; None when a single thread uses the study
    """

    def __init__(
        self,
        n_trials: int,
        states: Sequence[TrialState] | None = None,
        heartbeat_interval: int | None = None,
        next_trial_lock: NextTrialLock | None = None,
    ) -> None:
        self.n_trials = n_trials
        self.heartbeat_interval = heartbeat_interval
        self.next_trial_lock = next_trial_lock

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """
        :param study: the study
        :param trial: the trial this worker just finished
        """
        while True:
            if self.next_trial_lock is not None:
                self.next_trial_lock.acquire()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                fail_stale_trials(study)
            # One read for both counts: between two reads a trial could finish and be counted in neither.
            trial_states = [trial.state for trial in study.get_trials(deepcopy=False)]
            n_finished = sum(state in FINISHED_STATES for state in trial_states)
            n_running = trial_states.count(TrialState.RUNNING)
            if n_finished + n_running < self.n_trials:
                return
            if self.next_trial_lock is not None:
                self.next_trial_lock.release()
            if n_finished >= self.n_trials or self.heartbeat_interval is None:
                study.stop()
                return
            time.sleep(self.heartbeat_interval)


def _python_expression(value: Any) -> str:
    """
    :param value: a ``policy_kwargs`` value: dicts, lists, tuples, numbers, strings and ``torch.nn`` classes
    :return: Python source that rl-zoo3 evaluates back to the value (``nn`` is ``torch.nn`` there)
    """
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{key}={_python_expression(item)}" for key, item in value.items()) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_python_expression(item) for item in value) + "]"
    if isinstance(value, type) and value.__module__.startswith("torch.nn"):
        return f"nn.{value.__name__}"
    return repr(value)


def best_trial_entry(
    env_id: str,
    fixed: dict[str, Any],
    converter: Callable[[dict[str, Any]], dict[str, Any]],
    trial: FrozenTrial,
    study_name: str,
) -> str:
    """
    The hyperparameters of a trial as one entry of an rl-zoo3 hyperparameter file.

    :param env_id: the environment id, the entry's key
    :param fixed: the hyperparameters common to all trials (the entry the search started from)
    :param converter: the algorithm's converter from raw trial parameters to constructor arguments
    :param trial: the trial
    :param study_name: the name of the trial's study, for the heading comment
    :return: YAML text, headed by a comment naming the trial
    """
    hyperparams = {**fixed, **converter(trial.params)}
    if isinstance(hyperparams.get("policy_kwargs"), dict):
        hyperparams["policy_kwargs"] = _python_expression(hyperparams["policy_kwargs"])
    # The zoo's own keys first, as in the packaged files, then the algorithm's arguments by name.
    first = [key for key in ("n_envs", "n_timesteps", "policy") if key in hyperparams]
    entry = {key: hyperparams[key] for key in first + sorted(set(hyperparams) - set(first))}
    header = f"# Trial {trial.number} of study {study_name!r}: mean evaluation reward {trial.value}\n"
    return header + yaml.safe_dump({env_id: entry}, sort_keys=False)


def save_study_plots(study: optuna.Study, prefix: str) -> dict[str, str | None]:
    """
    Draw the optimisation history and the parameter importances of a study as PNG files.

    :param study: the study
    :param prefix: path prefix of the files: ``<prefix>_history.png`` and ``<prefix>_importances.png``
    :return: the path of each plot by its title, None where the study cannot give it (e.g. importances need two
        finished trials with different values)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    plots: dict[str, str | None] = {}
    charts: list[tuple[str, Callable[[optuna.Study], Any], str]] = [
        ("Optimization history", plot_optimization_history, "history"),
        ("Parameter importances", plot_param_importances, "importances"),
    ]
    for title, plot, suffix in charts:
        path = f"{prefix}_{suffix}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            plots[title] = None
            continue
        axes.figure.savefig(path, bbox_inches="tight")
        plt.close(axes.figure)
        plots[title] = path
    return plots


class StudyExperimentManager(ExperimentManager):
    """
    rl-zoo3's experiment manager with the study handling of this module.

    :param args: rl-zoo3's ``ExperimentManager`` arguments
    :param study_options: the study of the run, None when ``train`` neither optimises nor loads a trial
    :param kwargs: rl-zoo3's ``ExperimentManager`` keyword arguments
    """

    def __init__(self, *args: Any, study_options: StudyOptions | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.study_options = study_options
        self._search_start_entry: dict[str, Any] = {}
        self._sampler_seed = self.seed

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> Any:
        # rl-zoo3 would fail on a bad schedule string without naming the key.
        check_schedule_strings(hyperparams)
        return super()._preprocess_hyperparams(hyperparams)

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        rl-zoo3's, with the ``--trial-id`` trial (a number or ``best``) loaded over the file's entry.

        :return: the hyperparameters, and the sorted copy that is saved with the run
        """
        hyperparams, saved_hyperparams = super().read_hyperparameters()
        options = self.study_options
        if options is not None and options.trial is not None:
            try:
                trial = select_trial(load_study(options), options.trial)
            except ValueError as e:
                # No such study or trial, or no completed trial to be the best: a usage error, not a crash.
                sys.exit(f"sb3-pgnotes train: error: --trial-id {options.trial}: {e}")
            print(f"Loading trial {trial.number} of study {options.study_name!r} (value {trial.value}) from {options.storage}")
            hyperparams.update(HYPERPARAMS_CONVERTER[self.algo](trial.params))
            # Command line hyperparameters (-params) still win.
            hyperparams.update(self.custom_hyperparams or {})
            saved_hyperparams = OrderedDict((key, hyperparams[key]) for key in sorted(hyperparams))
            print("Hyperparameters with the trial's:")
            pprint(saved_hyperparams)
        self._search_start_entry = dict(saved_hyperparams)
        return hyperparams, saved_hyperparams

    def _create_sampler(self, sampler_method: str) -> BaseSampler:
        """
        rl-zoo3's sampler, seeded with this worker's seed (:func:`worker_sampler_seed`).

        :param sampler_method: ``random``, ``tpe`` or ``auto``
        :return: the sampler
        """
        run_seed, self.seed = self.seed, self._sampler_seed
        try:
            return super()._create_sampler(sampler_method)
        finally:
            self.seed = run_seed

    def objective(self, trial: optuna.Trial) -> float:
        """
        rl-zoo3's objective, with the worker (``host:pid``) that runs the trial recorded as its ``worker`` attribute.

        :param trial: the trial
        :return: the trial's last mean evaluation reward
        """
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return super().objective(trial)

    def hyperparameters_optimization(self) -> None:
        """rl-zoo3's search on the study's storage (heartbeat, retries, finished-trial cap), then :meth:`report_study`."""
        options = self.study_options
        assert options is not None, "train -optimize is given its study options by study_arguments()"
        storage = open_storage(options.storage, options.heartbeat_interval)
        n_existing = count_trials(storage, options.study_name)
        worker_token = uuid.uuid4().hex if is_shared_storage(options.storage) else ""
        self._sampler_seed = worker_sampler_seed(self.seed, n_existing, worker_token)
        print(
            f"Study {options.study_name!r} in {options.storage}: {n_existing} trials so far, sampler seed {self._sampler_seed}"
        )
        plots = not self.no_optim_plots
        # rl-zoo3's own plots are interactive plotly figures; ours are PNG files.
        self.no_optim_plots = True
        with self._on_storage(storage, options.study_name):
            super().hyperparameters_optimization()
        self.report_study(load_study(options), plots)

    @contextmanager
    def _on_storage(self, storage: BaseStorage, study_name: str) -> Iterator[None]:
        """
        While rl-zoo3 searches: its study is created on ``storage``, stale trials are failed at once,
        ``MaxTrialsCallback`` is :class:`FinishedTrialsCap`, and trials are created under a :class:`NextTrialLock`.

        :param storage: the opened storage of the study
        :param study_name: the study's name
        """
        create_study = optuna.create_study
        heartbeat = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
        next_trial_lock = NextTrialLock(storage, study_name)

        def create_study_on_storage(*args: Any, **kwargs: Any) -> optuna.Study:
            study = create_study(*args, **{**kwargs, "storage": storage})
            if self.n_jobs == 1:
                # rl-zoo3 counts the trials before the first one: the same race as between two trials.
                next_trial_lock.acquire()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                fail_stale_trials(study)
            return study

        cap = functools.partial(FinishedTrialsCap, heartbeat_interval=heartbeat, next_trial_lock=next_trial_lock)
        try:
            with (
                mock.patch.object(rl_zoo3.exp_manager.optuna, "create_study", create_study_on_storage),
                mock.patch.object(rl_zoo3.exp_manager, "MaxTrialsCallback", cap),
                # On the class: rl-zoo3 pickles the study, which an instance attribute would prevent.
                mock.patch.object(optuna.Study, "ask", next_trial_lock.guarded(optuna.Study.ask)),
            ):
                yield
        finally:
            next_trial_lock.release()

    def report_study(self, study: optuna.Study, plots: bool = True) -> None:
        """
        Write the best trial as a hyperparameter file entry, and the study's plots, next to the study; print the paths.

        :param study: the study
        :param plots: whether to draw the PNG plots
        """
        folder = os.path.join(self.log_folder, self.algo)
        os.makedirs(folder, exist_ok=True)
        prefix = os.path.join(folder, study.study_name)
        n_finished = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
        print(f"Study {study.study_name!r}: {n_finished} finished trials, {len(study.trials)} in all")
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            print("Best trial: none, no trial completed")
            return
        best = study.best_trial
        yaml_path = f"{prefix}_best.yml"
        with open(yaml_path, "w") as file:
            file.write(
                best_trial_entry(
                    self.env_name.gym_id, self._search_start_entry, HYPERPARAMS_CONVERTER[self.algo], best, study.study_name
                )
            )
        print(f"Best trial: {best.number}, value {best.value}")
        print(f"Best hyperparameters (rl-zoo3 YAML entry): {yaml_path}")
        if plots:
            for title, path in save_study_plots(study, prefix).items():
                print(f"{title}: {path or 'none, the study has too few finished trials'}")
