"""Storage of whole episodes collected from a vectorised environment."""

from dataclasses import dataclass

import numpy as np

Observation = np.ndarray | dict[str, np.ndarray]


@dataclass
class EpisodeBatch:
    """
    Whole episodes stored flat: the steps of episode 0, then episode 1, ...

    :param observations: Per-step observations (a dict of arrays for Dict observation spaces)
    :param actions: Per-step raw actions, as sampled from the policy (before clipping to the action bounds)
    :param rewards: Per-step rewards
    :param log_probs: Per-step log-probability of the action under the policy that collected it
    :param episode_lengths: Number of steps of each episode
    :param truncated: Per episode, whether it was cut by a time limit rather than terminated
    :param terminal_observations: Per episode, the observation after its last step (``None`` when terminated)
    """

    observations: Observation
    actions: np.ndarray
    rewards: np.ndarray
    log_probs: np.ndarray
    episode_lengths: np.ndarray
    truncated: np.ndarray
    terminal_observations: list[Observation | None]

    @property
    def n_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def n_steps(self) -> int:
        return len(self.rewards)


def _stack_env_major(steps: list[np.ndarray], keep: np.ndarray) -> np.ndarray:
    """
    Turn a list of (n_envs, ...) arrays, one per vec-env step, into the kept rows in env-major order.

    :param steps: One array per vec-env step
    :param keep: Boolean mask of shape (n_vec_steps, n_envs)
    :return: Array of shape (keep.sum(), ...)
    """
    stacked = np.stack(steps, axis=1)  # (n_envs, n_vec_steps, ...)
    return stacked[keep.T]


class EpisodeCollector:
    """
    Accumulates vec-env steps and assembles the whole episodes of each env, in env order.

    Each env contributes only steps that belong to episodes within its quota; the caller marks them as kept.
    Because each env's episodes are stored one after the other, a batch in env-major order is a batch of
    contiguous whole episodes.

    :param n_envs: Number of environments in the vectorised env
    """

    def __init__(self, n_envs: int) -> None:
        self.n_envs = n_envs
        self._observations: list[Observation] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[np.ndarray] = []
        self._log_probs: list[np.ndarray] = []
        self._keep: list[np.ndarray] = []
        self._episodes: list[list[tuple[int, bool, Observation | None]]] = [[] for _ in range(n_envs)]

    @property
    def n_vec_steps(self) -> int:
        """Number of vec-env steps stored so far."""
        return len(self._keep)

    def add_step(
        self,
        observations: Observation,
        actions: np.ndarray,
        rewards: np.ndarray,
        log_probs: np.ndarray,
        keep: np.ndarray,
    ) -> None:
        """
        Store one vec-env step.

        :param observations: Observations the actions were taken in, (n_envs, ...)
        :param actions: Raw actions, (n_envs, ...)
        :param rewards: Rewards, (n_envs,)
        :param log_probs: Log-probabilities of the actions, (n_envs,)
        :param keep: Which envs' steps belong to a counted episode, (n_envs,)
        """
        if isinstance(observations, dict):
            observations = {key: np.array(value) for key, value in observations.items()}
        else:
            observations = np.array(observations)
        self._observations.append(observations)
        self._actions.append(np.array(actions))
        self._rewards.append(np.asarray(rewards, dtype=np.float32))
        self._log_probs.append(np.asarray(log_probs, dtype=np.float32))
        self._keep.append(np.asarray(keep, dtype=bool))

    def end_episode(self, env_idx: int, length: int, truncated: bool, terminal_observation: Observation | None) -> None:
        """
        Record that a counted episode of env ``env_idx`` ended at the last stored step.

        :param env_idx: Index of the env
        :param length: Number of steps of the episode
        :param truncated: Whether a time limit cut it
        :param terminal_observation: Observation after its last step, kept for truncated episodes
        """
        self._episodes[env_idx].append((length, truncated, terminal_observation if truncated else None))

    def build(self) -> EpisodeBatch:
        """
        :return: The counted episodes, env 0's first, as one flat batch
        """
        keep = np.stack(self._keep)
        if isinstance(self._observations[0], dict):
            keys = self._observations[0].keys()
            observations: Observation = {
                key: _stack_env_major([obs[key] for obs in self._observations], keep)
                for key in keys  # type: ignore[index]
            }
        else:
            observations = _stack_env_major(self._observations, keep)  # type: ignore[arg-type]
        episodes = [episode for env_episodes in self._episodes for episode in env_episodes]
        batch = EpisodeBatch(
            observations=observations,
            actions=_stack_env_major(self._actions, keep),
            rewards=_stack_env_major(self._rewards, keep),
            log_probs=_stack_env_major(self._log_probs, keep),
            episode_lengths=np.array([length for length, _, _ in episodes], dtype=np.int64),
            truncated=np.array([truncated for _, truncated, _ in episodes], dtype=bool),
            terminal_observations=[terminal for _, _, terminal in episodes],
        )
        if int(batch.episode_lengths.sum()) != batch.n_steps:
            raise RuntimeError("Episode bookkeeping is inconsistent: stored steps do not add up to the episode lengths")
        return batch
