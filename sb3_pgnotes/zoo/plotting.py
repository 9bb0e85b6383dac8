"""Learning-curve figure written after ``train``."""

import os

import numpy as np
from matplotlib.figure import Figure
from stable_baselines3.common.monitor import load_results
from stable_baselines3.common.results_plotter import X_TIMESTEPS, ts2xy, window_func


def plot_learning_curve(log_dir: str, output_path: str, title: str, window: int = 50) -> bool:
    """
    Plot the training episode returns of a run, and its evaluations when there are any, to a PNG.

    Reads the run's ``*monitor.csv`` files (SB3's :class:`~stable_baselines3.common.monitor.Monitor`) and, if
    present, the ``evaluations.npz`` written by :class:`~stable_baselines3.common.callbacks.EvalCallback`.
    The figure is drawn without pyplot, so no display or interactive backend is needed.

    :param log_dir: folder holding the monitor files (the zoo's run folder)
    :param output_path: where to write the PNG
    :param title: title of the figure
    :param window: number of episodes in the moving average
    :return: whether a figure was written (``False`` when no episode finished)
    """
    timesteps, returns = ts2xy(load_results(log_dir), X_TIMESTEPS)
    if len(returns) == 0:
        return False

    figure = Figure(figsize=(8, 4.5), layout="tight")
    ax = figure.subplots()
    ax.plot(timesteps, returns, ".", alpha=0.3, color="tab:blue", label="training episode")
    if len(returns) >= window:
        mean_timesteps, mean_returns = window_func(timesteps, returns, window, np.mean)
        ax.plot(mean_timesteps, mean_returns, color="tab:blue", label=f"training, mean of {window} episodes")

    evaluations_path = os.path.join(log_dir, "evaluations.npz")
    if os.path.exists(evaluations_path):
        with np.load(evaluations_path) as evaluations:
            eval_timesteps, eval_returns = evaluations["timesteps"], evaluations["results"]
        mean, std = eval_returns.mean(axis=1), eval_returns.std(axis=1)
        ax.errorbar(eval_timesteps, mean, yerr=std, color="tab:orange", marker="o", capsize=3, label="evaluation")

    ax.set_xlabel("timesteps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    figure.savefig(output_path, dpi=100)
    return True
