"""A hostile but realistic user: every bad input gets a clear error naming the culprit, at construction where it can."""

import base64
import re
import warnings
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from envs import FaultyEnv, SpaceEnv
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.sac.policies import SACPolicy

from sb3_pgnotes import PPOKL, NStepAC, OffPolicyPG, Reinforce, load_untrusted
from sb3_pgnotes.zoo.cli import main

FAST = {
    Reinforce: {"n_episodes": 2},
    PPOKL: {"n_steps": 16, "batch_size": 8, "n_epochs": 1},
    NStepAC: {"n_steps": 4},
    OffPolicyPG: {"batch_size": 2, "train_freq": (1, "episode")},
}
ALGOS = list(FAST)


def build(algo: type[BaseAlgorithm], env: Any = "CartPole-v1", **kwargs: Any) -> BaseAlgorithm:
    return algo("MlpPolicy", env, **{**FAST[algo], **kwargs})


def each(kwargs: dict[str, Any], match: str, algos: list[type[BaseAlgorithm]] = ALGOS) -> list[Any]:
    """One row per algorithm."""
    return [pytest.param(algo, kwargs, match, id=f"{algo.__name__}-{'-'.join(map(str, kwargs))}") for algo in algos]


CONSTRUCTION = [
    *each({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
    *each({"learning_rate": "fast"}, "learning_rate must be a number >= 0 or a schedule"),
    *each({"learning_rate": None}, "learning_rate must be a number >= 0 or a schedule"),
    *each({"learning_rate": -1e-3}, "learning_rate must be a number in"),
    *each({"learning_rate": lambda progress: float("nan")}, "learning_rate: a schedule must return finite numbers"),
    *each({"learning_rate": lambda progress: 1e-3 / progress}, "learning_rate: the schedule failed at progress remaining 0"),
    *each({"critic_learning_rate": -1.0}, "critic_learning_rate must be a number in", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"critic_learning_rate": float("nan")}, "critic_learning_rate must be a number", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"critic_learning_rate": "fast"}, "critic_learning_rate must be a number >= 0", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"ent_coef": float("nan")}, "ent_coef must be a number"),
    *each({"ent_coef": float("inf")}, "ent_coef must be a finite number"),
    *each({"stats_window_size": -1}, "stats_window_size must be an integer >= 1"),
    *each({"device": "gpu0"}, "device must be 'auto', 'cpu', 'cuda'"),
    *each({"device": "meta"}, "device 'meta' holds shapes without data"),
    *each({"device": "ve"}, "device 've' cannot be used with this torch build"),
    *each(
        {"policy_kwargs": {"log_std_init": float("nan")}}, r"policy_kwargs\['log_std_init'\] must be a number in \[-20, 20\]"
    ),
    *each({"policy_kwargs": {"log_std_init": 1e6}}, r"policy_kwargs\['log_std_init'\] must be a number in \[-20, 20\]"),
    *each({"seed": -3}, "seed must be None or an integer >= 0"),
    *each({"verbose": "loud"}, "verbose must be an integer >= 0"),
    *each({"policy_kwargs": "big"}, "policy_kwargs must be None or a dict"),
    *each({"policy_kwargs": {"net_arch": "big"}}, r"policy_kwargs\['net_arch'\] must be a list of layer sizes"),
    *each({"policy_kwargs": {"net_arch": [64, 0]}}, r"policy_kwargs\['net_arch'\] must be a list of layer sizes"),
    *each({"policy_kwargs": {"net_arch": {"actor": [64]}}}, r"dict\(pi=\[...\], vf=\[...\]\)"),
    *each({"policy_kwargs": {"activation_fn": "relu"}}, r"policy_kwargs\['activation_fn'\] must be a torch module"),
    *each({"policy_kwargs": {"use_sde": True}}, r"policy_kwargs must not set 'use_sde'"),
    *each({"policy_kwargs": {"optimizer_class": "adam"}}, r"policy_kwargs\['optimizer_class'\] must be a torch optimiser"),
    *each({"policy_kwargs": {"optimizer_kwargs": 0.9}}, r"policy_kwargs\['optimizer_kwargs'\] must be None or a dict"),
    *each({"policy_kwargs": {"optimizer_kwargs": {"betas": 5}}}, r"\{'betas': 5\} are not arguments Adam takes"),
    *each({"policy_kwargs": {"optimizer_kwargs": {"lr": 0.1}}}, r"\{'lr': 0.1\} are not arguments Adam takes"),
    *each(
        {"policy_kwargs": {"optimizer_class": th.optim.SGD, "optimizer_kwargs": {"eps": 1e-5}}},
        r"\{'eps': 1e-05\} are not arguments SGD takes",
    ),
    *each({"policy_kwargs": {"squash_output": True}}, "cannot be built with these policy_kwargs: squash_output=True is"),
    *each({"tensorboard_log": 5}, "tensorboard_log must be None or a folder path"),
    *each({"beta": float("inf"), "beta_mode": "fixed"}, "beta must be a finite number", [PPOKL]),
    *each({"beta_max": float("inf")}, "beta_max must be a finite number", [PPOKL]),
    *each({"use_sde": "yes"}, "use_sde must be one of True, False", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"sde_sample_freq": "x"}, "sde_sample_freq must be an integer"),
    *each({"sde_sample_freq": -5}, "sde_sample_freq must be an integer >= -1"),
    *each({"discount_option": 2.0}, "discount_option must be one of 1, 2; got 2.0", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"discount_option": True}, "discount_option must be one of 1, 2; got True", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"monitor_wrapper": "x"}, "monitor_wrapper must be one of True, False", [Reinforce, NStepAC, OffPolicyPG]),
    *each({"mode": "online", "critic_target": "td", "n_steps": True}, "n_steps must be None or 1 in mode='online'", [NStepAC]),
    *each({"n_steps": 0.0, "collection": "episodes"}, "n_steps must be None with collection='episodes'", [NStepAC]),
    *each({"vf_coef": float("inf")}, "vf_coef must be a finite number", [PPOKL]),
    *each({"gradient_steps": -2}, "gradient_steps must be an integer >= -1", [OffPolicyPG]),
    *each({"buffer_size": 100}, r"buffer_size=100 is shorter than the env's episodes \(time limit 500", [OffPolicyPG]),
]


@pytest.mark.parametrize(("algo", "kwargs", "match"), CONSTRUCTION)
def test_bad_constructor_argument(algo: type[BaseAlgorithm], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(algo, **kwargs)


IGNORED = [
    pytest.param(NStepAC, {"critic_target": "td", "target_n": 20}, "target_n=20 has no effect", id="nstep_ac-target_n"),
    pytest.param(NStepAC, {"n_episodes": 4}, "n_episodes=4 has no effect", id="nstep_ac-n_episodes"),
    pytest.param(Reinforce, {"baseline": "mean", "n_critic_updates": 3}, "n_critic_updates=3", id="reinforce-critic"),
    pytest.param(Reinforce, {"leave_one_out": False}, "leave_one_out=False has no effect", id="reinforce-leave_one_out"),
    pytest.param(PPOKL, {"beta_mode": "fixed", "kl_target": 0.02}, "kl_target=0.02 has no effect", id="ppo_kl-kl_target"),
    pytest.param(
        OffPolicyPG, {"baseline": "none", "critic_learning_rate": 0.01}, "critic_learning_rate", id="offpolicy-critic"
    ),
]


@pytest.mark.parametrize(("algo", "kwargs", "match"), IGNORED)
def test_option_ignored_by_the_configuration_warns(algo: type[BaseAlgorithm], kwargs: dict[str, Any], match: str) -> None:
    with pytest.warns(UserWarning, match=match):
        build(algo, **kwargs)


def tuple_action_env() -> gym.Env:
    return SpaceEnv(spaces.Box(-1, 1, (3,)), spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))))


def dict_action_env() -> gym.Env:
    return SpaceEnv(spaces.Box(-1, 1, (3,)), spaces.Dict({"a": spaces.Discrete(2)}))


def sequence_obs_env() -> gym.Env:
    return SpaceEnv(spaces.Sequence(spaces.Box(-1, 1, (2,))), spaces.Discrete(2))


def graph_obs_env() -> gym.Env:
    return SpaceEnv(spaces.Graph(spaces.Box(-1, 1, (2,)), spaces.Discrete(2)), spaces.Discrete(2))


BOX4 = spaces.Box(-1, 1, (4,))
SPACES = [
    *each({"env": tuple_action_env}, r"action space Tuple.* is not supported: use Box, Discrete, MultiDiscrete"),
    *each({"env": dict_action_env}, r"action space Dict.* is not supported: use Box, Discrete, MultiDiscrete"),
    *each({"env": sequence_obs_env}, r"observation space Sequence.* is not supported"),
    *each({"env": graph_obs_env}, r"observation space Graph.* is not supported", [Reinforce, PPOKL]),
    *each({"env": lambda: SpaceEnv(BOX4, spaces.Discrete(3, start=-1))}, r"Discrete\(3, start=-1\) starts at -1"),
    *each({"env": lambda: SpaceEnv(BOX4, spaces.MultiDiscrete([3, 2], start=[0, 1]))}, r"starts at \[0 1\]"),
    *each(
        {"env": lambda: SpaceEnv(BOX4, spaces.MultiBinary([2, 3]))},
        r"Multi-dimensional MultiBinary\(.*\) action space is not supported, as in SB3: the policies take a flat",
    ),
    *each({"env": lambda: SpaceEnv(BOX4, spaces.MultiDiscrete([[2, 3], [3, 2]]))}, r"has shape \(2, 2\)"),
    *each({"env": lambda: SpaceEnv(BOX4, spaces.Box(-np.inf, np.inf, (2,)))}, "has infinite bounds"),
    *each({"env": lambda: SpaceEnv(spaces.MultiDiscrete([[2, 3], [3, 2]]), spaces.Discrete(2))}, "MultiDiscrete with shape"),
    *each({"env": lambda: SpaceEnv(spaces.Discrete(4, start=2), spaces.Discrete(2))}, r"start=2\), which starts at 2"),
    *each({"env": lambda: SpaceEnv(BOX4, spaces.Box(-1, 1, (0,)))}, r"has no dimensions to act in \(shape \(0,\)\)"),
    *each({"env": lambda: SpaceEnv(spaces.Box(-1, 1, ()), spaces.Discrete(2))}, r"of shape \(\): the policies need"),
    *each(
        {"env": lambda: SpaceEnv(spaces.Dict({"a": BOX4, "b": spaces.Box(-1, 1, (2, 0))}), spaces.Discrete(2))},
        r"of shape \(2, 0\): the policies need",
    ),
    *each(
        {"env": lambda: SpaceEnv(spaces.Dict({"a": spaces.MultiDiscrete([3, 3], start=[1, 0])}), spaces.Discrete(2))},
        r"which starts at \[1 0\]",
    ),
]


@pytest.mark.parametrize(("algo", "kwargs", "match"), SPACES)
def test_unsupported_space(algo: type[BaseAlgorithm], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(algo, env=kwargs["env"]())


NESTED_DICT = spaces.Dict({"a": BOX4, "nested": spaces.Dict({"b": spaces.Discrete(2)})})
SB3_ERRORS = [
    pytest.param(tuple_action_env, AssertionError, id="tuple-actions"),
    pytest.param(lambda: SpaceEnv(BOX4, spaces.MultiBinary([2, 3])), AssertionError, id="2d-multibinary-actions"),
    pytest.param(lambda: SpaceEnv(NESTED_DICT, spaces.Discrete(2)), NotImplementedError, id="nested-dict-observations"),
    pytest.param(lambda: SpaceEnv(spaces.Tuple((BOX4, BOX4)), spaces.Discrete(2)), NotImplementedError, id="tuple-obs"),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(("make_env", "sb3_error"), SB3_ERRORS)
def test_unsupported_spaces_also_raise_sb3s_exception_types(
    algo: type[BaseAlgorithm], make_env: Callable[[], gym.Env], sb3_error: type[Exception]
) -> None:
    """SB3 refuses these spaces with an AssertionError or a NotImplementedError, which code written for it catches."""
    env = make_env()
    policy = "MultiInputPolicy" if isinstance(env.observation_space, spaces.Dict) else "MlpPolicy"
    with pytest.raises(sb3_error) as raised:
        algo(policy, env, **FAST[algo])
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("algo", ALGOS)
def test_cnn_policy_on_small_images_names_the_minimum_size(algo: type[BaseAlgorithm]) -> None:
    env = SpaceEnv(spaces.Box(0, 255, (16, 16, 3), dtype=np.uint8), spaces.Discrete(2))
    with pytest.raises(ValueError, match="at least 36x36 pixels"):
        algo("CnnPolicy", env, **FAST[algo])


@pytest.mark.parametrize("algo", [Reinforce, OffPolicyPG])
def test_cnn_policy_on_vectors_says_why(algo: type[BaseAlgorithm]) -> None:
    with pytest.raises(ValueError, match="cannot take the observation space") as raised:
        algo("CnnPolicy", "CartPole-v1", **FAST[algo])
    assert isinstance(raised.value, AssertionError)  # as SB3's own refusal


LEARN = [
    *each({"total_timesteps": -5}, "total_timesteps must be a whole number >= 0; got -5"),
    *each({"total_timesteps": "1000"}, "total_timesteps must be a whole number >= 0; got '1000'"),
    *each({"total_timesteps": 10.5}, "total_timesteps must be a whole number", [Reinforce]),
]


@pytest.mark.parametrize(("algo", "kwargs", "match"), LEARN)
def test_bad_learn_budget(algo: type[BaseAlgorithm], kwargs: dict[str, Any], match: str) -> None:
    model = build(algo)
    with pytest.raises(ValueError, match=match):
        model.learn(kwargs["total_timesteps"])
    assert model.num_timesteps == 0


@pytest.mark.parametrize("algo", ALGOS)
def test_no_env_and_a_zero_log_interval_are_named(algo: type[BaseAlgorithm]) -> None:
    with pytest.raises(AttributeError, match=r"built with env=None\. Pass env"):
        algo("MlpPolicy", None, **FAST[algo])
    model = build(algo)
    with pytest.raises(ValueError, match="log_interval must be an integer >= 1, got 0"):
        model.learn(300, log_interval=0)
    assert model.num_timesteps == 0
    model.learn(64, log_interval=None)


FAULTS = [
    pytest.param(Reinforce, {}, "reward", id="reinforce-reward"),
    pytest.param(Reinforce, {}, "observation", id="reinforce-observation"),
    pytest.param(PPOKL, {}, "reward", id="ppo_kl-reward"),
    pytest.param(PPOKL, {}, "observation", id="ppo_kl-observation"),
    pytest.param(NStepAC, {}, "reward", id="nstep_ac-reward"),
    pytest.param(NStepAC, {"mode": "online", "critic_target": "td", "n_steps": None}, "reward", id="nstep_ac-online-reward"),
    pytest.param(NStepAC, {"critic_target": "mc", "n_steps": None}, "observation", id="nstep_ac-mc-observation"),
    pytest.param(OffPolicyPG, {}, "reward", id="offpolicy_pg-reward"),
    pytest.param(OffPolicyPG, {"estimator": "first_order"}, "observation", id="offpolicy_pg-observation"),
]


@pytest.mark.parametrize(("algo", "kwargs", "where"), FAULTS)
@pytest.mark.parametrize("fault_step", [10, 37])
def test_non_finite_env_data_stops_training_before_the_parameters_change(
    algo: type[BaseAlgorithm], kwargs: dict[str, Any], where: str, fault_step: int
) -> None:
    env = DummyVecEnv([lambda: FaultyEnv(fault_step, where, continuous=algo is NStepAC)])
    model = build(algo, env=env, seed=0, **kwargs)
    with pytest.raises(ValueError, match=rf"non-finite {where}.*env index 0"):
        model.learn(400)
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())
    assert model.num_timesteps == fault_step


@pytest.mark.parametrize("algo", ALGOS)
def test_training_survives_numpy_raising_on_every_floating_point_error(algo: type[BaseAlgorithm]) -> None:
    """SB3's own algorithms train under ``np.seterr(all="raise")``; so must ours."""
    old = np.seterr(all="raise")
    try:
        build(algo, seed=0).learn(600)
    finally:
        np.seterr(**old)


def mid_training(rate: float) -> Callable[[float], float]:
    """A schedule that is fine at both ends of training and returns ``rate`` in between."""
    return lambda progress: rate if 0.1 < progress < 0.9 else 1e-3


SCHEDULE_FAULTS = [
    *each({"learning_rate": mid_training(-1e-2)}, "learning_rate: a schedule must return finite numbers >= 0"),
    *each({"learning_rate": mid_training(float("nan"))}, "learning_rate: a schedule must return finite numbers >= 0"),
    *each(
        {"baseline": "value", "critic_learning_rate": mid_training(-1e-2)},
        "critic_learning_rate: a schedule must return finite numbers >= 0",
        [Reinforce, OffPolicyPG],
    ),
    *each({"critic_learning_rate": mid_training(float("nan"))}, "critic_learning_rate: a schedule must", [NStepAC]),
]


@pytest.mark.parametrize(("algo", "kwargs", "match"), SCHEDULE_FAULTS)
def test_a_schedule_going_wrong_mid_training_stops_before_an_optimiser_uses_it(
    algo: type[BaseAlgorithm], kwargs: dict[str, Any], match: str
) -> None:
    model = build(algo, seed=0, **kwargs)
    with pytest.raises(ValueError, match=match):
        model.learn(1_000)
    assert 0 < model.num_timesteps < 1_000
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())


@pytest.mark.parametrize("algo", ALGOS)
def test_numpy_scalars_are_taken_wherever_numbers_are(algo: type[BaseAlgorithm]) -> None:
    kwargs: dict[str, Any] = {"seed": np.int64(3), "learning_rate": np.float32(1e-3), "stats_window_size": np.int64(5)}
    if algo is not PPOKL:
        kwargs["critic_learning_rate"] = np.int64(0)
    if algo is Reinforce:
        kwargs.update(baseline="optimal", optimal_baseline_horizon=np.int64(4), critic_learning_rate=3e-3)
    if algo is OffPolicyPG:
        kwargs["train_freq"] = (np.int64(1), "episode")
    build(algo, **kwargs).learn(100)
    if algo is OffPolicyPG:
        build(algo, train_freq=np.int64(4)).learn(100)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for algo in ALGOS:
        paths[algo.__name__] = folder / f"{algo.__name__}.zip"
        build(algo, seed=0).learn(64).save(paths[algo.__name__])
    paths["PPO"] = folder / "PPO.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=8, seed=0).learn(16).save(paths["PPO"])
    return paths


LOAD_OVERRIDES = [
    pytest.param(Reinforce, {"n_episodes": 0}, {"n_episodes": 3}, "n_episodes must be", id="reinforce"),
    pytest.param(NStepAC, {"critic_target": "foo"}, {"n_steps": 8}, "critic_target must be one of", id="nstep_ac"),
    pytest.param(NStepAC, {"n_steps": -2}, {"target_n": 2}, "n_steps must be", id="nstep_ac-n_steps"),
    pytest.param(PPOKL, {"n_epochs": 0}, {"n_epochs": 2}, "n_epochs must be", id="ppo_kl"),
    pytest.param(OffPolicyPG, {"batch_size": 0}, {"batch_size": 3}, "batch_size must be", id="offpolicy_pg"),
]


@pytest.mark.parametrize(("algo", "bad", "good", "match"), LOAD_OVERRIDES)
def test_load_overrides_are_checked_as_the_constructor_checks_them(
    algo: type[BaseAlgorithm], bad: dict[str, Any], good: dict[str, Any], match: str, saved: dict[str, Path]
) -> None:
    # SB3's load sets keyword arguments and custom_objects on the model as given.
    with pytest.raises(ValueError, match=match):
        algo.load(saved[algo.__name__], env="CartPole-v1", **bad)
    with pytest.raises(ValueError, match=match):
        algo.load(saved[algo.__name__], env="CartPole-v1", custom_objects=bad)
    model = algo.load(saved[algo.__name__], env="CartPole-v1", custom_objects={"learning_rate": 0.0}, **good)
    assert all(getattr(model, name) == value for name, value in good.items())
    model.learn(64)


def rewrite_entry(source: Path, target: Path, entry: str, content: bytes) -> Path:
    """Copy a model file with one entry replaced."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for name in original.namelist():
            copy.writestr(name, content if name == entry else original.read(name))
    return target


FILES: list[Any] = [
    pytest.param(NStepAC, "Reinforce", None, "a model of class Reinforce, not NStepAC", id="nstep_ac-loads-reinforce"),
    pytest.param(OffPolicyPG, "NStepAC", None, "a model of class NStepAC, not OffPolicyPG", id="offpolicy-loads-nstep"),
    pytest.param(Reinforce, "OffPolicyPG", None, "class OffPolicyPG, not Reinforce", id="reinforce-loads-offpolicy"),
    pytest.param(PPOKL, "PPO", None, "holds a model of PPO, not a PPOKL", id="ppo_kl-loads-ppo"),
    pytest.param(Reinforce, "Reinforce", "truncate", "is not a valid model file", id="truncated-zip"),
    pytest.param(Reinforce, "Reinforce", ("data", b"{not json"), "'data' entry is not JSON", id="data-not-json"),
    pytest.param(Reinforce, "Reinforce", ("policy.pth", b"\x00random bytes"), "'policy.pth' entry is not a PyTorch", id="pth"),
]


@pytest.mark.parametrize(("algo", "source", "damage", "match"), FILES)
def test_bad_model_file(
    algo: type[BaseAlgorithm], source: str, damage: Any, match: str, saved: dict[str, Path], tmp_path: Path
) -> None:
    path = saved[source]
    if damage == "truncate":
        path = tmp_path / "truncated.zip"
        path.write_bytes(saved[source].read_bytes()[:300])
    elif damage is not None:
        path = rewrite_entry(saved[source], tmp_path / "damaged.zip", *damage)
    with pytest.raises(ValueError, match=match):
        algo.load(path)
    with pytest.raises(ValueError, match=match):
        load_untrusted(algo, path, "CartPole-v1")


def test_missing_model_file_is_not_found_as_in_sb3(tmp_path: Path) -> None:
    for load in (Reinforce.load, lambda path: load_untrusted(Reinforce, path, "CartPole-v1")):
        with pytest.raises(FileNotFoundError, match="No model file at"):
            load(tmp_path / "nothing.zip")


def test_refuses_to_save_non_finite_parameters(tmp_path: Path) -> None:
    model = build(Reinforce)
    with th.no_grad():
        next(model.policy.parameters())[0] = float("nan")
    with pytest.raises(ValueError, match="Refusing to save: the policy parameter"):
        model.save(tmp_path / "model.zip")
    assert not (tmp_path / "model.zip").exists()


class Payload:
    """Unpickling this creates a file: the stand-in for code planted in a model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    ("algo", "name", "entry"),
    [(Reinforce, "Reinforce", "lr_schedule"), (NStepAC, "NStepAC", "critic_lr_schedule"), (PPO, "PPO", "lr_schedule")],
)
def test_load_untrusted_runs_no_planted_code_and_predicts_as_load(
    algo: type[BaseAlgorithm], name: str, entry: str, saved: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    with zipfile.ZipFile(saved[name]) as archive:
        data = json.loads(archive.read("data"))
    data[entry] = {":type:": "<class 'function'>", ":serialized:": base64.b64encode(pickle.dumps(Payload(marker))).decode()}
    planted = rewrite_entry(saved[name], tmp_path / "planted.zip", "data", json.dumps(data).encode())

    with warnings.catch_warnings():
        # SB3's PPO stores clip_range only as code: it keeps its default.
        warnings.simplefilter("ignore", UserWarning)
        untrusted = load_untrusted(algo, planted, "CartPole-v1", device="cpu")
    assert not marker.exists()
    trusted = algo.load(saved[name], device="cpu")
    observations = np.random.default_rng(0).uniform(-0.2, 0.2, size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        untrusted.predict(observations, deterministic=True)[0], trusted.predict(observations, deterministic=True)[0]
    )
    assert untrusted.num_timesteps == trusted.num_timesteps
    # SB3's own load runs the planted code: the reason load_untrusted exists.
    algo.load(planted, device="cpu")
    assert marker.exists()


def test_load_untrusted_checks_the_env(saved: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="does not match the model's"):
        load_untrusted(Reinforce, saved["Reinforce"], "Pendulum-v1")
    # Same observation shape, Discrete(3) actions against the model's Discrete(2): both shapes are ().
    env = SpaceEnv(spaces.Box(-1.0, 1.0, (4,), dtype=np.float32), spaces.Discrete(3))
    with pytest.raises(ValueError, match=r"does not match the model's \(n=2\)"):
        load_untrusted(Reinforce, saved["Reinforce"], env)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """:return: The one-line error the command exits with (no traceback)"""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code not in (0, None)
    message = str(exit_info.value.code) if isinstance(exit_info.value.code, str) else capsys.readouterr().err
    assert "Traceback" not in message
    return message


def yaml_file(tmp_path: Path, entry: str) -> str:
    path = tmp_path / "hyperparams.yml"
    path.write_text(f"CartPole-v1:\n  n_timesteps: 1000\n  policy: 'MlpPolicy'\n{entry}\n", encoding="utf-8")
    return str(path)


CLI: list[Any] = [
    pytest.param(["-params", "garbage"], "-params 'garbage': write KEY:VALUE", id="params-garbage"),
    pytest.param(["-params", "n_episodes:abc"], "'abc' is not a Python value", id="params-name-error"),
    pytest.param(["-params", "n_episodes:("], r"'\(' is not a Python value", id="params-syntax-error"),
    pytest.param(["--conf-file", "learning_rate: 'fast'"], "learning_rate", id="yaml-learning-rate"),
    pytest.param(["--conf-file", "critic_learning_rate: 'fast'"], "critic_learning_rate", id="yaml-critic-learning-rate"),
    pytest.param(["--conf-file", "n_episodes: 'ten'"], "n_episodes must be an integer", id="yaml-n-episodes"),
    pytest.param(["--conf-file", "no_such_option: 3"], "no_such_option", id="yaml-unknown-option"),
    pytest.param(["-n", "0"], r"-n/--n-timesteps must be >= 1 .*got 0", id="zero-budget"),
    pytest.param(["--n-timesteps", "-5"], r"-n/--n-timesteps must be >= 1 .*got -5", id="negative-budget"),
    pytest.param(["-params", "n_envs:0"], "n_envs must be an integer >= 1", id="params-no-envs"),
    pytest.param(["-params", "n_envs:-1"], "n_envs must be an integer >= 1", id="params-negative-envs"),
    pytest.param(["-conf", "/nonexistent/hyperparams.yml"], "no such file", id="missing-conf-file"),
    pytest.param(["--env", "CartPol-v1"], "CartPol-v1 not found", id="unknown-env"),
    pytest.param(
        ["--env-kwargs", "foo:3"],
        r"--env-kwargs \{'foo': 3\} for CartPole-v1: .*unexpected keyword argument 'foo'",
        id="env-kwargs",
    ),
    pytest.param(["--algo", "reinforcee"], "unknown algorithm 'reinforcee'", id="unknown-algo"),
    pytest.param(["-optimize", "--storage", "foo://somewhere/db"], "unknown database scheme 'foo'", id="storage-scheme"),
    pytest.param(["-optimize", "--storage", "not a url"], "is not a database URL", id="storage-not-url"),
    pytest.param(
        ["-optimize", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
        "cannot reach the database server at 127.0.0.1:1",
        id="storage-unreachable",
    ),
]


@pytest.mark.parametrize(("extra", "match"), CLI)
def test_train_command_line_mistake(extra: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--algo", "reinforce", "--env", "CartPole-v1", "-f", str(tmp_path / "logs"), "-n", "1000"]
    if extra[0] == "--conf-file":
        extra = ["--conf-file", yaml_file(tmp_path, "  " + extra[1])]
    # The later occurrence of an option wins.
    message = run_cli([*argv, *extra], capsys)
    assert re.search(match, message), message


def test_enjoy_without_a_trained_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = run_cli(["enjoy", "--algo", "reinforce", "--env", "CartPole-v1", "-f", str(tmp_path), "--no-render"], capsys)
    assert "was not found" in message or "No model found" in message


@pytest.mark.parametrize(
    ("policy_kwargs", "actor_width"),
    [
        ({"net_arch": [16, 8]}, 8),
        ({"net_arch": []}, 4),
        ({"net_arch": {"pi": [16], "vf": [8, 8]}}, 16),
        ({"net_arch": {"vf": [8]}}, 4),
        ({"net_arch": [{"pi": [16], "vf": [8]}]}, 16),
        ({"activation_fn": th.nn.ReLU}, 64),
    ],
)
def test_every_policy_kwargs_form_sb3_accepts_passes_the_check(policy_kwargs: dict[str, Any], actor_width: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SB3 warns about the pre-1.8 list-of-dict form
        model = build(Reinforce, policy_kwargs=policy_kwargs)
    assert model.policy.mlp_extractor.latent_dim_pi == actor_width  # type: ignore[union-attr]


@pytest.mark.parametrize("algo", ALGOS)
def test_policies_the_algorithms_cannot_train_are_refused_at_construction(algo: type[BaseAlgorithm]) -> None:
    with pytest.raises(ValueError, match="subclass of SB3's ActorCriticPolicy"):
        algo(SACPolicy, "Pendulum-v1", **FAST[algo])
    with pytest.raises(ValueError, match=r"MultiInputActorCriticPolicy takes Dict observations, not Box"):
        algo("MultiInputPolicy", "Pendulum-v1", **FAST[algo])


def test_load_overrides_are_not_checked_against_training_state(tmp_path: Path) -> None:
    # The adaptive rule took beta below the beta_min the load asks for: it clips beta at the next update.
    model = PPOKL("MlpPolicy", "CartPole-v1", **FAST[PPOKL], seed=0)
    model.beta = 5e-4
    model.save(tmp_path / "model.zip")
    loaded = PPOKL.load(tmp_path / "model.zip", env="CartPole-v1", beta_min=1e-3)
    assert loaded.beta_min == 1e-3
    loaded.learn(32)
    assert loaded.beta >= 1e-3
