"""SB3's callbacks work unchanged."""

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from algorithms import ALGORITHMS
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm


class StopAfter(BaseCallback):
    """Stops training after ``n_calls`` env steps."""

    def __init__(self, n_calls: int) -> None:
        super().__init__()
        self.stop_at = n_calls

    def _on_step(self) -> bool:
        return self.n_calls < self.stop_at


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_eval_and_checkpoint_callbacks(algo: type[BaseAlgorithm], kwargs: dict[str, Any], tmp_path: Path) -> None:
    eval_callback = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=1),
        eval_freq=100,
        n_eval_episodes=2,
        best_model_save_path=str(tmp_path),
        log_path=str(tmp_path),
    )
    checkpoint = CheckpointCallback(save_freq=100, save_path=str(tmp_path / "checkpoints"))
    model = algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **kwargs)
    model.learn(500, callback=CallbackList([eval_callback, checkpoint]))
    assert eval_callback.evaluations_timesteps, "EvalCallback never evaluated"
    assert (tmp_path / "best_model.zip").exists()
    assert list((tmp_path / "checkpoints").glob("rl_model_*_steps.zip"))


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_stop_on_max_episodes(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    model = algo("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
    callback = StopTrainingOnMaxEpisodes(max_episodes=3)
    model.learn(100_000, callback=callback)
    assert callback.n_episodes == 3
    assert model.num_timesteps < 100_000


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_callback_stops_training_mid_rollout(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    model = algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **kwargs)
    model.learn(100_000, callback=StopAfter(7))
    assert model.num_timesteps == 14
    # Training resumes cleanly after a stop in the middle of a rollout.
    model.learn(200, reset_num_timesteps=False)
    assert model.num_timesteps >= 214


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_progress_bar(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    algo("MlpPolicy", "CartPole-v1", seed=0, **kwargs).learn(200, progress_bar=True)


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_callback_locals_as_sb3_gives_them(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    # SB3's loops give callbacks their locals: the algorithm as `self`, its buffer, and the step's actions under the
    # names of SB3's on-policy (actions, clipped_actions) or off-policy (buffer_actions, actions) loop.
    seen: list[dict[str, Any]] = []

    def record(locals_: dict[str, Any], globals_: dict[str, Any]) -> bool:
        seen.append(dict(locals_))
        return True

    model = algo("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0, **kwargs)
    model.learn(400, callback=record)
    assert seen and all(step["self"] is model for step in seen)
    low, high = model.action_space.low, model.action_space.high
    if isinstance(model, OffPolicyAlgorithm):
        sampled, sent = "buffer_actions", "actions"
        assert all(step["replay_buffer"] is model.replay_buffer and "train_freq" in step for step in seen)
        # Counted from 1 within each collection, as SB3's off-policy loop counts them.
        counts = [step["num_collected_steps"] for step in seen]
        assert counts[0] == 1 and all(now in (1, before + 1) for before, now in itertools.pairwise(counts))
        assert all(step["num_collected_episodes"] >= 0 for step in seen)
    else:
        sampled, sent = "actions", "clipped_actions"
        assert all(step["rollout_buffer"] is model.rollout_buffer for step in seen)
        # The steps before this one in the rollout, as SB3's on-policy loop counts them.
        counts = [step["n_steps"] for step in seen]
        assert counts[0] == 0 and all(now in (0, before + 1) for before, now in itertools.pairwise(counts))
    for step in seen:
        assert step[sent].shape == step[sampled].shape == (2, 1)
        np.testing.assert_array_equal(step[sent], np.clip(step[sampled], low, high))
        assert {"new_obs", "rewards", "dones", "infos", "env"} <= set(step)
    # Gaussian samples leave the bounds now and then: the two names hold different arrays.
    assert any(not np.array_equal(step[sent], step[sampled]) for step in seen)
