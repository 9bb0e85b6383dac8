"""
Loading a model file from an untrusted source without unpickling anything.

SB3's ``load`` unpickles the objects that ``save`` could not write as JSON (schedules, spaces, classes, ...): a file
can carry code that runs at load time. :func:`load_untrusted` reads only the JSON part of the file and the tensors
(with ``torch.load(weights_only=True)``), and rebuilds what the pickled entries held from the readable parts, the
env and the class's constructor: the model is constructed afresh on the env, the readable hyperparameters passed
to it, and the weights and optimiser states loaded into it.
"""

import inspect
import io
import re
import warnings
import zipfile
from typing import Any, TypeVar

import torch as th
from stable_baselines3.common import torch_layers
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.save_util import recursive_setattr
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import get_device

from sb3_pgnotes.common.guards import (
    check_same_use_sde,
    check_saved_class,
    model_file_path,
    read_model_data,
    without_copied_use_sde,
)

Algorithm = TypeVar("Algorithm", bound=BaseAlgorithm)

#: Attributes that describe the env or are rebuilt by the constructor, never copied from the file.
_NOT_RESTORED = frozenset({"policy_class", "observation_space", "action_space", "n_envs", "policy_kwargs", "device"})
#: Modules whose classes may be named in a file's policy_kwargs (activations, optimisers, SB3's extractors).
_ALLOWED_CLASS_MODULES = {"torch.nn.modules.activation": th.nn, "torch.optim": th.optim, torch_layers.__name__: torch_layers}


def _is_pickled(value: Any) -> bool:
    return isinstance(value, dict) and ":serialized:" in value


def _allowed_class(text: Any) -> type | None:
    """
    :param text: SB3's readable form of a class, ``"<class 'module.Name'>"``
    :return: The class when it comes from an allowed module, else None
    """
    match = re.fullmatch(r"<class '([\w.]+)\.(\w+)'>", str(text))
    if match is None:
        return None
    module, name = match.groups()
    for prefix, namespace in _ALLOWED_CLASS_MODULES.items():
        if module.startswith(prefix) and isinstance(getattr(namespace, name, None), type):
            return getattr(namespace, name)
    return None


def _policy_kwargs(stored: Any) -> dict[str, Any]:
    """
    :param stored: The file's ``policy_kwargs`` entry
    :return: The policy's keyword arguments, classes resolved from the allowed modules only
    :raises ValueError: For an entry that only code could restore
    """
    if stored is None or not _is_pickled(stored):
        return dict(stored or {})
    kwargs = {}
    for key, value in stored.items():
        if key.startswith(":"):
            continue
        resolved = _allowed_class(value)
        if isinstance(value, str) and value.startswith("<") and resolved is None:
            raise ValueError(
                f"policy_kwargs[{key!r}] = {value} cannot be rebuilt without running code from the file: pass "
                "policy_kwargs to load_untrusted"
            )
        kwargs[key] = value if resolved is None else resolved
    return kwargs


def _policy_name(state_dict: dict[str, th.Tensor]) -> str:
    """:return: The policy alias whose features extractor has these parameter names"""
    if any(".extractors." in key for key in state_dict):
        return "MultiInputPolicy"
    if any(".cnn." in key for key in state_dict):
        return "CnnPolicy"
    return "MlpPolicy"


def _check_space(name: str, stored: Any, space: Any) -> None:
    """
    :raises ValueError: If the file's readable description of the space disagrees with the env's
    """
    if not isinstance(stored, dict):
        return
    stored_type = str(stored.get(":type:", ""))
    stored_shape = stored.get("_shape")
    if type(space).__name__ not in stored_type or (stored_shape is not None and tuple(stored_shape) != space.shape):
        raise ValueError(
            f"The env's {name} {space} does not match the model's ({stored_type.strip('<>')} of shape {stored_shape})"
        )
    # A Discrete space's shape is (): its size is stored apart (as text).
    for size in ("n", "start"):
        if size in stored and hasattr(space, size) and str(stored[size]) != str(getattr(space, size)):
            raise ValueError(f"The env's {name} {space} does not match the model's ({size}={stored[size]})")


def load_untrusted(
    algo_class: type[Algorithm],
    path: Any,
    env: GymEnv | str,
    device: th.device | str = "auto",
    policy: str | None = None,
    **kwargs: Any,
) -> Algorithm:
    """
    Load a model saved by ``save`` without unpickling anything from the file (SB3's ``load`` unpickles).

    The model is built by ``algo_class(policy, env, **hyperparameters)`` from the hyperparameters the file holds as
    JSON; those it holds only as pickled objects (a learning-rate schedule, ``train_freq``, ...) keep the class's
    defaults unless given in ``kwargs``, and a warning names them. The weights, optimiser states and other tensors
    are then loaded with ``torch.load(weights_only=True)``. Works for sb3-pgnotes and SB3 algorithms alike.

    :param algo_class: The class that saved the model (e.g. ``Reinforce`` or SB3's ``PPO``)
    :param path: The model file
    :param env: The env, or its id (as the constructor takes), whose spaces must match the model's
    :param device: Where to put the model
    :param policy: The policy alias (default: ``MlpPolicy``, ``CnnPolicy`` or ``MultiInputPolicy``, as the saved
        weights' names show)
    :param kwargs: Constructor arguments that override the file's (e.g. ``policy_kwargs`` with custom classes)
    :return: The model, ready to ``predict`` (and to ``learn`` with the restored hyperparameters)
    :raises ValueError: If the file is damaged, holds another class's model, or does not match the env
    """
    data = read_model_data(path)
    check_saved_class(algo_class, data, path)
    check_same_use_sde(data, kwargs)
    device = get_device(device)
    with zipfile.ZipFile(model_file_path(path)) as archive:
        tensors = {
            name[: -len(".pth")]: th.load(io.BytesIO(archive.read(name)), map_location=device, weights_only=True)
            for name in archive.namelist()
            if name.endswith(".pth")
        }
    if "policy" not in tensors:
        raise ValueError(f"{path} holds no policy weights ('policy.pth')")
    env = maybe_make_env(env, 0)  # type: ignore[assignment]
    _check_space("observation space", data.get("observation_space"), env.observation_space)  # type: ignore[union-attr]
    _check_space("action space", data.get("action_space"), env.action_space)  # type: ignore[union-attr]

    parameters = inspect.signature(algo_class).parameters
    constructor: dict[str, Any] = {"policy_kwargs": without_copied_use_sde(_policy_kwargs(data.get("policy_kwargs")))}
    not_restored = []
    for name in parameters:
        if name in ("policy", "env", "device", "policy_kwargs", "seed", "tensorboard_log", "verbose") or name.startswith("_"):
            continue
        if name in data and not _is_pickled(data[name]):
            constructor[name] = data[name]
        elif name in data and name not in kwargs:
            not_restored.append(name)
    if not_restored:
        warnings.warn(
            f"Not restored from {path} (stored there as code): {', '.join(not_restored)}; the class's defaults are used. "
            "Pass them to load_untrusted to set them.",
            UserWarning,
            stacklevel=2,
        )
    constructor.update(kwargs)
    model = algo_class(policy or _policy_name(tensors["policy"]), env, device=device, **constructor)

    for name, value in data.items():
        if name in parameters or name in _NOT_RESTORED or _is_pickled(value) or not hasattr(model, name):
            continue
        if isinstance(value, (int, float, str, bool)) or value is None:
            setattr(model, name, value)
    variables = tensors.pop("pytorch_variables", {})
    model.set_parameters(tensors, exact_match=True, device=device)
    for name, tensor in variables.items():
        recursive_setattr(model, f"{name}.data", tensor.data)
    if model.use_sde:
        model.policy.reset_noise()  # type: ignore[operator]
    return model
