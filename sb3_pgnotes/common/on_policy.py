"""Episodic on-policy base: every update is computed from whole episodes."""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_pgnotes.common.buffers import EpisodeBatch, EpisodeCollector

SelfEpisodicOnPolicyAlgorithm = TypeVar("SelfEpisodicOnPolicyAlgorithm", bound="EpisodicOnPolicyAlgorithm")

SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


@contextmanager
def without_distribution_validation() -> Iterator[None]:
    """Turn off the argument validation of new ``torch.distributions`` objects, and restore it on exit."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def check_positive_int(name: str, value: Any) -> None:
    """
    :param name: Argument name, for the error message
    :param value: The value to check
    :raises ValueError: Unless ``value`` is an int >= 1
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_choice(name: str, value: Any, allowed: tuple) -> None:
    """
    :param name: Argument name, for the error message
    :param value: The value to check
    :param allowed: The allowed values
    :raises ValueError: Unless ``value`` is one of ``allowed`` (a bool never stands for 0/1 or the reverse)
    """

    def is_bool(x: Any) -> bool:
        return isinstance(x, (bool, np.bool_))

    if not any(is_bool(value) == is_bool(choice) and value == choice for choice in allowed):
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, low_open: bool = False) -> None:
    """
    :param name: Argument name, for the error message
    :param value: The value to check
    :param low: Lower bound
    :param high: Upper bound (inclusive)
    :param low_open: Exclude ``low`` itself
    :raises ValueError: Unless ``value`` is a real number (not a bool) in ``[low, high]`` (``(low, high]`` if ``low_open``)
    """
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not (low < value if low_open else low <= value) or not value <= high:
        raise ValueError(f"{name} must be a number in {'(' if low_open else '['}{low:g}, {high:g}]; got {value!r}")


def check_finite(name: str, value: th.Tensor) -> None:
    """
    :param name: What ``value`` is, for the error message
    :param value: A loss
    :raises ValueError: If ``value`` is NaN or infinite (rl-zoo3's tuner prunes a trial on ValueError)
    """
    if not th.isfinite(value).all():
        raise ValueError(
            f"The {name} is {value.item()}: training diverged. Lower the learning rate, clip gradients "
            "(max_grad_norm) or normalise advantages."
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


class EpisodicOnPolicyAlgorithm(OnPolicyAlgorithm):
    """
    The base for on-policy algorithms that update from whole episodes (REINFORCE and its relatives).

    Each update collects ``n_episodes`` complete episodes with the current policy, spread over the ``n_envs``
    environments with a fixed per-env quota (env ``i`` contributes ``n_episodes // n_envs`` episodes, plus one
    for the first ``n_episodes % n_envs`` envs). Taking "the first n episodes to finish" instead would
    over-sample short episodes and bias the gradient. An env that has met its quota keeps stepping (a VecEnv
    steps all envs together) but those steps are discarded, and the envs are reset before the next
    collection so that every stored episode comes entirely from one policy.

    Time-limit truncation is not termination: rewards are stored as the env gave them (SB3's on-policy loop
    folds ``gamma * V(terminal_obs)`` into the reward; a Monte Carlo method must not). Each episode records
    whether it was truncated and its ``terminal_observation``, so a subclass with a learned value can
    bootstrap it.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, constant or a function of the progress remaining (from 1 to 0)
    :param n_episodes: Number of whole episodes per update
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
        n_episodes: int,
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
        # Checked before SB3's own gSDE checks, which would misread a truthy non-boolean.
        check_choice("use_sde", use_sde, (True, False))
        if isinstance(sde_sample_freq, bool) or not isinstance(sde_sample_freq, int | np.integer):
            raise ValueError(f"sde_sample_freq must be an integer (-1: once per collection); got {sde_sample_freq!r}")
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
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            monitor_wrapper=monitor_wrapper,
            _init_setup_model=False,
            supported_action_spaces=SUPPORTED_ACTION_SPACES,
        )
        check_positive_int("n_episodes", n_episodes)
        check_positive_int("episode_step_limit", episode_step_limit)
        check_number("gamma", gamma, 0.0, 1.0)
        if max_grad_norm is not None:
            check_number("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        self.n_episodes = n_episodes
        self.episode_step_limit = episode_step_limit
        self.episode_batch: EpisodeBatch | None = None
        # True while some env is in the middle of an episode that was not collected with the current policy.
        self._envs_mid_episode = False
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "episode_batch"]

    def resample_exploration_noise(self, step: int, n_envs: int) -> None:
        """
        With gSDE, draw a new noise matrix at the first step of a collection and every ``sde_sample_freq`` steps,
        as SB3's ``collect_rollouts`` does.

        :param step: Index of the vec-env step within the current collection
        :param n_envs: Number of environments
        """
        if self.use_sde and (step == 0 or (self.sde_sample_freq > 0 and step % self.sde_sample_freq == 0)):
            self.policy.reset_noise(n_envs)

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        # Episodic collection overshoots total_timesteps by design.
        self._current_progress_remaining = clamped_progress_remaining(num_timesteps, total_timesteps)

    def episode_quotas(self, n_envs: int) -> np.ndarray:
        """
        :param n_envs: Number of environments
        :return: How many episodes each env contributes to one update
        """
        quotas = np.full(n_envs, self.n_episodes // n_envs, dtype=np.int64)
        quotas[: self.n_episodes % n_envs] += 1
        return quotas

    def _sample_actions(self, obs_tensor: th.Tensor | dict[str, th.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        # torch's argument validation costs more than the sampling itself on small policies; the policy's
        # own outputs need no checking (non-finite logits still fail in the sampler).
        with without_distribution_validation():
            distribution = self.policy.get_distribution(obs_tensor)
            actions = distribution.get_actions()
            log_probs = distribution.log_prob(actions)
        return actions.cpu().numpy(), log_probs.cpu().numpy()

    def collect_episodes(self, env: VecEnv, callback: BaseCallback) -> bool:
        """
        Collect ``n_episodes`` whole episodes with the current policy into ``self.episode_batch``.

        :param env: The training environment
        :param callback: Callback called once per env step (and at the start and end of the rollout)
        :return: False if the callback stopped training (the partial batch is dropped)
        """
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        if self._envs_mid_episode:
            self._last_obs = env.reset()  # type: ignore[assignment]
            self._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
            self._envs_mid_episode = False

        quotas = self.episode_quotas(env.num_envs)
        episodes_done = np.zeros(env.num_envs, dtype=np.int64)
        episode_steps = np.zeros(env.num_envs, dtype=np.int64)
        collector = EpisodeCollector(env.num_envs)
        callback.on_rollout_start()

        while np.any(episodes_done < quotas):
            self.resample_exploration_noise(collector.n_vec_steps, env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, log_probs = self._sample_actions(obs_tensor)
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                # The env gets actions within its bounds; the log-prob and the stored action stay the raw sample.
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs

            callback.update_locals(locals())
            if not callback.on_step():
                self._envs_mid_episode = True
                return False
            self._update_info_buffer(infos, dones)

            counted = episodes_done < quotas
            collector.add_step(self._last_obs, actions, rewards, log_probs, counted)  # type: ignore[arg-type]
            episode_steps += 1
            if np.any(episode_steps[counted] > self.episode_step_limit):
                raise ValueError(
                    f"An episode ran for more than episode_step_limit={self.episode_step_limit} steps without ending. "
                    "Wrap the env in gymnasium.wrappers.TimeLimit or raise episode_step_limit."
                )
            for idx in np.flatnonzero(dones & counted):
                collector.end_episode(
                    int(idx),
                    int(episode_steps[idx]),
                    bool(infos[idx].get("TimeLimit.truncated", False)),
                    infos[idx].get("terminal_observation"),
                )
                episodes_done[idx] += 1
            episode_steps[dones] = 0
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        self._envs_mid_episode = bool(np.any(episode_steps > 0))
        self.episode_batch = collector.build()
        self.logger.record("rollout/n_episodes", self.episode_batch.n_episodes)
        self.logger.record("rollout/discarded_steps", env.num_envs * collector.n_vec_steps - self.episode_batch.n_steps)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def collect_batch(self, env: VecEnv, callback: BaseCallback) -> bool:
        """
        Collect the data of one update: whole episodes here; a subclass that also learns from fixed-length
        rollouts overrides this.

        :param env: The training environment
        :param callback: Callback called once per env step (and at the start and end of the rollout)
        :return: False if the callback stopped training
        """
        return self.collect_episodes(env, callback)

    def learn(
        self: SelfEpisodicOnPolicyAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "EpisodicOnPolicyAlgorithm",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfEpisodicOnPolicyAlgorithm:
        iteration = 0
        total_timesteps, callback = self._setup_learn(
            total_timesteps,
            callback,
            reset_num_timesteps,
            tb_log_name,
            progress_bar,
        )
        callback.on_training_start(locals(), globals())
        assert self.env is not None

        while self.num_timesteps < total_timesteps:
            if not self.collect_batch(self.env, callback):
                break
            iteration += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            if log_interval is not None and iteration % log_interval == 0:
                self.dump_logs(iteration)
            self.train()

        callback.on_training_end()
        return self

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        self._envs_mid_episode = False
