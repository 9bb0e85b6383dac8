"""
Variance of the policy-gradient estimators at the initial policy and at a partly trained one.

For each env, Reinforce is built from ``hyperparams/reinforce.yml``; its initial policy is measured, then it trains
``--train-steps`` env steps and is measured again. Each snapshot's mean evaluation return is reported with it.

Example: ``python -m benchmarks.variance_table --envs CartPole-v1 Acrobot-v1 --out docs/benchmarks/variance``.
"""

import argparse
from pathlib import Path

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from benchmarks.registry import ALGOS, resolve
from sb3_pgnotes.diagnostics import gradient_variance, plot_variance, variance_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument(
        "--train-steps", nargs="+", type=int, default=[10_000, 10_000], help="per env, before the 2nd snapshot"
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--episodes", nargs="+", type=int, default=[10, 5], help="episodes per batch, per env")
    parser.add_argument("--reference-episodes", nargs="+", type=int, default=[200, 50], help="per env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/variance"))
    args = parser.parse_args()
    th.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    sections = [
        "# Policy-gradient estimator variance",
        "",
        "Produced by `python -m benchmarks.variance_table`. Each estimator's gradient is computed on "
        f"{args.batches} independent batches drawn from the same policy snapshot (Reinforce, `hyperparams/reinforce.yml`); "
        "total variance is the trace of the covariance of one batch's estimate, SNR is `|mean|^2 / total variance`, "
        "and the cosine compares the mean estimate with a large-batch reward-to-go + optimal-baseline gradient. "
        "`rtg_value` and `gae` use the snapshot's critic (untrained at the initial policy).",
        "",
    ]
    for env_id, train_steps, n_episodes, reference in zip(
        args.envs, args.train_steps, args.episodes, args.reference_episodes, strict=True
    ):
        config = resolve(ALGOS["reinforce"], env_id)
        model = config.algo_class(config.policy, env_id, seed=args.seed, **config.model_kwargs)
        measure_env = make_vec_env(env_id, n_envs=1, seed=args.seed + 1)
        for label, steps in (("initial policy", 0), (f"after {train_steps} training steps", train_steps)):
            if steps:
                model.learn(steps)
            eval_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=args.seed + 2), n_eval_episodes=10)
            stats = gradient_variance(
                model.policy,  # type: ignore[arg-type]
                measure_env,
                gamma=float(model.gamma),  # type: ignore[attr-defined]
                n_batches=args.batches,
                n_episodes=n_episodes,
                reference_episodes=reference,
                seed=args.seed,
            )
            title = f"{env_id}, {label} (eval return {eval_return:.1f}), batches of {n_episodes} episodes"
            stem = f"{env_id}_{'initial' if steps == 0 else 'trained'}"
            plot_variance(stats, args.out / f"{stem}.png", title=title)
            sections += [f"## {title}", "", variance_markdown(stats), f"![{stem}]({stem}.png)", ""]
            print(title, flush=True)
    (args.out / "README.md").write_text("\n".join(sections), encoding="utf-8")


if __name__ == "__main__":
    main()
