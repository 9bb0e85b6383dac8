"""
Compare the training throughput (env steps/s) of our algorithms with their SB3 analogues at matched work, and show
where the time of one update goes.

Each of ours runs beside the analogue its registry entry names (``benchmarks.registry``), on the same env with the
same ``n_envs``, network and, for a PPO analogue, epochs and minibatch size (:func:`matched_work`). With
``--analogue-rollout matched`` (the default) an on-policy analogue's ``n_steps`` is set so that ``n_steps * n_envs``
matches the mean number of steps per update that ours collected in a pilot run; with ``zoo`` it keeps its rl-zoo3
rollout. Where the episodes per update are an argument (``Reinforce``'s ``n_episodes``, ``OffPolicyPG``'s
``train_freq`` and ``batch_size``), they are raised to ``n_envs`` when smaller, so that no env's steps are thrown
away, and a ``Reinforce`` analogue gets the same number. With several envs ``Reinforce`` discards the steps of envs
past their episode quota, so ``OffPolicyPG`` then updates every as many env steps as a pilot ``Reinforce`` run took
per update. The pair alternates in one process for several rounds (order swapped every round, so that drift and
machine noise hit both), without evaluation or observation normalisation, and the report gives the median over rounds
of each and of their ratio.

Each run is split into phases (:class:`PhaseTimer`): the env's own ``step`` (the physical limit of the collection on
this machine), the policy's forward passes for acting, storage and conversions (the rest of the collection), returns
and targets, the update (``train()``: every gradient step, and the targets it recomputes) and logging.

Example: ``python -m benchmarks.throughput --algos reinforce nstep_ac_1_critic_step ppo_kl offpolicy_pg_matched
--env CartPole-v1 --n-envs 1 4 16 64 --rounds 5``.
"""

import argparse
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from benchmarks.registry import ALGOS, RunConfig, resolve
from benchmarks.run import build_model, make_env
from sb3_pgnotes.common import collection

#: Phases of one update, in report order; "storage" is the collection's time outside the env and the policy.
PHASES = ("env step", "acting", "storage", "returns", "update", "logging", "other")
VEC_ENVS = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}


class PhaseTimer(BaseCallback):
    """
    Time the phases of training. At the start of training it wraps the env's ``step``, the action sampling and
    the policy's forward passes, the returns computations, ``train`` and ``dump_logs`` of the model, and it
    restores them at the end; each wrapper adds its own time less the time of the wrapped calls inside it. The
    collection is the time from each rollout-start to the rollout-end callback.
    """

    def __init__(self) -> None:
        super().__init__()
        self.n_rollouts = 0
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.collecting = False
        self._rollout_start = 0.0
        self._nested: list[float] = []
        #: What each wrapper replaced: (owner, name, the owner's own attribute or None where it was inherited)
        self._originals: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, name: str, phase: Callable[[], str]) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        self._originals.append((owner, name, owner.__dict__.get(name)))

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._nested.append(0.0)
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[phase()] += elapsed - self._nested.pop()
                if self._nested:
                    self._nested[-1] += elapsed

        setattr(owner, name, timed)

    def _on_training_start(self) -> None:
        model, policy = self.model, self.model.policy

        def acting() -> str:
            return "acting" if self.collecting else "update"

        def bootstrap() -> str:
            # SB3 evaluates the last observation's value at the end of a rollout, for its returns.
            return "returns" if self.collecting else "update"

        self._wrap(self.training_env, "step", lambda: "env step")
        # SB3 samples in the policy's forward; our collection loop samples in collection.sample_actions.
        self._wrap(collection, "sample_actions", acting)
        for name in ("forward", "get_distribution", "_predict"):
            self._wrap(policy, name, acting)
        self._wrap(policy, "predict_values", bootstrap)
        self._wrap(getattr(model, "rollout_buffer", None), "compute_returns_and_advantage", lambda: "returns")
        self._wrap(model, "process_batch", lambda: "returns")
        self._wrap(model, "train", lambda: "update")
        self._wrap(model, "dump_logs", lambda: "logging")

    def _on_training_end(self) -> None:
        for owner, name, original in reversed(self._originals):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        self.collecting = True
        self._rollout_start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.collecting = False
        self.n_rollouts += 1
        self.seconds["collection"] += time.perf_counter() - self._rollout_start


@dataclasses.dataclass(frozen=True)
class Timing:
    """
    One timed training run.

    :param steps_per_s: Env steps per second of ``learn()``
    :param steps_per_update: Mean env steps per rollout
    :param phase_ms: Mean milliseconds per rollout in each of :data:`PHASES`
    """

    steps_per_s: float
    steps_per_update: float
    phase_ms: dict[str, float]

    @property
    def env_steps_per_s(self) -> float:
        """Env steps per second of the env's own ``step`` alone."""
        return self.steps_per_update / (self.phase_ms["env step"] / 1e3)


def timed_run(config: RunConfig, env_id: str, timesteps: int, seed: int, vec_env: str = "dummy") -> Timing:
    """
    :param config: Run configuration.
    :param env_id: Gymnasium env id.
    :param timesteps: Training budget.
    :param seed: Seed of the model and the envs.
    :param vec_env: ``dummy`` or ``subproc``.
    :return: The timing of one training run; model construction is not timed.
    """
    env = make_env(env_id, config.n_envs, seed, None, vec_env_cls=VEC_ENVS[vec_env])
    model = build_model(config, env, seed, "cpu")
    timer = PhaseTimer()
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps, callback=timer)
    elapsed = time.perf_counter() - start
    env.close()
    n_rollouts = max(timer.n_rollouts, 1)
    seconds = timer.seconds
    inside_collection = seconds["env step"] + seconds["acting"] + seconds["returns"]
    seconds["storage"] = max(seconds["collection"] - inside_collection, 0.0)
    seconds["other"] = max(elapsed - sum(seconds[phase] for phase in PHASES if phase != "other"), 0.0)
    return Timing(
        steps_per_s=model.num_timesteps / elapsed,
        steps_per_update=model.num_timesteps / n_rollouts,
        phase_ms={phase: 1e3 * seconds[phase] / n_rollouts for phase in PHASES},
    )


def episodes_per_update(kwargs: dict[str, Any]) -> int | None:
    """:return: The episodes per update that ``kwargs`` set (Reinforce's or OffPolicyPG's), None if they set none"""
    if "n_episodes" in kwargs:
        return int(kwargs["n_episodes"])
    train_freq = kwargs.get("train_freq")
    if isinstance(train_freq, tuple) and train_freq[1] == "episode":
        return int(train_freq[0])
    return None


def with_episodes(kwargs: dict[str, Any], n_episodes: int) -> dict[str, Any]:
    """:return: ``kwargs`` with ``n_episodes`` episodes per update (and per gradient step, for OffPolicyPG)"""
    if "train_freq" in kwargs:
        sampled = {key: max(int(kwargs.get(key, 0)), n_episodes) for key in ("batch_size", "max_buffer_episodes")}
        return {**kwargs, "train_freq": (n_episodes, "episode"), **sampled}
    return {**kwargs, "n_episodes": n_episodes}


#: Work per update that a PPO analogue takes from ours, beside the network (rl-zoo3's MuJoCo PPO entries train a
#: 256x256 network for 20 epochs).
EPOCH_WORK = ("n_epochs", "batch_size")


def matched_work(ours_kwargs: dict[str, Any], theirs_kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    :param ours_kwargs: Our constructor kwargs
    :param theirs_kwargs: The analogue's constructor kwargs
    :return: The analogue's kwargs with ours' network, and ours' epochs and minibatch size where both have them
    """
    matched = {key: value for key, value in theirs_kwargs.items() if key != "policy_kwargs"}
    if "policy_kwargs" in ours_kwargs:
        matched["policy_kwargs"] = ours_kwargs["policy_kwargs"]
    for key in EPOCH_WORK:
        if key in ours_kwargs and key in theirs_kwargs:
            matched[key] = ours_kwargs[key]
    return matched


@dataclasses.dataclass(frozen=True)
class Comparison:
    """
    One of ours against its analogue at one ``n_envs``.

    :param ours: Registry name of ours
    :param theirs: Registry name of the analogue
    :param n_envs: Envs of both
    :param rollout: How the analogue's rollout was chosen, a sentence
    :param ours_timings: Ours, one run per round
    :param theirs_timings: The analogue, one run per round
    """

    ours: str
    theirs: str
    n_envs: int
    rollout: str
    ours_timings: list[Timing]
    theirs_timings: list[Timing]

    @property
    def ratios(self) -> list[float]:
        """Per round, env steps/s of ours over the analogue's."""
        return [a.steps_per_s / b.steps_per_s for a, b in zip(self.ours_timings, self.theirs_timings, strict=True)]


def compare(
    algo: str, env_id: str, n_envs: int | None, timesteps: int, rounds: int, analogue_rollout: str, vec_env: str
) -> Comparison:
    """
    :param algo: Registry name of ours (its entry names the analogue)
    :param env_id: Gymnasium env id
    :param n_envs: Envs of both (None: ours' hyperparameters')
    :param timesteps: Env steps per run
    :param rounds: Runs of each
    :param analogue_rollout: ``matched`` or ``zoo`` (see the module's docstring)
    :param vec_env: ``dummy`` or ``subproc``
    :return: The comparison
    """
    spec = ALGOS[algo]
    if spec.analogue is None:
        raise ValueError(f"{algo} has no analogue in benchmarks.registry")
    analogue = ALGOS[spec.analogue]
    ours = resolve(spec, env_id)
    n_envs = n_envs or ours.n_envs
    ours_kwargs = dict(ours.model_kwargs)
    n_episodes = episodes_per_update(ours_kwargs)
    if n_episodes is not None and n_episodes < n_envs:
        ours_kwargs = with_episodes(ours_kwargs, n_envs)
    ours = dataclasses.replace(ours, n_envs=n_envs, normalize_kwargs=None, model_kwargs=ours_kwargs)
    theirs = resolve(analogue, env_id)
    theirs_kwargs = matched_work(ours_kwargs, dict(theirs.model_kwargs))
    rollout = "Each uses the rollout of its own hyperparameters."
    if episodes_per_update(theirs_kwargs) is not None:
        episodes = episodes_per_update(ours_kwargs)
        assert episodes is not None, f"{algo} sets no episodes per update to match {analogue.name}'s"
        theirs_kwargs = with_episodes(theirs_kwargs, episodes)
        rollout = f"Both collect {episodes} episodes per update."
        if "train_freq" in ours_kwargs and n_envs > 1:
            # With several envs the episodic analogue waits for each env's quota and discards the surplus steps, so
            # its updates are rarer per env step than one every `episodes` episodes: update as often as it does.
            pilot = dataclasses.replace(theirs, n_envs=n_envs, normalize_kwargs=None, model_kwargs=theirs_kwargs)
            pilot_batch = timed_run(pilot, env_id, timesteps, seed=rounds, vec_env=vec_env).steps_per_update
            train_freq = max(1, round(pilot_batch / n_envs))
            ours_kwargs["train_freq"] = (train_freq, "step")
            ours = dataclasses.replace(ours, model_kwargs=ours_kwargs)
            rollout = (
                f"Both use {episodes} episodes per update; {algo} updates every {train_freq} steps per env, matching "
                f"the {pilot_batch:.0f} steps per update of a pilot {analogue.name} run."
            )
    elif analogue_rollout == "matched":
        pilot_batch = timed_run(ours, env_id, timesteps, seed=rounds, vec_env=vec_env).steps_per_update
        n_steps = max(1, round(pilot_batch / n_envs))
        theirs_kwargs["n_steps"] = n_steps
        rollout = (
            f"{analogue.name} uses n_steps={n_steps}, matching the {pilot_batch:.0f} steps per update of a pilot {algo} run."
        )
    theirs = dataclasses.replace(theirs, n_envs=n_envs, normalize_kwargs=None, model_kwargs=theirs_kwargs)

    comparison = Comparison(algo, analogue.name, n_envs, rollout, [], [])
    # Alphabetical order in even rounds, reversed in odd ones.
    order = sorted(
        [(algo, ours, comparison.ours_timings), (analogue.name, theirs, comparison.theirs_timings)], key=lambda item: item[0]
    )
    for round_ in range(rounds):
        for name, config, timings in order if round_ % 2 == 0 else order[::-1]:
            timings.append(timed_run(config, env_id, timesteps, seed=round_, vec_env=vec_env))
            print(f"{n_envs} envs, round {round_} {name}: {timings[-1].steps_per_s:,.0f} steps/s", flush=True)
    return comparison


def median(timings: list[Timing], field: Callable[[Timing], float]) -> float:
    """:return: The median of ``field`` over ``timings``"""
    return float(np.median([field(timing) for timing in timings]))


def report_lines(command: str, setting: str, comparisons: list[Comparison]) -> list[str]:
    """
    :param command: The command that made the report
    :param setting: The env and vec-env, a sentence
    :param comparisons: The comparisons
    :return: The markdown report: the ratio table, each comparison's rollout, then the phase table
    """
    lines = [
        "# Throughput: ours against SB3 at matched work",
        "",
        f"Generated by `{command}`.",
        "",
        f"{setting} One torch thread, no evaluation or normalisation; runs alternate, order swapped each round.",
        "",
        "| Ours | Analogue | n_envs | ours steps/s | analogue steps/s | ratio, median | ratio, min-max | rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for comparison in comparisons:
        ratios = comparison.ratios
        lines.append(
            f"| {comparison.ours} | {comparison.theirs} | {comparison.n_envs} "
            f"| {median(comparison.ours_timings, lambda t: t.steps_per_s):,.0f} "
            f"| {median(comparison.theirs_timings, lambda t: t.steps_per_s):,.0f} | **{np.median(ratios):.2f}** "
            f"| {min(ratios):.2f}-{max(ratios):.2f} | {len(ratios)} |"
        )
    lines += ["", "Rollouts:", ""]
    lines += [f"- {c.ours}, {c.n_envs} envs: {c.rollout}" for c in comparisons]
    lines += [
        "",
        "Where the time of one update goes (median over rounds): milliseconds per update, then each phase's share. "
        "`env step`: the env's own `step` (its steps/s is the collection's physical limit here); `acting`: the "
        "policy's forward passes while collecting; `storage`: the rest of the collection (buffers, conversions, "
        "callbacks, checks); `returns`: returns, advantages and critic targets computed at the end of the collection; "
        "`update`: `train()`, every gradient step and what it recomputes; `logging`: `dump_logs`.",
        "",
        "| Algorithm | n_envs | steps/update | ms/update | " + " | ".join(PHASES) + " | env-only steps/s |",
        "|---|---:|---:|---:|" + "---:|" * len(PHASES) + "---:|",
    ]
    for comparison in comparisons:
        for name, timings in ((comparison.ours, comparison.ours_timings), (comparison.theirs, comparison.theirs_timings)):
            phase_ms = {phase: median(timings, lambda t, phase=phase: t.phase_ms[phase]) for phase in PHASES}
            total = sum(phase_ms.values())
            shares = " | ".join(f"{100 * phase_ms[phase] / total:.0f}%" for phase in PHASES)
            lines.append(
                f"| {name} | {comparison.n_envs} | {median(timings, lambda t: t.steps_per_update):.0f} | {total:.1f} "
                f"| {shares} | {median(timings, lambda t: t.env_steps_per_s):,.0f} |"
            )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    """:param argv: Command-line arguments (default: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    with_analogue = sorted(name for name, spec in ALGOS.items() if spec.analogue)
    parser.add_argument("--algos", "--algo", nargs="+", default=["reinforce"], choices=with_analogue)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--timesteps", type=int, default=20_000, help="Env steps per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-envs", nargs="+", type=int, help="Envs for both (default: each of ours' hyperparameters)")
    parser.add_argument("--vec-env", choices=sorted(VEC_ENVS), default="dummy")
    parser.add_argument(
        "--analogue-rollout",
        choices=("matched", "zoo"),
        default="matched",
        help="An on-policy analogue's n_steps: matched to ours' steps per update, or its rl-zoo3 hyperparameters' own",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/throughput.md"))
    args = parser.parse_args(argv)
    th.set_num_threads(1)

    comparisons = [
        compare(algo, args.env, n_envs, args.timesteps, args.rounds, args.analogue_rollout, args.vec_env)
        for algo in args.algos
        for n_envs in args.n_envs or [None]
    ]
    command = (
        f"python -m benchmarks.throughput --algos {' '.join(args.algos)} --env {args.env} --timesteps {args.timesteps} "
        f"--rounds {args.rounds}{' --n-envs ' + ' '.join(map(str, args.n_envs)) if args.n_envs else ''} "
        f"--vec-env {args.vec_env} --analogue-rollout {args.analogue_rollout} --out {args.out}"
    )
    setting = f"{args.env} in a {VEC_ENVS[args.vec_env].__name__}, {args.timesteps:,} env steps per run."
    lines = report_lines(command, setting, comparisons)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
