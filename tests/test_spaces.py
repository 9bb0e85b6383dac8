"""Every action and observation space the math allows."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from algorithms import ALGORITHMS
from envs import CountingEnv
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from sb3_pgnotes import Reinforce


class DiscreteObsEnv(gym.Env):
    """Discrete observations (one-hot encoded by SB3), two actions, 5-step episodes."""

    observation_space = spaces.Discrete(4)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        self.t += 1
        return self.t % 4, float(action), self.t >= 5, False, {}


class SpaceObsEnv(gym.Env):
    """Observations sampled from a given space, two actions, 5-step episodes."""

    action_space = spaces.Discrete(2)

    def __init__(self, observation_space: spaces.Space) -> None:
        self.observation_space = observation_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        self.t += 1
        return self.observation_space.sample(), float(action), self.t >= 5, False, {}


ENVS = [
    pytest.param("MlpPolicy", lambda: IdentityEnv(2, ep_length=10), id="discrete-action"),
    pytest.param("MlpPolicy", lambda: IdentityEnvBox(ep_length=10), id="box-action"),
    pytest.param("MlpPolicy", lambda: IdentityEnvMultiDiscrete(2, ep_length=10), id="multidiscrete-action"),
    pytest.param("MlpPolicy", lambda: IdentityEnvMultiBinary(2, ep_length=10), id="multibinary-action"),
    pytest.param("MlpPolicy", DiscreteObsEnv, id="discrete-obs"),
    pytest.param("MlpPolicy", lambda: SpaceObsEnv(spaces.MultiDiscrete([3, 4])), id="multidiscrete-obs"),
    pytest.param("MlpPolicy", lambda: SpaceObsEnv(spaces.MultiBinary(3)), id="multibinary-obs"),
    pytest.param("MultiInputPolicy", lambda: SimpleMultiObsEnv(random_start=False), id="dict-obs"),
    pytest.param(
        "CnnPolicy",
        lambda: gym.wrappers.TimeLimit(FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), 10),
        id="image-obs",
    ),
]


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
@pytest.mark.parametrize(("policy", "make_env"), ENVS)
def test_spaces(algo: type[BaseAlgorithm], kwargs: dict[str, Any], policy: str, make_env: Any) -> None:
    env = DummyVecEnv([make_env, make_env])
    model = algo(policy, env, seed=0, **kwargs).learn(60)
    observation = env.reset()
    actions, _ = model.predict(observation, deterministic=True)
    assert env.action_space.contains(actions[0])


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_subproc_vec_env(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    env = SubprocVecEnv([lambda: gym.make("CartPole-v1")] * 2)
    try:
        algo("MlpPolicy", env, seed=0, **kwargs).learn(200)
    finally:
        env.close()


def test_gaussian_actions_clipped_for_env_raw_for_log_prob() -> None:
    # Bounds far inside the initial policy's spread: raw samples leave them, the env must not see that.
    base_env = CountingEnv(length=20, action_low=-0.05, action_high=0.05)
    model = Reinforce("MlpPolicy", DummyVecEnv([lambda: base_env]), n_episodes=1, seed=0)
    _, callback = model._setup_learn(100)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    batch = model.episode_batch
    assert batch is not None
    assert np.abs(batch.actions).max() > 0.05
    assert np.abs(np.array(base_env.received_actions)).max() <= 0.05
    with th.no_grad():
        distribution = model.policy.get_distribution(th.as_tensor(batch.observations))
        log_prob = distribution.log_prob(th.as_tensor(batch.actions)).numpy()
    np.testing.assert_allclose(log_prob, batch.log_probs, rtol=1e-5)
