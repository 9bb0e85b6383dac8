"""rl-zoo3 integration: the registry of our algorithms, their Optuna samplers and the command line."""

from sb3_pgnotes.zoo.registry import ZOO_ALGORITHMS, ZooAlgorithm, hyperparams_path, register_algorithms

__all__ = ["ZOO_ALGORITHMS", "ZooAlgorithm", "hyperparams_path", "register_algorithms"]
