"""
Effective sample size of ``OffPolicyPG``'s importance weights over training, with the registry's hyperparameters
(``hyperparams/offpolicy_pg.yml``).

One run per seed; the CSV log of every update is summarised at tenths of the run: the return of the recent episodes,
the ESS of a batch's weights (absolute and as a fraction of its steps) and the largest weight.

Example: ``python -m benchmarks.offpolicy_ess --env CartPole-v1 --seeds 0 --timesteps 50000 --out ess.md``.
"""

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.logger import configure

from benchmarks.registry import ALGOS, resolve
from benchmarks.run import build_model, make_env

COLUMNS = ("time/total_timesteps", "rollout/ep_rew_mean", "train/ess", "train/ess_fraction", "train/is_weight_max")


def ess_log(env_id: str, seed: int, timesteps: int) -> list[dict[str, float]]:
    """
    :param env_id: Gymnasium env id
    :param seed: Seed of the env and the model
    :param timesteps: Env-step budget
    :return: One row per logged update (after the first update), with :data:`COLUMNS`
    """
    config = resolve(ALGOS["offpolicy_pg"], env_id)
    model = build_model(config, make_env(env_id, config.n_envs, seed, config.normalize_kwargs), seed, "cpu")
    with tempfile.TemporaryDirectory() as folder:
        model.set_logger(configure(folder, ["csv"]))
        model.learn(timesteps, log_interval=1)
        with open(Path(folder) / "progress.csv") as file:
            rows = list(csv.DictReader(file))
    return [{key: float(row[key]) for key in COLUMNS} for row in rows if row.get("train/ess")]


def summary(env_id: str, seeds: list[int], timesteps: int) -> str:
    """
    :param env_id: Gymnasium env id
    :param seeds: Seeds, one run each
    :param timesteps: Env-step budget per run
    :return: A markdown table: per seed, the logged values at each tenth of the run
    """
    lines = [
        f"### {env_id}, {timesteps:,} steps",
        "",
        "| Seed | Env steps | Recent return | ESS | ESS / steps | Max weight |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for seed in seeds:
        rows = ess_log(env_id, seed, timesteps)
        for idx in np.linspace(0, len(rows) - 1, 10).round().astype(int):
            row = rows[idx]
            lines.append(
                f"| {seed} | {row['time/total_timesteps']:,.0f} | {row['rollout/ep_rew_mean']:.1f} | {row['train/ess']:.1f} "
                f"| {row['train/ess_fraction']:.3f} | {row['train/is_weight_max']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file (default: print)")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    text = summary(args.env, args.seeds, args.timesteps)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
