"""A replay of recent whole episodes with the behaviour policy's log-probabilities, for importance sampling."""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pgnotes.common.buffers import EpisodeBatch, Observation


class EpisodeReplayBuffer(ReplayBuffer):
    """
    A replay of whole episodes, stored flat in a ring of ``buffer_size`` steps, with each step's behaviour
    log-probability ``log pi_theta(a_t|s_t)`` of the raw action sampled (before clipping to the action bounds).

    Episodes enter whole (:meth:`add_episode`) and are sampled whole (:meth:`sample_episodes`). An episode is
    written in one contiguous stretch: when it does not fit before the end of the ring, writing restarts at the
    front. Every stored episode that the new one overlaps is dropped first, so no partly overwritten episode is
    ever sampled. Capacity is ``buffer_size`` steps and, optionally, ``max_episodes`` episodes (the oldest go first).

    The arrays grow by doubling as episodes arrive, up to ``buffer_size`` steps: a buffer built to load a model
    for prediction holds nothing. It is a :class:`~stable_baselines3.common.buffers.ReplayBuffer` so that SB3's
    ``save_replay_buffer`` / ``load_replay_buffer`` accept it, but it stores episodes rather than transitions:
    SB3's transition-level ``add`` and ``sample`` do not apply.

    :param buffer_size: Capacity in steps
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments (episodes of all envs share the ring)
    :param optimize_memory_usage: Must be False (SB3's next-observation trick does not apply to whole episodes)
    :param max_episodes: Capacity in episodes (``None``: only the step capacity)
    """

    observations: Any
    actions: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        max_episodes: int | None = None,
    ):
        if optimize_memory_usage:
            raise ValueError("optimize_memory_usage must be False: whole episodes are stored with their observations")
        # ReplayBuffer.__init__ would allocate (buffer_size, n_envs) transition arrays up front: skip to the base.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.optimize_memory_usage = False
        # Read by SB3's load_replay_buffer (its check for buffers pickled before SB3 2.1); time limits are kept per
        # episode here, in ``episode_truncated``.
        self.handle_timeout_termination = False
        self.max_episodes = max_episodes
        self.capacity = 0
        self.observations = None
        self.actions = np.zeros(0)
        self.rewards = np.zeros(0, dtype=np.float32)
        self.log_probs = np.zeros(0, dtype=np.float32)
        # Stored episodes, oldest first.
        self.episode_starts = np.zeros(0, dtype=np.int64)
        self.episode_lengths = np.zeros(0, dtype=np.int64)
        self.episode_truncated = np.zeros(0, dtype=bool)
        self.terminal_observations: list[Observation | None] = []

    @property
    def n_episodes(self) -> int:
        """Number of episodes stored."""
        return len(self.episode_lengths)

    def size(self) -> int:
        """:return: Number of steps stored (in whole episodes)"""
        return int(self.episode_lengths.sum())

    def reset(self) -> None:
        """Drop every stored episode (the arrays are kept)."""
        super().reset()
        self._keep_episodes(np.zeros(self.n_episodes, dtype=bool))

    def _keep_episodes(self, keep: np.ndarray) -> None:
        self.episode_starts = self.episode_starts[keep]
        self.episode_lengths = self.episode_lengths[keep]
        self.episode_truncated = self.episode_truncated[keep]
        self.terminal_observations = [obs for obs, kept in zip(self.terminal_observations, keep, strict=True) if kept]

    def _grow(self, needed: int, observations: Observation, actions: np.ndarray) -> None:
        """
        Enlarge the arrays to hold at least ``needed`` steps (doubling, at most ``buffer_size``).

        :param needed: Steps the arrays must hold
        :param observations: An episode's observations, giving shapes and dtypes
        :param actions: Its actions
        """
        capacity = min(self.buffer_size, max(needed, 2 * self.capacity, 64))

        def resized(old: np.ndarray | None, like: np.ndarray) -> np.ndarray:
            new = np.zeros((capacity, *like.shape[1:]), dtype=like.dtype)
            if old is not None and self.capacity:
                new[: self.capacity] = old[: self.capacity]
            return new

        if isinstance(observations, dict):
            old_obs = self.observations or {}
            self.observations = {key: resized(old_obs.get(key), value) for key, value in observations.items()}
        else:
            self.observations = resized(self.observations, observations)
        self.actions = resized(self.actions, actions)
        self.rewards = resized(self.rewards, self.rewards)
        self.log_probs = resized(self.log_probs, self.log_probs)
        self.capacity = capacity

    def add_episode(
        self,
        observations: Observation,
        actions: np.ndarray,
        rewards: np.ndarray,
        log_probs: np.ndarray,
        truncated: bool,
        terminal_observation: Observation | None,
    ) -> None:
        """
        Store one whole episode, dropping the stored episodes it overwrites (and the oldest beyond ``max_episodes``).

        :param observations: Per-step observations, (T, ...) (a dict of such arrays for Dict spaces)
        :param actions: Per-step raw actions, (T, ...)
        :param rewards: Per-step rewards, (T,)
        :param log_probs: Per-step behaviour log-probabilities of the actions, (T,)
        :param truncated: Whether a time limit cut the episode
        :param terminal_observation: Observation after the last step (kept for truncated episodes only)
        """
        length = len(rewards)
        if not 1 <= length <= self.buffer_size:
            raise ValueError(f"An episode of {length} steps does not fit a replay buffer of buffer_size={self.buffer_size}")
        start = self.pos if self.pos + length <= self.buffer_size else 0
        if start + length > self.capacity:
            self._grow(start + length, observations, actions)
        stored_ends = self.episode_starts + self.episode_lengths
        self._keep_episodes((stored_ends <= start) | (self.episode_starts >= start + length))
        if self.max_episodes is not None and self.n_episodes >= self.max_episodes:
            self._keep_episodes(np.arange(self.n_episodes) > self.n_episodes - self.max_episodes)

        stop = start + length
        if isinstance(observations, dict):
            for key, value in observations.items():
                self.observations[key][start:stop] = value
        else:
            self.observations[start:stop] = observations
        self.actions[start:stop] = actions
        self.rewards[start:stop] = rewards
        self.log_probs[start:stop] = log_probs
        self.episode_starts = np.append(self.episode_starts, start)
        self.episode_lengths = np.append(self.episode_lengths, length)
        self.episode_truncated = np.append(self.episode_truncated, truncated)
        self.terminal_observations.append(terminal_observation if truncated else None)
        self.pos = stop
        self.full = self.full or stop == self.buffer_size

    def sample_episodes(self, n_episodes: int) -> EpisodeBatch:
        """
        Sample whole stored episodes uniformly, without replacement.

        :param n_episodes: How many (all stored episodes if fewer are stored)
        :return: The episodes as one flat batch; ``log_probs`` are the behaviour log-probabilities
        """
        if self.n_episodes == 0:
            raise ValueError("The replay buffer holds no complete episode yet")
        chosen = np.sort(np.random.choice(self.n_episodes, size=min(n_episodes, self.n_episodes), replace=False))
        stretches = [
            np.arange(start, start + length)
            for start, length in zip(self.episode_starts[chosen], self.episode_lengths[chosen], strict=True)
        ]
        steps = np.concatenate(stretches)
        if isinstance(self.observations, dict):
            observations: Observation = {key: value[steps] for key, value in self.observations.items()}
        else:
            observations = self.observations[steps]
        return EpisodeBatch(
            observations=observations,
            actions=self.actions[steps],
            rewards=self.rewards[steps],
            log_probs=self.log_probs[steps],
            episode_lengths=self.episode_lengths[chosen].copy(),
            truncated=self.episode_truncated[chosen].copy(),
            terminal_observations=[self.terminal_observations[idx] for idx in chosen],
        )

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("EpisodeReplayBuffer stores whole episodes: use add_episode")

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        raise NotImplementedError("EpisodeReplayBuffer samples whole episodes: use sample_episodes")


class PendingEpisodes:
    """
    The unfinished episode of each env, step by step, until it ends and goes whole into the replay buffer.

    :param n_envs: Number of environments
    """

    def __init__(self, n_envs: int) -> None:
        self.n_envs = n_envs
        self._steps: list[list[tuple[Observation, np.ndarray, float, float]]] = [[] for _ in range(n_envs)]

    def add_step(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray, log_probs: np.ndarray) -> None:
        """
        Append one vec-env step to every env's episode.

        :param observations: Observations the actions were taken in, (n_envs, ...)
        :param actions: Raw actions, (n_envs, ...)
        :param rewards: Rewards, (n_envs,)
        :param log_probs: Behaviour log-probabilities of the actions, (n_envs,)
        """
        for idx in range(self.n_envs):
            if isinstance(observations, dict):
                obs: Observation = {key: np.array(value[idx]) for key, value in observations.items()}
            else:
                obs = np.array(observations[idx])
            self._steps[idx].append((obs, np.array(actions[idx]), float(rewards[idx]), float(log_probs[idx])))

    def pop(self, env_idx: int) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray]:
        """
        Take out env ``env_idx``'s finished episode.

        :param env_idx: Index of the env
        :return: Its per-step observations, actions, rewards and log-probabilities, stacked
        """
        steps, self._steps[env_idx] = self._steps[env_idx], []
        first = steps[0][0]
        if isinstance(first, dict):
            observations: Observation = {key: np.stack([obs[key] for obs, _, _, _ in steps]) for key in first}  # type: ignore[index]
        else:
            observations = np.stack([obs for obs, _, _, _ in steps])  # type: ignore[misc]
        actions = np.stack([action for _, action, _, _ in steps])
        rewards = np.array([reward for _, _, reward, _ in steps], dtype=np.float32)
        log_probs = np.array([log_prob for _, _, _, log_prob in steps], dtype=np.float32)
        return observations, actions, rewards, log_probs
