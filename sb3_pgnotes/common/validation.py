"""Argument and value checks shared by the algorithms: each error names the argument and what is allowed."""

import math
from typing import Any

import numpy as np
import torch as th


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
