"""REINFORCE: Monte Carlo policy gradient from whole episodes."""

import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor

from sb3_pgnotes.common.collection import without_distribution_validation
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.critic import SeparateCriticMixin, evaluate_values
from sb3_pgnotes.common.gradients import TimeOptimalBaseline, batch_score_norms
from sb3_pgnotes.common.on_policy import EpisodicOnPolicyAlgorithm
from sb3_pgnotes.common.policies import actions_to_tensor, entropy_loss
from sb3_pgnotes.common.returns import baseline_values, discount_weights, full_returns, reward_to_go, standardize
from sb3_pgnotes.common.validation import check_choice, check_finite, check_positive_int, check_schedule, warn_ignored
from sb3_pgnotes.reinforce.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfReinforce = TypeVar("SelfReinforce", bound="Reinforce")

BASELINES = ("none", "mean", "value", "optimal")
LOSS_SCALES = ("episode", "step")
DISCOUNT_OPTIONS = (1, 2)


class Reinforce(SeparateCriticMixin, EpisodicOnPolicyAlgorithm):
    """
    REINFORCE: Monte Carlo policy gradient from whole episodes (Williams 1992; ``docs/theory.md``, sections
    "The policy-gradient estimator" to "Discounting").

    Each update collects ``n_episodes`` whole episodes with the current policy and takes one gradient step on

        g = 1/N sum_i sum_t w_t grad log pi(a_{i,t}|s_{i,t}) (R_{i,t} - b_{i,t})

    where R is the full discounted return ``sum_t gamma^t r_t`` of the episode (the plain estimator) or the
    reward-to-go ``sum_{t'>=t} gamma^(t'-t) r_t'`` (section "Reward-to-go"), b is the baseline (section "Baselines"),
    and w_t is 1 (discount option 1) or ``gamma^t`` (option 2, the exact gradient of the discounted objective). With
    full returns the two options coincide: the full discounted return already is the discounted objective's
    estimator.

    Loss scaling: with ``loss_scale="episode"`` the loss is ``-1/N sum_{i,t} w_t log pi * (R - b)``, whose
    gradient is exactly the estimator g (sum over steps, mean over episodes). With ``loss_scale="step"``
    it is the mean over all steps instead, i.e. g times N / (number of steps). The entropy bonus is always a
    per-step mean. Advantage normalisation, when on, standardises ``w_t (R - b)`` over the batch.

    An option that the chosen configuration does not use gives a ``UserWarning`` when set away from its default;
    invalid arguments raise a ``ValueError`` at construction that names them.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the policy, constant or a function of the progress remaining (1 to 0)
    :param n_episodes: Number of whole episodes per update (N in ``docs/theory.md``), spread over the envs;
        ``None`` (default): one per env of the env given at construction
    :param gamma: Discount factor
    :param reward_to_go: Weight each step by the reward-to-go (causality, 2.6) instead of the full return
    :param baseline: ``"none"``; ``"mean"``: the batch mean of the returns (2.7; per episode for full returns,
        per step for reward-to-go); ``"value"``: a learned state value V(s_t) fitted to the Monte Carlo
        reward-to-go, evaluated before this update's critic steps; ``"optimal"``: per time step t the
        variance-minimising ``B_t = E[|grad log pi_t|^2 R_t] / E[|grad log pi_t|^2]`` (``docs/theory.md``,
        "Baselines"), estimated from the statistics of earlier updates and of the batch's other episodes (see
        :class:`sb3_pgnotes.common.gradients.TimeOptimalBaseline`)
    :param leave_one_out: With ``baseline="optimal"``, leave each episode out of its own baseline (default): the
        baseline then does not depend on the episode it is applied to, so the estimator stays exactly unbiased, at
        no extra cost. False counts the episode too (a bias of order 1/N, as the batch mean's).
    :param optimal_baseline_horizon: With ``baseline="optimal"``, the number of earlier updates whose statistics
        are pooled into the baseline (0: the current batch only). They keep it stable with few episodes per update;
        they come from slightly older policies, which costs some variance reduction but never unbiasedness. The
        pool is not saved: a loaded model starts a new one.
    :param discount_option: 1: ``gamma^(t'-t)`` inside the reward-to-go only; 2: also weight step t by
        ``gamma^t`` (``docs/theory.md``, "Discounting")
    :param normalize_advantage: Standardise the per-step weights over the batch. ``None`` (default): True, except
        with ``baseline="optimal"``, which minimises the variance of the raw weights (standardising would undo it)
    :param ent_coef: Entropy coefficient for the loss calculation
    :param max_grad_norm: Maximum norm of the policy and of the critic gradient (``None``: no clipping)
    :param loss_scale: ``"episode"`` (mean over episodes of the per-episode sum, the estimator's 1/N) or
        ``"step"`` (mean over steps)
    :param critic_learning_rate: Learning rate of the value baseline, constant or a schedule
    :param n_critic_updates: Number of full-batch gradient steps on the value baseline per update
    :param bootstrap_truncated: With the value baseline, complete the returns of time-limit-truncated episodes
        with ``gamma^(T-t) V(terminal_observation)`` instead of treating the cut as the episode's end
    :param episode_step_limit: An episode running longer than this raises an error instead of hanging training
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise
        (``Box`` actions only)
    :param sde_sample_freq: Sample a new gSDE noise matrix every n env steps (-1: only at the start of each
        collection)
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param monitor_wrapper: When creating an environment, whether to wrap it in a Monitor wrapper
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-3,
        n_episodes: int | None = None,
        gamma: float = 0.99,
        reward_to_go: bool = True,
        baseline: str = "value",
        discount_option: int = 1,
        normalize_advantage: bool | None = None,
        leave_one_out: bool = True,
        optimal_baseline_horizon: int = 10,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = None,
        loss_scale: str = "episode",
        critic_learning_rate: float | Schedule = 3e-3,
        n_critic_updates: int = 10,
        bootstrap_truncated: bool = False,
        episode_step_limit: int = 100_000,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        monitor_wrapper: bool = True,
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_episodes=n_episodes,
            gamma=gamma,
            ent_coef=ent_coef,
            max_grad_norm=max_grad_norm,
            episode_step_limit=episode_step_limit,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            monitor_wrapper=monitor_wrapper,
            _init_setup_model=False,
        )
        check_choice("baseline", baseline, BASELINES)
        check_choice("loss_scale", loss_scale, LOSS_SCALES)
        check_choice("discount_option", discount_option, DISCOUNT_OPTIONS)
        check_choice("reward_to_go", reward_to_go, (True, False))
        if normalize_advantage is None:
            normalize_advantage = baseline != "optimal"
        check_choice("normalize_advantage", normalize_advantage, (True, False))
        check_choice("bootstrap_truncated", bootstrap_truncated, (True, False))
        check_choice("leave_one_out", leave_one_out, (True, False))
        check_positive_int("n_critic_updates", n_critic_updates)
        check_positive_int("optimal_baseline_horizon", optimal_baseline_horizon, minimum=0)
        check_schedule("critic_learning_rate", critic_learning_rate)
        if baseline != "value":
            warn_ignored("critic_learning_rate", critic_learning_rate, 3e-3, "only with baseline='value'")
            warn_ignored("n_critic_updates", n_critic_updates, 10, "only with baseline='value'")
        if baseline != "optimal":
            warn_ignored("leave_one_out", leave_one_out, True, "only with baseline='optimal'")
            warn_ignored("optimal_baseline_horizon", optimal_baseline_horizon, 10, "only with baseline='optimal'")
        if not reward_to_go:
            warn_ignored(
                "discount_option", discount_option, 1, "only with reward_to_go=True (with full returns both coincide)"
            )
        if bootstrap_truncated and baseline != "value":
            raise ValueError("bootstrap_truncated=True needs a learned value: use baseline='value'")
        if baseline == "optimal" and normalize_advantage:
            raise ValueError(
                "baseline='optimal' minimises the variance of the raw estimator; standardising the weights would undo "
                "it: use normalize_advantage=False, or leave it unset"
            )
        if baseline == "optimal" and self.n_episodes < 2 and optimal_baseline_horizon == 0:
            effect = "it is 0 (no baseline)" if leave_one_out else "it equals the episode's own returns (no gradient at all)"
            warnings.warn(
                f"baseline='optimal' with leave_one_out={leave_one_out}, n_episodes=1 and optimal_baseline_horizon=0 has "
                f"no other episode to estimate the baseline from: {effect}. Pool earlier updates "
                "(optimal_baseline_horizon >= 1) or use n_episodes >= 2.",
                UserWarning,
            )
        if baseline == "mean" and self.n_episodes < 2 and not reward_to_go:
            warnings.warn(
                "baseline='mean' with reward_to_go=False and n_episodes=1 subtracts the episode's return from itself: "
                "every update is zero. Use n_episodes >= 2, reward_to_go=True or another baseline.",
                UserWarning,
            )
        self.reward_to_go = reward_to_go
        self.baseline = baseline
        self.discount_option = discount_option
        self.normalize_advantage = normalize_advantage
        self.leave_one_out = leave_one_out
        self.optimal_baseline_horizon = optimal_baseline_horizon
        self.loss_scale = loss_scale
        self.critic_learning_rate = critic_learning_rate
        self.n_critic_updates = n_critic_updates
        self.bootstrap_truncated = bootstrap_truncated
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        # Separate optimisers: the critic has its own learning rate and takes several steps per update.
        self._setup_critic()
        self.optimal_baseline = TimeOptimalBaseline(self.optimal_baseline_horizon, self.leave_one_out)

    def _excluded_save_params(self) -> list[str]:
        # The pooled statistics of the optimal baseline are, like the rollout buffer, training state.
        return [*super()._excluded_save_params(), "optimal_baseline"]

    def process_batch(self, batch: EpisodeBatch, rollout_buffer: RolloutBuffer) -> None:
        """
        Evaluate the per-step baseline on the batch: the critic's ``V(s_t)`` (and the truncated episodes' terminal
        observations when ``bootstrap_truncated``) or the optimal baseline's ``B_t``; load the buffer with the returns
        R_t, the baselines and the advantages ``w_t (R_t - b_t)``.

        :param batch: The episodes collected
        :param rollout_buffer: The episodic rollout buffer
        """
        batch.bootstrap_values = np.zeros(batch.n_episodes)
        if self.baseline == "value":
            batch.values, batch.bootstrap_values = evaluate_values(self.policy, batch, self.bootstrap_truncated, self.device)
        elif self.baseline == "optimal":
            batch.values = self._optimal_baselines(batch)
        else:
            batch.values = np.zeros(batch.n_steps)
        returns, _ = self.returns_and_step_weights(batch, batch.bootstrap_values)
        advantages = self.advantages(batch, batch.values, batch.bootstrap_values)
        rollout_buffer.load_batch(batch, batch.values, returns, advantages)  # type: ignore[attr-defined]

    def _optimal_baselines(self, batch: EpisodeBatch) -> np.ndarray:
        """
        :param batch: The episodes collected
        :return: Per step, the optimal baseline ``B_t`` of its time index; the batch's statistics join the pool
        """
        returns, _ = self.returns_and_step_weights(batch, np.zeros(batch.n_episodes))
        return self.optimal_baseline(batch_score_norms(self.policy, batch), returns, batch.step_times)

    def returns_and_step_weights(self, batch: EpisodeBatch, bootstrap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        :param batch: The episodes
        :param bootstrap: Per-episode value after the last step (0 unless truncated and bootstrapped)
        :return: Per-step returns R_t (reward-to-go or full return) and discount weights w_t (option 2: gamma^t)
        """
        returns_fn = reward_to_go if self.reward_to_go else full_returns
        returns = returns_fn(batch.rewards, batch.episode_lengths, self.gamma, bootstrap)
        if self.discount_option == 2 and self.reward_to_go:
            return returns, discount_weights(batch.step_times, self.gamma)
        return returns, np.ones_like(returns)

    def advantages(self, batch: EpisodeBatch, values: np.ndarray | None, bootstrap: np.ndarray) -> np.ndarray:
        """
        :param batch: The episodes
        :param values: Per-step baseline b_t of the ``"value"`` and ``"optimal"`` baselines
        :param bootstrap: Per-episode value after the last step (0 unless truncated and bootstrapped)
        :return: Per-step ``w_t (R_t - b_t)``
        """
        returns, step_weights = self.returns_and_step_weights(batch, bootstrap)
        per_episode = not self.reward_to_go
        return (returns - baseline_values(self.baseline, returns, batch.episode_lengths, values, per_episode)) * step_weights

    def policy_gradient_weights(self, batch: EpisodeBatch, values: np.ndarray | None, bootstrap: np.ndarray) -> np.ndarray:
        """
        The per-step factor that multiplies ``grad log pi(a_t|s_t)`` in the estimator.

        :param batch: The episodes
        :param values: Per-step baseline b_t of the ``"value"`` and ``"optimal"`` baselines
        :param bootstrap: Per-episode value after the last step (0 unless truncated and bootstrapped)
        :return: Per-step weights ``w_t (R_t - b_t)``, standardised if ``normalize_advantage``
        """
        weights = self.advantages(batch, values, bootstrap)
        return standardize(weights) if self.normalize_advantage else weights

    def train(self) -> None:
        """
        One policy-gradient step on the collected episodes, then ``n_critic_updates`` steps on the value baseline.
        """
        batch = self.episode_batch
        assert batch is not None and batch.values is not None and batch.bootstrap_values is not None
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        observations = obs_as_tensor(batch.observations, self.device)  # type: ignore[arg-type]
        actions = actions_to_tensor(batch.actions, self.action_space, self.device)
        normaliser = batch.n_episodes if self.loss_scale == "episode" else batch.n_steps

        self.policy.optimizer.zero_grad()
        with without_distribution_validation():
            distribution = self.policy.get_distribution(observations)
        log_prob = distribution.log_prob(actions)
        entropy_term = entropy_loss(distribution.entropy(), log_prob)
        weights = th.as_tensor(
            self.policy_gradient_weights(batch, batch.values, batch.bootstrap_values), dtype=th.float32, device=self.device
        )
        policy_loss = -(log_prob * weights).sum() / normaliser
        loss = policy_loss + self.ent_coef * entropy_term
        check_finite("policy loss", loss)
        loss.backward()
        grad_norm = self._clip_actor_gradient()
        self.policy.optimizer.step()
        self._n_updates += 1

        if self.baseline == "value":
            value_targets = reward_to_go(batch.rewards, batch.episode_lengths, self.gamma, batch.bootstrap_values)
            self.logger.record("train/critic_learning_rate", self._update_critic_learning_rate())
            value_loss = self._fit_critic(observations, value_targets, self.n_critic_updates)
            self.logger.record("train/value_loss", value_loss)
            self.logger.record("train/explained_variance", float(explained_variance(batch.values, value_targets)))

        self.logger.record("train/policy_gradient_loss", policy_loss.item())
        self.logger.record("train/entropy_loss", entropy_term.item())
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/grad_norm", grad_norm)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(
        self: SelfReinforce,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "Reinforce",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfReinforce:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
