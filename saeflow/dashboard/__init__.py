"""The interpretability dashboard: one self-contained HTML file covering every SAE of a run."""

from saeflow.dashboard.build import build_dashboard

__all__ = ["build_dashboard"]
