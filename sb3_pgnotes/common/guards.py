"""
What every sb3-pgnotes algorithm adds to SB3's ``BaseAlgorithm``: checks where input enters (the env's spaces, the
``learn()`` budget, data from the env, a learning-rate schedule's values), and model files that are refused with a
clear error when they are corrupt, hold another class's model, or would save non-finite parameters.
"""

import inspect
import io
import json
import pathlib
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback, ConvertCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.patch_gym import _patch_env

from sb3_pgnotes.common.validation import (
    check_env_data,
    check_positive_int,
    check_spaces,
    check_terminal_observations,
    check_total_timesteps,
    python_number,
    scheduled_rate,
)

#: The ``data`` entry that names the class that saved a model file.
CLASS_KEY = "sb3_pgnotes_class"
#: NatureCNN's kernels and strides (8/4, 4/2, 3/1) need images of at least this many pixels a side.
NATURE_CNN_MIN_SIZE = 36
#: Attributes that only some other library's algorithm saves, to name it in an error.
_FOREIGN_MARKERS = {"clip_range": "PPO", "target_entropy": "SAC", "use_rms_prop": "A2C", "target_policy_noise": "TD3"}


class PolicyBuildError(ValueError, AssertionError):
    """
    A policy SB3 refuses to build with an assert (observations its CNN cannot take, ``policy_kwargs`` it rejects),
    explained; also an ``AssertionError``, as SB3's refusal.
    """


@contextmanager
def explain_policy_errors(observation_space: spaces.Space, policy_class: type) -> Iterator[None]:
    """
    Refuse a policy class the algorithms cannot train, and turn the errors that building a policy raises for
    observations it cannot take, or for a ``policy_kwargs`` combination SB3 refuses, into a ValueError that says why.

    :param observation_space: The env's observation space
    :param policy_class: The policy class about to be built
    """
    if not (isinstance(policy_class, type) and issubclass(policy_class, ActorCriticPolicy)):
        raise ValueError(
            f"policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass of SB3's ActorCriticPolicy (the "
            f"algorithms need its actor and critic heads); got {policy_class!r}"
        )
    # Its CombinedExtractor reads the Dict's subspaces (other policies may take Dict observations with an extractor).
    if issubclass(policy_class, MultiInputActorCriticPolicy) and not isinstance(observation_space, spaces.Dict):
        raise ValueError(
            f"policy {policy_class.__name__} takes Dict observations, not {observation_space}: use MlpPolicy or CnnPolicy"
        )
    try:
        yield
    except RuntimeError as error:
        if "Kernel size" not in str(error) and "padded input size" not in str(error):
            raise
        raise ValueError(
            f"The observation images {observation_space} are smaller than the CNN's kernels: CnnPolicy's NatureCNN "
            f"needs at least {NATURE_CNN_MIN_SIZE}x{NATURE_CNN_MIN_SIZE} pixels. Resize the observations or give "
            "policy_kwargs a features_extractor_class for small images"
        ) from error
    except AssertionError as error:
        # SB3's CNN feature extractors assert on the observation space; its other asserts are about policy_kwargs.
        if "CNN" in str(error):
            raise PolicyBuildError(f"The policy cannot take the observation space {observation_space}: {error}") from error
        raise PolicyBuildError(f"The policy cannot be built with these policy_kwargs: {error}") from error


class EnvDataCheck(BaseCallback):
    """
    For algorithms that keep SB3's own collection (PPOKL): check each step's rewards and observations as the
    collection loop of the others does (:func:`~sb3_pgnotes.common.validation.check_env_data`). SB3 calls it after
    each env step, before the step is stored or the policy sees its observation.
    """

    @staticmethod
    def prepend(callback: MaybeCallback) -> list[BaseCallback]:
        """
        :param callback: A user's callback argument to ``learn()``
        :return: The data check, then the user's callbacks
        """
        callbacks = [] if callback is None else callback if isinstance(callback, list) else [callback]
        return [EnvDataCheck(), *(c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in callbacks)]

    def _on_rollout_start(self) -> None:
        check_env_data(None, self.model._last_obs, self.model.num_timesteps, None)

    def _on_step(self) -> bool:
        check_env_data(self.locals["rewards"], self.locals["new_obs"], self.model.num_timesteps, None)
        if self.locals["dones"].any():
            check_terminal_observations(self.locals["infos"], self.locals["dones"], self.model.num_timesteps)
        return True


def model_file_path(path: Any) -> Any:
    """:return: ``path`` with ``.zip`` appended when it names a file that exists only with it (as SB3's ``load``)"""
    if isinstance(path, (str, pathlib.Path)):
        path = pathlib.Path(path)
        # Appended, not substituted: "run_gamma_0.5" is "run_gamma_0.5.zip", never "run_gamma_0.zip".
        with_zip = pathlib.Path(f"{path}.zip")
        if not path.exists() and with_zip.exists():
            return with_zip
    return path


def read_model_data(path: Any) -> dict[str, Any]:
    """
    Read a model file's ``data`` entry as JSON (nothing is unpickled) and check that every ``.pth`` entry is a
    readable PyTorch file (loaded with ``weights_only=True``, which runs no code).

    :param path: A model file saved by SB3's ``save`` (or an open binary file)
    :return: The ``data`` entry, with pickled objects left as SB3 wrote them (dicts with ``":serialized:"``)
    :raises ValueError: Naming the file and what is wrong with it
    :raises FileNotFoundError: If there is no such file (as SB3's ``load``)
    """
    path = model_file_path(path)
    start = path.tell() if isinstance(path, io.IOBase) and path.seekable() else None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "data" not in names:
                raise ValueError(f"{path} is not a model file: it has no 'data' entry (entries: {names})")
            try:
                data = json.loads(archive.read("data"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{path} is damaged: its 'data' entry is not JSON ({error})") from error
            for name in names:
                if name.endswith(".pth"):
                    try:
                        th.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
                    except Exception as error:
                        raise ValueError(f"{path} is damaged: its {name!r} entry is not a PyTorch file ({error})") from error
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path} is not a valid model file (a zip archive as save() writes): {error}") from error
    except FileNotFoundError as error:
        raise FileNotFoundError(f"No model file at {path} (nor with the .zip suffix)") from error
    finally:
        if start is not None:
            path.seek(start)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged: its 'data' entry is not a JSON object")
    return data


def own_parameters(algo_class: type[BaseAlgorithm]) -> list[str]:
    """:return: The constructor arguments of ``algo_class`` that SB3's base classes do not have"""
    inherited = {name for base in (OnPolicyAlgorithm, OffPolicyAlgorithm) for name in inspect.signature(base).parameters}
    return [name for name in inspect.signature(algo_class).parameters if name not in inherited and not name.startswith("_")]


def algorithm_name(algo_class: type) -> str:
    """
    :param algo_class: An algorithm class
    :return: The name of the sb3-pgnotes algorithm that ``algo_class`` is or derives from, so that a user's subclass
        and its parent load each other's files (as SB3's algorithms do); the class's own name for other classes
    """
    for klass in algo_class.__mro__:
        if klass.__module__.startswith("sb3_pgnotes.") and issubclass(klass, BaseAlgorithm):
            return klass.__name__
    return algo_class.__name__


def check_saved_class(algo_class: type[BaseAlgorithm], data: dict[str, Any], path: Any) -> None:
    """
    :param algo_class: The class asked to load the file
    :param data: The file's ``data`` entry
    :param path: The file, for the message
    :raises ValueError: If another algorithm saved it, naming both
    """
    saved = data.get(CLASS_KEY)
    if saved is not None:
        # The class's own name too: files saved by a subclass before subclasses saved their algorithm's name.
        if saved not in (algorithm_name(algo_class), algo_class.__name__):
            raise ValueError(f"{path} holds a model of class {saved}, not {algo_class.__name__}: load it with {saved}.load")
        return
    # No name: a file of SB3 or of an older sb3-pgnotes. Most of the class's own arguments must be in it.
    expected = own_parameters(algo_class)
    missing = [name for name in expected if name not in data]
    if len(missing) * 2 > len(expected):
        guess = next((name for key, name in _FOREIGN_MARKERS.items() if key in data), "another class")
        raise ValueError(
            f"{path} holds a model of {guess}, not a {algo_class.__name__}: it lacks {algo_class.__name__}'s "
            f"{', '.join(missing)}"
        )


def without_copied_use_sde(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    :param policy_kwargs: A saved model's ``policy_kwargs``
    :return: Them without ``use_sde``, which SB3's off-policy algorithms copy into them from their own argument (the
        constructor refuses it there; the saved ``use_sde`` restores it)
    """
    return {key: value for key, value in policy_kwargs.items() if key != "use_sde"}


def check_same_use_sde(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """
    :param data: A model file's ``data`` entry
    :param overrides: Constructor arguments given to ``load``
    :raises ValueError: If they switch gSDE on or off: the saved policy's weights are those of one or the other
    """
    if "use_sde" in overrides and "use_sde" in data and bool(overrides["use_sde"]) != bool(data["use_sde"]):
        raise ValueError(
            f"use_sde={overrides['use_sde']!r} differs from the saved model's use_sde={data['use_sde']!r}: its policy "
            "weights are those of a policy with that exploration, so load it as saved"
        )


def check_load_overrides(algo_class: type[BaseAlgorithm], data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """
    Run the constructor's checks on the constructor arguments that ``load`` is asked to override (SB3's ``load``
    sets its keyword arguments and ``custom_objects`` on the model unchecked).

    They are checked together with the file's plain-valued arguments, then alone: an override is refused only when
    it fails both. Alone, it may clash with the constructor's defaults where the file's values suit it; together, with
    training state the file keeps under an argument's name (``PPOKL``'s adapted ``beta``).

    :param algo_class: The class asked to load the file
    :param data: The file's ``data`` entry, as :func:`read_model_data` reads it
    :param overrides: ``custom_objects`` and the keyword arguments given to ``load``
    :raises ValueError: The constructor's error for the overridden arguments on their own, or a ``use_sde`` that
        differs from the file's (:func:`check_same_use_sde`)
    """
    check_same_use_sde(data, overrides)
    parameters = inspect.signature(algo_class).parameters
    fixed = ("policy", "env", "device", "verbose")
    overridden = {
        name: value for name, value in overrides.items() if name in parameters and name not in fixed and name[0] != "_"
    }
    if not overridden:
        return
    # Objects SB3 pickled into the file are not read here (nothing is unpickled before the checks).
    saved = {
        name: value
        for name, value in data.items()
        if name in parameters and name not in fixed and not (isinstance(value, dict) and ":serialized:" in value)
    }
    if isinstance(saved.get("policy_kwargs"), dict):
        saved["policy_kwargs"] = without_copied_use_sde(saved["policy_kwargs"])

    def construct(arguments: dict[str, Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            algo_class("MlpPolicy", None, **arguments, device="cpu", verbose=0, _init_setup_model=False)  # type: ignore[call-arg]

    try:
        construct({**saved, **overridden})
    except (ValueError, TypeError):
        construct(overridden)


class GuardedAlgorithm:
    """
    Mixed into every sb3-pgnotes algorithm, before SB3's base class: checks of the env's spaces, of ``learn()``'s
    budget, of the learning rate at every update and of model files (see the module docstring).
    """

    policy: Any
    learning_rate: Any
    lr_schedule: Any
    _current_progress_remaining: float

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        # An env id becomes an env here too, as in the constructor, so that load and set_env take one.
        env = maybe_make_env(env, verbose)
        # SB3's patch refuses, with its own error, anything else that is not a Gymnasium env.
        if not isinstance(env, VecEnv):
            env = _patch_env(env)
        check_spaces(env.observation_space, env.action_space)
        return BaseAlgorithm._wrap_env(env, verbose, monitor_wrapper)

    def __getattr__(self, name: str) -> Any:
        # Only reached when the attribute is missing: SB3 sets the spaces from the env, so env=None left them unset.
        if name in ("observation_space", "action_space"):
            raise AttributeError(
                f"{type(self).__name__} has no {name.replace('_', ' ')}: it was built with env=None. Pass env, a "
                "Gymnasium env, a VecEnv or a registered env id (load() takes env=None and reads the spaces from the file)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "run",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> Any:
        """SB3's ``learn``, with ``log_interval`` checked (0 would divide by zero when the first log is due)."""
        if log_interval is not None:
            check_positive_int("log_interval", log_interval)
        return super().learn(  # type: ignore[misc]
            total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar
        )

    def _setup_lr_schedule(self) -> None:
        # SB3's schedule takes Python numbers only; the constructors' checks accept numpy scalars too.
        self.learning_rate = python_number(self.learning_rate)
        super()._setup_lr_schedule()  # type: ignore[misc]

    def set_random_seed(self, seed: int | None = None) -> None:
        super().set_random_seed(python_number(seed))  # type: ignore[misc]

    def _update_learning_rate(self, optimizers: list[th.optim.Optimizer] | th.optim.Optimizer) -> None:
        scheduled_rate("learning_rate", self.lr_schedule, self._current_progress_remaining)
        super()._update_learning_rate(optimizers)  # type: ignore[misc]

    def _setup_learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> tuple[int, BaseCallback]:
        check_total_timesteps(total_timesteps)
        return super()._setup_learn(int(total_timesteps), *args, **kwargs)  # type: ignore[misc]

    def save(self, path: Any, exclude: Any = None, include: Any = None) -> None:
        """
        SB3's ``save``, refusing a model whose parameters are not all finite, and naming the class in the file so
        that loading it with another algorithm fails clearly.

        :param path: Where to save
        :param exclude: Attributes not to save, besides the defaults
        :param include: Attributes to save that are excluded by default
        """
        for name, parameter in self.policy.named_parameters():
            if not th.isfinite(parameter).all():
                raise ValueError(f"Refusing to save: the policy parameter {name!r} holds NaN or infinite values")
        self.sb3_pgnotes_class = algorithm_name(type(self))
        super().save(path, exclude, include)  # type: ignore[misc]

    @classmethod
    def load(  # type: ignore[no-untyped-def]
        cls,
        path: Any,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ):
        """
        SB3's ``load``, after checking that the file is readable and was saved by this class. ``load`` unpickles
        objects stored in the file: use :func:`sb3_pgnotes.load_untrusted` for a file from an untrusted source.
        """
        data = read_model_data(path)
        check_saved_class(cls, data, path)  # type: ignore[arg-type]
        check_load_overrides(cls, data, {**(custom_objects or {}), **kwargs})  # type: ignore[arg-type]
        stored, given = data.get("policy_kwargs"), kwargs.get("policy_kwargs")
        if isinstance(stored, dict) and isinstance(given, dict) and "use_sde" in stored and "use_sde" not in given:
            # SB3's off-policy base saves use_sde inside policy_kwargs, and its load refuses given ones that differ.
            kwargs["policy_kwargs"] = {**given, "use_sde": stored["use_sde"]}
        return super().load(  # type: ignore[misc]
            model_file_path(path), env, device, custom_objects, print_system_info, force_reset, **kwargs
        )
