"""
Gradient-variance diagnostics: how much each policy-gradient estimator "shakes" (``docs/theory.md``, "Reward-to-go"
and "Baselines").

On one fixed policy snapshot, M independent batches of whole episodes are drawn and every estimator variant
computes its gradient on each batch. Because the snapshot does not change, the spread of the M estimates is
the estimator's own variance, and their mean is its expectation (the same for every unbiased variant).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor, set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.collection import Collector, EpisodeQuota
from sb3_pgnotes.common.critic import evaluate_values
from sb3_pgnotes.common.gradients import (
    TimeOptimalBaseline,
    batch_score_norms,
    optimal_baseline,
    per_episode_score_sums,
)
from sb3_pgnotes.common.policies import actions_to_tensor, trainable_actor_parameters
from sb3_pgnotes.common.returns import batch_mean_baseline, full_returns, gae_advantages, reward_to_go

#: Estimator variants, from the plain estimator to the lowest-variance ones. Those after ``rtg_optimal`` need a
#: learned value function.
VARIANTS = ("full_return", "reward_to_go", "rtg_mean", "rtg_optimal_component", "rtg_optimal", "rtg_value", "gae")
VALUE_VARIANTS = ("rtg_value", "gae")


@dataclass
class VarianceStats:
    """
    Statistics of one estimator over M batches drawn from the same policy.

    :param variant: Name of the estimator
    :param mean_gradient: Mean of the M gradient estimates
    :param total_variance: Trace of the covariance of one batch's estimate (sum of per-component variances)
    :param snr: Signal-to-noise ratio ``||mean||^2 / total_variance`` (NaN when both are 0)
    :param cosine_to_reference: Cosine between the mean estimate and a large-batch reference gradient (NaN without a
        reference, or when either is the zero vector)
    """

    variant: str
    mean_gradient: np.ndarray
    total_variance: float
    snr: float
    cosine_to_reference: float


def estimator_gradients(
    policy: ActorCriticPolicy,
    batch: EpisodeBatch,
    gamma: float,
    variants: tuple[str, ...] = VARIANTS,
    gae_lambda: float = 0.95,
    optimal_baseline_pool: TimeOptimalBaseline | None = None,
) -> dict[str, th.Tensor]:
    """
    The policy-gradient estimate ``1/N sum_i sum_t A_t grad log pi(a_t|s_t)`` of each variant on one batch.

    ``rtg_optimal`` subtracts ``Reinforce(baseline="optimal")``'s per-time-step variance-minimising baseline
    (:class:`~sb3_pgnotes.common.gradients.TimeOptimalBaseline`); ``rtg_optimal_component`` the per-parameter
    variance-minimising constant ``b*_k = E[X_k Y_k] / E[Y_k^2]``, estimated leave-one-out from the batch
    (:func:`~sb3_pgnotes.common.gradients.optimal_baseline`).

    All variants share one pass over the per-episode score sums. Discount option 1 throughout (``gamma`` inside
    the returns); time-limit-truncated episodes are bootstrapped with the critic for the value-based variants.

    :param policy: The policy (its value head serves the value-based variants)
    :param batch: Whole episodes drawn from ``policy``
    :param gamma: Discount factor
    :param variants: Which of :data:`VARIANTS` to compute
    :param gae_lambda: lambda of the ``gae`` variant
    :param optimal_baseline_pool: The pooled statistics of ``rtg_optimal``'s baseline, which the batch joins
        (default: a new pool, the batch's other episodes only)
    :return: Flat gradient over the actor's parameters, per variant
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; allowed: {', '.join(VARIANTS)}")
    device = policy.device
    observations = obs_as_tensor(batch.observations, device)  # type: ignore[arg-type]
    actions = actions_to_tensor(batch.actions, policy.action_space, device)
    lengths = batch.episode_lengths
    rtg = reward_to_go(batch.rewards, lengths, gamma)
    weightings = {
        "full_return": full_returns(batch.rewards, lengths, gamma),
        "reward_to_go": rtg,
        "rtg_mean": rtg - batch_mean_baseline(rtg, lengths, per_episode=False),
        "score": np.ones_like(rtg),
    }
    actor_params = trainable_actor_parameters(policy)
    if "rtg_optimal" in variants:
        pool = TimeOptimalBaseline(horizon=0) if optimal_baseline_pool is None else optimal_baseline_pool
        weightings["rtg_optimal"] = rtg - pool(batch_score_norms(policy, batch), rtg, batch.step_times)
    if set(variants) & set(VALUE_VARIANTS):
        values, bootstrap = evaluate_values(policy, batch)
        weightings["rtg_value"] = reward_to_go(batch.rewards, lengths, gamma, bootstrap) - values
        weightings["gae"] = gae_advantages(batch.rewards, values, lengths, gamma, gae_lambda, bootstrap)
    names = list(weightings)
    scores = per_episode_score_sums(
        policy,
        actor_params,
        observations,
        actions,
        lengths,
        th.as_tensor(np.stack([weightings[name] for name in names]), dtype=th.float32, device=device),
    )
    per_episode = dict(zip(names, scores.sums, strict=True))
    estimates = {}
    for variant in variants:
        if variant == "rtg_optimal_component":
            x, y = per_episode["reward_to_go"], per_episode["score"]
            estimates[variant] = (x - optimal_baseline(x, y, leave_one_out=True) * y).mean(0)
        else:
            estimates[variant] = per_episode[variant].mean(0)
    return estimates


@contextmanager
def kept_exploration_noise(policy: ActorCriticPolicy) -> Iterator[None]:
    """
    Restore a gSDE policy's exploration matrices on exit: drawing episodes resamples them (as training's collection
    does), and a measurement in the middle of a training rollout must leave that rollout's noise as it was.

    :param policy: The policy (nothing is kept without gSDE)
    """
    distribution = policy.action_dist
    noise = ("weights_dist", "exploration_mat", "exploration_matrices")
    kept = {name: getattr(distribution, name) for name in noise if hasattr(distribution, name)}
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(distribution, name, value)


class EpisodeSampler:
    """
    Draws batches of whole episodes from a fixed policy with the training algorithms' collection loop (and its
    per-env episode quota, so that short episodes are not over-sampled).

    :param policy: The policy snapshot (an SB3 ``ActorCriticPolicy``; it is not changed)
    :param env: The environment to sample in
    :param seed: Seed of the action sampling and the env
    :param episode_step_limit: An episode running longer than this raises an error
    """

    def __init__(
        self, policy: ActorCriticPolicy, env: VecEnv, seed: int | None = None, episode_step_limit: int = 100_000
    ) -> None:
        if seed is not None:
            set_random_seed(seed)
            env.seed(seed)
        self.policy = policy
        self.device = policy.device
        self.env = env
        self.use_sde = bool(getattr(policy, "use_sde", False))
        self.sde_sample_freq = -1
        self.episode_step_limit = episode_step_limit
        self.num_timesteps = 0
        self._last_obs = env.reset()
        self._last_episode_starts = np.ones(env.num_envs, dtype=bool)
        self._collector = Collector(self)

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        """Episode statistics are not kept."""

    def sample(self, n_episodes: int) -> EpisodeBatch:
        """
        :param n_episodes: Number of whole episodes
        :return: The episodes
        """
        rule = EpisodeQuota(n_episodes)
        with kept_exploration_noise(self.policy):
            self._collector.collect(self.env, None, rule)
        if rule.partial_episodes:
            # The next batch starts with fresh episodes, as in training.
            self._last_obs = self.env.reset()
            self._last_episode_starts = np.ones(self.env.num_envs, dtype=bool)
        return rule.batch()


def gradient_variance(
    policy: ActorCriticPolicy,
    env: VecEnv,
    gamma: float,
    n_batches: int = 20,
    n_episodes: int = 10,
    reference_episodes: int = 200,
    variants: tuple[str, ...] | None = None,
    gae_lambda: float = 0.95,
    seed: int | None = None,
    optimal_baseline_horizon: int = 10,
) -> list[VarianceStats]:
    """
    Measure the variance of each estimator variant on one policy snapshot.

    :param policy: The policy snapshot
    :param env: Environment to draw episodes from
    :param gamma: Discount factor of the returns
    :param n_batches: M, the number of independent batches
    :param n_episodes: Episodes per batch (the estimators' N)
    :param reference_episodes: Episodes of the large batch whose reward-to-go + optimal-baseline estimate is the
        reference gradient (0: no reference, the cosine is NaN)
    :param variants: Variants to compare; default: all of :data:`VARIANTS`
    :param gae_lambda: lambda of the ``gae`` variant
    :param seed: Seed of the sampling
    :param optimal_baseline_horizon: ``rtg_optimal`` pools the statistics of this many earlier batches, as
        ``Reinforce(baseline="optimal")`` does; the pool is filled with as many batches before the measured ones
    :return: One :class:`VarianceStats` per variant
    """
    if n_batches < 2:
        raise ValueError(f"n_batches must be >= 2 to measure a variance, got {n_batches}")
    variants = VARIANTS if variants is None else variants
    # The observations as SB3 shows them to a policy in training: images channels first.
    env = BaseAlgorithm._wrap_env(env, monitor_wrapper=False)
    sampler = EpisodeSampler(policy, env, seed)
    policy.set_training_mode(False)
    pool = TimeOptimalBaseline(optimal_baseline_horizon)
    if "rtg_optimal" in variants:
        # Measured as in training, where the earlier updates have filled the pool.
        for _ in range(optimal_baseline_horizon):
            warm_up = sampler.sample(n_episodes)
            rtg = reward_to_go(warm_up.rewards, warm_up.episode_lengths, gamma)
            pool(batch_score_norms(policy, warm_up), rtg, warm_up.step_times)
    estimates: dict[str, list[th.Tensor]] = {variant: [] for variant in variants}
    for _ in range(n_batches):
        batch = sampler.sample(n_episodes)
        for variant, gradient in estimator_gradients(policy, batch, gamma, variants, gae_lambda, pool).items():
            estimates[variant].append(gradient)
    reference_gradient = None
    if reference_episodes > 0:
        reference_batch = sampler.sample(reference_episodes)
        reference_gradient = estimator_gradients(policy, reference_batch, gamma, ("rtg_optimal",))["rtg_optimal"]
    stats = []
    for variant in variants:
        stacked = th.stack(estimates[variant]).double()
        mean = stacked.mean(0)
        total_variance = float(stacked.var(0, unbiased=True).sum())
        cosine = float("nan")
        if reference_gradient is not None:
            norms = float(mean.norm() * reference_gradient.double().norm())
            # Undefined against a zero vector (torch's eps would report 0).
            cosine = float(mean @ reference_gradient.double()) / norms if norms > 0 else float("nan")
        signal = float(mean.square().sum())
        if total_variance > 0:
            snr = signal / total_variance
        else:
            # No noise: infinite with a signal, undefined (NaN) without one, e.g. when every reward is the same.
            snr = float("inf") if signal > 0 else float("nan")
        stats.append(VarianceStats(variant, mean.cpu().numpy(), total_variance, snr, cosine))
    return stats
