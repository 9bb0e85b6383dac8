"""
Published scores that the report places beside the matrix's rows: figures from other libraries' own benchmarks,
not rerun here. Each names its source, the env version and budget it was measured at, and what its number is,
because none of them is the matrix's statistic (the IQM over seeds of the final evaluation).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    """One published score of one algorithm on one env."""

    #: Library and algorithm, e.g. ``"Tianshou REINFORCE"``.
    source: str
    #: The env id the matrix runs (``Hopper-v5``); ``measured_on`` says which version the source used.
    env_id: str
    measured_on: str
    #: Env steps of training behind the score.
    budget: int
    score: float
    #: What the number is, in the source's terms.
    statistic: str
    url: str


TIANSHOU = "https://github.com/thu-ml/tianshou/tree/master/examples/mujoco"
TIANSHOU_STATISTIC = "best point of the mean evaluation curve over 10 seeds"
SB3_CONTRIB_TRPO = "https://sb3-contrib.readthedocs.io/en/master/modules/trpo.html"
RL_ZOO = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md"
RL_ZOO_STATISTIC = "one trained agent's mean evaluation return"


def _tianshou(algo: str, budget: int, scores: dict[str, float]) -> list[Anchor]:
    return [
        Anchor(f"Tianshou {algo}", f"{task}-v5", f"{task}-v3", budget, score, TIANSHOU_STATISTIC, TIANSHOU)
        for task, score in scores.items()
    ]


def _rl_zoo(algo: str, rows: list[tuple[str, str, int, float]]) -> list[Anchor]:
    return [
        Anchor(f"rl-zoo3 {algo}", env_id, measured_on, budget, score, RL_ZOO_STATISTIC, RL_ZOO)
        for env_id, measured_on, budget, score in rows
    ]


ANCHORS: tuple[Anchor, ...] = (
    *_tianshou("REINFORCE", 10_000_000, {"HalfCheetah": 1138.8, "Hopper": 416.0, "Walker2d": 440.9}),
    *_tianshou("A2C", 1_000_000, {"HalfCheetah": 1830.0, "Hopper": 1253.0, "Walker2d": 1092.0}),
    *[
        Anchor("sb3-contrib TRPO", f"{task}-v5", f"{task}-v3", 1_000_000, score, "mean over 3 seeds", SB3_CONTRIB_TRPO)
        for task, score in {"HalfCheetah": 1803.0, "Hopper": 3372.0, "Walker2d": 4502.0}.items()
    ],
    *_rl_zoo(
        "A2C",
        [
            ("CartPole-v1", "CartPole-v1", 500_000, 500.0),
            ("Acrobot-v1", "Acrobot-v1", 500_000, -83.4),
            ("LunarLander-v3", "LunarLander-v2", 200_000, 155.8),
            ("Pendulum-v1", "Pendulum-v1", 1_000_000, -163.0),
            ("LunarLanderContinuous-v3", "LunarLanderContinuous-v2", 5_000_000, 84.2),
            ("HalfCheetah-v5", "HalfCheetah-v3", 1_000_000, 3041.2),
            ("Hopper-v5", "Hopper-v3", 1_000_000, 733.5),
        ],
    ),
    *_rl_zoo(
        "PPO",
        [
            ("CartPole-v1", "CartPole-v1", 100_000, 500.0),
            ("Acrobot-v1", "Acrobot-v1", 1_000_000, -73.5),
            ("LunarLander-v3", "LunarLander-v2", 1_000_000, 242.1),
            ("Pendulum-v1", "Pendulum-v1", 100_000, -172.2),
            ("LunarLanderContinuous-v3", "LunarLanderContinuous-v2", 1_000_000, 270.9),
            ("HalfCheetah-v5", "HalfCheetah-v3", 1_000_000, 5819.1),
            ("Hopper-v5", "Hopper-v3", 1_000_000, 2410.4),
            ("Walker2d-v5", "Walker2d-v3", 1_000_000, 3478.8),
        ],
    ),
)


def anchors_for(env_id: str) -> list[Anchor]:
    """:return: The published scores of ``env_id``, in :data:`ANCHORS`' order."""
    return [anchor for anchor in ANCHORS if anchor.env_id == env_id]


def anchor_lines(env_id: str) -> list[str]:
    """:return: Markdown lines of the env's anchor table, or none when it has no anchor."""
    anchors = anchors_for(env_id)
    if not anchors:
        return []
    lines = [
        "Published anchors, not rerun here (each is its source's statistic, not the IQM above):",
        "",
        "| Source | Measured on | Budget | Score | Statistic |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| [{anchor.source}]({anchor.url}) | {anchor.measured_on} | {anchor.budget:,} | {anchor.score:.1f} | "
        f"{anchor.statistic} |"
        for anchor in anchors
    ]
    return [*lines, ""]
