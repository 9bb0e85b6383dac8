"""Rendering of gradient-variance statistics: a rich table and a PNG plot."""

from pathlib import Path

import matplotlib.pyplot as plt
from rich.table import Table

from sb3_pgnotes.diagnostics.variance import VarianceStats


def variance_table(stats: list[VarianceStats], title: str = "Policy-gradient estimator variance") -> Table:
    """
    :param stats: One entry per estimator variant
    :param title: Table title
    :return: A rich table: total variance, SNR, cosine to the reference and norm of the mean gradient
    """
    table = Table(title=title)
    for column in ("estimator", "total variance", "relative", "SNR", "cos(mean, reference)", "|mean|"):
        table.add_column(column, justify="left" if column == "estimator" else "right")
    base = stats[0].total_variance
    for entry in stats:
        table.add_row(
            entry.variant,
            f"{entry.total_variance:.4g}",
            f"{entry.total_variance / base:.3f}" if base > 0 else "-",
            f"{entry.snr:.4g}",
            f"{entry.cosine_to_reference:.3f}",
            f"{float((entry.mean_gradient**2).sum() ** 0.5):.4g}",
        )
    return table


def variance_markdown(stats: list[VarianceStats]) -> str:
    """
    :param stats: One entry per estimator variant
    :return: The same table as :func:`variance_table`, in markdown
    """
    base = stats[0].total_variance
    lines = [
        "| estimator | total variance | relative | SNR | cos(mean, reference) |",
        "|---|---:|---:|---:|---:|",
    ]
    for entry in stats:
        relative = f"{entry.total_variance / base:.3f}" if base > 0 else "-"
        cosine = f"{entry.cosine_to_reference:.3f}"
        lines.append(f"| {entry.variant} | {entry.total_variance:.4g} | {relative} | {entry.snr:.4g} | {cosine} |")
    return "\n".join(lines) + "\n"


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
