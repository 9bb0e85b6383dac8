import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_pgnotes.common.buffers import IndexedDictRolloutBuffer, IndexedRolloutBuffer
from sb3_pgnotes.common.collection import without_distribution_validation
from sb3_pgnotes.common.kl import adapt_kl_beta, analytic_kl, check_adaptive_rule, sample_kl
from sb3_pgnotes.common.guards import EnvDataCheck, GuardedAlgorithm, explain_policy_errors
from sb3_pgnotes.common.on_policy import clamped_progress_remaining
from sb3_pgnotes.common.policies import actor_latents, build_optimizer, clip_gradient, distribution_and_values, entropy_loss
from sb3_pgnotes.common.returns import standardize
from sb3_pgnotes.common.validation import (
    SUPPORTED_ACTION_SPACES,
    check_choice,
    check_common_arguments,
    check_finite,
    check_finite_number,
    check_number,
    check_positive_int,
    check_sde_sample_freq,
    warn_ignored,
)
from sb3_pgnotes.ppo_kl.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfPPOKL = TypeVar("SelfPPOKL", bound="PPOKL")

BETA_MODES = ("fixed", "adaptive")
KL_ESTIMATORS = ("analytic", "sample")


class PPOKL(GuardedAlgorithm, OnPolicyAlgorithm):
    """
    PPO with a KL penalty, fixed or adaptive (``docs/theory.md``, "KL penalty"; Schulman et
    al. 2017, "Proximal Policy Optimization Algorithms", section 4).

    Each update collects ``n_steps`` steps per env into SB3's ``RolloutBuffer`` (GAE advantages and returns),
    then takes ``n_epochs`` passes of minibatch SGD on

        loss = -mean(ratio * A) + beta * mean(KL(pi_old(.|s) || pi(.|s))) + vf_coef * value loss - ent_coef * entropy

    with ``ratio = pi(a|s) / pi_old(a|s)`` and no clipping of the ratio. This maximises the penalised surrogate
    ``J = sum ratio * A - beta * KL``: some course notes write "+ beta D_KL", a sign slip (the
    penalty is subtracted from the objective, i.e. added to the loss).

    pi_old is the policy that collected the rollout: with ``kl_estimator="analytic"`` a frozen copy of the policy,
    synchronised at the start of each ``train()``, gives its distribution, and the KL is SB3's closed form
    (summed over action dimensions for factorised distributions); with ``"sample"`` it is the k3 estimator
    ``(r - 1) - log r`` of the stored rollout log-probabilities, for distributions without a closed form.

    beta is fixed (``beta_mode="fixed"``), or adapted once per update after all epochs by the paper's rule
    (``"adaptive"``): with d the mean KL between the rollout policy and the updated policy over the whole rollout,
    ``d < kl_target / kl_tolerance``: ``beta /= beta_factor``; ``d > kl_target * kl_tolerance``: ``beta *= beta_factor``;
    then clipped to ``[beta_min, beta_max]``. The current beta is the attribute ``beta``, saved with the model.
    With ``beta = 0`` (fixed) the loss is the unclipped importance-sampled surrogate of the off-policy
    actor-critic (the paper's "no clipping or penalty").

    An option that the chosen configuration does not use gives a ``UserWarning`` when set away from its default;
    invalid arguments raise a ``ValueError`` at construction that names them.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, constant or a function of the progress remaining (from 1 to 0)
    :param n_steps: Number of steps per env per update (the rollout buffer holds ``n_steps * n_envs`` steps)
    :param batch_size: Minibatch size
    :param n_epochs: Number of passes over the rollout per update
    :param gamma: Discount factor
    :param gae_lambda: Factor for the trade-off of bias vs variance of the Generalized Advantage Estimator
    :param beta: Coefficient of the KL penalty (the initial value when adaptive)
    :param beta_mode: ``"fixed"`` or ``"adaptive"`` (the paper's rule, once per update)
    :param kl_target: The target KL d_targ of the adaptive rule
    :param kl_tolerance: The adaptive rule acts when d leaves ``[kl_target / kl_tolerance, kl_target * kl_tolerance]``
        (the paper's 1.5)
    :param beta_factor: The adaptive rule multiplies or divides beta by this (the paper's 2)
    :param beta_min: Lower bound of the adaptive beta
    :param beta_max: Upper bound of the adaptive beta
    :param target_kl: Stop an update's epochs early once a minibatch's approximate KL to the rollout policy exceeds
        ``1.5 * target_kl``, as SB3's PPO does (``None``: never; the paper's rule only adapts beta between updates,
        so a single update can overshoot d_targ several times over before beta reacts)
    :param kl_estimator: ``"analytic"`` (closed form against the rollout policy's distribution) or ``"sample"``
        (k3 estimator from the log-ratio of the rollout's actions)
    :param normalize_advantage: Standardise the advantages over each minibatch
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: once per rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        beta: float = 1.0,
        beta_mode: str = "adaptive",
        kl_target: float = 0.01,
        kl_tolerance: float = 1.5,
        beta_factor: float = 2.0,
        beta_min: float = 1e-4,
        beta_max: float = 1e4,
        target_kl: float | None = None,
        kl_estimator: str = "analytic",
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_common_arguments(
            learning_rate, ent_coef, stats_window_size, device, seed, verbose, policy_kwargs, tensorboard_log
        )
        check_choice("use_sde", use_sde, (True, False))
        check_sde_sample_freq(sde_sample_freq)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=int(stats_window_size),  # deque refuses numpy integers
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=SUPPORTED_ACTION_SPACES,
        )
        check_positive_int("n_steps", n_steps)
        check_positive_int("batch_size", batch_size)
        check_positive_int("n_epochs", n_epochs)
        check_number("gamma", gamma, 0.0, 1.0)
        check_number("gae_lambda", gae_lambda, 0.0, 1.0)
        check_choice("beta_mode", beta_mode, BETA_MODES)
        check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
        check_choice("normalize_advantage", normalize_advantage, (True, False))
        # Finite: an infinite penalty times the first update's zero KL is NaN.
        check_finite_number("beta", beta, 0.0)
        check_adaptive_rule(kl_target, kl_tolerance, beta_factor, beta_min, beta_max)
        # A finite cap too: the doubling rule could otherwise take beta to infinity.
        check_finite_number("beta_max", beta_max, beta_min)
        if target_kl is not None:
            check_number("target_kl", target_kl, 0.0, low_open=True)
        check_finite_number("vf_coef", vf_coef, 0.0)
        check_number("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        if beta_mode == "fixed":
            for name, value, default in [
                ("kl_target", kl_target, 0.01),
                ("kl_tolerance", kl_tolerance, 1.5),
                ("beta_factor", beta_factor, 2.0),
                ("beta_min", beta_min, 1e-4),
                ("beta_max", beta_max, 1e4),
            ]:
                warn_ignored(name, value, default, "only with beta_mode='adaptive'")
        if beta_mode == "adaptive":
            # The rule only multiplies beta: it must start inside its bounds and cannot start at 0.
            check_number("beta", beta, beta_min, beta_max, low_open=beta_min == 0.0)
        if normalize_advantage and batch_size == 1:
            raise ValueError("batch_size must be > 1 with normalize_advantage=True (standardising one advantage gives NaN)")
        if normalize_advantage and self.env is not None and self.env.num_envs * n_steps == 1:
            raise ValueError(
                "n_steps * n_envs must be > 1 with normalize_advantage=True (standardising one advantage gives NaN)"
            )
        if self.env is not None and (self.env.num_envs * n_steps) % batch_size:
            rollout_size = self.env.num_envs * n_steps
            warnings.warn(
                f"batch_size={batch_size} does not divide the rollout of n_steps * n_envs = {rollout_size} steps: every "
                f"epoch ends with a minibatch of {rollout_size % batch_size} steps after {rollout_size // batch_size} full "
                "ones (as in SB3's PPO). Choose batch_size as a divisor of n_steps * n_envs to avoid it",
                UserWarning,
                stacklevel=2,
            )
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.beta = float(beta)
        self.beta_mode = beta_mode
        self.kl_target = kl_target
        self.kl_tolerance = kl_tolerance
        self.beta_factor = beta_factor
        self.beta_min = beta_min
        self.beta_max = beta_max
        self.target_kl = target_kl
        self.kl_estimator = kl_estimator
        self.normalize_advantage = normalize_advantage
        self.old_policy: ActorCriticPolicy | None = None
        #: The rollout policy's actor latents of the rollout's states (see ``kl``), computed once per update
        self._old_latents: th.Tensor | None = None
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.rollout_buffer_class is None and self.kl_estimator == "analytic":
            # Minibatches that say which states they hold, so the rollout policy's latents are computed once per update.
            dict_obs = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = IndexedDictRolloutBuffer if dict_obs else IndexedRolloutBuffer
        with explain_policy_errors(self.observation_space, self.policy_class):
            super()._setup_model()
        self.policy.optimizer = build_optimizer(self.policy, list(self.policy.parameters()), self.lr_schedule(1))
        if self.kl_estimator == "analytic":
            # The rollout policy, frozen: its distributions are the "old" side of the analytic KL. Built on a forked
            # random stream, so that a seeded run's initial policy and actions match SB3's PPO.
            with th.random.fork_rng(devices=[]):
                old_policy: ActorCriticPolicy = self.policy_class(  # type: ignore[assignment]
                    self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
                )
            old_policy.set_training_mode(False)
            self.old_policy = old_policy.requires_grad_(False).to(self.device)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "old_policy", "_old_latents"]

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        # SB3's collection loop is kept: the env's data are checked by a callback it calls after each env step.
        return super()._init_callback(EnvDataCheck.prepend(callback), progress_bar)

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        # The last rollout of n_steps * n_envs steps can overshoot total_timesteps.
        self._current_progress_remaining = clamped_progress_remaining(num_timesteps, total_timesteps)

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """
        SB3's collection, after the rollout policy is frozen as ``old_policy``: the policy that draws the rollout's
        actions, so that :meth:`mean_kl` is 0 until the policy moves, callbacks included.

        :param env: The training environment
        :param callback: Callback called at each env step
        :param rollout_buffer: Buffer to fill with the rollout
        :param n_rollout_steps: Steps to collect per env
        :return: False if the callback stopped training
        """
        if self.old_policy is not None:
            self.old_policy.load_state_dict(self.policy.state_dict())
        self._old_latents = None
        return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    def kl(
        self,
        observations: PyTorchObs,
        new_distribution: Distribution,
        log_ratio: th.Tensor,
        buffer_indices: np.ndarray | None = None,
    ) -> th.Tensor:
        """
        Per-sample ``KL(pi_old(.|s) || pi(.|s))`` with the chosen estimator.

        :param observations: The minibatch's observations
        :param new_distribution: The current policy's distribution over these observations
        :param log_ratio: ``log pi(a|s) - log pi_old(a|s)`` of the minibatch's actions
        :param buffer_indices: Where the minibatch's states sit in the (flattened) rollout buffer, if they come from it:
            the rollout policy's actor latents of the whole buffer are then computed once per update and only its
            action head runs per minibatch
        :return: Tensor of shape (B,)
        """
        if self.kl_estimator == "sample":
            return sample_kl(log_ratio)
        old_policy = self.old_policy
        assert old_policy is not None
        with th.no_grad():
            if buffer_indices is None:
                old_distribution = old_policy.get_distribution(observations)
            else:
                old_distribution = old_policy._get_action_dist_from_latent(self._rollout_latents()[buffer_indices])
        return analytic_kl(old_distribution, new_distribution)

    def _flat_rollout(self, array: np.ndarray) -> np.ndarray:
        """:return: A rollout buffer array with one row per step, as ``get()`` leaves the buffer"""
        return array if self.rollout_buffer.generator_ready else self.rollout_buffer.swap_and_flatten(array)

    def _rollout_actor_latents(self, policy: ActorCriticPolicy) -> th.Tensor:
        """:return: The actor latents of ``policy`` at every state of the rollout, in the flattened buffer's order"""
        stored = self.rollout_buffer.observations
        observations = (
            {key: self._flat_rollout(value) for key, value in stored.items()}
            if isinstance(stored, dict)
            else self._flat_rollout(stored)
        )
        # Chunks of at least 1024 rows: one pass per chunk, few enough passes that their fixed cost is small.
        return actor_latents(policy, observations, max(self.batch_size, 1024), self.device)

    def _rollout_latents(self) -> th.Tensor:
        """:return: The rollout policy's actor latents of the rollout's states, computed once per update"""
        assert self.old_policy is not None
        if self._old_latents is None:
            self._old_latents = self._rollout_actor_latents(self.old_policy)
        return self._old_latents

    def _buffer_indices(self) -> np.ndarray | None:
        """:return: The indices of the rollout buffer's last minibatch, if the buffer keeps them (the default one does)"""
        return getattr(self.rollout_buffer, "sample_indices", None)

    def _actions(self, actions: th.Tensor) -> th.Tensor:
        """
        :param actions: Actions as the rollout buffer returns them (float)
        :return: Discrete actions as a flat long tensor (``Categorical.log_prob`` broadcasts a (B, 1) tensor to (B, B))
        """
        return actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else actions

    def mean_kl(self) -> float:
        """
        d of the adaptive rule: the mean KL between the rollout policy and the current policy over the whole rollout.

        :return: The mean KL
        """
        buffer = self.rollout_buffer
        with th.no_grad(), without_distribution_validation():
            # The whole rollout in a few large passes, rather than minibatch by minibatch.
            distribution = self.policy._get_action_dist_from_latent(self._rollout_actor_latents(self.policy))
            # As the buffer's minibatches hold them: float32, whatever the action space's dtype.
            actions = th.as_tensor(self._flat_rollout(buffer.actions).astype(np.float32, copy=False), device=self.device)
            actions = self._actions(actions)
            old_log_prob = th.as_tensor(self._flat_rollout(buffer.log_probs), device=self.device).flatten()
            log_ratio = distribution.log_prob(actions) - old_log_prob
            if self.kl_estimator == "sample":
                kl = sample_kl(log_ratio)
            else:
                assert self.old_policy is not None
                kl = analytic_kl(self.old_policy._get_action_dist_from_latent(self._rollout_latents()), distribution)
        return kl.mean().item()

    def train(self) -> None:
        """
        ``n_epochs`` passes of minibatch SGD on the KL-penalised surrogate, then the adaptive beta update.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        # A callback's mean_kl() during collection may have cached the latents of a partly filled buffer.
        self._old_latents = None
        beta = self.beta

        pg_losses, kl_losses, value_losses, entropy_losses = [], [], [], []
        continue_training = True
        # The policy's own outputs need no argument checks; a non-finite loss is caught below.
        with without_distribution_validation():
            for epoch in range(self.n_epochs):
                approx_kl_divs = []
                for rollout_data in self.rollout_buffer.get(self.batch_size):
                    actions = self._actions(rollout_data.actions)
                    distribution, values = distribution_and_values(self.policy, rollout_data.observations)
                    log_prob = distribution.log_prob(actions)
                    advantages = rollout_data.advantages
                    if self.normalize_advantage:
                        advantages = standardize(advantages)

                    log_ratio = log_prob - rollout_data.old_log_prob
                    policy_loss = -(advantages * th.exp(log_ratio)).mean()
                    value_loss = F.mse_loss(rollout_data.returns, values.flatten())
                    entropy_term = entropy_loss(distribution.entropy(), log_prob)
                    loss = policy_loss + self.ent_coef * entropy_term + self.vf_coef * value_loss
                    if beta > 0:
                        # The penalty is subtracted from the objective J, so it is added to the loss.
                        indices = self._buffer_indices()
                        kl_loss = self.kl(rollout_data.observations, distribution, log_ratio, indices).mean()
                        loss = loss + beta * kl_loss
                        kl_losses.append(kl_loss.item())
                    check_finite("loss", loss)

                    pg_losses.append(policy_loss.item())
                    value_losses.append(value_loss.item())
                    entropy_losses.append(entropy_term.item())
                    with th.no_grad():
                        approx_kl_divs.append(sample_kl(log_ratio).mean().item())
                    if self.target_kl is not None and approx_kl_divs[-1] > 1.5 * self.target_kl:
                        continue_training = False
                        if self.verbose >= 1:
                            print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_divs[-1]:.2f}")
                        break

                    self.policy.optimizer.zero_grad()
                    loss.backward()
                    clip_gradient(self.policy.optimizer, self.max_grad_norm)
                    self.policy.optimizer.step()
                self._n_updates += 1
                if not continue_training:
                    break

        kl = self.mean_kl()
        if self.beta_mode == "adaptive":
            self.beta = adapt_kl_beta(
                beta, kl, self.kl_target, self.kl_tolerance, self.beta_factor, self.beta_min, self.beta_max
            )

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", float(np.mean(entropy_losses)))
        self.logger.record("train/policy_gradient_loss", float(np.mean(pg_losses)))
        self.logger.record("train/value_loss", float(np.mean(value_losses)))
        self.logger.record("train/approx_kl", float(np.mean(approx_kl_divs)))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", float(explained_var))
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/kl_beta", beta)
        self.logger.record("train/kl", kl)
        if kl_losses:
            self.logger.record("train/kl_loss", float(np.mean(kl_losses)))

    def learn(
        self: SelfPPOKL,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PPOKL",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPPOKL:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
