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
