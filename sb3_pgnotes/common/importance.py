"""
Importance-sampling math of the off-policy policy gradient (``docs/theory.md``, "Importance sampling"), as
small pure functions over flat per-step arrays (the layout of :mod:`sb3_pgnotes.common.returns`).

Weights are handled as log-weights: a product of many ratios over a long episode over- or underflows in floating
point long before its logarithm, a plain sum, does. Exponentiate only after truncation or self-normalisation
has bounded them.
"""

import numpy as np

from sb3_pgnotes.common.returns import _as_lengths, _check_lengths, _per_item, reward_to_go

# log(sum(exp(x))) without overflow: a reduction of numpy's ``logaddexp``, which gives scipy's ``logsumexp`` value
# without its per-call overhead (which is larger than the sum itself on a batch of a few episodes).
_logsumexp = np.logaddexp.reduce


def per_decision_log_weights(log_ratios: np.ndarray, episode_lengths: np.ndarray) -> np.ndarray:
    """
    Cumulative log-ratios within each episode, ``log prod_{t'<=t} pi'(a_t'|s_t') / pi(a_t'|s_t')``: the log of
    the per-decision importance weight of step t (only the actions up to t).

    :param log_ratios: Flat per-step ``log pi'(a_t|s_t) - log pi(a_t|s_t)``
    :param episode_lengths: Number of steps of each episode
    :return: Flat per-step log-weights, float64
    """
    log_ratios = np.asarray(log_ratios, dtype=np.float64)
    if log_ratios.ndim != 1:
        raise ValueError(f"log_ratios must be a flat per-step array; got shape {log_ratios.shape}")
    episode_lengths = _as_lengths(episode_lengths)
    _check_lengths(len(log_ratios), episode_lengths)
    if len(log_ratios) == 0:
        return log_ratios
    cumulative = np.cumsum(log_ratios)
    # Subtract the running total at the end of the previous episode, so each episode's sum starts afresh.
    ends = np.cumsum(episode_lengths)
    before_episode = np.concatenate([[0.0], cumulative[ends[:-1] - 1]])
    return cumulative - np.repeat(before_episode, episode_lengths)


def truncate_log_weights(log_weights: np.ndarray, c_bar: float | None) -> np.ndarray:
    """
    Truncation of each weight at ``c_bar``, ``min(c_bar, w)``, in log space.

    :param log_weights: Log-weights
    :param c_bar: The largest weight allowed (``None``: no truncation)
    :return: ``min(log c_bar, log w)``
    """
    log_weights = np.asarray(log_weights, dtype=np.float64)
    if c_bar is None:
        return log_weights
    if not c_bar > 0:  # NaN fails too
        raise ValueError(f"c_bar must be None or > 0; got {c_bar!r}")
    return np.minimum(log_weights, np.log(c_bar))


def _with_a_finite_weight(log_weights: np.ndarray) -> np.ndarray:
    """:return: The log-weights as a flat float64 array, refused without a finite one (the normalising sum is 0)"""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    if log_weights.ndim != 1 or not np.isfinite(log_weights).any():
        raise ValueError(f"log_weights must be a flat array with at least one finite value; got {log_weights!r}")
    return log_weights


def self_normalized_weights(log_weights: np.ndarray) -> np.ndarray:
    """
    Self-normalised weights ``w_k / mean_j w_j``, computed from the log-weights without forming ``w_k`` itself:
    finite (at most the number of weights) however large the log-weights are. They average to 1.

    :param log_weights: Log-weights, at least one finite
    :return: The normalised weights, float64
    """
    log_weights = _with_a_finite_weight(log_weights)
    # A weight far below the largest rounds to 0, which is its value to double precision (not an error).
    with np.errstate(under="ignore"):
        return np.exp(log_weights - _logsumexp(log_weights)) * len(log_weights)


def effective_sample_size(log_weights: np.ndarray) -> float:
    """
    Kish's effective sample size ``(sum_k w_k)^2 / sum_k w_k^2`` in log space: between 1 (one weight dominates)
    and the number of weights (all equal). It is unchanged by scaling all weights, so the same for the raw and the
    self-normalised weights.

    :param log_weights: Log-weights, at least one finite
    :return: The effective sample size
    """
    log_weights = _with_a_finite_weight(log_weights)
    with np.errstate(under="ignore"):
        return float(np.exp(2.0 * _logsumexp(log_weights) - _logsumexp(2.0 * log_weights)))


def importance_weights(log_weights: np.ndarray, c_bar: float | None, self_normalize: bool) -> np.ndarray:
    """
    The weights an estimator uses: truncated at ``c_bar`` (if set), then self-normalised (if asked), and only then
    exponentiated. With neither control a large log-weight gives ``inf``, as the exact weight would.

    :param log_weights: Log-weights
    :param c_bar: Truncation level (``None``: none)
    :param self_normalize: Divide the weights by their mean
    :return: The weights, float64
    """
    if self_normalize not in (True, False):
        raise ValueError(f"self_normalize must be True or False; got {self_normalize!r}")
    truncated = truncate_log_weights(log_weights, c_bar)
    if self_normalize:
        return self_normalized_weights(truncated)
    with np.errstate(under="ignore", over="ignore"):
        return np.exp(truncated)


def per_decision_returns(rewards: np.ndarray, weights: np.ndarray, episode_lengths: np.ndarray, gamma: float) -> np.ndarray:
    """
    Importance-weighted reward-to-go ``sum_{t'>=t} gamma^(t'-t) w_t' r_t'`` with ``w_t'`` the per-decision weight
    of reward t' (the ratios of the actions up to t'). It equals ``w_t`` times the reward-to-go in which reward t'
    still carries the ratios of the actions between t and t': the estimator term of decision t is
    ``grad log pi'(a_t|s_t)`` times this, an unbiased estimate of the target policy's gradient.

    :param rewards: Flat per-step rewards
    :param weights: Flat per-step per-decision weights
    :param episode_lengths: Number of steps of each episode
    :param gamma: Discount factor
    :return: Flat per-step weighted returns-to-go, float64
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    weighted = _per_item("weights", weights, len(rewards), "step") * rewards
    return reward_to_go(weighted, episode_lengths, gamma)
