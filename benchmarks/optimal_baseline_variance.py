"""
The variance of the reward-to-go estimator with the variance-minimising ("optimal") baseline against the batch-mean
baseline, by the number of episodes per batch N, on random tabular MDPs whose rewards are all positive.

Each MDP (random transitions, rewards ``offset + U(0, 1)``, a hard horizon, one-hot observations) gets a linear softmax
policy at its seeded initial weights. On that fixed policy, ``--batches`` independent batches of N episodes are drawn
for each N, and :func:`sb3_pgnotes.diagnostics.gradient_variance` gives each estimator's total variance (the trace of the
covariance of one batch's gradient estimate) and the cosine between its mean and a large-batch reference. The table
reports ``optimal / mean``: below 1, the optimal baseline lowers the variance.

Example: ``python -m benchmarks.optimal_baseline_variance --out docs/benchmarks/optimal_baseline_variance.md``.
"""

import argparse
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_pgnotes import Reinforce
from sb3_pgnotes.diagnostics import gradient_variance


class RandomTabularMDP(gym.Env):
    """
    A random episodic tabular MDP: Dirichlet transitions (with a terminal state), rewards ``offset + U(0, 1)``, at
    most ``horizon`` steps.

    :param n_states: Number of non-terminal states
    :param n_actions: Number of actions
    :param horizon: Longest episode
    :param reward_offset: Added to every reward
    :param seed: Seed of the MDP's tables
    """

    def __init__(self, n_states: int, n_actions: int, horizon: int, reward_offset: float, seed: int) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.transitions = rng.dirichlet(np.ones(n_states + 1), size=(n_states, n_actions))
        self.rewards = reward_offset + rng.random((n_states, n_actions))
        self.initial = rng.dirichlet(np.ones(n_states))
        self.horizon = horizon
        self.terminal = n_states
        self.observation_space = spaces.Discrete(n_states + 1)
        self.action_space = spaces.Discrete(n_actions)
        self.state, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state, self.t = int(self.np_random.choice(len(self.initial), p=self.initial)), 0
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        reward = float(self.rewards[self.state, int(action)])
        self.state = int(self.np_random.choice(self.terminal + 1, p=self.transitions[self.state, int(action)]))
        self.t += 1
        return self.state, reward, self.state == self.terminal or self.t >= self.horizon, False, {}


MDPS = {
    "3 states, horizon 6, offset 1": dict(n_states=3, n_actions=2, horizon=6, reward_offset=1.0, seed=0),
    "5 states, horizon 10, offset 2": dict(n_states=5, n_actions=3, horizon=10, reward_offset=2.0, seed=1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", nargs="+", type=int, default=[2, 4, 8, 16, 32, 64], help="N, episodes per batch")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--reference-episodes", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/optimal_baseline_variance.md"))
    args = parser.parse_args()
    th.set_num_threads(1)

    lines = [
        "# Optimal against batch-mean baseline: variance by batch size",
        "",
        "Produced by `python -m benchmarks.optimal_baseline_variance`. Reward-to-go estimator (discount option 1, "
        f"gamma 1), a linear softmax policy at its seeded initial weights, {args.batches} batches per N; `optimal` is "
        "`Reinforce(baseline='optimal')`'s per-parameter leave-one-out estimate, `mean` the batch mean of the "
        "reward-to-go, `time-optimal` the diagnostics' per-time-step variance-minimising baseline "
        f"(`rtg_time_optimal`) estimated from a separate pool of {args.reference_episodes} episodes, as statistics "
        "pooled over earlier batches would give it. Ratio below 1: lower variance than the mean baseline. Cosine: "
        "between each estimator's mean over the batches and the reference (optimal baseline, "
        f"{args.reference_episodes} episodes).",
        "",
        "| MDP | N | variance, optimal / mean | variance, time-optimal / mean | cosine, optimal | cosine, time-optimal "
        "| cosine, mean |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, spec in MDPS.items():
        env = DummyVecEnv([lambda spec=spec: RandomTabularMDP(**spec)])  # type: ignore[misc]
        model = Reinforce("MlpPolicy", env, policy_kwargs=dict(net_arch=dict(pi=[], vf=[])), seed=args.seed)
        for n_episodes in args.episodes:
            stats = {
                entry.variant: entry
                for entry in gradient_variance(
                    model.policy,
                    env,
                    gamma=1.0,
                    n_batches=args.batches,
                    n_episodes=n_episodes,
                    reference_episodes=args.reference_episodes,
                    variants=("rtg_mean", "rtg_optimal", "rtg_time_optimal"),
                    seed=args.seed,
                )
            }
            mean = stats["rtg_mean"].total_variance
            ratios = [stats[variant].total_variance / mean for variant in ("rtg_optimal", "rtg_time_optimal")]
            cosines = [stats[variant].cosine_to_reference for variant in ("rtg_optimal", "rtg_time_optimal", "rtg_mean")]
            lines.append(
                f"| {name} | {n_episodes} | {' | '.join(f'{r:.3g}' for r in ratios)} | "
                f"{' | '.join(f'{c:.3f}' for c in cosines)} |"
            )
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
