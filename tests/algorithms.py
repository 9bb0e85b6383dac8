"""The algorithms every behaviour test runs on: a later algorithm joins the whole suite by adding one entry."""

from typing import Any

import pytest

from sb3_pgnotes import Reinforce

# (class, small constructor kwargs that keep a test run short)
ALGORITHMS = [
    pytest.param(Reinforce, {"n_episodes": 2}, id="reinforce"),
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
    pytest.param(Reinforce, {"n_critic_updates": 0}, "n_critic_updates", id="reinforce-n_critic_updates"),
    pytest.param(Reinforce, {"max_grad_norm": -1.0}, "max_grad_norm", id="reinforce-max_grad_norm"),
    pytest.param(Reinforce, {"episode_step_limit": 0}, "episode_step_limit", id="reinforce-episode_step_limit"),
    pytest.param(
        Reinforce, {"bootstrap_truncated": True, "baseline": "mean"}, "baseline='value'", id="reinforce-bootstrap_truncated"
    ),
]
