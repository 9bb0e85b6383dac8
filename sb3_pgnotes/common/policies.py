"""Helpers for SB3 actor-critic policies: split optimisers, action tensors, one-pass distribution and values."""

from typing import cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import obs_as_tensor
from torch.nn import functional as F

from sb3_pgnotes.common.validation import check_finite


def zero_observation(space: spaces.Space) -> np.ndarray | dict[str, np.ndarray]:
    """
    :param space: An observation space the policies take (Box, Discrete, MultiDiscrete, MultiBinary or a Dict of them)
    :return: One observation of it, all zeros (each Discrete's first value)
    """
    if isinstance(space, spaces.Dict):
        return {key: cast(np.ndarray, zero_observation(subspace)) for key, subspace in space.spaces.items()}
    dtype = np.int64 if isinstance(space, spaces.Discrete) else space.dtype
    return np.zeros(cast(tuple[int, ...], space.shape), dtype=cast(np.dtype, dtype))


def _fed_parameters(output: th.Tensor, parameters: list[th.nn.Parameter]) -> set[int]:
    """
    :param output: A tensor computed from some of ``parameters``
    :param parameters: Parameters, all requiring gradients
    :return: The ids of those that ``output`` depends on
    """
    if not parameters or not output.requires_grad:
        return set()
    gradients = th.autograd.grad(output.sum(), parameters, allow_unused=True)
    return {id(parameter) for parameter, gradient in zip(parameters, gradients, strict=True) if gradient is not None}


def split_actor_critic_parameters(policy: ActorCriticPolicy) -> tuple[list[th.nn.Parameter], list[th.nn.Parameter]]:
    """
    Split a policy's parameters into actor and critic parts by what they feed, whatever a custom policy names its
    modules: the critic's are those that the value depends on and the action distribution does not. Frozen
    parameters are placed the same way (an optimiser skips them until they are unfrozen).

    A features extractor shared by both (``share_features_extractor=True``, e.g. a CNN) goes to the actor:
    the critic's gradient does not train it, so the value regression cannot disturb the policy's features.

    :param policy: The policy
    :return: (actor parameters, critic parameters), each in the order of ``policy.parameters()``
    """
    parameters = list(policy.parameters())
    frozen = [parameter for parameter in parameters if not parameter.requires_grad]
    was_training = policy.training
    # Evaluation mode: a forward pass that neither updates batch statistics nor draws dropout masks.
    policy.set_training_mode(False)
    try:
        with th.inference_mode(False), th.enable_grad():
            # Every parameter joins the graph for the trace, frozen ones too.
            for parameter in frozen:
                parameter.requires_grad_(True)
            observation, _ = policy.obs_to_tensor(zero_observation(policy.observation_space))
            feeds_value = _fed_parameters(policy.predict_values(observation), parameters)
            distribution = policy.get_distribution(observation)
            actions = distribution.get_actions(deterministic=True).detach()
            feeds_actions = _fed_parameters(distribution.log_prob(actions), parameters)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
        policy.set_training_mode(was_training)
    critic_ids = feeds_value - feeds_actions
    actor = [parameter for parameter in parameters if id(parameter) not in critic_ids]
    critic = [parameter for parameter in parameters if id(parameter) in critic_ids]
    return actor, critic


def trainable_actor_parameters(policy: ActorCriticPolicy) -> list[th.nn.Parameter]:
    """:return: The actor's parameters (:func:`split_actor_critic_parameters`) that are not frozen: those of its score"""
    return [parameter for parameter in split_actor_critic_parameters(policy)[0] if parameter.requires_grad]


def slice_observations(observations: PyTorchObs, start: int, stop: int) -> PyTorchObs:
    """
    :param observations: Per-step observations (a tensor or, for Dict spaces, a dict of tensors)
    :param start: First step
    :param stop: One past the last step
    :return: The steps ``start:stop``
    """
    if isinstance(observations, dict):
        return {key: value[start:stop] for key, value in observations.items()}
    return observations[start:stop]


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


def entropy_loss(entropy: th.Tensor | None, log_prob: th.Tensor) -> th.Tensor:
    """
    The entropy term of the loss, as SB3's A2C and PPO compute it.

    :param entropy: Per-step entropy of the policy (``None`` where the distribution has no closed form)
    :param log_prob: Per-step log-probabilities of the actions taken
    :return: ``-mean(entropy)``, or ``mean(log_prob)`` (a sample estimate of it) without a closed form
    """
    return th.mean(log_prob) if entropy is None else -th.mean(entropy)


def actor_latents(
    policy: ActorCriticPolicy, observations: np.ndarray | dict[str, np.ndarray], chunk_size: int, device: th.device
) -> th.Tensor:
    """
    The actor's latent features (the input of its action head, as ``get_distribution`` computes them) of many states,
    ``chunk_size`` at a time so that a large buffer of images does not need all its activations at once.

    :param policy: The policy
    :param observations: Observations, one per row (or a dict of such arrays)
    :param chunk_size: Rows per forward pass
    :param device: The policy's device
    :return: Latents, one row per observation
    """
    n_rows = len(next(iter(observations.values())) if isinstance(observations, dict) else observations)
    latents = []
    for start in range(0, n_rows, chunk_size):
        rows = slice(start, start + chunk_size)
        chunk = (
            {key: value[rows] for key, value in observations.items()} if isinstance(observations, dict) else observations[rows]
        )
        features = BasePolicy.extract_features(policy, obs_as_tensor(chunk, device), policy.pi_features_extractor)
        latents.append(policy.mlp_extractor.forward_actor(features))
    return th.cat(latents)


def distribution_and_values(policy: ActorCriticPolicy, obs: PyTorchObs) -> tuple[Distribution, th.Tensor]:
    """
    One forward pass of an actor-critic policy giving the action distribution and the state values.

    ``ActorCriticPolicy.evaluate_actions`` does the same pass but returns only log-probabilities and entropy;
    an algorithm that also needs the distribution itself (e.g. for an analytic KL) would otherwise run the
    network twice. The returned object is ``policy.action_dist``, which the next call overwrites in place.

    :param policy: The policy
    :param obs: Observations, already a tensor (or dict of tensors)
    :return: (action distribution, values of shape (B, 1))
    """
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        pi_features, vf_features = features
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
    return policy._get_action_dist_from_latent(latent_pi), policy.value_net(latent_vf)


def build_optimizer(policy: BasePolicy, params: list[th.nn.Parameter], learning_rate: float) -> th.optim.Optimizer:
    """
    An optimiser of the policy's ``optimizer_class`` and ``optimizer_kwargs`` over ``params``.

    Adam and AdamW use torch's fused implementation unless ``optimizer_kwargs`` chooses one: small networks take
    many small steps, where the per-tensor loop of the default implementation costs more than the arithmetic. The
    update is the same up to floating-point rounding.

    :param policy: The policy whose optimiser settings apply
    :param params: The parameters to optimise
    :param learning_rate: Initial learning rate
    :return: The optimiser
    """
    optimizer_class = policy.optimizer_class
    kwargs = policy.optimizer_kwargs
    if optimizer_class in (th.optim.Adam, th.optim.AdamW) and not {"fused", "foreach"} & kwargs.keys():
        try:
            return optimizer_class(params, lr=learning_rate, fused=True, **kwargs)  # type: ignore[call-arg]
        except RuntimeError:
            pass  # no fused kernel for this device in this torch build (CPU before torch 2.4)
    return optimizer_class(params, lr=learning_rate, **kwargs)  # type: ignore[call-arg]


def build_actor_critic_optimizers(
    policy: ActorCriticPolicy, actor_learning_rate: float, critic_learning_rate: float
) -> tuple[th.optim.Optimizer, th.optim.Optimizer]:
    """
    One optimiser for the actor's parameters and one for the critic's (see :func:`split_actor_critic_parameters`),
    each built by :func:`build_optimizer`.

    :param policy: The policy
    :param actor_learning_rate: Initial learning rate of the actor
    :param critic_learning_rate: Initial learning rate of the critic
    :return: (actor optimiser, critic optimiser)
    """
    actor_params, critic_params = split_actor_critic_parameters(policy)
    return (
        build_optimizer(policy, actor_params, actor_learning_rate),
        build_optimizer(policy, critic_params, critic_learning_rate),
    )


def clip_gradient(optimizer: th.optim.Optimizer, max_grad_norm: float | None) -> float:
    """
    Clip the gradient of an optimiser's parameters to ``max_grad_norm``, as ``th.nn.utils.clip_grad_norm_`` does.

    :param optimizer: Optimiser whose parameters' gradients are clipped
    :param max_grad_norm: Maximum norm (``None``: no clipping)
    :return: The gradient norm before clipping
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not params:
        return 0.0
    grads = [cast(th.Tensor, p.grad) for p in params]
    if len({(grad.device, grad.dtype) for grad in grads}) > 1:
        max_norm = float("inf") if max_grad_norm is None else max_grad_norm
        return float(th.nn.utils.clip_grad_norm_(params, max_norm))
    with th.no_grad():
        # clip_grad_norm_'s arithmetic in torch's list kernels: the same floats, where on the CPU it loops over the
        # tensors in Python at a cost above a small network's forward pass.
        total_norm = th.linalg.vector_norm(th.stack(th._foreach_norm(grads, 2.0)), 2.0)
        if max_grad_norm is not None:
            th._foreach_mul_(grads, th.clamp(max_grad_norm / (total_norm + 1e-6), max=1.0))
    return float(total_norm)


def fit_values(
    policy: ActorCriticPolicy,
    optimizer: th.optim.Optimizer,
    observations: PyTorchObs,
    targets: np.ndarray,
    n_steps: int,
    max_grad_norm: float | None,
) -> float:
    """
    Regress the policy's V(s) on fixed targets with ``n_steps`` full-batch gradient steps of mean squared error.

    :param policy: The policy, whose value head is trained
    :param optimizer: The critic's optimiser
    :param observations: Per-step observations
    :param targets: Per-step value targets
    :param n_steps: Number of gradient steps
    :param max_grad_norm: Maximum norm of each step's gradient (``None``: no clipping)
    :return: The last value loss
    :raises ValueError: If the loss is NaN or infinite
    """
    # The optimiser's first parameter gives the device without policy.device's walk over every parameter.
    targets_tensor = th.as_tensor(targets, dtype=th.float32, device=optimizer.param_groups[0]["params"][0].device)
    value_loss = th.zeros(())
    for _ in range(n_steps):
        value_loss = F.mse_loss(policy.predict_values(observations).flatten(), targets_tensor)
        check_finite("value loss", value_loss)
        optimizer.zero_grad()
        value_loss.backward()
        if max_grad_norm is not None:
            clip_gradient(optimizer, max_grad_norm)
        optimizer.step()
    return value_loss.item()
