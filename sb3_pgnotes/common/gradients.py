"""Per-episode policy-gradient terms and the variance-minimising ("optimal") baseline."""

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import obs_as_tensor

from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.policies import actions_to_tensor, slice_observations, trainable_actor_parameters


def flat_gradient(params: list[th.nn.Parameter], grads: tuple[th.Tensor | None, ...]) -> th.Tensor:
    """
    :param params: Parameters
    :param grads: Their gradients (None for a parameter the output does not depend on)
    :return: The gradients concatenated into one vector
    """
    return th.cat([(th.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)])


@dataclass
class ScoreSums:
    """
    Per-episode weighted score sums, and what the forward pass that produced them gives for free.

    :param sums: Per weighting k and episode i, ``sum_t c_{k,t} grad log pi(a_t|s_t)``; (n_weightings, n_episodes,
        n_params)
    :param log_prob: Per-step ``log pi(a_t|s_t)``, detached
    :param entropy: Per-step entropy of the policy, detached (None where SB3 has no closed form)
    """

    sums: th.Tensor
    log_prob: th.Tensor
    entropy: th.Tensor | None


def per_episode_score_sums(
    policy: ActorCriticPolicy,
    params: list[th.nn.Parameter],
    observations: PyTorchObs,
    actions: th.Tensor,
    episode_lengths: np.ndarray,
    step_weights: th.Tensor,
) -> ScoreSums:
    """
    Per weighting k and episode i, the weighted sum of score vectors ``sum_t c_{k,t} grad log pi(a_t|s_t)``
    over the episode's steps.

    Exact per-sample gradients cost about one backward pass when every parameter is the weight or bias of an
    ``nn.Linear`` or the ``log_std`` of a diagonal Gaussian (SB3's MLP policies): see
    :func:`linear_per_episode_score_sums`. Other policies (e.g. CNNs) take one backward pass per episode.

    :param policy: The policy
    :param params: The parameters to differentiate (flattened in this order)
    :param observations: Per-step observations
    :param actions: Per-step actions, as ``log_prob`` expects them
    :param episode_lengths: Number of steps of each episode
    :param step_weights: Per-step weights c, shape (n_weightings, n_steps)
    :return: The sums, with the per-step log-probabilities and entropies
    """
    fast = linear_per_episode_score_sums(policy, params, observations, actions, episode_lengths, step_weights)
    if fast is not None:
        return fast
    per_episode, log_probs, entropies = [], [], []
    start = 0
    for length in episode_lengths.tolist():
        stop = start + length
        distribution = policy.get_distribution(slice_observations(observations, start, stop))
        log_prob = distribution.log_prob(actions[start:stop])
        grads = th.autograd.grad(
            log_prob, params, grad_outputs=step_weights[:, start:stop], is_grads_batched=True, allow_unused=True
        )
        per_episode.append(
            th.cat(
                [
                    (step_weights.new_zeros(len(step_weights), p.numel()) if g is None else g.flatten(1))
                    for p, g in zip(params, grads, strict=True)
                ],
                1,
            )
        )
        log_probs.append(log_prob.detach())
        entropies.append(distribution.entropy())
        start = stop
    entropy = None if entropies[0] is None else th.cat(entropies).detach()  # type: ignore[arg-type]
    return ScoreSums(th.stack(per_episode, dim=1), th.cat(log_probs), entropy)


@dataclass
class _LinearPass:
    """One forward and one backward pass of ``sum_t log pi_t`` through a policy of ``nn.Linear`` layers."""

    linear_of: dict[int, tuple[th.nn.Module, str]]
    log_std: th.nn.Parameter | None
    calls: dict[th.nn.Module, list[tuple[th.Tensor, th.Tensor]]]
    output_grads: dict[int, th.Tensor]
    log_prob: th.Tensor
    entropy: th.Tensor | None
    scale: th.Tensor | None

    def augmented_inputs(self, module: th.nn.Module) -> list[tuple[th.Tensor, th.Tensor]]:
        """:return: Per call of the layer, its output gradient and its input with a column of ones (for the bias)"""
        return [
            (self.output_grads[id(output)].detach(), th.cat([x.detach(), x.new_ones(len(x), 1)], dim=1))
            for x, output in self.calls[module]
        ]

    def log_std_scores(self) -> th.Tensor:
        """:return: Per step, ``d log pi / d log_std`` (through ``scale = exp(log_std)``)"""
        assert self.scale is not None
        return (self.output_grads[id(self.scale)] * self.scale).detach()


def _linear_pass(
    policy: ActorCriticPolicy, params: list[th.nn.Parameter], observations: PyTorchObs, actions: th.Tensor
) -> _LinearPass | None:
    """
    :return: The pass, or None when some parameter is not an ``nn.Linear``'s weight or bias (or a Gaussian
        ``log_std``), or a layer's input is not a batch of vectors
    """
    linear_of: dict[int, tuple[th.nn.Module, str]] = {}
    for module in policy.modules():
        if isinstance(module, th.nn.Linear):
            linear_of[id(module.weight)] = (module, "weight")
            if module.bias is not None:
                linear_of[id(module.bias)] = (module, "bias")
    # gSDE's log_std scales the latent features, not a diagonal Gaussian's: its scores take the general path.
    log_std = None if getattr(policy, "use_sde", False) else getattr(policy, "log_std", None)
    if not all(id(p) in linear_of or p is log_std for p in params):
        return None

    captured: dict[th.nn.Module, list[tuple[th.Tensor, th.Tensor]]] = {}
    modules = {linear_of[id(p)][0] for p in params if id(p) in linear_of}

    def capture(module: th.nn.Module, inputs: tuple[th.Tensor, ...], output: th.Tensor) -> None:
        captured.setdefault(module, []).append((inputs[0], output))

    handles = [module.register_forward_hook(capture) for module in modules]
    try:
        distribution = policy.get_distribution(observations)
    finally:
        for handle in handles:
            handle.remove()
    calls = [call for module in modules for call in captured.get(module, [])]
    if any(layer_input.dim() != 2 for layer_input, _ in calls):
        return None
    log_prob = distribution.log_prob(actions)
    scale = None
    if log_std is not None and any(p is log_std for p in params):
        assert isinstance(distribution.distribution, th.distributions.Normal)
        scale = distribution.distribution.scale
    targets = [output for _, output in calls] + ([scale] if scale is not None else [])
    output_grads = dict(zip(map(id, targets), th.autograd.grad(log_prob.sum(), targets), strict=True))
    entropy = distribution.entropy()
    return _LinearPass(
        linear_of,
        log_std if scale is not None else None,
        {module: captured.get(module, []) for module in modules},
        output_grads,
        log_prob.detach(),
        None if entropy is None else entropy.detach(),
        scale,
    )


def linear_per_episode_score_sums(
    policy: ActorCriticPolicy,
    params: list[th.nn.Parameter],
    observations: PyTorchObs,
    actions: th.Tensor,
    episode_lengths: np.ndarray,
    step_weights: th.Tensor,
) -> ScoreSums | None:
    """
    :func:`per_episode_score_sums` from one forward and one backward pass, for policies made of ``nn.Linear``
    layers (plus a Gaussian ``log_std``).

    Steps are independent in the batch, so the gradient of ``sum_t log pi_t`` with respect to a layer's output
    row t is step t's own. The per-sample weight gradient is then ``G_t A_t^T`` (output gradient times
    input), and its weighted sum over an episode is one matrix product ``(c * G_i)^T A_i``.

    :return: As :func:`per_episode_score_sums`, or None when some parameter is of another kind
    """
    linear = _linear_pass(policy, params, observations, actions)
    if linear is None:
        return None
    bounds = list(itertools.pairwise(np.concatenate([[0], np.cumsum(episode_lengths)]).tolist()))

    def layer_sums(module: th.nn.Module) -> th.Tensor:
        # (K, N, out, in + 1): weight and bias gradients of one layer at once, the bias as a weight on a constant 1.
        per_call = []
        for grad_output, augmented in linear.augmented_inputs(module):
            weighted_input = step_weights[:, :, None] * augmented[None]  # (K, T, in + 1)
            # One product per episode serves all K weightings: (out, T_i) @ (K, T_i, in + 1) -> (K, out, in + 1).
            per_call.append(th.stack([grad_output[a:b].T @ weighted_input[:, a:b] for a, b in bounds], dim=1))
        return th.stack(per_call).sum(0)

    per_layer = {module: layer_sums(module) for module in linear.calls}
    columns = []
    for param in params:
        if param is linear.log_std:
            per_step = linear.log_std_scores()
            columns.append(th.stack([step_weights[:, a:b] @ per_step[a:b] for a, b in bounds], dim=1))
            continue
        module, kind = linear.linear_of[id(param)]
        sums = per_layer[module]
        columns.append((sums[..., :-1] if kind == "weight" else sums[..., -1]).flatten(2))
    return ScoreSums(th.cat(columns, dim=2), linear.log_prob, linear.entropy)


def per_step_score_norms(
    policy: ActorCriticPolicy, params: list[th.nn.Parameter], observations: PyTorchObs, actions: th.Tensor
) -> th.Tensor:
    """
    Per step, the squared norm ``|grad log pi(a_t|s_t)|^2`` of the score over ``params``.

    For policies made of ``nn.Linear`` layers (plus a Gaussian ``log_std``), one forward and one backward pass: a
    layer's per-step weight gradient is the outer product ``G_t A_t^T``, whose squared norm is ``|G_t|^2 |A_t|^2``.
    Other policies (e.g. CNNs) take batched backward passes over chunks of :data:`SCORE_NORM_CHUNK` steps.

    :param policy: The policy
    :param params: The parameters of the score
    :param observations: Per-step observations
    :param actions: Per-step actions, as ``log_prob`` expects them
    :return: Shape (n_steps,)
    """
    linear = _linear_pass(policy, params, observations, actions)
    if linear is None or any(len(calls) != 1 for calls in linear.calls.values()):
        return _batched_score_norms(policy, params, observations, actions)
    norms = th.zeros_like(linear.log_prob)
    for param in params:
        if param is linear.log_std:
            norms += linear.log_std_scores().square().sum(-1)
            continue
        module, kind = linear.linear_of[id(param)]
        ((grad_output, augmented),) = linear.augmented_inputs(module)
        input_norms = augmented[:, :-1].square().sum(-1) if kind == "weight" else 1.0
        norms += grad_output.square().sum(-1) * input_norms
    return norms


def batch_score_norms(policy: ActorCriticPolicy, batch: EpisodeBatch) -> np.ndarray:
    """
    :param policy: The policy
    :param batch: Episodes
    :return: Per step of the batch, the squared norm of the actor's score (:func:`per_step_score_norms`), float64
    """
    observations = obs_as_tensor(batch.observations, policy.device)  # type: ignore[arg-type]
    actions = actions_to_tensor(batch.actions, policy.action_space, policy.device)
    actor_params = trainable_actor_parameters(policy)
    with th.enable_grad():
        norms = per_step_score_norms(policy, actor_params, observations, actions)
    return norms.cpu().numpy().astype(np.float64)


#: Steps per batched backward pass of :func:`per_step_score_norms` for policies that are not all ``nn.Linear``.
SCORE_NORM_CHUNK = 64


def _batched_score_norms(
    policy: ActorCriticPolicy, params: list[th.nn.Parameter], observations: PyTorchObs, actions: th.Tensor
) -> th.Tensor:
    """
    :func:`per_step_score_norms` for any policy: per-step gradients from one-hot batched backward passes, each chunk
    of steps through a forward pass of its own, so that the cost grows linearly with the batch.
    """
    norms = []
    for start in range(0, len(actions), SCORE_NORM_CHUNK):
        stop = min(start + SCORE_NORM_CHUNK, len(actions))
        log_prob = policy.get_distribution(slice_observations(observations, start, stop)).log_prob(actions[start:stop])
        one_hot = th.eye(stop - start, dtype=log_prob.dtype, device=log_prob.device)
        grads = th.autograd.grad(log_prob, params, grad_outputs=one_hot, is_grads_batched=True, allow_unused=True)
        norms.append(th.stack([g.flatten(1).square().sum(1) for g in grads if g is not None]).sum(0))
    return th.cat(norms).detach()


class TimeOptimalBaseline:
    """
    The variance-minimising baseline per time step of the reward-to-go estimator (``docs/theory.md``, "Baselines";
    Peters and Schaal 2008): ``B_t = E[|psi_t|^2 R_t] / E[|psi_t|^2]``, with ``psi_t`` the score of the step at time t
    of its episode, which minimises the variance when the terms of different time steps are uncorrelated.

    The expectations are estimated from running sums per time index over the last ``horizon`` batches and over the
    current batch's other episodes. None of them depends on the episode the baseline is applied to, so the estimator
    stays unbiased; the earlier batches keep the ratio stable when the batch is small.

    :param horizon: Number of earlier batches whose statistics are pooled (0: the current batch only)
    :param leave_one_out: Leave each episode out of its own baseline (unbiased); False counts it too (a bias of
        order 1/N, as the batch mean's)
    """

    def __init__(self, horizon: int, leave_one_out: bool = True) -> None:
        self.horizon = horizon
        self.leave_one_out = leave_one_out
        #: Per earlier batch, the sums of ``|psi_t|^2 R_t`` and of ``|psi_t|^2`` per time index, (2, batch's longest)
        self.history: deque[np.ndarray] = deque(maxlen=int(horizon))

    def __call__(self, score_norms: np.ndarray, returns: np.ndarray, step_times: np.ndarray) -> np.ndarray:
        """
        The baselines of a batch's steps; the batch's statistics then join the pool.

        :param score_norms: Per-step ``|psi_t|^2`` (:func:`per_step_score_norms`)
        :param returns: Per-step returns the baseline is subtracted from
        :param step_times: Per-step time index in the episode
        :return: Per-step baselines, 0 where no other step of the same time index had a non-zero score
        """
        norms = np.asarray(score_norms, dtype=np.float64)
        weighted = norms * np.asarray(returns, dtype=np.float64)
        sums = np.stack([np.bincount(step_times, weights=weighted), np.bincount(step_times, weights=norms)])
        total = np.zeros((2, max(part.shape[1] for part in (*self.history, sums))))
        for part in (*self.history, sums):
            total[:, : part.shape[1]] += part
        numerator, denominator = total[:, step_times]
        if self.leave_one_out:
            # An episode has one step per time index: removing the step removes the episode.
            numerator, denominator = numerator - weighted, denominator - norms
        # What the subtraction leaves of a step that was alone at its time index is rounding, not data.
        known = denominator > 1e-9 * total[1, step_times]
        self.history.append(sums)
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=known)


def optimal_baseline(x: th.Tensor, y: th.Tensor, leave_one_out: bool = True) -> th.Tensor:
    """
    Variance-minimising constant baseline per parameter component, ``b*_k = E[X_k Y_k] / E[Y_k^2]``
    (``docs/theory.md``, "Baselines"), estimated from the batch.

    X_i is episode i's un-baselined gradient term and Y_i the sum of the (weighted) score vectors that the
    baseline multiplies, so that episode i's baselined term is ``X_i - b * Y_i``. For full returns this is
    the classic ``E[g_k^2 R] / E[g_k^2]``.

    :param x: Per-episode un-baselined gradient terms, (n_episodes, n_params)
    :param y: Per-episode score sums, (n_episodes, n_params)
    :param leave_one_out: Estimate episode i's baseline from the other episodes only, so that it does not
        depend on episode i and the estimator stays exactly unbiased; otherwise one baseline from the whole
        batch (biased by O(1/N), like the batch-mean baseline)
    :return: Per-episode baselines, (n_episodes, n_params) (rows identical without leave-one-out)
    """
    xy = x * y
    yy = y * y
    numerator = xy.sum(0, keepdim=True)
    denominator = yy.sum(0, keepdim=True)
    if leave_one_out:
        numerator = numerator - xy
        denominator = denominator - yy
    else:
        numerator, denominator = numerator.expand_as(x), denominator.expand_as(x)
    # A component whose score is zero on every other episode gets no baseline (0/0).
    safe = denominator > 1e-12
    return th.where(safe, numerator / th.where(safe, denominator, th.ones_like(denominator)), th.zeros_like(numerator))
