"""Tune REINFORCE with several Optuna workers sharing one study in PostgreSQL.

Each worker is the package's ``train -optimize`` command (rl-zoo3's search with our search spaces); with a
``postgresql://`` storage they share the study, send heartbeats, and retry the trial of a worker that died
(docs/optuna.md). Start the same command on other machines to add workers there. Needs the ``distributed`` extra.

    python examples/tune_postgres.py --storage postgresql://user@host:5432/optuna --workers 2 --trials 20
"""

import argparse
import subprocess
import sys
import tempfile

import optuna

from sb3_pgnotes.zoo.optimize import open_storage


def main() -> None:
    """Start the workers, wait for them, and print the best trial."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--study-name", default="reinforce_cartpole")
    parser.add_argument("--workers", type=int, default=2, help="worker processes on this machine")
    parser.add_argument("--trials", type=int, default=20, help="trials in the whole study, all workers together")
    parser.add_argument("--timesteps", type=int, default=20_000, help="environment steps per trial")
    parser.add_argument("--log-folder", default=tempfile.mkdtemp(prefix="tune_"), help="where each trial's logs go")
    args = parser.parse_args()

    command = [sys.executable, "-m", "sb3_pgnotes", "train", "--algo", "reinforce", "--env", "CartPole-v1"]
    command += ["-optimize", "-n", str(args.timesteps), "--max-total-trials", str(args.trials)]
    command += ["--storage", args.storage, "--study-name", args.study_name, "--sampler", "tpe", "--pruner", "median"]
    command += ["--n-evaluations", "2", "--eval-episodes", "5", "--num-threads", "1", "-f", args.log_folder]
    workers = [subprocess.Popen(command) for _ in range(args.workers)]
    failed = [worker.args for worker in workers if worker.wait() != 0]
    if failed:
        sys.exit(f"{len(failed)} worker(s) failed")

    study = optuna.load_study(study_name=args.study_name, storage=open_storage(args.storage))
    best = study.best_trial
    print(f"{len(study.trials)} trials; best #{best.number}: value {best.value:.1f}, parameters {best.params}")


if __name__ == "__main__":
    main()
