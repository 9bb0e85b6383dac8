"""A replay of recent whole episodes with the behaviour policy's log-probabilities, for importance sampling."""

from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pgnotes.common.buffers import EpisodeAssembler, EpisodeBatch, Observation, select_env


class EpisodeReplayBuffer(ReplayBuffer):
    """
    A replay of whole episodes, stored flat in a ring of ``buffer_size`` steps, with each step's behaviour
    log-probability ``log pi_theta(a_t|s_t)`` of the raw action sampled (before clipping to the action bounds).

    It keeps SB3's ``ReplayBuffer`` contract: :meth:`add` takes one vec-env step (with the behaviour
    log-probabilities as the extra ``log_prob``), and :meth:`sample` returns uniformly drawn transitions
    (``ReplayBufferSamples``). Steps wait, per env, until their episode ends; the episode then enters the ring whole.
    :meth:`sample_episodes` draws whole episodes, as the importance-sampled estimator needs.

    An episode is written in one contiguous stretch: when it does not fit before the end of the ring, writing
    restarts at the front. Every stored episode that the new one overlaps is dropped first, so no partly
    overwritten episode is ever sampled. Capacity is ``buffer_size`` steps and, optionally, ``max_episodes``
    episodes (the oldest go first). An episode longer than ``buffer_size`` cannot be stored: :meth:`add` raises as
    soon as one runs past it.

    The arrays grow by doubling as episodes arrive, up to ``buffer_size`` steps: a buffer built to load a model for
    prediction holds nothing.

    :param buffer_size: Capacity in steps
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments (episodes of all envs share the ring)
    :param optimize_memory_usage: Must be False (SB3's next-observation trick does not apply to whole episodes)
    :param handle_timeout_termination: Must be True: time-limit truncation is kept per episode, and a truncated
        episode's last transition is never marked done
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
        handle_timeout_termination: bool = True,
        max_episodes: int | None = None,
    ):
        if optimize_memory_usage:
            raise ValueError("optimize_memory_usage must be False: whole episodes are stored with their observations")
        if not handle_timeout_termination:
            raise ValueError("handle_timeout_termination must be True: truncated episodes are kept apart from terminated ones")
        # ReplayBuffer.__init__ would allocate (buffer_size, n_envs) transition arrays up front: skip to the base.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = True
        self.max_episodes = max_episodes
        self.capacity = 0
        self.observations = None
        self.actions = np.zeros(0)
        self.rewards = np.zeros(0, dtype=np.float32)
        self.log_probs = np.zeros(0, dtype=np.float32)
        # Stored episodes, oldest first: the first n_episodes rows of arrays with room to append.
        self.n_episodes = 0
        self._starts = np.zeros(64, dtype=np.int64)
        self._lengths = np.zeros(64, dtype=np.int64)
        self._truncated = np.zeros(64, dtype=bool)
        self.terminal_observations: list[Observation] = []
        # Each env's episode until it ends.
        self.pending = EpisodeAssembler(n_envs)

    @property
    def episode_starts(self) -> np.ndarray:
        """Ring index of each stored episode's first step, oldest episode first."""
        return self._starts[: self.n_episodes]

    @property
    def episode_lengths(self) -> np.ndarray:
        """Number of steps of each stored episode, oldest first."""
        return self._lengths[: self.n_episodes]

    @property
    def episode_truncated(self) -> np.ndarray:
        """Whether each stored episode was cut by a time limit, oldest first."""
        return self._truncated[: self.n_episodes]

    # Read-only: derived from the episode index, which is what the buffer stores.
    @property
    def dones(self) -> np.ndarray:  # type: ignore[override]
        """
        SB3's ``ReplayBuffer.dones``, read from the stored episodes: per ring row, 1 at the last step of each episode
        (terminated or truncated, as the VecEnv's ``done`` marks it), else 0.
        """
        return self._last_step_marks(np.ones(self.n_episodes, dtype=bool))

    @property
    def timeouts(self) -> np.ndarray:  # type: ignore[override]
        """SB3's ``ReplayBuffer.timeouts``: per ring row, 1 at the last step of each truncated episode, else 0."""
        return self._last_step_marks(self.episode_truncated)

    def _last_step_marks(self, episodes: np.ndarray) -> np.ndarray:
        """:param episodes: Which stored episodes to mark (a mask)"""
        marks = np.zeros(self.capacity, dtype=np.float32)
        marks[(self.episode_starts + self.episode_lengths - 1)[episodes]] = 1.0
        return marks

    def size(self) -> int:
        """:return: Number of steps stored (in whole episodes; steps of unfinished episodes are not counted)"""
        return int(self.episode_lengths.sum())

    def reset(self) -> None:
        """Drop every stored episode and every unfinished one (the arrays are kept)."""
        super().reset()
        self._keep_episodes(np.zeros(self.n_episodes, dtype=bool))
        self.pending.clear()

    def set_max_episodes(self, max_episodes: int | None) -> None:
        """
        :param max_episodes: The new capacity in episodes (``None``: only the step capacity); the oldest stored
            episodes beyond it are dropped now
        """
        self.max_episodes = max_episodes
        if max_episodes is not None and self.n_episodes > max_episodes:
            self._keep_episodes(slice(self.n_episodes - max_episodes, None))

    def _keep_episodes(self, keep: np.ndarray | slice) -> None:
        """:param keep: The stored episodes to keep: a mask, or a slice of them (oldest first)"""
        kept = self.episode_lengths[keep]
        self._starts[: len(kept)] = self.episode_starts[keep]
        self._truncated[: len(kept)] = self.episode_truncated[keep]
        self._lengths[: len(kept)] = kept
        self.n_episodes = len(kept)
        if isinstance(keep, slice):
            self.terminal_observations = self.terminal_observations[keep]
        else:
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

    def add(  # type: ignore[override]
        self,
        obs: Observation,
        next_obs: Observation | None,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        log_prob: np.ndarray | None = None,
    ) -> None:
        """
        Add one vec-env step; each env whose episode ends with it stores that episode whole.

        :param obs: Observations the actions were taken in, (n_envs, ...)
        :param next_obs: Observations after the step, (n_envs, ...), with the terminal observation for envs that are
            done (as SB3 passes them); ``None`` to read it from ``infos[i]["terminal_observation"]``
        :param action: Raw actions, (n_envs, ...)
        :param reward: Rewards, (n_envs,)
        :param done: Whether each env's episode ended, (n_envs,)
        :param infos: The env's infos (``TimeLimit.truncated`` marks a truncation)
        :param log_prob: Behaviour log-probabilities of the actions, (n_envs,): required, the importance weights are
            ratios against them
        """
        if log_prob is None:
            raise ValueError(
                "EpisodeReplayBuffer.add needs log_prob, the behaviour policy's log-probability of each action: "
                "importance weights are ratios against it"
            )
        action = np.asarray(action).reshape((self.n_envs, *cast(tuple[int, ...], self.action_space.shape)))
        step_times = self.pending.open_lengths
        self.pending.add_step(obs, action, reward, log_prob, step_times)
        done = np.asarray(done, dtype=bool)
        # Most steps end no episode and leave every episode short: the scalar tests skip the per-env work.
        if np.count_nonzero(done):
            for idx in np.flatnonzero(done).tolist():
                terminal = infos[idx].get("terminal_observation")
                if terminal is None and next_obs is not None:
                    terminal = select_env(next_obs, idx)
                truncated = bool(infos[idx].get("TimeLimit.truncated", False))
                # Copied from the assembler's rows straight into the ring.
                self._store(self.pending.end_segment_views(idx), truncated, terminal)
        if self.pending.held_steps > self.buffer_size:
            # An episode still open now holds step_times + 1 steps.
            too_long = np.flatnonzero((step_times >= self.buffer_size) & ~done)
            if len(too_long):
                raise ValueError(
                    f"The episode of env {int(too_long[0])} has run {self.buffer_size + 1} steps without ending: more "
                    f"than buffer_size={self.buffer_size} steps, so it cannot be stored whole. Raise buffer_size or "
                    "wrap the env in gymnasium.wrappers.TimeLimit."
                )

    def add_episode(self, episode: EpisodeBatch, terminal_observation: Observation | None) -> None:
        """
        Store one whole episode, dropping the stored episodes it overwrites (and the oldest beyond ``max_episodes``).

        :param episode: The episode (one episode, with the behaviour log-probabilities)
        :param terminal_observation: Observation after its last step
        """
        fields = {
            "observations": episode.observations,
            "actions": episode.actions,
            "rewards": episode.rewards,
            "log_probs": episode.log_probs,
        }
        self._store(fields, bool(episode.truncated[0]), terminal_observation)

    def _store(self, episode: dict[str, Any], truncated: bool, terminal_observation: Observation | None) -> None:
        """
        :param episode: One episode's ``observations`` (a dict for Dict spaces), ``actions``, ``rewards`` and
            ``log_probs`` (other fields are ignored)
        :param truncated: Whether a time limit cut it
        :param terminal_observation: Observation after its last step
        """
        length = len(episode["rewards"])
        if not 1 <= length <= self.buffer_size:
            raise ValueError(f"An episode of {length} steps does not fit a replay buffer of buffer_size={self.buffer_size}")
        start = self.pos if self.pos + length <= self.buffer_size else 0
        if start + length > self.capacity:
            self._grow(start + length, episode["observations"], episode["actions"])
        overwritten = (self.episode_starts + self.episode_lengths > start) & (self.episode_starts < start + length)
        if overwritten.any():
            self._keep_episodes(~overwritten)
        if self.max_episodes is not None and self.n_episodes >= self.max_episodes:
            self._keep_episodes(slice(self.n_episodes - self.max_episodes + 1, None))

        stop = start + length
        if isinstance(episode["observations"], dict):
            for key, value in episode["observations"].items():
                self.observations[key][start:stop] = value
        else:
            self.observations[start:stop] = episode["observations"]
        self.actions[start:stop] = episode["actions"]
        self.rewards[start:stop] = episode["rewards"]
        self.log_probs[start:stop] = episode["log_probs"]
        if self.n_episodes == len(self._lengths):
            self._starts, self._lengths, self._truncated = (
                np.concatenate([array, np.zeros_like(array)]) for array in (self._starts, self._lengths, self._truncated)
            )
        self._starts[self.n_episodes] = start
        self._lengths[self.n_episodes] = length
        self._truncated[self.n_episodes] = truncated
        self.n_episodes += 1
        # Without one (an env that gives no terminal observation), the last observation stands in: it is only read as
        # the next observation of a transition marked done.
        self.terminal_observations.append(
            select_env(episode["observations"], length - 1) if terminal_observation is None else terminal_observation
        )
        self.pos = stop
        self.full = self.full or stop == self.buffer_size

    def _observations_at(self, steps: np.ndarray) -> Observation:
        if isinstance(self.observations, dict):
            return {key: value[steps] for key, value in self.observations.items()}
        return self.observations[steps]

    def _stored_steps(self, episodes: np.ndarray) -> np.ndarray:
        """:return: The ring indices of the given stored episodes' steps, episode after episode"""
        return np.concatenate(
            [
                np.arange(start, start + length)
                for start, length in zip(self.episode_starts[episodes], self.episode_lengths[episodes], strict=True)
            ]
        )

    def sample_episodes(self, n_episodes: int) -> EpisodeBatch:
        """
        Sample whole stored episodes uniformly, without replacement.

        :param n_episodes: How many (all stored episodes if fewer are stored)
        :return: The episodes as one flat batch; ``log_probs`` are the behaviour log-probabilities
        """
        if self.n_episodes == 0:
            raise ValueError("The replay buffer holds no complete episode yet")
        chosen = np.sort(np.random.choice(self.n_episodes, size=min(n_episodes, self.n_episodes), replace=False))
        steps = self._stored_steps(chosen)
        return EpisodeBatch(
            observations=self._observations_at(steps),
            actions=self.actions[steps],
            rewards=self.rewards[steps],
            log_probs=self.log_probs[steps],
            episode_lengths=self.episode_lengths[chosen].copy(),
            truncated=self.episode_truncated[chosen].copy(),
            terminal_observations=[self.terminal_observations[idx] if self.episode_truncated[idx] else None for idx in chosen],
        )

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:  # type: ignore[override]
        """
        Sample transitions uniformly (with replacement) from the stored episodes, as SB3's ``ReplayBuffer`` does.

        :param batch_size: Number of transitions
        :param env: Normalise the observations and rewards with this env's ``VecNormalize`` statistics, as SB3's
            ``ReplayBuffer`` does: ``OffPolicyPG`` stores the env's own ones, as SB3's off-policy algorithms do.
        :return: Observations, actions, next observations, dones (termination only, not truncation) and rewards
        """
        if self.n_episodes == 0:
            raise ValueError("The replay buffer holds no complete episode yet")
        episodes = np.arange(self.n_episodes)
        steps = self._stored_steps(episodes)
        chosen = np.random.randint(0, len(steps), size=batch_size)
        step_idx = steps[chosen]
        episode_of = np.repeat(episodes, self.episode_lengths)[chosen]
        last = step_idx == self.episode_starts[episode_of] + self.episode_lengths[episode_of] - 1
        dones = (last & ~self.episode_truncated[episode_of]).astype(np.float32).reshape(-1, 1)
        rewards = self._normalize_reward(self.rewards[step_idx].reshape(-1, 1), env)
        actions = self.to_torch(self.actions[step_idx].reshape(batch_size, -1))

        def terminal(key: str | None) -> np.ndarray:
            stack = [obs if key is None else obs[key] for obs in self.terminal_observations]  # type: ignore[index]
            return np.stack(stack)[episode_of]  # type: ignore[arg-type]

        def next_of(stored: np.ndarray, terminal_rows: np.ndarray) -> np.ndarray:
            following = stored[np.minimum(step_idx + 1, self.capacity - 1)]
            return np.where(last.reshape(-1, *[1] * (following.ndim - 1)), terminal_rows, following)

        def shaped(rows: np.ndarray, key: str | None) -> np.ndarray:
            # SB3's shape: a Discrete observation is (batch, 1), stored as the VecEnv gives it, (batch,).
            return rows.reshape(batch_size, *(self.obs_shape if key is None else self.obs_shape[key]))  # type: ignore[call-overload]

        if isinstance(self.observations, dict):
            obs = self._normalize_obs({key: shaped(value[step_idx], key) for key, value in self.observations.items()}, env)
            next_obs = self._normalize_obs(
                {key: shaped(next_of(value, terminal(key)), key) for key, value in self.observations.items()}, env
            )
            return DictReplayBufferSamples(  # type: ignore[return-value]
                observations={key: self.to_torch(value) for key, value in obs.items()},  # type: ignore[union-attr]
                actions=actions,
                next_observations={key: self.to_torch(value) for key, value in next_obs.items()},  # type: ignore[union-attr]
                dones=self.to_torch(dones),
                rewards=self.to_torch(rewards),
            )
        next_observations = shaped(next_of(self.observations, terminal(None)), None)
        return ReplayBufferSamples(
            observations=self.to_torch(self._normalize_obs(shaped(self.observations[step_idx], None), env)),  # type: ignore[arg-type]
            actions=actions,
            next_observations=self.to_torch(self._normalize_obs(next_observations, env)),  # type: ignore[arg-type]
            dones=self.to_torch(dones),
            rewards=self.to_torch(rewards),
        )
