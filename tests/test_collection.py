"""The one collection loop: actions reach the env as in SB3, the batch fills SB3's buffers, and endless envs are caught."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from algorithms import ALGORITHMS
from envs import CountingEnv, MatrixActionEnv
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictReplayBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, ReplayBufferSamples
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from sb3_pgnotes import PPOKL, NStepAC, OffPolicyPG, Reinforce
from sb3_pgnotes.common.collection import EpisodeQuota, sample_actions
from sb3_pgnotes.common.returns import reward_to_go
from sb3_pgnotes.offpolicy_pg.buffers import EpisodeReplayBuffer

# Every estimator and baseline of the episodic algorithms, beside the behaviour suite's configurations.
ESTIMATORS = [
    *ALGORITHMS,
    pytest.param(Reinforce, {"n_episodes": 2, "baseline": "optimal", "normalize_advantage": False}, id="reinforce-optimal"),
    pytest.param(Reinforce, {"n_episodes": 2, "baseline": "mean", "reward_to_go": False}, id="reinforce-mean-full"),
    pytest.param(Reinforce, {"n_episodes": 2, "bootstrap_truncated": True, "discount_option": 2}, id="reinforce-bootstrap"),
    pytest.param(NStepAC, {"critic_target": "mc", "n_episodes": 2}, id="nstep_ac-mc"),
    pytest.param(NStepAC, {"critic_target": "td", "collection": "episodes", "n_episodes": 2}, id="nstep_ac-td-episodes"),
    pytest.param(NStepAC, {"critic_target": "mc", "collection": "rollout", "n_steps": 4}, id="nstep_ac-mc-rollout"),
]


def matrix_env(n_envs: int = 2, length: int | None = 5) -> tuple[DummyVecEnv, list[MatrixActionEnv]]:
    envs = [MatrixActionEnv(length) for _ in range(n_envs)]
    return DummyVecEnv([lambda env=env: env for env in envs]), envs  # type: ignore[misc]


@pytest.mark.parametrize(("algo", "kwargs"), ESTIMATORS)
def test_matrix_box_actions_reach_the_env(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    vec_env, envs = matrix_env()
    model = algo("MlpPolicy", vec_env, seed=0, **kwargs)
    model.learn(120)
    received = np.stack([action for env in envs for action in env.received_actions])
    assert received.shape[1:] == (2, 2)
    assert np.all(np.abs(received) <= 2.0)
    action, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (2, 2)


def test_squashed_gsde_actions_are_rescaled_to_the_env_bounds() -> None:
    vec_env, envs = matrix_env(n_envs=1, length=20)
    model = NStepAC(
        "MlpPolicy", vec_env, n_steps=8, use_sde=True, policy_kwargs=dict(squash_output=True, log_std_init=1.0), seed=0
    )
    model.learn(400)
    received = np.stack(envs[0].received_actions)
    # tanh keeps the policy's actions in [-1, 1]; the env's bounds are [-2, 2], and every part of them is reached.
    assert np.all(np.abs(received) <= 2.0)
    assert np.abs(received).max() > 1.5


class RolloutBufferReader(BaseCallback):
    """Reads ``model.rollout_buffer`` at the end of each rollout, as a logging callback would."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, np.ndarray]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer  # type: ignore[attr-defined]
        assert isinstance(buffer, RolloutBuffer) and buffer.full
        fields = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "returns", "advantages")
        self.seen.append({name: np.array(getattr(buffer, name)) for name in fields})
        # SB3's minibatch iterator works on it, as A2C's and PPO's training loops use it.
        n_rows = buffer.buffer_size * buffer.n_envs
        assert sum(len(batch.actions) for batch in buffer.get(batch_size=4)) == n_rows


@pytest.mark.parametrize(("algo", "kwargs"), [param for param in ESTIMATORS if param.values[0] is not OffPolicyPG])
def test_callback_reads_the_rollout_buffer_at_rollout_end(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    reader = RolloutBufferReader()
    model = algo("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
    model.learn(200, callback=reader)
    assert reader.seen
    for seen in reader.seen:
        n_rows = len(seen["rewards"])
        assert n_rows > 0 and seen["observations"].shape[-1] == 4
        assert all(len(value) == n_rows for value in seen.values())
        assert seen["episode_starts"].dtype == np.float32


def test_rollout_buffer_holds_the_episode_batch() -> None:
    """Reinforce's buffer rows are the batch's steps, with V(s_t), the reward-to-go and R_t - V(s_t)."""
    env = DummyVecEnv([lambda: CountingEnv(length=3), lambda: CountingEnv(length=4)])
    model = Reinforce("MlpPolicy", env, n_episodes=3, baseline="value", gamma=0.5, seed=0)
    _, callback = model._setup_learn(100)
    assert model.collect_rollouts(env, callback, model.rollout_buffer)
    batch, buffer = model.episode_batch, model.rollout_buffer
    assert batch is not None and batch.values is not None
    np.testing.assert_array_equal(buffer.rewards.flatten(), batch.rewards)
    np.testing.assert_array_equal(buffer.observations.reshape(-1), np.asarray(batch.observations).reshape(-1))
    np.testing.assert_array_equal(buffer.episode_starts.flatten(), [1, 0, 0, 1, 0, 0, 1, 0, 0, 0])
    returns = reward_to_go(batch.rewards, batch.episode_lengths, 0.5)
    np.testing.assert_allclose(buffer.returns.flatten(), returns, rtol=1e-6)
    np.testing.assert_allclose(buffer.values.flatten(), batch.values, rtol=1e-6)
    np.testing.assert_allclose(buffer.advantages.flatten(), returns - batch.values, rtol=1e-5, atol=1e-6)


ENDLESS_MUST_END = [
    pytest.param(Reinforce, {"n_episodes": 2, "episode_step_limit": 50}, "episode_step_limit=50", id="reinforce"),
    pytest.param(
        NStepAC, {"critic_target": "mc", "n_episodes": 2, "episode_step_limit": 50}, "episode_step_limit=50", id="nstep_ac-mc"
    ),
    pytest.param(OffPolicyPG, {"episode_step_limit": 50}, "episode_step_limit=50", id="offpolicy_pg"),
    pytest.param(OffPolicyPG, {"buffer_size": 40, "train_freq": 8}, "buffer_size=40", id="offpolicy_pg-buffer"),
]


@pytest.mark.parametrize(("algo", "kwargs", "message"), ENDLESS_MUST_END)
def test_endless_episode_stops_episodic_collection(algo: type[BaseAlgorithm], kwargs: dict[str, Any], message: str) -> None:
    model = algo("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=None)]), seed=0, **kwargs)
    with pytest.raises(ValueError, match=message):
        model.learn(10_000)
    assert model.num_timesteps <= 60


@pytest.mark.parametrize(
    ("algo", "kwargs"),
    [
        pytest.param(NStepAC, {"n_steps": 8}, id="nstep_ac"),
        pytest.param(NStepAC, {"mode": "online", "critic_target": "td"}, id="nstep_ac-online"),
        pytest.param(PPOKL, {"n_steps": 16, "batch_size": 8, "n_epochs": 1}, id="ppo_kl"),
    ],
)
def test_endless_episode_is_fine_for_rollouts(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    """Rollouts bootstrap at their edge: an episode that never ends still trains."""
    model = algo("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=None, reward=0.0)]), seed=0, **kwargs)
    model.learn(160)
    assert model._n_updates > 0


def test_offpolicy_pg_warns_when_no_episode_ended() -> None:
    model = OffPolicyPG("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=None)]), train_freq=8, seed=0)
    with pytest.warns(UserWarning, match="no gradient step"):
        model.learn(100)
    assert model._n_updates == 0


def test_quota_counts_each_env_episodes_in_order() -> None:
    np.testing.assert_array_equal(EpisodeQuota.episode_quotas(5, 3), [2, 2, 1])
    np.testing.assert_array_equal(EpisodeQuota.episode_quotas(2, 4), [1, 1, 0, 0])


@pytest.mark.parametrize("n_envs", [1, 3])
def test_reinforce_collects_one_episode_per_env_by_default(n_envs: int) -> None:
    env = DummyVecEnv([lambda: CountingEnv(length=4)] * n_envs)
    model = Reinforce("MlpPolicy", env, seed=0)
    assert model.n_episodes == n_envs
    model.learn(1)
    assert model.episode_batch is not None
    assert model.episode_batch.n_episodes == n_envs and model.episode_batch.n_steps == 4 * n_envs
    assert Reinforce("MlpPolicy", env, n_episodes=5).n_episodes == 5


def replay_step(buffer: EpisodeReplayBuffer, t: int, **kwargs: Any) -> None:
    """Env 0 plays 0, 1, 2 and terminates; env 1 plays 10, 11, is truncated, and starts again at 12."""
    obs = np.array([[t], [10 + t]], dtype=np.float32)
    infos: list[dict[str, Any]] = [{}, {}]
    if t == 2:
        infos[0] = {"terminal_observation": np.array([3.0], dtype=np.float32)}
    if t == 1:
        infos[1] = {"terminal_observation": np.array([12.0], dtype=np.float32), "TimeLimit.truncated": True}
    buffer.add(obs, obs + 1, np.array([0, 1]), np.array([1.0, 2.0]), np.array([t == 2, t == 1]), infos, **kwargs)


def test_replay_buffer_keeps_the_replay_buffer_contract() -> None:
    buffer = EpisodeReplayBuffer(100, spaces.Box(-1e9, 1e9, (1,)), spaces.Discrete(2), device="cpu", n_envs=2)
    for t in range(3):
        replay_step(buffer, t, log_prob=np.array([-0.5, -0.7]))
    # Two episodes stored whole; env 1's third step waits for its episode to end.
    assert buffer.n_episodes == 2 and buffer.size() == 5
    episodes = buffer.sample_episodes(2)
    # In the order they ended.
    np.testing.assert_array_equal(np.asarray(episodes.observations).flatten(), [10, 11, 0, 1, 2])
    assert episodes.truncated.tolist() == [True, False]

    samples = buffer.sample(200)
    assert isinstance(samples, ReplayBufferSamples)
    obs, next_obs = samples.observations.flatten().numpy(), samples.next_observations.flatten().numpy()
    assert set(obs.tolist()) == {0, 1, 2, 10, 11}
    # The next observation inside an episode and, at its end, the terminal one.
    np.testing.assert_array_equal(next_obs, obs + 1)
    # Done marks termination only: the truncated episode's last step is not done.
    np.testing.assert_array_equal(samples.dones.flatten().numpy(), (obs == 2).astype(np.float32))
    np.testing.assert_array_equal(samples.rewards.flatten().numpy(), np.where(obs < 10, 1.0, 2.0))


def test_replay_buffer_needs_log_probs_and_room_for_an_episode() -> None:
    buffer = EpisodeReplayBuffer(4, spaces.Box(-1e9, 1e9, (1,)), spaces.Discrete(2), device="cpu", n_envs=2)
    with pytest.raises(ValueError, match="log_prob"):
        replay_step(buffer, 0)
    endless = EpisodeReplayBuffer(2, spaces.Box(-1e9, 1e9, (1,)), spaces.Discrete(2), device="cpu")
    step = dict(next_obs=None, action=np.array([0]), reward=np.array([0.0]), done=np.array([False]), infos=[{}])
    endless.add(np.zeros((1, 1)), log_prob=np.zeros(1), **step)  # type: ignore[arg-type]
    endless.add(np.zeros((1, 1)), log_prob=np.zeros(1), **step)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffer_size=2"):
        endless.add(np.zeros((1, 1)), log_prob=np.zeros(1), **step)  # type: ignore[arg-type]

    # Env 1's episode outgrows the ring on the third step while env 0's episodes keep ending; env 1 is named.
    mixed = EpisodeReplayBuffer(2, spaces.Box(-1e9, 1e9, (1,)), spaces.Discrete(2), device="cpu", n_envs=2)
    step = dict(next_obs=np.zeros((2, 1)), action=np.array([0, 0]), reward=np.zeros(2), done=np.array([True, False]))
    for _ in range(2):
        mixed.add(np.zeros((2, 1)), log_prob=np.zeros(2), infos=[{}, {}], **step)  # type: ignore[arg-type]
    assert mixed.n_episodes == 2
    with pytest.raises(ValueError, match="episode of env 1 has run 3 steps"):
        mixed.add(np.zeros((2, 1)), log_prob=np.zeros(2), infos=[{}, {}], **step)  # type: ignore[arg-type]


def test_no_other_module_steps_an_env() -> None:
    """The collection loop is the only place that calls ``env.step``."""
    import pathlib
    import re

    import sb3_pgnotes

    root = pathlib.Path(sb3_pgnotes.__file__).parent
    # A call of step with arguments (an optimiser's step() takes none).
    stepping = sorted(
        str(path.relative_to(root)) for path in root.rglob("*.py") if re.search(r"\.step\((?!\))", path.read_text())
    )
    assert stepping == ["common/collection.py"]


def test_time_limit_episodes_are_whole_in_each_batch() -> None:
    env = DummyVecEnv([lambda: gym.wrappers.TimeLimit(CountingEnv(length=None), max_episode_steps=3)])
    model = Reinforce("MlpPolicy", env, n_episodes=2, seed=0)
    model.learn(6)
    assert model.episode_batch is not None
    assert model.episode_batch.episode_lengths.tolist() == [3, 3]
    assert model.episode_batch.truncated.all()


@pytest.mark.parametrize("algo", [Reinforce, NStepAC])
def test_dict_observations_fill_sb3s_dict_rollout_buffer(algo: type[BaseAlgorithm]) -> None:
    from stable_baselines3.common.buffers import DictRolloutBuffer
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    reader = RolloutBufferReader()
    env = DummyVecEnv([lambda: SimpleMultiObsEnv(random_start=False)] * 2)
    model = algo("MultiInputPolicy", env, seed=0, **({"n_episodes": 2} if algo is Reinforce else {"n_steps": 8}))
    model.learn(100, callback=reader)
    assert isinstance(model.rollout_buffer, DictRolloutBuffer)
    batch = next(model.rollout_buffer.get(batch_size=4))
    assert set(batch.observations) == set(env.observation_space.spaces)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("algo", "kwargs"), [(Reinforce, {"n_episodes": 2}), (NStepAC, {"n_episodes": 2, "critic_target": "mc"})]
)
def test_set_env_without_reset_keeps_episodes_whole(algo: type[BaseAlgorithm], kwargs: dict[str, Any]) -> None:
    # The short env starts a second episode while the long one finishes its first: it is left mid-episode.
    env = DummyVecEnv([lambda: CountingEnv(length=2), lambda: CountingEnv(length=5)])
    model = algo("MlpPolicy", env, seed=0, **kwargs)
    model.learn(1)
    model.set_env(env, force_reset=False)
    model.learn(1, reset_num_timesteps=False)
    batch = model.episode_batch
    assert batch is not None
    first_steps = np.cumsum(batch.episode_lengths) - batch.episode_lengths
    assert batch.observations[first_steps].ravel().tolist() == [0.0] * batch.n_episodes
    assert batch.episode_lengths.tolist() == [2, 5]


def test_replay_samples_have_sb3_shapes_for_discrete_observations() -> None:
    observation_space = spaces.Dict({"box": spaces.Box(-1, 1, (2,)), "cell": spaces.Discrete(5)})
    buffer = EpisodeReplayBuffer(100, observation_space, spaces.Discrete(2), device="cpu")
    sb3_buffer = DictReplayBuffer(100, observation_space, spaces.Discrete(2), device="cpu")
    for t in range(3):
        obs = {"box": np.zeros((1, 2), dtype=np.float32), "cell": np.array([t])}
        step = dict(action=np.array([0]), reward=np.array([1.0]), done=np.array([t == 2]), infos=[{}])
        buffer.add(obs, obs, log_prob=np.zeros(1), **step)  # type: ignore[arg-type]
        sb3_buffer.add(obs, obs, **step)  # type: ignore[arg-type]
    ours, theirs = buffer.sample(4), sb3_buffer.sample(4)
    for key in ("box", "cell"):
        assert ours.observations[key].shape == theirs.observations[key].shape  # type: ignore[index]
        assert ours.next_observations[key].shape == theirs.next_observations[key].shape  # type: ignore[index]


class _OwnDistributionPolicy(ActorCriticPolicy):
    """Makes its distribution its own way: collection must call it, not sample around it."""

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        distribution = super().get_distribution(obs)
        distribution.distribution.logits = distribution.distribution.logits.flip(-1)  # type: ignore[union-attr]
        return distribution


@pytest.mark.parametrize(
    ("observation_space", "action_space", "policy_kwargs", "policy_class"),
    [
        (spaces.Box(-1, 1, (4,)), spaces.Discrete(2), {}, ActorCriticPolicy),
        (spaces.Box(-1, 1, (4,)), spaces.Discrete(7), {}, ActorCriticPolicy),
        (spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (1,)), {}, ActorCriticPolicy),
        (spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (2, 3)), {"log_std_init": -0.7}, ActorCriticPolicy),
        (
            spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)}),
            spaces.Discrete(3),
            {},
            MultiInputActorCriticPolicy,
        ),
        (spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (2,)), {"use_sde": True}, ActorCriticPolicy),
        (spaces.Box(-1, 1, (3,)), spaces.MultiDiscrete([2, 3]), {}, ActorCriticPolicy),
        (spaces.Box(-1, 1, (4,)), spaces.Discrete(3), {}, _OwnDistributionPolicy),
    ],
)
@pytest.mark.parametrize("n_envs", [1, 5])
def test_sampled_actions_are_the_policys_own_draws(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    policy_kwargs: dict[str, Any],
    policy_class: type[ActorCriticPolicy],
    n_envs: int,
) -> None:
    # The collection samples without building distribution objects where it can: same draws, same floats.
    policy = policy_class(observation_space, action_space, lambda _: 1e-3, **policy_kwargs)
    policy.set_training_mode(False)
    if policy_kwargs.get("use_sde"):
        policy.reset_noise(n_envs)
    observation_space.seed(0)
    observations = [observation_space.sample() for _ in range(n_envs)]
    if isinstance(observation_space, spaces.Dict):
        batch: Any = {key: np.stack([obs[key] for obs in observations]) for key in observation_space.spaces}
    else:
        batch = np.stack(observations)
    for seed in range(20):
        th.manual_seed(seed)
        actions, log_probs = sample_actions(policy, batch)
        th.manual_seed(seed)
        with th.no_grad():
            distribution = policy.get_distribution(obs_as_tensor(batch, policy.device))
            expected_actions = distribution.get_actions()
            expected_log_probs = distribution.log_prob(expected_actions)
        np.testing.assert_array_equal(actions, expected_actions.numpy().reshape(actions.shape))
        np.testing.assert_array_equal(log_probs, expected_log_probs.numpy())
        assert actions.shape == (n_envs, *action_space.shape)


@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-1, 1, (2,))])
def test_diverged_policy_stops_collection_with_a_clear_error(action_space: spaces.Space) -> None:
    policy = ActorCriticPolicy(spaces.Box(-1, 1, (4,)), action_space, lambda _: 1e-3)
    with th.no_grad():
        policy.action_net.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="action distribution is not finite"):
        sample_actions(policy, np.zeros((2, 4), dtype=np.float32))


class NumericDones(VecEnvWrapper):
    """Gives ``dones`` as 0/1 numbers, as some custom VecEnvs do."""

    def __init__(self, venv: VecEnv, dtype: type) -> None:
        super().__init__(venv)
        self.dtype = dtype

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        observations, rewards, dones, infos = self.venv.step_wait()
        return observations, rewards, dones.astype(self.dtype), infos


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_numeric_dones_end_only_their_own_envs_episodes(
    algo: type[BaseAlgorithm], kwargs: dict[str, Any], dtype: type
) -> None:
    # CountingEnv observes its step index: each stored step's time must match it, env by env.
    env = NumericDones(DummyVecEnv([lambda: CountingEnv(length=3), lambda: CountingEnv(length=5)]), dtype)
    model = algo("MlpPolicy", env, seed=0, **kwargs)
    model.learn(60)
    batch = (
        model.replay_buffer.sample_episodes(100) if isinstance(model, OffPolicyPG) else getattr(model, "episode_batch", None)
    )
    if batch is not None:
        np.testing.assert_array_equal(np.asarray(batch.observations).ravel(), batch.step_times)
