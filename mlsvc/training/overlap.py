"""How much of an evaluation's datasource a model was trained on: the same file, overlapping rearrangements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlsvc.resources import Rearrangement, Splitting, TrainingOverlap

Intervals = list[tuple[float, float]]


def training_overlap(
    model: Mapping[str, Any], trained_on: Mapping[str, Any], evaluated_on: Mapping[str, Any]
) -> TrainingOverlap | None:
    """The share of ``evaluated_on``'s rows that ``model`` learnt from, when both datasources read the same
    data; None when they read different data (or no row of the evaluation is in the training datasource).

    A datasource's rows are a range of positions (sequential) or of row hashes (random, by seed) with its
    complement; two ranges in the same space intersect exactly, ranges in different spaces independently. Of the
    training datasource's rows the model learnt from all but those held out at training."""
    if trained_on["data_uri"] != evaluated_on["data_uri"]:
        return None
    train, evaluate = _splitting(trained_on), _splitting(evaluated_on)
    shared = _shared_share(train, evaluate)
    if shared <= 0:
        return None
    fit_rows, holdout_rows = model.get("training_rows") or 0, model.get("holdout_rows") or 0
    learnt = fit_rows / (fit_rows + holdout_rows) if fit_rows + holdout_rows else 1.0
    share = shared * learnt
    same = "the same datasource" if trained_on["id"] == evaluated_on["id"] else f"datasource '{trained_on['id']}'"
    note = (
        f"about {share:.0%} of these rows were used to train the model (they come from {same}, "
        f"{evaluated_on['data_uri']}), so these metrics overstate how it does on new data; evaluate it on rows it "
        "has not seen, such as a datasource with the complement of the training rearrangement"
    )
    return TrainingOverlap(datasource_id=str(trained_on["id"]), fraction_trained_on=round(share, 4), note=note)


def _splitting(ds: Mapping[str, Any]) -> Splitting:
    arrangement = Rearrangement.model_validate(ds.get("rearrangement") or {})
    return arrangement.splitting or Splitting(percentBegin=0, percentEnd=100)


def _shared_share(train: Splitting, evaluate: Splitting) -> float:
    """The share of the evaluation's rows that are also the training datasource's."""
    eval_rows = _intervals(evaluate)
    eval_share = _length(eval_rows)
    if eval_share <= 0:
        return 0.0
    same_space = train.strategy == evaluate.strategy and (
        train.strategy == "sequential" or train.randomSeed == evaluate.randomSeed
    )
    if not same_space:
        return _length(_intervals(train))  # placed independently: the training share of any set of rows
    return _length(_intersect(_intervals(train), eval_rows)) / eval_share


def _intervals(splitting: Splitting) -> Intervals:
    """The fractions of the rows' space a splitting keeps."""
    inside = (splitting.percentBegin / 100, splitting.percentEnd / 100)
    if not splitting.complement:
        return [inside]
    return [(0.0, inside[0]), (inside[1], 1.0)]


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    return [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if max(x0, y0) < min(x1, y1)]


def _length(intervals: Intervals) -> float:
    return sum(max(0.0, end - begin) for begin, end in intervals)
