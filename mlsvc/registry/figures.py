"""The figures of a holdout evaluation as PNG files for a version's MLflow run: ROC and precision-recall curves,
confusion matrix, score or residual histogram, a recommender's metrics against its baseline.

Drawn with matplotlib's object API on the Agg canvas, never pyplot: no global backend or figure registry is
touched in the process that logs them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SIZE_IN = (5.5, 4.5)
DPI = 100
MAX_ANNOTATED_CLASSES = 12  # a confusion matrix with more classes is drawn without a count in each cell


def draw(evaluation: Mapping[str, Any], into: Path) -> list[str]:
    """Draw the figures of ``evaluation`` (an mlsvc evaluation's insights) into the folder ``into``; the file
    names written. A figure whose data is undefined (a single class in the labels) is left out."""
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for name, paint in _painters(evaluation).items():
        figure = Figure(figsize=SIZE_IN, dpi=DPI, layout="tight")
        FigureCanvasAgg(figure)
        paint(figure.add_subplot())
        figure.savefig(into / name)
        written.append(name)
    return written


def _painters(evaluation: Mapping[str, Any]) -> dict[str, Callable[[Axes], None]]:
    kind = evaluation.get("model_type")
    if kind == "BINARY":
        painters: dict[str, Callable[[Axes], None]] = {}
        if evaluation.get("roc_curve"):
            painters["roc_curve.png"] = lambda ax: _roc(ax, evaluation)
        if evaluation.get("pr_curve"):
            painters["pr_curve.png"] = lambda ax: _precision_recall(ax, evaluation)
        painters["confusion_matrix.png"] = lambda ax: _binary_confusion(ax, evaluation)
        painters["score_histogram.png"] = lambda ax: _score_histogram(ax, evaluation)
        return painters
    if kind == "MULTICLASS":
        matrix = evaluation["confusion_matrix"]
        title = f"Confusion matrix (holdout, {evaluation['rows']:,} rows)"
        return {"confusion_matrix.png": lambda ax: _confusion(ax, matrix["matrix"], matrix["labels"], title)}
    if kind == "REGRESSION":
        return {"residual_histogram.png": lambda ax: _residuals(ax, evaluation)}
    if kind == "RECOMMENDATION":
        return {"metrics_vs_baseline.png": lambda ax: _ranking(ax, evaluation)}
    return {}


def _roc(ax: Axes, ev: Mapping[str, Any]) -> None:
    points = ev["roc_curve"]
    ax.plot([p["fpr"] for p in points], [p["tpr"] for p in points], label=f"model (AUC {ev['auc']:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="baseline (AUC 0.500)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"ROC curve (holdout, {ev['rows']:,} rows)")
    ax.legend(loc="lower right")


def _precision_recall(ax: Axes, ev: Mapping[str, Any]) -> None:
    points = ev["pr_curve"]
    label = f"model (average precision {ev['average_precision']:.3f})"
    ax.plot([p["recall"] for p in points], [p["precision"] for p in points], label=label)
    ax.axhline(ev["base_rate"], linestyle="--", color="grey", label=f"baseline (base rate {ev['base_rate']:.3f})")
    ax.set(xlabel=f"recall of '{ev['positive_label']}'", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Precision-recall curve (holdout)")
    ax.legend(loc="lower left")


def _binary_confusion(ax: Axes, ev: Mapping[str, Any]) -> None:
    at = ev["at_threshold"]
    matrix = [[at["tn"], at["fp"]], [at["fn"], at["tp"]]]
    labels = [str(ev["negative_label"]), str(ev["positive_label"])]
    _confusion(ax, matrix, labels, f"Confusion matrix at threshold {at['threshold']:.2f} (holdout)")


def _confusion(ax: Axes, matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> None:
    image = ax.imshow(matrix, cmap="Blues")
    ax.figure.colorbar(image, ax=ax)
    ticks = range(len(labels))
    crowded = len(labels) > 4
    ax.set_xticks(ticks, labels=labels, rotation=45 if crowded else 0, ha="right" if crowded else "center")
    ax.set_yticks(ticks, labels=labels)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    if len(labels) <= MAX_ANNOTATED_CLASSES:
        top = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, f"{count:,}", ha="center", va="center", color="white" if count > top / 2 else "black")


def _score_histogram(ax: Axes, ev: Mapping[str, Any]) -> None:
    histogram = ev["score_histogram"]
    edges = histogram["edges"]
    ax.stairs(histogram["negative"], edges, fill=True, alpha=0.5, label=f"actual '{ev['negative_label']}'")
    ax.stairs(histogram["positive"], edges, fill=True, alpha=0.5, label=f"actual '{ev['positive_label']}'")
    ax.axvline(ev["at_threshold"]["threshold"], linestyle="--", color="grey", label="score threshold")
    ax.set(xlabel=f"score (P('{ev['positive_label']}'))", ylabel="rows", xlim=(0, 1))
    ax.set_title("Scores by actual class (holdout)")
    ax.legend()


def _residuals(ax: Axes, ev: Mapping[str, Any]) -> None:
    histogram = ev["residual_histogram"]
    ax.stairs(histogram["counts"], histogram["edges"], fill=True, alpha=0.6)
    ax.axvline(0, linestyle="--", color="grey")
    ax.set(xlabel="residual (actual − predicted)", ylabel="rows")
    ax.set_title(f"Residuals (holdout, RMSE {ev['rmse']:.4g})")


def _ranking(ax: Axes, ev: Mapping[str, Any]) -> None:
    names = [n for n, v in ev["metrics"].items() if isinstance(v, float) and n != "users"]
    model = [ev["metrics"][n] for n in names]
    baseline = [ev["baseline"]["metrics"].get(n) or 0.0 for n in names]
    positions = range(len(names))
    ax.bar([p - 0.2 for p in positions], model, width=0.4, label="model")
    ax.bar([p + 0.2 for p in positions], baseline, width=0.4, label="most popular (baseline)")
    ax.set_xticks(positions, labels=names, rotation=30, ha="right")
    ax.set_ylim(0, max([*model, *baseline, 0.01]) * 1.3)  # room for the legend above the bars
    ax.set_title(f"{ev['metric']} and more (holdout, {ev['rows']:,} users)")
    ax.legend()
