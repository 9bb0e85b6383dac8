"""``python -m sb3_pgnotes variance``: compare the variance of policy-gradient estimators on one policy."""

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import torch as th
from gymnasium import spaces
from rich.console import Console
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pgnotes.diagnostics.report import plot_variance, variance_markdown, variance_table
from sb3_pgnotes.diagnostics.variance import VARIANTS, gradient_variance
from sb3_pgnotes.reinforce import Reinforce

#: Where measurements go without --output-dir, one numbered folder each.
DEFAULT_OUTPUT_ROOT = "logs/variance"
#: The plot and the table a measurement writes.
OUTPUT_FILES = ("variance.png", "variance.md")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """:return: An argparse type for integers ``>= minimum``"""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}; got {value}")
        return value

    return parse


def unit_interval(text: str) -> float:
    """:return: A number in [0, 1] (a discount or a GAE lambda)"""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1]; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """:return: The command's parser, whose argument types refuse out-of-range values with the option's name"""
    parser = argparse.ArgumentParser(prog="sb3-pgnotes variance", description=__doc__)
    parser.add_argument("--env", default="CartPole-v1", help="environment id")
    parser.add_argument(
        "--model",
        help="saved model (.zip) whose policy is measured, with the vecnormalize.pkl that rl-zoo3 keeps beside it if "
        "any; default: a fresh Reinforce policy",
    )
    parser.add_argument("--algo", default="reinforce", help="algorithm of --model (zoo name, e.g. reinforce, ppo, a2c)")
    parser.add_argument("--batches", type=int_at_least(2), default=20, help="M, the number of independent batches")
    parser.add_argument("--episodes", type=int_at_least(1), default=10, help="episodes per batch")
    parser.add_argument(
        "--reference-episodes", type=int_at_least(0), default=200, help="episodes of the reference gradient's batch"
    )
    parser.add_argument("--gamma", type=unit_interval, help="discount of the returns (default: the model's)")
    parser.add_argument("--gae-lambda", type=unit_interval, default=0.95, help="lambda of the gae variant")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="variants to compare (default: all)")
    parser.add_argument(
        "--optimal-baseline-horizon",
        type=int_at_least(0),
        default=10,
        help="earlier batches pooled into rtg_optimal's baseline, as Reinforce's optimal_baseline_horizon",
    )
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument(
        "--output-dir",
        help=f"folder of the PNG plot and markdown table, which must not hold earlier ones (default: a new "
        f"{DEFAULT_OUTPUT_ROOT}/<env>_<N>)",
    )
    return parser


def output_folder(parser: argparse.ArgumentParser, output_dir: str | None, env_id: str) -> Path:
    """
    The folder of the plot and table, created before the measurement so that an unusable one fails at once.

    :param parser: Reports the error
    :param output_dir: ``--output-dir``; refused if it holds an earlier measurement's files
    :param env_id: The env, naming the default folder: the first free ``<env>_<N>``, as rl-zoo3 numbers its runs
    :return: The folder
    """
    if output_dir is None:
        stem = Path(DEFAULT_OUTPUT_ROOT) / env_id.replace("/", "-").replace(":", "-")
        run = 1
        while Path(f"{stem}_{run}").exists():
            run += 1
        folder = Path(f"{stem}_{run}")
    else:
        folder = Path(output_dir)
        earlier = [name for name in OUTPUT_FILES if (folder / name).exists()]
        if earlier:
            parser.error(f"--output-dir {folder} already holds {', '.join(earlier)}: choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--output-dir {folder}: {error}")
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    """Run the measurement, print the table and write the plot and the markdown table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    try:
        env = make_vec_env(args.env, n_envs=1, seed=args.seed)
    except gym.error.Error as error:
        parser.error(f"--env {args.env!r}: {error}")
    if args.model:
        # rl-zoo3's registry: ``python -m sb3_pgnotes variance`` has added our algorithms to it.
        if args.algo not in ALGOS:
            parser.error(f"--algo must be one of {', '.join(sorted(ALGOS))}; got {args.algo!r}")
        try:
            model = ALGOS[args.algo].load(args.model, device="cpu")
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--model {args.model!r} cannot be loaded as {args.algo}: {error}")
        if not hasattr(model.policy, "get_distribution"):
            parser.error(f"--model: {args.algo}'s policy has no action distribution to differentiate (use an actor-critic)")
        # Sizes, not spaces: SB3 stores image spaces channel-first.
        if spaces.flatdim(model.observation_space) != spaces.flatdim(env.observation_space):
            parser.error(f"--model was trained on observations {model.observation_space}; --env gives {env.observation_space}")
        # rl-zoo3 keeps a run's normalisation statistics beside its model: the policy expects normalised observations.
        statistics = Path(args.model).parent / args.env / "vecnormalize.pkl"
        if statistics.exists():
            env = VecNormalize.load(str(statistics), env)
            env.training, env.norm_reward = False, False
            print(f"Observations normalised with {statistics}")
    else:
        policy = "MultiInputPolicy" if isinstance(env.observation_space, spaces.Dict) else "MlpPolicy"
        model = Reinforce(policy, env, seed=args.seed, device="cpu")
    output = output_folder(parser, args.output_dir, args.env)
    gamma = args.gamma if args.gamma is not None else float(model.gamma)  # type: ignore[attr-defined]
    variants = tuple(dict.fromkeys(args.variants)) if args.variants else VARIANTS
    stats = gradient_variance(
        model.policy,  # type: ignore[arg-type]
        env,
        gamma=gamma,
        n_batches=args.batches,
        n_episodes=args.episodes,
        reference_episodes=args.reference_episodes,
        variants=variants,
        gae_lambda=args.gae_lambda,
        seed=args.seed,
        optimal_baseline_horizon=args.optimal_baseline_horizon,
    )
    title = f"{args.env}, {args.model or 'initial policy'}: {args.batches} batches of {args.episodes} episodes"
    Console().print(variance_table(stats, title=title))
    plot, table = (output / name for name in OUTPUT_FILES)
    plot_variance(stats, plot, title=title)
    table.write_text(f"{title}\n\n{variance_markdown(stats)}", encoding="utf-8")
    print(f"Plot: {plot}\nTable: {table}")
