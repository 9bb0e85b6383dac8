"""
NStepAC: its critic targets against hand-computed values, its collection, and its actor update against the exact
policy gradient with a perfect critic.

The hand-computed cases use ``CountingEnv`` (observation and reward are the step index) with a linear critic set to
``V(s) = 10 s``, so every target can be worked out on paper.
"""

import csv
import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from envs import CountingEnv
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_pgnotes import NStepAC
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.collection import sample_actions
from sb3_pgnotes.common.returns import nstep_returns, reward_to_go, td_targets

GAMMA = 0.5


# --- The target math ---------------------------------------------------------------------------------------------

# Two segments: a terminated episode of 3 steps, then a 2-step segment cut with bootstrap value 100.
REWARDS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
VALUES = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
LENGTHS = np.array([3, 2])
BOOTSTRAP = np.array([0.0, 100.0])


def test_td_targets_by_hand() -> None:
    # r_t + gamma V(s_{t+1}); the last step of a segment uses its bootstrap value.
    expected = [1 + 0.5 * 20, 2 + 0.5 * 30, 3 + 0.0, 4 + 0.5 * 50, 5 + 0.5 * 100]
    np.testing.assert_allclose(td_targets(REWARDS, VALUES, LENGTHS, GAMMA, BOOTSTRAP), expected)


def test_nstep_returns_by_hand() -> None:
    # n = 2: two rewards then gamma^2 V(s_{t+2}), the lookahead cut at the segment's end.
    expected = [1 + 0.5 * 2 + 0.25 * 30, 2 + 0.5 * 3 + 0.25 * 0, 3, 4 + 0.5 * 5 + 0.25 * 100, 5 + 0.5 * 100]
    np.testing.assert_allclose(nstep_returns(REWARDS, VALUES, LENGTHS, GAMMA, 2, BOOTSTRAP), expected)
    # No bootstrap values: every segment ends as if terminated.
    no_bootstrap = [1 + 0.5 * 2 + 0.25 * 30, 2 + 0.5 * 3, 3, 4 + 0.5 * 5, 5]
    np.testing.assert_allclose(nstep_returns(REWARDS, VALUES, LENGTHS, GAMMA, 2), no_bootstrap)


def test_nstep_limits_are_td_and_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    lengths = np.array([1, 4, 7, 2])
    rewards, values = rng.normal(size=(2, int(lengths.sum())))
    bootstrap = rng.normal(size=len(lengths))
    np.testing.assert_allclose(
        nstep_returns(rewards, values, lengths, 0.9, 1, bootstrap), td_targets(rewards, values, lengths, 0.9, bootstrap)
    )
    for n in (7, 8, 100):
        np.testing.assert_allclose(
            nstep_returns(rewards, values, lengths, 0.9, n, bootstrap), reward_to_go(rewards, lengths, 0.9, bootstrap)
        )


def test_nstep_returns_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        nstep_returns(REWARDS, VALUES, LENGTHS, GAMMA, 0)
    with pytest.raises(ValueError, match="episode_lengths"):
        nstep_returns(REWARDS, VALUES, np.array([2, 2]), GAMMA, 2)


# --- Collection and targets on CountingEnv ------------------------------------------------------------------------


def counting_envs() -> DummyVecEnv:
    """Env 0 terminates after 3 steps; env 1 never terminates and a time limit truncates it after 4."""
    return DummyVecEnv([lambda: CountingEnv(length=3), lambda: gym.wrappers.TimeLimit(CountingEnv(length=None), 4)])


def counting_model(**kwargs: Any) -> NStepAC:
    """
    :param kwargs: NStepAC arguments
    :return: A model on :func:`counting_envs` with the linear critic ``V(s) = 10 s``, set up to collect
    """
    model = NStepAC(
        "MlpPolicy", counting_envs(), gamma=GAMMA, policy_kwargs=dict(net_arch=dict(pi=[8], vf=[])), seed=0, **kwargs
    )
    with th.no_grad():
        model.policy.value_net.weight.fill_(10.0)
        model.policy.value_net.bias.fill_(0.0)
    return model


def collect(model: NStepAC) -> EpisodeBatch:
    _, callback = model._setup_learn(10_000)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    assert model.episode_batch is not None
    return model.episode_batch


def terminal_values(batch: EpisodeBatch) -> list[float | None]:
    return [None if obs is None else float(np.asarray(obs).item()) for obs in batch.terminal_observations]


def test_rollout_segments_by_hand() -> None:
    model = counting_model(critic_target="nstep", target_n=2, n_steps=5)
    batch = collect(model)
    # Env 0: an episode terminated after 3 steps, then 2 steps cut by the rollout's edge (next observation 2).
    # Env 1: 4 steps truncated by the time limit (terminal observation 4, not the reset's 0), then 1 step cut by
    # the edge (next observation 1).
    assert batch.episode_lengths.tolist() == [3, 2, 4, 1]
    assert batch.truncated.tolist() == [False, True, True, True]
    assert terminal_values(batch) == [None, 2.0, 4.0, 1.0]
    assert np.asarray(batch.observations).flatten().tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 0]
    assert batch.rewards.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 0]
    assert model.episode_batch.step_times is not None
    assert model.episode_batch.step_times.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 0]

    values, targets = model.values_and_targets(batch)
    np.testing.assert_allclose(values, 10 * np.asarray(batch.observations).flatten(), rtol=1e-6)
    expected = [
        *[0 + 0.5 * 1 + 0.25 * 20, 1 + 0.5 * 2, 2],  # terminated: no bootstrap
        *[0 + 0.5 * 1 + 0.25 * 20, 1 + 0.5 * 20],  # rollout edge: V(2) = 20
        *[0 + 0.5 * 1 + 0.25 * 20, 1 + 0.5 * 2 + 0.25 * 30, 2 + 0.5 * 3 + 0.25 * 40, 3 + 0.5 * 40],  # V(4) = 40
        0 + 0.5 * 10,  # rollout edge: V(1) = 10
    ]
    np.testing.assert_allclose(targets, expected, rtol=1e-6)

    # The next rollout continues the episodes: step times carry on from where the last one stopped.
    batch = collect_more(model)
    assert batch.episode_lengths.tolist() == [1, 3, 1, 3, 2]
    assert model.episode_batch.step_times.tolist() == [2, 0, 1, 2, 0, 1, 2, 3, 0, 1]
    assert terminal_values(batch) == [None, None, 1.0, 4.0, 2.0]


def collect_more(model: NStepAC) -> EpisodeBatch:
    callback = model._init_callback(None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer)  # type: ignore[arg-type]
    assert model.episode_batch is not None
    return model.episode_batch


def test_td_targets_on_rollout() -> None:
    model = counting_model(critic_target="td", n_steps=5)
    _, targets = model.values_and_targets(collect(model))
    expected = [0 + 5, 1 + 10, 2, 0 + 5, 1 + 10, 0 + 5, 1 + 10, 2 + 15, 3 + 20, 0 + 5]
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    # n = 1 is td on the same batch.
    one_step = counting_model(critic_target="nstep", target_n=1, n_steps=5)
    np.testing.assert_allclose(one_step.values_and_targets(collect(one_step))[1], expected, rtol=1e-6)


def test_monte_carlo_targets_on_whole_episodes() -> None:
    model = counting_model(critic_target="mc", n_episodes=2)
    batch = collect(model)
    assert batch.episode_lengths.tolist() == [3, 4]
    assert terminal_values(batch) == [None, 4.0]
    np.testing.assert_array_equal(model.episode_batch.step_times, [0, 1, 2, 0, 1, 2, 3])
    _, targets = model.values_and_targets(batch)
    # Terminated: reward-to-go. Truncated: completed with gamma^(T-t) V(terminal observation) = gamma^(T-t) 40.
    expected = [0 + 0.5 * 1 + 0.25 * 2, 1 + 0.5 * 2, 2, 3.875, 7.75, 13.5, 3 + 0.5 * 40]
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    # An n-step target whose n covers the episodes gives the Monte Carlo target on the same batch.
    long_n = counting_model(critic_target="nstep", target_n=4)
    np.testing.assert_allclose(long_n.values_and_targets(batch)[1], expected, rtol=1e-6)


def test_online_mode_updates_after_every_env_step() -> None:
    model = counting_model(mode="online", critic_target="td")
    assert model.n_steps == 1
    model.learn(40)
    assert model._n_updates == 20  # 2 envs: one update per vec-env step


def test_logs_every_100_updates_by_default(tmp_path: Path) -> None:
    # A2C's default: with updates as short as A2C's, logging every update would print a table every few env steps.
    model = counting_model(mode="online", critic_target="td")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(500)  # 250 updates of the 2 envs
    with open(tmp_path / "progress.csv") as file:
        assert [row["time/iterations"] for row in csv.DictReader(file)] == ["100", "200"]


def test_critic_steps_and_target_recomputation(monkeypatch: pytest.MonkeyPatch) -> None:
    model = counting_model(critic_target="nstep", target_n=2, n_steps=5, n_target_updates=3, n_grad_steps_per_target_update=2)
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.episode_batch = collect(model)
    calls = []
    original = model.value_targets
    monkeypatch.setattr(model, "value_targets", lambda *args: calls.append(1) or original(*args))
    model.train()
    # One target computation per target update after the first (whose targets the collection computed), plus the
    # final one for the advantages.
    assert len(calls) == 3
    for state in model.critic_optimizer.state.values():
        assert int(state["step"]) == 6
    for state in model.policy.optimizer.state.values():
        assert int(state["step"]) == 1


def test_discount_option_2_weights_by_time_in_episode() -> None:
    model = counting_model(discount_option=2)
    weights = model.policy_gradient_weights(np.array([3.0, 3.0, 3.0]), np.array([1.0, 1.0, 2.0]), np.array([0, 1, 4]))
    np.testing.assert_allclose(weights, [2.0, 2.0 * 0.5, 1.0 * 0.5**4])


def test_save_load_keeps_both_optimizers_and_settings(tmp_path: Path) -> None:
    model = NStepAC(
        "MlpPolicy", "CartPole-v1", critic_target="nstep", target_n=3, n_steps=8, critic_learning_rate=0.01, seed=0
    )
    model.learn(200)
    model.save(tmp_path / "nstep_ac")
    loaded = NStepAC.load(tmp_path / "nstep_ac")
    for saved, restored in (
        (model.critic_optimizer.state_dict(), loaded.critic_optimizer.state_dict()),
        (model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()),
    ):
        assert saved["param_groups"][0]["lr"] == restored["param_groups"][0]["lr"]
        for key, state in saved["state"].items():
            th.testing.assert_close(state["exp_avg"], restored["state"][key]["exp_avg"])
    assert (loaded.mode, loaded.critic_target, loaded.target_n, loaded.n_steps) == ("batch", "nstep", 3, 8)
    actor = {id(p) for group in loaded.policy.optimizer.param_groups for p in group["params"]}
    critic = {id(p) for group in loaded.critic_optimizer.param_groups for p in group["params"]}
    assert actor.isdisjoint(critic) and actor | critic == {id(p) for p in loaded.policy.parameters()}


# --- Exact gradient with a perfect critic -------------------------------------------------------------------------

# A stationary episodic MDP (the value of a state does not depend on time, so a state-only critic can be exact):
# three states, two actions, and from every state-action pair a chance of reaching the absorbing terminal state.
N_STATES = 3
TERMINAL = N_STATES
INITIAL = np.array([0.5, 0.3, 0.2])
# TRANSITIONS[s, a, s'] over the non-terminal states and the terminal state (last column).
TRANSITIONS = np.array(
    [
        [[0.1, 0.6, 0.1, 0.2], [0.5, 0.1, 0.2, 0.2]],
        [[0.2, 0.2, 0.4, 0.2], [0.5, 0.1, 0.1, 0.3]],
        [[0.3, 0.3, 0.1, 0.3], [0.1, 0.1, 0.3, 0.5]],
    ]
)
REWARDS_SA = np.array([[1.0, 0.0], [-0.5, 2.0], [0.5, -1.0]])
ACTOR_WEIGHT = [[0.4, -0.3, 0.2, 0.0], [-0.5, 0.6, -0.2, 0.0]]
ACTOR_BIAS = [0.1, -0.2]
LEARNING_RATE = 0.5
N_EPISODES = 20_000


class StationaryMDP(gym.Env):
    """The MDP as an env, for building the model (the test's batches come from :func:`sample_episodes`)."""

    observation_space = spaces.Discrete(N_STATES + 1)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state = int(self.np_random.choice(N_STATES, p=INITIAL))
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        reward = float(REWARDS_SA[self.state, int(action)])
        self.state = int(self.np_random.choice(N_STATES + 1, p=TRANSITIONS[self.state, int(action)]))
        return self.state, reward, self.state == TERMINAL, False, {}


def action_probs(weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
    """:return: pi(a|s) of the linear softmax actor over one-hot states, (N_STATES, 2)"""
    return th.softmax(weight.T[:N_STATES] + bias, dim=-1)


def exact_values(probs: th.Tensor, gamma: float) -> th.Tensor:
    """:return: V^pi by solving the Bellman equation ``V = r_pi + gamma P_pi V``, (N_STATES,)"""
    transitions = th.as_tensor(TRANSITIONS[:, :, :N_STATES], dtype=th.float64)
    rewards = th.as_tensor(REWARDS_SA, dtype=th.float64)
    p_pi = th.einsum("sa,sax->sx", probs, transitions)
    r_pi = (probs * rewards).sum(-1)
    return th.linalg.solve(th.eye(N_STATES, dtype=th.float64) - gamma * p_pi, r_pi)


def sample_episodes(probs: np.ndarray, rng: np.random.Generator) -> EpisodeBatch:
    """:return: N_EPISODES terminated episodes under ``probs``, sampled all together, stored flat"""
    state = np.array([rng.choice(N_STATES, p=INITIAL) for _ in range(N_EPISODES)])
    alive = np.ones(N_EPISODES, dtype=bool)
    states, actions, rewards, alives = [], [], [], []
    while alive.any():
        action = (rng.random(N_EPISODES) > probs[np.minimum(state, N_STATES - 1), 0]).astype(np.int64)
        cumulative = np.cumsum(TRANSITIONS[np.minimum(state, N_STATES - 1), action], axis=-1)
        next_state = (rng.random(N_EPISODES)[:, None] > cumulative).sum(-1)
        states.append(state)
        actions.append(action)
        rewards.append(REWARDS_SA[np.minimum(state, N_STATES - 1), action])
        alives.append(alive)
        alive = alive & (next_state != TERMINAL)
        state = np.where(alive, next_state, state)
    keep = np.stack(alives, axis=1)

    def flat(per_step: list[np.ndarray]) -> np.ndarray:
        return np.stack(per_step, axis=1)[keep]

    return EpisodeBatch(
        observations=flat(states).astype(np.int64),
        actions=flat(actions),
        rewards=flat(rewards).astype(np.float32),
        log_probs=np.zeros(int(keep.sum()), dtype=np.float32),
        episode_lengths=keep.sum(axis=1).astype(np.int64),
        truncated=np.zeros(N_EPISODES, dtype=bool),
        terminal_observations=[None] * N_EPISODES,
    )


def tabular_model(gamma: float, perfect_critic: bool = True, **kwargs: Any) -> NStepAC:
    """
    :return: A linear softmax actor at fixed weights trained by plain SGD, and a linear critic set to the true V^pi
        (or to 0), left unchanged by a zero critic learning rate
    """
    model = NStepAC(
        "MlpPolicy",
        StationaryMDP(),
        learning_rate=LEARNING_RATE,
        gamma=gamma,
        critic_learning_rate=0.0,
        max_grad_norm=None,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[]), optimizer_class=th.optim.SGD, ortho_init=False),
        seed=0,
        **kwargs,
    )
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor(ACTOR_WEIGHT))
        model.policy.action_net.bias.copy_(th.tensor(ACTOR_BIAS))
        values = exact_values(action_probs(*actor_tensors(model)), gamma) if perfect_critic else th.zeros(N_STATES)
        model.policy.value_net.weight.zero_()
        model.policy.value_net.weight[0, :N_STATES] = values.float()
        model.policy.value_net.bias.zero_()
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def actor_tensors(model: NStepAC) -> tuple[th.Tensor, th.Tensor]:
    return model.policy.action_net.weight.detach().double(), model.policy.action_net.bias.detach().double()


def exact_gradient(model: NStepAC, gamma: float) -> th.Tensor:
    """:return: grad of ``J = E_{s_0}[V^pi(s_0)]`` with respect to the actor's weight and bias, flattened"""
    weight, bias = (tensor.requires_grad_(True) for tensor in actor_tensors(model))
    objective = th.as_tensor(INITIAL) @ exact_values(action_probs(weight, bias), gamma)
    return th.cat([grad.flatten() for grad in th.autograd.grad(objective, [weight, bias])])


def estimated_gradient(model: NStepAC, batch: EpisodeBatch) -> th.Tensor:
    """:return: One train() step's actor move over the learning rate, rescaled from a per-step to a per-episode mean"""
    before = th.cat([tensor.flatten() for tensor in actor_tensors(model)])
    model.episode_batch = batch
    model.process_batch(batch, model.rollout_buffer)
    model.train()
    after = th.cat([tensor.flatten() for tensor in actor_tensors(model)])
    return (after - before) / LEARNING_RATE * batch.n_steps / batch.n_episodes


def cosine_and_ratio(estimate: th.Tensor, target: th.Tensor) -> tuple[float, float]:
    return float(th.dot(estimate, target) / (estimate.norm() * target.norm())), float(estimate.norm() / target.norm())


@pytest.mark.parametrize(
    ("gamma", "kwargs"),
    [
        pytest.param(0.9, {"critic_target": "td", "discount_option": 2}, id="td"),
        pytest.param(0.9, {"critic_target": "nstep", "target_n": 3, "discount_option": 2}, id="nstep-3"),
        pytest.param(0.9, {"critic_target": "mc", "discount_option": 2}, id="mc"),
        pytest.param(1.0, {"critic_target": "td"}, id="td-undiscounted"),
    ],
)
def test_actor_update_matches_exact_gradient(gamma: float, kwargs: dict[str, Any]) -> None:
    model = tabular_model(gamma, **kwargs)
    probs = action_probs(*actor_tensors(model)).numpy()
    critic_before = model.policy.value_net.weight.detach().clone()
    target = exact_gradient(model, gamma)
    estimate = estimated_gradient(model, sample_episodes(probs, np.random.default_rng(0)))
    th.testing.assert_close(model.policy.value_net.weight, critic_before)  # the perfect critic stayed perfect
    cosine, ratio = cosine_and_ratio(estimate, target)
    assert cosine >= 0.99 and 0.9 <= ratio <= 1.1, f"cosine {cosine:.4f}, norm ratio {ratio:.4f}"


@pytest.mark.parametrize(
    ("perfect_critic", "kwargs"),
    [
        pytest.param(False, {"critic_target": "td", "discount_option": 2}, id="zero-critic"),
        pytest.param(True, {"critic_target": "td", "discount_option": 1}, id="option-1-vs-discounted-gradient"),
    ],
)
def test_exact_gradient_check_rejects_wrong_estimators(perfect_critic: bool, kwargs: dict[str, Any]) -> None:
    """
    The check has power on the same batch: TD advantages from a zero critic (A = r, with the discount weights) and
    discount option 1 (no ``gamma^t`` on decision t) are not the discounted objective's gradient.
    """
    model = tabular_model(0.9, perfect_critic, **kwargs)
    probs = action_probs(*actor_tensors(model)).numpy()
    target = exact_gradient(model, 0.9)
    estimate = estimated_gradient(model, sample_episodes(probs, np.random.default_rng(0)))
    cosine, ratio = cosine_and_ratio(estimate, target)
    assert not (cosine >= 0.99 and 0.9 <= ratio <= 1.1), f"cosine {cosine:.4f}, norm ratio {ratio:.4f}"


def test_exact_values_match_sampled_returns() -> None:
    """The Bellman solution used as the perfect critic is the mean discounted return of sampled episodes."""
    model = tabular_model(0.9)
    probs = action_probs(*actor_tensors(model))
    batch = sample_episodes(probs.numpy(), np.random.default_rng(1))
    starts = np.cumsum(batch.episode_lengths) - batch.episode_lengths
    mean_return = reward_to_go(batch.rewards, batch.episode_lengths, 0.9)[starts].mean()
    assert mean_return == pytest.approx(float(th.as_tensor(INITIAL) @ exact_values(probs, 0.9)), abs=0.03)


# --- gSDE ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sde_sample_freq", "expected_resets"), [(-1, 2), (2, 4), (1, 6)])
def test_gsde_noise_is_resampled_per_collection_and_every_sde_sample_freq_steps(
    monkeypatch: pytest.MonkeyPatch, sde_sample_freq: int, expected_resets: int
) -> None:
    model = NStepAC("MlpPolicy", "Pendulum-v1", n_steps=3, use_sde=True, sde_sample_freq=sde_sample_freq, seed=0)
    resets: list[int] = []
    original = model.policy.reset_noise
    monkeypatch.setattr(model.policy, "reset_noise", lambda n_envs=1: resets.append(n_envs) or original(n_envs))
    model.learn(6)  # two rollouts of 3 steps
    assert resets == [1] * expected_resets


def test_gsde_noise_is_resampled_during_whole_episode_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    model = NStepAC("MlpPolicy", "Pendulum-v1", critic_target="mc", n_episodes=1, use_sde=True, sde_sample_freq=50)
    resets: list[int] = []
    original = model.policy.reset_noise
    monkeypatch.setattr(model.policy, "reset_noise", lambda n_envs=1: resets.append(n_envs) or original(n_envs))
    model.learn(1)  # one 200-step episode: steps 0, 50, 100 and 150 draw a new matrix
    assert resets == [1] * 4


def test_gsde_actions_follow_the_noise_matrix() -> None:
    model = NStepAC("MlpPolicy", "Pendulum-v1", use_sde=True, seed=0)
    obs = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]], dtype=np.float32)
    model.policy.reset_noise(2)
    first, _ = sample_actions(model.policy, obs)
    again, _ = sample_actions(model.policy, obs)
    model.policy.reset_noise(2)
    resampled, _ = sample_actions(model.policy, obs)
    # gSDE's exploration is a function of the state until the noise matrix is redrawn.
    np.testing.assert_allclose(first, again)
    assert not np.allclose(first, resampled)


def test_gsde_needs_box_actions_and_survives_save_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="continuous actions"):
        NStepAC("MlpPolicy", "CartPole-v1", use_sde=True)
    model = NStepAC("MlpPolicy", "Pendulum-v1", n_steps=4, use_sde=True, sde_sample_freq=2, seed=0).learn(8)
    model.save(tmp_path / "model.zip")
    loaded = NStepAC.load(tmp_path / "model.zip")
    assert loaded.use_sde and loaded.sde_sample_freq == 2 and loaded.policy.use_sde
    obs = np.array([0.5, -0.5, 0.1], dtype=np.float32)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_loads_whole_episode_models_saved_before_the_collection_argument(tmp_path: Path) -> None:
    NStepAC("MlpPolicy", "CartPole-v1", critic_target="mc", n_episodes=2, seed=0).learn(50).save(tmp_path / "new.zip")
    with zipfile.ZipFile(tmp_path / "new.zip") as new, zipfile.ZipFile(tmp_path / "old.zip", "w") as old:
        for name in new.namelist():
            content = new.read(name)
            if name == "data":
                data = json.loads(content)
                del data["collection"], data["sb3_pgnotes_class"]
                content = json.dumps(data).encode()
            old.writestr(name, content)
    loaded = NStepAC.load(tmp_path / "old.zip")
    assert loaded.collection == "episodes" and loaded.n_steps == 0
    loaded.set_env(make_vec_env("CartPole-v1"))
    loaded.learn(50)
