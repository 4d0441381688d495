"""The pydantic types of the resources and requests: the one definition of the API's shapes."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


def _not_a_path_step(value: str) -> str:
    """'.' and '..' match the id pattern, but in a URL path they mean 'here' and 'up': no resource could be
    reached by them."""
    if value in (".", ".."):
        raise ValueError(f"'{value}' cannot be an id: in a URL it means a folder, not a resource")
    return value


ResourceId = Annotated[
    str,
    Field(pattern=ID_PATTERN, description="Caller-chosen id; the server makes one if absent."),
    AfterValidator(_not_a_path_step),
]
Tags = dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]]


class Status(StrEnum):
    PENDING = "PENDING"
    INPROGRESS = "INPROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DELETED = "DELETED"


class AttributeType(StrEnum):
    BINARY = "BINARY"
    CATEGORICAL = "CATEGORICAL"
    NUMERIC = "NUMERIC"
    TEXT = "TEXT"


class ModelType(StrEnum):
    BINARY = "BINARY"
    MULTICLASS = "MULTICLASS"
    REGRESSION = "REGRESSION"
    RECOMMENDATION = "RECOMMENDATION"


def _given(field: str) -> dict[str, Any]:
    """A JSON Schema clause for "``field`` is given": present and not null (null counts as absent)."""
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


class _Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# --- Amazon ML schema and rearrangement (camelCase, as in Amazon ML's own files) ---


MissingToken = Annotated[str, Field(max_length=64)]
# The tokens read as missing unless a datasource says otherwise, besides a blank cell (compared stripped and
# lower-cased; ``mlsvc.datasources.values.MISSING_TOKENS`` says why these).
DEFAULT_MISSING_VALUES: tuple[str, ...] = (
    "na",
    "n/a",
    "#n/a",
    "#n/a n/a",
    "#na",
    "<na>",
    "nan",
    "-nan",
    "null",
    "none",
    "1.#ind",
    "-1.#ind",
    "1.#qnan",
    "-1.#qnan",
    "?",
    "-",
    "--",
)


class Attribute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attributeName: str = Field(min_length=1)
    attributeType: AttributeType
    missingValues: list[MissingToken] | None = Field(
        default=None,
        max_length=100,
        exclude_if=lambda v: v is None,
        description="The tokens read as missing in this column, compared stripped and in any case; a blank cell "
        "always is. Absent: the default tokens. The datasource job writes it where a column reads otherwise "
        "(the datasource's missing_values, or a default token kept as a frequent level); a model's features "
        "carry it, so every reading of the column agrees. mlsvc extension.",
    )


class Schema(BaseModel):
    """An Amazon ML data schema."""

    model_config = ConfigDict(extra="forbid")

    version: str = "1.0"
    targetAttributeName: str | None = None
    rowId: str | None = None
    rowWeight: str | None = None
    dataFormat: Literal["CSV"] = "CSV"
    dataFileContainsHeader: bool = True
    attributes: list[Attribute]
    excludedAttributeNames: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_are_consistent(self) -> Schema:
        names = [a.attributeName for a in self.attributes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"attribute names appear more than once: {dupes}")
        known = set(names)
        for role, name in (("targetAttributeName", self.targetAttributeName), ("rowId", self.rowId)):
            if name is not None and name not in known:
                raise ValueError(f"{role} {name!r} is not one of the attributes {names}")
        missing = [n for n in self.excludedAttributeNames if n not in known]
        if missing:
            raise ValueError(f"excludedAttributeNames {missing} are not attributes")
        return self

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.attributeName == name), None)

    def feature_attributes(self) -> list[Attribute]:
        """The attributes a model learns from: all but the target, the row id, the weight and exclusions."""
        skip = {self.targetAttributeName, self.rowId, self.rowWeight, *self.excludedAttributeNames}
        return [a for a in self.attributes if a.attributeName not in skip]


class Splitting(BaseModel):
    """Amazon ML's data rearrangement: which percentage range of the rows a datasource takes."""

    model_config = ConfigDict(extra="forbid")

    percentBegin: int = Field(0, ge=0, le=100)
    percentEnd: int = Field(100, ge=0, le=100)
    strategy: Literal["sequential", "random"] = "sequential"
    randomSeed: str = ""
    complement: bool = False

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Splitting:
        if self.percentBegin > self.percentEnd:
            raise ValueError("percentBegin must not exceed percentEnd")
        return self


class Rearrangement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    splitting: Splitting | None = None


# --- SQL datasources: a query's result, staged as CSV ---


class SqlSourceInfo(BaseModel):
    """Where a SQL datasource's rows come from, as its resource shows it (never the password)."""

    engine: Literal["mysql", "postgresql"] = Field(
        description="mysql: MySQL or MariaDB (Amazon RDS); postgresql: PostgreSQL or Amazon Redshift."
    )
    instance: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="A server the operator named: an RDS InstanceIdentifier (MLSVC_RDS_INSTANCES) for mysql, a "
        "Redshift ClusterIdentifier (MLSVC_REDSHIFT_CLUSTERS) for postgresql. Instead of host and port.",
    )
    host: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._:\[\]-]{1,253}$",
        description="A host name or address that MLSVC_SQL_HOSTS allows (loopback by default).",
    )
    port: int | None = Field(None, ge=1, le=65535, description="With host; 3306 for mysql, 5432 for postgresql.")
    database: str = Field(min_length=1, max_length=128)
    username: str = Field(min_length=1, max_length=128)
    query: str = Field(
        min_length=1,
        max_length=1_000_000,
        description="One statement that returns rows (a SELECT); it runs in a read-only transaction.",
    )
    staging_uri: str = Field(
        min_length=1,
        max_length=2048,
        description="A folder (s3://bucket/prefix/ or a path) where the result is staged as <datasource id>.csv.",
    )


class SqlSource(SqlSourceInfo):
    """A query whose result becomes a datasource: run read-only, staged as CSV under ``staging_uri``, then read
    like any CSV."""

    # A request that fails validation is not echoed with its password in the error's text either.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    password: SecretStr | None = Field(
        None,
        max_length=1024,
        exclude=True,  # write-only: never dumped, so never in a response, the stored request or its hash
        description="Write-only: never shown, stored only until the datasource's job has run.",
    )

    @model_validator(mode="after")
    def _one_server(self) -> SqlSource:
        if (self.instance is None) == (self.host is None):
            raise ValueError("give either 'instance' (a server the operator named) or 'host' (and 'port')")
        if self.port is not None and self.host is None:
            raise ValueError("'port' goes with 'host'; an instance's port is configured with it")
        if not self.query.strip():
            raise ValueError("'query' is blank; give a SELECT statement")
        return self


# --- resources ---


class Resource(BaseModel):
    """What every resource carries."""

    id: str
    name: str
    status: Status
    message: str = ""
    progress: float = Field(0.0, ge=0.0, le=1.0)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = Field(None, description="When the job's latest attempt started running.")
    finished_at: datetime | None = Field(None, description="When the job ended: COMPLETED, FAILED or stopped.")
    tags: dict[str, str] = Field(default_factory=dict)


class DataSource(Resource):
    model_config = ConfigDict(populate_by_name=True)

    data_uri: str = Field(description="The CSV file or prefix read; for a SQL datasource, its staged CSV.")
    sql: SqlSourceInfo | None = Field(None, description="Where a SQL datasource's rows come from.")
    rows_fetched: int | None = Field(None, description="SQL datasources: the rows the query has returned so far.")
    data_schema: Schema | None = Field(None, alias="schema")
    schema_uri: str | None = None
    target: str | None = None
    row_id: str | None = None
    attribute_types: dict[str, AttributeType] = Field(default_factory=dict)
    rearrangement: Rearrangement | None = None
    compute_statistics: bool = True
    max_invalid_fraction: float = 0.1
    missing_values: list[str] | None = Field(
        default=None, description="The missing-value tokens asked for at create; null: the defaults (mlsvc extension)."
    )
    files: list[str] = Field(default_factory=list)
    row_count: int | None = None
    used_row_count: int | None = None
    invalid_row_count: int | None = None
    statistics: dict[str, Any] | None = None


FamilyName = Literal["linear", "hist_gradient_boosting", "random_forest", "extra_trees", "knn", "mlp"]


class Candidate(_Strict):
    """One configuration to train as it is: a model family and parameters over that family's defaults."""

    family: FamilyName
    params: dict[str, Any] = Field(
        default_factory=dict, description='Over the family\'s defaults, e.g. {"max_iter": 300} (mlsvc extension).'
    )


class RealtimeEndpoint(BaseModel):
    """A model mounted for real-time predictions through Amazon ML's Predict (CreateRealtimeEndpoint)."""

    status: Literal["NONE", "READY", "UPDATING", "FAILED"] = "NONE"
    url: str | None = Field(None, description="Where Predict calls go: this server's URL as the caller reached it.")
    peak_requests_per_second: int = Field(
        0, description="Predict calls a second the endpoint answers; beyond it LimitExceededException."
    )
    created_at: datetime | None = None


class Model(Resource):
    version: int | None = None
    display_name: str | None = Field(None, description="A free-text name (Amazon ML's MLModelName).")
    parameters: dict[str, str] | None = Field(
        None, description="Amazon ML's training parameters as given (sgd.*); docs/amazon-ml.md says how each maps."
    )
    score_threshold_updated_at: datetime | None = None
    endpoint: RealtimeEndpoint | None = None
    model_type: ModelType | None = None
    datasource_id: str
    target: str | None = None
    time_budget_s: float | None = None
    recipe: dict[str, Any] | None = None
    recipe_uri: str | None = Field(None, description="Where the recipe was read from, when it was not given inline.")
    candidates: list[Candidate] | None = None
    seed: int = 0
    promote: Literal["auto", "never"] = "auto"
    score_threshold: float | None = None
    classes: list[str] | None = None
    positive_label: str | None = None
    features: list[Attribute] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    leaderboard: list[dict[str, Any]] = Field(default_factory=list)
    importances: list[dict[str, Any]] = Field(
        default_factory=list, description="Each attribute's permutation importance on the held-out rows."
    )
    aliases: list[str] = Field(default_factory=list)
    mlflow_run_id: str | None = None
    evaluation_id: str | None = Field(None, description="The evaluation made on the held-out rows at training.")
    promotion: dict[str, Any] | None = Field(None, description="Whether this version became production, and why.")
    training_rows: int | None = None
    holdout_rows: int | None = None
    roles: dict[str, str | None] | None = Field(
        None, description="RECOMMENDATION: the user, item, rating and timestamp columns."
    )
    k: int | None = Field(None, description="RECOMMENDATION: how many items a recommendation lists by default.")
    items_datasource_id: str | None = None


class TrainingOverlap(BaseModel):
    """An evaluation's datasource shares rows with the model's training data: its metrics are optimistic."""

    datasource_id: str = Field(description="The datasource the model was trained on.")
    fraction_trained_on: float = Field(ge=0, le=1, description="The share of the rows evaluated that trained it.")
    note: str


class Evaluation(Resource):
    """A model's metrics and insights on labelled data (a datasource, or the rows held out at training)."""

    model: str | None = None
    model_id: str
    model_version: int | None = None
    datasource_id: str
    holdout: bool = False
    model_type: ModelType | None = None
    metric: str | None = None
    value: float | None = None
    baseline: dict[str, Any] | None = None
    vs_baseline: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    insights: dict[str, Any] | None = None
    rows: int | None = None
    training_overlap: TrainingOverlap | None = Field(
        None, description="Set when the datasource holds rows the model was trained on."
    )


class BatchPrediction(Resource):
    """Predictions for every row of a datasource or a CSV, written as gzipped CSV under ``output_uri``."""

    model: str
    model_id: str
    model_version: int | None = None
    datasource_id: str | None = None
    data_uri: str | None = None
    output_uri: str
    row_id: str | None = None
    rows_total: int | None = None
    rows_scored: int = 0
    rows_with_invalid_values: int = 0
    invalid_row_count: int = 0
    invalid_examples: list[str] = Field(default_factory=list)
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    manifest_uri: str | None = None


class BatchPredictionPage(BaseModel):
    items: list[BatchPrediction]
    next_token: str | None = None


class DataSourcePage(BaseModel):
    items: list[DataSource]
    next_token: str | None = None


class ModelPage(BaseModel):
    items: list[Model]
    next_token: str | None = None


class EvaluationPage(BaseModel):
    items: list[Evaluation]
    next_token: str | None = None


# --- requests ---


WaitForInputs = Annotated[
    bool,
    Field(
        exclude_if=lambda v: not v,  # so a request without it is the same request as before the field was added
        description="Queue behind inputs not COMPLETED yet (a datasource still being read, a model still training) "
        "instead of refusing: the job waits for them and fails if one fails, as Amazon ML queued its steps. mlsvc "
        "extension.",
    ),
]


class DataSourceCreate(_Strict):
    id: ResourceId | None = None
    name: str | None = Field(None, max_length=256)
    data_uri: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        exclude_if=lambda v: v is None,
        description="A CSV file or prefix (s3://, file:// or a path); or give 'sql' instead.",
    )
    sql: SqlSource | None = Field(
        None,
        exclude_if=lambda v: v is None,  # so a file request is the same request as before the field was added
        description="A query whose result becomes the datasource, instead of 'data_uri'. mlsvc extension (Amazon "
        "ML's CreateDataSourceFromRDS and CreateDataSourceFromRedshift).",
    )
    data_schema: Schema | None = Field(None, alias="schema")
    schema_uri: str | None = Field(None, max_length=2048)
    target: str | None = None
    row_id: str | None = None
    attribute_types: dict[str, AttributeType] = Field(
        default_factory=dict, description="Override the inferred (or given) type of any attribute."
    )
    rearrangement: Rearrangement | None = None
    compute_statistics: bool = True
    max_invalid_fraction: float = Field(0.1, ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    missing_values: list[MissingToken] | None = Field(
        default=None,
        max_length=100,
        exclude_if=lambda v: v is None,  # so a request without it is the same request as before the field was added
        description="The tokens read as missing in every column, compared stripped and in any case (a blank cell "
        "always is); [] makes only blank cells missing. Absent (null): the defaults, "
        f"{', '.join(DEFAULT_MISSING_VALUES)}, except that a default token filling at least 1% (and 10) of the "
        "sampled cells of a CATEGORICAL column that has other values too is a level of that column, not missing. An "
        "attribute's own missingValues in the schema win. mlsvc extension (Amazon ML's schema has no such field).",
    )
    tags: Tags = Field(default_factory=dict)

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        hide_input_in_errors=True,  # the input may hold an SQL password
        json_schema_extra={"oneOf": [_given("data_uri"), _given("sql")]},
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSourceCreate:
        if (self.data_uri is None) == (self.sql is None):
            raise ValueError("give exactly one of 'data_uri' (a CSV file or prefix) or 'sql' (a query)")
        return self


class ModelCreate(_Strict):
    id: ResourceId | None = None
    name: str = Field(pattern=NAME_PATTERN, description="Registered model name; training again makes a new version.")
    display_name: str | None = Field(
        None, max_length=1024, exclude_if=lambda v: v is None, description="A free-text name (Amazon ML's MLModelName)."
    )
    parameters: dict[str, str] | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="Amazon ML's training parameters (sgd.maxPasses, sgd.maxMLModelSizeInBytes, "
        "sgd.l1RegularizationAmount, sgd.l2RegularizationAmount, sgd.shuffleType), checked and kept; "
        "docs/amazon-ml.md says how each maps onto mlsvc's search.",
    )
    datasource_id: str = Field(min_length=1, max_length=64)
    target: str | None = None
    model_type: ModelType | None = None
    time_budget_s: float | None = Field(None, gt=0, le=24 * 3600, strict=True, allow_inf_nan=False)
    recipe: dict[str, Any] | None = None
    recipe_uri: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        exclude_if=lambda v: v is None,  # so a request without it is the same request as before the field was added
        description="Where to read the recipe instead (Amazon ML's RecipeUri): s3://…, file://… or a local path to a "
        "JSON document of at most 1 MiB, in Amazon ML's recipe language or mlsvc's own (docs/recipes.md); give "
        "recipe or recipe_uri, not both.",
    )
    candidates: list[Candidate] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="Train exactly these configurations instead of searching the families (for experts and "
        "benchmarks); the best on validation is selected as usual. mlsvc extension.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    promote: Literal["auto", "never"] = "auto"
    wait_for_inputs: WaitForInputs = False
    roles: dict[Literal["user", "item", "rating", "timestamp"], str | None] | None = Field(
        None,
        description="RECOMMENDATION: which columns hold the user, item, rating or weight, and timestamp "
        "(inferred from the column names when absent).",
    )
    k: int = Field(10, ge=1, le=1000, description="RECOMMENDATION: items per recommendation, and the k of NDCG@k.")
    items_datasource_id: str | None = Field(
        None,
        max_length=64,
        description="RECOMMENDATION: item attributes (category, price, text) used for items without interactions.",
    )
    tags: Tags = Field(default_factory=dict)


class EvaluationCreate(_Strict):
    id: ResourceId | None = Field(None, description="Caller-chosen id (ids ending in -holdout are the server's).")
    name: str | None = Field(None, max_length=256)
    model: str = Field(min_length=1, max_length=200, description="id, name, name:VERSION or name:ALIAS")
    datasource_id: str = Field(min_length=1, max_length=64)
    wait_for_inputs: WaitForInputs = False
    tags: Tags = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _not_a_holdout_id(cls, value: str | None) -> str | None:
        if value is not None and value.endswith("-holdout"):
            raise ValueError("ids ending in '-holdout' name the evaluations the server makes at training")
        return value


class BatchPredictionCreate(_Strict):
    id: ResourceId | None = None
    name: str | None = Field(None, max_length=256)
    model: str = Field(min_length=1, max_length=200, description="id, name, name:VERSION or name:ALIAS")
    datasource_id: str | None = Field(None, min_length=1, max_length=64)
    data_uri: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="A CSV file or prefix with a header naming the model's attributes (instead of a datasource).",
    )
    row_id: str | None = Field(None, description="With data_uri: a column to copy into the output as the row id.")
    output_uri: str = Field(min_length=1, max_length=2048, description="A folder: s3://bucket/prefix/ or a path.")
    wait_for_inputs: WaitForInputs = False
    tags: Tags = Field(default_factory=dict)

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [_given("datasource_id"), _given("data_uri")]}
    )

    @model_validator(mode="after")
    def _one_input(self) -> BatchPredictionCreate:
        if (self.datasource_id is None) == (self.data_uri is None):
            raise ValueError("give exactly one of 'datasource_id' or 'data_uri'")
        return self


class TagsPatch(_Strict):
    """Tags to merge into a resource's tags; a null value removes that key."""

    tags: (
        dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)] | None] | None
    ) = None


class DataSourceUpdate(TagsPatch):
    name: str | None = Field(None, min_length=1, max_length=256)


class BatchPredictionUpdate(TagsPatch):
    name: str | None = Field(None, min_length=1, max_length=256)


class EvaluationUpdate(TagsPatch):
    name: str | None = Field(None, min_length=1, max_length=256)


class ModelUpdate(TagsPatch):
    score_threshold: float | None = Field(None, ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    display_name: str | None = Field(None, min_length=1, max_length=1024)


class AliasSet(_Strict):
    version: int = Field(ge=1, le=2**31 - 1)


Record = dict[str, Any]


class PredictRequest(_Strict):
    """A record or records for BINARY, MULTICLASS and REGRESSION models; a user or an item for RECOMMENDATION."""

    record: Record | None = None
    records: list[Record] | None = None
    user_id: str | int | None = Field(None, description="RECOMMENDATION: items this user is likely to want.")
    item_id: str | int | None = Field(None, description="RECOMMENDATION: items like this one.")
    k: int | None = Field(None, ge=1, le=1000)
    exclude_seen: bool = True

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [_given(n) for n in ("record", "records", "user_id", "item_id")]}
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        given = [n for n in ("record", "records", "user_id", "item_id") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'record' (an object), 'records' (a list of objects), "
                "'user_id' or 'item_id' (recommendation models)"
            )
        return self


class Prediction(BaseModel):
    predicted_label: str | None = None
    predicted_value: float | None = None
    predicted_scores: dict[str, float] | None = None
    warnings: list[str] = Field(default_factory=list)


class Recommendation(BaseModel):
    item_id: str
    score: float


class PredictResponse(BaseModel):
    """Predictions in request order; for a RECOMMENDATION model, ranked items instead."""

    predictions: list[Prediction] | None = None
    recommendations: list[Recommendation] | None = None
    user_id: str | None = None
    item_id: str | None = None
    cold_start: bool | None = Field(
        None, description="The user or item was unknown: popular or similar-by-attribute items were given instead."
    )
    model_id: str
    version: int


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


def is_valid_alias(alias: str) -> bool:
    return re.match(ALIAS_PATTERN, alias) is not None and not alias.isdigit()
