"""
Env steps and wall-clock seconds until a policy first reaches a return threshold, over many seeds: a screen of
hyperparameter variants where only the time to learn matters (e.g. OffPolicyPG against Reinforce on CartPole-v1),
and the time-to-solve comparison of several algorithms.

Each run evaluates every ``--eval-freq`` env steps (``--eval-episodes`` deterministic episodes on a separate env)
and stops at the first evaluation whose mean reaches ``--threshold``, or at ``--timesteps``. One JSON line per run
is appended to ``--out`` (``first``: env steps at that evaluation, ``first_train_s``: seconds of training before it,
evaluations excluded, both ``null`` if never; ``eval_s``: seconds spent evaluating), and finished runs are skipped on
a rerun. With several ``--algos`` the runs alternate, seed by seed, so that machine noise over time hits all of them.
``--set key=value`` overrides the algorithms' hyperparameters (values are Python literals, applied to the YAML
entry, so ``policy_kwargs`` may be rl-zoo3's string form) and ``--label`` names the variant:

    python -m benchmarks.steps_to_threshold --algos offpolicy_pg --label gradient_steps_8 --set gradient_steps=8 \
        --seeds 0 1 2 3 4 5 6 7 8 9 --out screen.jsonl
    python -m benchmarks.steps_to_threshold --algos reinforce ppo a2c --seeds 0 1 2 3 4 --out solve.jsonl
    python -m benchmarks.steps_to_threshold --algos offpolicy_pg --summary --out screen.jsonl
"""

import argparse
import dataclasses
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from benchmarks.registry import ALGOS, resolve
from benchmarks.run import EVAL_SEED_OFFSET, build_model, make_env, parse_override


class StopAtThreshold(BaseCallback):
    """
    Evaluate every ``eval_freq`` env steps; stop training at the first evaluation that reaches ``threshold``.

    :param eval_env: Evaluation env, wrapped like the training env (normalisation stats are synced before each eval)
    :param eval_freq: Env steps between evaluations
    :param eval_episodes: Episodes per evaluation
    :param threshold: Mean return to reach
    """

    def __init__(self, eval_env: VecEnv, eval_freq: int, eval_episodes: int, threshold: float) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.eval_episodes = eval_episodes
        self.threshold = threshold
        self.next_eval = eval_freq
        #: Per evaluation: env steps, mean return, and the seconds of training before it (evaluations excluded)
        self.curve: list[tuple[int, float, float]] = []
        self.eval_seconds = 0.0
        self._start = 0.0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.eval_freq
        eval_start = time.perf_counter()
        sync_envs_normalization(self.training_env, self.eval_env)
        mean, _ = evaluate_policy(self.model, self.eval_env, self.eval_episodes)  # type: ignore[arg-type]
        self.curve.append((self.num_timesteps, float(mean), eval_start - self._start - self.eval_seconds))
        self.eval_seconds += time.perf_counter() - eval_start
        return float(mean) < self.threshold


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """
    :param task: ``algo``, ``env``, ``label``, ``overrides``, ``seed``, ``timesteps``, ``eval_freq``,
        ``eval_episodes``, ``threshold``
    :return: The run record, with ``first`` (env steps at the first evaluation reaching the threshold, or None)
    """
    th.set_num_threads(1)
    spec = ALGOS[task["algo"]]
    # On the YAML entry, before rl-zoo3's conventions (policy_kwargs strings, lin_ schedules) are applied.
    config = resolve(dataclasses.replace(spec, overrides={**spec.overrides, **task["overrides"]}), task["env"])
    env = make_env(task["env"], config.n_envs, task["seed"], config.normalize_kwargs)
    eval_env = make_env(task["env"], 1, task["seed"] + EVAL_SEED_OFFSET, config.normalize_kwargs, training=False)
    model = build_model(config, env, task["seed"], "cpu")
    callback = StopAtThreshold(eval_env, task["eval_freq"], task["eval_episodes"], task["threshold"])
    start = time.perf_counter()
    model.learn(total_timesteps=task["timesteps"], callback=callback)
    reached = next(((steps, seconds) for steps, mean, seconds in callback.curve if mean >= task["threshold"]), None)
    return {
        **task,
        "overrides": {key: repr(value) for key, value in task["overrides"].items()},
        "first": None if reached is None else reached[0],
        "first_train_s": None if reached is None else reached[1],
        "eval_s": callback.eval_seconds,
        "curve": callback.curve,
        "wall_time_s": time.perf_counter() - start,
    }


def summarise(records: list[dict[str, Any]]) -> str:
    """
    :return: A markdown page, a title then a table: per env, threshold, algo and variant, the seeds, how many reached
        the threshold, the median env steps (a run that never reached it counts as its budget) and each seed's steps,
        then the median seconds of training to the threshold (evaluations excluded; a run that never reached it counts
        as never, so the median is "-" when half of them did not) and the median seconds spent evaluating
    """
    groups: dict[tuple[str, float, str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["env"], record["threshold"], record["algo"], record["label"]), []).append(record)
    lines = [
        "# Env steps and seconds to the threshold",
        "",
        "| Env | Threshold | Algo | Variant | Seeds | Reached | Median steps | Per seed | Median train s | Median eval s |",
        "|---|---:|---|---|---|---:|---:|---|---:|---:|",
    ]
    for (env, threshold, algo, label), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda record: record["seed"])
        steps = [record["first"] if record["first"] is not None else record["timesteps"] for record in runs]
        per_seed = ", ".join("-" if record["first"] is None else f"{record['first'] / 1000:g}k" for record in runs)
        seconds = np.median([np.inf if record.get("first_train_s") is None else record["first_train_s"] for record in runs])
        eval_seconds = np.median([record.get("eval_s", np.nan) for record in runs])
        seeds = f"{runs[0]['seed']}-{runs[-1]['seed']}"
        reached = sum(record["first"] is not None for record in runs)
        lines.append(
            f"| {env} | {threshold:g} | {algo} | {label} | {seeds} | {reached}/{len(runs)} | {np.median(steps):,.0f} "
            f"| {per_seed} | {'-' if np.isinf(seconds) else f'{seconds:.1f}'} | {eval_seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """:param argv: Command-line arguments (default: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--algos", "--algo", nargs="+", required=True, choices=sorted(ALGOS), help="Several run alternately, seed by seed"
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--label", default="yaml", help="Name of the variant in the results")
    parser.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--timesteps", type=int, default=30_000, help="Budget of a run that never reaches the threshold")
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--eval-freq", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines results file (appended)")
    parser.add_argument("--summary", action="store_true", help="Print the summary table of --out and exit")
    args = parser.parse_args(argv)

    records = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if args.summary:
        print(summarise(records))
        return
    done = {(r["algo"], r["env"], r["label"], r["seed"], r["timesteps"], r["threshold"]) for r in records}
    # Seed by seed, the algorithms in an order rotated each seed, so that machine noise over time hits all of them.
    runs = [(seed, args.algos[(i + seed) % len(args.algos)]) for seed in args.seeds for i in range(len(args.algos))]
    tasks = [
        {
            "algo": algo,
            "env": args.env,
            "label": args.label,
            "overrides": dict(args.set),
            "seed": seed,
            "timesteps": args.timesteps,
            "eval_freq": args.eval_freq,
            "eval_episodes": args.eval_episodes,
            "threshold": args.threshold,
        }
        for seed, algo in runs
        if (algo, args.env, args.label, seed, args.timesteps, args.threshold) not in done
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Spawned, not forked: a fork of a process whose torch threads have run can deadlock.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for record in pool.map(run_one, tasks):
            with open(args.out, "a") as file:
                file.write(json.dumps(record) + "\n")
            print(f"{record['algo']} {record['label']} seed {record['seed']}: first {record['first']}", flush=True)


if __name__ == "__main__":
    main()
