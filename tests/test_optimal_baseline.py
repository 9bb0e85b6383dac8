"""The variance-minimising baseline: exact per-episode gradients and convergence to b* = E[XY] / E[Y^2]."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.utils import obs_as_tensor

from sb3_pgnotes import Reinforce
from sb3_pgnotes.common import gradients
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.policies import actions_to_tensor

# Two-step tree: state 0, action a leads to state 1 + a, a second action ends the episode.
TREE_REWARDS = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]])


class TwoStepTree(gym.Env):
    observation_space = spaces.Discrete(3)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state = 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        reward = float(TREE_REWARDS[self.state, int(action)])
        if self.state == 0:
            self.state = 1 + int(action)
            return self.state, reward, False, False, {}
        return self.state, reward, True, False, {}


def tree_model(**kwargs: Any) -> Reinforce:
    model = Reinforce(
        "MlpPolicy",
        TwoStepTree(),
        baseline="optimal",
        normalize_advantage=False,
        gamma=1.0,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[]), ortho_init=False),
        seed=0,
        **kwargs,
    )
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor([[0.5, -1.0, 0.3], [-0.2, 0.4, -0.6]]))
    return model


def tree_batch(model: Reinforce, n_episodes: int, rng: np.random.Generator) -> EpisodeBatch:
    probs = tree_probabilities(model)
    first = (rng.random(n_episodes) < probs[0, 1]).astype(np.int64)
    second_state = 1 + first
    second = (rng.random(n_episodes) < probs[second_state, 1]).astype(np.int64)
    return EpisodeBatch(
        observations=np.stack([np.zeros(n_episodes, dtype=np.int64), second_state], 1).ravel(),
        actions=np.stack([first, second], 1).ravel(),
        rewards=np.stack([TREE_REWARDS[0, first], TREE_REWARDS[second_state, second]], 1).ravel().astype(np.float32),
        log_probs=np.zeros(2 * n_episodes, dtype=np.float32),
        episode_lengths=np.full(n_episodes, 2),
        truncated=np.zeros(n_episodes, dtype=bool),
        terminal_observations=[None] * n_episodes,
    )


def tree_probabilities(model: Reinforce) -> np.ndarray:
    with th.no_grad():
        logits = model.policy.get_distribution(th.arange(3)).distribution.logits  # type: ignore[union-attr]
    return th.softmax(logits, -1).numpy()


def exact_optimal_baseline(model: Reinforce, reward_to_go: bool) -> th.Tensor:
    """b*_k = E[X_k Y_k] / E[Y_k^2] by enumerating the four trajectories."""
    params = model._actor_parameters()
    probs = tree_probabilities(model)

    def score(state: int, action: int) -> th.Tensor:
        log_prob = model.policy.get_distribution(th.tensor([state])).log_prob(th.tensor([action]))
        return gradients.flat_gradient(params, th.autograd.grad(log_prob.sum(), params, allow_unused=True))

    xy, yy = 0.0, 0.0
    for first in (0, 1):
        for second in (0, 1):
            state = 1 + first
            probability = probs[0, first] * probs[state, second]
            first_reward, second_reward = TREE_REWARDS[0, first], TREE_REWARDS[state, second]
            scores = (score(0, first), score(state, second))
            if reward_to_go:
                x = (first_reward + second_reward) * scores[0] + second_reward * scores[1]
            else:
                x = (first_reward + second_reward) * (scores[0] + scores[1])
            y = scores[0] + scores[1]
            xy = xy + probability * x * y
            yy = yy + probability * y * y
    return xy / yy


@pytest.mark.parametrize("reward_to_go", [True, False])
def test_batch_estimate_converges_to_exact_optimal_baseline(reward_to_go: bool) -> None:
    model = tree_model(reward_to_go=reward_to_go, leave_one_out=False)
    exact = exact_optimal_baseline(model, reward_to_go)
    batch = tree_batch(model, 40_000, np.random.default_rng(0))
    observations = obs_as_tensor(batch.observations, model.device)
    actions = actions_to_tensor(batch.actions, model.action_space, model.device)
    bootstrap = np.zeros(batch.n_episodes)
    _, baselines, _ = model.optimal_baseline_gradient(
        batch, observations, actions, *model.returns_and_step_weights(batch, bootstrap)
    )
    np.testing.assert_allclose(baselines[0].numpy(), exact.numpy(), rtol=0.03, atol=0.02)
    # The optimal baseline differs from the plain mean return: the test would catch a mean-baseline mix-up.
    mean_return = float(batch.rewards.reshape(-1, 2).sum(1).mean())
    assert np.abs(exact.numpy() - mean_return).max() > 0.2

    loo_model = tree_model(reward_to_go=reward_to_go, leave_one_out=True)
    _, loo, _ = loo_model.optimal_baseline_gradient(
        batch, observations, actions, *model.returns_and_step_weights(batch, bootstrap)
    )
    np.testing.assert_allclose(loo.numpy(), baselines.numpy(), rtol=1e-2, atol=1e-2)


def test_leave_one_out_excludes_own_episode() -> None:
    x = th.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 1.0]])
    y = th.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, 2.0]])
    # Episode 0, component 0: (3*2 + 5*1) / (2^2 + 1^2) = 11/5. Component 1 of episode 2: (2*1 + 0) / (1 + 0) = 2.
    baselines = gradients.optimal_baseline(x, y, leave_one_out=True)
    assert baselines[0, 0].item() == pytest.approx(11 / 5)
    assert baselines[2, 1].item() == pytest.approx(2.0)
    # Episode 1, component 1: (2*1 + 1*2) / (1^2 + 2^2).
    assert baselines[1, 1].item() == pytest.approx(4 / 5)
    full = gradients.optimal_baseline(x, y, leave_one_out=False)
    assert full[0, 0].item() == pytest.approx((1 + 6 + 5) / (1 + 4 + 1))
    # 0/0 gives no baseline rather than NaN.
    assert gradients.optimal_baseline(th.zeros(2, 1), th.zeros(2, 1)).abs().sum().item() == 0.0


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_one_backward_pass_matches_per_episode_gradients(env_id: str) -> None:
    model = Reinforce("MlpPolicy", env_id, n_episodes=3, baseline="optimal", normalize_advantage=False, seed=0)
    _, callback = model._setup_learn(1_000)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    batch = model.episode_batch
    assert batch is not None
    observations = obs_as_tensor(batch.observations, model.device)
    actions = actions_to_tensor(batch.actions, model.action_space, model.device)
    weights = th.randn(2, batch.n_steps, generator=th.Generator().manual_seed(0))
    params = model._actor_parameters()
    scores = gradients.linear_per_episode_score_sums(
        model.policy, params, observations, actions, batch.episode_lengths, weights
    )
    assert scores is not None
    fast = scores.sums
    start = 0
    for episode, length in enumerate(batch.episode_lengths.tolist()):
        log_prob = model.policy.get_distribution(observations[start : start + length]).log_prob(
            actions[start : start + length]
        )
        for k in range(2):
            grads = th.autograd.grad((log_prob * weights[k, start : start + length]).sum(), params, retain_graph=True)
            th.testing.assert_close(fast[k, episode], gradients.flat_gradient(params, grads), rtol=1e-4, atol=1e-5)
        start += length


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_per_step_score_norms_match_per_step_gradients(env_id: str) -> None:
    model = Reinforce("MlpPolicy", env_id, n_episodes=1, seed=0)
    _, callback = model._setup_learn(1_000)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    batch = model.episode_batch
    assert batch is not None
    observations = obs_as_tensor(batch.observations, model.device)[:20]
    actions = actions_to_tensor(batch.actions, model.action_space, model.device)[:20]
    params = model._actor_parameters()
    norms = gradients.per_step_score_norms(model.policy, params, observations, actions)
    assert norms is not None
    log_prob = model.policy.get_distribution(observations).log_prob(actions)
    for step in range(len(actions)):
        grads = th.autograd.grad(log_prob[step], params, retain_graph=True, allow_unused=True)
        expected = gradients.flat_gradient(params, grads).square().sum()
        th.testing.assert_close(norms[step], expected, rtol=1e-4, atol=1e-6)


def test_cnn_policy_uses_per_episode_path() -> None:
    env = gym.wrappers.TimeLimit(FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), 5)
    model = Reinforce("CnnPolicy", env, n_episodes=2, baseline="optimal", normalize_advantage=False, seed=0)
    _, callback = model._setup_learn(1_000)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    batch = model.episode_batch
    assert batch is not None
    observations = obs_as_tensor(batch.observations, model.device)
    actions = actions_to_tensor(batch.actions, model.action_space, model.device)
    weights = th.ones(2, batch.n_steps)
    params = model._actor_parameters()
    args = (model.policy, params, observations, actions, batch.episode_lengths, weights)
    assert gradients.linear_per_episode_score_sums(*args) is None
    sums = gradients.per_episode_score_sums(*args).sums
    log_prob = model.policy.get_distribution(observations).log_prob(actions)
    total = gradients.flat_gradient(params, th.autograd.grad(log_prob.sum(), params, allow_unused=True))
    th.testing.assert_close(sums[0].sum(0), total, rtol=1e-4, atol=1e-5)
    model.train()


def test_optimal_baseline_rejects_normalized_advantages() -> None:
    with pytest.raises(ValueError, match="normalize_advantage=False"):
        Reinforce("MlpPolicy", "CartPole-v1", baseline="optimal", normalize_advantage=True)


def test_leave_one_out_with_one_episode_warns() -> None:
    with pytest.warns(UserWarning, match="no other episode"):
        Reinforce("MlpPolicy", "CartPole-v1", baseline="optimal", normalize_advantage=False, n_episodes=1)
