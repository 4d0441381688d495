"""Tables of a model (leaderboard, importances, promotion) and of an evaluation (metric against its baseline,
an ASCII ROC curve, score histograms, the threshold table, a confusion matrix or residuals)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlsvc.resources import Evaluation, Model

ROC_WIDTH, ROC_HEIGHT = 41, 15
BAR_WIDTH = 40


def describe_model(console: Console, model: Model, evaluation: Evaluation | None) -> None:
    version = f" v{model.version}" if model.version else ""
    aliases = f"  aliases: {', '.join(model.aliases)}" if model.aliases else ""
    console.print(
        f"[bold]{model.name}{version}[/bold] ({model.id})  {model.status.value}  "
        f"{model.model_type.value if model.model_type else ''}{aliases}"
    )
    if model.message:
        console.print(model.message)
    if model.target:
        console.print(
            f"target: {model.target}  training rows: {model.training_rows}  held out: "
            f"{model.holdout_rows}  threshold: {model.score_threshold}"
        )
    if model.promotion:
        console.print(
            f"promotion: {'promoted' if model.promotion.get('promoted') else 'not promoted'} — "
            f"{model.promotion.get('reason', '')}"
        )
    if model.leaderboard:
        console.print(_leaderboard(model))
    if model.importances:
        console.print(_importances(model.importances))
    if evaluation is not None and evaluation.status.value == "COMPLETED":
        describe_evaluation(console, evaluation)


def _leaderboard(model: Model) -> Table:
    table = Table("", "candidate", "validation", "rows", "fit s", "status", title="leaderboard")
    for row in model.leaderboard[:15]:
        table.add_row(
            "★" if row.get("selected") else "",
            str(row["candidate"]),
            _num(row.get("validation_score")),
            str(row.get("rows", "")),
            _num(row.get("fit_time_s")),
            str(row.get("status", "")),
        )
    if len(model.leaderboard) > 15:
        table.caption = f"{len(model.leaderboard) - 15} more not shown (--json has them all)"
    return table


def _importances(importances: list[dict[str, Any]]) -> Table:
    table = Table("attribute", "importance", "", title="what the model relies on (permutation importance)")
    top = max((abs(i["importance"]) for i in importances), default=0.0) or 1.0
    for item in importances[:12]:
        bar = "█" * max(0, round(BAR_WIDTH * item["importance"] / top))
        table.add_row(item["attribute"], _num(item["importance"]), bar)
    return table


def describe_evaluation(console: Console, evaluation: Evaluation) -> None:
    console.print(
        f"[bold]evaluation[/bold] {evaluation.id} of {evaluation.model_id} "
        f"(v{evaluation.model_version}) on {evaluation.rows} rows"
        f"{' held out at training' if evaluation.holdout else ''}"
    )
    if evaluation.vs_baseline:
        console.print(evaluation.vs_baseline)
    insights = evaluation.insights or {}
    if evaluation.model_type and evaluation.model_type.value == "BINARY":
        _binary(console, insights)
    elif insights.get("confusion_matrix"):
        console.print(_confusion(insights))
    elif insights.get("residual_histogram"):
        console.print("residuals (actual − predicted)")
        console.print(_histogram(insights["residual_histogram"]["edges"], insights["residual_histogram"]["counts"]))


def _binary(console: Console, insights: dict[str, Any]) -> None:
    if insights.get("roc_curve"):
        console.print(f"ROC curve (AUC {_num(insights.get('auc'))})")
        console.print(roc_ascii(insights["roc_curve"]))
    histogram = insights.get("score_histogram")
    if histogram:
        console.print(f"scores of {insights.get('positive_label')} (+) and the rest (−)")
        console.print(_dual_histogram(histogram))
    table = Table(
        "threshold", "precision", "recall", "false positive rate", "accuracy", "f1", title="at these thresholds"
    )
    rows = {round(r["threshold"], 2): r for r in insights.get("thresholds", [])}
    for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        r = rows.get(t)
        if r:
            table.add_row(
                f"{t:.1f}",
                _num(r["precision"]),
                _num(r["recall"]),
                _num(r["false_positive_rate"]),
                _num(r["accuracy"]),
                _num(r["f1"]),
            )
    console.print(table)


def roc_ascii(points: list[dict[str, Any]], width: int = ROC_WIDTH, height: int = ROC_HEIGHT) -> str:
    """The ROC curve drawn in characters: '*' on the curve, '.' on the diagonal of a random model."""
    grid = [[" "] * width for _ in range(height)]
    for i in range(min(width, height * 3)):
        x = round(i * (width - 1) / max(1, min(width, height * 3) - 1))
        y = round(x / (width - 1) * (height - 1))
        grid[height - 1 - y][x] = "."
    for point in points:
        x = round(point["fpr"] * (width - 1))
        y = round(point["tpr"] * (height - 1))
        grid[height - 1 - y][x] = "*"
    lines = ["TPR │" + "".join(row) for row in grid]
    return "\n".join([*lines, "    └" + "─" * width, "     0" + " " * (width - 8) + "FPR 1"])


def _dual_histogram(histogram: dict[str, Any]) -> str:
    edges, positive, negative = histogram["edges"], histogram["positive"], histogram["negative"]
    top_p, top_n = max(positive) or 1, max(negative) or 1
    lines = []
    for i in range(len(positive)):
        plus = "+" * round(20 * positive[i] / top_p)
        minus = "−" * round(20 * negative[i] / top_n)
        lines.append(f"{edges[i]:.2f}–{edges[i + 1]:.2f} {minus:>20}|{plus:<20}")
    return "\n".join(lines)


def _histogram(edges: list[float], counts: list[int]) -> str:
    top = max(counts) or 1
    return "\n".join(
        f"{edges[i]:>10.4g} … {edges[i + 1]:<10.4g} {'█' * round(BAR_WIDTH * counts[i] / top)} {counts[i]}"
        for i in range(len(counts))
    )


def _confusion(insights: dict[str, Any]) -> Table:
    labels = insights["confusion_matrix"]["labels"]
    table = Table("true \\ predicted", *labels, "F1", title="confusion matrix")
    per_class = insights.get("per_class", {})
    for label, row in zip(labels, insights["confusion_matrix"]["matrix"], strict=True):
        table.add_row(label, *[str(v) for v in row], _num(per_class.get(label, {}).get("f1")))
    return table


def _num(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
