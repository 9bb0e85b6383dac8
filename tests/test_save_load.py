"""Save/load: identical deterministic actions, optimiser states and hyper-parameters survive."""

import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from algorithms import ALGORITHMS
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pgnotes import PPOKL, NStepAC, OffPolicyPG, Reinforce, load_untrusted


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_save_load_same_actions(algo: type[BaseAlgorithm], kwargs: dict[str, Any], tmp_path: Path) -> None:
    model = algo("MlpPolicy", "CartPole-v1", seed=1, **kwargs).learn(300)
    observations = np.stack([model.observation_space.sample() for _ in range(20)])
    actions, _ = model.predict(observations, deterministic=True)
    path = tmp_path / "model.zip"
    model.save(path)

    loaded = algo.load(path)
    loaded_actions, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    for name, param in model.policy.state_dict().items():
        th.testing.assert_close(param, loaded.policy.state_dict()[name])
    assert loaded.get_parameters().keys() == model.get_parameters().keys()
    # Loading for prediction needs no env; training resumes once one is set.
    loaded.set_env(model.get_env())
    loaded.learn(100, reset_num_timesteps=False)


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_load_and_set_env_take_an_env_id_as_the_constructor(
    algo: type[BaseAlgorithm], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    algo("MlpPolicy", "CartPole-v1", **kwargs).save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env="CartPole-v1")
    assert loaded.get_env().num_envs == 1
    loaded.learn(50)
    loaded.set_env("CartPole-v1")
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        algo.load(tmp_path / "model.zip", env="Acrobot-v1")


@pytest.mark.filterwarnings("ignore:Not restored")  # OffPolicyPG keeps train_freq as code
@pytest.mark.parametrize("algo", [Reinforce, PPOKL, NStepAC, OffPolicyPG])
def test_load_appends_the_zip_suffix_and_subclasses_load_their_parents_files(algo: type[Any], tmp_path: Path) -> None:
    subclass = type(f"My{algo.__name__}", (algo,), {})
    algo("MlpPolicy", "CartPole-v1", gamma=0.5).save(tmp_path / "gamma_0.5.zip")
    # gamma_0.zip: the name of the other with its last dot-part replaced by .zip, which must not be found instead.
    subclass("MlpPolicy", "CartPole-v1", gamma=0.0).save(tmp_path / "gamma_0")
    assert algo.load(tmp_path / "gamma_0.5").gamma == 0.5
    assert subclass.load(str(tmp_path / "gamma_0.5")).gamma == 0.5
    assert algo.load(tmp_path / "gamma_0").gamma == 0.0
    assert load_untrusted(subclass, tmp_path / "gamma_0.5", "CartPole-v1").gamma == 0.5
    other = next(cls for cls in (Reinforce, NStepAC) if not issubclass(algo, cls))
    with pytest.raises(ValueError, match=f"holds a model of class {algo.__name__}, not {other.__name__}"):
        other.load(tmp_path / "gamma_0")


def test_reinforce_keeps_critic_optimizer_and_settings(tmp_path: Path) -> None:
    model = Reinforce(
        "MlpPolicy", "CartPole-v1", n_episodes=2, critic_learning_rate=0.01, n_critic_updates=3, discount_option=2, seed=0
    )
    model.learn(200)
    model.save(tmp_path / "reinforce")
    loaded = Reinforce.load(tmp_path / "reinforce")
    for saved, restored in (
        (model.critic_optimizer.state_dict(), loaded.critic_optimizer.state_dict()),
        (model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()),
    ):
        assert saved["param_groups"][0]["lr"] == restored["param_groups"][0]["lr"]
        for key, state in saved["state"].items():
            th.testing.assert_close(state["exp_avg"], restored["state"][key]["exp_avg"])
    assert (loaded.n_critic_updates, loaded.discount_option, loaded.n_episodes) == (3, 2, 2)
    assert loaded.critic_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    # Actor and critic optimisers own disjoint parameter sets.
    actor = {id(p) for group in loaded.policy.optimizer.param_groups for p in group["params"]}
    critic = {id(p) for group in loaded.critic_optimizer.param_groups for p in group["params"]}
    assert actor.isdisjoint(critic) and actor | critic == {id(p) for p in loaded.policy.parameters()}


@pytest.mark.parametrize(("algo", "kwargs"), ALGORITHMS)
def test_transient_episodes_are_not_saved(algo: type[BaseAlgorithm], kwargs: dict[str, Any], tmp_path: Path) -> None:
    model = algo("MlpPolicy", "CartPole-v1", seed=0, **kwargs).learn(200)
    model.save(tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        saved = json.loads(archive.read("data"))
    # Collected data (episodes, rollout buffer) and PPOKL's frozen rollout-policy copy stay out of the archive;
    # the constructor arguments (n_episodes, n_steps, ...) go in.
    assert saved.keys().isdisjoint({"episode_batch", "rollout_buffer", "old_policy"})
    assert set(kwargs) <= saved.keys()


def test_offpolicy_pg_checks_the_episode_length_against_its_own_buffer_size(tmp_path: Path) -> None:
    def long_cartpole() -> gym.Env:
        return gym.make("CartPole-v1", max_episode_steps=30_000)

    # Saved with a replay that holds the env's episodes: it loads with that env, as SAC's does.
    OffPolicyPG("MlpPolicy", long_cartpole(), buffer_size=40_000).save(tmp_path / "big")
    assert OffPolicyPG.load(tmp_path / "big", env=long_cartpole()).buffer_size == 40_000
    # Saved with a replay too short for the env given at load or later: refused there, not at the first long episode.
    OffPolicyPG("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=50), buffer_size=100).save(tmp_path / "small")
    with pytest.raises(ValueError, match=r"buffer_size=100 is shorter than the env's episodes \(time limit 200 steps\)"):
        OffPolicyPG.load(tmp_path / "small", env="Pendulum-v1")
    model = OffPolicyPG.load(tmp_path / "small")
    with pytest.raises(ValueError, match=r"buffer_size=100 is shorter than the env's episodes \(time limit 200 steps\)"):
        model.set_env("Pendulum-v1")
    assert model.env is None
    model.set_env(gym.make("Pendulum-v1", max_episode_steps=50))
    model.learn(120)
