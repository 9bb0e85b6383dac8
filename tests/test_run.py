"""Every option trains a few hundred steps; seeds, logging, schedules and errors behave as in SB3."""

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from algorithms import ALGORITHMS, BAD_ARGUMENTS
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from sb3_pgnotes import Reinforce


@pytest.mark.parametrize("reward_to_go", [True, False])
@pytest.mark.parametrize("baseline", ["none", "mean", "value"])
@pytest.mark.parametrize("discount_option", [1, 2])
@pytest.mark.parametrize("loss_scale", ["episode", "step"])
def test_reinforce_options(reward_to_go: bool, baseline: str, discount_option: int, loss_scale: str) -> None:
    model = Reinforce(
        "MlpPolicy",
        "CartPole-v1",
        n_episodes=2,
        reward_to_go=reward_to_go,
        baseline=baseline,
        discount_option=discount_option,
        loss_scale=loss_scale,
        ent_coef=0.01,
        max_grad_norm=0.5,
        seed=0,
    )
    model.learn(200)
    assert model._n_updates >= 1


def test_reinforce_pendulum_gaussian_with_bootstrap_and_schedules() -> None:
    model = Reinforce(
        "MlpPolicy",
        "Pendulum-v1",
        n_episodes=1,
        bootstrap_truncated=True,
        learning_rate=lambda progress: 1e-3 * progress,
        critic_learning_rate=lambda progress: 1e-2 * progress,
        seed=0,
    )
    model.learn(400)
    # 400 steps = two 200-step episodes: the second update sees progress 0 exactly, never negative.
    assert model._current_progress_remaining == 0.0
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.0
    assert model.critic_optimizer.param_groups[0]["lr"] == 0.0


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_progress_remaining_never_negative(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    seen: list[float] = []
    model = algo("MlpPolicy", "CartPole-v1", learning_rate=lambda p: seen.append(p) or 1e-3, seed=0, **kwargs)
    # 10 steps: an episodic or multi-step rollout overshoots them, a one-step online update stops exactly there.
    model.learn(10)
    assert model.num_timesteps >= 10
    assert min(seen) == 0.0


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_seeded_runs_are_identical(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    def train() -> dict[str, th.Tensor]:
        return algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), seed=3, **kwargs).learn(300).policy.state_dict()

    first, second = train(), train()
    for name in first:
        th.testing.assert_close(first[name], second[name])


@pytest.mark.parametrize(("algo", "kwargs", "message"), BAD_ARGUMENTS)
def test_bad_arguments_raise_at_construction(algo: type[BaseAlgorithm], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        algo("MlpPolicy", "CartPole-v1", **kwargs)


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_logs_sb3_keys_and_tensorboard(algo: type[BaseAlgorithm], kwargs: dict[str, Any], tmp_path: Path) -> None:
    model = algo("MlpPolicy", "CartPole-v1", tensorboard_log=str(tmp_path / "tb"), seed=0, **kwargs)
    model.learn(100)
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))

    model.set_logger(configure(str(tmp_path / "csv"), ["csv"]))
    model.learn(300, log_interval=1)
    header = (tmp_path / "csv" / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("train/policy_gradient_loss", "train/entropy_loss", "train/learning_rate", "train/n_updates", "time/fps"):
        assert key in header


def test_value_baseline_logs_critic_keys(tmp_path: Path) -> None:
    model = Reinforce("MlpPolicy", "CartPole-v1", n_episodes=2, baseline="value", seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(300)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("train/value_loss", "train/explained_variance", "train/critic_learning_rate", "rollout/ep_rew_mean"):
        assert key in header


def test_set_env_and_load_with_other_n_envs(tmp_path: Path) -> None:
    model = Reinforce("MlpPolicy", "CartPole-v1", n_episodes=3, seed=0).learn(100)
    model.set_env(make_vec_env("CartPole-v1", n_envs=1, seed=1))
    model.learn(100, reset_num_timesteps=False)
    model.save(tmp_path / "model")
    loaded = Reinforce.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=3, seed=1))
    loaded.learn(300, reset_num_timesteps=False)
    np.testing.assert_array_equal(loaded.episode_quotas(3), [1, 1, 1])
    np.testing.assert_array_equal(loaded.episode_quotas(2), [2, 1])


def test_numpy_numbers_are_accepted() -> None:
    model = Reinforce("MlpPolicy", "CartPole-v1", gamma=np.float32(0.9), n_episodes=np.int64(2), discount_option=np.int64(2))
    assert model.gamma == pytest.approx(0.9)
