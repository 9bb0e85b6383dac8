"""The optimisers: the actor/critic split shared by Reinforce, OffPolicyPG and NStepAC, and PPOKL's single one."""

import pytest
import torch as th

from sb3_pgnotes import PPOKL, NStepAC
from sb3_pgnotes.common.policies import build_actor_critic_optimizers, split_actor_critic_parameters


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
