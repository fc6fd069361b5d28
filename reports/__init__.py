"""Model-selection reports of a search's study: extract, aggregate, resample, render, export.

``python -m reports build|export|ensemble --storage URL --study NAME``. Only rendering
imports plotly; ``reports.extract`` and ``reports.aggregate`` import neither torch, ray nor plotly.
"""

from reports.build import build_report
from reports.export import export_best

__all__ = ["build_report", "export_best"]
