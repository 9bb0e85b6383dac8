"""Gradient-variance diagnostics: the variance ordering of docs/theory.md on the tabular MDP, the command and the callback."""

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from envs import SpaceEnv
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tabular import sample_episodes
from test_gradients import estimated_gradient, exact_direction, make_model, matches, policy_probs, reinforce

from sb3_pgnotes import Reinforce
from sb3_pgnotes.common.gradients import TimeOptimalBaseline
from sb3_pgnotes.diagnostics import GradientVarianceCallback, estimator_gradients, estimator_in_use, gradient_variance
from sb3_pgnotes.diagnostics.cli import main
from sb3_pgnotes.diagnostics.report import variance_markdown

ORDERED = ("full_return", "reward_to_go", "rtg_mean", "rtg_optimal_component", "rtg_optimal")


def tabular_estimates(reward_shift: float) -> tuple[dict[str, th.Tensor], th.Tensor]:
    """
    :param reward_shift: Constant added to every reward of the sampled episodes
    :return: 300 estimates of 50 episodes each per variant, stacked, and the exact gradient (unshifted MDP)
    """
    model = make_model(reinforce(1.0))
    probs = policy_probs(model)
    rng = np.random.default_rng(0)
    estimates: dict[str, list[th.Tensor]] = {variant: [] for variant in ORDERED}
    for _ in range(300):
        batch = sample_episodes(probs, 50, rng)
        batch.rewards = batch.rewards + np.float32(reward_shift)
        for variant, gradient in estimator_gradients(model.policy, batch, 1.0, ORDERED).items():
            estimates[variant].append(gradient.double())
    return {variant: th.stack(grads) for variant, grads in estimates.items()}, exact_direction(model, 1.0)


def test_every_variant_is_unbiased_on_tabular_mdp() -> None:
    estimates, exact = tabular_estimates(reward_shift=0.0)
    for variant, stacked in estimates.items():
        ok, message = matches(stacked.mean(0), exact)
        assert ok, f"{variant}: {message}"


def test_variance_ordering_on_tabular_mdp() -> None:
    # Positive rewards (shifted by +2 per step, as in CartPole) are where baselines matter most.
    estimates, _ = tabular_estimates(reward_shift=2.0)
    variance = {variant: float(stacked.var(0).sum()) for variant, stacked in estimates.items()}
    # The claimed ordering, with a margin: each step removes a sizeable share of the variance.
    assert variance["full_return"] > 1.5 * variance["reward_to_go"], variance
    assert variance["reward_to_go"] > 1.5 * variance["rtg_mean"], variance
    assert variance["rtg_mean"] >= variance["rtg_optimal"], variance
    assert variance["rtg_mean"] >= variance["rtg_optimal_component"], variance


def test_value_variants_need_the_critic_and_match_reinforce_update() -> None:
    # The rtg_value estimate equals the update of Reinforce(baseline="value") on the same batch.
    model = make_model(reinforce(1.0, reward_to_go=True, baseline="value"))
    batch = sample_episodes(policy_probs(model), 200, np.random.default_rng(1))
    estimate = estimator_gradients(model.policy, batch, 1.0, ("rtg_value",))["rtg_value"].double()
    th.testing.assert_close(estimate, estimated_gradient(model, batch), rtol=1e-4, atol=1e-5)


def test_optimal_variant_matches_reinforce_update() -> None:
    # rtg_optimal is Reinforce(baseline="optimal")'s estimator: same pool, same batch, same direction.
    model = make_model(reinforce(1.0, reward_to_go=True, baseline="optimal", optimal_baseline_horizon=3))
    pool = TimeOptimalBaseline(horizon=3)
    rng = np.random.default_rng(1)
    for _ in range(4):
        batch = sample_episodes(policy_probs(model), 20, rng)
        estimate = estimator_gradients(model.policy, batch, 1.0, ("rtg_optimal",), optimal_baseline_pool=pool)
        before = [p.detach().clone() for p in model.policy.parameters()]
        th.testing.assert_close(estimate["rtg_optimal"].double(), estimated_gradient(model, batch), rtol=1e-4, atol=1e-5)
        with th.no_grad():
            for param, value in zip(model.policy.parameters(), before, strict=True):
                param.copy_(value)


def test_unknown_variant_is_refused() -> None:
    model = make_model(reinforce(1.0))
    batch = sample_episodes(policy_probs(model), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Unknown variants"):
        estimator_gradients(model.policy, batch, 1.0, ("rtg_median",))


def test_gradient_variance_on_cartpole() -> None:
    model = Reinforce("MlpPolicy", "CartPole-v1", seed=0)
    stats = gradient_variance(model.policy, model.get_env(), 0.99, n_batches=3, n_episodes=2, reference_episodes=4, seed=0)  # type: ignore[arg-type]
    assert [entry.variant for entry in stats] == [
        "full_return",
        "reward_to_go",
        "rtg_mean",
        "rtg_optimal_component",
        "rtg_optimal",
        "rtg_value",
        "gae",
    ]
    for entry in stats:
        assert entry.total_variance > 0 and np.isfinite(entry.snr) and -1 <= entry.cosine_to_reference <= 1


def test_variance_command_writes_table_and_plot(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0).learn(64)
    model.save(tmp_path / "ppo")
    main(
        [
            "--model",
            str(tmp_path / "ppo.zip"),
            "--algo",
            "ppo",
            "--batches",
            "2",
            "--episodes",
            "2",
            "--reference-episodes",
            "2",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert (tmp_path / "out" / "variance.png").stat().st_size > 0
    table = (tmp_path / "out" / "variance.md").read_text()
    assert "| rtg_optimal |" in table and "| gae |" in table


def test_variance_command_never_overwrites_a_measurement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--batches", "2", "--episodes", "2", "--reference-episodes", "0", "--variants", "reward_to_go"]
    main(argv)
    main(argv)
    first, second = (tmp_path / "logs" / "variance" / f"CartPole-v1_{run}" / "variance.md" for run in (1, 2))
    assert first.exists() and second.exists()
    kept = first.read_text()
    with pytest.raises(SystemExit):
        main([*argv, "--output-dir", str(first.parent)])
    assert "already holds variance.png, variance.md: choose another folder" in capsys.readouterr().err
    assert first.read_text() == kept


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--episodes", "0"], "--episodes: must be >= 1; got 0"),
        (["--batches", "1"], "--batches: must be >= 2; got 1"),
        (["--seed", "-1"], "--seed: must be >= 0; got -1"),
        (["--gamma", "2"], r"--gamma: must be a number in \[0, 1\]; got 2"),
        (["--gae-lambda", "nan"], r"--gae-lambda: must be a number in \[0, 1\]"),
        (["--env", "NoSuch-v0"], "--env 'NoSuch-v0':"),
        (["--model", "missing.zip", "--algo", "ppo"], "--model 'missing.zip' cannot be loaded as ppo"),
        (["--model", "ppo.zip", "--algo", "ppo", "--env", "Acrobot-v1"], "--model was trained on observations"),
        (["--output-dir", "ppo.zip/out"], "--output-dir ppo.zip/out: "),
    ],
)
def test_variance_command_names_a_bad_argument(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0).save(tmp_path / "ppo")
    with pytest.raises(SystemExit) as exit_info:
        main(extra)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("make", "in_use"),
    [
        (lambda: Reinforce("MlpPolicy", "CartPole-v1", n_episodes=2, baseline="mean", seed=0), "rtg_mean"),
        (lambda: A2C("MlpPolicy", "CartPole-v1", seed=0), "gae"),
    ],
)
def test_callback_logs_variance_and_snr(make, in_use: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = make()
    assert estimator_in_use(model) == in_use
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = GradientVarianceCallback("CartPole-v1", check_freq=50, n_batches=2, n_episodes=2, variants=("reward_to_go",))
    model.learn(200, callback=callback, log_interval=1)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("train/grad_variance", "train/grad_snr", f"train/grad_variance/{in_use}", "train/grad_snr/reward_to_go"):
        assert key in header


def test_callback_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_batches"):
        GradientVarianceCallback("CartPole-v1", n_batches=1)
    with pytest.raises(ValueError, match="variants"):
        GradientVarianceCallback("CartPole-v1", variants=("rtg_median",))
    with pytest.raises(ValueError, match="check_freq"):
        GradientVarianceCallback("CartPole-v1", check_freq=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an actor-critic policy"):
        SAC("MlpPolicy", "Pendulum-v1", learning_starts=0).learn(1, callback=GradientVarianceCallback("Pendulum-v1"))


def test_callback_measures_with_the_training_normalisation() -> None:
    env = VecNormalize(make_vec_env("CartPole-v1", seed=0))
    model = Reinforce("MlpPolicy", env, n_episodes=2, seed=0)
    callback = GradientVarianceCallback("CartPole-v1", check_freq=50, n_batches=2, n_episodes=2)
    model.learn(200, callback=callback)
    callback.measure()
    assert isinstance(callback.env, VecNormalize) and not callback.env.training and not callback.env.norm_reward
    np.testing.assert_array_equal(callback.env.obs_rms.mean, env.obs_rms.mean)
    assert np.abs(env.obs_rms.mean).max() > 0


@pytest.mark.parametrize("algo", [PPO, Reinforce])
def test_callback_leaves_the_training_rollouts_gsde_noise_as_it_was(algo: Any) -> None:
    model = algo("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), use_sde=True, seed=0)
    model.set_logger(configure(None, []))
    model.policy.reset_noise(2)
    noise = model.policy.action_dist
    before = noise.exploration_matrices.clone(), noise.exploration_mat.clone()
    callback = GradientVarianceCallback("Pendulum-v1", check_freq=1, n_batches=2, n_episodes=1)
    callback.init_callback(model)
    callback.measure()
    assert th.equal(noise.exploration_matrices, before[0]) and th.equal(noise.exploration_mat, before[1])


def test_variance_command_normalises_as_the_run_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # rl-zoo3's run folder: the model, and the normalisation statistics in a folder named after the env.
    env = VecNormalize(make_vec_env("CartPole-v1", seed=0))
    PPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0).learn(64).save(tmp_path / "ppo")
    (tmp_path / "CartPole-v1").mkdir()
    env.save(str(tmp_path / "CartPole-v1" / "vecnormalize.pkl"))
    argv = ["--model", str(tmp_path / "ppo.zip"), "--algo", "ppo", "--batches", "2", "--episodes", "2"]
    main([*argv, "--reference-episodes", "0", "--variants", "gae", "--output-dir", str(tmp_path / "out")])
    assert f"Observations normalised with {tmp_path / 'CartPole-v1' / 'vecnormalize.pkl'}" in capsys.readouterr().out


class ZeroRewardEnv(SpaceEnv):
    """No reward at all: every estimator is the zero vector."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, _, terminated, truncated, info = super().step(action)
        return observation, 0.0, terminated, truncated, info


def test_without_any_reward_snr_and_cosine_are_undefined_rather_than_inf_or_zero() -> None:
    env = DummyVecEnv([lambda: ZeroRewardEnv(spaces.Box(-1, 1, (3,)), spaces.Discrete(2))])
    model = Reinforce("MlpPolicy", env, seed=0)
    variants = ("reward_to_go", "full_return")
    stats = gradient_variance(model.policy, env, 0.99, n_batches=2, n_episodes=2, reference_episodes=2, variants=variants)
    for entry in stats:
        assert entry.total_variance == 0.0
        assert math.isnan(entry.snr) and math.isnan(entry.cosine_to_reference)
    assert "| reward_to_go | 0 | - | n/a | n/a | 0 |" in variance_markdown(stats)


def test_image_observations_reach_the_policy_channels_first_from_an_env_instance(tmp_path: Path) -> None:
    def image_env() -> SpaceEnv:
        return SpaceEnv(spaces.Box(0, 255, (36, 36, 3), dtype=np.uint8), spaces.Discrete(2))

    model = Reinforce("CnnPolicy", image_env(), n_episodes=2, seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = GradientVarianceCallback(image_env(), check_freq=5, n_batches=2, n_episodes=1)
    model.learn(10, callback=callback, log_interval=1)
    assert "train/grad_variance" in (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
