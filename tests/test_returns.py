"""Return math against hand-computed values, and episode collection across several envs."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from envs import CountingEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_pgnotes import Reinforce
from sb3_pgnotes.common.returns import (
    baseline_values,
    batch_mean_baseline,
    discount_weights,
    episode_ids,
    episode_returns,
    full_returns,
    gae_advantages,
    nstep_returns,
    reward_to_go,
    time_indices,
)

REWARDS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
LENGTHS = np.array([3, 2])


def test_time_indices_and_episode_ids() -> None:
    np.testing.assert_array_equal(time_indices(LENGTHS), [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(episode_ids(LENGTHS), [0, 0, 0, 1, 1])


def test_reward_to_go_undiscounted() -> None:
    np.testing.assert_allclose(reward_to_go(REWARDS, LENGTHS), [6.0, 5.0, 3.0, 9.0, 5.0])


def test_reward_to_go_discounted() -> None:
    # Episode 0: 3; 2 + 0.5*3 = 3.5; 1 + 0.5*3.5 = 2.75. Episode 1: 5; 4 + 0.5*5 = 6.5.
    np.testing.assert_allclose(reward_to_go(REWARDS, LENGTHS, gamma=0.5), [2.75, 3.5, 3.0, 6.5, 5.0])


def test_reward_to_go_bootstrap_only_for_given_episode() -> None:
    # Episode 1 truncated with V(s_T) = 10: 5 + 0.5*10 = 10; 4 + 0.5*10 = 9.
    returns = reward_to_go(REWARDS, LENGTHS, gamma=0.5, bootstrap_values=np.array([0.0, 10.0]))
    np.testing.assert_allclose(returns, [2.75, 3.5, 3.0, 9.0, 10.0])


def test_full_and_episode_returns() -> None:
    np.testing.assert_allclose(episode_returns(REWARDS, LENGTHS), [6.0, 9.0])
    np.testing.assert_allclose(full_returns(REWARDS, LENGTHS), [6.0, 6.0, 6.0, 9.0, 9.0])
    np.testing.assert_allclose(full_returns(REWARDS, LENGTHS, gamma=0.5), [2.75, 2.75, 2.75, 6.5, 6.5])


def test_discount_weights_option_2() -> None:
    np.testing.assert_allclose(discount_weights(time_indices(LENGTHS), 0.5), [1.0, 0.5, 0.25, 1.0, 0.5])


def test_discount_weights_and_nstep_returns_underflow_to_zero_under_numpy_raise() -> None:
    old = np.seterr(all="raise")
    try:
        weights = discount_weights(np.arange(8000), 0.9)
        targets = nstep_returns(np.zeros(2000), np.ones(2000), np.array([2000]), 0.5, n=1200)
    finally:
        np.seterr(**old)
    assert weights[0] == 1.0 and weights[-1] == 0.0
    assert targets[0] == 0.0 and targets[-1] == 0.0


def test_batch_mean_baseline_counts_each_episode_once_for_full_returns() -> None:
    returns = full_returns(REWARDS, LENGTHS)
    assert batch_mean_baseline(returns, LENGTHS, per_episode=True) == pytest.approx(7.5)
    assert batch_mean_baseline(returns, LENGTHS, per_episode=False) == pytest.approx(36.0 / 5)


@pytest.mark.parametrize("lengths", [[3, 3], [0, 5], [6]])
def test_inconsistent_episode_lengths_raise(lengths: list[int]) -> None:
    with pytest.raises(ValueError, match="episode_lengths"):
        reward_to_go(REWARDS, np.array(lengths))


COLUMN = np.ones((5, 1))

MALFORMED = [
    pytest.param(lambda: reward_to_go(REWARDS, [2.7, 2.3]), "whole numbers", id="fractional-lengths"),
    pytest.param(lambda: time_indices([1.5, 2.5]), "whole numbers", id="fractional-time-indices"),
    pytest.param(lambda: reward_to_go(COLUMN, LENGTHS), "flat per-step", id="rewards-column"),
    pytest.param(lambda: reward_to_go(REWARDS, LENGTHS, 1.5), r"gamma must be in \[0, 1\]", id="gamma-above-1"),
    pytest.param(lambda: reward_to_go(REWARDS, LENGTHS, float("nan")), "gamma must be", id="gamma-nan"),
    pytest.param(lambda: reward_to_go(REWARDS, LENGTHS, 0.9, [1.0]), r"bootstrap_values must have one", id="bootstrap"),
    pytest.param(lambda: discount_weights(np.arange(3), -0.5), "gamma must be", id="discount-gamma"),
    pytest.param(lambda: nstep_returns(REWARDS, COLUMN, LENGTHS, 0.9, 2), r"shape \(5,\); got shape \(5, 1\)", id="column"),
    pytest.param(lambda: nstep_returns(REWARDS, np.ones(7), LENGTHS, 0.9, 2), "one value per step", id="values-long"),
    pytest.param(lambda: nstep_returns(REWARDS, np.ones(5), LENGTHS, 0.9, 2.5), "n must be an integer", id="n-float"),
    pytest.param(lambda: nstep_returns(REWARDS, np.ones(5), LENGTHS, 0.9, True), "n must be an integer", id="n-bool"),
    pytest.param(lambda: gae_advantages(REWARDS, np.ones(5), LENGTHS, 0.9, 2.0), "gae_lambda must be", id="lambda"),
    pytest.param(lambda: batch_mean_baseline(REWARDS[:3], [5], per_episode=True), "sum to the number", id="mean-lengths"),
    pytest.param(lambda: baseline_values("avg", REWARDS, LENGTHS, None, False), "kind must be 'none'", id="kind"),
    pytest.param(lambda: baseline_values("value", REWARDS, LENGTHS, np.ones(6), False), "one value per step", id="vals"),
]


@pytest.mark.parametrize(("call", "match"), MALFORMED)
def test_malformed_inputs_to_the_return_math_raise(call: Any, match: str) -> None:
    """An (n, 1) column of values would broadcast to an (n, n) result: refused, as are the other malformed inputs."""
    with pytest.raises(ValueError, match=match):
        call()


def _collect(model: Reinforce) -> BaseCallback:
    _, callback = model._setup_learn(total_timesteps=1_000, callback=None)
    assert model.env is not None
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)
    return callback


def test_per_env_quota_and_episode_order_across_envs() -> None:
    # Env 0's episodes last 2 steps, env 1's last 4: each env contributes exactly its quota, so the short
    # episodes of env 0 are not over-sampled, and episodes come out contiguous, env 0 first.
    env = DummyVecEnv([lambda: CountingEnv(length=2), lambda: CountingEnv(length=4)])
    model = Reinforce("MlpPolicy", env, n_episodes=5, baseline="none", seed=0)
    _collect(model)
    batch = model.episode_batch
    assert batch is not None
    np.testing.assert_array_equal(batch.episode_lengths, [2, 2, 2, 4, 4])
    np.testing.assert_array_equal(batch.rewards, [0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(np.asarray(batch.observations).ravel(), batch.rewards)
    assert not batch.truncated.any()
    # Env 1 needs 8 vec steps for its quota; env 0 steps along (2 discarded steps), so 16 env steps in all.
    assert model.num_timesteps == 16


def test_envs_are_reset_before_the_next_collection() -> None:
    # After the first batch env 0 is mid-episode; the next batch must start from fresh episodes.
    env = DummyVecEnv([lambda: CountingEnv(length=3), lambda: CountingEnv(length=5)])
    model = Reinforce("MlpPolicy", env, n_episodes=2, baseline="none", seed=0)
    callback = _collect(model)
    assert model.collect_rollouts(env, callback, model.rollout_buffer)
    assert model.episode_batch is not None
    np.testing.assert_array_equal(model.episode_batch.rewards, [0, 1, 2, 0, 1, 2, 3, 4])


def test_truncation_is_not_termination() -> None:
    # Endless env cut by a TimeLimit: rewards stay as the env gave them even with a learned value,
    # and the episode keeps its terminal observation for optional bootstrapping.
    env = DummyVecEnv([lambda: gym.wrappers.TimeLimit(CountingEnv(length=None), max_episode_steps=3)])
    model = Reinforce("MlpPolicy", env, n_episodes=2, baseline="value", seed=0)
    _collect(model)
    batch = model.episode_batch
    assert batch is not None
    np.testing.assert_array_equal(batch.rewards, [0, 1, 2, 0, 1, 2])
    assert batch.truncated.all()
    np.testing.assert_array_equal(batch.terminal_observations[0], [3.0])


def test_bootstrap_truncated_adds_discounted_terminal_value() -> None:
    env = DummyVecEnv([lambda: gym.wrappers.TimeLimit(CountingEnv(length=None), max_episode_steps=3)])
    common = dict(n_episodes=1, baseline="value", normalize_advantage=False, gamma=0.5, seed=0)
    model = Reinforce("MlpPolicy", env, bootstrap_truncated=True, **common)
    _collect(model)
    batch = model.episode_batch
    assert batch is not None
    bootstrap = batch.bootstrap_values
    assert bootstrap is not None
    terminal_value = model.policy.predict_values(model.policy.obs_to_tensor(np.array([3.0], dtype=np.float32))[0]).item()
    assert bootstrap[0] == pytest.approx(terminal_value, rel=1e-6)
    values = np.zeros(3)
    weights = model.policy_gradient_weights(batch, values, bootstrap)
    # Rewards 0, 1, 2 then V(s_3): G_2 = 2 + 0.5 V, G_1 = 1 + 0.5 G_2, G_0 = 0 + 0.5 G_1.
    g2 = 2 + 0.5 * terminal_value
    np.testing.assert_allclose(weights, [0.5 * (1 + 0.5 * g2), 1 + 0.5 * g2, g2], rtol=1e-6)


@pytest.mark.parametrize(
    ("reward_to_go_", "baseline", "discount_option", "expected"),
    [
        # Episode rewards 0, 1, 2 (gamma = 0.5): full return 0 + 0.5 + 0.5 = 1; reward-to-go 1, 2, 2.
        (False, "none", 1, [1.0, 1.0, 1.0]),
        (False, "none", 2, [1.0, 1.0, 1.0]),
        (True, "none", 1, [1.0, 2.0, 2.0]),
        (True, "none", 2, [1.0, 1.0, 0.5]),
        (True, "mean", 1, [-2 / 3, 1 / 3, 1 / 3]),
        (False, "mean", 1, [0.0, 0.0, 0.0]),
    ],
)
def test_policy_gradient_weights(reward_to_go_: bool, baseline: str, discount_option: int, expected: list[float]) -> None:
    env = DummyVecEnv([lambda: CountingEnv(length=3)])
    model = Reinforce(
        "MlpPolicy",
        env,
        n_episodes=1,
        gamma=0.5,
        reward_to_go=reward_to_go_,
        baseline=baseline,
        discount_option=discount_option,
        normalize_advantage=False,
        seed=0,
    )
    _collect(model)
    assert model.episode_batch is not None
    weights = model.policy_gradient_weights(model.episode_batch, None, np.zeros(1))
    np.testing.assert_allclose(weights, expected, atol=1e-12)


def test_never_ending_episode_raises_instead_of_hanging() -> None:
    model = Reinforce("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=None)]), episode_step_limit=50)
    with pytest.raises(ValueError, match="episode_step_limit=50"):
        model.learn(1_000)


def test_callback_sees_every_env_step() -> None:
    class CountSteps(BaseCallback):
        def _on_step(self) -> bool:
            assert {"new_obs", "rewards", "dones", "infos", "actions"} <= set(self.locals)
            return True

    env = DummyVecEnv([lambda: CountingEnv(length=2), lambda: CountingEnv(length=3)])
    model = Reinforce("MlpPolicy", env, n_episodes=4, seed=0)
    callback = CountSteps()
    model.learn(20, callback=callback)
    assert callback.n_calls * env.num_envs == model.num_timesteps


def test_gae_advantages() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # gamma 0.5, no bootstrap: TD errors ep 0: 1 + 1 - 1 = 1, 2 + 1.5 - 2 = 1.5, 3 - 3 = 0; ep 1: 4 + 2.5 - 4 = 2.5, 0.
    deltas = [1.0, 1.5, 0.0, 2.5, 0.0]
    np.testing.assert_allclose(gae_advantages(REWARDS, values, LENGTHS, 0.5, 0.0), deltas)
    # lambda 1: Monte Carlo return minus the value.
    np.testing.assert_allclose(
        gae_advantages(REWARDS, values, LENGTHS, 0.5, 1.0), reward_to_go(REWARDS, LENGTHS, 0.5) - values
    )
    # lambda 0.5: (gamma lambda) = 0.25-discounted sum of the TD errors.
    np.testing.assert_allclose(gae_advantages(REWARDS, values, LENGTHS, 0.5, 0.5), [1.375, 1.5, 0.0, 2.5, 0.0])


def test_gae_agrees_with_sb3_rollout_buffer() -> None:
    """PPOKL's GAE (SB3's buffer) and the diagnostics' (gae_advantages) are the same formula."""
    from gymnasium import spaces
    from stable_baselines3.common.buffers import RolloutBuffer

    rng = np.random.default_rng(0)
    n_steps, gamma, gae_lambda = 7, 0.9, 0.8
    rewards, values = rng.normal(size=n_steps), rng.normal(size=n_steps)
    dones = np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool)  # an episode ends after step 2; the rollout cuts the next
    last_value = 0.7
    buffer = RolloutBuffer(n_steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), "cpu", gae_lambda, gamma, n_envs=1)
    episode_starts = np.concatenate([[True], dones[:-1]])
    for t in range(n_steps):
        buffer.add(
            np.zeros((1, 1)),
            np.zeros((1, 1)),
            rewards[t : t + 1],
            episode_starts[t : t + 1],
            th.tensor([values[t]]),
            th.zeros(1),
        )
    buffer.compute_returns_and_advantage(th.tensor([last_value]), np.array([False]))
    # Segments: steps 0-2 (terminated), 3-6 (cut by the rollout's edge, bootstrapped with the last value).
    ours = gae_advantages(rewards, values, np.array([3, 4]), gamma, gae_lambda, np.array([0.0, last_value]))
    np.testing.assert_allclose(buffer.advantages.flatten(), ours, rtol=1e-5, atol=1e-6)
