"""Train REINFORCE on CartPole-v1 from Python, evaluate it, save it and load it back.

Run from the repository root with the package installed::

    python examples/train_reinforce.py --timesteps 100000
"""

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgnotes import Reinforce


def main() -> None:
    """Parse the arguments, then train, evaluate, save and reload the model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=100_000, help="environment steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--save-dir", type=Path, default=Path(tempfile.gettempdir()), help="where to save the model")
    args = parser.parse_args()

    model = Reinforce("MlpPolicy", args.env, n_episodes=10, baseline="value", reward_to_go=True, seed=args.seed, verbose=1)
    model.learn(total_timesteps=args.timesteps)

    mean_return, std_return = evaluate_policy(model, Monitor(gym.make(args.env)), n_eval_episodes=10)
    print(f"Evaluation over 10 episodes: {mean_return:.1f} +/- {std_return:.1f}")

    path = args.save_dir / f"reinforce_{args.env}.zip"
    model.save(path)
    loaded = Reinforce.load(path)
    print(f"Saved to {path}; reloaded: baseline={loaded.baseline!r}, n_episodes={loaded.n_episodes}")


if __name__ == "__main__":
    main()
