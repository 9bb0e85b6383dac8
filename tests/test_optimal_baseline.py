"""
The variance-minimising baselines: the per-time-step one of ``Reinforce(baseline="optimal")`` (its pooled estimate, its
convergence to the exact B_t, its variance against the batch mean on random tabular MDPs) and the per-parameter one of
the diagnostics, with the score computations both rest on.
"""

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.utils import obs_as_tensor

from sb3_pgnotes import NStepAC, Reinforce
from sb3_pgnotes.common import gradients
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.policies import actions_to_tensor, split_actor_critic_parameters
from sb3_pgnotes.common.returns import reward_to_go, time_indices
from sb3_pgnotes.diagnostics.tabular import (
    TabularMDP,
    baseline_update_statistics,
    linear_softmax_probs,
    linear_softmax_score_norms,
    linear_softmax_scores,
    reinforce_update_statistics,
    tabular_reinforce,
)

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
    params = split_actor_critic_parameters(model.policy)[0]
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
    assert_norms_match_per_step_gradients(model, observations, actions, split_actor_critic_parameters(model.policy)[0])


def test_per_step_score_norms_of_a_gsde_policy() -> None:
    # gSDE's log_std is a matrix whose score depends on the latent features: the exact per-step path, not the
    # diagonal Gaussian's closed form. More steps than one chunk of the batched path, the last chunk partial.
    model = NStepAC("MlpPolicy", "Pendulum-v1", use_sde=True, n_steps=8, seed=0)
    n_steps = 2 * gradients.SCORE_NORM_CHUNK + 7
    observations = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(n_steps)]))
    actions = th.as_tensor(np.stack([model.action_space.sample() for _ in range(n_steps)]))
    assert_norms_match_per_step_gradients(model, observations, actions, split_actor_critic_parameters(model.policy)[0])


def cnn_batch() -> tuple[Reinforce, EpisodeBatch, th.Tensor, th.Tensor, list[th.nn.Parameter]]:
    """:return: Reinforce with a CNN policy, one collected batch of 2 episodes, its observations, actions and actor"""
    env = gym.wrappers.TimeLimit(FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), 5)
    model = Reinforce("CnnPolicy", env, n_episodes=2, baseline="optimal", normalize_advantage=False, seed=0)
    _, callback = model._setup_learn(1_000)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    batch = model.episode_batch
    assert batch is not None
    observations = obs_as_tensor(batch.observations, model.device)
    actions = actions_to_tensor(batch.actions, model.action_space, model.device)
    return model, batch, observations, actions, split_actor_critic_parameters(model.policy)[0]


def assert_norms_match_per_step_gradients(
    model: Reinforce, observations: th.Tensor, actions: th.Tensor, params: list[th.nn.Parameter]
) -> None:
    norms = gradients.per_step_score_norms(model.policy, params, observations, actions)
    log_prob = model.policy.get_distribution(observations).log_prob(actions)
    for step in range(len(actions)):
        grads = th.autograd.grad(log_prob[step], params, retain_graph=True, allow_unused=True)
        expected = gradients.flat_gradient(params, grads).square().sum()
        th.testing.assert_close(norms[step], expected, rtol=1e-4, atol=1e-6)


def test_cnn_policy_uses_per_episode_path() -> None:
    model, batch, observations, actions, params = cnn_batch()
    weights = th.ones(2, batch.n_steps)
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


@pytest.mark.parametrize(("baseline", "standardised"), [("optimal", False), ("value", True), ("mean", True)])
def test_advantages_are_standardised_by_default_except_with_the_optimal_baseline(baseline: str, standardised: bool) -> None:
    model = Reinforce("MlpPolicy", "CartPole-v1", baseline=baseline, n_episodes=2, seed=0)
    assert model.normalize_advantage is standardised
    model.learn(100)


def test_time_optimal_baseline_pools_and_leaves_one_out() -> None:
    # Two episodes of lengths 2 and 1: time 0 holds steps 0 and 2, time 1 step 1 only.
    norms, returns, times = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), np.array([0, 1, 0])
    pool = gradients.TimeOptimalBaseline(horizon=1)
    # Leave-one-out: step 0 sees step 2 only (6), step 2 sees step 0 only (4); step 1 is alone at time 1 (0).
    np.testing.assert_allclose(pool(norms, returns, times), [6.0, 0.0, 4.0])
    # The next batch sees the first, itself left out: time 0 gives (1*4 + 3*6) / (1 + 3), time 1 gives 2*5 / 2.
    np.testing.assert_allclose(pool(np.array([1.0, 2.0]), np.array([7.0, 8.0]), np.array([0, 1])), [22 / 4, 5.0])
    # Horizon 1: the first batch has left the pool, only the second's step at time 0 (return 7) remains.
    np.testing.assert_allclose(pool(np.array([1.0]), np.array([9.0]), np.array([0])), [7.0])
    with_own = gradients.TimeOptimalBaseline(horizon=0, leave_one_out=False)
    np.testing.assert_allclose(with_own(norms, returns, times), [(4 + 18) / 4, 5.0, (4 + 18) / 4])


def tree_scores(model: Reinforce, state: int, action: int) -> th.Tensor:
    params = split_actor_critic_parameters(model.policy)[0]
    log_prob = model.policy.get_distribution(th.tensor([state])).log_prob(th.tensor([action]))
    return gradients.flat_gradient(params, th.autograd.grad(log_prob.sum(), params, allow_unused=True))


def test_pooled_estimate_converges_to_exact_time_optimal_baseline() -> None:
    # B_t = E[|psi_t|^2 R_t] / E[|psi_t|^2] by enumerating the tree's four trajectories.
    model = tree_model(n_episodes=500, optimal_baseline_horizon=20)
    with th.no_grad():
        logits = model.policy.get_distribution(th.arange(3)).distribution.logits  # type: ignore[union-attr]
    probs = th.softmax(logits, -1).numpy()
    numerator, denominator = np.zeros(2), np.zeros(2)
    for first in (0, 1):
        for second in (0, 1):
            state = 1 + first
            probability = probs[0, first] * probs[state, second]
            rewards = TREE_REWARDS[0, first], TREE_REWARDS[state, second]
            for t, (s, a, to_go) in enumerate([(0, first, sum(rewards)), (state, second, rewards[1])]):
                norm = float(tree_scores(model, s, a).square().sum())
                numerator[t] += probability * norm * to_go
                denominator[t] += probability * norm
    exact = numerator / denominator
    # The tree's B_t differ from the mean reward-to-go at t: a mix-up with a time-dependent mean would show.
    assert abs(exact[0] - (probs[0] @ TREE_REWARDS[0] + 1.0)) > 0.1
    # 21 collections from the unchanged policy (no update in between): the last batch's baselines pool all of them.
    _, callback = model._setup_learn(10**6)
    for _ in range(21):
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    batch = model.episode_batch
    assert batch is not None and batch.values is not None
    for t in (0, 1):
        np.testing.assert_allclose(batch.values[batch.step_times == t], exact[t], rtol=0.03)


def test_per_step_score_norms_of_any_policy() -> None:
    # A CNN takes the batched per-step path.
    model, _, observations, actions, params = cnn_batch()
    assert_norms_match_per_step_gradients(model, observations, actions, params)
    model.train()


def test_optimal_baseline_horizon_is_checked() -> None:
    with pytest.raises(ValueError, match="optimal_baseline_horizon must be an integer >= 0"):
        Reinforce("MlpPolicy", "CartPole-v1", baseline="optimal", normalize_advantage=False, optimal_baseline_horizon=-1)


def test_single_episode_without_pool_warns() -> None:
    kwargs: dict[str, Any] = dict(baseline="optimal", normalize_advantage=False, n_episodes=1)
    with pytest.warns(UserWarning, match=r"no other episode .*: it is 0 \(no baseline\)"):
        Reinforce("MlpPolicy", "CartPole-v1", optimal_baseline_horizon=0, **kwargs)
    with pytest.warns(UserWarning, match=r"equals the episode's own returns \(no gradient at all\)"):
        Reinforce("MlpPolicy", "CartPole-v1", optimal_baseline_horizon=0, leave_one_out=False, **kwargs)
    # With a pool the earlier updates supply the baseline.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Reinforce("MlpPolicy", "CartPole-v1", **kwargs)


def test_batch_mean_of_one_full_return_warns_and_indeed_never_moves_the_policy() -> None:
    with pytest.warns(UserWarning, match="subtracts the episode's return from itself"):
        model = Reinforce("MlpPolicy", "CartPole-v1", baseline="mean", reward_to_go=False, n_episodes=1, seed=0)
    before = [parameter.detach().clone() for parameter in model.policy.parameters()]
    model.learn(300)
    assert model._n_updates > 0
    for old, new in zip(before, model.policy.parameters(), strict=True):
        th.testing.assert_close(old, new.detach())


#: Two of the benchmark's MDPs (docs/benchmarks/optimal_baseline_variance.md, rows A and C): seed, size, horizon and
#: reward offset differ.
PINNED_MDPS = [
    pytest.param(dict(n_states=3, n_actions=2, horizon=6, reward_offset=1.0, seed=0), id="A"),
    pytest.param(dict(n_states=4, n_actions=3, horizon=8, reward_offset=1.0, seed=5), id="C"),
]


@pytest.mark.parametrize("spec", PINNED_MDPS)
def test_optimal_baseline_beats_batch_mean_at_every_batch_size(spec: dict[str, Any]) -> None:
    mdp = TabularMDP.random(**spec)
    for n_episodes in (2, 4, 8, 16, 32, 64):
        # At least 1600 episodes per batch size, so that the mean direction is precise enough to judge its bias.
        n_batches = max(200, 1600 // n_episodes)
        stats = {}
        for baseline in ("optimal", "mean"):
            model = tabular_reinforce(mdp, baseline)
            warm_up = model.optimal_baseline_horizon if baseline == "optimal" else 0
            rng = np.random.default_rng(n_episodes)
            stats[baseline] = reinforce_update_statistics(model, mdp, n_episodes, n_batches, rng, warm_up)
        optimal = stats["optimal"]
        assert optimal.total_variance <= 0.9 * stats["mean"].total_variance, (n_episodes, stats)
        # Unbiased: the mean direction is as far from the exact gradient as its own noise allows (the expected squared
        # distance is total_variance / n_batches; a bias adds its squared norm).
        assert optimal.squared_error <= 6 * optimal.total_variance / n_batches, (n_episodes, optimal)
        if n_episodes * n_batches >= 12_800:
            assert optimal.cosine >= 0.99, (n_episodes, optimal)


def pinned_model_and_probs(baseline: str = "mean") -> tuple[TabularMDP, Reinforce, th.Tensor]:
    mdp = TabularMDP.random(**PINNED_MDPS[1].values[0])  # type: ignore[arg-type]
    model = tabular_reinforce(mdp, baseline)
    action_net = model.policy.action_net
    return mdp, model, linear_softmax_probs(action_net.weight, action_net.bias, mdp.n_states).detach()


def test_linear_softmax_scores_match_autograd() -> None:
    mdp, model, probs = pinned_model_and_probs()
    batch = mdp.sample_episodes(probs.numpy(), 3, np.random.default_rng(0))
    action_net = model.policy.action_net
    expected = []
    for observation, action in zip(batch.observations, batch.actions, strict=True):
        log_prob = model.policy.get_distribution(th.tensor([observation])).log_prob(th.tensor([action]))
        grads = th.autograd.grad(log_prob.sum(), [action_net.weight, action_net.bias])
        expected.append(th.cat([grad.flatten() for grad in grads]).numpy())
    scores = linear_softmax_scores(probs.numpy(), batch.observations, batch.actions, mdp.n_states + 1)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    norms = linear_softmax_score_norms(probs).numpy()[batch.observations, batch.actions]
    np.testing.assert_allclose(norms, np.square(scores).sum(axis=1), rtol=1e-6)


def test_exact_time_optimal_baseline_matches_samples() -> None:
    mdp, _, probs = pinned_model_and_probs()
    exact = mdp.time_optimal_baseline(probs, 1.0, linear_softmax_score_norms(probs)).numpy()
    batch = mdp.sample_episodes(probs.numpy(), 100_000, np.random.default_rng(0))
    norms = linear_softmax_score_norms(probs).numpy()[batch.observations, batch.actions]
    returns = reward_to_go(batch.rewards, batch.episode_lengths, 1.0)
    times = time_indices(batch.episode_lengths)
    sampled = np.bincount(times, weights=norms * returns) / np.bincount(times, weights=norms)
    np.testing.assert_allclose(exact, sampled, rtol=0.01)
    # B_t moves with t (the return to go shrinks), so a time-independent mix-up would show.
    assert exact[0] > 1.5 * exact[-1]


def test_direct_update_is_reinforces_update() -> None:
    # The same batches through Reinforce and through the direct computation, with the batch-mean baseline.
    mdp, model, _ = pinned_model_and_probs()
    through_model = reinforce_update_statistics(model, mdp, 4, 50, np.random.default_rng(3))

    def step_mean(batch: EpisodeBatch) -> np.ndarray:
        return np.full(batch.n_steps, reward_to_go(batch.rewards, batch.episode_lengths, 1.0).mean())

    direct = baseline_update_statistics(mdp, model.policy.action_net, 4, 50, np.random.default_rng(3), step_mean)
    np.testing.assert_allclose(direct.total_variance, through_model.total_variance, rtol=1e-4)
    np.testing.assert_allclose(direct.cosine, through_model.cosine, atol=1e-6)


def test_bias_check_rejects_the_batch_mean_at_two_episodes() -> None:
    # The unbiasedness check above has power: the batch mean, which includes each episode's own return, fails it.
    mdp = TabularMDP.random(**PINNED_MDPS[0].values[0])  # type: ignore[arg-type]
    mean = reinforce_update_statistics(tabular_reinforce(mdp, "mean"), mdp, 2, 800, np.random.default_rng(2))
    assert mean.squared_error > 6 * mean.total_variance / 800, mean


def test_pool_is_training_state_not_saved(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = dict(baseline="optimal", normalize_advantage=False, n_episodes=2, optimal_baseline_horizon=3)
    model = Reinforce("MlpPolicy", "CartPole-v1", seed=0, **kwargs).learn(300)
    assert len(model.optimal_baseline.history) == 3
    model.save(tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        saved = json.loads(archive.read("data"))
    assert "optimal_baseline" not in saved and saved["optimal_baseline_horizon"] == 3
    loaded = Reinforce.load(tmp_path / "m", env=model.get_env())
    assert loaded.optimal_baseline.horizon == 3 and not loaded.optimal_baseline.history
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.optimal_baseline.history


def test_reinforce_with_gsde_resamples_noise_trains_and_survives_save_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kwargs: dict[str, Any] = dict(n_episodes=2, use_sde=True, sde_sample_freq=50, seed=0)
    with pytest.raises(ValueError, match="continuous actions"):
        Reinforce("MlpPolicy", "CartPole-v1", **kwargs)
    model = Reinforce("MlpPolicy", "Pendulum-v1", baseline="optimal", normalize_advantage=False, **kwargs)
    resets: list[int] = []
    original = model.policy.reset_noise
    monkeypatch.setattr(model.policy, "reset_noise", lambda n_envs=1: resets.append(n_envs) or original(n_envs))
    before = [param.detach().clone() for param in model.policy.parameters()]
    model.learn(400)  # one update on two 200-step episodes: a new noise matrix every 50 steps
    assert len(resets) == 8
    assert any(not th.equal(old, new) for old, new in zip(before, model.policy.parameters(), strict=True))
    model.save(tmp_path / "model.zip")
    loaded = Reinforce.load(tmp_path / "model.zip")
    assert loaded.use_sde and loaded.sde_sample_freq == 50 and loaded.policy.use_sde
    obs = np.array([0.5, -0.5, 0.1], dtype=np.float32)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
