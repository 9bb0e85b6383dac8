"""Train one of the four algorithms, save it, delete it, load it back and use it to act.

Run from the repository root with the package installed::

    python examples/quickstart.py --algo reinforce --env CartPole-v1 --timesteps 50000
"""

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgnotes import NStepAC, OffPolicyPG, PPOKL, Reinforce

ALGORITHMS: dict[str, type[Reinforce] | type[OffPolicyPG] | type[PPOKL] | type[NStepAC]] = {
    "reinforce": Reinforce,
    "offpolicy_pg": OffPolicyPG,
    "ppo_kl": PPOKL,
    "nstep_ac": NStepAC,
}


def main() -> None:
    """Parse the arguments, then train, save, reload, evaluate and act."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="reinforce")
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=50_000, help="environment steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--save-dir", type=Path, help="where to save the model (default: a new temporary folder)")
    args = parser.parse_args()
    algo = ALGORITHMS[args.algo]
    save_dir = Path(tempfile.mkdtemp(prefix="sb3_pgnotes_")) if args.save_dir is None else args.save_dir
    path = save_dir / f"{args.algo}_{args.env}.zip"
    if path.exists():
        parser.error(f"{path} exists: choose another --save-dir rather than overwrite it")

    model = algo("MlpPolicy", args.env, seed=args.seed, verbose=1)
    model.learn(total_timesteps=args.timesteps)
    model.save(path)
    del model

    model = algo.load(path)
    env = Monitor(gym.make(args.env))
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=10)
    print(f"{args.algo} saved to {path} and reloaded; evaluation over 10 episodes: {mean_return:.1f} +/- {std_return:.1f}")

    obs, _ = env.reset(seed=args.seed)
    action, _ = model.predict(obs, deterministic=True)
    print(f"first action of the reloaded policy: {action}")


if __name__ == "__main__":
    main()
