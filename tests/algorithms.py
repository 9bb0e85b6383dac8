"""The algorithms every behaviour test runs on: a later algorithm joins the whole suite by adding one entry."""

from typing import Any

import pytest
from stable_baselines3.common.type_aliases import TrainFreq

from sb3_pgnotes import PPOKL, NStepAC, OffPolicyPG, Reinforce

# (class, small constructor kwargs that keep a test run short)
ALGORITHMS = [
    pytest.param(Reinforce, {"n_episodes": 2}, id="reinforce"),
    pytest.param(PPOKL, {"n_steps": 16, "batch_size": 8, "n_epochs": 2}, id="ppo_kl"),
    pytest.param(NStepAC, {"n_steps": 8, "target_n": 3}, id="nstep_ac"),
    pytest.param(
        NStepAC, {"mode": "online", "critic_target": "td", "n_grad_steps_per_target_update": 1}, id="nstep_ac-online"
    ),
    pytest.param(OffPolicyPG, {"batch_size": 2, "train_freq": (1, "episode"), "gradient_steps": 2}, id="offpolicy_pg"),
    pytest.param(
        OffPolicyPG,
        {"estimator": "first_order", "train_freq": 16, "c_bar": 2.0, "self_normalize": False, "baseline": "mean"},
        id="offpolicy_pg-first_order",
    ),
]

# Invalid constructor arguments, per algorithm: (kwargs, text the error message must contain).
BAD_ARGUMENTS: list[Any] = [
    pytest.param(Reinforce, {"n_episodes": 0}, "n_episodes", id="reinforce-n_episodes"),
    pytest.param(Reinforce, {"n_episodes": 2.5}, "n_episodes", id="reinforce-n_episodes-float"),
    pytest.param(Reinforce, {"gamma": 1.5}, "gamma", id="reinforce-gamma"),
    pytest.param(
        Reinforce, {"baseline": "optimal-ish"}, "baseline must be one of 'none', 'mean', 'value'", id="reinforce-baseline"
    ),
    pytest.param(Reinforce, {"loss_scale": "sum"}, "loss_scale must be one of 'episode', 'step'", id="reinforce-loss_scale"),
    pytest.param(Reinforce, {"discount_option": 3}, "discount_option must be one of 1, 2", id="reinforce-discount_option"),
    pytest.param(Reinforce, {"reward_to_go": "yes"}, "reward_to_go", id="reinforce-reward_to_go"),
    pytest.param(Reinforce, {"reward_to_go": 1}, "reward_to_go", id="reinforce-reward_to_go-int"),
    pytest.param(Reinforce, {"discount_option": True}, "discount_option", id="reinforce-discount_option-bool"),
    pytest.param(Reinforce, {"n_critic_updates": 0}, "n_critic_updates", id="reinforce-n_critic_updates"),
    pytest.param(Reinforce, {"max_grad_norm": -1.0}, "max_grad_norm", id="reinforce-max_grad_norm"),
    pytest.param(Reinforce, {"episode_step_limit": 0}, "episode_step_limit", id="reinforce-episode_step_limit"),
    pytest.param(
        Reinforce, {"bootstrap_truncated": True, "baseline": "mean"}, "baseline='value'", id="reinforce-bootstrap_truncated"
    ),
    pytest.param(PPOKL, {"n_steps": 0}, "n_steps", id="ppo_kl-n_steps"),
    pytest.param(PPOKL, {"batch_size": 1.5}, "batch_size", id="ppo_kl-batch_size"),
    pytest.param(PPOKL, {"batch_size": 1}, "batch_size must be > 1", id="ppo_kl-batch_size-normalize"),
    pytest.param(PPOKL, {"n_epochs": 0}, "n_epochs", id="ppo_kl-n_epochs"),
    pytest.param(PPOKL, {"gamma": 1.5}, "gamma", id="ppo_kl-gamma"),
    pytest.param(PPOKL, {"gae_lambda": -0.1}, "gae_lambda", id="ppo_kl-gae_lambda"),
    pytest.param(PPOKL, {"beta_mode": "auto"}, "beta_mode must be one of 'fixed', 'adaptive'", id="ppo_kl-beta_mode"),
    pytest.param(PPOKL, {"target_kl": 0.0}, "target_kl must be a number in (0, inf]", id="ppo_kl-target_kl"),
    pytest.param(PPOKL, {"kl_estimator": "k2"}, "kl_estimator must be one of 'analytic', 'sample'", id="ppo_kl-kl_estimator"),
    pytest.param(PPOKL, {"beta": -1.0, "beta_mode": "fixed"}, "beta must be a number in [0, inf]", id="ppo_kl-beta"),
    pytest.param(PPOKL, {"beta": 0.0}, "beta must be a number in [0.0001, 10000]", id="ppo_kl-beta-adaptive-zero"),
    pytest.param(PPOKL, {"beta": 20.0, "beta_max": 10.0}, "beta must be a number in [0.0001, 10]", id="ppo_kl-beta-bounds"),
    pytest.param(PPOKL, {"kl_target": 0.0}, "kl_target must be a number in (0, inf]", id="ppo_kl-kl_target"),
    pytest.param(PPOKL, {"kl_tolerance": 1.0}, "kl_tolerance must be a number in (1, inf]", id="ppo_kl-kl_tolerance"),
    pytest.param(PPOKL, {"beta_factor": 0.5}, "beta_factor must be a number in (1, inf]", id="ppo_kl-beta_factor"),
    pytest.param(PPOKL, {"beta_min": -1.0}, "beta_min", id="ppo_kl-beta_min"),
    pytest.param(PPOKL, {"beta_min": 1.0, "beta_max": 0.5}, "beta_max must be a number in [1, inf]", id="ppo_kl-beta_max"),
    pytest.param(PPOKL, {"normalize_advantage": "yes"}, "normalize_advantage", id="ppo_kl-normalize_advantage"),
    pytest.param(PPOKL, {"vf_coef": -0.5}, "vf_coef", id="ppo_kl-vf_coef"),
    pytest.param(PPOKL, {"max_grad_norm": 0.0}, "max_grad_norm", id="ppo_kl-max_grad_norm"),
    pytest.param(NStepAC, {"mode": "sync"}, "mode must be one of 'batch', 'online'", id="nstep_ac-mode"),
    pytest.param(
        NStepAC, {"critic_target": "gae"}, "critic_target must be one of 'mc', 'td', 'nstep'", id="nstep_ac-critic_target"
    ),
    pytest.param(NStepAC, {"target_n": 0}, "target_n", id="nstep_ac-target_n"),
    pytest.param(NStepAC, {"n_steps": 0}, "n_steps", id="nstep_ac-n_steps"),
    pytest.param(
        NStepAC,
        {"critic_target": "mc", "n_steps": 5},
        "n_steps must be None with collection='episodes'",
        id="nstep_ac-mc-n_steps",
    ),
    pytest.param(
        NStepAC, {"mode": "online", "critic_target": "nstep"}, "critic_target must be 'td'", id="nstep_ac-online-target"
    ),
    pytest.param(
        NStepAC,
        {"mode": "online", "critic_target": "td", "n_steps": 5},
        "n_steps must be None or 1",
        id="nstep_ac-online-n_steps",
    ),
    pytest.param(NStepAC, {"n_target_updates": 0}, "n_target_updates", id="nstep_ac-n_target_updates"),
    pytest.param(
        NStepAC, {"n_grad_steps_per_target_update": 1.5}, "n_grad_steps_per_target_update", id="nstep_ac-n_grad_steps"
    ),
    pytest.param(NStepAC, {"discount_option": 0}, "discount_option must be one of 1, 2", id="nstep_ac-discount_option"),
    pytest.param(NStepAC, {"normalize_advantage": "yes"}, "normalize_advantage", id="nstep_ac-normalize_advantage"),
    pytest.param(NStepAC, {"gamma": -0.1}, "gamma", id="nstep_ac-gamma"),
    pytest.param(NStepAC, {"max_grad_norm": 0.0}, "max_grad_norm", id="nstep_ac-max_grad_norm"),
    pytest.param(NStepAC, {"use_sde": "yes"}, "use_sde must be one of True, False", id="nstep_ac-use_sde"),
    pytest.param(NStepAC, {"sde_sample_freq": 2.5}, "sde_sample_freq must be an integer", id="nstep_ac-sde_sample_freq"),
    pytest.param(
        OffPolicyPG,
        {"estimator": "trajectory"},
        "estimator must be one of 'per_decision', 'first_order'",
        id="offpolicy_pg-estimator",
    ),
    pytest.param(
        OffPolicyPG, {"baseline": "optimal"}, "baseline must be one of 'none', 'mean', 'value'", id="offpolicy_pg-baseline"
    ),
    pytest.param(
        OffPolicyPG, {"discount_option": 3}, "discount_option must be one of 1, 2", id="offpolicy_pg-discount_option"
    ),
    pytest.param(OffPolicyPG, {"c_bar": 0.0}, "c_bar must be a number in (0, inf]", id="offpolicy_pg-c_bar"),
    pytest.param(
        OffPolicyPG, {"self_normalize": 1}, "self_normalize must be one of True, False", id="offpolicy_pg-self_normalize"
    ),
    pytest.param(OffPolicyPG, {"normalize_advantage": "yes"}, "normalize_advantage", id="offpolicy_pg-normalize_advantage"),
    pytest.param(OffPolicyPG, {"buffer_size": 0}, "buffer_size must be an integer >= 1", id="offpolicy_pg-buffer_size"),
    pytest.param(OffPolicyPG, {"max_buffer_episodes": 0}, "max_buffer_episodes", id="offpolicy_pg-max_buffer_episodes"),
    pytest.param(
        OffPolicyPG, {"learning_starts": -1}, "learning_starts must be an integer >= 0", id="offpolicy_pg-learning_starts"
    ),
    pytest.param(OffPolicyPG, {"batch_size": 2.5}, "batch_size", id="offpolicy_pg-batch_size"),
    pytest.param(
        OffPolicyPG, {"gradient_steps": -2}, "gradient_steps must be an integer >= -1", id="offpolicy_pg-gradient_steps"
    ),
    pytest.param(
        OffPolicyPG,
        {"train_freq": (2, "update")},
        "train_freq unit must be one of 'step', 'episode'",
        id="offpolicy_pg-train_freq-unit",
    ),
    pytest.param(
        OffPolicyPG,
        {"train_freq": TrainFreq(2, "update")},  # type: ignore[arg-type]
        "train_freq unit must be one of 'step', 'episode'",
        id="offpolicy_pg-TrainFreq-unit",
    ),
    pytest.param(OffPolicyPG, {"train_freq": 0}, "train_freq must be an integer >= 1", id="offpolicy_pg-train_freq"),
    pytest.param(OffPolicyPG, {"gamma": 1.5}, "gamma", id="offpolicy_pg-gamma"),
    pytest.param(OffPolicyPG, {"ent_coef": -0.1}, "ent_coef", id="offpolicy_pg-ent_coef"),
    pytest.param(OffPolicyPG, {"max_grad_norm": 0.0}, "max_grad_norm", id="offpolicy_pg-max_grad_norm"),
    pytest.param(OffPolicyPG, {"n_critic_updates": 0}, "n_critic_updates", id="offpolicy_pg-n_critic_updates"),
]
