"""Learning to threshold: slow, excluded from the default run (``make test-all`` runs it)."""

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pgnotes import Reinforce


@pytest.mark.slow
def test_reinforce_solves_cartpole() -> None:
    # The README's quickstart: the constructor defaults, 100k steps.
    model = Reinforce("MlpPolicy", "CartPole-v1", seed=0).learn(100_000)
    mean_return, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=1), n_eval_episodes=20)
    assert mean_return >= 475
