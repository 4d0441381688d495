"""Model operations: train a new version, read, list, set a threshold, tag, delete, and move aliases."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.metadata import Document, MetadataStore, ResourceKind
from mlsvc.metadata.sql import utcnow
from mlsvc.registry import ModelRegistry
from mlsvc.registry.notes import STATUS_TAG
from mlsvc.resources import (
    Model,
    ModelCreate,
    ModelType,
    ModelUpdate,
    RealtimeEndpoint,
    Schema,
    Status,
    is_valid_alias,
)
from mlsvc.security.uris import UriValidator
from mlsvc.service.common import (
    Creator,
    ListQuery,
    completed_model,
    list_page,
    new_id,
    pending_record,
    queue_note,
    ready_datasource,
    usable_datasource,
)
from mlsvc.service.refs import ModelRefs
from mlsvc.training.candidates import BY_NAME
from mlsvc.training.parameters import check_parameters, time_budget
from mlsvc.training.recipe import default_recipe, merge_recipe

log = logging.getLogger("mlsvc.service")
ENDPOINT_PEAK_RPS = 200  # Amazon ML's real-time endpoints answered this many requests a second


class Models(Creator[Model]):
    """The operations on models and their aliases, by reference (see ``ModelRefs``). ``warm`` loads a version
    before an alias sends it traffic."""

    kind: ResourceKind = "model"
    shape = Model

    def __init__(
        self,
        metadata: MetadataStore,
        registry: ModelRegistry,
        refs: ModelRefs,
        warm: Callable[[Document], None],
        max_attempts: int,
        uris: UriValidator,
    ) -> None:
        super().__init__(metadata, max_attempts)
        self.registry = registry
        self.refs = refs
        self.warm = warm
        self.uris = uris

    def create(self, req: ModelCreate) -> tuple[Model, bool]:
        """A PENDING version of ``req.name`` and its job; (the model, whether it is new rather than a retry)."""
        body = req.model_dump(mode="json", exclude={"id"})
        # A retry answers as the first time did, even if the datasource has changed since.
        if (existing := self.retried(req.id, body)) is not None:
            return existing, False
        self._check_unambiguous(req)
        recipe_uri = self._check_recipe_uri(req)
        check_parameters(req.parameters)
        if req.time_budget_s is None and (budget := time_budget(req.parameters)) is not None:
            req = req.model_copy(update={"time_budget_s": budget})
        ds = usable_datasource(self.metadata, req.datasource_id, req.wait_for_inputs)
        if ds["status"] == Status.COMPLETED.value:  # else the job checks, once the datasource's schema is known
            schema = Schema.model_validate(ds["schema"])
            if req.model_type == ModelType.RECOMMENDATION:
                self._check_recommendation(req, schema)
            else:
                self._check_supervised(req, schema)
        stored = {**body, "time_budget_s": req.time_budget_s}  # the budget the parameters asked for, if any
        record = pending_record(stored, req.id or new_id("model"), version=None)
        if recipe_uri is not None:
            record["recipe_uri"] = recipe_uri  # normalized, as data_uri is: a worker elsewhere reads the same file
        job = "recommender.train" if req.model_type == ModelType.RECOMMENDATION else "model.train"
        return self.created(record, body, req.tags, job)

    def _check_unambiguous(self, req: ModelCreate) -> None:
        """A reference is an id or a name: one must never be taken for the other."""
        # Even an id equal to its own name: a new id that is an existing name would take that name's references.
        if req.id and self.metadata.model_name_exists(req.id):
            raise MlsvcError(
                ErrorCode.CONFLICT,
                f"'{req.id}' is the name of a model; a model's id must not be "
                "another model's name, or references to it would be ambiguous",
                {"id": req.id},
            )
        holder = self.metadata.find("model", req.name)
        if holder is not None and holder["name"] != req.name:
            raise MlsvcError(
                ErrorCode.CONFLICT,
                f"'{req.name}' is the id of model '{holder['name']}'; choose another name",
                {"name": req.name},
            )

    def _check_recipe_uri(self, req: ModelCreate) -> str | None:
        """The recipe is given inline or by where to read it, not both; a recipe_uri names one file (read by the
        job), normalized."""
        if req.recipe_uri is None:
            return None
        if req.recipe is not None:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                "give the recipe inline ('recipe') or where to read it ('recipe_uri'), not both",
            )
        uri = self.uris.check_readable(req.recipe_uri)
        if uri.endswith("/") or Path(uri).is_dir():
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"recipe_uri {uri} names a folder or prefix; name the recipe's file",
                {"recipe_uri": uri},
            )
        return uri

    def _check_supervised(self, req: ModelCreate, schema: Schema) -> None:
        names = [a.attributeName for a in schema.attributes]
        if req.target is not None:
            if req.target not in names:
                raise MlsvcError(
                    ErrorCode.VALIDATION_ERROR,
                    f"target column '{req.target}' not found{did_you_mean(req.target, names)}; columns are {names}",
                )
            schema = schema.model_copy(update={"targetAttributeName": req.target})
        elif not schema.targetAttributeName:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"datasource '{req.datasource_id}' names no target: give 'target', the column to predict "
                f"(one of {names})",
            )
        if req.recipe is not None:
            features = schema.feature_attributes()
            merge_recipe(default_recipe(features), req.recipe, features)
        for i, candidate in enumerate(req.candidates or []):
            known = BY_NAME[candidate.family].parameter_names()
            unknown = sorted(set(candidate.params) - known)
            if unknown:
                raise MlsvcError(
                    ErrorCode.VALIDATION_ERROR,
                    f"candidates[{i}] ({candidate.family}) has parameters it does not take: {unknown}; "
                    f"it takes {sorted(known)}",
                )
            target = candidate.params.get("target")
            if target is not None and (target != "log1p" or req.model_type not in (None, ModelType.REGRESSION)):
                raise MlsvcError(
                    ErrorCode.VALIDATION_ERROR,
                    f'candidates[{i}]: target is "log1p" (a REGRESSION target learnt on the log scale) or null, '
                    f"not {target!r}",
                )

    def _check_recommendation(self, req: ModelCreate, schema: Schema) -> None:
        if req.candidates:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR, "candidates name supervised model families; a RECOMMENDATION model has none"
            )
        names = [a.attributeName for a in schema.attributes]
        unknown = {role: column for role, column in (req.roles or {}).items() if column and column not in names}
        if unknown:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"roles name columns the datasource does not have: {unknown}; columns are {names}",
            )
        if req.items_datasource_id:
            ready_datasource(self.metadata, req.items_datasource_id, "items datasource")

    def get(self, ref: str) -> Model:
        return Model.model_validate(queue_note(self.metadata, self.refs.resolve(ref)))

    def list(self, query: ListQuery, name: str | None = None) -> tuple[list[Model], str | None]:
        """A page of models; ``name`` keeps the versions of one name."""
        return list_page(self.metadata, "model", Model, query, where={"name": name} if name else None)

    def update(self, ref: str, patch: ModelUpdate) -> Model:
        model = self.refs.resolve(ref)
        if patch.score_threshold is not None:
            if model["status"] != Status.COMPLETED.value:
                raise MlsvcError(
                    ErrorCode.NOT_READY,
                    f"model '{model['id']}' is {model['status']}; set its score_threshold once it is COMPLETED",
                    {"id": model["id"]},
                )
            if model.get("model_type") != "BINARY":
                raise MlsvcError(
                    ErrorCode.VALIDATION_ERROR,
                    f"score_threshold applies to BINARY models; '{model['id']}' is {model['model_type']}",
                )
            self.metadata.update(
                "model",
                model["id"],
                {"score_threshold": patch.score_threshold, "score_threshold_updated_at": utcnow().isoformat()},
            )
            self.refs.clear()
        if patch.display_name is not None:
            self.metadata.update("model", model["id"], {"display_name": patch.display_name})
        if patch.tags:
            self.metadata.set_tags("model", model["id"], patch.tags)
        return Model.model_validate(self.metadata.get("model", model["id"]))

    def delete(self, ref: str, force: bool = False) -> Model:
        """Delete a version; one that carries aliases only with ``force`` (its aliases go with it, and its
        message says which, and what the bare name now finds)."""
        model = self.refs.resolve(ref)
        carried = model.get("aliases") or []
        if carried and not force and model["status"] != Status.DELETED.value:
            raise MlsvcError(
                ErrorCode.CONFLICT,
                f"version {model['version']} of '{model['name']}' carries the alias(es) {carried}: move them to "
                f"another version first (PUT /v1/models/{model['name']}/aliases/ALIAS), or delete with force=true "
                "to remove them with it",
                {"id": model["id"], "aliases": carried},
            )
        dropped = self.metadata.delete_model(model["id"])
        for alias in dropped:
            self._mirror("delete_alias", model["name"], alias)
        if model.get("model_uri"):  # registered: MLflow's tags say it is deleted, as mlsvc does
            self._mirror("tag_version", model["name"], model["version"], {STATUS_TAG: Status.DELETED.value})
        self.refs.clear()
        if dropped:
            self.metadata.update("model", model["id"], {"message": self._dropped_message(model["name"], dropped)})
        return Model.model_validate(self.metadata.get("model", model["id"]))

    def _dropped_message(self, name: str, dropped: Sequence[str]) -> str:
        now = self.refs.by_name(name)
        after = (
            f"'{name}' now finds version {now['version']} ({now['status']})" if now else f"'{name}' has no version left"
        )
        return f"deleted with its alias(es) {dropped}; {after}"

    def set_alias(self, name: str, alias: str, version: int) -> Model:
        if not is_valid_alias(alias):
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"alias '{alias}' must start with a letter and hold only letters, digits, '_' and '-'",
            )
        model = self.metadata.model_by_version(name, version)
        if model is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"model '{name}' has no version {version}", {"name": name, "version": version}
            )
        if model["status"] != Status.COMPLETED.value:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"version {version} of '{name}' is {model['status']}; only a COMPLETED version can carry an alias",
            )
        self.warm(model)  # load the new version before requests by the alias arrive
        if not self.metadata.set_alias(name, alias, version, require_status=Status.COMPLETED.value):
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"version {version} of '{name}' stopped being COMPLETED (deleted?) while the alias was being set",
            )
        self.refs.clear()
        self._mirror("set_alias", name, alias, version)
        return Model.model_validate(self.metadata.get("model", model["id"]))

    def delete_alias(self, name: str, alias: str) -> Model:
        version = self.metadata.alias_version(name, alias)
        if version is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND, f"model '{name}' has no alias '{alias}'", {"name": name, "alias": alias}
            )
        self.metadata.delete_alias(name, alias)
        self.refs.clear()
        self._mirror("delete_alias", name, alias)
        model = self.metadata.model_by_version(name, version)
        if model is None:
            raise MlsvcError(
                ErrorCode.NOT_FOUND,
                f"alias '{alias}' pointed at version {version} of '{name}', which no longer exists; "
                "the alias is removed",
                {"name": name, "alias": alias},
            )
        return Model.model_validate(model)

    def amazon_recipe(self, model: Model) -> dict[str, Any] | None:
        """The version's recipe in Amazon ML's recipe language (whatever form it was given in)."""
        from mlsvc.training.recipe_language import as_amazon_recipe

        if model.recipe is None:
            return None
        if not model.features:  # not trained yet: the recipe as it was given
            return model.recipe
        return as_amazon_recipe(model.recipe, model.features)

    def mount(self, ref: str, url: str, peak_requests_per_second: int = ENDPOINT_PEAK_RPS) -> Model:
        """Mount a COMPLETED version for real-time predictions at ``url`` (loaded first, so the first call is
        fast); mounting again keeps the endpoint as it is."""
        model = completed_model(self.refs.resolve(ref), "be mounted on a real-time endpoint")
        if (model.get("endpoint") or {}).get("status") != "READY":
            self.warm(model)
            endpoint = RealtimeEndpoint.model_validate(
                {
                    "status": "READY",
                    "url": url,
                    "peak_requests_per_second": peak_requests_per_second,
                    "created_at": utcnow(),
                }
            )
            self.metadata.update("model", model["id"], {"endpoint": endpoint.model_dump(mode="json")})
            self.refs.clear()
        return Model.model_validate(self.metadata.get("model", model["id"]))

    def unmount(self, ref: str) -> Model:
        """Take a version off its real-time endpoint (it is still served by the native API)."""
        model = self.refs.resolve(ref)
        self.metadata.update(
            "model", model["id"], {"endpoint": RealtimeEndpoint.model_validate({}).model_dump(mode="json")}
        )
        self.refs.clear()
        return Model.model_validate(self.metadata.get("model", model["id"]))

    def _mirror(self, method: str, *args: object) -> None:
        """Mirror alias changes into the registry; the store is the source of truth, so a failure is not fatal."""
        try:
            getattr(self.registry, method)(*args)
        except Exception:
            log.warning("could not mirror %s%s to the model registry", method, args, exc_info=True)
