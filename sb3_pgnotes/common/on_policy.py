"""The base of our on-policy algorithms: one collection engine, SB3's rollout buffer, SB3's training loop."""

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_pgnotes.common.buffers import EpisodeBatch, episodic_rollout_buffer_class
from sb3_pgnotes.common.collection import Collector, EpisodeQuota, EpisodeSegments
from sb3_pgnotes.common.guards import GuardedAlgorithm, explain_policy_errors
from sb3_pgnotes.common.validation import (
    SUPPORTED_ACTION_SPACES,
    check_choice,
    check_common_arguments,
    check_number,
    check_positive_int,
    check_sde_sample_freq,
)


def clamped_progress_remaining(num_timesteps: int, total_timesteps: int) -> float:
    """
    SB3's progress remaining, ``1 - num_timesteps / total_timesteps``, clamped at 0.

    A rollout (a fixed number of steps, or whole episodes) can overshoot ``total_timesteps``; schedules must
    not see a negative progress.

    :param num_timesteps: Env steps taken so far
    :param total_timesteps: Env steps the current ``learn()`` call runs to
    :return: The progress remaining, in [0, 1]
    """
    return max(0.0, 1.0 - float(num_timesteps) / float(total_timesteps))


class EpisodicOnPolicyAlgorithm(GuardedAlgorithm, OnPolicyAlgorithm):
    """
    The base for on-policy algorithms that update from whole episodes (REINFORCE and its relatives), or from
    fixed-length rollouts cut into per-env segments (a subclass's :meth:`collection_rule`).

    Each update collects ``n_episodes`` complete episodes with the current policy, spread over the ``n_envs``
    environments with a fixed per-env quota (see :class:`~sb3_pgnotes.common.collection.EpisodeQuota`); the envs
    are reset before the next collection so that every stored episode comes entirely from one policy. The batch is
    kept twice over the same arrays: ``episode_batch`` holds the episode structure the math needs (lengths,
    truncation, terminal observations), and ``rollout_buffer`` is SB3's ``RolloutBuffer`` with one row per step, as
    large as the batch, holding observations, actions, rewards, episode starts, values, log-probabilities, returns and
    advantages after each collection, as for A2C and PPO. Training runs SB3's own ``OnPolicyAlgorithm.learn`` loop.

    Time-limit truncation is not termination: rewards are stored as the env gave them (SB3's on-policy loop
    folds ``gamma * V(terminal_obs)`` into the reward; a Monte Carlo method must not). Each episode records
    whether it was truncated and its ``terminal_observation``, so a subclass with a learned value can
    bootstrap it.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, constant or a function of the progress remaining (from 1 to 0)
    :param n_episodes: Number of whole episodes per update (``None``: one per env)
    :param gamma: Discount factor
    :param ent_coef: Entropy coefficient for the loss calculation
    :param max_grad_norm: Maximum norm of the gradient (``None``: no clipping)
    :param episode_step_limit: An episode that runs longer than this many steps raises an error, so that an env
        that never ends cannot hang training (wrap such an env in ``gymnasium.wrappers.TimeLimit``)
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

    policy: ActorCriticPolicy
    n_episodes: int
    episode_step_limit: int
    _envs_mid_episode: bool

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule,
        n_episodes: int | None,
        gamma: float,
        ent_coef: float,
        max_grad_norm: float | None,
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
        # Checked before SB3 reads them (its own gSDE checks would misread a truthy non-boolean).
        check_common_arguments(
            learning_rate, ent_coef, stats_window_size, device, seed, verbose, policy_kwargs, tensorboard_log
        )
        check_choice("use_sde", use_sde, (True, False))
        check_choice("monitor_wrapper", monitor_wrapper, (True, False))
        check_sde_sample_freq(sde_sample_freq)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            # Episodic: the amount of data per update is set by n_episodes, not by a fixed number of steps.
            n_steps=0,
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=0.0,
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=int(stats_window_size),  # deque refuses numpy integers
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            monitor_wrapper=monitor_wrapper,
            _init_setup_model=False,
            supported_action_spaces=SUPPORTED_ACTION_SPACES,
        )
        if n_episodes is None:
            # One per env; without one (as SB3's load builds the model), the saved value replaces it.
            n_episodes = self.n_envs if self.env is not None else 1
        check_positive_int("n_episodes", n_episodes)
        check_positive_int("episode_step_limit", episode_step_limit)
        check_number("gamma", gamma, 0.0, 1.0)
        if max_grad_norm is not None:
            check_number("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        self.n_episodes = n_episodes
        self.episode_step_limit = episode_step_limit
        self.episode_batch: EpisodeBatch | None = None
        self.collector = Collector(self)
        # True while some env is in the middle of an episode that was not collected with the current policy.
        self._envs_mid_episode = False
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self.rollout_buffer_class = episodic_rollout_buffer_class(self.observation_space)
        with explain_policy_errors(self.observation_space, self.policy_class):
            super()._setup_model()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "episode_batch", "collector"]

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        # Episodic collection overshoots total_timesteps by design.
        self._current_progress_remaining = clamped_progress_remaining(num_timesteps, total_timesteps)

    def episode_quotas(self, n_envs: int) -> np.ndarray:
        """
        :param n_envs: Number of environments
        :return: How many episodes each env contributes to one update
        """
        return EpisodeQuota.episode_quotas(self.n_episodes, n_envs)

    def collection_rule(self) -> EpisodeSegments:
        """:return: What one update collects: ``n_episodes`` whole episodes here"""
        return EpisodeQuota(self.n_episodes)

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int = 0,
    ) -> bool:
        """
        Collect the data of one update with the current policy (see :meth:`collection_rule`) into
        ``self.episode_batch`` (the episode structure) and ``rollout_buffer`` (SB3's layout, with the values, returns
        and advantages of :meth:`process_batch`), as SB3's ``collect_rollouts`` fills its buffer.

        :param env: The training environment
        :param callback: Callback called once per env step (and at the start and end of the rollout)
        :param rollout_buffer: The buffer to fill (an episodic rollout buffer)
        :param n_rollout_steps: Unused: the collection rule sets the amount of data
        :return: False if the callback stopped training (the partial batch is dropped)
        """
        rule = self.collection_rule()
        if rule.needs_episode_ends and self._envs_mid_episode:
            # Every stored episode must come entirely from one policy.
            self._last_obs = env.reset()  # type: ignore[assignment]
            self._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
            self._envs_mid_episode = False

        def on_collected() -> None:
            self.episode_batch = rule.batch()
            if isinstance(rule, EpisodeQuota):
                self._envs_mid_episode = rule.partial_episodes
                self.logger.record("rollout/n_episodes", self.episode_batch.n_episodes)
                discarded = env.num_envs * rule.n_vec_steps - self.episode_batch.n_steps
                self.logger.record("rollout/discarded_steps", discarded)
            self.process_batch(self.episode_batch, rollout_buffer)

        callback_locals = {"rollout_buffer": rollout_buffer, "n_rollout_steps": n_rollout_steps}
        if not self.collector.collect(env, callback, rule, on_collected, callback_locals):
            self._envs_mid_episode = rule.needs_episode_ends
            return False
        return True

    def process_batch(self, batch: EpisodeBatch, rollout_buffer: RolloutBuffer) -> None:
        """
        Compute what the update needs from the critic at collection time, and load the batch with its values,
        returns and advantages into ``rollout_buffer``.

        :param batch: The episodes collected
        :param rollout_buffer: The episodic rollout buffer
        """
        raise NotImplementedError

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        # Without a reset, an env left mid-episode is still mid-episode.
        if force_reset:
            self._envs_mid_episode = False
