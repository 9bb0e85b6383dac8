"""Episodes from a vectorised environment: the flat episode batch, the assembler that builds it, and SB3 rollout buffers."""

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_pgnotes.common.returns import time_indices

Observation = np.ndarray | dict[str, np.ndarray]


def select_env(observations: Observation, index: int) -> Observation:
    """
    :param observations: A vec env's observations, (n_envs, ...) or a dict of such arrays
    :param index: An env index
    :return: A copy of that env's observation
    """
    if isinstance(observations, dict):
        return {key: np.array(value[index]) for key, value in observations.items()}
    return np.array(observations[index])


def as_batch(observation: Observation | None) -> Observation:
    """
    :param observation: One observation (or a dict of arrays)
    :return: A batch of it alone, (1, ...)
    """
    assert observation is not None
    if isinstance(observation, dict):
        return {key: np.asarray(value)[None] for key, value in observation.items()}
    return np.asarray(observation)[None]


def concatenate_observations(parts: list[Observation]) -> Observation:
    """
    :param parts: Batches of observations of one space, (n_i, ...) or dicts of such arrays
    :return: One batch, the parts one after another
    """
    first = parts[0]
    if isinstance(first, dict):
        return {key: np.concatenate([part[key] for part in parts]) for key in first}  # type: ignore[index]
    return np.concatenate(parts)  # type: ignore[arg-type]


@dataclass
class EpisodeBatch:
    """
    Whole episodes (or segments of them, see :class:`EpisodeAssembler`) stored flat: the steps of episode 0, then
    episode 1, ...

    :param observations: Per-step observations (a dict of arrays for Dict observation spaces)
    :param actions: Per-step raw actions, as sampled from the policy (before clipping or rescaling to the env's bounds)
    :param rewards: Per-step rewards
    :param log_probs: Per-step log-probability of the action under the policy that collected it
    :param episode_lengths: Number of steps of each episode
    :param truncated: Per episode, whether it was cut (by a time limit, or by the edge of a rollout) rather than
        terminated
    :param terminal_observations: Per episode, the observation after its last step, to bootstrap from (``None``
        when terminated)
    :param step_times: Per-step time index within its episode (0 for an episode's first step); ``None`` computes it
        for whole episodes
    :param values: Per-step ``V(s_t)`` of the critic at collection (``None`` until an algorithm with a critic sets it)
    :param bootstrap_values: Per-episode ``V`` of the terminal observation where the episode was cut, else 0 (set with
        ``values``)
    """

    observations: Observation
    actions: np.ndarray
    rewards: np.ndarray
    log_probs: np.ndarray
    episode_lengths: np.ndarray
    truncated: np.ndarray
    terminal_observations: list[Observation | None]
    step_times: np.ndarray = dataclasses.field(default=None)  # type: ignore[arg-type]
    values: np.ndarray | None = None
    bootstrap_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.step_times is None:
            self.step_times = time_indices(self.episode_lengths)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def n_steps(self) -> int:
        return len(self.rewards)

    @property
    def episode_starts(self) -> np.ndarray:
        """Per step, whether it is the first step of its episode (or segment)."""
        starts = np.zeros(self.n_steps, dtype=bool)
        starts[np.cumsum(self.episode_lengths) - self.episode_lengths] = True
        return starts


class EpisodeAssembler:
    """
    Holds the vec-env steps of every env's open segment and hands out a segment whole when it ends.

    A segment is a run of consecutive steps of one env: a whole episode, or the part of one that a collection kept.
    Each field is stored in one array of shape (rows, n_envs, ...), a row per vec-env step, so that storing a step
    is one array copy per field, and so is cutting out a segment (:meth:`end_segment`) or many at once
    (:meth:`gather`). With ``reclaim``, rows that no open segment needs any more are reclaimed when the arrays fill
    up (for a store that cuts each segment out as it ends); without it, every row stays until the assembler is
    dropped (for a collection whose closed segments are gathered at its end).

    :param n_envs: Number of environments in the vectorised env
    :param reclaim: Whether rows before the oldest open segment may be reused
    """

    def __init__(self, n_envs: int, reclaim: bool = True) -> None:
        self.n_envs = n_envs
        self.reclaim = reclaim
        self._arrays: dict[str, np.ndarray] = {}
        self._capacity = 0
        self._observation_keys: list[str] | None = None
        # Counted from the first step ever added: the step in row 0, the steps added, each env's open segment start.
        self._first_stored = 0
        self._n_added = 0
        self._segment_starts = np.zeros(n_envs, dtype=np.int64)

    @property
    def held_steps(self) -> int:
        """Number of vec-env steps held: no open segment is longer."""
        return self._n_added - self._first_stored

    @property
    def open_lengths(self) -> np.ndarray:
        """Number of steps in each env's open segment."""
        return self._n_added - self._segment_starts

    def add_step(
        self,
        observations: Observation,
        actions: np.ndarray,
        rewards: np.ndarray,
        log_probs: np.ndarray,
        step_times: np.ndarray,
    ) -> None:
        """
        Store one vec-env step (copied: the env may reuse its arrays).

        :param observations: Observations the actions were taken in, (n_envs, ...)
        :param actions: Raw actions, (n_envs, ...)
        :param rewards: Rewards, (n_envs,)
        :param log_probs: Log-probabilities of the actions, (n_envs,)
        :param step_times: Time index of the step within each env's episode, (n_envs,)
        """
        if isinstance(observations, dict):
            values = [*observations.values(), actions, rewards, log_probs, step_times]
        else:
            values = [observations, actions, rewards, log_probs, step_times]
        if not self._arrays:
            self._allocate(observations, values)
        row = self._n_added - self._first_stored
        if row == self._capacity:
            row = self._make_room()
        for column, value in zip(self._arrays.values(), values, strict=True):
            column[row] = value
        self._n_added += 1

    def _allocate(self, observations: Observation, values: list[Any]) -> None:
        """
        Create the arrays, one per field in the order :meth:`add_step` lists the values.

        :param observations: The first step's observations
        :param values: The first step's values
        """
        if isinstance(observations, dict):
            self._observation_keys = list(observations)
            names = [f"observations/{key}" for key in observations]
        else:
            names = ["observations"]
        names += ["actions", "rewards", "log_probs", "step_times"]
        dtypes = [np.asarray(value).dtype for value in values[:-3]] + [
            np.dtype(np.float32),
            np.dtype(np.float32),
            np.dtype(np.int64),
        ]
        self._capacity = 64
        self._arrays = {
            name: np.zeros((self._capacity, *np.shape(value)), dtype=dtype)
            for name, value, dtype in zip(names, values, dtypes, strict=True)
        }

    def _make_room(self) -> int:
        """
        Reclaim the rows before the oldest open segment, or double the arrays when that frees less than half.

        :return: The row the next step goes to
        """
        keep_from = int(self._segment_starts.min()) if self.reclaim else self._first_stored
        live = self._n_added - keep_from
        start = keep_from - self._first_stored
        grow = 2 * live > self._capacity
        for name, array in self._arrays.items():
            if grow:
                grown = np.zeros((2 * self._capacity, *array.shape[1:]), dtype=array.dtype)
                grown[:live] = array[start : start + live]
                self._arrays[name] = grown
            else:
                array[:live] = array[start : start + live]
        self._capacity *= 2 if grow else 1
        self._first_stored = keep_from
        return live

    def close_segment(self, env_idx: int) -> tuple[int, int]:
        """
        Close env ``env_idx``'s open segment at the last stored step: its next step starts a new one.

        :param env_idx: Index of the env
        :return: The segment's first step and one past its last, counted from the first step ever added (for
            :meth:`gather`, valid while the rows are kept)
        """
        start, stop = int(self._segment_starts[env_idx]), self._n_added
        if stop <= start:
            raise ValueError(f"env {env_idx} has no open segment to end")
        self._segment_starts[env_idx] = stop
        return start, stop

    def gather(self, segments: list[tuple[int, int, int]]) -> dict[str, Any]:
        """
        The stored steps of closed segments, one after another.

        :param segments: ``(env_idx, start, stop)`` of each, as :meth:`close_segment` gave them, in env order and
            each env's in time order (the order of the result)
        :return: Per field (``observations`` a dict for Dict spaces), the segments' steps concatenated
        """
        n_rows = self._n_added - self._first_stored
        # One boolean mask over the env-major view selects every segment in the order asked for.
        keep = np.zeros((self.n_envs, n_rows), dtype=bool)
        for env_idx, start, stop in segments:
            keep[env_idx, start - self._first_stored : stop - self._first_stored] = True
        return self._fields({name: array[:n_rows].swapaxes(0, 1)[keep] for name, array in self._arrays.items()})

    def _fields(self, columns: dict[str, np.ndarray]) -> dict[str, Any]:
        """:return: The columns by field, a Dict space's ``observations/<key>`` columns regrouped as one dict"""
        fields: dict[str, Any] = dict(columns)
        if self._observation_keys is not None:
            fields["observations"] = {key: fields.pop(f"observations/{key}") for key in self._observation_keys}
        return fields

    def end_segment(self, env_idx: int, truncated: bool, next_observation: Observation | None) -> EpisodeBatch:
        """
        Close env ``env_idx``'s open segment and return it.

        :param env_idx: Index of the env
        :param truncated: Whether the episode goes on after the segment (cut by a time limit or a rollout's edge)
        :param next_observation: The observation after the segment's last step, kept when ``truncated``
        :return: The segment, as a batch of one episode
        """
        fields = self._segment_fields(env_idx, copy=True)
        return EpisodeBatch(
            **fields,
            episode_lengths=np.array([len(fields["rewards"])], dtype=np.int64),
            truncated=np.array([truncated]),
            terminal_observations=[next_observation if truncated else None],
        )

    def end_segment_views(self, env_idx: int) -> dict[str, Any]:
        """
        Close env ``env_idx``'s open segment and return its fields as views of the stored rows, for a caller that
        copies them at once (valid until the next :meth:`add_step`).

        :param env_idx: Index of the env
        :return: Per field (``observations`` a dict for Dict spaces), the segment's steps
        """
        return self._segment_fields(env_idx, copy=False)

    def _segment_fields(self, env_idx: int, copy: bool) -> dict[str, Any]:
        start, stop = self.close_segment(env_idx)
        # One env's contiguous rows: a slice, cheaper than gather's mask for a single segment.
        rows = slice(start - self._first_stored, stop - self._first_stored)
        columns = {name: array[rows, env_idx] for name, array in self._arrays.items()}
        return self._fields({name: column.copy() for name, column in columns.items()} if copy else columns)

    def drop_segment(self, env_idx: int) -> None:
        """
        Discard env ``env_idx``'s open segment: its next step starts a new one.

        :param env_idx: Index of the env
        """
        self._segment_starts[env_idx] = self._n_added

    def clear(self) -> None:
        """Discard every open segment."""
        self._segment_starts[:] = self._n_added


class _EpisodicBufferMixin:
    """
    Loads a collected :class:`EpisodeBatch` into SB3's rollout-buffer layout: one row per step, the episodes one
    after another (``n_envs`` is 1 in this layout, whatever the number of envs that collected them), with the values,
    returns and advantages the algorithm computed. The buffer is as large as the batch collected.
    """

    buffer_size: int
    n_envs: int
    observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    returns: np.ndarray
    episode_starts: np.ndarray
    values: np.ndarray
    log_probs: np.ndarray
    advantages: np.ndarray
    pos: int
    full: bool
    generator_ready: bool
    action_dim: int

    def load_batch(self, batch: EpisodeBatch, values: np.ndarray, returns: np.ndarray, advantages: np.ndarray) -> None:
        """
        :param batch: The episodes collected
        :param values: Per-step V(s_t) at collection (zeros for an algorithm without a critic)
        :param returns: Per-step returns (the value targets)
        :param advantages: Per-step advantages (the weights of ``grad log pi``, before any standardisation)
        """
        n_steps = batch.n_steps

        def column(array: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
            return np.asarray(array, dtype=dtype).reshape(n_steps, 1)

        if isinstance(batch.observations, dict):
            self.observations = {key: value.reshape(n_steps, 1, *value.shape[1:]) for key, value in batch.observations.items()}
        else:
            self.observations = batch.observations.reshape(n_steps, 1, *batch.observations.shape[1:])
        self.actions = batch.actions.reshape(n_steps, 1, self.action_dim)
        self.rewards = column(batch.rewards)
        self.episode_starts = column(batch.episode_starts)
        self.log_probs = column(batch.log_probs)
        self.values = column(values)
        self.returns = column(returns)
        self.advantages = column(advantages)
        self.buffer_size, self.n_envs = n_steps, 1
        self.pos, self.full, self.generator_ready = n_steps, True, False


class EpisodicRolloutBuffer(_EpisodicBufferMixin, RolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.RolloutBuffer` holding the last collected batch of episodes."""


class EpisodicDictRolloutBuffer(_EpisodicBufferMixin, DictRolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` holding the last collected batch of episodes."""


class _SampleIndicesMixin:
    """Keeps the indices of the last minibatch drawn, so that per-state data computed once can be matched to it."""

    #: Indices, into the flattened buffer, of the samples last returned by ``get``
    sample_indices: np.ndarray | None = None

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> Any:
        self.sample_indices = batch_inds
        return super()._get_samples(batch_inds, env)  # type: ignore[misc]


class IndexedRolloutBuffer(_SampleIndicesMixin, RolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.RolloutBuffer` that keeps the indices of its last minibatch."""


class IndexedDictRolloutBuffer(_SampleIndicesMixin, DictRolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` that keeps the indices of its last minibatch."""


def episodic_rollout_buffer_class(observation_space: spaces.Space) -> type[RolloutBuffer]:
    """
    :param observation_space: The env's observation space
    :return: The episodic rollout buffer for it
    """
    return EpisodicDictRolloutBuffer if isinstance(observation_space, spaces.Dict) else EpisodicRolloutBuffer
