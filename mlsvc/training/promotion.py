"""Promotion: whether a newly trained version becomes its name's ``production`` alias, one rule for every model type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsvc.metadata import Document

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext


@dataclass(frozen=True)
class Challenger:
    """A new version's score, and how it is compared: the metric, its direction, and on which rows (``basis``,
    e.g. "on the same held-out rows") the production version's score is taken."""

    version: int
    score: float
    metric: str
    higher_is_better: bool
    basis: str


def promote(
    ctx: JobContext,
    model: Mapping[str, Any],
    challenger: Challenger,
    incumbent_score: Callable[[Document], float],
) -> dict[str, Any]:
    """``promote: auto``: the new version becomes ``production`` if there is none, if production cannot be scored
    (``incumbent_score`` raises, e.g. for a model of another type), or if the new one scores at least as well.
    Returns the model's ``promotion`` field: whether it was promoted, and why."""
    name = model["name"]
    if model.get("promote", "auto") != "auto":
        return {"promoted": False, "reason": "promote is 'never'"}
    current, incumbent = incumbent_production(ctx, name)
    if current is None or incumbent is None:
        set_production(ctx, name, challenger.version)
        return {"promoted": True, "reason": f"the first production version of '{name}'"}
    try:
        champion = incumbent_score(incumbent)
    except Exception as exc:  # an incumbent that cannot be scored on these rows loses
        set_production(ctx, name, challenger.version)
        return {"promoted": True, "reason": f"production v{current} could not score these rows ({exc})"}
    score = challenger.score
    better = score >= champion if challenger.higher_is_better else score <= champion
    comparison = f"{challenger.metric} {score:.4f} vs {champion:.4f} for production v{current} {challenger.basis}"
    if better:
        set_production(ctx, name, challenger.version)
        return {"promoted": True, "reason": comparison, "previous_version": current}
    return {"promoted": False, "reason": comparison, "production_version": current}


def set_production(ctx: JobContext, name: str, version: int) -> None:
    """Make ``version`` production when the job's result is recorded (in its transaction), then tell the registry."""
    registry = ctx.registry
    ctx.aliases.append((name, "production", version))
    ctx.after_complete.append(lambda: registry.set_alias(name, "production", version))


def incumbent_production(ctx: JobContext, name: str) -> tuple[int | None, Document | None]:
    """The production version of ``name`` and its model, if it is COMPLETED (a deleted one does not count)."""
    current = ctx.metadata.alias_version(name, "production")
    incumbent = ctx.metadata.model_by_version(name, current) if current is not None else None
    if incumbent is None or incumbent["status"] != "COMPLETED":
        return None, None
    return current, incumbent
