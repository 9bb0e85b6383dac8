"""
The PPO paper's Table 1 (Schulman et al. 2017, section 6.1) on this machine: surrogate objectives compared.

Eleven settings share every hyperparameter of an env but the surrogate: no clipping or penalty (``PPOKL`` with
beta = 0), clipping eps 0.1 / 0.2 / 0.3 (SB3's ``PPO``), adaptive KL d_targ 0.003 / 0.01 / 0.03 and fixed KL
beta 0.3 / 1 / 3 / 10 (``PPOKL``). A run's score is the mean return of its last 100 training episodes; per env the
scores are shifted and scaled so that a uniformly random policy gets 0 and the best setting (mean over seeds) gets 1,
then averaged over seeds and envs.

Shared hyperparameters: rl-zoo3's ``ppo.yml`` entry of the env without its ``clip_range`` (Pendulum-v1,
LunarLanderContinuous-v3), else the paper's MuJoCo settings (:data:`PAPER_MUJOCO`). Budgets: :data:`BUDGETS`
(``--timesteps`` overrides them). Finished runs are skipped, so the table can be built across sessions:

    python -m benchmarks.ppo_table1 run --envs Pendulum-v1 --seeds 0 1 2 --jobs 2
    python -m benchmarks.ppo_table1 report
"""

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib
import numpy as np
import stable_baselines3
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks.registry import ALGOS, ZOO_HYPERPARAMS, RunConfig
from sb3_pgnotes.zoo.registry import preprocess_hyperparams
from benchmarks.results import load_records, run_in_pool, run_key
from benchmarks.run import build_model, make_env

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT_DIR = Path("docs/benchmarks/ppo_table1")
ENVS = ("Pendulum-v1", "LunarLanderContinuous-v3", "InvertedPendulum-v5", "Hopper-v5")
#: Env steps per run: what 132 runs (11 settings x 4 envs x 3 seeds) allow on a 2-core machine.
BUDGETS = {"Pendulum-v1": 100_000, "LunarLanderContinuous-v3": 500_000, "InvertedPendulum-v5": 100_000, "Hopper-v5": 300_000}
#: The paper's MuJoCo hyperparameters (its Table 3), observations normalised as in its baselines code.
PAPER_MUJOCO: dict[str, Any] = {
    "normalize": "dict(norm_obs=True, norm_reward=False)",
    "n_envs": 1,
    "n_steps": 2048,
    "batch_size": 64,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
}
#: Setting name -> (benchmark registry algo, surrogate arguments), in the paper's order.
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "no clipping or penalty": ("ppo_kl", {"beta_mode": "fixed", "beta": 0.0}),
    **{f"clipping, eps={eps}": ("ppo", {"clip_range": eps}) for eps in (0.1, 0.2, 0.3)},
    **{
        f"adaptive KL, d_targ={d}": ("ppo_kl", {"beta_mode": "adaptive", "beta": 1.0, "kl_target": d})
        for d in (0.003, 0.01, 0.03)
    },
    **{f"fixed KL, beta={beta}": ("ppo_kl", {"beta_mode": "fixed", "beta": beta}) for beta in (0.3, 1.0, 3.0, 10.0)},
}
#: Variants beyond the paper's table, run on request (``--settings``) and reported in a table of their own,
#: normalised against the paper's settings: a change to the adaptive rule, measured against the rule itself.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "adaptive KL, d_targ=0.01, early stop": (
        "ppo_kl",
        {"beta_mode": "adaptive", "beta": 1.0, "kl_target": 0.01, "target_kl": 0.01},
    ),
    "adaptive KL, d_targ=0.01, factor 1.5": (
        "ppo_kl",
        {"beta_mode": "adaptive", "beta": 1.0, "kl_target": 0.01, "beta_factor": 1.5},
    ),
    "adaptive KL, d_targ=0.01, tolerance 2": (
        "ppo_kl",
        {"beta_mode": "adaptive", "beta": 1.0, "kl_target": 0.01, "kl_tolerance": 2.0},
    ),
}
RANDOM = "random policy"
RANDOM_EPISODES = 100
LAST_EPISODES = 100


def base_hyperparams(env_id: str) -> dict[str, Any]:
    """
    :param env_id: Gymnasium env id
    :return: The hyperparameters every setting shares on this env (rl-zoo3 format, no surrogate arguments)
    """
    with open(ZOO_HYPERPARAMS / "ppo.yml") as file:
        raw = yaml.safe_load(file).get(env_id, PAPER_MUJOCO)
    return {key: value for key, value in raw.items() if key != "clip_range"}


def run_config(setting: str, env_id: str) -> RunConfig:
    """
    :param setting: A key of :data:`SETTINGS` or :data:`VARIANTS`
    :param env_id: Gymnasium env id
    :return: The run configuration: the env's shared hyperparameters and the setting's surrogate
    """
    algo, surrogate = {**SETTINGS, **VARIANTS}[setting]
    policy, n_envs, normalize_kwargs, model_kwargs = preprocess_hyperparams({**base_hyperparams(env_id), **surrogate}, env_id)
    return RunConfig(ALGOS[algo].load_class(), policy, n_envs, normalize_kwargs, model_kwargs, "ppo_table1")


class EpisodeLog(BaseCallback):
    """Record the return and the end timestep of every training episode (from the Monitor's ``episode`` info)."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.timesteps: list[int] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
                self.timesteps.append(int(self.num_timesteps))
        return True


def random_policy_return(env_id: str, seed: int, n_episodes: int = RANDOM_EPISODES) -> list[float]:
    """
    :param env_id: Gymnasium env id
    :param seed: Seed of the env and of the action sampling
    :param n_episodes: Number of episodes
    :return: Returns of ``n_episodes`` episodes of uniformly random actions
    """
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for episode in range(n_episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """
    Train one setting on one env with one seed (or, for the random policy, roll it out).

    :param task: ``algo`` (the setting), ``env``, ``seed``, ``timesteps``, ``device``
    :return: The run record: the training episodes' returns and end timesteps, and the score
    """
    th.set_num_threads(1)
    start = time.perf_counter()
    record: dict[str, Any] = {**task}
    if task["algo"] == RANDOM:
        returns = random_policy_return(task["env"], task["seed"])
        record["episode_returns"] = returns
    else:
        config = run_config(task["algo"], task["env"])
        env = make_env(task["env"], config.n_envs, task["seed"], config.normalize_kwargs)
        model = build_model(config, env, task["seed"], task["device"])
        log = EpisodeLog()
        model.learn(total_timesteps=task["timesteps"], callback=log)
        env.close()
        returns = log.returns
        record.update(
            {
                "class": config.algo_class.__name__,
                "n_envs": config.n_envs,
                "hyperparams": {key: repr(value) for key, value in config.model_kwargs.items()},
                "normalize": config.normalize_kwargs,
                "env_steps": int(model.num_timesteps),
                "episode_returns": returns,
                "episode_timesteps": log.timesteps,
                "final_beta": getattr(model, "beta", None),
            }
        )
    wall_time = time.perf_counter() - start
    record.update(
        {
            "score": float(np.mean(returns[-LAST_EPISODES:])),
            "wall_time_s": wall_time,
            "versions": {"torch": th.__version__, "stable_baselines3": stable_baselines3.__version__},
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return record


def tasks_for(
    envs: list[str], settings: list[str], seeds: list[int], timesteps: int | None, device: str
) -> list[dict[str, Any]]:
    """
    :param envs: Env ids
    :param settings: Keys of :data:`SETTINGS` or :data:`VARIANTS`
    :param seeds: Seeds
    :param timesteps: Budget for every env, or None for :data:`BUDGETS`
    :param device: Torch device
    :return: One task per (env, setting, seed), and one random-policy task per env
    """
    tasks = [{"algo": RANDOM, "env": env_id, "seed": 0, "timesteps": 0, "device": device} for env_id in envs]
    for env_id in envs:
        budget = timesteps or BUDGETS[env_id]
        for setting in settings:
            tasks += [{"algo": setting, "env": env_id, "seed": seed, "timesteps": budget, "device": device} for seed in seeds]
    return tasks


def describe(record: dict[str, Any]) -> str:
    """:return: A one-line progress summary of a finished run."""
    return (
        f"{record['env']} | {record['algo']} | seed {record['seed']}: score {record['score']:.1f}, "
        f"{record['wall_time_s']:.0f} s"
    )


def run(args: argparse.Namespace) -> int:
    """
    :param args: The ``run`` command's arguments
    :return: Exit code: 0 when every pending run finished, 1 otherwise
    """
    results = args.out / "results"
    done = {run_key(record) for record in load_records(results)}
    tasks = tasks_for(args.envs, args.settings, args.seeds, args.timesteps, args.device)
    pending = [task for task in tasks if run_key(task) not in done]
    print(f"{len(tasks) - len(pending)} of {len(tasks)} runs already in {results}, {len(pending)} to run", flush=True)
    failures = run_in_pool(run_one, pending, args.jobs, results, describe)
    return int(failures > 0)


def scores(records: list[dict[str, Any]]) -> tuple[dict[str, float], dict[tuple[str, str], list[float]]]:
    """
    :param records: All records (a repeated run keeps its latest record)
    :return: ``(random-policy score per env, run scores per (env, setting))``
    """
    latest = {run_key(record): record for record in records}
    random_scores: dict[str, float] = {}
    by_setting: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in latest.values():
        if record["algo"] == RANDOM:
            random_scores[record["env"]] = record["score"]
        else:
            by_setting[record["env"], record["algo"]].append(record["score"])
    return random_scores, dict(by_setting)


def normalised_scores(
    random_scores: Mapping[str, float],
    by_setting: Mapping[tuple[str, str], list[float]],
    reference: Collection[str] | None = None,
) -> dict[tuple[str, str], float]:
    """
    The paper's normalisation: per env, random policy = 0 and the best setting (mean over its seeds) = 1.

    :param random_scores: Random-policy score per env
    :param by_setting: Run scores per (env, setting)
    :param reference: The settings the best is taken from (default: all); the others are normalised against it
        and may exceed 1
    :return: Mean normalised score per (env, setting), for envs with a random-policy score and a reference run
    """
    normalised = {}
    for env_id, random_score in random_scores.items():
        means = {setting: float(np.mean(values)) for (env, setting), values in by_setting.items() if env == env_id}
        reference_means = [mean for setting, mean in means.items() if reference is None or setting in reference]
        if not reference_means:
            continue
        best = max(reference_means)
        for setting, mean in means.items():
            normalised[env_id, setting] = (mean - random_score) / (best - random_score)
    return normalised


def report(args: argparse.Namespace) -> int:
    """
    Write ``table1.md`` (raw and normalised scores) and ``table1.png`` (average normalised score per setting).

    :param args: The ``report`` command's arguments
    :return: Exit code 0
    """
    records = load_records(args.out / "results")
    random_scores, by_setting = scores(records)
    normalised = normalised_scores(random_scores, by_setting, reference=SETTINGS)
    envs = [env_id for env_id in ENVS if env_id in random_scores]
    budgets = {record["env"]: record["timesteps"] for record in records if record["algo"] != RANDOM}
    lines = [
        "# PPO surrogate objectives (the PPO paper's Table 1) on this machine",
        "",
        f"Generated by `python -m benchmarks.ppo_table1 report` from `{args.out / 'results'}`.",
        f"Score: mean return of the last {LAST_EPISODES} training episodes of a run. Normalised per env: random policy "
        "(uniform actions, 100 episodes) = 0, best setting (mean over its seeds) = 1. `avg` averages the normalised "
        "scores over the envs that have runs of the setting; (n) is the number of seeds.",
        "",
        "Budgets: " + ", ".join(f"{env_id} {budgets[env_id]:,} steps" for env_id in envs if env_id in budgets) + ".",
        "Random policy: " + ", ".join(f"{env_id} {random_scores[env_id]:.1f}" for env_id in envs) + ".",
        "",
        "| Setting | " + " | ".join(f"{env_id} score (seeds) | norm." for env_id in envs) + " | avg normalised |",
        "|---|" + "---:|---:|" * len(envs) + "---:|",
    ]
    header = lines[-2:]
    averages: dict[str, float] = {}

    def add_rows(settings: Collection[str]) -> None:
        for setting in settings:
            cells, values = [], []
            for env_id in envs:
                runs = by_setting.get((env_id, setting), [])
                if not runs or (env_id, setting) not in normalised:
                    cells += ["-", "-"]
                    continue
                mean_std = f"{np.mean(runs):.1f} ± {np.std(runs):.1f} ({len(runs)})"
                cells += [mean_std, f"{normalised[env_id, setting]:.2f}"]
                values.append(normalised[env_id, setting])
            if values:
                averages[setting] = float(np.mean(values))
            average = f"{averages[setting]:.2f}" if values else "-"
            lines.append(f"| {setting} | " + " | ".join(cells) + f" | {average} |")

    add_rows(SETTINGS)
    variants = [setting for setting in VARIANTS if any(key[1] == setting for key in by_setting)]
    if variants:
        lines += [
            "",
            "Variants beyond the paper's table, normalised against its settings (1 = the best of them):",
            "",
            *header,
        ]
        add_rows(variants)
    lines += ["", "![Average normalised score per setting](table1.png)", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table1.md").write_text("\n".join(lines))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    # The paper's settings only: a variant may lack runs on some envs, so its average is not comparable.
    names = [name for name in averages if name in SETTINGS]
    colours = ["grey" if SETTINGS[name][0] == "ppo" else "tab:blue" for name in names]
    ax.barh(names[::-1], [averages[name] for name in names][::-1], color=colours[::-1])
    ax.set(xlabel=f"average normalised score ({', '.join(envs)})", title="PPO surrogates: grey = SB3 PPO-clip, blue = PPOKL")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "table1.png", dpi=120)
    plt.close(fig)
    print(f"Wrote {args.out / 'table1.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: Exit code
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train the pending runs (finished ones are skipped)")
    run_parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    run_parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=[*SETTINGS, *VARIANTS], metavar="SETTING")
    run_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run_parser.add_argument("--timesteps", type=int, help="Budget for every env (default: BUDGETS per env)")
    run_parser.add_argument("--jobs", type=int, default=2, help="Parallel worker processes")
    run_parser.add_argument("--device", default="cpu")
    report_parser = commands.add_parser("report", help="write table1.md and table1.png from the results")
    for sub_parser in (run_parser, report_parser):
        sub_parser.add_argument("--out", type=Path, default=OUT_DIR, help="Folder of results/ and the table")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
