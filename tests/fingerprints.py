"""
Seeded behaviour fingerprints: every algorithm configuration trains a few thousand steps from a fixed seed, and
a few statistics of its parameters are recorded. A refactoring that keeps the numerics keeps the fingerprints.

``python tests/fingerprints.py`` rewrites ``tests/fingerprints.json`` (only when the numerics are meant to change,
with the reason in the commit); ``tests/test_fingerprints.py`` compares against it.
"""

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pgnotes import PPOKL, NStepAC, OffPolicyPG, Reinforce

FINGERPRINT_FILE = Path(__file__).with_name("fingerprints.json")
ENVS = ("CartPole-v1", "Pendulum-v1")
TIMESTEPS = 2_000

# Every mode, estimator and baseline of the behaviour suite's algorithms, with small budgets.
CONFIGS: dict[str, tuple[type[BaseAlgorithm], dict[str, Any]]] = {
    "reinforce-value": (Reinforce, {"n_episodes": 2}),
    "reinforce-none-full": (Reinforce, {"n_episodes": 2, "baseline": "none", "reward_to_go": False}),
    "reinforce-mean-option2": (Reinforce, {"n_episodes": 3, "baseline": "mean", "discount_option": 2, "n_envs": 2}),
    "reinforce-optimal": (Reinforce, {"n_episodes": 3, "baseline": "optimal", "normalize_advantage": False}),
    "reinforce-bootstrap": (Reinforce, {"n_episodes": 2, "bootstrap_truncated": True, "ent_coef": 0.01}),
    "ppo_kl": (PPOKL, {"n_steps": 16, "batch_size": 8, "n_epochs": 2}),
    "nstep_ac": (NStepAC, {"n_steps": 8, "target_n": 3, "n_envs": 2}),
    "nstep_ac-td-option2": (NStepAC, {"n_steps": 8, "critic_target": "td", "discount_option": 2}),
    "nstep_ac-mc": (NStepAC, {"critic_target": "mc", "n_episodes": 2, "n_target_updates": 2}),
    "nstep_ac-online": (NStepAC, {"mode": "online", "critic_target": "td", "n_grad_steps_per_target_update": 1, "n_envs": 4}),
    "offpolicy_pg": (OffPolicyPG, {"batch_size": 2, "train_freq": (1, "episode"), "gradient_steps": 2}),
    "offpolicy_pg-first_order": (
        OffPolicyPG,
        {"estimator": "first_order", "train_freq": 16, "c_bar": 2.0, "self_normalize": False, "baseline": "mean", "n_envs": 2},
    ),
}


def fingerprint(name: str, env_id: str) -> list[float]:
    """
    :param name: A key of :data:`CONFIGS`
    :param env_id: The env
    :return: Sum, sum of absolute values and the first three entries of the flattened policy parameters
    """
    from stable_baselines3.common.env_util import make_vec_env

    algo, kwargs = CONFIGS[name]
    kwargs = dict(kwargs)
    env = make_vec_env(env_id, n_envs=kwargs.pop("n_envs", 1), seed=0)
    th.manual_seed(0)
    model = algo("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.learn(TIMESTEPS)
    flat = th.cat([p.detach().flatten() for p in model.policy.parameters()]).double().numpy()
    return [float(flat.sum()), float(np.abs(flat).sum()), *map(float, flat[:3])]


def all_fingerprints() -> dict[str, list[float]]:
    """:return: Every configuration's fingerprint on every env, keyed ``name/env``"""
    th.set_num_threads(1)
    return {f"{name}/{env_id}": fingerprint(name, env_id) for name in CONFIGS for env_id in ENVS}


if __name__ == "__main__":
    prints = all_fingerprints()
    FINGERPRINT_FILE.write_text(json.dumps(prints, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(prints, indent=1), file=sys.stdout)
