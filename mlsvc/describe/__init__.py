"""Human-readable renderings of resources for the CLI: tables, an ASCII ROC curve and score histograms."""

from mlsvc.describe.datasources import describe_datasource
from mlsvc.describe.models import describe_evaluation, describe_model

__all__ = ["describe_datasource", "describe_evaluation", "describe_model"]
