"""
The one collection loop: it steps a ``VecEnv`` with an algorithm's current policy and hands every step to a
stopping rule, which decides how long the collection runs and what becomes of the steps.

The loop does for actions what SB3's ``collect_rollouts`` does (reshape to the action space; rescale a squashed
policy's actions to the env's bounds, clip the others; gSDE noise resampling; ``callback.update_locals`` and
``on_step`` once per env step; the episode-info buffer), and it owns the guards: an episode that never ends.
"""

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, TrainFreq
from stable_baselines3.common.utils import obs_as_tensor, should_collect_more_steps
from stable_baselines3.common.vec_env import VecEnv

from sb3_pgnotes.common.buffers import EpisodeAssembler, EpisodeBatch, Observation, select_env
from sb3_pgnotes.common.validation import check_env_data, check_terminal_observations


class without_distribution_validation:
    """
    Turn off the argument validation of new ``torch.distributions`` objects, and restore it on exit. A class rather
    than a ``contextlib.contextmanager``: it runs at every env step, where the generator machinery costs more.
    """

    def __enter__(self) -> None:
        self.previous = th.distributions.Distribution._validate_args
        th.distributions.Distribution.set_default_validate_args(False)

    def __exit__(self, *exc_info: object) -> None:
        th.distributions.Distribution.set_default_validate_args(self.previous)


LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def _actor_output(policy: ActorCriticPolicy, obs_tensor: PyTorchObs) -> th.Tensor:
    """The action head's output, computed as ``ActorCriticPolicy.get_distribution`` computes it."""
    features = super(ActorCriticPolicy, policy).extract_features(obs_tensor, policy.pi_features_extractor)
    return policy.action_net(policy.mlp_extractor.forward_actor(features))


def _sample_categorical(policy: ActorCriticPolicy, obs_tensor: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
    # torch's Categorical (sample, then log_prob) step by step, without building the object. The draw is what
    # th.multinomial(probs, 1) computes for one sample (argmax of probs / Exp(1) noise, the same generator calls),
    # without its input checks, which cost two host synchronisations per step; sample_actions checks the result.
    logits = _actor_output(policy, obs_tensor)
    log_pmf = logits - logits.logsumexp(dim=-1, keepdim=True)
    probs = log_pmf.softmax(dim=-1)
    actions = (probs / th.empty_like(probs).exponential_(1)).argmax(dim=-1, keepdim=True)
    return actions.squeeze(-1), log_pmf.gather(-1, actions).squeeze(-1)


def _sample_diag_gaussian(policy: ActorCriticPolicy, obs_tensor: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
    # torch's Normal (rsample, then log_prob) step by step, summed over action dimensions as SB3 does.
    mean = _actor_output(policy, obs_tensor)
    std = th.ones_like(mean) * policy.log_std.exp()
    actions = mean + th.empty_like(mean).normal_() * std
    log_probs = -((actions - mean) ** 2) / (2 * std**2) - std.log() - LOG_SQRT_2PI
    return actions, log_probs.sum(dim=1)


def _direct_sampler(
    policy: ActorCriticPolicy,
) -> Callable[[ActorCriticPolicy, PyTorchObs], tuple[th.Tensor, th.Tensor]] | None:
    """
    A sampler that does what ``get_distribution``, ``get_actions`` and ``log_prob`` do, with the same random draws
    and the same floats, without building distribution objects (which cost more than the forward pass of a small
    policy); None where the policy's own methods must run: a policy class that overrides how the distribution is
    made, or another distribution.
    """
    policy_class = type(policy)
    if (
        policy_class.get_distribution is not ActorCriticPolicy.get_distribution
        or policy_class._get_action_dist_from_latent is not ActorCriticPolicy._get_action_dist_from_latent
    ):
        return None
    return {CategoricalDistribution: _sample_categorical, DiagGaussianDistribution: _sample_diag_gaussian}.get(
        type(policy.action_dist)
    )


def sample_actions(
    policy: ActorCriticPolicy, observations: Observation, device: th.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """
    Sample one action per env from the policy, with its log-probability.

    :param policy: The policy
    :param observations: The envs' current observations
    :param device: The policy's device (``None``: ask the policy, which costs a walk over its parameters)
    :return: Raw actions shaped as the action space, (n_envs, ...), and their log-probabilities, (n_envs,)
    """
    with th.no_grad():
        obs_tensor = obs_as_tensor(observations, policy.device if device is None else device)  # type: ignore[arg-type]
        sampler = _direct_sampler(policy)
        if sampler is not None:
            actions, log_probs = sampler(policy, obs_tensor)
        else:
            # torch's argument validation costs more than the sampling itself on small policies; the log-probabilities
            # are checked below.
            with without_distribution_validation():
                distribution = policy.get_distribution(obs_tensor)
                actions = distribution.get_actions()
                log_probs = distribution.log_prob(actions)
    log_probs_np = log_probs.cpu().numpy()
    if not np.isfinite(log_probs_np).all():
        raise ValueError(
            f"The policy's action distribution is not finite (log-probabilities of the sampled actions: {log_probs_np}): "
            "its parameters diverged. Lower the learning rate, clip gradients (max_grad_norm) or normalise advantages."
        )
    action_shape = cast(tuple[int, ...], policy.action_space.shape)
    return actions.cpu().numpy().reshape((-1, *action_shape)), log_probs_np


def env_actions(policy: ActorCriticPolicy, actions: np.ndarray) -> np.ndarray:
    """
    The actions the env receives, as in SB3's ``collect_rollouts``: a squashed policy's actions (in [-1, 1]) are
    rescaled to the bounds of a ``Box`` action space, other ``Box`` actions clipped to them.

    :param policy: The policy that sampled the actions
    :param actions: Raw actions
    :return: The actions to send to the env
    """
    if not isinstance(policy.action_space, spaces.Box):
        return actions
    if policy.squash_output:
        return policy.unscale_action(actions)
    return np.clip(actions, policy.action_space.low, policy.action_space.high)


class StoppingRule(ABC):
    """
    Decides how long a collection runs and what becomes of its steps.

    :param needs_episode_ends: Whether the rule's data are whole episodes, so that an episode that never ends must
        stop the collection with an error rather than stall it
    """

    def __init__(self, needs_episode_ends: bool) -> None:
        self.needs_episode_ends = needs_episode_ends

    def start(self, n_envs: int) -> None:  # noqa: B027 (optional hook)
        """
        Called before the first step of a collection.

        :param n_envs: Number of environments
        """

    @abstractmethod
    def wants_more(self, n_vec_steps: int) -> bool:
        """
        :param n_vec_steps: Vec-env steps taken so far in this collection
        :return: Whether to take another vec-env step
        """

    def counted(self) -> np.ndarray | None:
        """:return: Which envs' steps still count (the step-limit guard ignores the others); None: all"""
        return None

    @abstractmethod
    def add_step(self, step: "Step") -> None:
        """
        Store or forward one vec-env step.

        :param step: The step
        """

    def finish(self, next_observations: Observation) -> None:  # noqa: B027 (optional hook)
        """
        Called after the last step of a collection that the callback did not stop.

        :param next_observations: The envs' observations after the last step
        """


class Step:
    """
    One vec-env step as the collection loop saw it.

    :param observations: Observations the actions were taken in
    :param actions: Raw actions (before rescaling or clipping for the env)
    :param rewards: Rewards
    :param dones: Whether each env's episode ended (terminated or truncated)
    :param infos: The env's infos
    :param log_probs: Log-probabilities of the actions
    :param step_times: Time index of the step within each env's episode
    :param any_done: Whether some env's episode ended
    """

    __slots__ = ("actions", "any_done", "dones", "infos", "log_probs", "observations", "rewards", "step_times")

    def __init__(
        self,
        observations: Observation,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
        log_probs: np.ndarray,
        step_times: np.ndarray,
        any_done: bool,
    ) -> None:
        self.observations = observations
        self.actions = actions
        self.rewards = rewards
        self.dones = dones
        self.infos = infos
        self.log_probs = log_probs
        self.step_times = step_times
        self.any_done = any_done

    def truncated(self, env_idx: int) -> bool:
        """:return: Whether a time limit cut env ``env_idx``'s episode at this step"""
        return bool(self.infos[env_idx].get("TimeLimit.truncated", False))

    def terminal_observation(self, env_idx: int) -> Observation | None:
        """:return: Env ``env_idx``'s observation after the last step of its episode (before the auto-reset)"""
        return self.infos[env_idx].get("terminal_observation")


class EpisodeSegments(StoppingRule):
    """
    Common part of the on-policy rules: each env's steps are assembled into segments, which are gathered into one
    batch, env 0's first (so a batch is contiguous runs of each env's steps).

    :param needs_episode_ends: See :class:`StoppingRule`
    """

    def __init__(self, needs_episode_ends: bool) -> None:
        super().__init__(needs_episode_ends)
        self.assembler = EpisodeAssembler(0)
        # Per env, its kept segments: (start, stop, truncated, observation after the last step if truncated).
        self._segments: list[list[tuple[int, int, bool, Observation | None]]] = []
        self.n_vec_steps = 0

    def start(self, n_envs: int) -> None:
        # Every row stays until the batch is gathered.
        self.assembler = EpisodeAssembler(n_envs, reclaim=False)
        self._segments = [[] for _ in range(n_envs)]
        self.n_vec_steps = 0

    def store(self, step: Step) -> None:
        """
        Store the step's data of every env.

        :param step: The step
        """
        self.assembler.add_step(step.observations, step.actions, step.rewards, step.log_probs, step.step_times)
        self.n_vec_steps += 1

    def keep_segment(self, env_idx: int, truncated: bool, next_observation: Observation | None) -> None:
        """
        End env ``env_idx``'s segment at the last stored step and keep it for the batch.

        :param env_idx: Index of the env
        :param truncated: Whether the episode goes on after the segment
        :param next_observation: The observation after the segment's last step (kept when truncated)
        """
        start, stop = self.assembler.close_segment(env_idx)
        self._segments[env_idx].append((start, stop, truncated, next_observation if truncated else None))

    def keep_episode_end(self, env_idx: int, step: Step) -> None:
        """
        Keep env ``env_idx``'s segment that its episode's end at this step closes.

        :param env_idx: Index of the env
        :param step: The step
        """
        truncated = step.truncated(env_idx)
        self.keep_segment(env_idx, truncated, step.terminal_observation(env_idx) if truncated else None)

    def batch(self) -> EpisodeBatch:
        """:return: The segments kept, env 0's first, each env's in time order"""
        kept = [(env_idx, *segment) for env_idx, segments in enumerate(self._segments) for segment in segments]
        return EpisodeBatch(
            **self.assembler.gather([(env_idx, start, stop) for env_idx, start, stop, _, _ in kept]),
            episode_lengths=np.array([stop - start for _, start, stop, _, _ in kept], dtype=np.int64),
            truncated=np.array([truncated for _, _, _, truncated, _ in kept], dtype=bool),
            terminal_observations=[terminal for _, _, _, _, terminal in kept],
        )


class EpisodeQuota(EpisodeSegments):
    """
    ``n_episodes`` whole episodes spread over the envs with a fixed per-env quota (env ``i`` contributes
    ``n_episodes // n_envs`` episodes, plus one for the first ``n_episodes % n_envs`` envs). Taking "the first n
    episodes to finish" instead would over-sample short episodes and bias the gradient. An env that has met its
    quota keeps stepping (a VecEnv steps all envs together) but its steps are discarded.

    :param n_episodes: Number of episodes
    """

    def __init__(self, n_episodes: int) -> None:
        super().__init__(needs_episode_ends=True)
        self.n_episodes = n_episodes
        self.quotas = np.zeros(0, dtype=np.int64)
        self.episodes_done = np.zeros(0, dtype=np.int64)
        #: Episodes still to collect (the quotas' sum less the episodes done)
        self.episodes_missing = 0

    @staticmethod
    def episode_quotas(n_episodes: int, n_envs: int) -> np.ndarray:
        """
        :param n_episodes: Number of episodes
        :param n_envs: Number of environments
        :return: How many episodes each env contributes
        """
        quotas = np.full(n_envs, n_episodes // n_envs, dtype=np.int64)
        quotas[: n_episodes % n_envs] += 1
        return quotas

    def start(self, n_envs: int) -> None:
        super().start(n_envs)
        self.quotas = self.episode_quotas(self.n_episodes, n_envs)
        self.episodes_done = np.zeros(n_envs, dtype=np.int64)
        self.episodes_missing = self.n_episodes

    def wants_more(self, n_vec_steps: int) -> bool:
        return self.episodes_missing > 0

    def counted(self) -> np.ndarray:
        return self.episodes_done < self.quotas

    def add_step(self, step: Step) -> None:
        self.store(step)
        if not step.any_done:
            return
        counted = self.counted()
        for idx in np.flatnonzero(step.dones).tolist():
            if counted[idx]:
                self.keep_episode_end(idx, step)
                self.episodes_done[idx] += 1
                self.episodes_missing -= 1
            else:
                self.assembler.drop_segment(idx)

    @property
    def partial_episodes(self) -> bool:
        """Whether some env is in the middle of an episode after the collection."""
        return bool(np.any(self.assembler.open_lengths > 0))


class StepsPerEnv(EpisodeSegments):
    """
    A rollout of ``n_steps`` steps of every env, as A2C's. The segments end at episode ends and at the rollout's
    edge, where the episodes still running are cut (marked truncated, with the next observation to bootstrap from).

    :param n_steps: Steps per env
    """

    def __init__(self, n_steps: int) -> None:
        super().__init__(needs_episode_ends=False)
        self.n_steps = n_steps

    def wants_more(self, n_vec_steps: int) -> bool:
        return n_vec_steps < self.n_steps

    def add_step(self, step: Step) -> None:
        self.store(step)
        if step.any_done:
            for idx in np.flatnonzero(step.dones).tolist():
                self.keep_episode_end(idx, step)

    def finish(self, next_observations: Observation) -> None:
        for idx in np.flatnonzero(self.assembler.open_lengths).tolist():
            self.keep_segment(idx, True, select_env(next_observations, idx))


class EpisodesToReplay(StoppingRule):
    """
    Off-policy collection for ``train_freq`` (steps or episodes), as SB3's ``OffPolicyAlgorithm``: every step goes to
    the replay buffer's ``add``, which stores each episode whole when it ends.

    :param add: The replay buffer's ``add``, called with (obs, next_obs, action, reward, done, infos, log_prob)
    :param train_freq: How much to collect
    :param after_step: Called after each step with the number of episodes that ended in it (progress, logging)
    """

    def __init__(self, add: Callable[..., None], train_freq: TrainFreq, after_step: Callable[[int], None]) -> None:
        super().__init__(needs_episode_ends=True)
        self.add = add
        self.train_freq = train_freq
        self.after_step = after_step
        self.n_episodes = 0

    def start(self, n_envs: int) -> None:
        self.n_episodes = 0

    def wants_more(self, n_vec_steps: int) -> bool:
        return should_collect_more_steps(self.train_freq, n_vec_steps, self.n_episodes)

    def add_step(self, step: Step) -> None:
        self.add(step.observations, None, step.actions, step.rewards, step.dones, step.infos, log_prob=step.log_probs)
        ended = int(np.count_nonzero(step.dones)) if step.any_done else 0
        self.n_episodes += ended
        self.after_step(ended)


class CollectingModel(Protocol):
    """What the collection loop reads and updates on the algorithm (SB3's attributes, so callbacks see them)."""

    policy: Any
    device: th.device
    num_timesteps: int
    _last_obs: Any
    _last_episode_starts: Any
    use_sde: bool
    sde_sample_freq: int
    episode_step_limit: int

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None: ...


class Collector:
    """
    Steps an algorithm's training env with its current policy. Kept by the algorithm: it carries the time index of
    every env's running episode from one collection to the next.

    :param model: The algorithm (its policy, ``num_timesteps``, ``_last_obs``, ``_last_episode_starts``, gSDE
        settings and episode-info buffer are used). Its ``episode_step_limit``: an episode that must end (see
        :attr:`StoppingRule.needs_episode_ends`) and runs longer than this many steps raises an error
    """

    def __init__(self, model: CollectingModel) -> None:
        self.model = model
        self.episode_times = np.zeros(0, dtype=np.int64)

    def reset_episode_times(self, n_envs: int) -> None:
        """
        :param n_envs: Number of environments, all of them at the start of an episode
        """
        self.episode_times = np.zeros(n_envs, dtype=np.int64)

    def _resample_noise(self, step: int, n_envs: int) -> None:
        model = self.model
        if model.use_sde and (step == 0 or (model.sde_sample_freq > 0 and step % model.sde_sample_freq == 0)):
            model.policy.reset_noise(n_envs)  # type: ignore[operator]

    def collect(
        self,
        env: VecEnv,
        callback: BaseCallback | None,
        rule: StoppingRule,
        on_collected: Callable[[], None] | None = None,
        callback_locals: dict[str, Any] | None = None,
        off_policy_names: bool = False,
    ) -> bool:
        """
        Step ``env`` until ``rule`` has what it wants.

        :param env: The training environment
        :param callback: Called once per vec-env step (and at the start and end of the collection); None: no callback
        :param rule: What to collect
        :param on_collected: Called after the last step, before the callback's ``on_rollout_end`` (e.g. to compute
            returns and advantages, as SB3's ``collect_rollouts`` does)
        :param callback_locals: What the callback finds in ``self.locals`` besides the algorithm (``self``), ``env``,
            ``callback``, the step counts and each step's data, as SB3's collection loops give their arguments (e.g.
            ``rollout_buffer``)
        :param off_policy_names: Name the step's data in ``self.locals`` as SB3's off-policy loop does
            (``buffer_actions`` sampled, ``actions`` sent to the env, ``num_collected_steps`` and
            ``num_collected_episodes`` so far) rather than as its on-policy loop (``actions`` sampled,
            ``clipped_actions`` sent, ``n_steps`` the steps before this one)
        :return: False if the callback stopped training
        """
        model = self.model
        # What SB3's loops hand their callbacks: the algorithm as `self`, not this collector.
        shared_locals = {"self": model, "env": env, "callback": callback, **(callback_locals or {})}
        sampled_name, sent_name = ("buffer_actions", "actions") if off_policy_names else ("actions", "clipped_actions")
        n_episodes_ended = 0
        policy: ActorCriticPolicy = model.policy  # type: ignore[assignment]
        assert model._last_obs is not None, "No previous observation was provided"
        policy.set_training_mode(False)
        if self.episode_times.shape != (env.num_envs,):
            self.reset_episode_times(env.num_envs)
        rule.start(env.num_envs)
        check_env_data(None, model._last_obs, model.num_timesteps, None)
        if callback is not None:
            callback.on_rollout_start()
        n_vec_steps = 0
        # Envs that start an episode: all of them after a reset of the envs, later those that were done.
        self.episode_times[np.asarray(model._last_episode_starts, dtype=bool)] = 0
        while rule.wants_more(n_vec_steps):
            self._resample_noise(n_vec_steps, env.num_envs)
            actions, log_probs = sample_actions(policy, model._last_obs, model.device)
            sent_actions = env_actions(policy, actions)
            new_obs, rewards, dones, infos = env.step(sent_actions)
            # Some VecEnvs give 0/1 numbers: as an index they would pick envs by position instead of masking them.
            dones = np.asarray(dones, dtype=bool)
            model.num_timesteps += env.num_envs
            n_vec_steps += 1
            # Checked before anything is stored or reaches the policy.
            check_env_data(rewards, new_obs, model.num_timesteps, self.episode_times)
            any_done = bool(dones.any())
            if any_done:
                check_terminal_observations(infos, dones, model.num_timesteps)
            model._update_info_buffer(infos, dones)
            # The step that takes an episode past the limit, among the envs whose steps still count before this one.
            if rule.needs_episode_ends and (self.episode_times >= model.episode_step_limit).any():
                self._check_step_limit(rule.counted())
            # Stored before the callback runs, so that a stop leaves every open episode consistent.
            # The rule stores a copy of the times before they advance.
            rule.add_step(Step(model._last_obs, actions, rewards, dones, infos, log_probs, self.episode_times, any_done))  # type: ignore[arg-type]
            self.episode_times += 1
            if any_done:
                self.episode_times[dones] = 0
            model._last_obs = new_obs  # type: ignore[assignment]
            model._last_episode_starts = dones

            if callback is not None:
                n_episodes_ended += int(np.count_nonzero(dones))
                counts = (
                    {"num_collected_steps": n_vec_steps, "num_collected_episodes": n_episodes_ended}
                    if off_policy_names
                    else {"n_steps": n_vec_steps - 1}
                )
                callback.update_locals(
                    {
                        **shared_locals,
                        **counts,
                        sampled_name: actions,
                        sent_name: sent_actions,
                        "log_probs": log_probs,
                        "new_obs": new_obs,
                        "rewards": rewards,
                        "dones": dones,
                        "infos": infos,
                    }
                )
                if not callback.on_step():
                    return False
        rule.finish(model._last_obs)
        if on_collected is not None:
            on_collected()
        if callback is not None:
            callback.update_locals(shared_locals)
            callback.on_rollout_end()
        return True

    def _check_step_limit(self, counted: np.ndarray | None) -> None:
        limit = self.model.episode_step_limit
        over = self.episode_times >= limit
        if over.any() and (counted is None or over[counted].any()):
            raise ValueError(
                f"An episode ran for more than episode_step_limit={limit} steps without ending. "
                "Wrap the env in gymnasium.wrappers.TimeLimit or raise episode_step_limit."
            )
