"""The benchmark entries (ours, their variants and SB3's) and the resolution of their hyperparameters for one env."""

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pgnotes.zoo.registry import preprocess_hyperparams

REPO_HYPERPARAMS = Path(__file__).resolve().parents[1] / "hyperparams"
ZOO_HYPERPARAMS = Path(str(resources.files("rl_zoo3") / "hyperparams"))


@dataclass(frozen=True)
class AlgoSpec:
    """
    One benchmark entry.

    :param name: Registry key, used on the command line and in result records.
    :param algo_class: ``"module:Class"``, imported only when the entry runs.
    :param hyperparams_file: rl-zoo3-format YAML keyed by env id; used when it exists and holds the env.
    :param default_kwargs: Hyperparameters (same format) for envs the YAML lacks.
    :param analogue: Registry name of the SB3 algorithm that the throughput mode compares this one against.
    :param overrides: Hyperparameters applied on top of the YAML entry or the default kwargs (for variants of an
        algorithm that differ in one option).
    """

    name: str
    algo_class: str
    hyperparams_file: Path | None = None
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)
    analogue: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def load_class(self) -> type[BaseAlgorithm]:
        """:return: The algorithm class named by ``algo_class``."""
        module, _, attr = self.algo_class.partition(":")
        return getattr(importlib.import_module(module), attr)


#: Reinforce's fallback hyperparameters for envs its YAML lacks.
REINFORCE_DEFAULTS = {
    "n_envs": 4,
    "n_episodes": 8,
    "learning_rate": 3e-3,
    "gamma": 0.99,
    "reward_to_go": True,
    "baseline": "value",
}
#: NStepAC's fallback hyperparameters for envs its YAML lacks (A2C's 8 envs x 5 steps).
NSTEP_AC_DEFAULTS = {"n_envs": 8, "mode": "batch", "critic_target": "nstep", "n_steps": 5, "target_n": 5}
#: OffPolicyPG at Reinforce's work per update, for the throughput comparison: each update collects 10 episodes and
#: takes one actor step on those 10 and 10 critic steps, as Reinforce's CartPole-v1 entry. At learning rate 0 (every
#: gradient still computed and applied), so that it and a fixed-policy Reinforce collect the same episodes: otherwise
#: the one that learns faster has longer episodes, fewer updates per env step and more env steps/s.
OFFPOLICY_PG_MATCHED = {
    "train_freq": (10, "episode"),
    "gradient_steps": 1,
    "batch_size": 10,
    "max_buffer_episodes": 10,
    "n_critic_updates": 10,
    "learning_rate": 0.0,
    "critic_learning_rate": 0.0,
}

ALGOS: dict[str, AlgoSpec] = {
    spec.name: spec
    for spec in (
        AlgoSpec("ppo", "stable_baselines3:PPO", ZOO_HYPERPARAMS / "ppo.yml"),
        AlgoSpec("a2c", "stable_baselines3:A2C", ZOO_HYPERPARAMS / "a2c.yml"),
        AlgoSpec("sac", "stable_baselines3:SAC", ZOO_HYPERPARAMS / "sac.yml"),
        AlgoSpec(
            "reinforce",
            "sb3_pgnotes:Reinforce",
            REPO_HYPERPARAMS / "reinforce.yml",
            default_kwargs=REINFORCE_DEFAULTS,
            analogue="a2c",
        ),
        # A2C's work per update (one actor step and one critic step) on Reinforce's episodes, for the throughput mode.
        AlgoSpec(
            "reinforce_1_critic_step",
            "sb3_pgnotes:Reinforce",
            REPO_HYPERPARAMS / "reinforce.yml",
            default_kwargs=REINFORCE_DEFAULTS,
            analogue="a2c",
            overrides={"n_critic_updates": 1},
        ),
        AlgoSpec(
            "nstep_ac",
            "sb3_pgnotes:NStepAC",
            REPO_HYPERPARAMS / "nstep_ac.yml",
            default_kwargs=NSTEP_AC_DEFAULTS,
            analogue="a2c",
        ),
        # The cost of the critic's several steps per update: A2C's work per update, its 5-step rollout (rl-zoo3's
        # CartPole-v1 entry) and one critic step.
        AlgoSpec(
            "nstep_ac_1_critic_step",
            "sb3_pgnotes:NStepAC",
            REPO_HYPERPARAMS / "nstep_ac.yml",
            default_kwargs=NSTEP_AC_DEFAULTS,
            analogue="a2c",
            overrides={"n_steps": 5, "target_n": 5, "n_target_updates": 1, "n_grad_steps_per_target_update": 1},
        ),
        # Online actor-critic (docs/theory.md, Critic targets): an update after every env step, the 8 workers forming
        # the batch. An actor learning rate of 7e-4 (A2C's) was unstable on CartPole-v1, and without standardised
        # advantages one seed in five never learned (docs/benchmarks/nstep_ac).
        AlgoSpec(
            "nstep_ac_online",
            "sb3_pgnotes:NStepAC",
            default_kwargs={
                "n_envs": 8,
                "mode": "online",
                "critic_target": "td",
                "learning_rate": 3e-4,
                "critic_learning_rate": 1e-3,
                "n_grad_steps_per_target_update": 1,
                "normalize_advantage": True,
            },
            analogue="a2c",
        ),
        # Reinforce's baselines compared on the YAML settings, without advantage standardisation (which would act as
        # a batch-mean baseline of its own and which baseline="optimal" refuses).
        *(
            AlgoSpec(
                f"reinforce_{baseline}",
                "sb3_pgnotes:Reinforce",
                REPO_HYPERPARAMS / "reinforce.yml",
                overrides={"baseline": baseline, "normalize_advantage": False},
            )
            for baseline in ("none", "mean", "value", "optimal")
        ),
        # The same with 4 episodes per update: with one (Acrobot's YAML) the batch mean is the episode's own return and
        # the optimal baseline comes from earlier updates only.
        *(
            AlgoSpec(
                f"reinforce_{baseline}_4ep",
                "sb3_pgnotes:Reinforce",
                REPO_HYPERPARAMS / "reinforce.yml",
                overrides={"baseline": baseline, "normalize_advantage": False, "n_episodes": 4},
            )
            for baseline in ("none", "mean", "value", "optimal")
        ),
        # Envs missing from ppo_kl.yml use PPOKL's defaults (the PPO paper's MuJoCo settings, adaptive KL d_targ 0.01).
        AlgoSpec("ppo_kl", "sb3_pgnotes:PPOKL", REPO_HYPERPARAMS / "ppo_kl.yml", analogue="ppo"),
        # The sampled KL (from the log-ratios the surrogate already needs) instead of the analytic one, whose rollout
        # distributions are extra work per minibatch: what the closed form costs, in the throughput comparison.
        AlgoSpec(
            "ppo_kl_sample",
            "sb3_pgnotes:PPOKL",
            REPO_HYPERPARAMS / "ppo_kl.yml",
            analogue="ppo",
            overrides={"kl_estimator": "sample"},
        ),
        # Importance-sampled policy gradient over replayed episodes. Envs missing from offpolicy_pg.yml use
        # OffPolicyPG's defaults. The throughput mode compares the _matched entries below.
        AlgoSpec("offpolicy_pg", "sb3_pgnotes:OffPolicyPG", REPO_HYPERPARAMS / "offpolicy_pg.yml"),
        # OffPolicyPG against Reinforce at the same work per update, both at a fixed policy.
        AlgoSpec(
            "offpolicy_pg_matched",
            "sb3_pgnotes:OffPolicyPG",
            REPO_HYPERPARAMS / "offpolicy_pg.yml",
            analogue="reinforce_fixed_policy",
            overrides=OFFPOLICY_PG_MATCHED,
        ),
        # The same against SB3's A2C, whose n_steps the throughput mode matches to its steps per update, at A2C's
        # work per update: one actor step and one critic step on the same env steps.
        AlgoSpec(
            "offpolicy_pg_matched_a2c",
            "sb3_pgnotes:OffPolicyPG",
            REPO_HYPERPARAMS / "offpolicy_pg.yml",
            analogue="a2c",
            overrides={**OFFPOLICY_PG_MATCHED, "n_critic_updates": 1},
        ),
        # What a user gets first on an env that no YAML covers: the constructor's defaults and one env, e.g.
        # Reinforce("MlpPolicy", env), beside SB3's PPO and A2C built the same way (the bar for our defaults).
        *(
            AlgoSpec(f"{name}_defaults", algo_class)
            for name, algo_class in (
                ("reinforce", "sb3_pgnotes:Reinforce"),
                ("nstep_ac", "sb3_pgnotes:NStepAC"),
                ("ppo_kl", "sb3_pgnotes:PPOKL"),
                ("offpolicy_pg", "sb3_pgnotes:OffPolicyPG"),
                ("ppo", "stable_baselines3:PPO"),
                ("a2c", "stable_baselines3:A2C"),
            )
        ),
        AlgoSpec(
            "reinforce_fixed_policy",
            "sb3_pgnotes:Reinforce",
            REPO_HYPERPARAMS / "reinforce.yml",
            default_kwargs=REINFORCE_DEFAULTS,
            overrides={"learning_rate": 0.0, "critic_learning_rate": 0.0},
        ),
    )
}


@dataclass
class RunConfig:
    """
    Everything needed to build one run, resolved from an :class:`AlgoSpec` for one env.

    :param algo_class: The algorithm class.
    :param policy: Policy name or class passed to the constructor.
    :param n_envs: Number of parallel training envs.
    :param normalize_kwargs: ``VecNormalize`` kwargs, or None for no normalisation.
    :param model_kwargs: Remaining constructor kwargs.
    :param source: Where the hyperparameters came from (a YAML file or ``"registry"``).
    """

    algo_class: type[BaseAlgorithm]
    policy: str
    n_envs: int
    normalize_kwargs: dict[str, Any] | None
    model_kwargs: dict[str, Any]
    source: str


def env_versions(env_id: str) -> list[str]:
    """
    :param env_id: Gymnasium env id, e.g. ``"Hopper-v5"``.
    :return: The id, then the same env's earlier versions, newest first (``Hopper-v4`` ... ``Hopper-v0``).
    """
    name, separator, version = env_id.rpartition("-v")
    if not separator or not version.isdigit():
        return [env_id]
    return [env_id, *(f"{name}-v{earlier}" for earlier in range(int(version) - 1, -1, -1))]


def resolve(spec: AlgoSpec, env_id: str) -> RunConfig:
    """
    :param spec: The registry entry.
    :param env_id: Gymnasium env id.
    :return: The run configuration, from the entry's YAML when it covers ``env_id`` (or, failing that, an earlier
        version of the env: rl-zoo3's MuJoCo entries are for the v4 envs), else from its default kwargs.
    """
    raw: Mapping[str, Any] = spec.default_kwargs
    source = "registry"
    if spec.hyperparams_file is not None and spec.hyperparams_file.exists():
        with open(spec.hyperparams_file) as file:
            table = yaml.safe_load(file) or {}
        entry = next((candidate for candidate in env_versions(env_id) if candidate in table), None)
        if entry is not None:
            raw = table[entry]
            source = spec.hyperparams_file.name + ("" if entry == env_id else f" ({entry} entry)")
    raw = {**raw, **spec.overrides}
    policy, n_envs, normalize_kwargs, model_kwargs = preprocess_hyperparams(raw, env_id)
    return RunConfig(spec.load_class(), policy, n_envs, normalize_kwargs, model_kwargs, source)
