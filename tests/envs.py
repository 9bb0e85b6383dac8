"""Tiny deterministic environments for exact checks of episode collection and returns."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CountingEnv(gym.Env):
    """
    Observation and reward are the step index; the episode terminates after ``length`` steps
    (never, if ``length`` is None: wrap it in a TimeLimit to truncate it).

    :param length: Episode length, or None for an endless episode
    :param action_low: Lower bound of the Box action space (actions received are recorded)
    :param action_high: Upper bound of the Box action space
    :param reward: Per-step reward override (e.g. NaN)
    """

    def __init__(
        self, length: int | None = 3, action_low: float = -1.0, action_high: float = 1.0, reward: float | None = None
    ) -> None:
        super().__init__()
        self.length = length
        self.reward = reward
        self.observation_space = spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(action_low, action_high, shape=(1,), dtype=np.float32)
        self.received_actions: list[np.ndarray] = []
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.received_actions.append(np.array(action))
        reward = float(self.t) if self.reward is None else self.reward
        self.t += 1
        terminated = self.length is not None and self.t >= self.length
        return np.array([float(self.t)], dtype=np.float32), reward, terminated, False, {}


class MatrixActionEnv(gym.Env):
    """
    A ``Box`` action space of shape (2, 2) with bounds [-2, 2]; each episode lasts ``length`` steps, or never ends
    (``length=None``). Every action received is recorded.

    :param length: Episode length, or None for an endless episode
    """

    def __init__(self, length: int | None = 5) -> None:
        super().__init__()
        self.length = length
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, shape=(2, 2), dtype=np.float32)
        self.received_actions: list[np.ndarray] = []
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.received_actions.append(np.array(action))
        self.t += 1
        terminated = self.length is not None and self.t >= self.length
        return np.full(3, 0.1 * self.t, dtype=np.float32), float(np.sum(action)), terminated, False, {}


class SpaceEnv(gym.Env):
    """
    An env with the given spaces that returns samples of them; episodes last 5 steps.

    :param observation_space: Its observation space
    :param action_space: Its action space
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t >= 5, False, {}


class FaultyEnv(gym.Env):
    """
    Four float observations and two actions; episodes last 10 steps. Its ``fault_step``-th step (counted over its
    whole life, from 1) returns a NaN reward, or a NaN observation.

    :param fault_step: The step that returns NaN
    :param where: ``"reward"`` or ``"observation"``
    :param continuous: A Box action space instead of Discrete(2)
    """

    def __init__(self, fault_step: int, where: str = "reward", continuous: bool = False) -> None:
        super().__init__()
        self.fault_step = fault_step
        self.where = where
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32) if continuous else spaces.Discrete(2)
        self.steps = 0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.full(4, 0.1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.steps += 1
        self.t += 1
        observation = np.full(4, 0.1 * self.t, dtype=np.float32)
        reward = 1.0
        if self.steps == self.fault_step:
            if self.where == "reward":
                reward = float("nan")
            else:
                observation[2] = np.nan
        return observation, reward, self.t >= 10, False, {}
