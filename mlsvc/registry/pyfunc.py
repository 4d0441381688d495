"""The MLflow pyfunc of an mlsvc model version, for MLflow's own users: raw records in, mlsvc's answers out.

`mlflow.pyfunc.load_model("models:/churn@production")`, `mlflow models predict` and `mlflow models serve` run this
model; the service never does (it reads a version's skops file itself, once every file of the version matches the
digest recorded at registration). The records are read by the rules of mlsvc's REST API (the scorer and
mlsvc.prediction.records), after undoing what pandas does to codes (see FrameReader), so a frame read by pandas
from the training CSV and JSON records both score, and the answers are those of POST /v1/models/{ref}/predict on
the CSV's rows: ``predicted_label``, ``predicted_scores`` (per class label) or ``predicted_value``, and
``warnings``; for a RECOMMENDATION model, ``recommendations`` and ``cold_start``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Map, Object, ParamSchema, ParamSpec, Property, Schema

from mlsvc.errors import MlsvcError
from mlsvc.prediction.scorer import ModelCard, RecommenderScorer, Scorer
from mlsvc.registry.trusted import TRUSTED_TYPES
from mlsvc.resources import ModelType

CARD_FILE = "mlsvc_model.json"  # what scoring needs besides the fitted model: type, features, classes, threshold
CODE_FILE = "mlsvc_pyfunc.py"  # MLflow's "model from code": the model is built by installed code, never unpickled
CODE = '''"""The MLflow pyfunc of an mlsvc model version (see mlsvc.registry.pyfunc); it needs mlsvc installed."""

from mlflow.models import set_model

from mlsvc.registry.pyfunc import MlsvcModel

set_model(MlsvcModel())
'''
# The artifacts the pyfunc reads, by their name in its MLmodel: the fitted model (skops) and the card.
PIPELINE, CARD = "pipeline", "card"


class MlsvcModel(PythonModel):
    """An mlsvc model version as MLflow loads it: the fitted model read by skops with mlsvc's trusted types, and the
    scorer mlsvc's own API uses."""

    def load_context(self, context: PythonModelContext) -> None:
        card = json.loads(Path(context.artifacts[CARD]).read_text())
        fitted = skops.io.load(context.artifacts[PIPELINE], trusted=list(TRUSTED_TYPES))
        self.card = card
        self.reader = FrameReader(card)
        if card["model_type"] == ModelType.RECOMMENDATION:
            self.scorer: Any = RecommenderScorer(fitted)
        else:
            # The registry numbers the version after these files are written; scoring does not read the number.
            self.scorer = Scorer(ModelCard.from_resource({**card, "version": 0}), fitted)

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """One row of answers per input row, on the input's index."""
        params = params or {}
        records = self.reader.records(model_input)
        try:
            if self.card["model_type"] == ModelType.RECOMMENDATION:
                answers = self._recommend(records, params)
            else:
                answers = self.scorer.predict(records, params.get("score_threshold"))
        except MlsvcError as exc:  # a 400 from `mlflow models serve`, as mlsvc's API answers a 4xx
            raise MlflowException.invalid_parameter_value(exc.message) from None
        return pd.DataFrame(answers, index=model_input.index)

    def _recommend(self, records: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
        k, exclude_seen = params.get("k"), bool(params.get("exclude_seen", True))
        answers = []
        for number, record in enumerate(records, start=1):
            user, item = record.get("user_id"), record.get("item_id")
            if user is None and item is None:
                raise MlflowException.invalid_parameter_value(
                    f"row {number} has neither 'user_id' (items for a user) nor 'item_id' (similar items)"
                )
            answers.append(self.scorer.answer(user, item, k, exclude_seen))
        return answers


class FrameReader:
    """The rows of a DataFrame as the JSON records they stand for, undoing what pandas does to codes.

    A missing cell (NaN, None, NA, NaT) is left out and numpy scalars become Python's. In a CATEGORICAL or TEXT
    column, a float that is a whole number is read as that integer (pandas makes a column of codes with one gap
    floats: 2139 → 2139.0), and an integer of a CATEGORICAL attribute whose training values were digit codes
    zero-padded to one width is padded back to it (pandas reads the CSV's "02139" as 2139; the model was trained
    on "02139"), as the SDK's ``predict_frame`` does with the training data's statistics. The rest is read by
    mlsvc's own rules, with its warnings."""

    def __init__(self, card: Mapping[str, Any]) -> None:
        features = card.get("features") or []
        self.texts = {f["attributeName"] for f in features if f["attributeType"] in ("CATEGORICAL", "TEXT")}
        if card["model_type"] == ModelType.RECOMMENDATION:
            self.texts = {"user_id", "item_id"}  # ids: a user 7 in a column with a gap is 7, not 7.0
        self.widths = {name: width for name, levels in (card.get("levels") or {}).items() if (width := _padded(levels))}

    def records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = [{} for _ in range(len(frame))]
        for column in frame.columns:
            name = str(column)
            text, width = name in self.texts, self.widths.get(name, 0)
            for record, value in zip(records, frame[column].tolist(), strict=True):
                plain = _plain(value, text, width)
                if plain is not None:
                    record[name] = plain
        return records


def _padded(levels: Sequence[str]) -> int:
    """The width of a CATEGORICAL attribute's digit codes when the training data wrote them zero-padded to one
    width ("02139", "33101": 5), else 0."""
    digits = [v for v in levels if v.isascii() and v.isdigit()]
    widths = {len(v) for v in digits}
    zeros = any(len(v) > 1 and v.startswith("0") for v in digits)
    return widths.pop() if zeros and len(widths) == 1 else 0


def _plain(value: Any, text: bool, width: int) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if text and value.is_integer() and abs(value) < 2**53:
            value = int(value)
    if width and type(value) is int and value >= 0:
        return str(value).zfill(width)
    return value


def signature(card: Mapping[str, Any]) -> ModelSignature:
    """The pyfunc's signature: the raw columns it reads and the answers it gives.

    Every input column is optional and of any type, on purpose: mlsvc types the values itself, by the rules of its
    REST API, so a CATEGORICAL code pandas read as an int, a NUMERIC column read as text because one cell says
    'abc', a BINARY 'yes' or a JSON null are each scored (or warned about, under ``warnings``) as mlsvc scores
    them, where MLflow's own casting would refuse the whole request; a column left out is a missing value, as in
    mlsvc's records. Columns the signature does not name are dropped by MLflow before the model sees them."""
    if card["model_type"] == ModelType.RECOMMENDATION:
        return _recommender_signature(card)
    inputs = Schema([ColSpec(AnyType(), f["attributeName"], required=False) for f in card["features"]])
    warnings = ColSpec(Array(DataType.string), "warnings", required=False)
    if card["model_type"] == ModelType.REGRESSION:
        return ModelSignature(inputs, Schema([ColSpec(DataType.double, "predicted_value"), warnings]))
    outputs = Schema(
        [ColSpec(DataType.string, "predicted_label"), ColSpec(Map(DataType.double), "predicted_scores"), warnings]
    )
    if card["model_type"] != ModelType.BINARY:
        return ModelSignature(inputs, outputs)
    # The threshold at registration; mlsvc's API uses the model's current one (PATCH can change it).
    params = ParamSchema([ParamSpec("score_threshold", DataType.double, float(card["score_threshold"]))])
    return ModelSignature(inputs, outputs, params)


def _recommender_signature(card: Mapping[str, Any]) -> ModelSignature:
    inputs = Schema([ColSpec(AnyType(), "user_id", required=False), ColSpec(AnyType(), "item_id", required=False)])
    item = Object([Property("item_id", DataType.string), Property("score", DataType.double)])
    outputs = Schema(
        [
            ColSpec(DataType.string, "user_id", required=False),
            ColSpec(DataType.string, "item_id", required=False),
            ColSpec(Array(item), "recommendations"),
            ColSpec(DataType.boolean, "cold_start"),
        ]
    )
    params = ParamSchema(
        [ParamSpec("k", DataType.long, int(card["k"])), ParamSpec("exclude_seen", DataType.boolean, True)]
    )
    return ModelSignature(inputs, outputs, params)
