"""
Variance of Reinforce's estimator with each baseline, by episodes per batch, at the initial policy and at a partly
trained one.

For each env, Reinforce is built from a registry entry (``--algos``, one per env; ``reinforce`` is
``hyperparams/reinforce.yml``'s); its initial policy is measured, then it trains ``--train-steps`` env steps and is
measured again. Each snapshot's mean evaluation return is reported with it. At each
snapshot and batch size N, :func:`sb3_pgnotes.diagnostics.gradient_variance` draws ``--batches`` batches and computes
the reward-to-go estimator with no baseline (``reward_to_go``), the batch mean (``rtg_mean``), the optimal baseline
(``rtg_optimal``, its pool filled first as in training) and the snapshot's critic (``rtg_value``; untrained at the
initial policy), plus the full-return estimator for scale.

Example: ``python -m benchmarks.variance_table --envs CartPole-v1 Acrobot-v1 --algos reinforce reinforce_optimal
--train-steps 10000 5000 --out docs/benchmarks/variance``.
"""

import argparse
from pathlib import Path

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from benchmarks.registry import ALGOS, resolve
from sb3_pgnotes.diagnostics import VarianceStats, gradient_variance

VARIANTS = ("full_return", "reward_to_go", "rtg_mean", "rtg_optimal", "rtg_value")
LABELS = {
    "full_return": "full return",
    "reward_to_go": "none",
    "rtg_mean": "mean",
    "rtg_optimal": "optimal",
    "rtg_value": "value",
}


def snapshot_table(rows: dict[int, list[VarianceStats]]) -> list[str]:
    """
    :param rows: Per batch size, the statistics of :data:`VARIANTS`
    :return: Markdown lines: per N, each baseline's total variance relative to the batch mean's, then its SNR
    """
    lines = [
        "| N | "
        + " | ".join(f"variance, {LABELS[v]} / mean" for v in VARIANTS)
        + " | "
        + " | ".join(f"SNR, {LABELS[v]}" for v in VARIANTS)
        + " |",
        "|---:|" + "---:|" * (2 * len(VARIANTS)),
    ]
    for n_episodes, stats in rows.items():
        by_variant = {entry.variant: entry for entry in stats}
        mean = by_variant["rtg_mean"].total_variance
        relative = " | ".join(f"{by_variant[v].total_variance / mean:.3g}" for v in VARIANTS)
        snr = " | ".join(f"{by_variant[v].snr:.3g}" for v in VARIANTS)
        lines.append(f"| {n_episodes} | {relative} | {snr} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument(
        "--algos", nargs="+", help="per env, the Reinforce registry entry that trains (default: reinforce for every env)"
    )
    parser.add_argument(
        "--train-steps", nargs="+", type=int, default=[10_000, 10_000], help="per env, before the 2nd snapshot"
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--episodes", nargs="+", type=int, default=[4, 10, 32], help="N, episodes per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/variance"))
    args = parser.parse_args()
    algos = args.algos or ["reinforce"] * len(args.envs)
    th.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    sections = [
        "# Reinforce's estimator variance by baseline and batch size",
        "",
        f"Produced by `python -m benchmarks.variance_table --envs {' '.join(args.envs)} --algos {' '.join(algos)} "
        f"--train-steps {' '.join(map(str, args.train_steps))}` (the module's docstring says how): {args.batches} batches "
        "per snapshot and batch size N, reward-to-go with discount option 1. "
        "Variance: trace of the covariance of one batch's estimate, relative to the batch mean's (below 1 is lower). "
        "SNR: `|mean|^2 / total variance`, which a biased estimator cannot improve by shrinking. `value` uses the "
        "snapshot's critic, untrained at the initial policy.",
        "",
    ]
    for env_id, algo, train_steps in zip(args.envs, algos, args.train_steps, strict=True):
        config = resolve(ALGOS[algo], env_id)
        model = config.algo_class(config.policy, env_id, seed=args.seed, **config.model_kwargs)
        measure_env = make_vec_env(env_id, n_envs=1, seed=args.seed + 1)
        for label, steps in (("initial policy", 0), (f"after {train_steps} training steps", train_steps)):
            if steps:
                model.learn(steps)
            eval_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=args.seed + 2), n_eval_episodes=10)
            rows = {
                n_episodes: gradient_variance(
                    model.policy,  # type: ignore[arg-type]
                    measure_env,
                    gamma=float(model.gamma),  # type: ignore[attr-defined]
                    n_batches=args.batches,
                    n_episodes=n_episodes,
                    reference_episodes=0,
                    variants=VARIANTS,
                    seed=args.seed,
                )
                for n_episodes in args.episodes
            }
            title = f"{env_id}, {algo}, {label} (eval return {eval_return:.1f})"
            table = snapshot_table(rows)
            sections += [f"## {title}", "", *table, ""]
            print(title, *table, sep="\n", flush=True)
    (args.out / "README.md").write_text("\n".join(sections), encoding="utf-8")


if __name__ == "__main__":
    main()
