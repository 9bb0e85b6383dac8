"""The one list of sb3-pgnotes algorithms that the rl-zoo3 command line knows, and the one reading of rl-zoo3
hyperparameter entries (rl-zoo3's own) that the command line and the benchmarks share.

A new algorithm joins the zoo by adding one entry to :data:`ZOO_ALGORITHMS`.
"""

import argparse
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from optuna.trial import BaseTrial
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pgnotes import PPOKL, NStepAC, OffPolicyPG, Reinforce
from sb3_pgnotes.zoo.samplers import (
    convert_nstep_ac_params,
    convert_offpolicy_pg_params,
    convert_ppo_kl_params,
    convert_reinforce_params,
    sample_nstep_ac_params,
    sample_offpolicy_pg_params,
    sample_ppo_kl_params,
    sample_reinforce_params,
)

#: rl-zoo3's sampler signature: ``(trial, n_actions, n_envs, additional_args) -> constructor kwargs``.
Sampler = Callable[[BaseTrial, int, int, dict[str, Any]], dict[str, Any]]
#: rl-zoo3's converter signature: raw trial parameters -> constructor kwargs.
Converter = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ZooAlgorithm:
    """
    What rl-zoo3 needs to know about one algorithm.

    :param algo_class: the algorithm class, constructed and loaded by the zoo scripts
    :param sampler: Optuna sampler used by ``train -optimize``
    :param converter: turns a stored trial's raw parameters into constructor kwargs (``--trial-id``)
    :param hyperparams_file: name of the packaged file in ``hyperparams/`` used when no ``--conf-file`` is given
    """

    algo_class: type[BaseAlgorithm]
    sampler: Sampler
    converter: Converter
    hyperparams_file: str


#: sb3-pgnotes algorithms by their zoo name (the ``--algo`` value).
ZOO_ALGORITHMS: dict[str, ZooAlgorithm] = {
    "reinforce": ZooAlgorithm(Reinforce, sample_reinforce_params, convert_reinforce_params, "reinforce.yml"),
    "ppo_kl": ZooAlgorithm(PPOKL, sample_ppo_kl_params, convert_ppo_kl_params, "ppo_kl.yml"),
    "nstep_ac": ZooAlgorithm(NStepAC, sample_nstep_ac_params, convert_nstep_ac_params, "nstep_ac.yml"),
    "offpolicy_pg": ZooAlgorithm(OffPolicyPG, sample_offpolicy_pg_params, convert_offpolicy_pg_params, "offpolicy_pg.yml"),
}


def register_algorithms() -> None:
    """
    Add the sb3-pgnotes algorithms to rl-zoo3's registries.

    The dictionaries are changed in place: the zoo scripts imported these very objects.
    """
    for name, entry in ZOO_ALGORITHMS.items():
        ALGOS[name] = entry.algo_class
        # rl-zoo3 leaves these two dictionaries unannotated: mypy types their values as one particular function.
        HYPERPARAMS_SAMPLER[name] = entry.sampler  # type: ignore[assignment]
        HYPERPARAMS_CONVERTER[name] = entry.converter  # type: ignore[assignment]


def hyperparams_path(algo: str) -> AbstractContextManager[Path]:
    """
    The packaged hyperparameter file of one of our algorithms, as a file system path.

    :param algo: zoo name of the algorithm, a key of :data:`ZOO_ALGORITHMS`
    :return: a context manager giving the path of the file inside the installed ``sb3_pgnotes.hyperparams``
        package, valid until the context exits
    """
    return as_file(files("sb3_pgnotes.hyperparams") / ZOO_ALGORITHMS[algo].hyperparams_file)


#: rl-zoo3 keys that set up env wrappers, monitors or callbacks: a plain constructor call cannot honour them.
ENV_SETUP_KEYS = frozenset(
    {"frame_stack", "env_wrapper", "vec_env_wrapper", "callback", "monitor_kwargs", "env_kwargs", "replay_buffer_class"}
)


#: Keys that rl-zoo3 turns from a string ``"lin_<initial value>"`` into a linear schedule.
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std")


def check_schedule_strings(hyperparams: Mapping[str, Any]) -> None:
    """
    :param hyperparams: An rl-zoo3 hyperparameter entry
    :raises ValueError: For a string in a schedule key that rl-zoo3 cannot read, naming the key
    """
    for key in SCHEDULE_KEYS:
        value = hyperparams.get(key)
        if isinstance(value, str) and re.fullmatch(r"lin_[-+0-9.eE]+", value) is None:
            raise ValueError(f"{key}: {value!r} is neither a number nor a linear schedule 'lin_<initial value>'")


def preprocess_hyperparams(raw: Mapping[str, Any], env_id: str) -> tuple[Any, int, dict[str, Any] | None, dict[str, Any]]:
    """
    One env's rl-zoo3 hyperparameter entry, preprocessed by rl-zoo3's own ``ExperimentManager`` (schedules,
    ``train_freq``, normalisation, ``policy_kwargs``), as ``train`` would; ``n_timesteps`` is dropped.

    :param raw: The env's entry as read from YAML
    :param env_id: The env it is for
    :return: ``(policy, n_envs, VecNormalize kwargs or None, constructor kwargs)``
    :raises ValueError: For keys that set up envs or callbacks (:data:`ENV_SETUP_KEYS`)
    """
    unsupported = ENV_SETUP_KEYS & raw.keys()
    if unsupported:
        raise ValueError(f"Unsupported rl-zoo3 keys: {sorted(unsupported)}")
    check_schedule_strings(raw)
    manager = ExperimentManager(argparse.Namespace(), "", env_id, log_folder="", n_timesteps=1, verbose=0)
    kwargs, *_ = manager._preprocess_hyperparams({"n_timesteps": 0, **raw})
    policy = kwargs.pop("policy", "MlpPolicy")
    return policy, int(manager.n_envs), (manager.normalize_kwargs if manager.normalize else None), kwargs
