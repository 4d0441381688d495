"""Recipes: the transformation of each attribute into model features, as a fitted scikit-learn ColumnTransformer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlsvc.resources import Attribute, AttributeType


def fill_text(column: pd.Series | np.ndarray) -> list[str]:
    """TF-IDF needs strings: a missing text is the empty text. Module-level so the pipeline pickles."""
    values = column.iloc[:, 0] if isinstance(column, pd.DataFrame) else column
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def default_recipe(features: list[Attribute]) -> dict[str, Any]:
    """Amazon ML-style defaults: one transformation per attribute, chosen by its type."""
    by_type = {
        AttributeType.NUMERIC: "impute_median_scale",
        AttributeType.BINARY: "impute_most_frequent",
        AttributeType.CATEGORICAL: "one_hot_rare_grouped",
        AttributeType.TEXT: "tfidf_words_1_2",
    }
    return {"attributes": {a.attributeName: by_type[a.attributeType] for a in features}}


def build_preprocessor(features: list[Attribute], recipe: dict[str, Any]) -> ColumnTransformer:
    """The ColumnTransformer that applies ``recipe`` to the typed columns of ``features``."""
    steps: list[tuple[str, Any, Any]] = []
    plan = recipe["attributes"]
    numeric = [a.attributeName for a in features if plan[a.attributeName] == "impute_median_scale"]
    binary = [a.attributeName for a in features if plan[a.attributeName] == "impute_most_frequent"]
    categorical = [a.attributeName for a in features if plan[a.attributeName] == "one_hot_rare_grouped"]
    text = [a.attributeName for a in features if plan[a.attributeName] == "tfidf_words_1_2"]
    if numeric:
        steps.append(("numeric", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                           ("scale", StandardScaler())]), numeric))
    if binary:
        steps.append(("binary", SimpleImputer(strategy="most_frequent", keep_empty_features=True), binary))
    if categorical:
        # Missing is a category of its own; rare levels share one column so unseen data degrades gracefully.
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=64,
                                sparse_output=False)
        steps.append(("categorical", encoder, categorical))
    for name in text:
        vectorizer = Pipeline([("fill", FunctionTransformer(fill_text)),
                               ("tfidf", TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=2,
                                                         max_features=20_000, sublinear_tf=True))])
        steps.append((f"text_{name}", vectorizer, [name]))
    return ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0 if not text else 0.3,
                             verbose_feature_names_out=False)
