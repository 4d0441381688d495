"""Evaluation operations: evaluate a COMPLETED model on a labelled datasource; read, list, rename, tag, delete."""

from __future__ import annotations

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import MetadataStore, ResourceKind
from mlsvc.resources import Evaluation, EvaluationCreate, ModelType, Status
from mlsvc.service.common import Collection, new_id, pending_record, usable_datasource, usable_model
from mlsvc.service.refs import ModelRefs
from mlsvc.training.overlap import training_overlap


class Evaluations(Collection[Evaluation]):
    """The operations on evaluations."""

    kind: ResourceKind = "evaluation"
    shape = Evaluation

    def __init__(self, metadata: MetadataStore, refs: ModelRefs, max_attempts: int) -> None:
        super().__init__(metadata, max_attempts)
        self.refs = refs

    def create(self, req: EvaluationCreate) -> tuple[Evaluation, bool]:
        body = req.model_dump(mode="json", exclude={"id"})
        if (existing := self.retried(req.id, body)) is not None:
            return existing, False
        model = usable_model(self.refs.resolve(req.model), "be evaluated", req.wait_for_inputs)
        if model["model_type"] == ModelType.RECOMMENDATION.value:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"model '{model['id']}' is a RECOMMENDATION model: its evaluation on held-out interactions is "
                f"'{model.get('evaluation_id')}'; evaluating on another datasource is for BINARY, MULTICLASS and "
                "REGRESSION models",
            )
        ds = usable_datasource(self.metadata, req.datasource_id, req.wait_for_inputs)
        trained_on = self.metadata.find("datasource", model["datasource_id"])
        settled = ds["status"] == Status.COMPLETED.value and model["status"] == Status.COMPLETED.value
        overlap = training_overlap(model, trained_on, ds) if trained_on is not None and settled else None
        record = pending_record(
            body,
            req.id or new_id("evaluation"),
            name=req.name or f"{model['name']} v{model['version']} on {ds['name']}",
            model_id=model["id"],
            model_version=model["version"],
            datasource_id=ds["id"],
            holdout=False,
            training_overlap=overlap.model_dump() if overlap else None,
        )
        return self.created(record, body, req.tags, "evaluation.run")
