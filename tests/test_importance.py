"""The importance-sampling math of ``sb3_pgnotes.common.importance`` against hand-computed values."""

from typing import Any

import numpy as np
import pytest

from sb3_pgnotes.common.importance import (
    effective_sample_size,
    importance_weights,
    per_decision_log_weights,
    per_decision_returns,
    self_normalized_weights,
    truncate_log_weights,
)


def test_per_decision_log_weights_restart_at_each_episode() -> None:
    log_ratios = np.array([0.1, 0.2, -0.3, 0.5, 0.5])
    np.testing.assert_allclose(per_decision_log_weights(log_ratios, np.array([3, 2])), [0.1, 0.3, 0.0, 0.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(
        per_decision_log_weights(log_ratios, np.array([1, 1, 3])), [0.1, 0.2, -0.3, 0.2, 0.7], atol=1e-12
    )


def test_per_decision_log_weights_reject_bad_lengths() -> None:
    with pytest.raises(ValueError, match="episode_lengths"):
        per_decision_log_weights(np.zeros(3), np.array([2, 2]))
    assert per_decision_log_weights(np.zeros(0), np.zeros(0, dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: per_decision_log_weights(np.zeros((3, 1)), [3]), "flat per-step", id="column"),
        pytest.param(lambda: truncate_log_weights(np.zeros(2), -1.0), "c_bar must be None or > 0", id="negative-c_bar"),
        pytest.param(lambda: importance_weights(np.zeros(2), 0.0, True), "c_bar must be None or > 0", id="zero-c_bar"),
        pytest.param(lambda: importance_weights(np.zeros(2), None, "no"), "self_normalize must be True or", id="string"),
        pytest.param(lambda: self_normalized_weights(np.full(2, -np.inf)), "at least one finite", id="all-minus-inf"),
        pytest.param(lambda: effective_sample_size(np.zeros(0)), "at least one finite", id="empty"),
        pytest.param(lambda: effective_sample_size(np.zeros((2, 3))), "flat array", id="2-d"),
        pytest.param(lambda: per_decision_returns(np.ones(3), np.ones(2), [3], 1.0), "weights must have one", id="weights"),
    ],
)
def test_malformed_inputs_raise_instead_of_returning_nan(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_truncation() -> None:
    log_weights = np.log([3.0, 1.0, 0.5])
    np.testing.assert_allclose(np.exp(truncate_log_weights(log_weights, 2.0)), [2.0, 1.0, 0.5])
    np.testing.assert_allclose(truncate_log_weights(log_weights, None), log_weights)


def test_self_normalised_weights_average_to_one() -> None:
    np.testing.assert_allclose(self_normalized_weights(np.log([1.0, 3.0])), [0.5, 1.5])
    # The same weights scaled by e^1000: the raw weights overflow, their normalised form does not change.
    np.testing.assert_allclose(self_normalized_weights(1000.0 + np.log([1.0, 3.0])), [0.5, 1.5])


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.zeros(4)) == pytest.approx(4.0)
    # (1 + 3)^2 / (1 + 9)
    assert effective_sample_size(np.log([1.0, 3.0])) == pytest.approx(1.6)
    assert effective_sample_size(np.array([0.0, 2000.0])) == pytest.approx(1.0)
    assert effective_sample_size(500.0 + np.log([1.0, 3.0])) == pytest.approx(1.6)


def test_importance_weights_controls() -> None:
    log_weights = np.array([0.0, np.log(4.0), 1000.0])
    with np.errstate(over="ignore"):
        assert np.isinf(importance_weights(log_weights, None, False)[-1])
    np.testing.assert_allclose(importance_weights(log_weights, 2.0, False), [1.0, 2.0, 2.0])
    # Truncation first, then normalisation: (1, 2, 2) / (5 / 3).
    np.testing.assert_allclose(importance_weights(log_weights, 2.0, True), [0.6, 1.2, 1.2])
    np.testing.assert_allclose(importance_weights(log_weights, None, True), [0.0, 0.0, 3.0])


def test_per_decision_returns() -> None:
    # Weighted rewards (1, 1, 6); reward-to-go with gamma 0.5: 6, 1 + 3, 1 + 2.
    returns = per_decision_returns(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.5, 2.0]), np.array([3]), 0.5)
    np.testing.assert_allclose(returns, [3.0, 4.0, 6.0])
    # Two episodes: the sum restarts.
    returns = per_decision_returns(np.ones(3), np.array([2.0, 3.0, 4.0]), np.array([2, 1]), 1.0)
    np.testing.assert_allclose(returns, [5.0, 3.0, 4.0])


def test_log_space_survives_long_episodes() -> None:
    """A 2000-step episode whose every ratio is e^0.5: the product overflows, the log-space weights stay finite."""
    log_ratios = np.full(2000, 0.5)
    with np.errstate(over="ignore"):
        naive = np.cumprod(np.exp(log_ratios))
    assert np.isinf(naive[-1])
    log_weights = per_decision_log_weights(log_ratios, np.array([2000]))
    assert log_weights[-1] == pytest.approx(1000.0)
    for c_bar, normalise in ((5.0, False), (None, True), (5.0, True)):
        weights = importance_weights(log_weights, c_bar, normalise)
        assert np.all(np.isfinite(weights))
    assert np.isfinite(effective_sample_size(log_weights))
    np.testing.assert_allclose(importance_weights(log_weights, 5.0, False)[-1], 5.0)
