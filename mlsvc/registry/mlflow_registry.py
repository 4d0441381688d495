"""The registry plane on MLflow: runs, registered models, versions, aliases, loading; the one importer of mlflow."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from mlsvc.config import Settings
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.registry import MODEL_ID_TAG, ArtifactRef, IntegrityListener, RegisteredVersion
from mlsvc.registry.trusted import TRUSTED_TYPES
from mlsvc.security.integrity import problems, signature, tree_digests

log = logging.getLogger("mlsvc.registry")
EXPERIMENT = "mlsvc"
MODEL_DIR = "model"
MODEL_FILE = "model.skops"  # the sklearn flavor's name for a model saved in skops' format
# MLflow writes this file beside a models:/ download on the caller's side; it is never in the store.
DOWNLOAD_NOTE = "registered_model_meta"


class MlflowRegistry:
    """The MLflow tracking server and model registry that mlsvc's settings point at."""

    def __init__(self, settings: Settings, on_refused: IntegrityListener | None = None) -> None:
        self.settings = settings
        self.on_refused = on_refused
        self._experiment_id: str | None = None

    def _mlflow(self) -> Any:
        # MLflow is slow to import; only processes that train or load models pay for it.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow

        mlflow.set_tracking_uri(self.settings.mlflow_tracking_uri)
        mlflow.set_registry_uri(self.settings.mlflow_registry_uri)
        return mlflow

    def warm(self) -> None:
        """MLflow builds its tracking and registry stores (an engine and its schema check: half a second) on
        their first use: here, not in a job."""
        mlflow = self._mlflow()
        mlflow.MlflowClient().search_registered_models(max_results=1)

    def initialize(self) -> str:
        """Create the tracking database and mlsvc's experiment if they are not there yet."""
        if self._experiment_id is None:
            mlflow = self._mlflow()
            client = mlflow.MlflowClient()
            found = client.get_experiment_by_name(EXPERIMENT)
            if found is None:
                try:
                    self._experiment_id = client.create_experiment(
                        EXPERIMENT, artifact_location=self.settings.mlflow_artifact_root
                    )
                except mlflow.exceptions.MlflowException:
                    # Another process created it first.
                    self._experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
            else:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def log_model(
        self,
        name: str,
        pipeline: Any,
        input_example: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        leaderboard: list[dict[str, Any]],
        tags: dict[str, str],
    ) -> RegisteredVersion:
        """Log the fitted pipeline with its signature in a run (candidates as child runs) and register it
        as the next version of ``name``."""
        mlflow = self._mlflow()
        from mlflow.models import infer_signature

        experiment_id = self.initialize()
        model_signature = infer_signature(input_example, pipeline.predict(input_example))
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-train", tags=tags) as run:
            mlflow.log_params({k: _short(v) for k, v in params.items()})
            mlflow.log_metrics({k: v for k, v in metrics.items() if _finite(v)})
            for row in leaderboard:
                if row.get("validation_score") is None:
                    continue  # a candidate the budget left out has nothing to log
                with mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=row["candidate"],
                    nested=True,
                    tags={"mlsvc.status": row["status"], "mlsvc.family": row["family"]},
                ):
                    mlflow.log_params({k: _short(v) for k, v in row["params"].items()})
                    figures = {
                        "validation_score": row["validation_score"],
                        "fit_time_s": row["fit_time_s"],
                        "predict_time_s": row["predict_time_s"],
                        "rows": row["rows"],
                    }
                    mlflow.log_metrics({k: float(v) for k, v in figures.items() if _finite(v)})
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "leaderboard.json"
                path.write_text(json.dumps(leaderboard, indent=2, default=str))
                mlflow.log_artifact(str(path))
            digests = self._log_files(pipeline, model_signature, input_example)
        registered = mlflow.register_model(f"runs:/{run.info.run_id}/{MODEL_DIR}", name)
        version = int(registered.version)
        model_uri = f"models:/{name}/{version}"
        seal = signature(self.settings.secret_key, model_uri, digests)
        return RegisteredVersion(run.info.run_id, version, model_uri, digests, seal)

    def _log_files(self, pipeline: Any, model_signature: Any, input_example: pd.DataFrame) -> dict[str, str]:
        """Save the model in skops' format on local disk, take every file's digest, then upload those very files
        (so the digests are of what this process wrote, not of what the store holds afterwards)."""
        import sklearn
        import skops
        from mlflow import sklearn as mlflow_sklearn

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / MODEL_DIR
            mlflow_sklearn.save_model(
                pipeline,
                str(local),
                signature=model_signature,
                input_example=input_example.head(3),
                serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=list(TRUSTED_TYPES),
                # Naming the requirements skips MLflow's inference, which re-imports the model in a subprocess.
                pip_requirements=[
                    f"scikit-learn=={sklearn.__version__}",
                    f"pandas=={pd.__version__}",
                    f"skops=={skops.__version__}",
                ],
            )
            digests = tree_digests(local)
            self._mlflow().log_artifacts(str(local), artifact_path=MODEL_DIR)
        return digests

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._mlflow().MlflowClient().set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._mlflow().MlflowClient().delete_registered_model_alias(name, alias)

    def discard_versions(self, name: str, model_id: str) -> list[int]:
        if "'" in model_id:  # ids follow ID_PATTERN, which has no quote; a filter string cannot escape one
            raise ValueError(f"not a model id: {model_id!r}")
        client = self._mlflow().MlflowClient()
        deleted: list[int] = []
        for run in client.search_runs([self.initialize()], filter_string=f"tags.`{MODEL_ID_TAG}` = '{model_id}'"):
            for found in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
                if found.name == name:
                    client.delete_model_version(name, found.version)
                    deleted.append(int(found.version))
            children = client.search_runs(
                [self.initialize()], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
            )
            for child in children:
                client.delete_run(child.info.run_id)
            client.delete_run(run.info.run_id)
        if deleted:
            log.info("deleted version(s) %s of %s, registered for model %s", deleted, name, model_id)
        return sorted(deleted)

    def load(self, ref: ArtifactRef) -> Any:
        """The fitted model of a registered version: its files are downloaded, checked against the digests
        recorded at registration, and only then read, by skops with mlsvc's explicit list of trusted types."""
        with tempfile.TemporaryDirectory() as tmp:
            return self._read(ref, self._verified_copy(ref, Path(tmp)) / MODEL_FILE)

    def verify(self, ref: ArtifactRef) -> None:
        """Check a version's stored files against their digests without reading them as a model."""
        with tempfile.TemporaryDirectory() as tmp:
            self._verified_copy(ref, Path(tmp))

    def _verified_copy(self, ref: ArtifactRef, into: Path) -> Path:
        """The version's files downloaded into ``into``, once each matches its digest (else the load is refused)."""
        mlflow = self._mlflow()
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.model_uri, dst_path=str(into)))
        stored = {name: digest for name, digest in tree_digests(local).items() if name != DOWNLOAD_NOTE}
        found = problems(self.settings.secret_key, ref.model_uri, ref.digests, ref.signature, stored)
        if found:
            raise self._refuse(ref, found)
        return local

    def _read(self, ref: ArtifactRef, path: Path) -> Any:
        import skops.io

        try:
            return skops.io.load(path, trusted=list(TRUSTED_TYPES))
        except skops.io.exceptions.UntrustedTypesFoundException as exc:
            raise self._refuse(ref, [f"{MODEL_FILE} holds types outside mlsvc's trusted list ({exc})"]) from None

    def _refuse(self, ref: ArtifactRef, found: list[str]) -> MlsvcError:
        """Log, tell the listener (the deployment's count), and build the error; nothing was deserialized."""
        log.error("refused to load %s from %s: %s", ref.label, ref.model_uri, "; ".join(found))
        if self.on_refused is not None:
            try:
                self.on_refused(ref, found)
            except Exception:  # recording the refusal must not hide it
                log.warning("could not record the refused load of %s", ref.label, exc_info=True)
        return MlsvcError(
            ErrorCode.ARTIFACT_INTEGRITY,
            f"{ref.label} was not loaded: {'; '.join(found)}. Its stored files are not the ones registered; "
            "restore them from a backup or train the model again.",
            {"model_uri": ref.model_uri, "problems": found},
        )


def _short(value: Any) -> str:
    """MLflow caps a parameter value's length."""
    return str(value)[:500]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")
