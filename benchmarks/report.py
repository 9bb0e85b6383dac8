"""
Render the results file into a markdown table and one learning-curve PNG per env.

Example: ``python -m benchmarks.report --results docs/benchmarks/results --out docs/benchmarks``.
Thresholds default to the env's ``reward_threshold`` (CartPole-v1: 475, Acrobot-v1: -100); override with
``--threshold ENV=VALUE``.
"""

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib
import numpy as np

from benchmarks.results import load_records, run_key
from benchmarks.run import DEFAULT_RESULTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt

REPORT_FILE = "report.md"
Group = tuple[str, str, int]


def default_threshold(env_id: str) -> float | None:
    """:return: The env's registered ``reward_threshold``, or None."""
    return gym.spec(env_id).reward_threshold


def steps_to_threshold(record: dict[str, Any], threshold: float) -> int | None:
    """
    :param record: A run record.
    :param threshold: Return to reach.
    :return: Env steps at the first evaluation after training started whose mean return reaches ``threshold``, or None
        (the evaluation at step 0 measures the initialisation: an untrained deterministic CartPole policy can score 500).
    """
    curve = zip(record["eval_timesteps"], record["eval_mean"], strict=True)
    return next((t for t, mean in curve if t > 0 and mean >= threshold), None)


def common_curve(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """
    Put the seeds' evaluation curves on one grid (linear interpolation; episodic algorithms overshoot the budget).

    :param records: Runs of one algorithm on one env.
    :return: ``(timesteps (T,), returns (n_seeds, T))``, the grid ending at the shortest run.
    """
    end = min(record["eval_timesteps"][-1] for record in records)
    grid = np.unique(np.concatenate([record["eval_timesteps"] for record in records]))
    grid = grid[grid <= end]
    return grid, np.stack([np.interp(grid, record["eval_timesteps"], record["eval_mean"]) for record in records])


def bootstrap_ci(values: np.ndarray, n_resamples: int = 2000, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """
    :param values: ``(n_seeds, T)`` returns.
    :param n_resamples: Bootstrap resamples of the seeds.
    :param level: Confidence level.
    :return: Lower and upper percentile-bootstrap bounds of the mean over seeds, each ``(T,)``.
    """
    rng = np.random.default_rng(0)
    index = rng.integers(0, len(values), size=(n_resamples, len(values)))
    means = values[index].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def group_records(records: list[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """
    :param records: All run records (a repeated run keeps its latest record).
    :return: Records grouped by ``(env, algo, timesteps)``, sorted.
    """
    latest = {run_key(record): record for record in records}
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for record in latest.values():
        groups[record["env"], record["algo"], record["timesteps"]].append(record)
    return dict(sorted(groups.items()))


def table_row(group: Group, records: list[dict[str, Any]], threshold: float | None) -> str:
    """:return: One markdown table row summarising the seeds of ``group``."""
    env_id, algo, timesteps = group
    finals = np.array([record["eval_mean"][-1] for record in records])
    speed = np.mean([record["steps_per_s"] for record in records])
    to_threshold, reached = "-", "-"
    if threshold is not None:
        steps = [s for s in (steps_to_threshold(record, threshold) for record in records) if s is not None]
        reached = f"{len(steps)}/{len(records)}"
        to_threshold = f"{np.median(steps):,.0f}" if steps else "never"
    threshold_text = "-" if threshold is None else f"{threshold:g}"
    return (
        f"| {env_id} | {algo} | {timesteps:,} | {len(records)} | {finals.mean():.1f} ± {finals.std():.1f} | "
        f"{threshold_text} | {to_threshold} | {reached} | {speed:,.0f} |"
    )


def plot_env(env_id: str, groups: dict[Group, list[dict[str, Any]]], threshold: float | None, path: Path) -> None:
    """Plot mean eval return over seeds with a 95% bootstrap band, one line per algorithm and budget."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    budgets = {timesteps for _, _, timesteps in groups}
    for (_, algo, timesteps), records in groups.items():
        grid, returns = common_curve(records)
        low, high = bootstrap_ci(returns)
        label = f"{algo} ({len(records)} seeds)" if len(budgets) == 1 else f"{algo} @ {timesteps:,} ({len(records)} seeds)"
        (line,) = ax.plot(grid, returns.mean(axis=0), label=label)
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(title=env_id, xlabel="env steps", ylabel="eval mean return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(results_dir: Path, out_dir: Path, thresholds: dict[str, float]) -> Path:
    """
    :param results_dir: Folder holding the results file.
    :param out_dir: Folder receiving ``report.md`` and ``curves_<env>.png``.
    :param thresholds: Per-env thresholds overriding the env's ``reward_threshold``.
    :return: Path of the markdown report.
    """
    groups = group_records(load_records(results_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks.report` from `{results_dir}`.",
        "Final eval: mean return of the last evaluation, mean ± std over seeds.",
        "Steps to threshold: first evaluation after step 0 that reaches it, median over the seeds that did.",
        "Env-steps/s: training throughput, evaluation time excluded, mean over seeds. The runs come from different sessions "
        "and ran beside other work (usually two at a time), so compare algorithms' speed with `benchmarks.throughput`.",
        "",
        "| Env | Algo | Budget | Seeds | Final eval | Threshold | Steps to threshold | Reached | Env-steps/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    env_ids = sorted({env_id for env_id, _, _ in groups})
    for env_id in env_ids:
        env_groups = {group: records for group, records in groups.items() if group[0] == env_id}
        threshold = thresholds.get(env_id, default_threshold(env_id))
        lines += [table_row(group, records, threshold) for group, records in env_groups.items()]
        plot_env(env_id, env_groups, threshold, out_dir / f"curves_{env_id}.png")
    lines += ["", *[f"![{env_id}](curves_{env_id}.png)" for env_id in env_ids], ""]
    path = out_dir / REPORT_FILE
    path.write_text("\n".join(lines))
    return path


def parse_threshold(text: str) -> tuple[str, float]:
    """:return: ``(env_id, value)`` from ``ENV=VALUE``."""
    env_id, _, value = text.rpartition("=")
    return env_id, float(value)


def main(argv: list[str] | None = None) -> None:
    """:param argv: Command-line arguments (default: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="Results folder")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="Folder for report.md and the PNGs")
    parser.add_argument("--threshold", type=parse_threshold, action="append", default=[], metavar="ENV=VALUE")
    args = parser.parse_args(argv)
    print(f"Wrote {render(args.results, args.out, dict(args.threshold))}")


if __name__ == "__main__":
    main()
