"""Helpers for SB3 actor-critic policies whose actor and critic are trained by separate optimisers."""

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

# Parameter-name prefixes of the critic in SB3's ActorCriticPolicy; everything else belongs to the actor.
_CRITIC_PREFIXES = ("value_net.", "mlp_extractor.value_net.", "vf_features_extractor.")


def split_actor_critic_parameters(policy: ActorCriticPolicy) -> tuple[list[th.nn.Parameter], list[th.nn.Parameter]]:
    """
    Split a policy's parameters into actor and critic parts.

    A features extractor shared by both (``share_features_extractor=True``, e.g. a CNN) goes to the actor:
    the critic's gradient does not train it, so the value regression cannot disturb the policy's features.

    :param policy: The policy
    :return: (actor parameters, critic parameters)
    """
    actor: list[th.nn.Parameter] = []
    critic: list[th.nn.Parameter] = []
    for name, param in policy.named_parameters():
        (critic if name.startswith(_CRITIC_PREFIXES) else actor).append(param)
    return actor, critic


def actions_to_tensor(actions: np.ndarray, action_space: spaces.Space, device: th.device) -> th.Tensor:
    """
    Convert stored actions to the tensor shape SB3's distributions expect for ``log_prob``.

    Discrete actions must be a flat long tensor: a (B, 1) tensor makes ``Categorical.log_prob``
    broadcast silently to (B, B).

    :param actions: Actions as stored, one row per step
    :param action_space: The env's action space
    :param device: Torch device
    :return: The actions tensor
    """
    tensor = th.as_tensor(actions, device=device)
    if isinstance(action_space, spaces.Discrete):
        return tensor.long().flatten()
    if isinstance(action_space, spaces.MultiDiscrete):
        return tensor.long().reshape(len(actions), -1)
    return tensor.float().reshape(len(actions), -1)
