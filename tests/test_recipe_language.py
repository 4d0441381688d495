"""Amazon ML's recipe language: the developer guide's own examples (its complete recipe, each transformation's
example tokens), the errors a person can act on, the pipeline it builds, stored and scored the same on every path,
and models trained with it over HTTP, the recipe inline or read from a local file or S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from mlsvc.errors import MlsvcError
from mlsvc.prediction.scorer import ModelCard, Scorer
from mlsvc.registry.trusted import TRUSTED_TYPES
from mlsvc.resources import Attribute, AttributeType, ModelType
from mlsvc.training.candidates import BY_NAME
from mlsvc.training.data import TrainingData
from mlsvc.training.loop import Config, fit_quietly, make_pipeline, predict_output
from mlsvc.training.recipe import (
    TRANSFORMS,
    build_preprocessor,
    default_amazon_recipe,
    default_recipe,
    merge_recipe,
)
from mlsvc.training.recipe_language import (
    _AS_AMAZON,
    TokenFeatures,
    as_amazon_recipe,
    check_recipe,
    lowercase,
    ngrams,
    no_punct,
    osb,
    words,
)
from tests.rest import completed, error
from tests.scoring import registered_pipeline, typed_frame
from tests.servers import RunningServer, wait_done

# The complete recipe of Amazon ML's Recipe Format Reference, as the guide writes it.
GUIDE_RECIPE: dict[str, Any] = {
    "groups": {
        "LONGTEXT": "group_remove(ALL_TEXT, title, subject)",
        "SPECIALTEXT": "group(title, subject)",
        "BINCAT": "group(ALL_CATEGORICAL, ALL_BINARY)",
    },
    "assignments": {
        "binned_age": "quantile_bin(age,30)",
        "country_gender_interaction": "cartesian(country, gender)",
    },
    "outputs": [
        "lowercase(no_punct(LONGTEXT))",
        "ngram(lowercase(no_punct(SPECIALTEXT)),3)",
        "quantile_bin(hours-per-week, 10)",
        "hours-per-week // explicitly include the original numeric variable along with the binned version",
        "cartesian(binned_age, quantile_bin(hours-per-week,10)) // this one is critical",
        "country_gender_interaction",
        "BINCAT",
    ],
}
GUIDE_TYPES = {
    "title": "TEXT",
    "subject": "TEXT",
    "body": "TEXT",
    "age": "NUMERIC",
    "hours-per-week": "NUMERIC",
    "country": "CATEGORICAL",
    "gender": "CATEGORICAL",
    "married": "BINARY",
}
GUIDE_FEATURES = [Attribute(attributeName=n, attributeType=AttributeType(t)) for n, t in GUIDE_TYPES.items()]
QUICK_FOX = "The quick brown fox jumps over the lazy dog"


def _features(**types: str) -> list[Attribute]:
    return [Attribute(attributeName=n, attributeType=AttributeType(t)) for n, t in types.items()]


def _tokens(expression: str, frame: pd.DataFrame, features: list[Attribute]) -> list[list[str]]:
    """Each row's tokens of one output expression, as the fitted step makes them."""
    [output] = check_recipe({"outputs": [expression]}, features).tokens
    step = TokenFeatures(output.expression, output.label).fit(frame[output.columns])
    return step.tokens(frame[output.columns])


# --- each transformation on the guide's examples ---


def test_ngram_is_every_run_of_up_to_n_words_as_the_guide_lists_them() -> None:
    book = words("I really enjoyed reading this book")
    assert set(ngrams(book, 2)) == {
        *("I really", "really enjoyed", "enjoyed reading", "reading this", "this book"),
        *("I", "really", "enjoyed", "reading", "this", "book"),
    }
    three = {"I really enjoyed", "really enjoyed reading", "enjoyed reading this", "reading this book"}
    assert set(ngrams(book, 3)) == three | set(ngrams(book, 2))
    # Words are split on whitespace only, so punctuation stays on them.
    assert set(ngrams(words("red, green, blue"), 2)) == {"red,", "green,", "blue", "red, green,", "green, blue"}


def test_osb_pairs_each_word_with_the_next_ones_an_underscore_per_word_skipped() -> None:
    assert osb(words(QUICK_FOX), 4) == [
        *("The_quick", "The__brown", "The___fox"),
        *("quick_brown", "quick__fox", "quick___jumps"),
        *("brown_fox", "brown__jumps", "brown___over"),
        *("fox_jumps", "fox__over", "fox___the"),
        *("jumps_over", "jumps__the", "jumps___lazy"),
        *("over_the", "over__lazy", "over___dog"),
        *("the_lazy", "the__dog"),
        "lazy_dog",
    ]


def test_lowercase_and_no_punct_as_the_guide_shows() -> None:
    assert lowercase("The Quick Brown Fox Jumps Over the Lazy Dog") == "the quick brown fox jumps over the lazy dog"
    text = "Welcome to Amazon ML - please fasten your seat-belts!"
    assert words(text) == ["Welcome", "to", "Amazon", "ML", "-", "please", "fasten", "your", "seat-belts!"]
    # Only punctuation at either end of a word goes (a word of it alone goes whole); inside a word it stays.
    assert words(no_punct(text)) == ["Welcome", "to", "Amazon", "ML", "please", "fasten", "your", "seat-belts"]
    assert no_punct("«Hello», (world)... C++ $5 e-mail") == "Hello world C 5 e-mail"


def test_cartesian_crosses_categories_and_the_words_of_a_text_as_the_guide_shows() -> None:
    frame = pd.DataFrame(
        {
            "Title": ["Economics: Principles, Problems, Policies", "Fun With Problems", None],
            "Binding": ["Hardcover", "Softcover", "Softcover"],
            "education": ["university.degree", "high.school", None],
            "job": ["technician", "services", "admin"],
        },
        dtype=object,
    )
    features = _features(Title="TEXT", Binding="CATEGORICAL", education="CATEGORICAL", job="CATEGORICAL")
    assert _tokens("cartesian(no_punct(Title), Binding)", frame, features) == [
        ["Economics_Hardcover", "Principles_Hardcover", "Problems_Hardcover", "Policies_Hardcover"],
        ["Fun_Softcover", "With_Softcover", "Problems_Softcover"],
        [],  # a missing title has no words to cross
    ]
    assert _tokens("cartesian(education, job)", frame, features) == [
        ["university.degree_technician"],
        ["high.school_services"],
        [],
    ]


def test_quantile_bin_makes_n_equal_bins_whether_output_or_crossed() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"var1": rng.permutation(1000).astype(float), "city": ["x"] * 1000})
    frame["city"] = frame["city"].astype(object)
    features = _features(var1="NUMERIC", city="CATEGORICAL")
    recipe = {"outputs": ["quantile_bin(var1, 50)", "cartesian(quantile_bin(var1, 50), city)"]}
    columns = build_preprocessor(features, merge_recipe({}, recipe, features)).fit(frame)
    X = columns.transform(frame)
    X = X.toarray() if hasattr(X, "toarray") else X
    names = list(columns.get_feature_names_out())
    direct = [i for i, n in enumerate(names) if n.startswith("quantile_bin(var1, 50)=")]
    assert len(direct) == 50 and (X[:, direct].sum(axis=0) == 20).all()  # 50 bins of 20 rows each
    # The bins a cartesian cuts are the ones the direct output cuts: same levels, same rows.
    crossed = sorted(n for n in names if n.startswith("cartesian("))
    assert crossed == sorted(f"cartesian(quantile_bin(var1, 50), city)=bin{i}_x" for i in range(50))
    for i in range(50):
        level = f"bin{i}"
        a = X[:, names.index(f"quantile_bin(var1, 50)={level}")] > 0
        b = X[:, names.index(f"cartesian(quantile_bin(var1, 50), city)={level}_x")] > 0
        assert (a == b).all(), level


def test_normalize_gives_mean_0_and_variance_1_and_a_bare_number_is_used_as_it_is() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 10.0, np.nan], "b": [5.0, 6.0, np.nan, 8.0, 9.0]})
    features = _features(a="NUMERIC", b="NUMERIC")
    recipe = merge_recipe({}, {"outputs": ["normalize(a)", "b", "a"]}, features)
    # A linear family's numeric override does not replace what the recipe says.
    columns = build_preprocessor(features, recipe, numeric="quantile_bins").fit(frame)
    X = np.asarray(columns.transform(frame))
    names = list(columns.get_feature_names_out())
    assert names == ["b", "a", "normalize(a)"]
    assert abs(X[:, 2].mean()) < 1e-12 and abs(X[:, 2].var() - 1) < 1e-12
    assert X[:, 0].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]  # as it is, the missing one the median


# --- the guide's complete recipe ---


def test_the_guides_complete_recipe_is_checked_into_its_outputs() -> None:
    plan = check_recipe(GUIDE_RECIPE, GUIDE_FEATURES)
    assert plan.numeric == ["hours-per-week"]
    assert plan.bins == {10: ["hours-per-week"]}
    assert plan.categorical == ["country", "gender"] and plan.binary == ["married"]  # BINCAT, used as they are
    assert [t.label for t in plan.tokens] == [
        "lowercase(no_punct(body))",  # LONGTEXT: every text but the title and the subject
        "ngram(lowercase(no_punct(title)), 3)",
        "ngram(lowercase(no_punct(subject)), 3)",
        "cartesian(quantile_bin(age, 30), quantile_bin(hours-per-week, 10))",
        "cartesian(country, gender)",
    ]
    # What the model keeps is the recipe as given, spaced one way, its comments kept.
    assert plan.recipe["assignments"] == {
        "binned_age": "quantile_bin(age, 30)",
        "country_gender_interaction": "cartesian(country, gender)",
    }
    assert (
        plan.recipe["outputs"][4] == "cartesian(binned_age, quantile_bin(hours-per-week, 10)) // this one is critical"
    )
    assert check_recipe(plan.recipe, GUIDE_FEATURES).recipe == plan.recipe


def test_the_guides_complete_recipe_trains_and_its_pipeline_stores_with_only_trusted_types() -> None:
    data = _guide_data(300)
    pipeline = _fitted(data, merge_recipe({}, GUIDE_RECIPE, data.features), "linear")
    names = set(pipeline[0].get_feature_names_out())
    assert {"married", "hours-per-week", "country=us", "gender=f", "quantile_bin(hours-per-week, 10)=bin9"} <= names
    assert "ngram(lowercase(no_punct(title)), 3)=the quick brown" in names
    assert {"lowercase(no_punct(body))=seat-belts", "lowercase(no_punct(body))=world"} <= names
    assert "cartesian(country, gender)=us_f" in names
    saved = sio.dumps(pipeline)
    assert set(sio.get_untrusted_types(data=saved)) <= set(TRUSTED_TYPES)
    loaded = sio.loads(saved, trusted=list(TRUSTED_TYPES))
    assert np.array_equal(loaded.predict_proba(data.X), pipeline.predict_proba(data.X))


@pytest.mark.parametrize("family", ["linear", "hist_gradient_boosting", "random_forest", "knn", "mlp"])
def test_every_family_trains_on_the_guides_recipe_sparse_or_dense(family: str) -> None:
    data = _guide_data(200)
    pipeline = _fitted(data, merge_recipe({}, GUIDE_RECIPE, data.features), family)
    assert predict_output(pipeline, ModelType.BINARY, data.X, 2).shape == (200,)
    assert set(sio.get_untrusted_types(data=sio.dumps(pipeline))) <= set(TRUSTED_TYPES)


# --- groups, names and quoting ---


def test_groups_name_groups_and_all_inputs_is_every_input() -> None:
    features = _features(a="NUMERIC", b="NUMERIC", c="CATEGORICAL", t="TEXT")
    recipe = {
        "groups": {"NUMS": "group(ALL_NUMERIC)", "MORE": "group(NUMS, c)", "FEW": "group_remove(MORE, a)"},
        "outputs": ["normalize(NUMS)", "FEW", "ALL_TEXT"],
    }
    plan = check_recipe(recipe, features)
    assert plan.normalized == ["a", "b"] and plan.numeric == ["b"] and plan.categorical == ["c"]
    assert [t.label for t in plan.tokens] == ["t"]
    with pytest.raises(MlsvcError, match=r"c \(a member of FEW\) is a CATEGORICAL value"):
        check_recipe({**recipe, "outputs": ["normalize(FEW)"]}, features)
    everything = check_recipe({"outputs": ["ALL_INPUTS"]}, features)
    assert everything.numeric == ["a", "b"] and everything.categorical == ["c"] and len(everything.tokens) == 1


def test_names_with_special_characters_are_quoted() -> None:
    features = _features(**{"my, title": "TEXT", "2nd": "NUMERIC", "hours per week": "NUMERIC"})
    recipe = {"outputs": ["lowercase('my, title')", 'normalize("2nd")', "quantile_bin(hours per week, 5)"]}
    plan = check_recipe(recipe, features)
    assert [t.label for t in plan.tokens] == ["lowercase('my, title')"]
    assert plan.normalized == ["2nd"] and plan.bins == {5: ["hours per week"]}
    assert plan.recipe["outputs"] == ["lowercase('my, title')", "normalize('2nd')", "quantile_bin(hours per week, 5)"]


def test_a_recipe_arrives_as_json_text_too_and_mlsvcs_own_format_still_works() -> None:
    features = _features(age="NUMERIC", plan="CATEGORICAL")
    assert merge_recipe({}, json.dumps({"outputs": ["age", "plan"]}), features)["outputs"] == ["age", "plan"]
    own = merge_recipe(default_recipe(features), {"attributes": {"age": "quantile_bins"}}, features)
    assert own == {"attributes": {"age": "quantile_bins", "plan": "one_hot_rare_grouped"}, "crosses": []}


# --- errors a person can act on ---

FEATURES = _features(title="TEXT", age="NUMERIC", plan="CATEGORICAL", flag="BINARY", **{"hours-per-week": "NUMERIC"})


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        ({"outputs": ["quantile_bin(hours_per_week, 10)"]}, ["'hours_per_week' is not a variable", "hours-per-week"]),
        ({"outputs": ["normalize(plan)"]}, ["normalize takes NUMERIC values", "plan is a CATEGORICAL value"]),
        ({"outputs": ["lowercase(age)"]}, ["lowercase takes TEXT values", "quantile_bin(age, 10)"]),
        ({"outputs": ["lowercase(ngram(title, 2))"]}, ["ngram(lowercase(title), 2)"]),
        ({"outputs": ["cartesian(age, plan)"]}, ["cross its quantile bins instead: quantile_bin(age, 10)"]),
        ({"outputs": ["ngram(title, 1)"]}, ["n must be a whole number from 2 to 10, not '1'", "output the text"]),
        ({"outputs": ["osb(title, 11)"]}, ["window must be a whole number from 2 to 10"]),
        ({"outputs": ["quantile_bin(age, 1001)"]}, ["bins must be a whole number from 2 to 1000"]),
        ({"outputs": ["quantile_bin(age, ten)"]}, ["not 'ten'"]),
        ({"outputs": ["ngram(title)"]}, ["ngram takes 2 arguments: ngram(text, n)"]),
        ({"outputs": ["Lowercase(title)"]}, ["'Lowercase' is not a transformation (did you mean 'lowercase'?)"]),
        ({"outputs": ["age", "ALL_NUMERIC"]}, ["'age' is output twice", "outputs[0] 'age'"]),
        ({"outputs": ["title", "ALL_TEXT // again"]}, ["outputs[1]", "'title' is output twice"]),
        ({"outputs": ["ALL_TEXT", "ngram(title, 2"]}, ["outputs[1] 'ngram(title, 2'", "should be"]),
        ({"outputs": ["lowercase('title)"]}, ["no closing '"]),
        ({"outputs": ["title plan)"]}, ["follows a complete expression"]),
        ({"outputs": ["group(age, plan)"]}, ["defines a group in 'groups'"]),
        ({"outputs": []}, ["needs 'outputs'"]),
        ({"groups": {"G": "group(age)"}}, ["needs 'outputs'"]),
        ({"outputs": ["age"], "output": []}, ["unknown sections ['output']"]),
        ({"outputs": [["age"]]}, ["is a string"]),
        ({"groups": {"A": "group(B)", "B": "group(A)"}, "outputs": ["A"]}, ["defined in terms of itself (A → B → A)"]),
        ({"assignments": {"x": "lowercase(x)"}, "outputs": ["x"]}, ["'x' is defined in terms of itself"]),
        ({"groups": {"G": "group(ALL_INPUTS)"}, "outputs": ["G"]}, ["cannot include ALL_INPUTS"]),
        ({"groups": {"G": "group(lowercase(title))"}, "outputs": ["G"]}, ["is a transformation"]),
        ({"groups": {"G": "group_remove(ALL_NUMERIC, plan)"}, "outputs": ["G"]}, ["['plan'] are not in ALL_NUMERIC"]),
        ({"groups": {"age": "group(plan)"}, "outputs": ["age"]}, ["'age' is the name of a variable"]),
        ({"groups": {"ALL_TEXT": "group(title)"}, "outputs": ["age"]}, ["is a built-in group"]),
        ({"groups": {"G": "lowercase(title)"}, "outputs": ["G"]}, ["a group is group(var1, var2, …)"]),
        ({"outputs": ["ALL_CATEGORICAL", "ALL_TEXT", "ALL_BINARY", "ALL_NUMERIC", "G"]}, ["'G' is not a variable"]),
    ],
)
def test_bad_recipes_are_refused_naming_the_expression_and_the_fix(recipe: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(MlsvcError) as caught:
        merge_recipe({}, recipe, FEATURES)
    assert caught.value.code == "validation_error"
    for part in expected:
        assert part in caught.value.message, caught.value.message


def test_an_empty_built_in_group_and_bad_json_are_refused() -> None:
    with pytest.raises(MlsvcError, match="group ALL_TEXT is empty: the datasource has no TEXT attributes"):
        merge_recipe({}, {"outputs": ["ALL_TEXT"]}, _features(age="NUMERIC"))
    with pytest.raises(MlsvcError, match="recipe is not valid JSON: Expecting value at line 1 column 14"):
        merge_recipe({}, '{"outputs": [}', FEATURES)
    with pytest.raises(MlsvcError, match="is a JSON list, not an object"):
        merge_recipe({}, '["age"]', FEATURES)


# --- any recipe, in Amazon ML's language ---


def test_every_recipe_a_model_holds_reads_in_amazons_language() -> None:
    features = _features(a="NUMERIC", b="NUMERIC", n="NUMERIC", flag="BINARY", plan="CATEGORICAL", t="TEXT")
    features += _features(city="CATEGORICAL")
    own = {
        "attributes": {
            "a": "impute_median_scale",
            "b": "impute_median_scale",
            "n": "quantile_bins",
            "flag": "impute_most_frequent",
            "plan": "one_hot_rare_grouped",
            "city": "target_encode",
            "t": "drop",
        },
        "crosses": [["plan", "n"], ["flag", "plan"]],
    }
    amazon = as_amazon_recipe(own, features)
    assert amazon == {
        "groups": {"NORMALIZED": "group(a, b)"},
        "assignments": {},
        "outputs": [
            "normalize(NORMALIZED)",
            "quantile_bin(n, 10) // mlsvc also marks which values were missing",
            "ALL_BINARY",
            "plan",
            "city // mlsvc target-encodes these; Amazon ML has no target encoding",
            "cartesian(plan, quantile_bin(n, 5))",
            "cartesian(flag, plan)",
        ],
    }
    assert check_recipe(amazon, features).recipe == amazon  # a recipe this service accepts as it is
    default = default_amazon_recipe(GUIDE_FEATURES)
    assert default["outputs"] == [
        "normalize(ALL_NUMERIC)",
        "ALL_BINARY",
        "ALL_CATEGORICAL",
        "ngram(lowercase(no_punct(ALL_TEXT)), 2) // mlsvc weights words and word pairs by TF-IDF",
    ]
    assert as_amazon_recipe(GUIDE_RECIPE, GUIDE_FEATURES) == check_recipe(GUIDE_RECIPE, GUIDE_FEATURES).recipe
    every = {t for transforms in TRANSFORMS.values() for t in transforms} - {"drop"}
    assert every <= set(_AS_AMAZON)  # a transform added to mlsvc's own recipes needs its Amazon ML reading


# --- scoring: the compiled path where it is exact, the pipeline otherwise ---


def test_a_token_recipe_is_scored_by_its_pipeline_and_a_plain_one_compiled_both_as_the_pipeline() -> None:
    data = _guide_data(300)
    plain = {"outputs": ["normalize(age)", "hours-per-week", "quantile_bin(age, 7)", "BINCAT"]}
    plain["groups"] = GUIDE_RECIPE["groups"]
    records = [*_records(data.X.head(60)), {}, {"title": "never seen words", "country": "nowhere"}]
    for recipe, path in ((GUIDE_RECIPE, "pipeline"), (plain, "compiled")):
        pipeline = _fitted(data, merge_recipe({}, recipe, data.features), "linear")
        card = ModelCard("ml-x", 1, ModelType.BINARY, data.features, ["no", "yes"], 0.5)
        scorer = Scorer(card, pipeline)
        assert scorer.path == path, scorer.fallback_reason
        served = np.array([p["predicted_scores"]["yes"] for p in scorer.predict(records)])
        features = [a.model_dump() for a in data.features]
        expected = predict_output(pipeline, ModelType.BINARY, typed_frame(records, features), 2)
        assert np.allclose(served, expected, rtol=0, atol=1e-9), path


def _guide_data(rows: int) -> TrainingData:
    """Rows for the guide's recipe whose label follows the words of the title and the age."""
    rng = np.random.default_rng(3)
    titles = ["The quick brown fox", "A lazy dog, sleeping!", "the QUICK brown cat", "Problems: fun, with dogs"]
    title = rng.choice(titles, rows).astype(object)
    age = rng.normal(40, 12, rows)
    X = pd.DataFrame(
        {
            "title": title,
            "subject": rng.choice(np.array(["Economics: Principles", "Fun With Problems", None], dtype=object), rows),
            "body": rng.choice(["Hello World. Seat-belts!", "please - fasten", "seat-belts please"], rows).astype(
                object
            ),
            "age": np.where(rng.random(rows) < 0.05, np.nan, age),
            "hours-per-week": rng.normal(40, 5, rows),
            "country": rng.choice(np.array(["us", "fr", "de", None], dtype=object), rows),
            "gender": rng.choice(["m", "f"], rows).astype(object),
            "married": rng.integers(0, 2, rows).astype(float),
        }
    )
    quick = np.array(["quick" in t.lower() for t in title])
    y = ((quick & (age > 35)) | (rng.random(rows) < 0.1)).astype(np.int64)
    return TrainingData(X, y, GUIDE_FEATURES, ModelType.BINARY, ["no", "yes"], "yes")


def _fitted(data: TrainingData, recipe: dict[str, Any], family: str) -> Any:
    config = Config(f"{family}#0", BY_NAME[family], BY_NAME[family].defaults(data.model_type))
    return fit_quietly(make_pipeline(config, data, recipe, 0, 1), data.X, data.y)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a caller sends them: values as text, a missing one left out."""
    return [
        {k: (str(int(v)) if k == "married" else str(v)) for k, v in row.items() if v is not None and v == v}
        for row in frame.to_dict(orient="records")
    ]


# --- over HTTP: trained with a recipe inline, from a local file and from S3 ---

HTTP_RECIPE: dict[str, Any] = {
    "groups": {"WORDS": "group(title, note)"},
    "assignments": {"clean": "lowercase(no_punct(WORDS))"},
    "outputs": [
        "osb(clean, 3)",
        "clean",
        "quantile_bin(tenure, 5)",
        "cartesian(plan, quantile_bin(tenure, 5)) // plans age differently",
        "plan",
    ],
}


@pytest.fixture(scope="module")
def reviews(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A COMPLETED datasource of reviews whose label follows the words of their titles."""
    rng = np.random.default_rng(5)
    rows = 400
    good = rng.random(rows) < 0.5
    praise = ["Great value, works well!", "Love it: fast and quiet", "Great support, great price"]
    blame = ["Broken on arrival...", "Slow, loud and late", "Refund please: it broke"]
    title = [rng.choice(praise) if g else rng.choice(blame) for g in good]
    frame = pd.DataFrame(
        {
            "title": title,
            "note": rng.choice(["bought online", "gift for mum", "second one"], rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "tenure": rng.integers(1, 60, rows),
            "happy": np.where(good ^ (rng.random(rows) < 0.05), "yes", "no"),
        }
    )
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    frame.to_csv(path, index=False)
    body = {"data_uri": str(path), "target": "happy", "attribute_types": {"title": "TEXT", "note": "TEXT"}}
    return completed(api, "/v1/datasources", body)


def _model(api: httpx.Client, name: str, ds: dict[str, Any], **recipe: Any) -> dict[str, Any]:
    body = {"name": name, "datasource_id": ds["id"], "time_budget_s": 3, "candidates": [{"family": "linear"}]}
    return completed(api, "/v1/models", {**body, **recipe})


def test_a_model_trains_with_an_amazon_recipe_inline_and_predicts_real_time_and_in_batch(
    api: httpx.Client, reviews: dict[str, Any], server: RunningServer, tmp_path: Path
) -> None:
    model = _model(api, "reviews-recipe", reviews, recipe=HTTP_RECIPE)
    assert (
        model["recipe"]
        == check_recipe(HTTP_RECIPE, _features(title="TEXT", note="TEXT", plan="CATEGORICAL", tenure="NUMERIC")).recipe
    )
    assert model["recipe_uri"] is None
    names = set(registered_pipeline(server, model)[0].get_feature_names_out())
    assert {"osb(lowercase(no_punct(title)), 3)=great__works", "lowercase(no_punct(note))=gift"} <= names
    assert {"plan=basic", "quantile_bin(tenure, 5)=bin0", "cartesian(plan, quantile_bin(tenure, 5))=pro_bin4"} <= names
    assert not any(n.startswith("tenure") or n.startswith("note=") for n in names)  # only what the recipe outputs
    body = {"records": [{"title": "Great value, great support"}, {"title": "Broken and slow, refund"}]}
    praised, blamed = api.post(f"/v1/models/{model['id']}/predict", json=body).json()["predictions"]
    assert praised["predicted_scores"]["yes"] > 0.5 > blamed["predicted_scores"]["yes"]
    batch = {"model": model["id"], "datasource_id": reviews["id"], "output_uri": str(tmp_path / "out")}
    scored = completed(api, "/v1/batch-predictions", batch)
    assert scored["rows_scored"] == reviews["row_count"] == 400


def test_a_recipe_is_read_from_a_local_file_or_from_s3(
    api: httpx.Client, reviews: dict[str, Any], tmp_path: Path, s3_client: Any, s3_bucket: str
) -> None:
    local = tmp_path / "recipe.json"
    local.write_text(json.dumps(HTTP_RECIPE))
    s3_client.put_object(Bucket=s3_bucket, Key="recipes/reviews.json", Body=json.dumps(HTTP_RECIPE).encode())
    for uri in (str(local), f"s3://{s3_bucket}/recipes/reviews.json"):
        model = _model(api, "reviews-recipe-uri", reviews, recipe_uri=uri)
        assert model["recipe_uri"] == uri and model["recipe"]["outputs"][0] == "osb(clean, 3)", uri


def test_a_bad_recipe_is_refused_at_create_or_fails_the_model_when_read(
    api: httpx.Client, reviews: dict[str, Any], tmp_path: Path, s3_client: Any, s3_bucket: str
) -> None:
    base = {"name": "reviews-bad", "datasource_id": reviews["id"], "time_budget_s": 3}
    inline = api.post("/v1/models", json={**base, "recipe": {"outputs": ["normalize(title)"]}})
    assert "normalize takes NUMERIC values" in error(inline, 422, "validation_error")
    local = tmp_path / "recipe.json"
    local.write_text('{"outputs": ["age"]}')
    both = api.post("/v1/models", json={**base, "recipe": HTTP_RECIPE, "recipe_uri": str(local)})
    assert "not both" in error(both, 422, "validation_error")
    folder = api.post("/v1/models", json={**base, "recipe_uri": str(tmp_path)})
    assert "names a folder or prefix" in error(folder, 422, "validation_error")
    missing = api.post("/v1/models", json={**base, "recipe_uri": str(tmp_path / "none.json")})
    assert missing.status_code == 404, missing.text
    s3_client.put_object(Bucket=s3_bucket, Key="not-json.txt", Body=b"outputs: ALL_INPUTS")
    for uri, expected in (
        (str(local), "'age' is not a variable, group or assignment"),
        (f"s3://{s3_bucket}/not-json.txt", "the recipe is not valid JSON"),
        (f"s3://{s3_bucket}/absent.json", "absent.json"),
    ):
        created = api.post("/v1/models", json={**base, "recipe_uri": uri})
        assert created.status_code == 202, created.text
        failed = wait_done(api, f"/v1/models/{created.json()['id']}")
        assert failed["status"] == "FAILED" and f"recipe_uri {uri}" in failed["message"], failed["message"]
        assert expected in failed["message"], failed["message"]
