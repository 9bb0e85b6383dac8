"""
The variance of ``Reinforce``'s update with ``baseline="optimal"`` against ``baseline="mean"`` and ``"none"``, by the
number of episodes per update N, on random tabular MDPs whose rewards are all positive.

Each MDP (:meth:`sb3_pgnotes.diagnostics.tabular.TabularMDP.random`) gets a linear softmax policy at seeded random
weights, trained by plain SGD at gamma 1 (reward-to-go, discount option 1, no standardisation). For each N,
``--batches`` batches are drawn from that fixed policy and each is trained on once, the policy restored after each
update (:func:`sb3_pgnotes.diagnostics.tabular.reinforce_update_statistics`); the optimal baseline's pool is filled by
``optimal_baseline_horizon`` updates first, as in training. Two exact baselines from dynamic programming, applied
directly to the same batches as the mean baseline (:func:`sb3_pgnotes.diagnostics.tabular.baseline_update_statistics`),
are the references: the time-optimal ``B_t`` that ``baseline="optimal"`` estimates (what the estimate could reach at
best), and the true value ``V_t(s)`` of each step's state at its time, what a learned critic regresses on (given the
time too).
Reported: the total variance of the update direction relative to the mean baseline's, the cosine between each mean
direction and the exact gradient, and the norm of the mean baseline's mean direction over the exact gradient's
(below 1: its bias, the batch mean including each episode's own return, shrinks the update).

Example: ``python -m benchmarks.optimal_baseline_variance --out docs/benchmarks/optimal_baseline_variance.md``.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch as th

from sb3_pgnotes import Reinforce
from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.returns import time_indices
from sb3_pgnotes.diagnostics.tabular import (
    TabularMDP,
    UpdateStatistics,
    baseline_update_statistics,
    linear_softmax_probs,
    linear_softmax_score_norms,
    reinforce_update_statistics,
    tabular_reinforce,
)

#: Seed, size, horizon and reward offset varied; rewards are ``offset + U(0, 1)``.
MDPS = {
    "A: 3 states, 2 actions, horizon 6, offset 1": dict(n_states=3, n_actions=2, horizon=6, reward_offset=1.0, seed=0),
    "B: 5 states, 3 actions, horizon 10, offset 2": dict(n_states=5, n_actions=3, horizon=10, reward_offset=2.0, seed=1),
    "C: 4 states, 3 actions, horizon 8, offset 1": dict(n_states=4, n_actions=3, horizon=8, reward_offset=1.0, seed=5),
    "D: 6 states, 2 actions, horizon 12, offset 3": dict(n_states=6, n_actions=2, horizon=12, reward_offset=3.0, seed=6),
    "E: 8 states, 4 actions, horizon 20, offset 0.5": dict(n_states=8, n_actions=4, horizon=20, reward_offset=0.5, seed=2),
    "F: 4 states, 2 actions, horizon 15, offset 5": dict(n_states=4, n_actions=2, horizon=15, reward_offset=5.0, seed=3),
}
BASELINES = ("optimal", "mean", "none")


def exact_baselines(mdp: TabularMDP, model: Reinforce) -> dict[str, Callable[[EpisodeBatch], np.ndarray]]:
    """
    :param mdp: The MDP
    :param model: A model from :func:`~sb3_pgnotes.diagnostics.tabular.tabular_reinforce` on it
    :return: The two exact baselines, as functions of a batch: the time-optimal ``B_t`` that ``baseline="optimal"``
        estimates, and the true value ``V_t(s)`` of the step's state at its time (a learned critic's regression target)
    """
    action_net = model.policy.action_net
    probs = linear_softmax_probs(action_net.weight, action_net.bias, mdp.n_states).detach()
    time_optimal = mdp.time_optimal_baseline(probs, model.gamma, linear_softmax_score_norms(probs)).numpy()
    _, action_values = mdp.occupancies_and_action_values(probs, model.gamma)
    values = th.einsum("sa,tsa->ts", probs, action_values).numpy()
    return {
        "exact B_t": lambda batch: time_optimal[time_indices(batch.episode_lengths)],
        "exact V_t(s)": lambda batch: values[time_indices(batch.episode_lengths), batch.observations],
    }


def compare(
    mdp: TabularMDP, n_episodes: int, n_batches: int, seed: int = 0, optimal_baseline_horizon: int = 10
) -> dict[str, UpdateStatistics]:
    """
    :param mdp: The MDP
    :param n_episodes: Episodes per update
    :param n_batches: Updates measured
    :param optimal_baseline_horizon: Reinforce's argument of that name for ``baseline="optimal"``
    :param seed: Seed of the model and of the episodes (the same batches for every baseline but the pooled optimal
        one, which first fills its pool)
    :return: Per baseline (Reinforce's and the exact ones), its update statistics
    """
    stats = {}
    for baseline in BASELINES:
        kwargs = {"optimal_baseline_horizon": optimal_baseline_horizon} if baseline == "optimal" else {}
        model = tabular_reinforce(mdp, baseline, seed, **kwargs)
        warm_up = model.optimal_baseline_horizon if baseline == "optimal" else 0
        rng = np.random.default_rng([seed, n_episodes])
        stats[baseline] = reinforce_update_statistics(model, mdp, n_episodes, n_batches, rng, warm_up)
    for name, exact in exact_baselines(mdp, model).items():
        rng = np.random.default_rng([seed, n_episodes])
        stats[name] = baseline_update_statistics(mdp, model.policy.action_net, n_episodes, n_batches, rng, exact)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", nargs="+", type=int, default=[2, 4, 8, 16, 32, 64], help="N, episodes per update")
    parser.add_argument("--batches", type=int, default=400, help="updates measured per N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimal-baseline-horizon", type=int, default=10, help="Reinforce's pool, in updates")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/optimal_baseline_variance.md"))
    args = parser.parse_args()
    th.set_num_threads(1)
    lines = [
        "# Optimal against batch-mean baseline: variance by batch size",
        "",
        f"Produced by `python -m benchmarks.optimal_baseline_variance --batches {args.batches} --episodes "
        f"{' '.join(map(str, args.episodes))} --optimal-baseline-horizon {args.optimal_baseline_horizon}` (the module's "
        "docstring says how). Variance: total variance of `Reinforce`'s update direction over the batches, relative to "
        "`baseline='mean'`'s on the same batches; below 1 is lower. Cosine: mean direction against the exact gradient. "
        "Mean's norm ratio: the mean baseline's mean direction over the exact gradient's norm (its bias). `exact B_t` "
        "and `exact V_t(s)`: the exact time-optimal baseline and the true value of each step's state at its time, from "
        "dynamic programming, applied to the mean baseline's batches.",
        "",
        "| MDP | N | optimal / mean | exact B_t / mean | exact V_t(s) / mean | none / mean | cosine, optimal "
        "| cosine, mean | mean's norm ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, spec in MDPS.items():
        mdp = TabularMDP.random(**spec)  # type: ignore[arg-type]
        for n_episodes in args.episodes:
            stats = compare(mdp, n_episodes, args.batches, args.seed, args.optimal_baseline_horizon)
            mean = stats["mean"].total_variance
            lines.append(
                f"| {name} | {n_episodes} | {stats['optimal'].total_variance / mean:.3f} | "
                f"{stats['exact B_t'].total_variance / mean:.3f} | {stats['exact V_t(s)'].total_variance / mean:.3f} | "
                f"{stats['none'].total_variance / mean:.3f} | {stats['optimal'].cosine:.3f} | {stats['mean'].cosine:.3f} | "
                f"{stats['mean'].norm_ratio:.2f} |"
            )
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
