"""Reuse old episodes with OffPolicyPG, and watch what the importance weights cost.

OffPolicyPG keeps the last episodes in a replay and takes several gradient steps per update on samples of them,
each step weighting the episodes by how likely the current policy is to produce them. The effective sample size
(ESS) says how many of a batch's episodes the weights still let count. A callback reads the logged diagnostics after
every update.

    python examples/reuse_episodes.py --timesteps 30000
"""

import argparse

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from sb3_pgnotes import OffPolicyPG


class ImportanceWeightLog(BaseCallback):
    """Collect the effective-sample-size fraction and the largest importance weight logged by each update."""

    def __init__(self) -> None:
        super().__init__()
        self.ess_fractions: list[float] = []
        self.max_weights: list[float] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # The logger still holds the values of the update that just ran.
        logged = self.model.logger.name_to_value
        if "train/ess_fraction" in logged:
            self.ess_fractions.append(logged["train/ess_fraction"])
            self.max_weights.append(logged["train/is_weight_max"])


def main() -> None:
    """Train with episode reuse and summarise the importance weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=30_000, help="environment steps to train for")
    parser.add_argument("--replay-episodes", type=int, default=50, help="episodes kept for reuse")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()

    model = OffPolicyPG(
        "MlpPolicy",
        args.env,
        max_buffer_episodes=args.replay_episodes,
        train_freq=(5, "episode"),
        gradient_steps=4,
        batch_size=10,
        c_bar=10.0,
        seed=args.seed,
    )
    log = ImportanceWeightLog()
    model.learn(total_timesteps=args.timesteps, callback=log)
    if not log.ess_fractions:
        print("no update has been logged yet: train for more steps")
        return
    print(
        f"{len(log.ess_fractions)} updates: ESS fraction median {np.median(log.ess_fractions):.2f} "
        f"(min {np.min(log.ess_fractions):.2f}), largest importance weight {np.max(log.max_weights):.2f}"
    )


if __name__ == "__main__":
    main()
