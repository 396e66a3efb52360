"""MLflow tracking that never stops training: a store that fails warns once and goes quiet."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(configured: str | None) -> str:
    """The recipe's URI, else $MLFLOW_TRACKING_URI, else a local SQLite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'} (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:6000]
    return out


class Tracker:
    """One MLflow run (rank 0 only). Every call is a no-op once the store has failed."""

    def __init__(self, enabled: bool, uri: str | None, experiment: str):
        self.enabled = enabled
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.run_id: str | None = None
        self._warned = False

    def _call(self, fn, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # a tracking problem must never end a training run
            self.enabled = False
            if not self._warned:
                self._warned = True
                warnings.warn(f"MLflow tracking at {self.uri} failed ({type(e).__name__}: {e}); "
                              "training goes on without tracking", stacklevel=3)
            return None

    def start(self, run_name: str, params: dict, tags: dict, run_id: str | None = None) -> None:
        if not self.enabled:
            return
        if self.uri.startswith("http"):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        import mlflow

        def begin():
            mlflow.set_tracking_uri(self.uri)
            mlflow.set_experiment(self.experiment)
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
            if run_id is None:
                mlflow.log_params(flatten(params))
                mlflow.set_tags({k: v for k, v in tags.items() if v is not None})
            return run.info.run_id

        self.run_id = self._call(begin)

    def metrics(self, values: dict[str, float], step: int) -> None:
        import mlflow

        self._call(mlflow.log_metrics, values, step=step)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        path = Path(path)
        if path.is_dir():
            self._call(mlflow.log_artifacts, str(path), folder)
        elif path.exists():
            self._call(mlflow.log_artifact, str(path), folder)

    def end(self, status: str = "FINISHED") -> None:
        import mlflow

        if self.run_id is not None:
            self._call(mlflow.end_run, status)
