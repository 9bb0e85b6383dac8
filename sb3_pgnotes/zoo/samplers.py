"""Optuna samplers for ``train -optimize``, in the form rl-zoo3 expects.

A sampler draws raw values from an Optuna trial and hands them to its converter, which turns them
into constructor keyword arguments. rl-zoo3 also calls the converter alone on a stored trial's
``params`` (``--trial-id``), so the converter must accept exactly what the sampler suggests.
"""

from typing import Any

from optuna.trial import BaseTrial
from torch import nn

#: Network sizes offered to the sampler: hidden layers of the policy (``pi``) and value (``vf``) networks.
NET_ARCHS: dict[str, dict[str, list[int]]] = {
    "small": {"pi": [64, 64], "vf": [64, 64]},
    "medium": {"pi": [256, 256], "vf": [256, 256]},
}

#: Activation functions offered to the sampler.
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def convert_reinforce_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw values of :func:`sample_reinforce_params` into ``Reinforce`` keyword arguments.

    ``one_minus_gamma`` becomes ``gamma``; ``net_arch`` and ``activation_fn`` names become ``policy_kwargs``;
    ``normalize_advantage``, absent with the optimal baseline, is False; ``bootstrap_truncated`` is False unless the
    baseline is the learned value, the only one it works with. Every other value is passed through unchanged.

    :param sampled_params: the trial's parameters, as suggested by the sampler
    :return: keyword arguments for the ``Reinforce`` constructor
    """
    hyperparams = dict(sampled_params)
    hyperparams["gamma"] = 1.0 - hyperparams.pop("one_minus_gamma")
    hyperparams["policy_kwargs"] = {
        "net_arch": NET_ARCHS[hyperparams.pop("net_arch")],
        "activation_fn": ACTIVATIONS[hyperparams.pop("activation_fn")],
    }
    # Not sampled with the optimal baseline: standardising the weights would undo it, and it refuses them.
    hyperparams.setdefault("normalize_advantage", False)
    # Bootstrapping a truncated episode needs the learned value; a YAML entry may set it for baseline="value".
    # (NStepAC's parameters, converted here too, have no baseline: their critic is always learned.)
    if hyperparams.get("baseline", "value") != "value":
        hyperparams["bootstrap_truncated"] = False
    return hyperparams


def sample_reinforce_params(trial: BaseTrial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sample ``Reinforce`` hyperparameters.

    The critic's learning rate and number of updates are only sampled when the trial picks the
    learned value baseline, the only case where they have an effect; advantage standardisation is not
    sampled with the optimal baseline, which refuses it.

    :param trial: the Optuna trial (or a ``FixedTrial``)
    :param n_actions: size of the action space (unused by on-policy samplers, part of rl-zoo3's signature)
    :param n_envs: number of training environments (unused, part of rl-zoo3's signature)
    :param additional_args: extra information from rl-zoo3 (unused, part of its signature)
    :return: keyword arguments for the ``Reinforce`` constructor
    """
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "n_episodes": trial.suggest_categorical("n_episodes", [1, 2, 4, 8, 16, 32]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.1, log=True),
        "reward_to_go": trial.suggest_categorical("reward_to_go", [True, False]),
        "baseline": trial.suggest_categorical("baseline", ["none", "mean", "value", "optimal"]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.05, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATIONS)),
    }
    if params["baseline"] != "optimal":
        params["normalize_advantage"] = trial.suggest_categorical("normalize_advantage", [True, False])
    if params["baseline"] == "value":
        params["critic_learning_rate"] = trial.suggest_float("critic_learning_rate", 1e-4, 1e-2, log=True)
        params["n_critic_updates"] = trial.suggest_int("n_critic_updates", 1, 20)
    return convert_reinforce_params(params)


def convert_ppo_kl_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw values of :func:`sample_ppo_kl_params` into ``PPOKL`` keyword arguments.

    ``one_minus_gamma`` and ``one_minus_gae_lambda`` become ``gamma`` and ``gae_lambda``; ``n_steps_pow`` and
    ``batch_size_pow`` become the powers of two ``n_steps`` and ``batch_size``; ``net_arch`` and ``activation_fn``
    names become ``policy_kwargs``. Every other value is passed through unchanged.

    :param sampled_params: the trial's parameters, as suggested by the sampler
    :return: keyword arguments for the ``PPOKL`` constructor
    """
    hyperparams = dict(sampled_params)
    hyperparams["gamma"] = 1.0 - hyperparams.pop("one_minus_gamma")
    hyperparams["gae_lambda"] = 1.0 - hyperparams.pop("one_minus_gae_lambda")
    hyperparams["n_steps"] = 2 ** hyperparams.pop("n_steps_pow")
    hyperparams["batch_size"] = 2 ** hyperparams.pop("batch_size_pow")
    hyperparams["policy_kwargs"] = {
        "net_arch": NET_ARCHS[hyperparams.pop("net_arch")],
        "activation_fn": ACTIVATIONS[hyperparams.pop("activation_fn")],
    }
    return hyperparams


def sample_ppo_kl_params(trial: BaseTrial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sample ``PPOKL`` hyperparameters (ranges as rl-zoo3's PPO sampler, the KL penalty instead of the clip range).

    The KL target is only sampled when the trial picks the adaptive beta, the only case where it has an effect;
    beta is then the initial coefficient.

    :param trial: the Optuna trial (or a ``FixedTrial``)
    :param n_actions: size of the action space (unused by on-policy samplers, part of rl-zoo3's signature)
    :param n_envs: number of training environments (unused, part of rl-zoo3's signature)
    :param additional_args: extra information from rl-zoo3 (unused, part of its signature)
    :return: keyword arguments for the ``PPOKL`` constructor
    """
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 2e-3, log=True),
        "n_steps_pow": trial.suggest_int("n_steps_pow", 5, 12),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 10),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        "beta_mode": trial.suggest_categorical("beta_mode", ["fixed", "adaptive"]),
        "beta": trial.suggest_float("beta", 0.1, 30.0, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATIONS)),
    }
    if params["beta_mode"] == "adaptive":
        params["kl_target"] = trial.suggest_float("kl_target", 1e-3, 0.05, log=True)
    return convert_ppo_kl_params(params)


def convert_nstep_ac_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw values of :func:`sample_nstep_ac_params` into ``NStepAC`` keyword arguments.

    ``one_minus_gamma`` becomes ``gamma``; ``net_arch`` and ``activation_fn`` names become ``policy_kwargs``.
    With the ``"mc"`` target ``n_steps`` is None: rl-zoo3 updates the YAML entry with these arguments, and the
    entry's rollout length would otherwise be passed to a target that collects whole episodes (and refuses it).
    Every other value is passed through unchanged.

    :param sampled_params: the trial's parameters, as suggested by the sampler
    :return: keyword arguments for the ``NStepAC`` constructor
    """
    hyperparams = convert_reinforce_params(sampled_params)
    if hyperparams["critic_target"] == "mc":
        hyperparams["n_steps"] = None
    return hyperparams


def sample_nstep_ac_params(trial: BaseTrial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sample ``NStepAC`` hyperparameters in batch mode (online mode is batch mode with one step per env and the
    TD target, and too slow to tune).

    The rollout length and the n of the n-step target are only sampled for the targets that use them, the number
    of episodes only for the Monte Carlo target.

    :param trial: the Optuna trial (or a ``FixedTrial``)
    :param n_actions: size of the action space (unused by on-policy samplers, part of rl-zoo3's signature)
    :param n_envs: number of training environments (unused, part of rl-zoo3's signature)
    :param additional_args: extra information from rl-zoo3 (unused, part of its signature)
    :return: keyword arguments for the ``NStepAC`` constructor
    """
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-5, 3e-3, log=True),
        "critic_target": trial.suggest_categorical("critic_target", ["mc", "td", "nstep"]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.1, log=True),
        "n_target_updates": trial.suggest_int("n_target_updates", 1, 5),
        "n_grad_steps_per_target_update": trial.suggest_int("n_grad_steps_per_target_update", 1, 10),
        "discount_option": trial.suggest_categorical("discount_option", [1, 2]),
        "normalize_advantage": trial.suggest_categorical("normalize_advantage", [True, False]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.05, log=True),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 5.0, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATIONS)),
    }
    if params["critic_target"] == "mc":
        params["n_episodes"] = trial.suggest_categorical("n_episodes", [1, 2, 4, 8, 16])
    else:
        params["n_steps"] = trial.suggest_categorical("n_steps", [5, 8, 16, 32, 64])
    if params["critic_target"] == "nstep":
        params["target_n"] = trial.suggest_categorical("target_n", [2, 3, 5, 8, 16, 32])
    return convert_nstep_ac_params(params)


def convert_offpolicy_pg_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw values of :func:`sample_offpolicy_pg_params` into ``OffPolicyPG`` keyword arguments.

    ``one_minus_gamma`` becomes ``gamma``; ``train_freq_episodes`` becomes ``train_freq=(n, "episode")``;
    ``net_arch`` and ``activation_fn`` names become ``policy_kwargs``. Every other value is passed through unchanged.

    :param sampled_params: the trial's parameters, as suggested by the sampler
    :return: keyword arguments for the ``OffPolicyPG`` constructor
    """
    hyperparams = dict(sampled_params)
    hyperparams["gamma"] = 1.0 - hyperparams.pop("one_minus_gamma")
    hyperparams["train_freq"] = (hyperparams.pop("train_freq_episodes"), "episode")
    hyperparams["policy_kwargs"] = {
        "net_arch": NET_ARCHS[hyperparams.pop("net_arch")],
        "activation_fn": ACTIVATIONS[hyperparams.pop("activation_fn")],
    }
    return hyperparams


def sample_offpolicy_pg_params(
    trial: BaseTrial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """
    Sample ``OffPolicyPG`` hyperparameters: how much data is reused (replay size in episodes, episodes per update,
    gradient steps per update) and how the importance weights are controlled (estimator, truncation,
    self-normalisation).

    The critic's learning rate and number of updates are only sampled with the learned value baseline, the only
    case where they have an effect.

    :param trial: the Optuna trial (or a ``FixedTrial``)
    :param n_actions: size of the action space (unused, part of rl-zoo3's signature)
    :param n_envs: number of training environments (unused, part of rl-zoo3's signature)
    :param additional_args: extra information from rl-zoo3 (unused, part of its signature)
    :return: keyword arguments for the ``OffPolicyPG`` constructor
    """
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.1, log=True),
        "max_buffer_episodes": trial.suggest_categorical("max_buffer_episodes", [8, 16, 32, 64, 128]),
        "batch_size": trial.suggest_categorical("batch_size", [2, 4, 8, 16, 32]),
        "train_freq_episodes": trial.suggest_categorical("train_freq_episodes", [1, 2, 4, 8]),
        "gradient_steps": trial.suggest_int("gradient_steps", 1, 8),
        "estimator": trial.suggest_categorical("estimator", ["per_decision", "first_order"]),
        "baseline": trial.suggest_categorical("baseline", ["none", "mean", "value"]),
        "c_bar": trial.suggest_categorical("c_bar", [None, 1.0, 2.0, 5.0, 20.0]),
        "self_normalize": trial.suggest_categorical("self_normalize", [True, False]),
        "normalize_advantage": trial.suggest_categorical("normalize_advantage", [True, False]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.05, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATIONS)),
    }
    if params["baseline"] == "value":
        params["critic_learning_rate"] = trial.suggest_float("critic_learning_rate", 1e-4, 1e-2, log=True)
        params["n_critic_updates"] = trial.suggest_int("n_critic_updates", 1, 20)
    return convert_offpolicy_pg_params(params)
