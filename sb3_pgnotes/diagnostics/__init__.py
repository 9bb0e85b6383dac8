"""Gradient-variance diagnostics of the policy-gradient estimators."""

from sb3_pgnotes.diagnostics.callback import GradientVarianceCallback, estimator_in_use
from sb3_pgnotes.diagnostics.report import plot_variance, variance_markdown, variance_table
from sb3_pgnotes.diagnostics.variance import VARIANTS, VarianceStats, estimator_gradients, gradient_variance

__all__ = [
    "VARIANTS",
    "GradientVarianceCallback",
    "VarianceStats",
    "estimator_gradients",
    "estimator_in_use",
    "gradient_variance",
    "plot_variance",
    "variance_markdown",
    "variance_table",
]
