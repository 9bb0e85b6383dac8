"""PPOKL: the KL term, the adaptive beta rule, the first step's gradient, save/load of beta, errors and logging."""

import copy
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from torch.nn import functional as F

from sb3_pgnotes import PPOKL
from sb3_pgnotes.common.buffers import IndexedRolloutBuffer
from sb3_pgnotes.common.kl import adapt_kl_beta, analytic_kl, sample_kl
from sb3_pgnotes.zoo import ZOO_ALGORITHMS


def categorical_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """:return: sum_k p_k log(p_k / q_k) per row"""
    return np.sum(p * np.log(p / q), axis=-1)


def gaussian_kl(mean1: np.ndarray, std1: np.ndarray, mean2: np.ndarray, std2: np.ndarray) -> np.ndarray:
    """:return: KL(N(mean1, diag std1^2) || N(mean2, diag std2^2)) per row, summed over the dimensions"""
    per_dim = np.log(std2 / std1) + (std1**2 + (mean1 - mean2) ** 2) / (2 * std2**2) - 0.5
    return per_dim.sum(axis=-1)


def test_analytic_kl_categorical() -> None:
    p = np.array([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    q = np.array([[0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    old = CategoricalDistribution(3).proba_distribution(th.log(th.as_tensor(p)))
    new = CategoricalDistribution(3).proba_distribution(th.log(th.as_tensor(q)))
    kl = analytic_kl(old, new)
    assert kl.shape == (2,)
    np.testing.assert_allclose(kl.numpy(), categorical_kl(p, q), rtol=1e-10)
    # 0.2 log(0.5) + 0.3 log(0.75) + 0.5 log(2.5), worked by hand
    assert kl[0].item() == pytest.approx(0.2 * np.log(0.5) + 0.3 * np.log(0.75) + 0.5 * np.log(2.5))


def test_analytic_kl_diagonal_gaussian_sums_dimensions() -> None:
    mean1, mean2 = np.array([[0.0, 1.0], [2.0, -1.0]]), np.array([[0.5, 1.0], [0.0, 0.0]])
    log_std1, log_std2 = np.array([0.0, -1.0]), np.array([0.3, 0.0])
    old = DiagGaussianDistribution(2).proba_distribution(th.as_tensor(mean1), th.as_tensor(log_std1))
    new = DiagGaussianDistribution(2).proba_distribution(th.as_tensor(mean2), th.as_tensor(log_std2))
    kl = analytic_kl(old, new)
    assert kl.shape == (2,)
    expected = gaussian_kl(mean1, np.exp(log_std1), mean2, np.exp(log_std2))
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-10)
    # Row 0 by hand: dim 0: 0.3 + (1 + 0.25) / (2 e^0.6) - 0.5; dim 1: 1 + e^-2 / 2 - 0.5
    by_hand = 0.3 + 1.25 / (2 * np.exp(0.6)) - 0.5 + 1 + np.exp(-2) / 2 - 0.5
    assert kl[0].item() == pytest.approx(by_hand)


def test_analytic_kl_bernoulli_sums_dimensions() -> None:
    p, q = np.array([[0.1, 0.7]]), np.array([[0.5, 0.4]])
    old = BernoulliDistribution(2).proba_distribution(th.logit(th.as_tensor(p)))
    new = BernoulliDistribution(2).proba_distribution(th.logit(th.as_tensor(q)))
    expected = np.sum(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))
    assert analytic_kl(old, new).item() == pytest.approx(expected)


def test_sample_kl_k3() -> None:
    # r = 1/2: (r - 1) - log r = -0.5 + log 2; r = 1: 0
    np.testing.assert_allclose(sample_kl(th.log(th.tensor([0.5, 1.0, 2.0]))).numpy(), [np.log(2) - 0.5, 0.0, 1 - np.log(2)])
    # Unbiased: the mean over actions sampled from the old policy approaches the closed form.
    gen = th.Generator().manual_seed(0)
    old = th.distributions.Normal(th.tensor([0.0, 1.0]), th.tensor([1.0, 0.5]))
    new = th.distributions.Normal(th.tensor([0.3, 0.8]), th.tensor([1.2, 0.6]))
    actions = old.mean + old.stddev * th.randn((200_000, 2), generator=gen)
    log_ratio = new.log_prob(actions).sum(-1) - old.log_prob(actions).sum(-1)
    closed_form = th.distributions.kl_divergence(old, new).sum().item()
    assert sample_kl(log_ratio).mean().item() == pytest.approx(closed_form, rel=0.02)


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (0.001, 0.5),  # below 0.01 / 1.5: halve
        (0.0066, 0.5),
        (0.01 / 1.5, 1.0),  # on the thresholds: unchanged (strict inequalities)
        (0.01, 1.0),
        (0.015, 1.0),
        (0.0151, 2.0),  # above 1.5 * 0.01: double
        (1.0, 2.0),
    ],
)
def test_adaptive_rule(kl: float, expected: float) -> None:
    assert adapt_kl_beta(1.0, kl, 0.01) == expected


def test_adaptive_rule_arguments_and_bounds() -> None:
    assert adapt_kl_beta(1.0, 0.029, 0.01, kl_tolerance=3.0, beta_factor=10.0) == 1.0
    assert adapt_kl_beta(1.0, 0.031, 0.01, kl_tolerance=3.0, beta_factor=10.0) == 10.0
    assert adapt_kl_beta(1.0, 0.003, 0.01, kl_tolerance=3.0, beta_factor=10.0) == 0.1
    assert adapt_kl_beta(8.0, 1.0, 0.01, beta_max=10.0) == 10.0
    assert adapt_kl_beta(10.0, 1.0, 0.01, beta_max=10.0) == 10.0
    assert adapt_kl_beta(0.3, 0.0, 0.01, beta_min=0.2) == 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kl": float("nan")}, "kl is NaN"),
        ({"beta_factor": 0.5}, r"beta_factor must be a number in \(1, inf\]"),
        ({"kl_tolerance": 0.0}, "kl_tolerance must be a number in"),
        ({"beta_min": 2.0, "beta_max": 1.0}, "beta_max must be a number in"),
        ({"kl_target": 0.0}, "kl_target must be a number in"),
    ],
)
def test_adaptive_rule_refuses_settings_that_break_it(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        adapt_kl_beta(**{"beta": 1.0, "kl": 0.01, "kl_target": 0.01, **kwargs})


def collect(model: PPOKL) -> None:
    """Fill the model's rollout buffer with one rollout of the current policy."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)  # type: ignore[arg-type]


def buffer_tensors(model: PPOKL) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """:return: observations, actions (as ``log_prob`` takes them), advantages and returns of the rollout, flat"""
    buffer = model.rollout_buffer
    observations = th.as_tensor(buffer.observations).reshape(-1, *model.observation_space.shape)  # type: ignore[misc]
    actions = th.as_tensor(buffer.actions).reshape(len(observations), -1)
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    return observations, actions, th.as_tensor(buffer.advantages).flatten(), th.as_tensor(buffer.returns).flatten()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_rules_move_beta_after_all_epochs(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = PPOKL("MlpPolicy", env_id, n_steps=32, batch_size=16, n_epochs=3, beta=1.0, kl_target=0.01, beta_max=4.0, seed=0)
    collect(model)
    kls = iter([0.5, 0.5, 0.5, 0.01, 0.001])
    monkeypatch.setattr(model, "mean_kl", lambda: next(kls))
    betas = []
    for _ in range(5):
        model.train()
        betas.append(model.beta)
    # Once per train() (3 epochs each); doubled twice then held at beta_max, unchanged in the band, halved below it.
    assert betas == [2.0, 4.0, 4.0, 4.0, 2.0]

    fixed = PPOKL("MlpPolicy", env_id, n_steps=32, batch_size=16, beta=0.3, beta_mode="fixed", seed=0)
    collect(fixed)
    fixed.train()
    assert fixed.beta == 0.3


@pytest.mark.parametrize(("target_kl", "expected_steps"), [(None, 12), (1.0, 12), (1e-9, 1)])
def test_target_kl_stops_the_epochs(target_kl: float | None, expected_steps: int) -> None:
    model = PPOKL(
        "MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=16, n_epochs=3, learning_rate=3e-3, target_kl=target_kl, seed=0
    )
    collect(model)
    model.train()
    # 3 epochs of 4 minibatches, unless a minibatch's KL passes 1.5 * target_kl: the first minibatch is taken at the
    # rollout policy (KL 0), so a tiny target stops training right after the first step.
    for state in model.policy.optimizer.state.values():
        assert int(state["step"]) == expected_steps


def test_beta_adapts_after_an_early_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    model = PPOKL("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=16, n_epochs=3, target_kl=1e-9, seed=0)
    collect(model)
    monkeypatch.setattr(model, "mean_kl", lambda: 0.5)
    model.train()
    assert model.beta == 2.0


def test_mean_kl_is_measured_against_the_rollout_policy() -> None:
    model = PPOKL("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=16, n_epochs=4, learning_rate=3e-3, seed=0)
    collect(model)
    observations, actions, _, _ = buffer_tensors(model)
    old_log_prob = th.as_tensor(model.rollout_buffer.log_probs).flatten()
    with th.no_grad():
        old = model.policy.get_distribution(observations)
        old_mean, old_std = old.distribution.mean.clone(), old.distribution.stddev.clone()
    model.train()
    with th.no_grad():
        new = model.policy.get_distribution(observations)
        expected = gaussian_kl(
            old_mean.numpy(), old_std.numpy(), new.distribution.mean.numpy(), new.distribution.stddev.numpy()
        )
        # The frozen copy still holds the rollout policy after train(): the KL is not between the new policy and itself.
        kl = model.kl(observations, new, new.log_prob(actions) - old_log_prob)
    assert expected.mean() > 1e-4
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-4, atol=1e-7)
    assert model.mean_kl() == pytest.approx(expected.mean(), rel=1e-4)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_sampled_mean_kl_over_the_whole_rollout(env_id: str) -> None:
    # Two envs, so that the buffer's (step, env) layout matters: states, actions and stored log-probabilities must
    # stay aligned whether or not get() has flattened the buffer yet.
    env = make_vec_env(env_id, n_envs=2, seed=0)
    model = PPOKL("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=4, learning_rate=3e-3, kl_estimator="sample", seed=0)
    collect(model)
    assert model.mean_kl() == pytest.approx(0.0, abs=1e-6)
    model.train()
    buffer = model.rollout_buffer
    actions = th.as_tensor(buffer.actions)
    with th.no_grad():
        distribution = model.policy.get_distribution(th.as_tensor(buffer.observations))
        if isinstance(model.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        log_ratio = distribution.log_prob(actions) - th.as_tensor(buffer.log_probs).flatten()
    expected = (th.expm1(log_ratio) - log_ratio).mean().item()
    assert expected > 1e-5
    assert model.mean_kl() == pytest.approx(expected, rel=1e-5)


class RolloutEndKL(BaseCallback):
    """Records ``mean_kl()`` when each rollout ends, before the update."""

    def __init__(self) -> None:
        super().__init__()
        self.kls: list[float] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.kls.append(self.model.mean_kl())


@pytest.mark.parametrize("kl_estimator", ["analytic", "sample"])
def test_mean_kl_is_zero_when_a_rollout_ends(kl_estimator: str) -> None:
    # The rollout was drawn by the current policy: a callback sees no divergence, in the first rollout and after updates.
    model = PPOKL("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, learning_rate=3e-3, kl_estimator=kl_estimator, seed=0)
    callback = RolloutEndKL()
    model.learn(256, callback=callback)
    assert len(callback.kls) == 4
    np.testing.assert_allclose(callback.kls, 0.0, atol=1e-7)
    assert model.mean_kl() > 1e-5


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize(("beta", "kl_estimator"), [(0.0, "analytic"), (3.0, "analytic"), (3.0, "sample")])
def test_first_step_is_the_on_policy_gradient(env_id: str, beta: float, kl_estimator: str) -> None:
    """
    One epoch, one full-batch minibatch: at ratio 1 the surrogate's gradient is the on-policy policy gradient
    ``-mean(A grad log pi)`` (with beta = 0 by construction; with beta > 0 because the KL's gradient vanishes at
    pi = pi_old). The value term adds its own regression gradient.
    """
    model = PPOKL(
        "MlpPolicy",
        make_vec_env(env_id, n_envs=2, seed=0),
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        beta=beta,
        beta_mode="fixed",
        kl_estimator=kl_estimator,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=1e9,
        seed=0,
    )
    collect(model)
    observations, actions, advantages, returns = buffer_tensors(model)
    reference = copy.deepcopy(model.policy)
    normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_prob = reference.get_distribution(observations).log_prob(actions)
    values = reference.predict_values(observations).flatten()
    expected_loss = -(normalised * log_prob).mean() + 0.5 * F.mse_loss(returns, values)
    expected = dict(
        zip(
            [n for n, _ in reference.named_parameters()],
            th.autograd.grad(expected_loss, list(reference.parameters())),
            strict=True,
        )
    )

    seen: dict[str, th.Tensor] = {}
    step = model.policy.optimizer.step

    def record_then_step() -> None:
        assert not seen, "more than one gradient step"
        seen.update({name: param.grad.clone() for name, param in model.policy.named_parameters()})  # type: ignore[union-attr]
        step()

    model.policy.optimizer.step = record_then_step  # type: ignore[method-assign]
    model.train()
    assert seen.keys() == expected.keys()
    for name, grad in expected.items():
        th.testing.assert_close(seen[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # The policy part is not zero: the test compares a real policy gradient.
    assert expected["action_net.weight"].abs().max() > 1e-4


def test_save_load_keeps_beta_and_optimizer(tmp_path: Path) -> None:
    model = PPOKL("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, beta=1.0, kl_target=0.001, seed=0)
    model.learn(256)
    assert model.beta != 1.0
    model.save(tmp_path / "ppo_kl")
    loaded = PPOKL.load(tmp_path / "ppo_kl")
    assert loaded.beta == model.beta
    assert (loaded.beta_mode, loaded.kl_target, loaded.n_steps, loaded.batch_size) == ("adaptive", 0.001, 64, 32)
    saved, restored = model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()
    assert saved["param_groups"][0]["lr"] == restored["param_groups"][0]["lr"]
    assert saved["state"].keys() == restored["state"].keys() and saved["state"]
    for key, state in saved["state"].items():
        th.testing.assert_close(state["exp_avg"], restored["state"][key]["exp_avg"])
        th.testing.assert_close(state["exp_avg_sq"], restored["state"][key]["exp_avg_sq"])
    # The frozen rollout-policy copy is rebuilt on load, and training resumes.
    assert loaded.old_policy is not None
    loaded.set_env(make_vec_env("CartPole-v1", n_envs=1, seed=1))
    loaded.learn(128, reset_num_timesteps=False)


def test_sample_estimator_keeps_no_policy_copy() -> None:
    model = PPOKL("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=16, kl_estimator="sample", seed=0).learn(64)
    assert model.old_policy is None
    assert model.beta > 0


@pytest.mark.parametrize(("env_id", "beta"), [("Pendulum-v1", 1.0), ("CartPole-v1", 0.0)])
def test_logs_kl_beta_and_ppo_keys(env_id: str, beta: float, tmp_path: Path) -> None:
    model = PPOKL("MlpPolicy", env_id, n_steps=32, batch_size=16, beta=beta, beta_mode="fixed", seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(96)
    lines = (tmp_path / "progress.csv").read_text().splitlines()
    header = lines[0].split(",")
    keys = ["train/kl_beta", "train/kl", "train/policy_gradient_loss", "train/value_loss", "train/entropy_loss"]
    keys += ["train/approx_kl", "train/explained_variance", "train/n_updates", "train/learning_rate", "train/loss"]
    for key in keys + (["train/std", "train/kl_loss"] if beta > 0 else []):
        assert key in header
    last = dict(zip(header, lines[-1].split(","), strict=True))
    assert float(last["train/kl_beta"]) == beta
    assert float(last["train/kl"]) > 0


@pytest.mark.parametrize("beta_mode", ["fixed", "adaptive"])
def test_sampler(beta_mode: str) -> None:
    raw = {
        "learning_rate": 1e-3,
        "n_steps_pow": 6,
        "batch_size_pow": 5,
        "n_epochs": 5,
        "one_minus_gamma": 0.01,
        "one_minus_gae_lambda": 0.05,
        "ent_coef": 1e-3,
        "max_grad_norm": 0.5,
        "beta_mode": beta_mode,
        "beta": 3.0,
        "kl_target": 0.02,
        "net_arch": "small",
        "activation_fn": "tanh",
    }
    trial = optuna.trial.FixedTrial(raw)
    entry = ZOO_ALGORITHMS["ppo_kl"]
    kwargs = entry.sampler(trial, 1, 1, {})
    assert (kwargs["n_steps"], kwargs["batch_size"]) == (64, 32)
    assert kwargs["gamma"] == pytest.approx(0.99) and kwargs["gae_lambda"] == pytest.approx(0.95)
    assert ("kl_target" in kwargs) == (beta_mode == "adaptive")
    # rl-zoo3 rebuilds the kwargs of a stored trial from its raw parameters (--trial-id)
    assert entry.converter(trial.params) == kwargs
    model = PPOKL("MlpPolicy", "Pendulum-v1", **kwargs)
    assert (model.beta_mode, model.beta) == (beta_mode, 3.0)


def test_seeded_initial_policy_matches_sb3_ppo() -> None:
    """The frozen copy is built on a forked random stream: with one seed PPOKL and PPO start from the same policy."""
    ppo = PPO("MlpPolicy", "Pendulum-v1", seed=3).policy.state_dict()
    ppo_kl = PPOKL("MlpPolicy", "Pendulum-v1", seed=3).policy.state_dict()
    assert ppo.keys() == ppo_kl.keys()
    for name, param in ppo.items():
        th.testing.assert_close(ppo_kl[name], param)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("CartPole-v1", {}),
        ("Pendulum-v1", {"use_sde": True}),
        ("Pendulum-v1", {"policy_kwargs": {"share_features_extractor": False}}),
    ],
)
def test_rollout_latents_computed_once_give_the_same_training(env_id: str, kwargs: dict) -> None:
    # The default buffer keeps its minibatch indices, so the rollout policy's latents come from one pass per update;
    # SB3's plain buffer makes PPOKL run the frozen copy per minibatch. Both must train identically.
    params = []
    for buffer_class in (None, RolloutBuffer):
        model = PPOKL(
            "MlpPolicy", env_id, n_steps=64, batch_size=16, n_epochs=3, seed=0, rollout_buffer_class=buffer_class, **kwargs
        )
        model.learn(256)
        assert isinstance(model.rollout_buffer, IndexedRolloutBuffer) == (buffer_class is None)
        assert model.logger.name_to_value["train/kl"] > 0
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    np.testing.assert_array_equal(params[0].numpy(), params[1].numpy())


def test_a_truncated_minibatch_is_announced() -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    with pytest.warns(UserWarning, match=r"batch_size=64 does not divide the rollout of n_steps \* n_envs = 130 steps"):
        PPOKL("MlpPolicy", env, n_steps=65, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PPOKL("MlpPolicy", env, n_steps=64, batch_size=32)


class KLDuringCollection(BaseCallback):
    """Calls ``mean_kl()`` on the first step of each rollout, with the buffer partly filled."""

    def _on_step(self) -> bool:
        if self.locals["n_steps"] == 0:
            self.model.mean_kl()
        return True


def test_mean_kl_during_collection_leaves_training_unchanged() -> None:
    def trained(callback: BaseCallback | None) -> list[th.Tensor]:
        model = PPOKL("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, learning_rate=3e-3, seed=0)
        model.learn(256, callback=callback)
        return [parameter.detach() for parameter in model.policy.parameters()]

    for with_kl, without in zip(trained(KLDuringCollection()), trained(None), strict=True):
        th.testing.assert_close(with_kl, without, rtol=0, atol=0)
