"""
Render the results file into a report: per env, a final-score table and learning curves; over envs, aggregate
statistics of normalised scores computed with rliable (Agarwal et al. 2021, https://arxiv.org/abs/2108.13264).

- Final score of a run: the mean return of its last evaluation, at the end of its budget.
- Per env: the IQM (interquartile mean) of the final scores over seeds with a 95% percentile-bootstrap confidence
  interval, the mean and standard deviation, the median env steps and the median seconds of training (evaluations
  excluded) before the first evaluation reaching the threshold (a seed that never reaches it counts as never); curves plot
  the IQM over seeds at each evaluation with its bootstrap band.
- Normalised score: 0 is a uniformly random policy's mean return (100 episodes, measured once per env and kept in the
  results folder's ``random_policy.json``), 1 the best IQM final score of the algorithms compared on that env.
- Beside each env's table, the published scores of :mod:`benchmarks.anchors` (other libraries' figures, not rerun).
- Aggregates, separately over the envs with discrete actions and those with continuous actions, at one budget per env
  (the one most compared algorithms have at least ``--min-runs`` seeds at, 3 by default), for each compared algorithm
  with that many seeds on every env of the group (an env enters once every algorithm with those seeds on most of the
  group's envs has them there, so that a partly run env does not push algorithms out of the aggregates):
  IQM, median and mean of the normalised final scores with stratified bootstrap confidence intervals, performance
  profiles, and the probability that a run of one of ours beats a run of its SB3 analogue on the same env.

Nothing is retrained. Example: ``python -m benchmarks.report --results docs/benchmarks/results --out docs/benchmarks``.
Thresholds default to the env's ``reward_threshold`` (CartPole-v1: 475, Acrobot-v1: -100), or to
:data:`THRESHOLDS` for an env that registers none (Pendulum-v1: -200); override with ``--threshold ENV=VALUE``.
"""

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import matplotlib
import numpy as np
from rliable import library as rly
from rliable import metrics, plot_utils

from benchmarks.anchors import anchor_lines
from benchmarks.ppo_table1 import random_policy_return
from benchmarks.results import Record, load_records, run_key
from benchmarks.run import DEFAULT_RESULTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.lines import Line2D

T = TypeVar("T")

REPORT_FILE = "report.md"
RANDOM_FILE = "random_policy.json"
Group = tuple[str, str, int]
#: The algorithms the aggregates compare: ours, then SB3's with rl-zoo3's hyperparameters.
OURS = ("reinforce", "nstep_ac", "ppo_kl", "offpolicy_pg")
SB3 = ("a2c", "ppo", "sac")
#: Each of ours against the SB3 algorithm closest to it in what it estimates; OffPolicyPG, which reuses old data
#: through importance weights, against PPO (which reuses a rollout for several epochs) and SAC (a replay buffer).
ANALOGUES = (
    ("reinforce", "a2c"),
    ("nstep_ac", "a2c"),
    ("ppo_kl", "ppo"),
    ("offpolicy_pg", "ppo"),
    ("offpolicy_pg", "sac"),
)
#: Seeds an algorithm needs at a budget before the aggregates compare it there (``--min-runs``).
MIN_RUNS = 3
#: Normalised score thresholds of the performance profiles.
TAUS = np.linspace(0.0, 1.2, 49)


#: Thresholds of the matrix's envs that register no ``reward_threshold``: Pendulum-v1's is the score at which
#: the pendulum is swung up and held from most starts.
THRESHOLDS = {"Pendulum-v1": -200.0}


def default_threshold(env_id: str) -> float | None:
    """:return: The env's registered ``reward_threshold``, else its entry in :data:`THRESHOLDS`, else None."""
    registered = gym.spec(env_id).reward_threshold
    return THRESHOLDS.get(env_id) if registered is None else registered


def first_reaching(record: Record, threshold: float) -> int | None:
    """
    :param record: A run record.
    :param threshold: Return to reach.
    :return: Index of the first evaluation after training started whose mean return reaches ``threshold``, or None
        (the evaluation at step 0 measures the initialisation: an untrained deterministic CartPole policy can score 500).
    """
    curve = enumerate(zip(record["eval_timesteps"], record["eval_mean"], strict=True))
    return next((index for index, (t, mean) in curve if t > 0 and mean >= threshold), None)


def steps_to_threshold(record: Record, threshold: float) -> int | None:
    """:return: Env steps at the first evaluation reaching ``threshold`` (see :func:`first_reaching`), or None."""
    index = first_reaching(record, threshold)
    return None if index is None else record["eval_timesteps"][index]


def median_steps_to_threshold(records: list[Record], threshold: float) -> float:
    """:return: The median over seeds of :func:`steps_to_threshold`, a seed that never reaches it counting as infinite"""
    steps = [steps_to_threshold(record, threshold) for record in records]
    return float(np.median([np.inf if s is None else s for s in steps]))


def seconds_to_threshold(records: list[Record], threshold: float) -> float | None:
    """
    :return: The median over seeds of the seconds of training (evaluations excluded) before the first evaluation
        reaching ``threshold``, a seed that never reaches it counting as infinite; None when a record predates the
        per-evaluation clock.
    """
    if not all("eval_train_s" in record for record in records):
        return None
    seconds = []
    for record in records:
        index = first_reaching(record, threshold)
        seconds.append(np.inf if index is None else record["eval_train_s"][index])
    return float(np.median(seconds))


def common_curve(records: list[Record]) -> tuple[np.ndarray, np.ndarray]:
    """
    Put the seeds' evaluation curves on one grid (linear interpolation; episodic algorithms overshoot the budget).

    :param records: Runs of one algorithm on one env.
    :return: ``(timesteps (T,), returns (n_seeds, T))``, the grid ending at the shortest run.
    """
    end = min(record["eval_timesteps"][-1] for record in records)
    grid = np.unique(np.concatenate([record["eval_timesteps"] for record in records]))
    grid = grid[grid <= end]
    return grid, np.stack([np.interp(grid, record["eval_timesteps"], record["eval_mean"]) for record in records])


def final_scores(records: list[Record]) -> np.ndarray:
    """:return: The final scores of the runs, ordered by seed."""
    return np.array([record["eval_mean"][-1] for record in sorted(records, key=lambda record: record["seed"])])


def seeded(estimate: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """
    Call an rliable estimate with NumPy's global generator seeded, restoring its state after: rliable's stratified
    bootstraps draw their resamples from that generator and ignore the ``random_state`` they are given, so a seeded
    call is the only way two reports from the same records agree.
    """
    state = np.random.get_state()
    np.random.seed(0)
    try:
        return estimate(*args, **kwargs)
    finally:
        np.random.set_state(state)


def iqm_interval(scores: np.ndarray, reps: int) -> tuple[np.ndarray, np.ndarray]:
    """
    :param scores: ``(n_runs, n_tasks, T)`` scores.
    :param reps: Bootstrap resamples.
    :return: The IQM over runs and tasks at each of the T columns ``(T,)``, and its 95% stratified-bootstrap interval
        ``(2, T)``.
    """

    def column_iqm(values: np.ndarray) -> np.ndarray:
        # rliable's aggregate_iqm, scipy's 25% trimmed mean, of every column at once: the same cut, without scipy's
        # per-call overhead, which dominated the report's time with thousands of resamples per curve.
        ordered = np.sort(values.reshape(-1, values.shape[-1]), axis=0)
        cut = int(0.25 * len(ordered))
        return ordered[cut : len(ordered) - cut].mean(axis=0)

    point, interval = seeded(rly.get_interval_estimates, {"x": scores}, column_iqm, reps=reps)
    return point["x"], interval["x"]


def group_records(records: list[Record]) -> dict[Group, list[Record]]:
    """
    :param records: All run records (a repeated run keeps its latest record).
    :return: Records grouped by ``(env, algo, timesteps)``, sorted.
    """
    latest = {run_key(record): record for record in records}
    groups: dict[Group, list[Record]] = defaultdict(list)
    for record in latest.values():
        groups[record["env"], record["algo"], record["timesteps"]].append(record)
    return dict(sorted(groups.items()))


def matrix_groups(groups: dict[Group, list[Record]], min_runs: int = MIN_RUNS) -> dict[tuple[str, str], list[Record]]:
    """
    :param groups: Records grouped by ``(env, algo, timesteps)``.
    :param min_runs: Seeds an algorithm needs at a budget to count there.
    :return: Per ``(env, algo)`` of the compared algorithms, the runs at the env's matrix budget: one budget per env,
        so that the algorithms compared on it had the same number of env steps; the budget that most compared
        algorithms have runs at (the larger one on a tie), so that a sweep at a new budget replaces the old one only
        once it covers more algorithms. An algorithm counts at a budget, and is compared there, once it has
        ``min_runs`` seeds at it: the aggregates take as many runs per env as the env with the fewest.
    """
    complete = {group: records for group, records in groups.items() if group[1] in OURS + SB3 and len(records) >= min_runs}
    budgets: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for env_id, _, timesteps in complete:
        budgets[env_id][timesteps] += 1
    chosen = {env_id: max(counts, key=lambda timesteps: (counts[timesteps], timesteps)) for env_id, counts in budgets.items()}
    return {(env_id, algo): records for (env_id, algo, timesteps), records in complete.items() if chosen[env_id] == timesteps}


def aggregated_envs(envs: list[str], runs: dict[tuple[str, str], list[Record]]) -> list[str]:
    """
    :param envs: A group's envs.
    :param runs: The compared algorithms' runs per ``(env, algo)``.
    :return: The envs that enter the group's aggregates: those where every algorithm with runs on most of the
        group's envs has its runs. An env where only some algorithms have run yet waits for the others, rather than
        pushing out of the aggregates those that have not reached it (SB3's among them, the aggregates' reference);
        an algorithm that has run on few envs yet waits out, rather than holding the aggregates to those envs.
    """
    widespread = [algo for algo in OURS + SB3 if 2 * sum((env_id, algo) in runs for env_id in envs) > len(envs)]
    return [env_id for env_id in envs if all((env_id, algo) in runs for algo in widespread)]


def random_scores(results_dir: Path, env_ids: list[str]) -> dict[str, float]:
    """
    :param results_dir: Folder holding the results file; the scores are cached in its ``random_policy.json``.
    :param env_ids: Envs that need a score; the missing ones are measured (100 episodes of uniformly random actions).
    :return: The random policy's mean return per env.
    """
    path = results_dir / RANDOM_FILE
    scores = json.loads(path.read_text()) if path.exists() else {}
    missing = [env_id for env_id in env_ids if env_id not in scores]
    for env_id in missing:
        scores[env_id] = float(np.mean(random_policy_return(env_id, seed=0)))
    if missing:
        path.write_text(json.dumps(dict(sorted(scores.items())), indent=1) + "\n")
    return scores


def env_section(
    env_id: str, groups: dict[Group, list[Record]], threshold: float | None, reps: int, out_dir: Path
) -> list[str]:
    """
    Write the env's curves figure.

    :return: Markdown lines: the env's final-score table and its figure.
    """
    lines = [
        f"### {env_id}",
        "",
        "| Algo | Budget | Seeds | Final IQM [95% CI] | Mean ± std | Steps to threshold | Reached | Train s to threshold "
        "| Env-steps/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    budgets = {timesteps for _, _, timesteps in groups}
    for (_, algo, timesteps), records in groups.items():
        finals = final_scores(records)
        (point,), ((low,), (high,)) = iqm_interval(finals[:, None, None], reps)
        to_threshold, reached, time_to_threshold = "-", "-", "-"
        if threshold is not None:
            n_reached = sum(steps_to_threshold(record, threshold) is not None for record in records)
            reached = f"{n_reached}/{len(records)}"
            steps = median_steps_to_threshold(records, threshold)
            to_threshold = "never" if np.isinf(steps) else f"{steps:,.0f}"
            seconds = seconds_to_threshold(records, threshold)
            time_to_threshold = "n/a" if seconds is None else "never" if np.isinf(seconds) else f"{seconds:,.0f}"
        speed = np.mean([record["steps_per_s"] for record in records])
        lines.append(
            f"| {algo} | {timesteps:,} | {len(records)} | {point:.1f} [{low:.1f}, {high:.1f}] | "
            f"{finals.mean():.1f} ± {finals.std():.1f} | {to_threshold} | {reached} | {time_to_threshold} | {speed:,.0f} |"
        )
        grid, returns = common_curve(records)
        curve, (curve_low, curve_high) = iqm_interval(returns[:, None, :], reps)
        label = f"{algo} ({len(records)} seeds)" if len(budgets) == 1 else f"{algo} @ {timesteps:,} ({len(records)} seeds)"
        (line,) = ax.plot(grid, curve, label=label)
        ax.fill_between(grid, curve_low, curve_high, color=line.get_color(), alpha=0.2)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(title=env_id, xlabel="env steps", ylabel="eval return, IQM over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_dir / f"curves_{env_id}.png", dpi=120)
    plt.close(fig)
    threshold_text = "none" if threshold is None else f"{threshold:g}"
    return [
        *lines,
        "",
        f"Threshold: {threshold_text}.",
        "",
        *anchor_lines(env_id),
        f"![{env_id}](curves_{env_id}.png)",
        "",
    ]


def normalised_scores(
    runs: dict[tuple[str, str], list[Record]], envs: list[str], random: dict[str, float]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """
    :param runs: The compared algorithms' runs per ``(env, algo)``.
    :param envs: The envs of one aggregate group.
    :param random: The random policy's score per env.
    :return: Per algorithm with runs on every env, its ``(n_runs, n_envs)`` normalised final scores (the first seeds
        of each env, as many as its env with the fewest), and the score that maps to 1 per env.
    """
    algos = [algo for algo in OURS + SB3 if all((env_id, algo) in runs for env_id in envs)]
    best = {
        env_id: max(float(metrics.aggregate_iqm(final_scores(runs[env_id, algo])[:, None])) for algo in algos)
        for env_id in envs
    }
    scores = {}
    for algo in algos:
        finals = [final_scores(runs[env_id, algo]) for env_id in envs]
        n_runs = min(len(values) for values in finals)
        columns = [
            (values[:n_runs] - random[env_id]) / (best[env_id] - random[env_id])
            for env_id, values in zip(envs, finals, strict=True)
        ]
        scores[algo] = np.stack(columns, axis=1)
    return scores, best


def aggregate_section(
    name: str, envs: list[str], runs: dict[tuple[str, str], list[Record]], random: dict[str, float], reps: int, out_dir: Path
) -> list[str]:
    """
    Write the group's aggregate and performance-profile figures.

    :param name: The group's name, also the stem of its figures.
    :param envs: The group's envs.
    :param runs: The compared algorithms' runs per ``(env, algo)``.
    :param random: The random policy's score per env.
    :param reps: Bootstrap resamples.
    :param out_dir: Folder receiving the figures.
    :return: Markdown lines: normalisation, aggregate table, probability of improvement, figures.
    """
    scores, best = normalised_scores(runs, envs, random)
    lines = [f"### {name}: {', '.join(envs)}", ""]
    if not scores:
        return [*lines, "No compared algorithm has runs on every env of this group yet.", ""]
    lines += [
        "| Env | 0 (random policy) | 1 (best IQM final score) |",
        "|---|---:|---:|",
        *[f"| {env_id} | {random[env_id]:.1f} | {best[env_id]:.1f} |" for env_id in envs],
        "",
        "| Algo | Runs per env | IQM [95% CI] | Median [95% CI] | Mean [95% CI] |",
        "|---|---:|---:|---:|---:|",
    ]

    def aggregates(values: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(values), metrics.aggregate_median(values), metrics.aggregate_mean(values)])

    point, interval = seeded(rly.get_interval_estimates, scores, aggregates, reps=reps)
    for algo in scores:
        cells = [f"{point[algo][i]:.2f} [{interval[algo][0, i]:.2f}, {interval[algo][1, i]:.2f}]" for i in range(3)]
        lines.append(f"| {algo} | {len(scores[algo])} | {' | '.join(cells)} |")
    fig, _ = plot_utils.plot_interval_estimates(
        point, interval, ["IQM", "Median", "Mean"], algorithms=list(scores), row_height=0.6, xlabel_y_coordinate=-0.3
    )
    fig.savefig(out_dir / f"aggregate_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    profiles, profile_cis = seeded(rly.create_performance_profile, scores, TAUS, reps=reps)
    colors = dict(zip(scores, sns.color_palette("colorblind", len(scores)), strict=True))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, TAUS, performance_profile_cis=profile_cis, colors=colors, ax=ax)
    ax.legend(handles=[Line2D([], [], color=color, label=algo) for algo, color in colors.items()], fontsize="small")
    fig.tight_layout()
    fig.savefig(out_dir / f"profiles_{name}.png", dpi=120)
    plt.close(fig)

    pairs = {
        f"{ours} > {theirs}": [scores[ours], scores[theirs]] for ours, theirs in ANALOGUES if {ours, theirs} <= set(scores)
    }
    if pairs:
        improvement, improvement_ci = seeded(rly.get_interval_estimates, pairs, metrics.probability_of_improvement, reps=reps)
        lines += [
            "",
            "| Probability of improvement | P [95% CI] |",
            "|---|---:|",
            *[
                f"| {pair} | {improvement[pair].item():.2f} [{improvement_ci[pair].min():.2f}, "
                f"{improvement_ci[pair].max():.2f}] |"
                for pair in pairs
            ],
        ]
    return [
        *lines,
        "",
        f"![{name} aggregates](aggregate_{name}.png)",
        "",
        f"![{name} performance profiles](profiles_{name}.png)",
        "",
    ]


def is_discrete(env_id: str) -> bool:
    """:return: Whether the env's actions are discrete."""
    env = gym.make(env_id)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    env.close()
    return discrete


def render(results_dir: Path, out_dir: Path, thresholds: dict[str, float], reps: int, min_runs: int = MIN_RUNS) -> Path:
    """
    :param results_dir: Folder holding the results file.
    :param out_dir: Folder receiving ``report.md`` and its figures.
    :param thresholds: Per-env thresholds overriding the env's ``reward_threshold``.
    :param reps: Bootstrap resamples of every interval.
    :param min_runs: Seeds an algorithm needs at a budget before the aggregates compare it there.
    :return: Path of the markdown report.
    """
    groups = group_records(load_records(results_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    env_ids = sorted({env_id for env_id, _, _ in groups})
    runs = matrix_groups(groups, min_runs)
    random = random_scores(results_dir, sorted({env_id for env_id, _ in runs}))
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks.report` from `{results_dir}`; the module's docstring defines every "
        "statistic. Final score: the last evaluation's mean return. IQM: interquartile mean over runs, with 95% "
        "percentile (per env) or stratified (aggregates) bootstrap confidence intervals from rliable. Env-steps/s: "
        "training throughput, evaluation time excluded, mean over seeds; the runs come from different sessions and "
        "ran beside other work, so compare speed with `benchmarks.throughput`.",
        "",
        "## Aggregates over envs",
        "",
        f"Compared: ours ({', '.join(OURS)}) and SB3's ({', '.join(SB3)}), at one budget per env: the one most of "
        f"them have at least {min_runs} seeds at. An algorithm enters a group's aggregate once it has {min_runs} seeds "
        "on every env of the group, with as many runs per env as its env with the fewest; an env enters its group once "
        "every algorithm with those seeds on most of the group's envs has them there.",
        "",
    ]
    for name, discrete in (("discrete", True), ("continuous", False)):
        group = sorted({env_id for env_id, _ in runs if is_discrete(env_id) == discrete})
        envs = aggregated_envs(group, runs)
        if envs:
            lines += aggregate_section(name, envs, runs, random, reps, out_dir)
        compared = [algo for algo in OURS + SB3 if all((env_id, algo) in runs for env_id in envs)]
        for env_id in sorted(set(group) - set(envs)):
            missing = [algo for algo in compared if (env_id, algo) not in runs]
            lines += [f"Not in the {name} aggregates until these have {min_runs} seeds on {env_id}: {', '.join(missing)}.", ""]
    lines += ["## Per env", ""]
    for env_id in env_ids:
        env_groups = {group: records for group, records in groups.items() if group[0] == env_id}
        lines += env_section(env_id, env_groups, thresholds.get(env_id, default_threshold(env_id)), reps, out_dir)
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
    parser.add_argument("--reps", type=int, default=5000, help="Bootstrap resamples of every interval")
    parser.add_argument(
        "--min-runs", type=int, default=MIN_RUNS, help="Seeds an algorithm needs at a budget to enter the aggregates"
    )
    args = parser.parse_args(argv)
    if not load_records(args.results):
        parser.error(f"--results {args.results}: no run records there (runs.jsonl is missing or empty)")
    print(f"Wrote {render(args.results, args.out, dict(args.threshold), args.reps, args.min_runs)}")


if __name__ == "__main__":
    main()
