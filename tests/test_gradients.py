"""
Policy-gradient estimators against exact gradients on a small tabular MDP (``tests/tabular.py``).

The actor is a linear softmax over one-hot states (``net_arch=dict(pi=[])``), trained by plain SGD, so one
``train()`` call on a batch of N episodes moves the actor by ``learning_rate * g``, where ``g`` is the estimator.
The exact gradient of ``J = E[sum_t gamma^t r_t]`` comes from a dynamic-programming recursion over the same
parameters, differentiated by autograd. The episodes are drawn by a fast vectorised sampler and handed to the
algorithm as an ``EpisodeBatch``; one smaller test checks that the algorithm's own collection gives batches of
the same structure.
"""

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.logger import Logger
from tabular import (
    HORIZON,
    TERMINAL,
    TabularMDP,
    expected_return,
    policy_gradient_surrogate,
    sample_episodes,
    softmax_policy,
)

from sb3_pgnotes import Reinforce
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.on_policy import EpisodicOnPolicyAlgorithm

LEARNING_RATE = 0.5
N_EPISODES = 30_000
# Fixed non-uniform actor weights, (n_actions, n_observations) and (n_actions,); the terminal column is unused.
ACTOR_WEIGHT = [[0.4, -0.3, 0.2, 0.0], [-0.5, 0.6, -0.2, 0.0]]
ACTOR_BIAS = [0.1, -0.2]
# An arbitrary state-only baseline for baseline="value" (value_net is Linear(n_observations, 1) with vf=[]).
CRITIC_WEIGHT = [[3.0, 2.0, 1.0, 0.0]]
CRITIC_BIAS = [0.5]


@dataclass
class Variant:
    """
    One estimator: the algorithm, its constructor arguments, and what its expectation must be.

    :param algo: The algorithm class
    :param gamma: Discount factor (of the algorithm and of the objective)
    :param kwargs: Constructor arguments besides the shared ones of :func:`make_model`
    :param discount_decisions: True: the exact gradient of ``J = E[sum_t gamma^t r_t]``; False: the expectation
        of discount option 1, ``E[sum_t grad log pi(a_t|s_t) Q_t]`` (no ``gamma^t`` on decision t)
    """

    algo: type[EpisodicOnPolicyAlgorithm]
    gamma: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    discount_decisions: bool = True


# Plain SGD steps on the estimator of docs/theory.md: no advantage standardisation, the 1/N-over-episodes loss.
REINFORCE_SGD: dict[str, Any] = {"normalize_advantage": False, "loss_scale": "episode", "n_critic_updates": 1}


def reinforce(gamma: float, discount_decisions: bool = True, **kwargs: Any) -> Variant:
    return Variant(Reinforce, gamma, {**REINFORCE_SGD, **kwargs}, discount_decisions)


VARIANTS = [
    pytest.param(reinforce(1.0, reward_to_go=False, baseline="none"), id="reinforce-full-return"),
    pytest.param(reinforce(1.0, reward_to_go=False, baseline="mean"), id="reinforce-full-return-mean-baseline"),
    pytest.param(reinforce(1.0, reward_to_go=True, baseline="none"), id="reinforce-reward-to-go"),
    pytest.param(reinforce(1.0, reward_to_go=True, baseline="mean"), id="reinforce-rtg-mean-baseline"),
    pytest.param(reinforce(1.0, reward_to_go=True, baseline="value"), id="reinforce-rtg-value-baseline"),
    # The full discounted return is the plain estimator of the discounted objective (option 2 is implied).
    pytest.param(reinforce(0.8, reward_to_go=False, baseline="mean"), id="reinforce-full-return-discounted"),
    pytest.param(reinforce(0.8, reward_to_go=True, baseline="none", discount_option=2), id="reinforce-discount-option-2"),
    pytest.param(
        reinforce(0.8, reward_to_go=True, baseline="value", discount_option=2), id="reinforce-discount-option-2-value-baseline"
    ),
    pytest.param(reinforce(1.0, reward_to_go=False, baseline="optimal"), id="reinforce-full-return-optimal-baseline"),
    pytest.param(reinforce(1.0, reward_to_go=True, baseline="optimal"), id="reinforce-rtg-optimal-baseline"),
    pytest.param(
        reinforce(1.0, reward_to_go=True, baseline="optimal", leave_one_out=False), id="reinforce-rtg-optimal-batch-baseline"
    ),
    pytest.param(
        reinforce(0.8, reward_to_go=True, baseline="optimal", discount_option=2), id="reinforce-discount-option-2-optimal"
    ),
    # Option 1 is not the discounted objective's gradient, but it must match its own expectation.
    pytest.param(
        reinforce(0.8, False, reward_to_go=True, baseline="mean", discount_option=1), id="reinforce-discount-option-1"
    ),
]

# Estimators checked against the wrong target, which the acceptance test must reject: (variant, wrong target).
# In this MDP the targets point in similar directions (cosine ~0.998); the norm ratio (0.66 or ~1.5) rejects them,
# while 25 seeds of the right targets stay within cosine >= 0.9994 and norm ratio [0.95, 1.03].
WRONG_TARGETS = [
    pytest.param(
        reinforce(0.8, reward_to_go=True, baseline="none", discount_option=1),
        dict(gamma=0.8, discount_decisions=True),
        id="option-1-vs-discounted-gradient",
    ),
    pytest.param(
        reinforce(0.8, reward_to_go=True, baseline="none", discount_option=2),
        dict(gamma=1.0, discount_decisions=True),
        id="option-2-vs-undiscounted-gradient",
    ),
    pytest.param(
        reinforce(1.0, reward_to_go=True, baseline="none"),
        dict(gamma=0.8, discount_decisions=True),
        id="undiscounted-vs-discounted-gradient",
    ),
]


def linear_heads(model: EpisodicOnPolicyAlgorithm) -> tuple[th.nn.Linear, th.nn.Linear]:
    """
    :param model: The model
    :return: Its actor head (``action_net``) and critic head (``value_net``), both linear with this net_arch
    """
    action_net, value_net = model.policy.action_net, model.policy.value_net
    assert isinstance(action_net, th.nn.Linear) and isinstance(value_net, th.nn.Linear)
    return action_net, value_net


def make_model(variant: Variant, env: Any = None, seed: int = 0) -> EpisodicOnPolicyAlgorithm:
    """
    :param variant: The estimator
    :param env: The env (default: one TabularMDP)
    :param seed: Seed of the model
    :return: A model on the tabular MDP with a linear softmax actor at fixed weights, trained by plain SGD
    """
    model = variant.algo(
        "MlpPolicy",
        TabularMDP() if env is None else env,
        learning_rate=LEARNING_RATE,
        gamma=variant.gamma,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[]), optimizer_class=th.optim.SGD, ortho_init=False),
        seed=seed,
        **variant.kwargs,
    )
    action_net, value_net = linear_heads(model)
    with th.no_grad():
        action_net.weight.copy_(th.tensor(ACTOR_WEIGHT))
        action_net.bias.copy_(th.tensor(ACTOR_BIAS))
        value_net.weight.copy_(th.tensor(CRITIC_WEIGHT))
        value_net.bias.copy_(th.tensor(CRITIC_BIAS))
    model.set_logger(Logger(folder=None, output_formats=[]))  # train() records; learn() would set this up
    return model


def actor_parameters(model: EpisodicOnPolicyAlgorithm) -> th.Tensor:
    """
    :param model: The model
    :return: The actor's weight and bias, flattened into one float64 vector
    """
    action_net = linear_heads(model)[0]
    return th.cat([action_net.weight.detach().flatten(), action_net.bias.detach()]).double()


def _actor_probs(weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
    # With one-hot observations the logits of state s are weight[:, s] + bias.
    return softmax_policy(weight.T + bias)


def policy_probs(model: EpisodicOnPolicyAlgorithm) -> np.ndarray:
    """
    :param model: The model
    :return: The actor's action probabilities in each non-terminal state, (N_STATES, N_ACTIONS), float64
    """
    action_net = linear_heads(model)[0]
    with th.no_grad():
        return _actor_probs(action_net.weight.double(), action_net.bias.double()).numpy()


def exact_direction(model: EpisodicOnPolicyAlgorithm, gamma: float, discount_decisions: bool = True) -> th.Tensor:
    """
    :param model: The model
    :param gamma: Discount factor
    :param discount_decisions: True: grad J by autograd through :func:`expected_return`; False: the expectation
        of discount option 1 (see :func:`policy_gradient_surrogate`)
    :return: The exact target with respect to the actor's weight and bias, flattened as in :func:`actor_parameters`
    """
    action_net = linear_heads(model)[0]
    weight = action_net.weight.detach().double().requires_grad_(True)
    bias = action_net.bias.detach().double().requires_grad_(True)
    probs = _actor_probs(weight, bias)
    objective = expected_return(probs, gamma) if discount_decisions else policy_gradient_surrogate(probs, gamma, False)
    grad_weight, grad_bias = th.autograd.grad(objective, [weight, bias])
    return th.cat([grad_weight.flatten(), grad_bias])


def estimated_gradient(model: EpisodicOnPolicyAlgorithm, batch: EpisodeBatch) -> th.Tensor:
    """
    One ``train()`` call on ``batch``: with plain SGD the actor moves by ``learning_rate * g``.

    :param model: The model (left updated)
    :param batch: The episodes
    :return: The estimator g, flattened as in :func:`actor_parameters`
    """
    before = actor_parameters(model)
    model.episode_batch = batch
    model.process_batch(batch, model.rollout_buffer)
    model.train()
    return (actor_parameters(model) - before) / LEARNING_RATE


def matches(estimate: th.Tensor, target: th.Tensor) -> tuple[bool, str]:
    """
    The acceptance check: cosine >= 0.99 and norm ratio within [0.9, 1.1].

    :param estimate: Estimated direction
    :param target: Exact direction
    :return: Whether they match, and a description for the assertion message
    """
    cosine = float(th.dot(estimate, target) / (estimate.norm() * target.norm()))
    ratio = float(estimate.norm() / target.norm())
    return cosine >= 0.99 and 0.9 <= ratio <= 1.1, f"cosine {cosine:.4f}, norm ratio {ratio:.4f}: {estimate} vs {target}"


def sample_for(model: EpisodicOnPolicyAlgorithm, seed: int = 0) -> EpisodeBatch:
    return sample_episodes(policy_probs(model), N_EPISODES, np.random.default_rng(seed))


def test_exact_gradient_is_consistent() -> None:
    """The autograd gradient of J equals the policy gradient theorem's, and J is the mean sampled return."""
    model = make_model(reinforce(0.8))
    for gamma in (1.0, 0.8):
        action_net = linear_heads(model)[0]
        weight = action_net.weight.detach().double().requires_grad_(True)
        bias = action_net.bias.detach().double().requires_grad_(True)
        by_autograd = th.autograd.grad(expected_return(_actor_probs(weight, bias), gamma), [weight, bias])
        by_theorem = th.autograd.grad(policy_gradient_surrogate(_actor_probs(weight, bias), gamma), [weight, bias])
        for a, b in zip(by_autograd, by_theorem, strict=True):
            th.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        batch = sample_for(model)
        discounts = gamma ** np.concatenate([np.arange(length) for length in batch.episode_lengths])
        mean_return = float((discounts * batch.rewards).sum()) / batch.n_episodes
        assert mean_return == pytest.approx(float(expected_return(th.as_tensor(policy_probs(model)), gamma)), abs=0.03)


@pytest.mark.parametrize("variant", VARIANTS)
def test_estimator_matches_exact_gradient(variant: Variant) -> None:
    model = make_model(variant)
    target = exact_direction(model, variant.gamma, variant.discount_decisions)
    ok, message = matches(estimated_gradient(model, sample_for(model)), target)
    assert ok, message


@pytest.mark.parametrize("variant, wrong_target", WRONG_TARGETS)
def test_acceptance_check_rejects_wrong_target(variant: Variant, wrong_target: dict[str, Any]) -> None:
    """The check above has power: on the same batch size, an estimator of something else fails it."""
    model = make_model(variant)
    target = exact_direction(model, **wrong_target)
    estimate = estimated_gradient(model, sample_for(model))
    ok, message = matches(estimate, target)
    assert not ok, message
    ok, message = matches(-estimate, exact_direction(model, variant.gamma, variant.discount_decisions))
    assert not ok, message


def test_step_loss_scale_rescales_episode_estimate() -> None:
    """loss_scale="step" divides by the number of steps instead of the number of episodes, on the same batch."""
    variant = reinforce(0.8, reward_to_go=True, baseline="value", discount_option=2)
    batch = sample_episodes(policy_probs(make_model(variant)), 5_000, np.random.default_rng(1))
    per_episode = estimated_gradient(make_model(variant), batch)
    per_step = estimated_gradient(
        make_model(reinforce(0.8, reward_to_go=True, baseline="value", discount_option=2, loss_scale="step")), batch
    )
    th.testing.assert_close(per_step, per_episode * batch.n_episodes / batch.n_steps, rtol=1e-4, atol=1e-6)


def test_collected_episodes_have_the_sampler_structure() -> None:
    """Reinforce's own collection from the tabular env gives the batch the vectorised sampler imitates."""
    n_envs, n_episodes = 2, 5
    env = DummyVecEnv([TabularMDP for _ in range(n_envs)])
    model = make_model(reinforce(1.0, reward_to_go=True, baseline="value", n_episodes=n_episodes), env=env, seed=3)
    _, callback = model._setup_learn(10_000)
    assert model.env is not None
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)
    batch = model.episode_batch
    assert batch is not None

    assert batch.n_episodes == n_episodes
    assert int(batch.episode_lengths.sum()) == batch.n_steps
    assert np.all((batch.episode_lengths >= 1) & (batch.episode_lengths <= HORIZON))
    assert not batch.truncated.any()
    assert batch.terminal_observations == [None] * n_episodes
    # Env-major order: env 0's first episodes within its quota, then env 1's; each env recorded what it played.
    played = [
        episode
        for idx, quota in enumerate(model.episode_quotas(n_envs))
        for episode in cast(TabularMDP, env.envs[idx].unwrapped).episodes[:quota]
    ]
    steps = [step for episode in played for step in episode]
    assert [len(episode) for episode in played] == batch.episode_lengths.tolist()
    np.testing.assert_array_equal(np.asarray(batch.observations).flatten(), [s for s, _, _ in steps])
    np.testing.assert_array_equal(np.asarray(batch.actions).flatten(), [a for _, a, _ in steps])
    np.testing.assert_allclose(batch.rewards, [r for _, _, r in steps])
    assert TERMINAL not in np.asarray(batch.observations)
    # The stored log-probabilities are those of the policy the sampler reads its probabilities from.
    probs = policy_probs(model)
    expected_log_probs = np.log(probs[np.asarray(batch.observations).flatten(), np.asarray(batch.actions).flatten()])
    np.testing.assert_allclose(batch.log_probs, expected_log_probs, rtol=1e-5)

    # The sampler's batch has the same layout, and train() accepts both.
    sampled = sample_episodes(probs, n_episodes, np.random.default_rng(0))
    for name in ("observations", "actions", "rewards", "log_probs", "episode_lengths", "truncated"):
        collected_array, sampled_array = np.asarray(getattr(batch, name)), np.asarray(getattr(sampled, name))
        assert collected_array.ndim == sampled_array.ndim, name
        assert collected_array.dtype.kind == sampled_array.dtype.kind, name
    estimated_gradient(model, batch)
    estimated_gradient(model, sampled)
