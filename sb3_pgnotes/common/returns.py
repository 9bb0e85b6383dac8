"""
Return, baseline and critic-target math (``docs/theory.md``), as small pure functions over flat per-step arrays.

A batch of whole episodes is stored flat: the steps of episode 0, then episode 1, ...; ``episode_lengths``
gives how many steps each episode has. Time indices are 0-based, so the textbook ``gamma^(t-1)`` (1-based) is
``gamma**t`` here.
"""

from typing import TypeVar

import numpy as np
import torch as th

Weights = TypeVar("Weights", np.ndarray, th.Tensor)


def _check_lengths(n_steps: int, episode_lengths: np.ndarray) -> None:
    if np.any(episode_lengths <= 0) or int(episode_lengths.sum()) != n_steps:
        raise ValueError(
            f"episode_lengths {episode_lengths.tolist()} must be positive and sum to the number of steps ({n_steps})"
        )


def _as_lengths(episode_lengths: np.ndarray) -> np.ndarray:
    """:return: ``episode_lengths`` as int64, refused unless a flat array of whole numbers (2.7 is not 2)"""
    lengths = np.asarray(episode_lengths)
    as_int = lengths.astype(np.int64)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iuf" or np.any(as_int != lengths):
        raise ValueError(f"episode_lengths must be a flat array of whole numbers; got {lengths.tolist()}")
    return as_int


def _per_item(name: str, values: np.ndarray, n_items: int, of: str) -> np.ndarray:
    """:return: ``values`` as a float64 array of shape (n_items,); refused otherwise (an (n, 1) column would broadcast)"""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n_items,):
        raise ValueError(f"{name} must have one value per {of}, shape ({n_items},); got shape {array.shape}")
    return array


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")


def time_indices(episode_lengths: np.ndarray) -> np.ndarray:
    """
    Time index of every step within its episode (0 for the first step).

    :param episode_lengths: Number of steps of each episode, shape (n_episodes,)
    :return: Array of shape (sum(episode_lengths),)
    """
    episode_lengths = _as_lengths(episode_lengths)
    starts = np.cumsum(episode_lengths) - episode_lengths
    return np.arange(int(episode_lengths.sum())) - np.repeat(starts, episode_lengths)


def episode_ids(episode_lengths: np.ndarray) -> np.ndarray:
    """
    Episode index of every step.

    :param episode_lengths: Number of steps of each episode
    :return: Array of shape (sum(episode_lengths),)
    """
    episode_lengths = _as_lengths(episode_lengths)
    return np.repeat(np.arange(len(episode_lengths)), episode_lengths)


def reward_to_go(
    rewards: np.ndarray,
    episode_lengths: np.ndarray,
    gamma: float = 1.0,
    bootstrap_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    Discounted reward-to-go ``G_t = sum_{t'>=t} gamma^(t'-t) r_t'`` within each episode (``docs/theory.md``, "Reward-to-go").

    :param rewards: Flat per-step rewards
    :param episode_lengths: Number of steps of each episode
    :param gamma: Discount factor (1 gives the undiscounted reward-to-go)
    :param bootstrap_values: Per-episode value of the state after the last step, added as
        ``gamma^(T-t) V(s_T)``; use 0 for terminated episodes. ``None`` means no bootstrap.
    :return: Flat per-step returns-to-go, float64
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be a flat per-step array; got shape {rewards.shape}")
    episode_lengths = _as_lengths(episode_lengths)
    _check_lengths(len(rewards), episode_lengths)
    _check_unit_interval("gamma", gamma)
    ends = np.cumsum(episode_lengths) - 1
    is_last = np.zeros(len(rewards), dtype=bool)
    is_last[ends] = True
    next_value = np.zeros(len(rewards))
    if bootstrap_values is not None:
        next_value[ends] = _per_item("bootstrap_values", bootstrap_values, len(episode_lengths), "episode")
    returns = np.empty(len(rewards))
    running = 0.0
    # One backward pass over all episodes; the running sum restarts at each episode's last step.
    for step in range(len(rewards) - 1, -1, -1):
        if is_last[step]:
            running = next_value[step]
        running = rewards[step] + gamma * running
        returns[step] = running
    return returns


def episode_returns(
    rewards: np.ndarray,
    episode_lengths: np.ndarray,
    gamma: float = 1.0,
    bootstrap_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    Discounted return of each whole episode, ``R(tau) = sum_t gamma^t r_t`` (``docs/theory.md``, "The
    policy-gradient estimator").

    :param rewards: Flat per-step rewards
    :param episode_lengths: Number of steps of each episode
    :param gamma: Discount factor
    :param bootstrap_values: Per-episode value after the last step (see :func:`reward_to_go`)
    :return: Array of shape (n_episodes,)
    """
    returns = reward_to_go(rewards, episode_lengths, gamma, bootstrap_values)
    episode_lengths = _as_lengths(episode_lengths)
    return returns[np.cumsum(episode_lengths) - episode_lengths]


def full_returns(
    rewards: np.ndarray,
    episode_lengths: np.ndarray,
    gamma: float = 1.0,
    bootstrap_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    The whole episode's return repeated at every step: the weight of the plain estimator (``docs/theory.md``,
    "The policy-gradient estimator").

    :param rewards: Flat per-step rewards
    :param episode_lengths: Number of steps of each episode
    :param gamma: Discount factor
    :param bootstrap_values: Per-episode value after the last step (see :func:`reward_to_go`)
    :return: Flat per-step array
    """
    return np.repeat(episode_returns(rewards, episode_lengths, gamma, bootstrap_values), _as_lengths(episode_lengths))


def discount_weights(step_times: np.ndarray, gamma: float) -> np.ndarray:
    """
    Per-step factor ``gamma^t`` of discount option 2 (``docs/theory.md``, "Discounting"), which makes the estimator
    the exact gradient of the discounted objective by down-weighting late decisions.

    :param step_times: Per-step time index t within the episode (:func:`time_indices` for whole episodes; a segment
        of a longer episode starts at its episode's time)
    :param gamma: Discount factor
    :return: Flat per-step array
    """
    _check_unit_interval("gamma", gamma)
    # gamma^t reaches 0 by underflow late in long episodes: the intended value, not an error.
    with np.errstate(under="ignore"):
        return np.power(gamma, np.asarray(step_times), dtype=np.float64)


def standardize(weights: Weights) -> Weights:
    """
    Advantage standardisation: zero mean and unit standard deviation over the batch. A batch of one step is returned
    unchanged (its standard deviation is 0).

    :param weights: Per-step weights, an array or a tensor (whose ``std`` is the unbiased one, as in SB3's PPO)
    :return: ``(w - mean(w)) / (std(w) + 1e-8)``
    """
    if len(weights) < 2:
        return weights
    return (weights - weights.mean()) / (weights.std() + 1e-8)


def batch_mean_baseline(returns: np.ndarray, episode_lengths: np.ndarray, per_episode: bool) -> float:
    """
    The batch-mean baseline ``b = 1/N sum_i r(tau_i)`` (``docs/theory.md``, "Baselines").

    :param returns: Flat per-step returns the baseline is subtracted from
    :param episode_lengths: Number of steps of each episode
    :param per_episode: True when ``returns`` is the full return repeated over each episode: each
        episode then counts once, so long episodes do not dominate the mean. False (reward-to-go) averages
        over all steps.
    :return: The baseline
    """
    returns = np.asarray(returns)
    episode_lengths = _as_lengths(episode_lengths)
    _check_lengths(len(returns), episode_lengths)
    if per_episode:
        return float(np.mean(returns[np.cumsum(episode_lengths) - episode_lengths]))
    return float(np.mean(returns))


def baseline_values(
    kind: str, returns: np.ndarray, episode_lengths: np.ndarray, values: np.ndarray | None, per_episode: bool
) -> np.ndarray | float:
    """
    The baseline subtracted from the returns (``docs/theory.md``, "Baselines").

    :param kind: ``"mean"`` (:func:`batch_mean_baseline`), ``"value"`` (the critic's ``V(s_t)``) or ``"optimal"``
        (:class:`~sb3_pgnotes.common.gradients.TimeOptimalBaseline`), both given per step in ``values``, or
        ``"none"``
    :param returns: Flat per-step returns
    :param episode_lengths: Number of steps of each episode
    :param values: The per-step baseline, needed for ``"value"`` and ``"optimal"``
    :param per_episode: For ``"mean"``: whether ``returns`` repeat each episode's full return
    :return: Per-step baseline, or a scalar
    """
    if kind == "mean":
        return batch_mean_baseline(returns, episode_lengths, per_episode)
    if kind in ("value", "optimal"):
        if values is None:
            raise ValueError(f"The {kind} baseline needs its per-step values")
        return _per_item(f"The {kind} baseline's values", values, len(returns), "step")
    if kind != "none":
        raise ValueError(f"kind must be 'none', 'mean', 'value' or 'optimal'; got {kind!r}")
    return 0.0


def nstep_returns(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_lengths: np.ndarray,
    gamma: float,
    n: int,
    bootstrap_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    The n-step critic target ``y_t = sum_{k<m} gamma^k r_{t+k} + gamma^m V(s_{t+m})`` with ``m = min(n, T - t)``
    (``docs/theory.md``, "Critic targets"): the lookahead is cut at the end of the segment, where ``V(s_T)`` is the segment's
    bootstrap value.

    A segment is a run of consecutive steps of one env: a whole episode, or the part of one inside a rollout.
    Its bootstrap value is 0 when the episode terminated there, ``V(terminal_observation)`` when a time limit
    truncated it, and ``V(next observation)`` when the rollout ended mid-episode.

    :param rewards: Flat per-step rewards, segment after segment
    :param values: Flat per-step values ``V(s_t)`` of the observations the actions were taken in
    :param episode_lengths: Number of steps of each segment
    :param gamma: Discount factor
    :param n: Number of rewards in the lookahead (1 gives :func:`td_targets`; ``n >= T`` gives :func:`reward_to_go`)
    :param bootstrap_values: Per-segment ``V(s_T)`` after the last step; ``None`` means 0 for every segment
    :return: Flat per-step targets, float64
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be a flat per-step array; got shape {rewards.shape}")
    values = _per_item("values", values, len(rewards), "step")
    episode_lengths = _as_lengths(episode_lengths)
    _check_lengths(len(rewards), episode_lengths)
    _check_unit_interval("gamma", gamma)
    remaining = np.repeat(episode_lengths, episode_lengths) - time_indices(episode_lengths)  # T - t
    lookahead = np.minimum(n, remaining)  # m
    steps = np.arange(len(rewards))
    targets = np.zeros(len(rewards))
    for k in range(int(lookahead.max(initial=0))):
        inside = k < lookahead
        targets[inside] += gamma**k * rewards[steps[inside] + k]
    segment_end = (
        np.zeros(len(episode_lengths))
        if bootstrap_values is None
        else _per_item("bootstrap_values", bootstrap_values, len(episode_lengths), "segment")
    )
    # V(s_{t+m}): a value inside the segment, or the segment's bootstrap value when the lookahead reaches its end.
    reaches_end = lookahead == remaining
    next_values = np.where(
        reaches_end, np.repeat(segment_end, episode_lengths), values[np.minimum(steps + lookahead, len(rewards) - 1)]
    )
    with np.errstate(under="ignore"):
        return targets + np.power(gamma, lookahead) * next_values


def td_targets(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_lengths: np.ndarray,
    gamma: float,
    bootstrap_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    The bootstrapped (TD(0)) critic target ``y_t = r_t + gamma V(s_{t+1})`` (``docs/theory.md``, "Critic targets"), with
    ``V(s_{t+1})`` the segment's bootstrap value at its last step (see :func:`nstep_returns`).

    :param rewards: Flat per-step rewards, segment after segment
    :param values: Flat per-step values ``V(s_t)``
    :param episode_lengths: Number of steps of each segment
    :param gamma: Discount factor
    :param bootstrap_values: Per-segment ``V(s_T)`` after the last step; ``None`` means 0
    :return: Flat per-step targets, float64
    """
    return nstep_returns(rewards, values, episode_lengths, gamma, 1, bootstrap_values)


def gae_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_lengths: np.ndarray,
    gamma: float,
    gae_lambda: float,
    bootstrap_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    Generalised advantage estimation (``docs/theory.md``, "Generalised advantage estimation"): the
    ``(gamma lambda)``-discounted reward-to-go of the TD errors ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``.

    :param rewards: Flat per-step rewards, segment after segment
    :param values: Flat per-step values ``V(s_t)``
    :param episode_lengths: Number of steps of each segment
    :param gamma: Discount factor
    :param gae_lambda: lambda: 0 gives the TD error, 1 the Monte Carlo return minus ``V(s_t)``
    :param bootstrap_values: Per-segment ``V(s_T)`` after the last step; ``None`` means 0
    :return: Flat per-step advantages, float64
    """
    _check_unit_interval("gae_lambda", gae_lambda)
    deltas = td_targets(rewards, values, episode_lengths, gamma, bootstrap_values) - np.asarray(values, dtype=np.float64)
    return reward_to_go(deltas, episode_lengths, gamma * gae_lambda)
