"""
KL divergence between the rollout policy and the policy being optimised, and the PPO paper's adaptive
penalty coefficient (``docs/theory.md``, "KL penalty"), as small pure functions.

Every KL here is ``KL(pi_old(.|s) || pi_new(.|s))``: the expectation is under the old (rollout) policy,
whose actions the batch holds.
"""

import math

import torch as th
from stable_baselines3.common.distributions import Distribution, kl_divergence

from sb3_pgnotes.common.validation import check_finite_number, check_number


def analytic_kl(old: Distribution, new: Distribution) -> th.Tensor:
    """
    Closed-form ``KL(old || new)`` per state.

    SB3's ``kl_divergence`` gives one KL per action dimension for factorised distributions (diagonal
    Gaussian, Bernoulli); they are independent, so the joint KL is their sum.

    :param old: Distribution of the rollout policy over the batch's states
    :param new: Distribution of the current policy over the same states (same class)
    :return: Tensor of shape (B,)
    """
    kl = kl_divergence(old, new)
    return kl.sum(dim=-1) if kl.dim() > 1 else kl


def sample_kl(log_ratio: th.Tensor) -> th.Tensor:
    """
    The k3 estimator of ``KL(old || new)`` from one action per state (Schulman, "Approximating KL divergence").

    With ``r = pi_new(a|s) / pi_old(a|s)`` and ``a ~ pi_old``, ``(r - 1) - log r`` is non-negative, has
    expectation ``KL(old || new)`` and its gradient in the new policy's parameters has expectation
    ``grad KL(old || new)``. Use it where no closed form exists.

    :param log_ratio: ``log pi_new(a|s) - log pi_old(a|s)`` for actions sampled from the old policy
    :return: Per-sample estimates, same shape as ``log_ratio``
    """
    return th.expm1(log_ratio) - log_ratio


def check_adaptive_rule(kl_target: float, kl_tolerance: float, beta_factor: float, beta_min: float, beta_max: float) -> None:
    """
    Check the adaptive rule's settings (see :func:`adapt_kl_beta`): a positive target, a tolerance band and a factor
    above 1 (at 1 or below the rule stands still or acts backwards), and bounds ``0 <= beta_min <= beta_max``
    (``beta_max`` may be infinite).

    :raises ValueError: Naming the first setting that is wrong
    """
    check_finite_number("kl_target", kl_target, 0.0, low_open=True)
    check_finite_number("kl_tolerance", kl_tolerance, 1.0, low_open=True)
    check_finite_number("beta_factor", beta_factor, 1.0, low_open=True)
    check_finite_number("beta_min", beta_min, 0.0)
    check_number("beta_max", beta_max, beta_min)


def adapt_kl_beta(
    beta: float,
    kl: float,
    kl_target: float,
    kl_tolerance: float = 1.5,
    beta_factor: float = 2.0,
    beta_min: float = 0.0,
    beta_max: float = float("inf"),
) -> float:
    """
    The PPO paper's adaptive KL coefficient rule, applied once per update after all epochs.

    If ``kl < kl_target / kl_tolerance``: ``beta /= beta_factor``; if ``kl > kl_target * kl_tolerance``:
    ``beta *= beta_factor``; otherwise beta is unchanged. The result is clipped to ``[beta_min, beta_max]``.

    :param beta: Current coefficient
    :param kl: Mean KL between the rollout policy and the updated policy (d in the paper)
    :param kl_target: The target KL (d_targ)
    :param kl_tolerance: The paper's 1.5
    :param beta_factor: The paper's 2
    :param beta_min: Lower bound of beta
    :param beta_max: Upper bound of beta
    :return: The new beta
    :raises ValueError: If ``kl`` is NaN or a setting is out of range (:func:`check_adaptive_rule`)
    """
    check_adaptive_rule(kl_target, kl_tolerance, beta_factor, beta_min, beta_max)
    if math.isnan(kl):
        raise ValueError("kl is NaN: the policy update diverged")
    if kl < kl_target / kl_tolerance:
        beta /= beta_factor
    elif kl > kl_target * kl_tolerance:
        beta *= beta_factor
    return min(max(beta, beta_min), beta_max)
