"""
A small episodic tabular MDP with an exact policy gradient, for checking policy-gradient estimators.

Three non-terminal states, two actions, stochastic transitions, rewards that depend on state and action, an
absorbing terminal state and a hard horizon: every episode terminates within ``HORIZON`` steps. The
observation is the state index (``Discrete(N_STATES + 1)``, the last index being the terminal state), which SB3
one-hot encodes, so an actor with ``net_arch=dict(pi=[])`` is a linear softmax over states.

The horizon is part of the task (the episode terminates, it is not a time-limit truncation) and the time index
is not in the observation: the exact objective below accounts for time explicitly, and the REINFORCE estimator
does not need the Markov property (docs/theory.md, "The policy-gradient estimator"), so it stays unbiased for this
non-stationary problem.
"""

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from sb3_pgnotes.common.buffers import EpisodeBatch

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


def _sample_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """
    :param rng: Random generator
    :param probs: One distribution per row, shape (n, k)
    :return: One index per row, shape (n,)
    """
    cumulative = np.cumsum(probs, axis=-1)
    draws = (rng.random(len(probs))[:, None] > cumulative).sum(axis=-1)
    return np.minimum(draws, probs.shape[-1] - 1)


class TabularMDP(gym.Env):
    """
    The tabular MDP as a gymnasium env. It records every episode it plays, as lists of (state, action, reward).
    """

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Discrete(N_STATES + 1)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self.episodes: list[list[tuple[int, int, float]]] = []
        self.state = 0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state = int(_sample_categorical(self.np_random, INITIAL[None])[0])
        self.t = 0
        self.episodes.append([])
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        action = int(action)
        reward = float(REWARDS[self.state, action])
        self.episodes[-1].append((self.state, action, reward))
        self.state = int(_sample_categorical(self.np_random, TRANSITIONS[self.state, action][None])[0])
        self.t += 1
        terminated = self.state == TERMINAL or self.t >= HORIZON
        return self.state, reward, terminated, False, {}


def softmax_policy(logits: th.Tensor) -> th.Tensor:
    """
    :param logits: Per-state action logits, shape (N_STATES + 1, N_ACTIONS) (the terminal row is unused)
    :return: Per non-terminal state action probabilities, shape (N_STATES, N_ACTIONS)
    """
    return th.softmax(logits[:N_STATES], dim=-1)


def _tables() -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    initial, transitions, rewards = (th.as_tensor(x, dtype=th.float64) for x in (INITIAL, TRANSITIONS, REWARDS))
    return initial, transitions[:, :, :N_STATES], rewards


def expected_return(probs: th.Tensor, gamma: float) -> th.Tensor:
    """
    Exact objective ``J = E[sum_t gamma^t r_t]`` by the forward recursion of the state distribution over time.

    :param probs: Per non-terminal state action probabilities, shape (N_STATES, N_ACTIONS), float64
    :param gamma: Discount factor
    :return: Scalar J, differentiable with respect to ``probs``
    """
    initial, transitions, rewards = _tables()
    occupancy = initial  # probability of being in each non-terminal state at time t (mass lost = episode over)
    objective = th.zeros((), dtype=th.float64)
    for t in range(HORIZON):
        objective = objective + gamma**t * th.einsum("s,sa,sa->", occupancy, probs, rewards)
        occupancy = th.einsum("s,sa,sax->x", occupancy, probs, transitions)
    return objective


def policy_gradient_surrogate(probs: th.Tensor, gamma: float, discount_decisions: bool = True) -> th.Tensor:
    """
    ``sum_t w_t sum_s d_t(s) sum_a pi(a|s) Q_t(s, a)`` with the occupancies ``d_t`` and the discounted action
    values to go ``Q_t`` (backward recursion over the remaining horizon) held constant: its gradient is the
    expectation of the reward-to-go estimator.

    With ``w_t = gamma^t`` (``discount_decisions``, discount option 2) that is the policy gradient theorem, the exact
    gradient of :func:`expected_return`. With ``w_t = 1`` it is the expectation of discount option 1, which is not
    the gradient of any objective when ``gamma < 1``.

    :param probs: Per non-terminal state action probabilities, shape (N_STATES, N_ACTIONS), float64
    :param gamma: Discount factor
    :param discount_decisions: Weight decision t by ``gamma^t``
    :return: Scalar surrogate, differentiable with respect to ``probs``
    """
    initial, transitions, rewards = _tables()
    fixed = probs.detach()
    occupancies = [initial]
    for _ in range(HORIZON - 1):
        occupancies.append(th.einsum("s,sa,sax->x", occupancies[-1], fixed, transitions))
    surrogate = th.zeros((), dtype=th.float64)
    value_to_go = th.zeros(N_STATES, dtype=th.float64)
    for t in reversed(range(HORIZON)):
        action_values = rewards + gamma * th.einsum("sax,x->sa", transitions, value_to_go)
        value_to_go = (fixed * action_values).sum(dim=-1)
        weight = gamma**t if discount_decisions else 1.0
        surrogate = surrogate + weight * th.einsum("s,sa,sa->", occupancies[t], probs, action_values)
    return surrogate


def sample_episodes(probs: np.ndarray, n_episodes: int, rng: np.random.Generator) -> EpisodeBatch:
    """
    Sample whole episodes with a vectorised sampler (all episodes advance together, one step per time index).

    :param probs: Per non-terminal state action probabilities, shape (N_STATES, N_ACTIONS)
    :param n_episodes: Number of episodes
    :param rng: Random generator
    :return: The episodes, stored flat (episode 0's steps, then episode 1's, ...), all terminated
    """
    state = _sample_categorical(rng, np.broadcast_to(INITIAL, (n_episodes, N_STATES)))
    alive = np.ones(n_episodes, dtype=bool)
    states, actions, rewards, alives = [], [], [], []
    for _ in range(HORIZON):
        action = _sample_categorical(rng, probs[state])
        next_state = _sample_categorical(rng, TRANSITIONS[state, action])
        states.append(state)
        actions.append(action)
        rewards.append(REWARDS[state, action])
        alives.append(alive)
        alive = alive & (next_state != TERMINAL)
        state = np.where(alive, next_state, state)
    keep = np.stack(alives, axis=1)  # (n_episodes, HORIZON): episode-major order once masked

    def flat(per_step: list[np.ndarray]) -> np.ndarray:
        return np.stack(per_step, axis=1)[keep]

    return EpisodeBatch(
        observations=flat(states).astype(np.int64),
        actions=flat(actions).astype(np.int64),
        rewards=flat(rewards).astype(np.float32),
        log_probs=np.zeros(int(keep.sum()), dtype=np.float32),
        episode_lengths=keep.sum(axis=1).astype(np.int64),
        truncated=np.zeros(n_episodes, dtype=bool),
        terminal_observations=[None] * n_episodes,
    )
