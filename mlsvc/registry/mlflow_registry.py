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
from mlsvc.registry import RegisteredVersion

log = logging.getLogger("mlsvc.registry")
EXPERIMENT = "mlsvc"


class MlflowRegistry:
    """The MLflow tracking server and model registry that mlsvc's settings point at."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._experiment_id: str | None = None

    def _mlflow(self) -> Any:
        # MLflow is slow to import; only processes that train or load models pay for it.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow

        mlflow.set_tracking_uri(self.settings.mlflow_tracking_uri)
        mlflow.set_registry_uri(self.settings.mlflow_registry_uri)
        return mlflow

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
        import sklearn
        from mlflow import sklearn as mlflow_sklearn
        from mlflow.models import infer_signature

        experiment_id = self.initialize()
        signature = infer_signature(input_example, pipeline.predict(input_example))
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
            info = mlflow_sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=input_example.head(3),
                registered_model_name=name,
                serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                # Naming the requirements skips MLflow's inference, which re-imports the model in a subprocess.
                pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}"],
            )
        version = int(info.registered_model_version)
        return RegisteredVersion(run.info.run_id, version, f"models:/{name}/{version}")

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._mlflow().MlflowClient().set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._mlflow().MlflowClient().delete_registered_model_alias(name, alias)

    def load(self, model_uri: str) -> Any:
        """The fitted scikit-learn pipeline of a registered version."""
        self._mlflow()
        from mlflow import sklearn as mlflow_sklearn

        return mlflow_sklearn.load_model(model_uri)


def _short(value: Any) -> str:
    """MLflow caps a parameter value's length."""
    return str(value)[:500]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")
