"""The registry plane on MLflow: runs, registered models, versions, aliases, loading; with the pyfunc module MLflow
loads (registry/pyfunc.py), the one importer of mlflow."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mlsvc.config import Settings
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.registry import MODEL_ID_TAG, VERSION_TAG, ArtifactRef, IntegrityListener, RegisteredVersion, VersionRecord
from mlsvc.registry.trusted import TRUSTED_TYPES
from mlsvc.security.integrity import problems, signature, tree_digests

log = logging.getLogger("mlsvc.registry")
EXPERIMENT = "mlsvc"
MODEL_DIR = "model"
MAX_SKIPPED_NUMBERS = 1000  # a name with more failed versions in a row than this keeps MLflow's numbering
# The fitted model in skops' format: what the service reads, and the pyfunc and the sklearn flavor too.
MODEL_FILE = "model.skops"
FIGURES_DIR = "figures"
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

    def log_model(self, name: str, fitted: Any, record: VersionRecord) -> RegisteredVersion:
        """Log the fitted model as MLflow's pyfunc of it (raw records in, mlsvc's answers out) and its sklearn
        flavor, in a run with the parameters, the holdout figures and documents (candidates as child runs), and
        register it as the next version of ``name``."""
        mlflow = self._mlflow()
        experiment_id = self.initialize()
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-train", tags=dict(record.tags)) as run:
            params = {**record.params, **_selected_params(record.leaderboard)}
            mlflow.log_params({k: _short(v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in record.metrics.items() if _finite(v)})
            self._log_candidates(experiment_id, record.leaderboard)
            self._log_documents(record)
            digests = self._log_files(fitted, record)
        tags = {**record.version_tags, **({VERSION_TAG: str(record.version)} if record.version else {})}
        registered = mlflow.register_model(f"runs:/{run.info.run_id}/{MODEL_DIR}", name, tags=tags)
        registered = self._number_as(registered, record.version, tags)
        version = int(registered.version)
        model_uri = f"models:/{name}/{version}"
        seal = signature(self.settings.secret_key, model_uri, digests)
        return RegisteredVersion(run.info.run_id, version, model_uri, digests, seal)

    def _number_as(self, registered: Any, wanted: int | None, tags: Mapping[str, str]) -> Any:
        """MLflow numbers a name's versions itself, one past the highest it ever gave. mlsvc gives the number when a
        model is created, so numbers of versions whose jobs failed before registering would make the two drift:
        MLflow skips them too (a version made and deleted, which MLflow never shows or reuses), so that mlsvc's
        ``churn:N`` is ``models:/churn/N``. When MLflow is already past it (a retried job had registered), the
        version keeps MLflow's number and its VERSION_TAG says which it is."""
        client = self._mlflow().MlflowClient()
        skipped = 0
        while wanted is not None and int(registered.version) < wanted and skipped < MAX_SKIPPED_NUMBERS:
            client.delete_model_version(registered.name, registered.version)
            registered = client.create_model_version(
                registered.name, registered.source, run_id=registered.run_id, tags=dict(tags)
            )
            skipped += 1
        return registered

    def _registry_version(self, name: str, version: int) -> str:
        """MLflow's number for mlsvc's version ``version`` of ``name``: the same one, unless MLflow was past it."""
        client = self._mlflow().MlflowClient()
        try:
            same = client.get_model_version(name, str(version))
            if same.tags.get(VERSION_TAG, str(version)) == str(version):
                return str(version)
        except self._mlflow().exceptions.MlflowException:
            pass  # no such registry version: look for the one tagged with it
        found = client.search_model_versions(f"name = '{name}' and tags.`{VERSION_TAG}` = '{version}'")
        return str(found[0].version) if found else str(version)

    def _log_candidates(self, experiment_id: str, leaderboard: list[dict[str, Any]]) -> None:
        """One child run per candidate that was validated, with its parameters and figures."""
        mlflow = self._mlflow()
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

    def _log_documents(self, record: VersionRecord) -> None:
        """The run's documents in one upload: the leaderboard, the holdout evaluation and each of
        ``record.documents`` as JSON, and the evaluation's figures under figures/."""
        mlflow = self._mlflow()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            documents = {"leaderboard": record.leaderboard, **record.documents}
            if record.evaluation is not None:
                documents["evaluation"] = record.evaluation
                try:
                    from mlsvc.registry.figures import draw

                    draw(record.evaluation, folder / FIGURES_DIR)
                except Exception:  # the figures illustrate the run; a figure that cannot be drawn fails no training
                    log.warning("could not draw the evaluation's figures", exc_info=True)
            for document, value in documents.items():
                (folder / f"{document}.json").write_text(json.dumps(value, indent=2, default=str))
            mlflow.log_artifacts(str(folder))

    def _log_files(self, fitted: Any, record: VersionRecord) -> dict[str, str]:
        """Save the model on local disk (the fitted model in skops' format, the card, the pyfunc's code and
        MLmodel), take every file's digest, then upload those very files (so the digests are of what this process
        wrote, not of what the store holds afterwards)."""
        import skops.io
        from mlflow import pyfunc as mlflow_pyfunc

        from mlsvc.registry import pyfunc

        with tempfile.TemporaryDirectory() as tmp:
            code = Path(tmp) / pyfunc.CODE_FILE
            code.write_text(pyfunc.CODE)
            local = Path(tmp) / MODEL_DIR
            mlflow_pyfunc.save_model(
                str(local),
                python_model=str(code),
                signature=pyfunc.signature(record.card),
                input_example=record.example.head(3),
                # Naming the requirements skips MLflow's inference, which imports the model in a subprocess. The
                # pyfunc also needs mlsvc, which is not on PyPI: a name pip would look up there is not listed.
                pip_requirements=_requirements(),
            )
            skops.io.dump(fitted, local / MODEL_FILE)
            (local / pyfunc.CARD_FILE).write_text(json.dumps(record.card, indent=2, default=str))
            _add_flavors(local)
            digests = tree_digests(local)
            self._mlflow().log_artifacts(str(local), artifact_path=MODEL_DIR)
        return digests

    def annotate(self, name: str, version: int, tags: Mapping[str, str], description: str) -> None:
        """Describe the version, give its run the same description (its note in MLflow's UI), then tag the version,
        in the order of ``tags`` (the status last, so that a reader who sees it sees the rest)."""
        client = self._mlflow().MlflowClient()
        number = self._registry_version(name, version)
        found = client.update_model_version(name, number, description=description)
        client.set_tag(found.run_id, "mlflow.note.content", description)
        for key, value in tags.items():
            client.set_model_version_tag(name, number, key, value)

    def tag_version(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        client = self._mlflow().MlflowClient()
        number = self._registry_version(name, version)
        for key, value in tags.items():
            client.set_model_version_tag(name, number, key, value)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._mlflow().MlflowClient().set_registered_model_alias(name, alias, self._registry_version(name, version))

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


def _requirements() -> list[str]:
    import numpy
    import sklearn
    import skops

    versions = {"scikit-learn": sklearn, "pandas": pd, "numpy": numpy, "skops": skops}
    return [f"{name}=={module.__version__}" for name, module in versions.items()]


def _add_flavors(local: Path) -> None:
    """Point the pyfunc's artifacts at the files beside its MLmodel (MLflow would copy them under artifacts/), and
    add the sklearn flavor over the same skops file, for those who want the fitted pipeline itself."""
    import sklearn
    from mlflow.models import Model

    from mlsvc.registry import pyfunc

    path = str(local / "MLmodel")
    mlmodel = Model.load(path)
    served = mlmodel.flavors["python_function"]
    served["artifacts"] = {pyfunc.PIPELINE: {"path": MODEL_FILE}, pyfunc.CARD: {"path": pyfunc.CARD_FILE}}
    served["model_code_path"] = pyfunc.CODE_FILE  # MLflow records the path it was copied from; it reads the name
    mlmodel.add_flavor(
        "sklearn",
        pickled_model=MODEL_FILE,
        sklearn_version=sklearn.__version__,
        serialization_format="skops",
        code=None,
        skops_trusted_types=list(TRUSTED_TYPES),
    )
    mlmodel.model_size_bytes = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    mlmodel.save(path)


def _selected_params(leaderboard: list[dict[str, Any]]) -> dict[str, Any]:
    """The selected candidate's family and hyperparameters, as the run's ``selected.*`` parameters."""
    row = next((r for r in leaderboard if r.get("selected")), None)
    if row is None:
        return {}
    return {"selected.family": row["family"], **{f"selected.{k}": v for k, v in (row.get("params") or {}).items()}}


def _short(value: Any) -> str:
    """MLflow caps a parameter value's length."""
    return str(value)[:500]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")
