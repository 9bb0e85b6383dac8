"""
Cost of ``Reinforce(baseline="optimal")``: time of one update (``process_batch`` and ``train()``: the baseline's
per-step score norms are computed in the first) against ``baseline="mean"`` on the same batches, for the default MLP
on CartPole-v1 with 10 episodes per update.

Batches are drawn at several stages of training (short episodes at first, long ones once the pole balances), and
the two updates alternate on each batch so that machine noise hits both.

Example: ``python -m benchmarks.optimal_baseline_cost --out docs/benchmarks/optimal_baseline_cost.md``.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch as th
from stable_baselines3.common.logger import Logger

from sb3_pgnotes import Reinforce


def time_update(model: Reinforce, repeats: int) -> float:
    """
    :param model: A model holding an episode batch
    :param repeats: Number of timed updates
    :return: Median seconds per update (``process_batch`` and ``train()``)
    """
    assert model.episode_batch is not None
    durations = []
    for _ in range(repeats):
        start = time.process_time()
        model.process_batch(model.episode_batch, model.rollout_buffer)
        model.train()
        durations.append(time.process_time() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--n-episodes", type=int, default=10)
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 20_000, 60_000], help="training steps before a batch")
    parser.add_argument("--batches", type=int, default=5, help="batches per stage")
    parser.add_argument("--repeats", type=int, default=20, help="timed updates per batch and baseline")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/optimal_baseline_cost.md"))
    args = parser.parse_args()
    th.set_num_threads(1)

    trainer = Reinforce("MlpPolicy", args.env, n_episodes=args.n_episodes, seed=0)
    models = {
        baseline: Reinforce("MlpPolicy", args.env, n_episodes=args.n_episodes, baseline=baseline, normalize_advantage=False)
        for baseline in ("mean", "optimal")
    }
    for model in models.values():
        model.set_logger(Logger(folder=None, output_formats=[]))
    rows = []
    trained = 0
    for stage in args.stages:
        if stage > trained:
            trainer.learn(stage - trained, reset_num_timesteps=False)
            trained = stage
        _, callback = trainer._setup_learn(1, reset_num_timesteps=False)
        for _ in range(args.batches):
            assert trainer.env is not None and trainer.collect_rollouts(trainer.env, callback, trainer.rollout_buffer)
            assert trainer.episode_batch is not None
            timings = {}
            for name in ("mean", "optimal") if len(rows) % 2 == 0 else ("optimal", "mean"):
                model = models[name]
                model.policy.load_state_dict(trainer.policy.state_dict())
                model.episode_batch = trainer.episode_batch
                timings[name] = time_update(model, args.repeats)
            rows.append((stage, trainer.episode_batch.n_steps, timings["mean"], timings["optimal"]))

    ratios = [optimal / mean for _, _, mean, optimal in rows]
    lines = [
        f"# Cost of baseline='optimal' vs baseline='mean' ({args.env}, default MLP, {args.n_episodes} episodes per update)",
        "",
        f"Median CPU time (process time, robust to other load) of {args.repeats} updates (`process_batch` and `train()`) "
        "per batch, the two "
        "baselines alternating on the same batch; one torch thread. Produced by `python -m benchmarks.optimal_baseline_cost`.",
        "",
        "| training steps before | steps in batch | mean (ms) | optimal (ms) | ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for (stage, steps, mean, optimal), ratio in zip(rows, ratios, strict=True):
        lines.append(f"| {stage} | {steps} | {mean * 1e3:.2f} | {optimal * 1e3:.2f} | {ratio:.2f} |")
    lines += ["", f"Median ratio: **{statistics.median(ratios):.2f}**, max {max(ratios):.2f}."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
