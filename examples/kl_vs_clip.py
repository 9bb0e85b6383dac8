"""Compare PPO's KL penalty (PPOKL, adaptive beta) with its clipped surrogate (SB3's PPO) at the same budget.

Both use the same rollout length, epochs, minibatches and network, so only the surrogate differs. PPOKL logs the
measured KL and the penalty coefficient beta it adapts towards the target.

    python examples/kl_vs_clip.py --env CartPole-v1 --timesteps 50000
"""

import argparse

from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pgnotes import PPOKL


def main() -> None:
    """Train both surrogates and evaluate them on the same env."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=50_000, help="environment steps per algorithm")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()

    shared = {"n_steps": 256, "batch_size": 64, "n_epochs": 10, "seed": args.seed}
    models: dict[str, BaseAlgorithm] = {
        "KL penalty, adaptive beta (PPOKL)": PPOKL("MlpPolicy", args.env, beta_mode="adaptive", kl_target=0.01, **shared),
        "clipped surrogate (PPO)": PPO("MlpPolicy", args.env, clip_range=0.2, **shared),
    }
    for name, model in models.items():
        model.learn(total_timesteps=args.timesteps)
        mean_return, std_return = evaluate_policy(model, make_vec_env(args.env, seed=args.seed + 1), n_eval_episodes=10)
        print(f"{name}: evaluation {mean_return:.1f} +/- {std_return:.1f}")
    beta = models["KL penalty, adaptive beta (PPOKL)"].logger.name_to_value.get("train/kl_beta")
    print(f"PPOKL's last logged beta: {beta}")


if __name__ == "__main__":
    main()
