"""A callback that logs the policy-gradient estimator's variance during training."""

from copy import deepcopy

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_pgnotes.common.validation import check_positive_int
from sb3_pgnotes.diagnostics.variance import VARIANTS, gradient_variance
from sb3_pgnotes.reinforce import Reinforce

_REINFORCE_BASELINE_VARIANT = {"none": "reward_to_go", "mean": "rtg_mean", "value": "rtg_value", "optimal": "rtg_optimal"}


def estimator_in_use(model: BaseAlgorithm) -> str:
    """
    :param model: An algorithm with an actor-critic policy
    :return: The variant of :data:`~sb3_pgnotes.diagnostics.variance.VARIANTS` closest to the estimator the
        algorithm trains with: Reinforce's return and baseline options, GAE for SB3's A2C/PPO and the rest
    """
    if isinstance(model, Reinforce):
        return _REINFORCE_BASELINE_VARIANT[model.baseline] if model.reward_to_go else "full_return"
    return "gae"


class GradientVarianceCallback(BaseCallback):
    """
    Every ``check_freq`` env steps, measure the variance of policy-gradient estimators on the current policy
    and log ``train/grad_variance`` and ``train/grad_snr`` (the estimator in use), plus
    ``train/grad_variance/<variant>`` and ``train/grad_snr/<variant>`` for each variant measured.

    Episodes are drawn from a separate env, so the training env's episodes are not disturbed. Works with any
    algorithm whose policy is an SB3 ``ActorCriticPolicy`` (ours, A2C, PPO). When the training env is normalised
    (``VecNormalize``), the measurement env's observations are normalised with the training statistics of the moment;
    its rewards stay raw.

    :param env: Environment to draw the episodes from (an env id, an env or a VecEnv)
    :param check_freq: Measure every this many calls of ``on_step`` (one call per vec-env step)
    :param n_batches: Independent batches per measurement
    :param n_episodes: Episodes per batch
    :param variants: Variants to measure (default: the estimator in use)
    :param seed: Seed of the measurement env and its action sampling. It re-seeds the global generators at each
        measurement, so leave it None unless the training run itself need not stay independent of it.
    :param verbose: Verbosity level
    """

    def __init__(
        self,
        env: GymEnv | str,
        check_freq: int = 10_000,
        n_batches: int = 10,
        n_episodes: int = 10,
        variants: tuple[str, ...] | None = None,
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        check_positive_int("check_freq", check_freq)
        check_positive_int("n_batches", n_batches, minimum=2)
        check_positive_int("n_episodes", n_episodes)
        if variants is not None and not set(variants) <= set(VARIANTS):
            raise ValueError(f"variants must be taken from {', '.join(VARIANTS)}; got {variants}")
        if isinstance(env, str):
            env = make_vec_env(env, n_envs=1, seed=seed)
        elif not isinstance(env, VecEnv):
            # make_vec_env takes a function that makes the env: here, the one given.
            instance = env
            env = make_vec_env(lambda: instance, n_envs=1, seed=seed)
        self.env: VecEnv = env
        self.check_freq = check_freq
        self.n_batches = n_batches
        self.n_episodes = n_episodes
        self.variants = variants
        self.seed = seed
        self._normalizer: VecNormalize | None = None

    def _init_callback(self) -> None:
        if not hasattr(self.model.policy, "get_distribution"):
            raise ValueError(
                f"GradientVarianceCallback needs an actor-critic policy with an action distribution; "
                f"{type(self.model).__name__}'s {type(self.model.policy).__name__} has none"
            )
        # The policy was trained on normalised observations: the measurement env must show it the same.
        self._normalizer = self.model.get_vec_normalize_env()
        if self._normalizer is not None and not isinstance(self.env, VecNormalize):
            self.env = VecNormalize(
                self.env,
                training=False,
                norm_obs=self._normalizer.norm_obs,
                norm_reward=False,
                clip_obs=self._normalizer.clip_obs,
                epsilon=self._normalizer.epsilon,
                norm_obs_keys=self._normalizer.norm_obs_keys,
            )

    def _on_step(self) -> bool:
        if self.n_calls % self.check_freq == 0:
            self.measure()
        return True

    def measure(self) -> None:
        """Measure and record the statistics now."""
        if self._normalizer is not None and isinstance(self.env, VecNormalize):
            self.env.obs_rms = deepcopy(self._normalizer.obs_rms)
        in_use = estimator_in_use(self.model)
        variants = self.variants or (in_use,)
        stats = gradient_variance(
            self.model.policy,  # type: ignore[arg-type]
            self.env,
            gamma=float(self.model.gamma),  # type: ignore[attr-defined]
            n_batches=self.n_batches,
            n_episodes=self.n_episodes,
            reference_episodes=0,
            variants=tuple(dict.fromkeys((*variants, in_use))),
            gae_lambda=float(getattr(self.model, "gae_lambda", 0.95)),
            seed=self.seed,
            optimal_baseline_horizon=int(getattr(self.model, "optimal_baseline_horizon", 10)),
        )
        for entry in stats:
            self.logger.record(f"train/grad_variance/{entry.variant}", entry.total_variance)
            self.logger.record(f"train/grad_snr/{entry.variant}", entry.snr)
            if entry.variant == in_use:
                self.logger.record("train/grad_variance", entry.total_variance)
                self.logger.record("train/grad_snr", entry.snr)
        if self.verbose >= 1:
            summary = ", ".join(f"{e.variant}: var={e.total_variance:.3g} snr={e.snr:.3g}" for e in stats)
            print(f"Gradient variance at {self.num_timesteps} steps: {summary}")
