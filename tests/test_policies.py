"""The optimisers: the actor/critic split shared by Reinforce, OffPolicyPG and NStepAC, and PPOKL's single one."""

from typing import Any

import pytest
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_pgnotes import PPOKL, NStepAC, Reinforce
from sb3_pgnotes.common.policies import build_actor_critic_optimizers, clip_gradient, split_actor_critic_parameters


def _ids(params: list[th.nn.Parameter]) -> set[int]:
    return {id(param) for param in params}


def test_optimizers_cover_actor_and_critic_with_their_learning_rates() -> None:
    model = NStepAC("MlpPolicy", "CartPole-v1", learning_rate=1e-3, critic_learning_rate=5e-3)
    actor, critic = split_actor_critic_parameters(model.policy)
    assert _ids(actor) and _ids(critic) and not _ids(actor) & _ids(critic)
    assert _ids(model.policy.optimizer.param_groups[0]["params"]) == _ids(actor)
    assert _ids(model.critic_optimizer.param_groups[0]["params"]) == _ids(critic)
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.critic_optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)


class NamedTrunks(th.nn.Module):
    """A custom extractor in the form of SB3's "Custom Policy Network" guide, its trunks named freely."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.latent_dim_pi = self.latent_dim_vf = 16
        self.actor = th.nn.Sequential(th.nn.Linear(feature_dim, 16), th.nn.Tanh())
        self.critic = th.nn.Sequential(th.nn.Linear(feature_dim, 16), th.nn.Tanh())

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.actor(features)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.critic(features)


class NamedTrunksPolicy(ActorCriticPolicy):
    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = NamedTrunks(self.features_dim)  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("policy", "policy_kwargs", "env_id", "critic_names"),
    [
        ("MlpPolicy", {}, "CartPole-v1", ["mlp_extractor.value_net", "value_net"]),
        ("MlpPolicy", {"share_features_extractor": False}, "Pendulum-v1", ["mlp_extractor.value_net", "value_net"]),
        (NamedTrunksPolicy, {}, "CartPole-v1", ["mlp_extractor.critic", "value_net"]),
    ],
)
def test_the_critic_is_what_only_the_value_depends_on(
    policy: Any, policy_kwargs: dict[str, Any], env_id: str, critic_names: list[str]
) -> None:
    model = NStepAC(policy, env_id, policy_kwargs=policy_kwargs, seed=0)
    actor, critic = split_actor_critic_parameters(model.policy)
    named = dict(model.policy.named_parameters())
    expected = {name for name in named if name.startswith(tuple(f"{prefix}." for prefix in critic_names))}
    assert {name for name, parameter in named.items() if id(parameter) in _ids(critic)} == expected
    assert _ids(actor) == _ids(list(named.values())) - _ids(critic)
    # The critic's optimiser trains the custom trunk: its weights move after an update.
    before = {name: named[name].detach().clone() for name in expected}
    model.learn(64)
    assert all(not th.equal(before[name], named[name]) for name in expected)


def test_adam_is_fused_unless_the_user_chooses() -> None:
    model = NStepAC("MlpPolicy", "CartPole-v1", device="cpu")
    assert model.policy.optimizer.defaults["fused"] and model.critic_optimizer.defaults["fused"]

    chosen = NStepAC("MlpPolicy", "CartPole-v1", device="cpu", policy_kwargs={"optimizer_kwargs": {"foreach": False}})
    for optimizer in (chosen.policy.optimizer, chosen.critic_optimizer):
        assert not optimizer.defaults["fused"] and optimizer.defaults["foreach"] is False


def test_ppo_kl_adam_is_fused_unless_the_user_chooses() -> None:
    model = PPOKL("MlpPolicy", "CartPole-v1", device="cpu", learning_rate=2e-4)
    assert model.policy.optimizer.defaults["fused"]
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert _ids(model.policy.optimizer.param_groups[0]["params"]) == _ids(list(model.policy.parameters()))

    chosen = PPOKL("MlpPolicy", "CartPole-v1", device="cpu", policy_kwargs={"optimizer_kwargs": {"foreach": False}})
    assert not chosen.policy.optimizer.defaults["fused"] and chosen.policy.optimizer.defaults["foreach"] is False


def test_other_optimizers_get_their_own_kwargs() -> None:
    model = NStepAC(
        "MlpPolicy",
        "CartPole-v1",
        policy_kwargs={"optimizer_class": th.optim.RMSprop, "optimizer_kwargs": {"alpha": 0.9}},
    )
    actor_optimizer, critic_optimizer = build_actor_critic_optimizers(model.policy, 1e-3, 2e-3)
    for optimizer in (actor_optimizer, critic_optimizer):
        assert isinstance(optimizer, th.optim.RMSprop) and optimizer.defaults["alpha"] == 0.9


def _gradients(dtypes: list[th.dtype], scale: float) -> list[th.nn.Parameter]:
    generator = th.Generator().manual_seed(0)
    params = []
    for index, dtype in enumerate(dtypes):
        param = th.nn.Parameter(th.zeros(3 + index, 2, dtype=dtype))
        param.grad = scale * th.randn(3 + index, 2, generator=generator).to(dtype)
        params.append(param)
    return params


@pytest.mark.parametrize("dtypes", [[th.float32] * 4, [th.float32, th.float64, th.float32]])
@pytest.mark.parametrize("max_grad_norm", [None, 1e-3, 0.5, 1e9])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 100.0])
def test_clip_gradient_gives_torchs_clipped_gradients(
    dtypes: list[th.dtype], max_grad_norm: float | None, scale: float
) -> None:
    ours, theirs = _gradients(dtypes, scale), _gradients(dtypes, scale)
    # The last parameter has no gradient: neither counts it.
    ours[-1].grad, theirs[-1].grad = None, None
    norm = clip_gradient(th.optim.SGD(ours, lr=1.0), max_grad_norm)
    expected = th.nn.utils.clip_grad_norm_(theirs, float("inf") if max_grad_norm is None else max_grad_norm)
    assert norm == float(expected)
    for mine, reference in zip(ours, theirs, strict=True):
        assert (mine.grad is None and reference.grad is None) or th.equal(mine.grad, reference.grad)


def test_clip_gradient_without_gradients_is_zero() -> None:
    params = _gradients([th.float32], 1.0)
    params[0].grad = None
    assert clip_gradient(th.optim.SGD(params, lr=1.0), 0.5) == 0.0


def test_frozen_parameters_keep_their_side_and_stay_frozen() -> None:
    model = NStepAC("MlpPolicy", "CartPole-v1", seed=0)
    expected_critic = _ids(split_actor_critic_parameters(model.policy)[1])
    model.policy.value_net.requires_grad_(False)
    model.policy.mlp_extractor.policy_net[0].requires_grad_(False)
    with th.inference_mode():
        actor, critic = split_actor_critic_parameters(model.policy)
    assert _ids(actor) | _ids(critic) == _ids(list(model.policy.parameters()))
    assert _ids(critic) == expected_critic
    assert (
        not model.policy.value_net.weight.requires_grad and not model.policy.mlp_extractor.policy_net[0].weight.requires_grad
    )
    # The optimal baseline's score is over the trainable actor parameters only.
    reinforce = Reinforce("MlpPolicy", "CartPole-v1", baseline="optimal", n_episodes=2, seed=0)
    reinforce.policy.value_net.requires_grad_(False)
    reinforce.policy.mlp_extractor.policy_net[0].requires_grad_(False)
    frozen = reinforce.policy.mlp_extractor.policy_net[0].weight.detach().clone()
    reinforce.learn(200)
    assert th.equal(frozen, reinforce.policy.mlp_extractor.policy_net[0].weight)
