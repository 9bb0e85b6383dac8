"""What the algorithms with a separately trained critic share: split optimisers, saving them, fitting the critic."""

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor, update_learning_rate

from sb3_pgnotes.common.buffers import EpisodeBatch, as_batch, concatenate_observations
from sb3_pgnotes.common.policies import build_actor_critic_optimizers, clip_gradient, fit_values
from sb3_pgnotes.common.validation import python_number, scheduled_rate


def evaluate_values(
    policy: ActorCriticPolicy, batch: EpisodeBatch, bootstrap: bool = True, device: th.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """
    The critic's ``V(s_t)`` at every step and, per episode, the bootstrap value ``V(s_T)`` of the observation after
    its last step where the episode was cut (truncated by a time limit or a rollout's edge; 0 where it terminated).
    One forward pass serves both: on small batches the call, not the arithmetic, is the cost.

    :param policy: The policy whose value head is evaluated
    :param batch: The episodes or segments
    :param bootstrap: Whether to evaluate the bootstrap values (False: all 0)
    :param device: The policy's device (``None``: ask the policy, which walks its parameters)
    :return: Per-step values and per-episode bootstrap values, float64
    """
    cut = np.array([bootstrap and obs is not None for obs in batch.terminal_observations], dtype=bool)
    terminal = [as_batch(obs) for obs, is_cut in zip(batch.terminal_observations, cut, strict=True) if is_cut]
    observations = concatenate_observations([batch.observations, *terminal]) if terminal else batch.observations
    with th.no_grad():
        all_values = policy.predict_values(obs_as_tensor(observations, device or policy.device))  # type: ignore[arg-type]
    all_values_np = all_values.flatten().cpu().numpy().astype(np.float64)
    bootstrap_values = np.zeros(batch.n_episodes)
    bootstrap_values[cut] = all_values_np[batch.n_steps :]
    return all_values_np[: batch.n_steps], bootstrap_values


class SeparateCriticMixin:
    """
    For an algorithm whose actor and critic have their own optimisers (the policy's ``optimizer_class``): the actor's
    is ``policy.optimizer``, the critic's ``critic_optimizer`` with the schedule ``critic_learning_rate``. A features
    extractor shared by both is trained by the actor only.
    """

    # Any: the algorithm classes declare these more narrowly or more widely.
    policy: Any
    lr_schedule: Schedule
    critic_learning_rate: float | Schedule
    max_grad_norm: Any
    _current_progress_remaining: float

    def _setup_critic(self) -> None:
        """Build the two optimisers (after the policy)."""
        self.critic_lr_schedule = FloatSchedule(python_number(self.critic_learning_rate))
        self.policy.optimizer, self.critic_optimizer = build_actor_critic_optimizers(
            self.policy, self.lr_schedule(1), self.critic_lr_schedule(1)
        )

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer", "critic_optimizer"], []

    def _update_critic_learning_rate(self) -> float:
        """:return: The critic's learning rate at the current progress, now set in its optimiser"""
        learning_rate = scheduled_rate("critic_learning_rate", self.critic_lr_schedule, self._current_progress_remaining)
        update_learning_rate(self.critic_optimizer, learning_rate)
        return learning_rate

    def _fit_critic(self, observations: PyTorchObs, targets: np.ndarray, n_steps: int) -> float:
        """
        ``n_steps`` full-batch gradient steps of the critic towards fixed targets.

        :param observations: Per-step observations
        :param targets: Per-step value targets
        :param n_steps: Number of gradient steps
        :return: The last value loss
        """
        return fit_values(self.policy, self.critic_optimizer, observations, targets, n_steps, self.max_grad_norm)

    def _clip_actor_gradient(self) -> float:
        """:return: The actor's gradient norm before clipping it to ``max_grad_norm`` (if set)"""
        return clip_gradient(self.policy.optimizer, self.max_grad_norm)
