"""Write a callback that reads the rollout buffer: every algorithm fills SB3's buffer before its update.

At the end of each collection, ``model.rollout_buffer`` holds the rollout with the returns and advantages the update
will use, as in SB3's A2C and PPO. This callback records their statistics per update.

    python examples/rollout_buffer_callback.py --algo nstep_ac --timesteps 20000
"""

import argparse

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_pgnotes import NStepAC, PPOKL, Reinforce

ALGORITHMS: dict[str, type[Reinforce] | type[PPOKL] | type[NStepAC]] = {
    "reinforce": Reinforce,
    "ppo_kl": PPOKL,
    "nstep_ac": NStepAC,
}


class AdvantageStats(BaseCallback):
    """Record the mean return and the advantages' standard deviation of every rollout, and log them."""

    def __init__(self) -> None:
        super().__init__()
        self.mean_returns: list[float] = []
        self.advantage_stds: list[float] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        assert isinstance(self.model, OnPolicyAlgorithm)
        buffer = self.model.rollout_buffer
        self.mean_returns.append(float(np.mean(buffer.returns)))
        self.advantage_stds.append(float(np.std(buffer.advantages)))
        self.logger.record("rollout/mean_buffer_return", self.mean_returns[-1])
        self.logger.record("rollout/advantage_std", self.advantage_stds[-1])


def main() -> None:
    """Train with the callback and print what it saw."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="nstep_ac")
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=20_000, help="environment steps to train for")
    args = parser.parse_args()

    model = ALGORITHMS[args.algo]("MlpPolicy", args.env, seed=0)
    stats = AdvantageStats()
    model.learn(total_timesteps=args.timesteps, callback=stats)
    print(
        f"{len(stats.mean_returns)} rollouts: buffer return {stats.mean_returns[0]:.2f} -> {stats.mean_returns[-1]:.2f}, "
        f"advantage std {stats.advantage_stds[0]:.2f} -> {stats.advantage_stds[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
