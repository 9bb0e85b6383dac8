"""``python -m sb3_pgnotes <script>`` / ``sb3-pgnotes <script>``: the rl-zoo3 scripts with our algorithms.

The scripts are rl-zoo3's own. Before one runs, the sb3-pgnotes algorithms are added to the zoo's registries,
and ``train`` reads our packaged ``hyperparams/<algo>.yml`` unless ``--conf-file`` is given. The zoo scripts
that start other zoo scripts in a subprocess (``record_training``, ``benchmark``) are pointed at this command
instead, so that the child process knows our algorithms too. After a normal ``train`` run, a learning-curve
PNG is written next to the model and the paths of the results are printed. ``train -optimize`` and
``--trial-id`` keep their study as :mod:`sb3_pgnotes.zoo.optimize` describes.
"""

import argparse
import functools
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any
from unittest import mock

import rl_zoo3.train
import rl_zoo3.utils
from rl_zoo3.enjoy import enjoy
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.plots import all_plots, plot_from_file, plot_train
from rl_zoo3.utils import ALGOS

from sb3_pgnotes.diagnostics.cli import main as variance
from sb3_pgnotes.zoo.optimize import StudyExperimentManager, StudyOptions, study_arguments
from sb3_pgnotes.zoo.plotting import plot_learning_curve
from sb3_pgnotes.zoo.registry import ZOO_ALGORITHMS, hyperparams_path, register_algorithms

PROG = "sb3-pgnotes"

#: Scripts that take ``--algo``.
ALGO_SCRIPTS = ("train", "enjoy", "record_video", "record_training")
#: Scripts that load a trained model.
MODEL_SCRIPTS = ("enjoy", "record_video", "record_training")

#: Commands the upstream scripts start in a subprocess, and the script of ours that replaces each.
UPSTREAM_COMMANDS: dict[tuple[str, ...], str] = {
    ("python", "-m", "rl_zoo3.record_video"): "record_video",
    ("python", "enjoy.py"): "enjoy",
}


def rewrite_command(command: Sequence[str]) -> list[str]:
    """
    Point a command started by an upstream zoo script at this package's command line.

    :param command: the command as the zoo script wrote it
    :return: ``[sys.executable, "-m", "sb3_pgnotes", <script>, ...]`` for a zoo script, else the command unchanged
    """
    for prefix, script in UPSTREAM_COMMANDS.items():
        if tuple(command[: len(prefix)]) == prefix:
            return [sys.executable, "-m", "sb3_pgnotes", script, *command[len(prefix) :]]
    return list(command)


def _call_rewritten(call: Callable[..., int], command: Sequence[str], *args: Any, **kwargs: Any) -> int:
    """
    :func:`subprocess.call` with the command rewritten by :func:`rewrite_command`.

    :param call: the original :func:`subprocess.call`
    :param command: the command
    :return: the return code of the command
    """
    return call(rewrite_command(command), *args, **kwargs)


def _run_module(module: str) -> Callable[[], None]:
    """
    A script runner for a zoo module whose work is under ``if __name__ == "__main__"``.

    While it runs, :func:`subprocess.call` is rewritten so the zoo scripts it starts are ours.

    :param module: the module to run
    :return: the runner
    """

    def run() -> None:
        with mock.patch.object(subprocess, "call", functools.partial(_call_rewritten, subprocess.call)):
            runpy.run_module(module, run_name="__main__")

    return run


def _report_run(manager: ExperimentManager) -> None:
    """
    Write the learning curve of a finished ``train`` run and print where its results are.

    :param manager: the zoo's experiment manager of the run
    """
    save_path = manager.save_path
    png_path = os.path.join(save_path, "learning_curve.png")
    has_curve = plot_learning_curve(save_path, png_path, title=f"{manager.algo} on {manager.env_name}")
    best_model = os.path.join(save_path, "best_model.zip")
    print(f"Saved model: {os.path.join(save_path, f'{manager.env_name}.zip')}")
    if os.path.exists(best_model):
        print(f"Best model: {best_model}")
    if has_curve:
        print(f"Learning curve: {png_path}")
    else:
        print("Learning curve: none, no training episode finished")


def train(study_options: StudyOptions | None = None) -> None:
    """
    rl-zoo3's ``train`` with our study handling, followed by :func:`_report_run` unless it optimised hyperparameters.

    :param study_options: the study of ``-optimize`` or ``--trial-id``, from :func:`~sb3_pgnotes.zoo.optimize.study_arguments`
    """
    managers: list[ExperimentManager] = []

    class RecordingExperimentManager(StudyExperimentManager):
        """Our experiment manager, remembered so its run folder is known after training."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, study_options=study_options, **kwargs)
            managers.append(self)

        def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> Any:
            try:
                return super().create_envs(n_envs, eval_env, no_log)
            except TypeError as error:
                # Raised by the env's constructor; setup_experiment would blame the hyperparameters.
                raise ValueError(f"--env-kwargs {self.env_kwargs} for {self.env_name}: {error}") from error

        def setup_experiment(self) -> Any:
            try:
                return super().setup_experiment()
            except TypeError as error:
                # A hyperparameter the constructor does not take, or of a type it cannot use.
                raise ValueError(f"the hyperparameters of {self.algo} on {self.env_name}: {error}") from error

    with mock.patch.object(rl_zoo3.train, "ExperimentManager", RecordingExperimentManager):
        rl_zoo3.train.train()
    for manager in managers:
        if not manager.optimize_hyperparameters:
            _report_run(manager)


def record_training() -> None:
    """rl-zoo3's ``record_training``, which joins its videos with the ``ffmpeg`` program, checked for first."""
    if shutil.which("ffmpeg") is None:
        sys.exit(f"{PROG} record_training: error: the ffmpeg program is not on PATH (Debian/Ubuntu: apt-get install ffmpeg)")
    _run_module("rl_zoo3.record_training")()


#: The scripts this command runs, by name.
SCRIPTS: dict[str, Callable[[], None]] = {
    "train": train,
    "enjoy": enjoy,
    "plot_train": plot_train,
    "all_plots": all_plots,
    "plot_from_file": plot_from_file,
    "record_video": _run_module("rl_zoo3.record_video"),
    "record_training": record_training,
    "benchmark": _run_module("rl_zoo3.benchmark"),
    # Ours, not the zoo's: compare the variance of policy-gradient estimators on one policy.
    "variance": variance,
}

USAGE = f"""usage: {PROG} SCRIPT [ARGS ...]

Run an rl-zoo3 script with the sb3-pgnotes algorithms ({", ".join(ZOO_ALGORITHMS)}) available.

scripts: {", ".join(SCRIPTS)}

`{PROG} SCRIPT --help` shows the options of a script. With one of our algorithms, `train` reads the
packaged hyperparams/<algo>.yml unless --conf-file is given. `train -optimize` keeps its Optuna study in
<log-folder>/<algo>/<algo>_<env>.db unless --storage is given; `train` also takes --trial-id N|best (the
hyperparameters of a trial of that study) and --heartbeat-interval SECONDS (of running trials, default 60).
"""


def script_arguments(script: str, args: list[str], stack: ExitStack) -> list[str]:
    """
    Check ``--algo`` and give ``train`` our packaged hyperparameter file when it needs one.

    :param script: the script name
    :param args: the script's arguments
    :param stack: keeps the hyperparameter file's path valid until the script has run
    :return: the script's arguments, with ``--conf-file`` added where it was defaulted
    """
    if script not in ALGO_SCRIPTS:
        return args
    parser = argparse.ArgumentParser(prog=f"{PROG} {script}", usage=argparse.SUPPRESS, add_help=False)
    parser.add_argument("--algo")
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1)
    known, _ = parser.parse_known_args(args)
    for item in known.hyperparams:
        check_hyperparameter_item(parser, item)
    # rl-zoo3's train silently runs the file's whole budget for any -n <= 0; -1 is its "not given".
    if script == "train" and known.n_timesteps < 1 and known.n_timesteps != -1:
        parser.error(f"-n/--n-timesteps must be >= 1 (leave it out for the file's n_timesteps); got {known.n_timesteps}")
    is_yaml = known.conf_file is not None and known.conf_file.endswith((".yml", ".yaml"))
    if is_yaml and not Path(known.conf_file).is_file():
        parser.error(f"--conf-file {known.conf_file}: no such file")
    if known.algo is not None and known.algo not in ALGOS:
        theirs = sorted(set(ALGOS) - set(ZOO_ALGORITHMS))
        parser.error(
            f"unknown algorithm {known.algo!r}. sb3-pgnotes algorithms: {', '.join(ZOO_ALGORITHMS)}; "
            f"rl-zoo3 algorithms: {', '.join(theirs)}"
        )
    if script == "train" and known.algo in ZOO_ALGORITHMS and known.conf_file is None:
        return [*args, "--conf-file", str(stack.enter_context(hyperparams_path(known.algo)))]
    return args


def check_hyperparameter_item(parser: argparse.ArgumentParser, item: str) -> None:
    """
    Check one ``-params KEY:VALUE`` item as rl-zoo3 will read it (VALUE is evaluated as a Python expression).

    :param parser: reports the error
    :param item: the item
    """
    key, separator, value = item.partition(":")
    if not separator or not key:
        parser.error(f"-params {item!r}: write KEY:VALUE, e.g. n_episodes:20 or baseline:\"'mean'\"")
    try:
        # As rl-zoo3's StoreDict evaluates it: in rl_zoo3.utils, where nn, th, sb3, gym and spaces are defined.
        evaluated = eval(value, vars(rl_zoo3.utils))
    except Exception as error:
        parser.error(
            f"-params {item!r}: {value!r} is not a Python value ({type(error).__name__}); "
            f"put a string in quotes, e.g. {key}:\"'{value}'\""
        )
    # rl-zoo3 builds the envs before any algorithm checks its arguments, and fails on these with a bare traceback.
    if key == "n_envs" and (isinstance(evaluated, bool) or not isinstance(evaluated, int) or evaluated < 1):
        parser.error(f"-params {item!r}: n_envs must be an integer >= 1")


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run one rl-zoo3 script with the sb3-pgnotes algorithms registered.

    :param argv: the script name and its arguments (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.exit(USAGE)
    if args[0] in ("-h", "--help"):
        print(USAGE)
        return
    script, script_args = args[0], args[1:]
    if script not in SCRIPTS:
        sys.exit(f"{PROG}: error: unknown script {script!r}, choose from: {', '.join(SCRIPTS)}")
    register_algorithms()
    run = SCRIPTS[script]
    if script == "train":
        script_args, study_options = study_arguments(script_args)
        run = functools.partial(train, study_options)
    # A user's mistake (a bad hyperparameter, an unknown env, no trained model, an unreachable storage) is reported in
    # one line; rl-zoo3 reports a missing run folder with an assertion.
    user_errors: tuple[type[Exception], ...] = (ValueError, AssertionError) if script in MODEL_SCRIPTS else (ValueError,)
    with ExitStack() as stack:
        script_args = script_arguments(script, script_args, stack)
        stack.enter_context(mock.patch.object(sys, "argv", [f"{PROG} {script}", *script_args]))
        try:
            run()
        except user_errors as error:
            sys.exit(f"{PROG} {script}: error: {error}")
