"""OffPolicyPG: importance-sampled policy gradient over a replay of recent whole episodes."""

import dataclasses
import io
import numbers
import pathlib
import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.type_aliases import (
    GymEnv,
    MaybeCallback,
    RolloutReturn,
    Schedule,
    TrainFreq,
    TrainFrequencyUnit,
)
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_pgnotes.common.buffers import EpisodeAssembler, EpisodeBatch
from sb3_pgnotes.common.collection import Collector, EpisodesToReplay, without_distribution_validation
from sb3_pgnotes.common.critic import SeparateCriticMixin
from sb3_pgnotes.common.importance import (
    effective_sample_size,
    importance_weights,
    per_decision_log_weights,
    per_decision_returns,
    truncate_log_weights,
)
from sb3_pgnotes.common.guards import GuardedAlgorithm, explain_policy_errors
from sb3_pgnotes.common.on_policy import clamped_progress_remaining
from sb3_pgnotes.common.policies import actions_to_tensor, distribution_and_values, entropy_loss
from sb3_pgnotes.common.returns import baseline_values, discount_weights, reward_to_go
from sb3_pgnotes.common.validation import (
    SUPPORTED_ACTION_SPACES,
    check_choice,
    check_common_arguments,
    check_finite,
    check_number,
    check_positive_int,
    check_schedule,
    check_sde_sample_freq,
    warn_ignored,
)
from sb3_pgnotes.offpolicy_pg.buffers import EpisodeReplayBuffer
from sb3_pgnotes.offpolicy_pg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfOffPolicyPG = TypeVar("SelfOffPolicyPG", bound="OffPolicyPG")

ESTIMATORS = ("per_decision", "first_order")
BASELINES = ("none", "mean", "value")
DISCOUNT_OPTIONS = (1, 2)
TRAIN_FREQ_UNITS = ("step", "episode")


def checked_train_freq(train_freq: Any) -> Any:
    """
    :param train_freq: An int (steps), an ``(int, unit)`` tuple or SB3's ``TrainFreq``, the unit ``"step"`` or
        ``"episode"`` (or SB3's ``TrainFrequencyUnit``)
    :return: ``train_freq`` with its frequency a Python int (SB3 refuses numpy integers) and its unit a string
    :raises ValueError: Otherwise
    """
    as_tuple = tuple(train_freq) if isinstance(train_freq, (tuple, TrainFreq)) else (train_freq, "step")
    if len(as_tuple) != 2:
        raise ValueError(f"train_freq must be an integer >= 1 or a (frequency, unit) tuple; got {train_freq!r}")
    frequency, unit = as_tuple
    check_positive_int("train_freq", frequency)
    unit = unit.value if isinstance(unit, TrainFrequencyUnit) else unit
    check_choice("train_freq unit", unit, TRAIN_FREQ_UNITS)
    return (int(frequency), unit) if isinstance(train_freq, (tuple, TrainFreq)) else int(frequency)


class OffPolicyPG(GuardedAlgorithm, SeparateCriticMixin, OffPolicyAlgorithm):
    """
    Off-policy policy gradient with importance sampling over a replay of recent whole episodes (Precup et al.
    2000; ``docs/theory.md``, "Importance sampling").

    The episodes were collected by earlier policies (the behaviour policy pi_theta, whose log-probability of each
    action is stored with the step); the gradient is that of the current policy pi_theta'. With the per-step ratio
    ``rho_t = pi_theta'(a_t|s_t) / pi_theta(a_t|s_t)`` and ``w_t = prod_{t'<=t} rho_t'`` (only the actions up to t,
    causality II), each gradient step follows

        per_decision:  g = 1/N sum_i sum_t d_t grad log pi_theta'(a_t|s_t) (sum_{t'>=t} gamma^(t'-t) w_t' r_t' - w_t b_t)
        first_order:   g = 1/N sum_i sum_t d_t grad log pi_theta'(a_t|s_t) rho_t (G_t - b_t)

    with ``G_t`` the reward-to-go, ``b_t`` the baseline and ``d_t`` 1 (discount option 1) or ``gamma^t`` (option 2).
    The per-decision term of decision t is ``w_t`` times the reward-to-go in which each later reward keeps the
    ratios of the actions between t and itself: an unbiased estimate of the target policy's gradient (dropping those
    later ratios, ``w_t G_t``, would evaluate the behaviour policy's future and be biased). The first-order form
    keeps only the ratio of the current action: it ignores the change of the state distribution, so it is biased
    unless the two policies are close, and of much lower variance. With behaviour == target both are REINFORCE.

    Which terms carry gradient: only the numerator ``pi_theta'`` of the current ratio, the current policy's
    log-probability of the action at step t, through ``grad log pi_theta'(a_t|s_t)``. Everything else is a constant
    of the loss ``-1/N sum_t d_t c_t log pi_theta'(a_t|s_t)``, ``c_t`` being the factor after ``grad log pi`` above
    (weights, returns and baselines, computed with the current log-probabilities detached): its gradient at theta' is
    the estimator. Equivalently it is the gradient of the surrogate ``sum_t d_t (c_t / rho_t) rho_t`` with only
    ``rho_t`` live, since ``grad rho_t = rho_t grad log pi_theta'``; differentiating the earlier ratios in ``w_t`` as
    well would add terms that the estimator does not have. The behaviour log-probabilities are data, recorded
    at collection: they never depend on theta'. The weights are computed as log-weights; ``c_bar`` truncates each
    (``min(c_bar, w)``, biased but bounded) and ``self_normalize`` divides them by their batch mean (consistent,
    bounded by the number of weights).
    Logged per update: ``train/is_weight_max`` (largest weight used), ``train/is_weight_mean``, ``train/ess`` (Kish's
    effective sample size of a batch's weights, mean over the gradient steps) and ``train/ess_fraction`` (ESS over the
    number of weights, i.e. of steps in the batch).

    Collection uses the current policy from the very first step: the warm-up before ``learning_starts`` does not
    take uniform random actions (whose stored log-probability would not be that of any policy being weighted).
    Episodes enter the replay as they end (each env's unfinished episode waits outside it); every ``train_freq``
    (steps or episodes) ``gradient_steps`` steps follow, each on ``batch_size`` episodes sampled whole. With a
    ``VecNormalize`` env the replay keeps the env's own observations and rewards, as SB3's off-policy algorithms do,
    and each gradient step normalises them with the current statistics: those the policy it trains acts with. Under
    another wrapper that changes the observations (e.g. the ``VecTransposeImage`` SB3 adds for images), the replay
    keeps them as the policy saw them.

    An option that the chosen configuration does not use gives a ``UserWarning`` when set away from its default;
    invalid arguments raise a ``ValueError`` at construction that names them.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the policy, constant or a function of the progress remaining (1 to 0)
    :param buffer_size: Capacity of the replay in steps
    :param max_buffer_episodes: Capacity of the replay in episodes (``None``: steps only)
    :param learning_starts: Env steps collected (with the policy itself) before the first gradient step
    :param batch_size: Number of whole episodes per gradient step (N)
    :param gamma: Discount factor
    :param train_freq: Collect this many vec-env steps (one step of every env each), or ``(n, "episode")`` episodes
        (counted over all envs), between updates
    :param gradient_steps: Number of gradient steps per update, each on a fresh sample of episodes
    :param estimator: ``"per_decision"`` or ``"first_order"`` (see above)
    :param baseline: ``"none"``; ``"mean"``: the batch mean of the reward-to-go; ``"value"``: a learned V(s_t)
        fitted to the Monte Carlo reward-to-go of the replayed episodes (any function of the state leaves the
        estimator unbiased). The per-decision estimator subtracts ``w_t b_t``.
    :param discount_option: 1: ``gamma^(t'-t)`` inside the reward-to-go only; 2: also weight step t by ``gamma^t``
    :param c_bar: Truncate each importance weight at this value (``None``: no truncation)
    :param self_normalize: Divide the importance weights by their mean over the batch's steps
    :param normalize_advantage: Standardise the per-step coefficients of ``log pi`` over the batch, centring them with
        an importance-weighted constant baseline ``w_t * m`` (``m = sum_t c_t / sum_t w_t``): a plain constant
        subtracted from them would be a baseline without its weight, whose expectation under the behaviour policy is
        not zero. On-policy (all weights 1) this is the usual standardisation.
    :param ent_coef: Entropy coefficient for the loss calculation
    :param max_grad_norm: Maximum norm of the policy and of the critic gradient (``None``: no clipping)
    :param critic_learning_rate: Learning rate of the value baseline, constant or a schedule
    :param n_critic_updates: Gradient steps on the value baseline per policy gradient step
    :param episode_step_limit: An episode running longer than this many steps raises an error instead of stalling
        training (no update can use an episode that never ends); the replay's ``buffer_size`` is a limit too
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise
        (``Box`` actions only). The stored behaviour log-probabilities are those of the policy's Gaussian, over the
        noise matrices: exact with ``sde_sample_freq=1``; with a matrix kept for several steps, consecutive actions
        share one draw and the per-step ratios approximate the episode's (as PPO's ratios do)
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
    policy: ActorCriticPolicy
    replay_buffer: EpisodeReplayBuffer | None  # type: ignore[assignment]
    max_buffer_episodes: int | None
    estimator: str
    baseline: str
    discount_option: int
    c_bar: float | None
    self_normalize: bool
    normalize_advantage: bool
    ent_coef: float
    max_grad_norm: float | None
    critic_learning_rate: float | Schedule
    n_critic_updates: int
    collector: Collector

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 20_000,
        max_buffer_episodes: int | None = None,
        learning_starts: int = 0,
        batch_size: int = 8,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = (2, "episode"),
        gradient_steps: int = 2,
        estimator: str = "per_decision",
        baseline: str = "value",
        discount_option: int = 1,
        c_bar: float | None = None,
        self_normalize: bool = True,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = None,
        critic_learning_rate: float | Schedule = 3e-3,
        n_critic_updates: int = 5,
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
        check_common_arguments(
            learning_rate, ent_coef, stats_window_size, device, seed, verbose, policy_kwargs, tensorboard_log
        )
        check_choice("monitor_wrapper", monitor_wrapper, (True, False))
        check_choice("use_sde", use_sde, (True, False))
        check_sde_sample_freq(sde_sample_freq)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            # A copy: SB3's off-policy base writes use_sde into it, and the caller's dict must not change.
            policy_kwargs=None if policy_kwargs is None else dict(policy_kwargs),
            stats_window_size=int(stats_window_size),  # deque refuses numpy integers
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            monitor_wrapper=monitor_wrapper,
            seed=seed,
            # The warm-up acts with the policy too (see collect_rollouts), so with its gSDE noise.
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde,
            supported_action_spaces=SUPPORTED_ACTION_SPACES,
        )
        check_positive_int("buffer_size", buffer_size)
        if max_buffer_episodes is not None:
            check_positive_int("max_buffer_episodes", max_buffer_episodes)
        if isinstance(learning_starts, bool) or not isinstance(learning_starts, numbers.Integral) or learning_starts < 0:
            raise ValueError(f"learning_starts must be an integer >= 0, got {learning_starts!r}")
        check_positive_int("batch_size", batch_size)
        check_number("gamma", gamma, 0.0, 1.0)
        self.train_freq = checked_train_freq(train_freq)
        if isinstance(gradient_steps, bool) or not isinstance(gradient_steps, numbers.Integral) or gradient_steps < -1:
            raise ValueError(
                "gradient_steps must be an integer >= -1 (-1: as many as the env steps collected, 0: collect only); "
                f"got {gradient_steps!r}"
            )
        check_choice("estimator", estimator, ESTIMATORS)
        check_choice("baseline", baseline, BASELINES)
        check_choice("discount_option", discount_option, DISCOUNT_OPTIONS)
        if c_bar is not None:
            check_number("c_bar", c_bar, 0.0, low_open=True)
        check_choice("self_normalize", self_normalize, (True, False))
        check_choice("normalize_advantage", normalize_advantage, (True, False))
        if max_grad_norm is not None:
            check_number("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        check_positive_int("n_critic_updates", n_critic_updates)
        check_positive_int("episode_step_limit", episode_step_limit)
        check_schedule("critic_learning_rate", critic_learning_rate)
        if baseline != "value":
            warn_ignored("critic_learning_rate", critic_learning_rate, 3e-3, "only with baseline='value'")
            warn_ignored("n_critic_updates", n_critic_updates, 5, "only with baseline='value'")
        self.max_buffer_episodes = max_buffer_episodes
        self.estimator = estimator
        self.baseline = baseline
        self.discount_option = discount_option
        self.c_bar = c_bar
        self.self_normalize = self_normalize
        self.normalize_advantage = normalize_advantage
        self.ent_coef = ent_coef
        self.max_grad_norm = max_grad_norm
        self.critic_learning_rate = critic_learning_rate
        self.n_critic_updates = n_critic_updates
        self.episode_step_limit = episode_step_limit
        self.collector = Collector(self)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        # Here rather than in __init__: load() calls _setup_model once the saved buffer_size is in place.
        self._check_buffer_holds_an_episode(self.env)
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.replay_buffer_class = EpisodeReplayBuffer
        # Empty until episodes arrive: loading a model for prediction allocates no replay.
        self.replay_buffer = EpisodeReplayBuffer(
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
            max_episodes=self.max_buffer_episodes,
        )
        with explain_policy_errors(self.observation_space, self.policy_class):
            self.policy = self.policy_class(  # type: ignore[assignment]
                self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
            )
        self.policy = self.policy.to(self.device)
        # Separate optimisers: the critic has its own learning rate and takes several steps per policy step.
        self._setup_critic()
        self._convert_train_freq()

    def dump_logs(self) -> None:
        """Write the logs, as SB3's off-policy algorithms do; with gSDE, its ``train/std`` from the policy."""
        # SB3's version reads gSDE's std from a SAC-style `actor`, which this algorithm does not have.
        use_sde, self.use_sde = self.use_sde, False
        try:
            if use_sde:
                std = self.policy.action_dist.get_std(self.policy.log_std)  # type: ignore[attr-defined]
                self.logger.record("train/std", std.mean().item())
            super().dump_logs()
        finally:
            self.use_sde = use_sde

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "collector"]

    def _check_buffer_holds_an_episode(self, env: VecEnv | None) -> None:
        """
        :param env: The env to learn from (nothing to check without one)
        :raises ValueError: If the env's time limit allows episodes longer than the replay holds
        """
        if env is None:
            return
        limits = [getattr(spec, "max_episode_steps", None) for spec in env.get_attr("spec")]
        longest = max((limit for limit in limits if limit is not None), default=None)
        if longest is not None and longest > self.buffer_size:
            raise ValueError(
                f"buffer_size={self.buffer_size} is shorter than the env's episodes (time limit {longest} steps): the "
                "replay stores whole episodes, so raise buffer_size"
            )

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        env = self._wrap_env(env, self.verbose)
        self._check_buffer_holds_an_episode(env)
        super().set_env(env, force_reset)

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        # An episode-counted collection overshoots total_timesteps.
        self._current_progress_remaining = clamped_progress_remaining(num_timesteps, total_timesteps)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        # SB3 resets the envs exactly in this case: the unfinished episodes are then gone.
        envs_reset = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if envs_reset and self.replay_buffer is not None:
            self.replay_buffer.pending.clear()
        return total_timesteps, callback

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load the stored episodes of a replay buffer saved with :meth:`save_replay_buffer`.

        The saved buffer's unfinished episodes are dropped: they belong to the envs as they were when it was saved.
        The envs' current unfinished episodes are kept, so that they are stored whole when they end. The loaded
        replay keeps its own ``buffer_size`` (as SB3's off-policy algorithms keep a loaded buffer's) and takes this
        model's ``max_buffer_episodes``, dropping its oldest episodes beyond it.

        :param path: Path to the pickled replay buffer, or a file-like object
        :param truncate_last_traj: Unused: only SB3's ``HerReplayBuffer`` reads it
        :raises ValueError: If the file holds no ``EpisodeReplayBuffer``, or one of other observation or action
            spaces; the model's replay is then unchanged
        """
        loaded = load_from_pkl(path, self.verbose)
        if not isinstance(loaded, EpisodeReplayBuffer):
            raise ValueError(
                f"load_replay_buffer: {path!r} holds a {type(loaded).__name__}; OffPolicyPG needs the "
                "EpisodeReplayBuffer that its save_replay_buffer writes"
            )
        if loaded.observation_space != self.observation_space or loaded.action_space != self.action_space:
            raise ValueError(
                f"load_replay_buffer: {path!r} holds episodes with observation space {loaded.observation_space} and "
                f"action space {loaded.action_space}; this model has {self.observation_space} and {self.action_space}"
            )
        # The model's device and envs, not those of the model that saved it.
        loaded.device = self.device
        loaded.n_envs = self.n_envs
        loaded.pending = self.replay_buffer.pending if self.replay_buffer is not None else EpisodeAssembler(self.n_envs)
        loaded.set_max_episodes(self.max_buffer_episodes)
        self.replay_buffer = loaded

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: EpisodeReplayBuffer,  # type: ignore[override]
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """
        Step the envs with the current policy for ``train_freq`` steps or episodes; each step goes to the replay's
        ``add`` with the behaviour log-probability of every raw action, and each episode enters the replay whole
        when it ends.

        :param env: The training environment
        :param callback: Callback called once per env step (and at the start and end of the rollout)
        :param train_freq: How much to collect
        :param replay_buffer: The replay of whole episodes
        :param action_noise: Unused (the policy is stochastic; noise would change the behaviour log-probabilities)
        :param learning_starts: Unused: the warm-up collects with the policy like any other rollout
        :param log_interval: Dump the logs every ``log_interval`` episodes
        :return: Steps and episodes collected, and whether to continue training
        """
        n_steps_before = self.num_timesteps

        def after_step(n_ended: int) -> None:
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            for _ in range(n_ended):
                self._episode_num += 1
                if log_interval is not None and self._episode_num % log_interval == 0:
                    self.dump_logs()

        vec_normalize = self._raw_replay_normalizer()

        def add(
            obs: Any, next_obs: Any, action: Any, reward: Any, done: Any, infos: list[dict[str, Any]], log_prob: Any
        ) -> None:
            # As SB3's off-policy algorithms: the replay keeps the env's own observations and rewards, which each
            # gradient step normalises with the statistics of its time, those the policy it trains acts with.
            if vec_normalize is not None:
                obs, reward = self._last_original_obs, vec_normalize.get_original_reward()
                self._last_original_obs = vec_normalize.get_original_obs()
                infos = [
                    {**info, "terminal_observation": vec_normalize.unnormalize_obs(info["terminal_observation"])}
                    if ended and "terminal_observation" in info
                    else info
                    for info, ended in zip(infos, done, strict=True)
                ]
            replay_buffer.add(obs, next_obs, action, reward, done, infos, log_prob=log_prob)

        rule = EpisodesToReplay(add, train_freq, after_step)
        callback_locals = {
            "train_freq": train_freq,
            "replay_buffer": replay_buffer,
            "action_noise": action_noise,
            "learning_starts": learning_starts,
            "log_interval": log_interval,
        }
        continue_training = self.collector.collect(env, callback, rule, callback_locals=callback_locals, off_policy_names=True)
        return RolloutReturn(self.num_timesteps - n_steps_before, rule.n_episodes, continue_training)

    def policy_gradient_weights(
        self, batch: EpisodeBatch, target_log_probs: np.ndarray, values: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        The per-step coefficient of ``log pi_theta'(a_t|s_t)`` in the loss, and the importance weights behind it.

        :param batch: The episodes, with the behaviour log-probabilities
        :param target_log_probs: Per-step ``log pi_theta'(a_t|s_t)`` of the current policy
        :param values: Per-step V(s_t) (``baseline="value"`` only)
        :return: The coefficients (standardised if ``normalize_advantage``), the log-weights after truncation, and
            the weights used
        """
        log_ratios = np.asarray(target_log_probs, dtype=np.float64) - batch.log_probs
        if self.estimator == "per_decision":
            log_weights = per_decision_log_weights(log_ratios, batch.episode_lengths)
        else:
            log_weights = log_ratios
        weights = importance_weights(log_weights, self.c_bar, self.self_normalize)
        plain_returns = reward_to_go(batch.rewards, batch.episode_lengths, self.gamma)
        if self.estimator == "per_decision":
            returns = per_decision_returns(batch.rewards, weights, batch.episode_lengths, self.gamma)
        else:
            returns = weights * plain_returns
        baseline = baseline_values(self.baseline, plain_returns, batch.episode_lengths, values, per_episode=False)
        coefficients = returns - weights * baseline
        if self.discount_option == 2:
            coefficients = coefficients * discount_weights(batch.step_times, self.gamma)
        if self.normalize_advantage and len(coefficients) > 1:
            # Centre with a constant baseline that carries the weight of its term, w_t * m (a plain constant would have a
            # non-zero expectation under the behaviour policy), m making the coefficients sum to 0; then unit scale.
            coefficients = coefficients - weights * (coefficients.sum() / weights.sum())
            coefficients = coefficients / (coefficients.std() + 1e-8)
        return coefficients, truncate_log_weights(log_weights, self.c_bar), weights

    def _raw_replay_normalizer(self) -> VecNormalize | None:
        """
        :return: The ``VecNormalize`` whose raw observations and rewards the replay keeps, when it is the env the
            policy reads; otherwise (none, or wrappers above it that change the observations, such as the
            ``VecTransposeImage`` SB3 adds for images) the replay keeps what the policy saw
        """
        vec_normalize = self._vec_normalize_env
        return vec_normalize if vec_normalize is not None and vec_normalize is self.env else None

    def _normalized(self, batch: EpisodeBatch) -> EpisodeBatch:
        """
        :param batch: Episodes from the replay, with the env's own observations and rewards
        :return: The episodes as the policy sees them now: normalised with the current ``VecNormalize`` statistics,
            if the env has them
        """
        vec_normalize = self._raw_replay_normalizer()
        if vec_normalize is None:
            return batch
        return dataclasses.replace(
            batch,
            observations=vec_normalize.normalize_obs(batch.observations),
            rewards=vec_normalize.normalize_reward(batch.rewards),
            terminal_observations=[
                None if obs is None else vec_normalize.normalize_obs(obs) for obs in batch.terminal_observations
            ],
        )

    def gradient_step(self, batch: EpisodeBatch) -> dict[str, float]:
        """
        One policy gradient step on a batch of episodes, then ``n_critic_updates`` steps on the value baseline.

        :param batch: Whole episodes from the replay (the env's own observations and rewards) with their behaviour
            log-probabilities
        :return: Statistics of the step (losses, importance weights)
        """
        batch = self._normalized(batch)
        observations = obs_as_tensor(batch.observations, self.device)  # type: ignore[arg-type]
        actions = actions_to_tensor(batch.actions, self.action_space, self.device)
        with without_distribution_validation():
            distribution, values = distribution_and_values(self.policy, observations)
        log_prob = distribution.log_prob(actions)
        coefficients, log_weights, weights = self.policy_gradient_weights(
            batch,
            log_prob.detach().cpu().numpy(),
            values.detach().flatten().cpu().numpy() if self.baseline == "value" else None,
        )
        policy_loss = -(log_prob * th.as_tensor(coefficients, dtype=th.float32, device=self.device)).sum() / batch.n_episodes
        entropy_term = entropy_loss(distribution.entropy(), log_prob)
        loss = policy_loss + self.ent_coef * entropy_term
        check_finite("policy loss", loss)
        self.policy.optimizer.zero_grad()
        loss.backward()
        ess = effective_sample_size(log_weights)
        stats = {
            "policy_gradient_loss": policy_loss.item(),
            "entropy_loss": entropy_term.item(),
            "loss": loss.item(),
            "grad_norm": self._clip_actor_gradient(),
            "is_weight_max": float(weights.max()),
            "is_weight_mean": float(weights.mean()),
            "ess": ess,
            "ess_fraction": ess / len(log_weights),
        }
        self.policy.optimizer.step()
        if self.baseline == "value":
            targets = reward_to_go(batch.rewards, batch.episode_lengths, self.gamma)
            stats["explained_variance"] = float(explained_variance(values.detach().flatten().cpu().numpy(), targets))
            stats["value_loss"] = self._fit_critic(observations, targets, self.n_critic_updates)
        return stats

    def train(self, gradient_steps: int, batch_size: int) -> None:
        """
        ``gradient_steps`` gradient steps, each on ``batch_size`` whole episodes sampled from the replay (none before
        the first episode has ended: with ``train_freq`` in steps, the replay can still be empty).

        :param gradient_steps: Number of gradient steps
        :param batch_size: Episodes per gradient step
        """
        assert self.replay_buffer is not None
        self._update_learning_rate(self.policy.optimizer)
        critic_learning_rate = self._update_critic_learning_rate()
        if self.replay_buffer.n_episodes == 0:
            return
        self.policy.set_training_mode(True)
        history: dict[str, list[float]] = {}
        for _ in range(gradient_steps):
            for key, value in self.gradient_step(self.replay_buffer.sample_episodes(batch_size)).items():
                history.setdefault(key, []).append(value)
            self._n_updates += 1
        for key, values in history.items():
            self.logger.record(f"train/{key}", float(np.max(values) if key == "is_weight_max" else np.mean(values)))
        if self.baseline == "value":
            self.logger.record("train/critic_learning_rate", critic_learning_rate)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(
        self: SelfOffPolicyPG,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "OffPolicyPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOffPolicyPG:
        n_updates_before = self._n_updates
        super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
        ran_to_the_end = self.num_timesteps >= self._total_timesteps
        wanted_updates = self.gradient_steps != 0 and self.num_timesteps > self.learning_starts
        if self._n_updates == n_updates_before and ran_to_the_end and wanted_updates:
            warnings.warn(
                f"OffPolicyPG made no gradient step in {self.num_timesteps} env steps: no episode ended, and the estimator "
                "needs whole episodes. Train for longer, or shorten the episodes (gymnasium.wrappers.TimeLimit).",
                UserWarning,
                stacklevel=2,
            )
        return self
