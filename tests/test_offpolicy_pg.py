"""
OffPolicyPG: its estimators against exact gradients on the tabular MDP (``tests/tabular.py``), log-space weights on
long episodes, the warm-up, and the replay of whole episodes.

The data comes from a behaviour policy mu, a perturbed copy of the target pi (its logits plus ``gap`` times a fixed
random direction); the stored log-probabilities are mu's. The actor is a linear softmax trained by plain SGD, so one
gradient step moves it by ``learning_rate * g``.
"""

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from envs import CountingEnv, SpaceEnv
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.save_util import save_to_pkl
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tabular import HORIZON, INITIAL, N_STATES, REWARDS, TRANSITIONS, TabularMDP, sample_episodes
from test_gradients import (
    ACTOR_BIAS,
    ACTOR_WEIGHT,
    CRITIC_BIAS,
    CRITIC_WEIGHT,
    LEARNING_RATE,
    N_EPISODES,
    _actor_probs,
    actor_parameters,
    estimated_gradient,
    exact_direction,
    make_model,
    matches,
    policy_probs,
    reinforce,
)

from sb3_pgnotes import OffPolicyPG, load_untrusted
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.offpolicy_pg.buffers import EpisodeReplayBuffer


def make_offpolicy(gamma: float = 1.0, env: Any = None, **kwargs: Any) -> OffPolicyPG:
    """
    :param gamma: Discount factor
    :param env: The env (default: one TabularMDP)
    :param kwargs: Further constructor arguments
    :return: The model at the fixed weights of ``test_gradients``, plain SGD steps on the estimator
    """
    settings: dict[str, Any] = dict(normalize_advantage=False, self_normalize=False, n_critic_updates=1)
    model = OffPolicyPG(
        "MlpPolicy",
        TabularMDP() if env is None else env,
        learning_rate=LEARNING_RATE,
        gamma=gamma,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[]), optimizer_class=th.optim.SGD, ortho_init=False),
        seed=0,
        **{**settings, **kwargs},
    )
    action_net, value_net = model.policy.action_net, model.policy.value_net
    assert isinstance(action_net, th.nn.Linear) and isinstance(value_net, th.nn.Linear)
    with th.no_grad():
        action_net.weight.copy_(th.tensor(ACTOR_WEIGHT))
        action_net.bias.copy_(th.tensor(ACTOR_BIAS))
        value_net.weight.copy_(th.tensor(CRITIC_WEIGHT))
        value_net.bias.copy_(th.tensor(CRITIC_BIAS))
    return model


def behaviour_probs(target: np.ndarray, gap: float) -> np.ndarray:
    """
    :param target: The target policy's probabilities, (N_STATES, N_ACTIONS)
    :param gap: Size of the perturbation of the logits
    :return: The behaviour policy's probabilities
    """
    direction = np.random.default_rng(0).standard_normal(target.shape)
    logits = np.log(target) + gap * direction
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def behaviour_batch(probs: np.ndarray, n_episodes: int = N_EPISODES, seed: int = 1) -> EpisodeBatch:
    """
    :param probs: The behaviour policy's probabilities
    :param n_episodes: Number of episodes
    :param seed: Seed of the sampler
    :return: Episodes of the behaviour policy, with its log-probabilities
    """
    batch = sample_episodes(probs, n_episodes, np.random.default_rng(seed))
    states, actions = np.asarray(batch.observations), np.asarray(batch.actions)
    batch.log_probs = np.log(probs[states, actions]).astype(np.float32)
    return batch


def offpolicy_gradient(model: OffPolicyPG, batch: EpisodeBatch) -> th.Tensor:
    """
    :param model: The model (left updated)
    :param batch: The episodes
    :return: The estimator g of one gradient step
    """
    before = actor_parameters(model)  # type: ignore[arg-type]
    model.gradient_step(batch)
    return (actor_parameters(model) - before) / LEARNING_RATE  # type: ignore[arg-type]


def first_order_expectation(model: OffPolicyPG, behaviour: np.ndarray) -> th.Tensor:
    """
    The exact mean of the first-order estimator (discount option 1, undiscounted): the behaviour policy's state
    occupancies ``d^mu_t`` and action values ``Q^mu_t`` with the target's ``sum_a pi(a|s) grad log pi(a|s)``,

        E_mu[sum_t rho_t grad log pi(a_t|s_t) G_t] = grad_theta sum_t sum_s d^mu_t(s) sum_a pi_theta(a|s) Q^mu_t(s, a)

    :param model: The model (its actor is the target policy)
    :param behaviour: The behaviour policy's probabilities
    :return: The mean, flattened as ``actor_parameters``
    """
    action_net = model.policy.action_net
    weight = action_net.weight.detach().double().requires_grad_(True)
    bias = action_net.bias.detach().double().requires_grad_(True)
    probs = _actor_probs(weight, bias)
    mu = th.as_tensor(behaviour, dtype=th.float64)
    transitions = th.as_tensor(TRANSITIONS[:, :, :N_STATES], dtype=th.float64)
    rewards = th.as_tensor(REWARDS, dtype=th.float64)
    occupancies = [th.as_tensor(INITIAL, dtype=th.float64)]
    for _ in range(HORIZON - 1):
        occupancies.append(th.einsum("s,sa,sax->x", occupancies[-1], mu, transitions))
    surrogate = th.zeros((), dtype=th.float64)
    value_to_go = th.zeros(N_STATES, dtype=th.float64)
    for t in reversed(range(HORIZON)):
        action_values = rewards + th.einsum("sax,x->sa", transitions, value_to_go)
        value_to_go = (mu * action_values).sum(dim=-1)
        surrogate = surrogate + th.einsum("s,sa,sa->", occupancies[t], probs, action_values)
    grad_weight, grad_bias = th.autograd.grad(surrogate, [weight, bias])
    return th.cat([grad_weight.flatten(), grad_bias])


def relative_error(estimate: th.Tensor, target: th.Tensor) -> float:
    return float((estimate - target).norm() / target.norm())


@pytest.mark.parametrize(
    "gamma, kwargs",
    [
        pytest.param(1.0, {"baseline": "none"}, id="no-baseline"),
        pytest.param(1.0, {"baseline": "value"}, id="value-baseline"),
        pytest.param(0.8, {"baseline": "mean", "discount_option": 2}, id="discount-option-2-mean-baseline"),
    ],
)
def test_per_decision_matches_exact_gradient_of_target(gamma: float, kwargs: dict[str, Any]) -> None:
    model = make_offpolicy(gamma, estimator="per_decision", **kwargs)
    target = exact_direction(model, gamma)  # type: ignore[arg-type]
    behaviour = behaviour_probs(policy_probs(model), gap=0.7)  # type: ignore[arg-type]
    ok, message = matches(offpolicy_gradient(model, behaviour_batch(behaviour)), target)
    assert ok, message


def test_normalized_advantage_keeps_the_per_decision_direction() -> None:
    """Standardising off-policy coefficients with the importance-weighted centring rescales the gradient, nothing more."""
    model = make_offpolicy(1.0, estimator="per_decision", baseline="value", normalize_advantage=True)
    target = exact_direction(model, 1.0)  # type: ignore[arg-type]
    behaviour = behaviour_probs(policy_probs(model), gap=0.7)  # type: ignore[arg-type]
    estimate = offpolicy_gradient(model, behaviour_batch(behaviour))
    ok, message = matches(estimate * target.norm() / estimate.norm(), target)
    assert ok, message


def test_first_order_bias_grows_with_policy_gap() -> None:
    """
    The first-order estimator's exact mean drifts from the target's gradient as mu moves away from pi; its sampled
    mean follows that biased expectation, while the per-decision estimator on the same data stays on the gradient.
    """
    model = make_offpolicy(1.0, estimator="first_order", baseline="none")
    target_probs = policy_probs(model)  # type: ignore[arg-type]
    gradient = exact_direction(model, 1.0)  # type: ignore[arg-type]
    gaps = [0.0, 0.25, 0.5, 1.0, 1.5]
    biases = [relative_error(first_order_expectation(model, behaviour_probs(target_probs, gap)), gradient) for gap in gaps]
    assert biases[0] == pytest.approx(0.0, abs=1e-12)
    assert all(later > earlier for earlier, later in itertools.pairwise(biases)), biases
    assert biases[-1] > 0.15, biases

    behaviour = behaviour_probs(target_probs, 1.5)
    batch = behaviour_batch(behaviour)
    expectation = first_order_expectation(model, behaviour)
    first_order = offpolicy_gradient(model, batch)
    ok, message = matches(first_order, expectation)
    assert ok, message
    assert relative_error(first_order, gradient) > 0.1
    per_decision = offpolicy_gradient(make_offpolicy(1.0, estimator="per_decision", baseline="none"), batch)
    assert relative_error(per_decision, gradient) < 0.05


@pytest.mark.parametrize("estimator", ["per_decision", "first_order"])
@pytest.mark.parametrize(
    "gamma, kwargs",
    [
        pytest.param(1.0, {"baseline": "none"}, id="no-baseline"),
        pytest.param(1.0, {"baseline": "mean"}, id="mean-baseline"),
        pytest.param(0.8, {"baseline": "value", "discount_option": 2}, id="discount-option-2-value-baseline"),
        pytest.param(0.9, {"baseline": "value", "normalize_advantage": True}, id="normalized-advantage"),
    ],
)
def test_on_policy_data_gives_reinforce(estimator: str, gamma: float, kwargs: dict[str, Any]) -> None:
    """Behaviour == target: every weight is 1 (self-normalised or not), and the step is Reinforce's on the same batch."""
    reinforce_kwargs = {key: value for key, value in kwargs.items() if key != "normalize_advantage"}
    reference = make_model(reinforce(gamma, reward_to_go=True, **reinforce_kwargs))
    reference.normalize_advantage = kwargs.get("normalize_advantage", False)  # type: ignore[attr-defined]
    target_probs = policy_probs(reference)
    batch = behaviour_batch(target_probs, n_episodes=2_000)
    # The stored log-probabilities are the policy's own, as the collector would have recorded them.
    with th.no_grad():
        distribution = reference.policy.get_distribution(th.as_tensor(np.asarray(batch.observations)))
        batch.log_probs = distribution.log_prob(th.as_tensor(np.asarray(batch.actions))).numpy()
    expected = estimated_gradient(reference, batch)
    for self_normalize in (False, True):
        model = make_offpolicy(gamma, estimator=estimator, self_normalize=self_normalize, **kwargs)
        th.testing.assert_close(offpolicy_gradient(model, batch), expected, rtol=1e-4, atol=1e-6)


def long_episode_batch(model: OffPolicyPG, length: int = 2_000) -> EpisodeBatch:
    """
    :param model: A CartPole model
    :param length: Steps of the one episode
    :return: An episode whose every stored behaviour log-probability is 0.5 below the model's, so the per-decision
        weight of the last step is e^(0.5 * length)
    """
    rng = np.random.default_rng(0)
    observations = rng.standard_normal((length, 4)).astype(np.float32)
    actions = rng.integers(0, 2, length)
    with th.no_grad():
        target = model.policy.get_distribution(th.as_tensor(observations)).log_prob(th.as_tensor(actions)).numpy()
    return EpisodeBatch(
        observations=observations,
        actions=actions,
        rewards=np.ones(length, dtype=np.float32),
        log_probs=target - 0.5,
        episode_lengths=np.array([length]),
        truncated=np.array([True]),
        terminal_observations=[observations[-1]],
    )


@pytest.mark.parametrize("controls", [{"c_bar": 10.0}, {"self_normalize": True}, {"c_bar": 10.0, "self_normalize": True}])
def test_truncation_and_self_normalisation_keep_long_episodes_finite(controls: dict[str, Any]) -> None:
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", baseline="mean", normalize_advantage=False, **controls)
    batch = long_episode_batch(model)
    stats = model.gradient_step(batch)
    assert all(np.isfinite(value) for value in stats.values()), stats
    assert 1.0 <= stats["ess"] <= batch.n_steps
    assert stats["is_weight_max"] <= max(controls.get("c_bar", 0.0), batch.n_steps)
    assert all(th.isfinite(param).all() for param in model.policy.parameters())


def test_unbounded_weights_overflow_into_value_error() -> None:
    """Without truncation or self-normalisation the exact weight e^1000 is infinite: the step refuses it."""
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", baseline="none", self_normalize=False, normalize_advantage=False)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(ValueError, match="policy loss is"):
        model.gradient_step(long_episode_batch(model))


def test_nan_reward_raises_value_error() -> None:
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", baseline="none", normalize_advantage=False)
    batch = long_episode_batch(model, length=5)
    batch.rewards[2] = np.nan
    with pytest.raises(ValueError, match="policy loss is nan"):
        model.gradient_step(batch)


def test_warm_up_stores_the_policy_log_probabilities() -> None:
    """Before learning_starts nothing trains, and every stored log-probability is the (unchanged) policy's own."""
    model = make_offpolicy(1.0, env=DummyVecEnv([TabularMDP, TabularMDP]), learning_starts=300, train_freq=(1, "episode"))
    model.learn(200)
    assert model._n_updates == 0
    buffer = model.replay_buffer
    assert buffer is not None and buffer.n_episodes > 10
    batch = buffer.sample_episodes(buffer.n_episodes)
    probs = policy_probs(model)  # type: ignore[arg-type]
    states, actions = np.asarray(batch.observations).flatten(), np.asarray(batch.actions).flatten()
    np.testing.assert_allclose(batch.log_probs, np.log(probs[states, actions]), rtol=1e-5)
    assert np.all((batch.episode_lengths >= 1) & (batch.episode_lengths <= HORIZON))


def test_replay_keeps_the_envs_own_observations_and_rewards_under_vec_normalize() -> None:
    """As SB3's off-policy algorithms: stored raw, normalised by each gradient step with the current statistics."""
    env = VecNormalize(DummyVecEnv([lambda: CountingEnv(length=5), lambda: CountingEnv(length=5)]), gamma=0.9)
    model = OffPolicyPG("MlpPolicy", env, train_freq=(1, "episode"), batch_size=1, seed=0)
    model.learn(40)
    buffer = model.replay_buffer
    assert buffer is not None and buffer.n_episodes >= 6
    batch = buffer.sample_episodes(buffer.n_episodes)
    # CountingEnv's observation and reward are the step index; its terminal observation is 5.
    steps = np.tile(np.arange(5, dtype=np.float32), buffer.n_episodes)
    np.testing.assert_array_equal(np.asarray(batch.observations).ravel(), steps)
    np.testing.assert_array_equal(batch.rewards, steps)
    np.testing.assert_allclose(np.ravel(buffer.terminal_observations), 5.0, rtol=1e-5)

    seen: list[th.Tensor] = []
    model.policy.features_extractor.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    model.train(gradient_steps=1, batch_size=1)
    expected = env.normalize_obs(np.arange(5, dtype=np.float32).reshape(5, 1))
    np.testing.assert_allclose(seen[0].numpy(), expected, rtol=1e-5)
    assert not np.allclose(expected.ravel(), np.arange(5))


def test_replay_keeps_what_the_policy_saw_under_a_wrapper_above_vec_normalize() -> None:
    """SB3 wraps channel-last images in a VecTransposeImage above the VecNormalize, whose raw images the policy never sees."""
    env = VecNormalize(
        DummyVecEnv([lambda: SpaceEnv(spaces.Box(0, 255, (36, 36, 3), np.uint8), spaces.Box(-1, 1, (1,)))]),
        norm_obs=False,
    )
    model = OffPolicyPG("CnnPolicy", env, train_freq=(1, "episode"), batch_size=1, seed=0, policy_kwargs={"net_arch": [8]})
    assert model.env is not env
    model.learn(20)
    buffer = model.replay_buffer
    assert buffer is not None and buffer.n_episodes > 0 and model._n_updates > 0
    assert np.asarray(buffer.sample_episodes(1).observations).shape[1:] == (3, 36, 36)


def fill(buffer: EpisodeReplayBuffer, lengths: list[int]) -> None:
    """
    Add episodes whose observations, actions and log-probabilities all hold the episode's index.

    :param buffer: A buffer for 1-d observations and Discrete actions
    :param lengths: Length of each episode
    """
    for idx, length in enumerate(lengths):
        episode = EpisodeBatch(
            observations=np.full((length, 1), idx, dtype=np.float32),
            actions=np.full(length, idx),
            rewards=np.arange(length, dtype=np.float32),
            log_probs=np.full(length, idx, dtype=np.float32),
            episode_lengths=np.array([length]),
            truncated=np.array([idx % 2 == 1]),
            terminal_observations=[np.array([idx], dtype=np.float32)],
        )
        buffer.add_episode(episode, np.array([idx], dtype=np.float32))


def make_buffer(buffer_size: int, max_episodes: int | None = None) -> EpisodeReplayBuffer:
    return EpisodeReplayBuffer(
        buffer_size, spaces.Box(-1e9, 1e9, (1,)), spaces.Discrete(2), device="cpu", max_episodes=max_episodes
    )


def assert_whole_episodes(batch: EpisodeBatch) -> None:
    """Each sampled episode's steps all carry its own index, with rewards 0, 1, ... from its start."""
    observations = np.asarray(batch.observations).flatten()
    starts = np.cumsum(batch.episode_lengths) - batch.episode_lengths
    for start, length in zip(starts, batch.episode_lengths, strict=True):
        assert np.all(observations[start : start + length] == observations[start])
        np.testing.assert_array_equal(batch.rewards[start : start + length], np.arange(length))
        np.testing.assert_array_equal(batch.log_probs[start : start + length], observations[start])


def test_replay_samples_only_whole_episodes_after_wrapping() -> None:
    buffer = make_buffer(20)
    assert buffer.capacity == 0
    fill(buffer, [7, 6, 5, 4, 3])
    # 7 + 6 + 5 = 18 steps; the 4-step episode does not fit behind them and restarts at the front, dropping the
    # first; the 3-step one fits between it and the second.
    assert buffer.pos == 7
    assert buffer.size() == 6 + 5 + 4 + 3
    assert buffer.n_episodes == 4
    batch = buffer.sample_episodes(10)
    assert np.asarray(batch.observations)[np.cumsum(batch.episode_lengths) - 1].flatten().tolist() == [1, 2, 3, 4]
    assert_whole_episodes(batch)
    assert batch.truncated.tolist() == [True, False, True, False]
    # The next one overwrites part of the second: it goes whole.
    fill(buffer, [2])
    assert buffer.n_episodes == 4
    assert_whole_episodes(buffer.sample_episodes(10))
    with pytest.raises(ValueError, match="does not fit"):
        fill(buffer, [21])


def test_replay_gives_sb3s_dones_and_timeouts_per_row() -> None:
    buffer = make_buffer(20)
    fill(buffer, [3, 2, 4])
    # Rows 0-2, 3-4 and 5-8 hold the episodes; the second (index 1) was truncated.
    assert np.flatnonzero(buffer.dones).tolist() == [2, 4, 8]
    assert np.flatnonzero(buffer.timeouts).tolist() == [4]
    assert buffer.dones.shape == buffer.rewards.shape


def test_replay_capacity_in_episodes() -> None:
    buffer = make_buffer(1_000, max_episodes=3)
    fill(buffer, [2, 3, 4, 5, 6])
    assert buffer.n_episodes == 3
    assert sorted(set(np.asarray(buffer.sample_episodes(3).observations).flatten())) == [2, 3, 4]
    assert buffer.capacity < 1_000


def test_replay_buffer_save_load_and_lazy_allocation(tmp_path: Path) -> None:
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", buffer_size=10**9, seed=0).learn(300)
    buffer = model.replay_buffer
    assert buffer is not None and buffer.n_episodes > 0
    # The arrays grow with the episodes stored, not with buffer_size.
    assert buffer.capacity < 2 * buffer.size() + 64
    model.save_replay_buffer(tmp_path / "replay")
    model.save(tmp_path / "model")

    loaded = OffPolicyPG.load(tmp_path / "model")
    assert loaded.replay_buffer is not None and loaded.replay_buffer.capacity == 0
    loaded.load_replay_buffer(tmp_path / "replay")
    restored = loaded.replay_buffer
    assert isinstance(restored, EpisodeReplayBuffer)
    np.testing.assert_array_equal(restored.episode_lengths, buffer.episode_lengths)
    np.testing.assert_array_equal(restored.log_probs[: buffer.pos], buffer.log_probs[: buffer.pos])
    np.testing.assert_array_equal(restored.dones, buffer.dones)
    np.testing.assert_array_equal(restored.timeouts, buffer.timeouts)
    loaded.set_env(model.get_env())  # type: ignore[arg-type]
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.replay_buffer.n_episodes > buffer.n_episodes


def test_ess_benchmark_table() -> None:
    from benchmarks.offpolicy_ess import summary

    table = summary("CartPole-v1", [0], 600)
    rows = [line for line in table.splitlines() if line.startswith("| 0 |")]
    assert len(rows) == 10
    ess_fractions = [float(row.split("|")[5]) for row in rows]
    assert all(0.0 < fraction <= 1.0 for fraction in ess_fractions), table


@pytest.mark.parametrize("gradient_steps", [-1, 0])
def test_gradient_steps_as_in_sb3(gradient_steps: int) -> None:
    """-1: as many gradient steps as env steps collected; 0: collect only (SB3's OffPolicyAlgorithm semantics)."""
    model = OffPolicyPG(
        "MlpPolicy", "CartPole-v1", batch_size=2, train_freq=(1, "episode"), gradient_steps=gradient_steps, seed=0
    )
    model.learn(200)
    assert model.replay_buffer is not None and model.replay_buffer.n_episodes > 0
    expected = model.num_timesteps if gradient_steps == -1 else 0
    assert model._n_updates == expected


def test_loading_a_replay_buffer_keeps_the_envs_open_episodes(tmp_path: Path) -> None:
    # Observations count the steps of each episode: a stored episode is whole when they run 0, 1, ..., length - 1.
    env = DummyVecEnv([lambda: CountingEnv(length=10)])
    model = OffPolicyPG("MlpPolicy", env, seed=0, train_freq=(3, "step"), gradient_steps=0)
    model.learn(14)
    model.save_replay_buffer(tmp_path / "replay")
    model.learn(3, reset_num_timesteps=False)
    model.load_replay_buffer(tmp_path / "replay")
    model.learn(6, reset_num_timesteps=False)
    assert model.replay_buffer is not None
    episodes = model.replay_buffer.sample_episodes(model.replay_buffer.n_episodes)
    assert episodes.episode_lengths.tolist() == [10, 10]
    np.testing.assert_array_equal(np.asarray(episodes.observations).ravel(), np.tile(np.arange(10.0), 2))


def test_loading_another_buffer_type_is_refused_and_keeps_the_model_buffer(tmp_path: Path) -> None:
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", seed=0).learn(300)
    buffer = model.replay_buffer
    save_to_pkl(tmp_path / "sb3_buffer.pkl", ReplayBuffer(10, model.observation_space, model.action_space))
    with pytest.raises(ValueError, match="EpisodeReplayBuffer"):
        model.load_replay_buffer(tmp_path / "sb3_buffer.pkl")
    assert model.replay_buffer is buffer


@pytest.mark.parametrize(
    ("saved", "message"),
    [({"not": "a buffer"}, "holds a dict"), ("pendulum", "observation space Box")],
)
def test_loading_a_foreign_replay_is_refused_and_keeps_the_model_buffer(saved: Any, message: str, tmp_path: Path) -> None:
    if saved == "pendulum":
        other = OffPolicyPG("MlpPolicy", "Pendulum-v1", buffer_size=1_000, seed=0).learn(450)
        assert other.replay_buffer is not None and other.replay_buffer.n_episodes > 0
        saved = other.replay_buffer
    save_to_pkl(tmp_path / "replay.pkl", saved)
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", seed=0).learn(100)
    buffer = model.replay_buffer
    with pytest.raises(ValueError, match=message):
        model.load_replay_buffer(tmp_path / "replay.pkl")
    assert model.replay_buffer is buffer


def test_a_loaded_replay_takes_the_models_episode_capacity_and_device(tmp_path: Path) -> None:
    saved = OffPolicyPG("MlpPolicy", "CartPole-v1", seed=0).learn(400)
    assert saved.replay_buffer is not None and saved.replay_buffer.n_episodes > 3
    kept = saved.replay_buffer.episode_starts[-3:].copy()
    saved.replay_buffer.device = th.device("meta")  # as if saved from another device
    saved.save_replay_buffer(tmp_path / "replay")
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", max_buffer_episodes=3, seed=0)
    model.load_replay_buffer(tmp_path / "replay")
    assert model.replay_buffer is not None and model.replay_buffer.max_episodes == 3
    assert model.replay_buffer.device == model.device
    np.testing.assert_array_equal(model.replay_buffer.episode_starts, kept)
    model.learn(200)
    assert model.replay_buffer.n_episodes == 3


@pytest.mark.parametrize(
    "train_freq",
    [(2, TrainFrequencyUnit.EPISODE), TrainFreq(2, TrainFrequencyUnit.EPISODE), TrainFreq(2, "episode")],  # type: ignore[arg-type]
)
def test_train_freq_in_sb3s_own_types(train_freq: Any) -> None:
    model = OffPolicyPG("MlpPolicy", "CartPole-v1", train_freq=train_freq, gradient_steps=1, seed=0)
    assert model.train_freq == TrainFreq(2, TrainFrequencyUnit.EPISODE)
    model.learn(100)
    assert model._n_updates > 0


# --- gSDE ---------------------------------------------------------------------------------------------------------


def test_gsde_stores_the_policys_log_probabilities_and_resamples_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    model = OffPolicyPG(
        "MlpPolicy", "Pendulum-v1", use_sde=True, sde_sample_freq=50, learning_rate=0.0, train_freq=(1, "episode"), seed=0
    )
    resets: list[int] = []
    original = model.policy.reset_noise
    monkeypatch.setattr(model.policy, "reset_noise", lambda n_envs=1: resets.append(n_envs) or original(n_envs))
    model.learn(400)  # two 200-step episodes, one per collection: steps 0, 50, 100 and 150 of each draw a matrix
    assert resets == [1] * 8
    buffer = model.replay_buffer
    assert buffer is not None and buffer.n_episodes == 2
    batch = buffer.sample_episodes(2)
    with th.no_grad():
        _, log_probs, _ = model.policy.evaluate_actions(th.as_tensor(batch.observations), th.as_tensor(batch.actions))
    # The Gaussian over noise matrices that the importance weights divide by (the policy did not change).
    np.testing.assert_allclose(log_probs.numpy(), batch.log_probs, rtol=1e-5, atol=1e-5)


def test_gsde_needs_box_actions_logs_its_std_and_survives_save_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="continuous actions"):
        OffPolicyPG("MlpPolicy", "CartPole-v1", use_sde=True)
    model = OffPolicyPG("MlpPolicy", "Pendulum-v1", use_sde=True, sde_sample_freq=4, train_freq=(1, "episode"), seed=0)
    logger = Logger(folder=None, output_formats=[])
    recorded: dict[str, Any] = {}
    record = logger.record
    logger.record = lambda key, value, exclude=None: recorded.__setitem__(key, value) or record(key, value, exclude)  # type: ignore[method-assign]
    model.set_logger(logger)
    model.learn(400, log_interval=1)
    assert recorded["train/std"] > 0
    model.save(tmp_path / "model.zip")
    loaded = OffPolicyPG.load(tmp_path / "model.zip", env="Pendulum-v1")
    assert loaded.use_sde and loaded.sde_sample_freq == 4 and loaded.policy.use_sde
    obs = np.array([0.5, -0.5, 0.1], dtype=np.float32)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(200, reset_num_timesteps=False)
    # SB3 keeps use_sde in an off-policy model's policy_kwargs, where the constructor refuses it.
    assert OffPolicyPG.load(tmp_path / "model.zip", gamma=0.9).gamma == 0.9
    assert load_untrusted(OffPolicyPG, tmp_path / "model.zip", "Pendulum-v1").policy.use_sde
    # The saved weights are a gSDE policy's: switching it off would keep the noise matrix fixed forever.
    with pytest.raises(ValueError, match="use_sde=False differs from the saved model's use_sde=True"):
        OffPolicyPG.load(tmp_path / "model.zip", use_sde=False)
    with pytest.raises(ValueError, match="use_sde=False differs"):
        load_untrusted(OffPolicyPG, tmp_path / "model.zip", "Pendulum-v1", use_sde=False)


def test_the_callers_policy_kwargs_stay_as_given_and_load_takes_them_again(tmp_path: Path) -> None:
    """SB3's off-policy base writes use_sde into policy_kwargs, which the constructor then refuses."""
    policy_kwargs = {"net_arch": [16], "activation_fn": th.nn.ReLU}
    model = OffPolicyPG("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)
    assert policy_kwargs == {"net_arch": [16], "activation_fn": th.nn.ReLU}
    OffPolicyPG("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)
    # SB3's load compares given policy_kwargs with the saved ones, which hold use_sde.
    model.save(tmp_path / "model.zip")
    assert OffPolicyPG.load(tmp_path / "model.zip", policy_kwargs=policy_kwargs).policy_kwargs["net_arch"] == [16]
    with pytest.raises(ValueError, match="do not equal the stored policy kwargs"):
        OffPolicyPG.load(tmp_path / "model.zip", policy_kwargs={"net_arch": [32]})
