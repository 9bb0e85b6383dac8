"""The rl-zoo3 command line (``python -m sb3_pgnotes``), its algorithm registry, samplers and packaging."""

import subprocess
import sys
import tomllib
from contextlib import ExitStack
from pathlib import Path

import gymnasium as gym
import optuna
import pytest
import torch
import yaml
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.monitor import Monitor

from sb3_pgnotes import NStepAC, Reinforce
from sb3_pgnotes.zoo import ZOO_ALGORITHMS, hyperparams_path, register_algorithms
from sb3_pgnotes.zoo.registry import preprocess_hyperparams
from sb3_pgnotes.zoo.cli import main, rewrite_command, script_arguments
from sb3_pgnotes.zoo.plotting import plot_learning_curve

REPO_ROOT = Path(__file__).resolve().parents[1]


def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """
    Run ``python -m sb3_pgnotes`` in a subprocess.

    :param args: the script and its arguments
    :param cwd: working directory
    :return: the finished process, its output captured
    """
    return subprocess.run(
        [sys.executable, "-m", "sb3_pgnotes", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def packaged_envs(algo: str) -> list[str]:
    """
    :param algo: zoo name of one of our algorithms
    :return: the environment ids in its packaged hyperparameter file
    """
    with hyperparams_path(algo) as path:
        return list(yaml.safe_load(path.read_text()))


def test_train_then_enjoy(tmp_path: Path) -> None:
    common = ["--algo", "reinforce", "--env", "CartPole-v1", "-f", "logs", "--seed", "0", "--num-threads", "1"]
    train = zoo("train", *common, "-n", "2000", "--eval-freq", "1000", "--eval-episodes", "2", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    run_dir = tmp_path / "logs" / "reinforce" / "CartPole-v1_1"
    with hyperparams_path("reinforce") as packaged:
        assert f"Loading hyperparameters from: {packaged}" in train.stdout
    for line, path in [
        ("Saved model", run_dir / "CartPole-v1.zip"),
        ("Best model", run_dir / "best_model.zip"),
        ("Learning curve", run_dir / "learning_curve.png"),
    ]:
        assert path.stat().st_size > 0
        assert f"{line}: {path.relative_to(tmp_path)}" in train.stdout

    enjoy = zoo("enjoy", *common, "-n", "200", "--no-render", cwd=tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr
    assert "Mean reward" in enjoy.stdout


@pytest.mark.parametrize(("algo", "env_id"), [(algo, env_id) for algo in ZOO_ALGORITHMS for env_id in packaged_envs(algo)])
def test_packaged_hyperparams_train(algo: str, env_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["train", "--algo", algo, "--env", env_id, "-n", "1000", "-f", str(tmp_path), "--eval-freq", "-1"])
    run_dir = tmp_path / algo / f"{env_id}_1"
    assert (run_dir / f"{env_id}.zip").exists()
    assert f"Saved model: {run_dir / env_id}.zip" in capsys.readouterr().out


def test_optimize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "train",
            "--algo",
            "reinforce",
            "--env",
            "CartPole-v1",
            "-n",
            "500",
            "--seed",
            "0",
            "-f",
            str(tmp_path),
            "-optimize",
            "--n-trials",
            "2",
            "--n-evaluations",
            "1",
            "--eval-episodes",
            "2",
            "--sampler",
            "random",
            "--pruner",
            "none",
            "--no-optim-plots",
        ]
    )
    out = capsys.readouterr().out
    assert "Number of finished trials:  2" in out
    assert "Saved model" not in out


def test_conf_file_default(tmp_path: Path) -> None:
    register_algorithms()  # as main() does before checking --algo
    mine = tmp_path / "mine.yml"
    mine.write_text("CartPole-v1:\n  n_timesteps: 1000\n", encoding="utf-8")
    with ExitStack() as stack:
        args = script_arguments("train", ["--algo", "reinforce", "--env", "CartPole-v1"], stack)
        assert args[:4] == ["--algo", "reinforce", "--env", "CartPole-v1"]
        assert args[4] == "--conf-file"
        assert Path(args[5]).name == ZOO_ALGORITHMS["reinforce"].hyperparams_file
        assert Path(args[5]).is_file()
    for script, args in [
        ("train", ["--algo", "reinforce", "--conf-file", str(mine)]),
        ("train", ["--algo", "reinforce", "-conf", str(mine)]),
        ("train", ["--algo", "ppo"]),
        ("enjoy", ["--algo", "reinforce"]),
        ("plot_train", ["-a", "reinforce", "-e", "CartPole-v1", "-f", "logs"]),
    ]:
        with ExitStack() as stack:
            assert script_arguments(script, args, stack) == args


def test_unknown_algorithm_and_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--algo", "reinforcee", "--env", "CartPole-v1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'reinforcee'" in err
    assert f"sb3-pgnotes algorithms: {', '.join(ZOO_ALGORITHMS)};" in err
    assert "ppo" in err

    with pytest.raises(SystemExit, match=r"unknown script 'trian'.*train, enjoy"):
        main(["trian"])


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    assert "record_training" in out and "reinforce" in out
    with pytest.raises(SystemExit, match="usage: sb3-pgnotes SCRIPT"):
        main([])


def test_registration() -> None:
    register_algorithms()
    for name, entry in ZOO_ALGORITHMS.items():
        assert ALGOS[name] is entry.algo_class
        assert HYPERPARAMS_SAMPLER[name] is entry.sampler
        assert HYPERPARAMS_CONVERTER[name] is entry.converter
    assert ALGOS["reinforce"] is Reinforce


def reinforce_trial(baseline: str) -> optuna.trial.FixedTrial:
    """:return: A trial of the Reinforce sampler with the given baseline (and a ReLU network of 64 units)"""
    return optuna.trial.FixedTrial(
        {
            "learning_rate": 1e-3,
            "n_episodes": 4,
            "one_minus_gamma": 0.01,
            "reward_to_go": True,
            "baseline": baseline,
            "normalize_advantage": True,
            "ent_coef": 1e-3,
            "net_arch": "small",
            "activation_fn": "relu",
            "critic_learning_rate": 2e-3,
            "n_critic_updates": 5,
        }
    )


@pytest.mark.parametrize("baseline", ["none", "mean", "value", "optimal"])
def test_reinforce_sampler(baseline: str) -> None:
    trial = reinforce_trial(baseline)
    entry = ZOO_ALGORITHMS["reinforce"]
    kwargs = entry.sampler(trial, 2, 1, {})
    assert kwargs["gamma"] == pytest.approx(0.99)
    assert ("n_critic_updates" in kwargs) == (baseline == "value")
    # Explicit, so that a YAML entry's normalize_advantage=True cannot reach the optimal baseline, which refuses it.
    assert kwargs["normalize_advantage"] == (baseline != "optimal")
    # rl-zoo3 rebuilds the kwargs of a stored trial from its raw parameters (--trial-id)
    assert entry.converter(trial.params) == kwargs
    model = Reinforce("MlpPolicy", "CartPole-v1", **kwargs)
    assert model.baseline == baseline
    assert model.policy.mlp_extractor.policy_net[0].out_features == 64


@pytest.mark.parametrize("algo", list(ZOO_ALGORITHMS))
def test_sampler_with_optuna(algo: str) -> None:
    entry = ZOO_ALGORITHMS[algo]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        kwargs = entry.sampler(trial, 1, 1, {})
        assert entry.converter(trial.params) == kwargs
        entry.algo_class("MlpPolicy", "CartPole-v1", **kwargs)
        study.tell(trial, 0.0)


@pytest.mark.parametrize("critic_target", ["mc", "td", "nstep"])
def test_nstep_ac_sampler_on_the_packaged_entry(critic_target: str) -> None:
    # rl-zoo3 updates the YAML entry with the sampled arguments: each target must build on top of it.
    trial = optuna.trial.FixedTrial(
        {
            "learning_rate": 1e-3,
            "critic_learning_rate": 1e-3,
            "critic_target": critic_target,
            "one_minus_gamma": 0.01,
            "n_target_updates": 1,
            "n_grad_steps_per_target_update": 2,
            "discount_option": 1,
            "normalize_advantage": False,
            "ent_coef": 1e-3,
            "max_grad_norm": 0.5,
            "net_arch": "small",
            "activation_fn": "tanh",
            "n_episodes": 4,
            "n_steps": 8,
            "target_n": 3,
        }
    )
    with hyperparams_path("nstep_ac") as path:
        entry = yaml.safe_load(path.read_text())["CartPole-v1"]
    _, _, _, kwargs = preprocess_hyperparams(entry, "CartPole-v1")
    kwargs.update(ZOO_ALGORITHMS["nstep_ac"].sampler(trial, 2, 1, {}))
    model = NStepAC("MlpPolicy", "CartPole-v1", **kwargs)
    assert model.critic_target == critic_target
    assert model.n_steps == (0 if critic_target == "mc" else 8)


def test_rewrite_command() -> None:
    video_args = ["--algo", "reinforce", "--env", "CartPole-v1"]
    assert rewrite_command(["python", "-m", "rl_zoo3.record_video", *video_args]) == [
        sys.executable,
        "-m",
        "sb3_pgnotes",
        "record_video",
        *video_args,
    ]
    assert rewrite_command(["python", "enjoy.py", "-n", "10"]) == [sys.executable, "-m", "sb3_pgnotes", "enjoy", "-n", "10"]
    assert rewrite_command(["ffmpeg", "-i", "in.mp4"]) == ["ffmpeg", "-i", "in.mp4"]


def test_every_package_is_listed() -> None:
    """``pyproject.toml`` lists the packages by hand (for the hyperparameter folder): none may be missing."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(REPO_ROOT).parts) for init in (REPO_ROOT / "sb3_pgnotes").rglob("__init__.py")}
    expected, listed = on_disk | set(setuptools["package-dir"]), set(setuptools["packages"])
    assert expected == listed, (
        f"[tool.setuptools] packages: add {sorted(expected - listed)}, remove {sorted(listed - expected)}"
    )


@pytest.mark.parametrize("n_episodes", [0, 60])
def test_plot_learning_curve(n_episodes: int, tmp_path: Path) -> None:
    env = Monitor(gym.make("CartPole-v1"), filename=str(tmp_path / "0"))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(n_episodes):
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        env.reset()
    env.close()
    png = tmp_path / "curve.png"
    assert plot_learning_curve(str(tmp_path), str(png), title="random policy") == (n_episodes > 0)
    assert png.exists() == (n_episodes > 0)


def test_params_value_may_use_the_names_rl_zoo3_defines(tmp_path: Path) -> None:
    # rl-zoo3 evaluates -params values where nn and th are imported; the check before it must accept them too.
    policy_kwargs = "policy_kwargs:dict(activation_fn=nn.ReLU, net_arch=[16], optimizer_class=th.optim.RMSprop)"
    main(["train", "--algo", "reinforce", "--env", "CartPole-v1", "-n", "200", "-f", str(tmp_path), "-params", policy_kwargs])
    model = Reinforce.load(tmp_path / "reinforce" / "CartPole-v1_1" / "CartPole-v1.zip")
    assert model.policy.mlp_extractor.policy_net[0].out_features == 16
    assert isinstance(model.policy.mlp_extractor.policy_net[1], torch.nn.ReLU)
    assert isinstance(model.policy.optimizer, torch.optim.RMSprop)


@pytest.mark.parametrize("baseline", ["none", "mean", "value", "optimal"])
def test_reinforce_sampler_on_the_packaged_entries_that_bootstrap(baseline: str) -> None:
    # The Pendulum-v1 entry bootstraps truncated episodes from the learned value; other baselines have none.
    trial = reinforce_trial(baseline)
    with hyperparams_path("reinforce") as path:
        entry = yaml.safe_load(path.read_text())["Pendulum-v1"]
    assert entry["bootstrap_truncated"] is True
    _, _, _, kwargs = preprocess_hyperparams(entry, "Pendulum-v1")
    kwargs.update(ZOO_ALGORITHMS["reinforce"].sampler(trial, 1, 1, {}))
    model = Reinforce("MlpPolicy", "Pendulum-v1", **kwargs)
    assert model.bootstrap_truncated == (baseline == "value")
