"""rl-zoo3 hyperparameter files, installed as ``sb3_pgnotes.hyperparams``."""
