"""Compare the variance of the policy-gradient estimators on your own env, at a fresh and at a trained policy.

Each estimator (full return, reward-to-go, with the batch-mean, optimal or value baseline, GAE) is computed on many
independent batches of episodes of one policy snapshot; the spread of its estimates is its variance. See
docs/variance.md for what the numbers mean.

    python examples/compare_variance.py --env CartPole-v1 --train-steps 20000
"""

import argparse

from stable_baselines3.common.env_util import make_vec_env

from sb3_pgnotes import Reinforce
from sb3_pgnotes.diagnostics import gradient_variance, variance_markdown


def main() -> None:
    """Measure the variance of every estimator before and after training."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--train-steps", type=int, default=20_000, help="training between the two snapshots")
    parser.add_argument("--batches", type=int, default=20, help="independent batches per estimator")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per batch")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()

    model = Reinforce("MlpPolicy", args.env, baseline="value", seed=args.seed)
    measure_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1)
    for label, steps in (("fresh policy", 0), (f"after {args.train_steps} training steps", args.train_steps)):
        if steps:
            model.learn(steps)
        stats = gradient_variance(
            model.policy,
            measure_env,
            gamma=model.gamma,
            n_batches=args.batches,
            n_episodes=args.episodes,
            reference_episodes=0,
            seed=args.seed,
        )
        print(f"## {args.env}, {label}\n\n{variance_markdown(stats)}\n")


if __name__ == "__main__":
    main()
