"""Rendering of gradient-variance statistics: a rich table and a PNG plot."""

import math
from pathlib import Path

import matplotlib.pyplot as plt
from rich.table import Table

from sb3_pgnotes.diagnostics.variance import VarianceStats


#: What an empty cell of the tables means.
UNDEFINED_NOTE = (
    "n/a: undefined (the cosine without a reference batch or against a zero gradient; the SNR when both the mean "
    "gradient and its variance are 0)"
)


def _number(value: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def _rows(stats: list[VarianceStats]) -> list[tuple[str, ...]]:
    """:return: Per variant: name, total variance, variance relative to the first variant, SNR, cosine, |mean|"""
    base = stats[0].total_variance
    return [
        (
            entry.variant,
            f"{entry.total_variance:.4g}",
            f"{entry.total_variance / base:.3f}" if base > 0 else "-",
            _number(entry.snr, ".4g"),
            _number(entry.cosine_to_reference, ".3f"),
            f"{float((entry.mean_gradient**2).sum() ** 0.5):.4g}",
        )
        for entry in stats
    ]


def variance_table(stats: list[VarianceStats], title: str = "Policy-gradient estimator variance") -> Table:
    """
    :param stats: One entry per estimator variant
    :param title: Table title
    :return: A rich table: total variance, SNR, cosine to the reference and norm of the mean gradient
    """
    table = Table(title=title, caption=UNDEFINED_NOTE)
    for column in ("estimator", "total variance", "relative", "SNR", "cos(mean, reference)", "|mean|"):
        table.add_column(column, justify="left" if column == "estimator" else "right")
    for row in _rows(stats):
        table.add_row(*row)
    return table


def variance_markdown(stats: list[VarianceStats]) -> str:
    """
    :param stats: One entry per estimator variant
    :return: The same table as :func:`variance_table`, in markdown
    """
    lines = [
        "| estimator | total variance | relative | SNR | cos(mean, reference) | norm of the mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in _rows(stats)]
    return "\n".join([*lines, "", UNDEFINED_NOTE]) + "\n"


def plot_variance(stats: list[VarianceStats], path: str | Path, title: str = "") -> None:
    """
    Bar plots of the total variance (log scale) and the SNR of each variant.

    :param stats: One entry per estimator variant
    :param path: PNG file to write
    :param title: Figure title
    """
    names = [entry.variant for entry in stats]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [entry.total_variance for entry in stats], color="tab:red")
    if any(entry.total_variance > 0 for entry in stats):
        left.set_yscale("log")
    left.set_title("total variance (trace of covariance)")
    right.bar(names, [entry.snr for entry in stats], color="tab:blue")
    right.set_title("signal-to-noise ratio")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
