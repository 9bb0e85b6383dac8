"""Argument and value checks shared by the algorithms: each error names the argument and what is allowed."""

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces


def check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    """
    :param name: Argument name, for the error message
    :param value: The value to check
    :param minimum: The smallest value allowed
    :raises ValueError: Unless ``value`` is an int >= ``minimum``
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def is_choice(value: Any, allowed: tuple) -> bool:
    """
    :return: Whether ``value`` is one of ``allowed`` and of the same kind: a bool never stands for 0/1 nor the
        reverse, and a float never for an int (``2.0`` is not the option ``2``); numpy scalars count as their kind
    """

    def kind(x: Any) -> str:
        if isinstance(x, (bool, np.bool_)):
            return "bool"
        if isinstance(x, (int, np.integer)):
            return "int"
        return "float" if isinstance(x, (float, np.floating)) else "other"

    return any(kind(value) == kind(choice) and value == choice for choice in allowed)


def check_choice(name: str, value: Any, allowed: tuple) -> None:
    """
    :param name: Argument name, for the error message
    :param value: The value to check
    :param allowed: The allowed values
    :raises ValueError: Unless ``value`` is one of ``allowed`` (see :func:`is_choice`)
    """
    if not is_choice(value, allowed):
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
            "(max_grad_norm) or normalise advantages; if the rewards are huge, scale them (VecNormalize)."
        )


def check_finite_number(name: str, value: Any, low: float = -math.inf, low_open: bool = False) -> None:
    """
    :param name: Argument name, for the error message
    :param value: The value to check
    :param low: Lower bound
    :param low_open: Exclude ``low`` itself
    :raises ValueError: Unless ``value`` is a finite real number >= ``low`` (> ``low`` if ``low_open``)
    """
    check_number(name, value, low, low_open=low_open)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")


def check_schedule(name: str, value: Any) -> None:
    """
    A learning rate: a finite number >= 0 (0 freezes the parameters), or a schedule, a callable of the progress
    remaining (1 at the start of training, 0 at its end) whose values at 1 and 0 are finite numbers >= 0.

    :param name: Argument name, for the error message
    :param value: The value to check
    :raises ValueError: Otherwise
    """
    if not callable(value):
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            check_finite_number(name, value, 0.0)
            return
        raise ValueError(f"{name} must be a number >= 0 or a schedule (a function of the progress remaining); got {value!r}")
    for progress in (1.0, 0.0):
        scheduled_rate(name, value, progress)


def scheduled_rate(name: str, schedule: Callable[[float], Any], progress_remaining: float) -> float:
    """
    A schedule's learning rate at one point of training, checked: a schedule can go wrong anywhere between the ends
    that the constructor tries, and a negative or non-finite rate must not reach an optimiser.

    :param name: Argument the schedule came from, for the error message
    :param schedule: The schedule
    :param progress_remaining: 1 at the start of training, 0 at its end
    :return: The learning rate
    :raises ValueError: If the schedule fails or returns anything but a finite number >= 0
    """
    try:
        rate = schedule(progress_remaining)
    except Exception as error:
        raise ValueError(f"{name}: the schedule failed at progress remaining {progress_remaining}: {error!r}") from error
    is_number = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not is_number or not math.isfinite(rate) or rate < 0:
        raise ValueError(
            f"{name}: a schedule must return finite numbers >= 0; at progress remaining {progress_remaining} it "
            f"returned {rate!r}"
        )
    return float(rate)


def python_number(value: Any) -> Any:
    """:return: A numpy scalar as the Python number SB3 and the standard library expect; anything else unchanged"""
    return value.item() if isinstance(value, np.generic) else value


def check_device(device: Any) -> None:
    """
    :param device: A torch device, or its name
    :raises ValueError: Unless torch knows it and, CUDA aside (SB3 falls back to the CPU), this build can use it
        (``"auto"`` chooses CUDA when available)
    """
    if isinstance(device, str) and device == "auto":
        return
    try:
        torch_device = th.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or another torch device; got {device!r}") from error
    if torch_device.type == "meta":
        raise ValueError("device 'meta' holds shapes without data, so a model on it cannot act or train; use 'cpu' or 'cuda'")
    # SB3 falls back to the CPU for an unavailable CUDA device, not for the others.
    if torch_device.type != "cuda":
        try:
            th.empty(0, device=torch_device)
        except Exception as error:  # each backend fails its own way (assert, NotImplementedError, missing module)
            raise ValueError(
                f"device {device!r} cannot be used with this torch build: {error}; use 'cpu' or 'auto'"
            ) from error


def check_common_arguments(
    learning_rate: Any,
    ent_coef: Any,
    stats_window_size: Any,
    device: Any,
    seed: Any,
    verbose: Any,
    policy_kwargs: Any,
    tensorboard_log: Any,
) -> None:
    """
    Check the arguments every algorithm takes from SB3, before SB3 reads them.

    :raises ValueError: For the first argument that is wrong, naming it and what is allowed
    """
    check_schedule("learning_rate", learning_rate)
    check_finite_number("ent_coef", ent_coef, 0.0)
    check_positive_int("stats_window_size", stats_window_size)
    check_device(device)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be None or an integer >= 0; got {seed!r}")
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose must be an integer >= 0 (0: silent, 1: info, 2: debug); got {verbose!r}")
    if policy_kwargs is not None and not isinstance(policy_kwargs, dict):
        raise ValueError(f"policy_kwargs must be None or a dict of the policy's arguments; got {policy_kwargs!r}")
    if policy_kwargs:
        check_policy_kwargs(policy_kwargs)
    if tensorboard_log is not None and not isinstance(tensorboard_log, (str, os.PathLike)):
        raise ValueError(f"tensorboard_log must be None or a folder path; got {tensorboard_log!r}")


def _is_layer_sizes(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0 for size in value
    )


#: Bound on ``|log_std_init|``: an initial std ``exp(log_std_init)`` between 2e-9 and 5e8.
LOG_STD_INIT_LIMIT = 20.0


def check_policy_kwargs(policy_kwargs: dict[str, Any]) -> None:
    """
    Check the ``policy_kwargs`` entries that SB3's actor-critic policies would otherwise fail on deep inside torch.

    :param policy_kwargs: The policy's keyword arguments
    :raises ValueError: For a malformed ``net_arch``, an ``activation_fn`` that is not a module class, an
        ``optimizer_class`` that is not an optimiser class or ``optimizer_kwargs`` it refuses, a ``log_std_init``
        that is not a number in [-20, 20], or ``use_sde``
    """
    if "use_sde" in policy_kwargs:
        # The algorithm passes it to the policy, and resamples the noise only when it knows of it.
        raise ValueError("policy_kwargs must not set 'use_sde': pass use_sde=True to the algorithm itself")
    net_arch = policy_kwargs.get("net_arch")
    if isinstance(net_arch, list) and len(net_arch) == 1 and isinstance(net_arch[0], dict):
        net_arch = net_arch[0]  # SB3 < 1.8's form, which SB3 still accepts with a warning
    is_valid_dict = isinstance(net_arch, dict) and all(
        key in ("pi", "vf") and _is_layer_sizes(sizes) for key, sizes in net_arch.items()
    )
    if net_arch is not None and not (_is_layer_sizes(net_arch) or is_valid_dict):
        raise ValueError(
            "policy_kwargs['net_arch'] must be a list of layer sizes (positive integers), shared by the actor and the "
            f"critic, or dict(pi=[...], vf=[...]) with one list each; got {net_arch!r}"
        )
    activation_fn = policy_kwargs.get("activation_fn")
    if activation_fn is not None and not (isinstance(activation_fn, type) and issubclass(activation_fn, th.nn.Module)):
        raise ValueError(
            f"policy_kwargs['activation_fn'] must be a torch module class such as torch.nn.ReLU; got {activation_fn!r}"
        )
    if "log_std_init" in policy_kwargs:
        # A chosen bound, wide for any task: NaN, infinities and huge values only fail later, at the first action or loss.
        check_number("policy_kwargs['log_std_init']", policy_kwargs["log_std_init"], -LOG_STD_INIT_LIMIT, LOG_STD_INIT_LIMIT)
    optimizer_class = policy_kwargs.get("optimizer_class", th.optim.Adam)
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, th.optim.Optimizer)):
        raise ValueError(
            "policy_kwargs['optimizer_class'] must be a torch optimiser class such as torch.optim.Adam; "
            f"got {optimizer_class!r}"
        )
    optimizer_kwargs = policy_kwargs.get("optimizer_kwargs")
    if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, dict):
        raise ValueError(f"policy_kwargs['optimizer_kwargs'] must be None or a dict; got {optimizer_kwargs!r}")
    try:
        # The policy builds its optimiser as this, with the learning rate from the algorithm's learning_rate.
        optimizer_class([th.nn.Parameter(th.zeros(1))], lr=1e-3, **(optimizer_kwargs or {}))  # type: ignore[call-arg]
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"policy_kwargs['optimizer_kwargs'] {optimizer_kwargs!r} are not arguments {optimizer_class.__name__} takes "
            f"(the learning rate comes from learning_rate): {error}"
        ) from error


def check_sde_sample_freq(value: Any) -> None:
    """
    :param value: ``sde_sample_freq``
    :raises ValueError: Unless an integer >= -1 (-1: once per rollout)
    """
    check_positive_int("sde_sample_freq", value, minimum=-1)


def warn_ignored(name: str, value: Any, default: Any, reason: str) -> None:
    """
    Warn that an option set away from its default has no effect in the chosen configuration.

    :param name: The option
    :param value: Its value
    :param default: Its default
    :param reason: When it is used, e.g. ``"only with critic_target='nstep'"``
    """
    if value != default:
        warnings.warn(f"{name}={value!r} has no effect: it is used {reason}", UserWarning, stacklevel=3)


class UnsupportedActionSpaceError(ValueError, AssertionError):
    """An action space the algorithms cannot act in; also an ``AssertionError``, as SB3 refuses such spaces."""


class UnsupportedObservationSpaceError(ValueError, NotImplementedError):
    """An observation space the policies cannot take; also a ``NotImplementedError``, as SB3 refuses such spaces."""


SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    :param observation_space: The env's observation space
    :param action_space: The env's action space
    :raises UnsupportedActionSpaceError: For an action space the algorithms do not support, naming it and saying
        what they take (a ``ValueError``, and an ``AssertionError`` as SB3's refusal)
    :raises UnsupportedObservationSpaceError: The same for an observation space (a ``ValueError``, and a
        ``NotImplementedError`` as SB3's refusal)
    """
    names = ", ".join(space.__name__ for space in SUPPORTED_ACTION_SPACES)
    if not isinstance(action_space, SUPPORTED_ACTION_SPACES):
        raise UnsupportedActionSpaceError(f"The action space {action_space} is not supported: use {names}")
    # SB3's distributions sample 0..n-1 and ignore a start, so the env would get actions outside its space.
    if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete)) and np.any(action_space.start != 0):
        raise UnsupportedActionSpaceError(
            f"The action space {action_space} starts at {action_space.start}: the policies sample actions from 0, as "
            "SB3's do. Give the env a space that starts at 0 (a gymnasium.ActionWrapper can add the offset)"
        )
    if isinstance(action_space, spaces.MultiBinary) and len(action_space.shape) != 1:
        raise UnsupportedActionSpaceError(
            f"Multi-dimensional MultiBinary({action_space.n}) action space is not supported, as in SB3: the policies "
            "take a flat one. Flatten it with a gymnasium.ActionWrapper that reshapes the actions"
        )
    if isinstance(action_space, spaces.MultiDiscrete) and len(action_space.shape) != 1:
        raise UnsupportedActionSpaceError(
            f"The action space {action_space} has shape {action_space.shape}: the policies take a flat one, as "
            "SB3's do. Flatten it with a gymnasium.ActionWrapper that reshapes the actions"
        )
    if isinstance(action_space, spaces.Box) and not np.isfinite([action_space.low, action_space.high]).all():
        raise UnsupportedActionSpaceError(
            f"The action space {action_space} has infinite bounds: actions are clipped to the bounds, which must be "
            "finite, as in SB3. Give the env finite bounds (a gymnasium.ActionWrapper with a bounded Box)"
        )
    if isinstance(action_space, spaces.Box) and action_space.shape is not None and 0 in action_space.shape:
        raise UnsupportedActionSpaceError(
            f"The action space {action_space} has no dimensions to act in (shape {action_space.shape})"
        )
    subspaces = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    for space in subspaces:
        if not isinstance(space, SUPPORTED_OBSERVATION_SPACES):
            raise UnsupportedObservationSpaceError(
                f"The observation space {observation_space} is not supported: use {names}, or a Dict of them "
                "(MultiInputPolicy)"
            )
        # SB3's feature extractors flatten from the first axis on, and a network cannot take zero inputs.
        if isinstance(space, (spaces.Box, spaces.MultiBinary)) and (space.shape == () or 0 in space.shape):
            raise UnsupportedObservationSpaceError(
                f"The observation space {observation_space} holds {space} of shape {space.shape}: the policies need "
                "at least one value per observation, in one axis or more (a scalar as shape (1,), which a "
                "gymnasium.ObservationWrapper can give)"
            )
        if isinstance(space, spaces.MultiDiscrete) and len(space.shape) != 1:
            raise UnsupportedObservationSpaceError(
                f"The observation space {observation_space} holds MultiDiscrete with shape {space.shape}: SB3's "
                "one-hot preprocessing takes a flat one. Flatten it with a gymnasium.ObservationWrapper"
            )
        # SB3 one-hot encodes them as classes 0..n-1: an offset would crash the encoding during training.
        if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)) and np.any(space.start != 0):
            raise UnsupportedObservationSpaceError(
                f"The observation space {observation_space} holds {space}, which starts at {space.start}: SB3's one-hot "
                "preprocessing takes values from 0. Subtract the offset with a gymnasium.ObservationWrapper"
            )


def _first_non_finite(values: np.ndarray) -> int | None:
    """:return: The first env index whose entry has a NaN or an infinity, or None"""
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    return None if finite.all() else int(np.flatnonzero(~finite)[0])


def check_env_data(
    rewards: np.ndarray | None, observations: Any, num_timesteps: int, episode_times: np.ndarray | None
) -> None:
    """
    The rewards and observations that a vec-env step returned must be finite: a NaN would otherwise reach the loss (or,
    through an observation, the sampled actions) and be reported far from its cause.

    :param rewards: Rewards, (n_envs,), or None (observations from a reset)
    :param observations: Observations, (n_envs, ...) or a dict of such arrays (non-float arrays are not checked)
    :param num_timesteps: The model's env steps so far (to say when)
    :param episode_times: Per env, the step's time index in its episode (to say where), or None
    :raises ValueError: Naming the env index, the step and the value
    """
    named = observations.items() if isinstance(observations, dict) else [(None, observations)]
    arrays: list[tuple[Any, np.ndarray]] = [("reward", rewards)] if rewards is not None else []
    arrays += [(("observation", key), value) for key, value in named]
    for what, values in arrays:
        # The common case costs one isfinite per array.
        if values.dtype.kind != "f" or np.isfinite(values).all():
            continue
        env_idx = _first_non_finite(values)
        if isinstance(what, tuple):
            what = "observation" if what[1] is None else f"observation[{what[1]!r}]"
        when = "" if episode_times is None else f", step {int(episode_times[env_idx])} of its episode"
        raise ValueError(
            f"The env returned a non-finite {what} {values[env_idx].tolist()} (env index {env_idx}{when}, after "
            f"{num_timesteps} env steps of training). Fix the env or wrap it so that it returns finite values (SB3's "
            "VecEnvs store rewards as float32: beyond about 3.4e38 in size they become inf)."
        )


def check_terminal_observations(infos: list[dict[str, Any]], dones: np.ndarray, num_timesteps: int) -> None:
    """
    The observations after the last step of the episodes that ended (values are bootstrapped from them).

    :param infos: The step's infos
    :param dones: Which envs' episodes ended
    :param num_timesteps: The model's env steps so far
    :raises ValueError: As :func:`check_env_data`, naming the env index
    """
    for idx in np.flatnonzero(dones).tolist():
        terminal = infos[idx].get("terminal_observation")
        if terminal is None:
            continue
        batch = (
            {key: np.asarray(value)[None] for key, value in terminal.items()}
            if isinstance(terminal, dict)
            else np.asarray(terminal)[None]
        )
        try:
            check_env_data(None, batch, num_timesteps, None)
        except ValueError as error:
            raise ValueError(f"The terminal observation of env index {idx}: {error}") from error


def check_total_timesteps(total_timesteps: Any) -> None:
    """
    :param total_timesteps: ``learn()``'s budget
    :raises ValueError: Unless a whole number >= 0
    """
    is_number = isinstance(total_timesteps, (int, float, np.integer, np.floating)) and not isinstance(total_timesteps, bool)
    if not is_number or not math.isfinite(total_timesteps) or total_timesteps < 0 or total_timesteps != int(total_timesteps):
        raise ValueError(f"total_timesteps must be a whole number >= 0; got {total_timesteps!r}")
