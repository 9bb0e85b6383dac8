"""
Run algorithms x envs x seeds at a fixed step budget and append one record per run to the results file.

Finished runs (same algo, env, seed and budget) are skipped, so an interrupted sweep resumes where it stopped.
Example: ``python -m benchmarks.run --algos a2c ppo --envs CartPole-v1 --seeds 0 1 --timesteps 20000``.

A variant of an entry: ``--set key=value`` (a Python literal, applied on top of the entry's hyperparameters, so
``n_envs`` and rl-zoo3's string form of ``policy_kwargs`` work too) with ``--label NAME``; its records are those of
the algorithm ``<entry>:NAME`` and keep the overrides, e.g.
``python -m benchmarks.run --algos nstep_ac_defaults --label n16 --set n_steps=16 --set target_n=16 ...``.

With ``--storage`` (a PostgreSQL URL), workers started with the same command on several machines share the sweep
through an Optuna study, each cell run once, a dead worker's cell run again by another (:mod:`benchmarks.sweep`).
"""

import argparse
import ast
import dataclasses
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize, sync_envs_normalization

from sb3_pgnotes.diagnostics.cli import int_at_least
from sb3_pgnotes.zoo.optimize import DEFAULT_HEARTBEAT_INTERVAL

from benchmarks import sweep
from benchmarks.registry import ALGOS, RunConfig, resolve
from benchmarks.results import append_records, load_records, run_in_pool, run_key

DEFAULT_RESULTS = Path("docs/benchmarks/results")
EVAL_SEED_OFFSET = 10_000


class EvalCurveCallback(BaseCallback):
    """
    Evaluate on a separate env at the start, every ``eval_freq`` env steps and at the end of training.

    Unlike SB3's ``EvalCallback`` the period is in env steps (not callback calls), so it does not depend on ``n_envs``,
    and the time spent evaluating is accumulated so throughput can exclude it.

    :param eval_env: Evaluation env, wrapped like the training env (normalisation stats are synced before each eval).
    :param eval_freq: Env steps between evaluations.
    :param n_eval_episodes: Episodes per evaluation.
    :param deterministic: Evaluate the deterministic (mode) policy.
    """

    def __init__(self, eval_env: VecEnv, eval_freq: int, n_eval_episodes: int, deterministic: bool) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.deterministic = deterministic
        self.timesteps: list[int] = []
        self.means: list[float] = []
        self.stds: list[float] = []
        #: Per evaluation, the seconds of training before it, evaluations excluded (time to reach a score).
        self.train_seconds: list[float] = []
        self.eval_time = 0.0
        self._next_eval = 0
        self._start = 0.0

    def _evaluate(self) -> None:
        """Evaluate the current policy and schedule the next evaluation."""
        start = time.perf_counter()
        self.train_seconds.append(start - self._start - self.eval_time)
        sync_envs_normalization(self.training_env, self.eval_env)
        returns, _ = evaluate_policy(
            self.model, self.eval_env, self.n_eval_episodes, deterministic=self.deterministic, return_episode_rewards=True
        )
        self.timesteps.append(self.model.num_timesteps)
        self.means.append(float(np.mean(returns)))
        self.stds.append(float(np.std(returns)))
        self._next_eval = (self.model.num_timesteps // self.eval_freq + 1) * self.eval_freq
        self.eval_time += time.perf_counter() - start

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._evaluate()

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next_eval:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.timesteps[-1] != self.model.num_timesteps:
            self._evaluate()


def make_env(
    env_id: str,
    n_envs: int,
    seed: int,
    normalize_kwargs: dict[str, Any] | None,
    training: bool = True,
    vec_env_cls: type[DummyVecEnv | SubprocVecEnv] = DummyVecEnv,
) -> VecEnv:
    """
    :param env_id: Gymnasium env id.
    :param n_envs: Number of envs.
    :param seed: Seed of the first env.
    :param normalize_kwargs: ``VecNormalize`` kwargs, or None for no normalisation.
    :param training: False for an eval env (frozen statistics, raw rewards).
    :param vec_env_cls: ``DummyVecEnv`` (one process) or ``SubprocVecEnv`` (one process per env).
    :return: The vectorised, Monitor-wrapped env.
    """
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=vec_env_cls)
    if normalize_kwargs is None:
        return env
    if not training:
        normalize_kwargs = {**normalize_kwargs, "training": False, "norm_reward": False}
    return VecNormalize(env, **normalize_kwargs)


def build_model(config: RunConfig, env: VecEnv, seed: int, device: str) -> BaseAlgorithm:
    """
    :param config: Resolved run configuration.
    :param env: Training env.
    :param seed: Model seed.
    :param device: Torch device.
    :return: The untrained model.
    """
    return config.algo_class(config.policy, env, seed=seed, device=device, verbose=0, **config.model_kwargs)


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """
    Train one algorithm on one env with one seed and record its evaluation curve and throughput.

    :param task: ``algo``, ``env``, ``seed``, ``timesteps``, ``eval_freq``, ``eval_episodes``, ``deterministic``, ``device``.
    :return: The run record.
    """
    th.set_num_threads(1)
    spec = ALGOS[task["algo"].partition(":")[0]]
    config = resolve(dataclasses.replace(spec, overrides={**spec.overrides, **task.get("overrides", {})}), task["env"])
    env = make_env(task["env"], config.n_envs, task["seed"], config.normalize_kwargs)
    eval_env = make_env(task["env"], 1, task["seed"] + EVAL_SEED_OFFSET, config.normalize_kwargs, training=False)
    model = build_model(config, env, task["seed"], task["device"])
    callback = EvalCurveCallback(eval_env, task["eval_freq"], task["eval_episodes"], task["deterministic"])
    start = time.perf_counter()
    model.learn(total_timesteps=task["timesteps"], callback=callback)
    wall_time = time.perf_counter() - start
    env.close()
    eval_env.close()
    return {
        **task,
        "n_envs": config.n_envs,
        "hyperparams_source": config.source,
        "hyperparams": {key: repr(value) for key, value in config.model_kwargs.items()},
        "normalize": config.normalize_kwargs,
        "env_steps": int(model.num_timesteps),
        "eval_timesteps": callback.timesteps,
        "eval_mean": callback.means,
        "eval_std": callback.stds,
        "eval_train_s": callback.train_seconds,
        "wall_time_s": wall_time,
        "eval_time_s": callback.eval_time,
        "steps_per_s": model.num_timesteps / (wall_time - callback.eval_time),
        "versions": {"torch": th.__version__, "stable_baselines3": stable_baselines3.__version__},
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def parse_override(text: str) -> tuple[str, Any]:
    """:return: ``(key, value)`` of a ``key=python-literal`` argument"""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, ast.literal_eval(value)


def shared_worker(storage: str, study_name: str, heartbeat_interval: int) -> int:
    """
    One worker of a sweep shared through a database (:mod:`benchmarks.sweep`).

    :return: How many of the cells it ran failed.
    """
    return sweep.work(sweep.join_sweep(storage, study_name, heartbeat_interval), run_one, _describe, heartbeat_interval)


def _describe(record: dict[str, Any]) -> str:
    """:return: A one-line progress summary of a finished run."""
    return (
        f"{record['algo']} {record['env']} seed={record['seed']}: final eval {record['eval_mean'][-1]:.1f}, "
        f"{record['steps_per_s']:.0f} steps/s, {record['wall_time_s']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``).
    :return: Exit code: 0 when every pending run finished, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", required=True, choices=sorted(ALGOS))
    parser.add_argument("--envs", nargs="+", required=True, help="Gymnasium env ids")
    parser.add_argument("--seeds", nargs="+", type=int_at_least(0), default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--timesteps", type=int_at_least(1), required=True, help="Env-step budget per run (overrides n_timesteps)"
    )
    parser.add_argument("--eval-freq", type=int_at_least(1), default=5000, help="Env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int_at_least(1), default=10)
    parser.add_argument("--stochastic-eval", action="store_true", help="Sample actions during evaluation")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="Results folder")
    parser.add_argument("--jobs", type=int_at_least(1), default=2, help="Parallel worker processes (1: run in this process)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", help="Name of the --set variant: its records are those of <algo>:<label>")
    parser.add_argument(
        "--rerun", action="store_true", help="Run recorded cells again (e.g. records that predate a field); the latest wins"
    )
    shared = parser.add_argument_group("workers sharing the sweep through a database (benchmarks.sweep)")
    shared.add_argument("--storage", help="database URL, e.g. postgresql://user@host:5432/db; --jobs workers here")
    shared.add_argument("--study-name", default="benchmarks", help="the sweep's study in --storage")
    shared.add_argument("--heartbeat-interval", type=int_at_least(1), default=DEFAULT_HEARTBEAT_INTERVAL, help="seconds")
    args = parser.parse_args(argv)
    if bool(args.set) != bool(args.label) or ":" in (args.label or ""):
        parser.error("--set and --label go together, and the label has no ':'")
    for env_id in args.envs:
        try:
            gym.spec(env_id)
        except gym.error.Error as error:
            parser.error(f"--envs {env_id}: {error}")
    variant = {"overrides": dict(args.set)} if args.label else {}
    records = load_records(args.results)
    if args.label:
        names = {f"{algo}:{args.label}" for algo in args.algos}
        # As the records hold them: JSON has no tuples, e.g. train_freq=(4, 'episode') comes back as a list.
        as_recorded = json.loads(json.dumps(variant["overrides"]))
        for record in records:
            if record["algo"] in names and record.get("overrides") != as_recorded:
                parser.error(
                    f"--label {args.label} already names {record['algo']} with {record.get('overrides')} in "
                    f"{args.results}: give these --set values another label"
                )

    done = set() if args.rerun else {run_key(record) for record in records}
    # Seed-major, so that an interrupted sweep leaves every algorithm with the same seeds.
    tasks = [
        {
            "algo": f"{algo}:{args.label}" if args.label else algo,
            **variant,
            "env": env_id,
            "seed": seed,
            "timesteps": args.timesteps,
            "eval_freq": args.eval_freq,
            "eval_episodes": args.eval_episodes,
            "deterministic": not args.stochastic_eval,
            "device": args.device,
        }
        for seed in dict.fromkeys(args.seeds)
        for env_id in dict.fromkeys(args.envs)
        for algo in dict.fromkeys(args.algos)
    ]
    pending = [task for task in tasks if run_key(task) not in done]
    print(f"{len(tasks) - len(pending)} of {len(tasks)} runs already in {args.results}, {len(pending)} to run")
    failures = 0
    if args.storage is not None:
        study = sweep.open_sweep(args.storage, args.study_name, pending, args.heartbeat_interval)
        worker = (args.storage, args.study_name, args.heartbeat_interval)
        if args.jobs == 1:
            failures = shared_worker(*worker)
        else:
            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                failures = sum(pool.map(shared_worker, *zip(*[worker] * args.jobs, strict=True)))
        appended = sweep.export_records(study, args.results, replace=args.rerun)
        print(f"{appended} records from the study appended to {args.results}")
    elif args.jobs == 1:
        for task in pending:
            record = run_one(task)
            append_records(args.results, [record])
            print(_describe(record))
    else:
        failures = run_in_pool(run_one, pending, args.jobs, args.results, _describe)
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())
