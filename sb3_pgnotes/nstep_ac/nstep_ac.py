"""NStepAC: batch and online actor-critic with Monte Carlo, TD(0) or n-step critic targets."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor

from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.collection import EpisodeQuota, EpisodeSegments, StepsPerEnv, without_distribution_validation
from sb3_pgnotes.common.critic import SeparateCriticMixin, evaluate_values
from sb3_pgnotes.common.on_policy import EpisodicOnPolicyAlgorithm
from sb3_pgnotes.common.policies import actions_to_tensor, entropy_loss
from sb3_pgnotes.common.returns import discount_weights, nstep_returns, reward_to_go, standardize, td_targets
from sb3_pgnotes.common.validation import (
    check_choice,
    check_finite,
    check_positive_int,
    check_schedule,
    is_choice,
    warn_ignored,
)
from sb3_pgnotes.nstep_ac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfNStepAC = TypeVar("SelfNStepAC", bound="NStepAC")

MODES = ("batch", "online")
CRITIC_TARGETS = ("mc", "td", "nstep")
COLLECTIONS = ("episodes", "rollout")
DISCOUNT_OPTIONS = (1, 2)
#: Rollout length (env steps per env per update) of batch mode with a bootstrapped target. Longer than A2C's 5: the
#: critic's several steps per update need more data, and on one env 5-step rollouts collapsed on Acrobot-v1
#: (``docs/benchmarks/defaults``).
DEFAULT_N_STEPS = 16


class NStepAC(SeparateCriticMixin, EpisodicOnPolicyAlgorithm):
    """
    Batch and online actor-critic with Monte Carlo, TD(0) or n-step critic targets (``docs/theory.md``,
    "Critic targets").

    Each update (1) collects data with the current policy, (2) fits the critic V_phi by regression on the target
    y_t, (3) forms the advantage ``A_t = y_t - V_phi(s_t)`` with the fitted critic and (4) takes one actor step on
    ``g = mean_t w_t grad log pi(a_t|s_t) A_t``, with ``w_t`` 1 (discount option 1) or ``gamma^t`` (option 2,
    t the step's time in its episode). The critic targets:

    - ``"mc"``: the discounted reward-to-go ``sum_{t'>=t} gamma^(t'-t) r_t'``;
    - ``"td"``: ``r_t + gamma V(s_{t+1})``, whose advantage is the TD error ``r + gamma V(s') - V(s)``;
    - ``"nstep"``: ``sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n})``, its n-step analogue.

    The data of an update come from one of two collections, chosen with ``collection``: ``"episodes"`` gathers
    ``n_episodes`` whole episodes (with the per-env quota of the episodic base), ``"rollout"`` a fixed-length rollout
    of ``n_steps`` steps per env, as A2C's. Any target works with either: the targets are computed over segments,
    and the lookahead is cut at episode ends (no bootstrap after a termination), at time-limit truncation
    (bootstrapped from ``infos[i]["terminal_observation"]``, never from the auto-reset observation) and at a
    rollout's edge (bootstrapped from the next observation). So ``"mc"`` over a rollout is the return to the
    rollout's edge completed by the critic, and ``"mc"`` over whole episodes also completes time-limit-truncated
    episodes with ``gamma^(T-t) V(terminal_observation)``: the time limit is not part of the task the critic
    evaluates.

    In ``"batch"`` mode the critic is fitted with ``n_target_updates`` rounds of ``n_grad_steps_per_target_update``
    full-batch gradient steps, the bootstrapped targets being recomputed from the current critic at the start of
    each round (CS285's "target updates" x "gradient steps per target update"). ``"online"`` mode is the textbook
    online actor-critic: one env step per env, then the critic and actor updates, the ``n_envs`` parallel workers
    forming the batch (a rollout of length 1 with the ``"td"`` target).

    The actor loss is a mean over the batch's steps (as SB3's A2C), so its gradient is the estimator's sum over steps
    divided by the number of steps. Actor and critic have separate optimisers (the policy's ``optimizer_class``);
    a features extractor shared by both is trained by the actor only.

    An option that the chosen configuration does not use gives a ``UserWarning`` when set away from its default;
    invalid arguments raise a ``ValueError`` at construction that names them.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the actor, constant or a function of the progress remaining (1 to 0)
    :param mode: ``"batch"`` (collect a batch, fit the critic, one actor step) or ``"online"`` (an update after
        every env step)
    :param critic_target: ``"mc"``, ``"td"`` or ``"nstep"``; ``"online"`` mode needs ``"td"``
    :param target_n: n of the ``"nstep"`` target (number of rewards before the bootstrap); only with ``"nstep"``
    :param n_steps: Rollout length (env steps per env per update) with ``collection="rollout"``; ``None`` gives
        ``DEFAULT_N_STEPS`` in batch mode and 1 in online mode (the only value it allows). Must be ``None`` with
        ``collection="episodes"``
    :param n_episodes: Number of whole episodes per update with ``collection="episodes"``, spread over the envs
    :param collection: ``"episodes"`` (``n_episodes`` whole episodes per update) or ``"rollout"`` (``n_steps`` steps
        per env per update); ``None`` chooses ``"episodes"`` for the ``"mc"`` target and ``"rollout"`` for the
        others. ``"online"`` mode needs ``"rollout"``
    :param gamma: Discount factor
    :param critic_learning_rate: Learning rate of the critic, constant or a schedule
    :param n_target_updates: Number of times the critic's targets are computed per update
    :param n_grad_steps_per_target_update: Number of full-batch critic gradient steps per target computation
    :param discount_option: 1: discount inside the targets only; 2: also weight step t by ``gamma^t``
        (``docs/theory.md``, "Discounting")
    :param normalize_advantage: Standardise the per-step actor weights over the batch
    :param ent_coef: Entropy coefficient for the loss calculation
    :param max_grad_norm: Maximum norm of the actor and of the critic gradient (``None``: no clipping)
    :param episode_step_limit: With ``"mc"``, an episode running longer than this raises an error instead of
        hanging training
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
        learning_rate: float | Schedule = 7e-4,
        mode: str = "batch",
        critic_target: str = "nstep",
        target_n: int = 16,
        n_steps: int | None = None,
        n_episodes: int = 10,
        collection: str | None = None,
        gamma: float = 0.99,
        critic_learning_rate: float | Schedule = 1e-3,
        n_target_updates: int = 1,
        n_grad_steps_per_target_update: int = 5,
        discount_option: int = 1,
        normalize_advantage: bool = False,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = 0.5,
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
        check_choice("mode", mode, MODES)
        check_choice("critic_target", critic_target, CRITIC_TARGETS)
        check_positive_int("target_n", target_n)
        check_positive_int("n_target_updates", n_target_updates)
        check_positive_int("n_grad_steps_per_target_update", n_grad_steps_per_target_update)
        check_choice("discount_option", discount_option, DISCOUNT_OPTIONS)
        check_choice("normalize_advantage", normalize_advantage, (True, False))
        if mode == "online" and critic_target != "td":
            raise ValueError(
                f"mode='online' updates after every env step, so critic_target must be 'td'; got {critic_target!r}"
            )
        if collection is None:
            collection = "episodes" if critic_target == "mc" else "rollout"
        check_choice("collection", collection, COLLECTIONS)
        check_schedule("critic_learning_rate", critic_learning_rate)
        if critic_target != "nstep":
            warn_ignored("target_n", target_n, 16, "only with critic_target='nstep'")
        if collection != "episodes":
            warn_ignored("n_episodes", n_episodes, 10, "only with collection='episodes'")
            warn_ignored("episode_step_limit", episode_step_limit, 100_000, "only with collection='episodes'")
        if mode == "online" and collection != "rollout":
            raise ValueError(f"mode='online' takes one step per update, so collection must be 'rollout'; got {collection!r}")
        if collection == "episodes":
            # 0 is what a saved model stores for "no rollout length".
            if n_steps is not None and not is_choice(n_steps, (0,)):
                raise ValueError(f"n_steps must be None with collection='episodes' (it collects n_episodes); got {n_steps!r}")
        elif mode == "online":
            if n_steps is not None and not is_choice(n_steps, (1,)):
                raise ValueError(f"n_steps must be None or 1 in mode='online' (one step per update); got {n_steps!r}")
        elif n_steps is not None:
            check_positive_int("n_steps", n_steps)
        self.mode = mode
        self.critic_target = critic_target
        self.target_n = target_n
        self.collection = collection
        # SB3's rollout length attribute; 0 for the episodic collection, as in the episodic base.
        self.n_steps = 0 if collection == "episodes" else 1 if mode == "online" else n_steps or DEFAULT_N_STEPS
        self.critic_learning_rate = critic_learning_rate
        self.n_target_updates = n_target_updates
        self.n_grad_steps_per_target_update = n_grad_steps_per_target_update
        self.discount_option = discount_option
        self.normalize_advantage = normalize_advantage
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.n_steps == 0:
            # A file saved before `collection` existed: its whole-episode models load with the default "rollout".
            self.collection = "episodes"
        super()._setup_model()
        self._setup_critic()

    def collection_rule(self) -> EpisodeSegments:
        """:return: ``n_episodes`` whole episodes, or a rollout of ``n_steps`` steps per env (see ``collection``)"""
        if self.collection == "episodes":
            return EpisodeQuota(self.n_episodes)
        return StepsPerEnv(self.n_steps)

    def process_batch(self, batch: EpisodeBatch, rollout_buffer: RolloutBuffer) -> None:
        """
        Evaluate the critic on the batch (and on the observations the segments' targets bootstrap from), and load
        the buffer with the critic targets as returns and ``y_t - V(s_t)`` as advantages, before any critic step.

        :param batch: The segments collected
        :param rollout_buffer: The episodic rollout buffer
        """
        batch.values, batch.bootstrap_values = evaluate_values(self.policy, batch, device=self.device)
        targets = self.value_targets(batch, batch.values, batch.bootstrap_values)
        rollout_buffer.load_batch(batch, batch.values, targets, targets - batch.values)  # type: ignore[attr-defined]

    def value_targets(self, batch: EpisodeBatch, values: np.ndarray, bootstrap_values: np.ndarray) -> np.ndarray:
        """
        :param batch: The segments
        :param values: Per-step ``V(s_t)``
        :param bootstrap_values: Per-segment ``V(s_T)`` after its last step (0 where the episode terminated)
        :return: Per-step critic targets y_t of ``critic_target``
        """
        if self.critic_target == "mc":
            return reward_to_go(batch.rewards, batch.episode_lengths, self.gamma, bootstrap_values)
        if self.critic_target == "td":
            return td_targets(batch.rewards, values, batch.episode_lengths, self.gamma, bootstrap_values)
        return nstep_returns(batch.rewards, values, batch.episode_lengths, self.gamma, self.target_n, bootstrap_values)

    def policy_gradient_weights(self, targets: np.ndarray, values: np.ndarray, step_times: np.ndarray) -> np.ndarray:
        """
        The per-step factor that multiplies ``grad log pi(a_t|s_t)`` in the estimator.

        :param targets: Per-step critic targets y_t from the fitted critic
        :param values: Per-step ``V(s_t)`` of the fitted critic
        :param step_times: Per-step time index within the episode
        :return: ``w_t (y_t - V(s_t))``, standardised if ``normalize_advantage``
        """
        weights = targets - values
        if self.discount_option == 2:
            weights = weights * discount_weights(step_times, self.gamma)
        return standardize(weights) if self.normalize_advantage else weights

    def values_and_targets(self, batch: EpisodeBatch) -> tuple[np.ndarray, np.ndarray]:
        """
        :param batch: The segments
        :return: Per-step ``V(s_t)`` and critic targets, from the current critic
        """
        values, bootstrap_values = evaluate_values(self.policy, batch, device=self.device)
        return values, self.value_targets(batch, values, bootstrap_values)

    def train(self) -> None:
        """
        Fit the critic to the targets of the collected batch, then take one actor step with the fitted critic's
        advantages.
        """
        batch = self.episode_batch
        assert batch is not None and batch.values is not None and batch.bootstrap_values is not None
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        critic_learning_rate = self._update_critic_learning_rate()

        observations = obs_as_tensor(batch.observations, self.device)  # type: ignore[arg-type]
        # Targets recomputed from the current critic before each round of critic steps (the first round's are those
        # of the critic at collection, which the rollout buffer holds as its returns), then once more for the
        # advantages of the fitted critic.
        targets_before = self.rollout_buffer.returns.flatten()
        value_loss = self._fit_critic(observations, targets_before, self.n_grad_steps_per_target_update)
        for _ in range(self.n_target_updates - 1):
            value_loss = self._fit_critic(observations, self.values_and_targets(batch)[1], self.n_grad_steps_per_target_update)
        values, targets = self.values_and_targets(batch)
        weights = self.policy_gradient_weights(targets, values, batch.step_times)

        actions = actions_to_tensor(batch.actions, self.action_space, self.device)
        with without_distribution_validation():
            distribution = self.policy.get_distribution(observations)
        log_prob = distribution.log_prob(actions)
        policy_loss = -(log_prob * th.as_tensor(weights, dtype=th.float32, device=self.device)).mean()
        entropy_term = entropy_loss(distribution.entropy(), log_prob)
        loss = policy_loss + self.ent_coef * entropy_term
        check_finite("policy loss", loss)
        self.policy.optimizer.zero_grad()
        loss.backward()
        grad_norm = self._clip_actor_gradient()
        self.policy.optimizer.step()
        self._n_updates += 1

        self.logger.record("train/policy_gradient_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss)
        self.logger.record("train/entropy_loss", entropy_term.item())
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", float(explained_variance(batch.values, targets_before)))
        self.logger.record("train/critic_learning_rate", critic_learning_rate)
        self.logger.record("train/value_target_mean", float(targets.mean()))
        self.logger.record("train/advantage_mean", float((targets - values).mean()))
        self.logger.record("train/grad_norm", grad_norm)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(
        self: SelfNStepAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "NStepAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfNStepAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
