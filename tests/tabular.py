"""
The small tabular MDP of the exact-gradient tests: three non-terminal states, two actions, stochastic transitions,
rewards of both signs, an absorbing terminal state and a hard horizon of ``HORIZON`` steps
(:class:`sb3_pgnotes.diagnostics.tabular.TabularMDP` gives the exact objective and gradient).
"""

from typing import Any

import numpy as np
import torch as th

from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.diagnostics import tabular

N_STATES = 3
N_ACTIONS = 2
TERMINAL = N_STATES
HORIZON = 6

# Initial state distribution over the non-terminal states.
INITIAL = np.array([0.6, 0.3, 0.1])
# TRANSITIONS[s, a, s'] over the non-terminal states and the terminal state (last column).
TRANSITIONS = np.array(
    [
        [[0.1, 0.7, 0.1, 0.1], [0.5, 0.1, 0.3, 0.1]],
        [[0.2, 0.2, 0.5, 0.1], [0.6, 0.1, 0.1, 0.2]],
        [[0.3, 0.3, 0.2, 0.2], [0.1, 0.1, 0.2, 0.6]],
    ]
)
# REWARDS[s, a]
REWARDS = np.array([[1.0, 0.0], [-0.5, 2.0], [0.5, -1.0]])


class TabularMDP(tabular.TabularMDP):
    """The MDP as a gymnasium env. It records every episode it plays, as lists of (state, action, reward)."""

    def __init__(self) -> None:
        super().__init__(INITIAL, TRANSITIONS, REWARDS, HORIZON)
        self.episodes: list[list[tuple[int, int, float]]] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        self.episodes.append([])
        return super().reset(seed=seed, options=options)

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        self.episodes[-1].append((self.state, int(action), float(self.rewards[self.state, int(action)])))
        return super().step(action)


MDP = TabularMDP()


def softmax_policy(logits: th.Tensor) -> th.Tensor:
    """
    :param logits: Per-state action logits, shape (N_STATES + 1, N_ACTIONS) (the terminal row is unused)
    :return: Per non-terminal state action probabilities, shape (N_STATES, N_ACTIONS)
    """
    return th.softmax(logits[:N_STATES], dim=-1)


def expected_return(probs: th.Tensor, gamma: float) -> th.Tensor:
    """:return: The exact objective (:meth:`~sb3_pgnotes.diagnostics.tabular.TabularMDP.expected_return`)"""
    return MDP.expected_return(probs, gamma)


def policy_gradient_surrogate(probs: th.Tensor, gamma: float, discount_decisions: bool = True) -> th.Tensor:
    """:return: The surrogate (:meth:`~sb3_pgnotes.diagnostics.tabular.TabularMDP.policy_gradient_surrogate`)"""
    return MDP.policy_gradient_surrogate(probs, gamma, discount_decisions)


def sample_episodes(probs: np.ndarray, n_episodes: int, rng: np.random.Generator) -> EpisodeBatch:
    """:return: Episodes (:meth:`~sb3_pgnotes.diagnostics.tabular.TabularMDP.sample_episodes`)"""
    return MDP.sample_episodes(probs, n_episodes, rng)
