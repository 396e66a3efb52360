"""MLflow tracking that never stops training: a store that fails warns once and goes quiet."""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path

from th1nker.io import file_digest

try:
    import fcntl  # POSIX file locks (store_lock)
except ImportError:  # Windows
    fcntl = None

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(configured: str | None) -> str:
    """The recipe's URI, else $MLFLOW_TRACKING_URI, else a local SQLite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


@contextmanager
def store_lock(uri: str):
    """For a SQLite store, hold an exclusive lock on `<database>.lock` beside it: MLflow creates and migrates a
    fresh database at its first use, and processes that start together (a sweep) corrupt each other's
    migration ("table _alembic_tmp_tags already exists"). Other stores, or no `fcntl` (Windows): no lock."""
    if fcntl is None or not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    try:
        handle = open(database.with_name(database.name + ".lock"), "a")
    except OSError:  # e.g. no such folder: MLflow reports the store's own error
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# variables that would point git at another repository than the folder it is asked about
GIT_REPO_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                 "GIT_NAMESPACE")


def git_tags(folder: Path) -> dict[str, str]:
    """`git_commit` and `git_dirty` of the git repository that holds `folder`, or `git_commit_missing_reason`."""
    env = {k: v for k, v in os.environ.items() if k not in GIT_REPO_VARS}

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, env=env)

    try:
        head = git("rev-parse", "--verify", "--quiet", "HEAD")
        if head.returncode != 0:
            top = git("rev-parse", "--show-toplevel")
            reason = (f"the git repository {top.stdout.strip()} has no commit yet" if top.returncode == 0 else
                      f"no git repository holds {folder} ({top.stderr.strip() or 'git failed'})")
            return {"git_commit_missing_reason": reason}
        status = git("status", "--porcelain")
    except FileNotFoundError:
        return {"git_commit_missing_reason": "git is not installed"}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"git_commit_missing_reason": f"git failed in {folder}: {e}"}
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return {"git_commit": head.stdout.strip(), "git_dirty": str(dirty).lower()}


ACCURACY_METRIC = re.compile(r"eval_acc_d(\d+)_s(\d+)")


def accuracy_metric(difficulty, steps) -> str:
    """The metric name of the accuracy at one difficulty after a number of thinking steps: eval_acc_d24_s20."""
    return f"eval_acc_d{difficulty}_s{steps}"


def accuracy_metrics(accuracy: dict) -> dict[str, float]:
    """{difficulty: {steps: acc}} as metrics, logged at the final update (MLflow's step is always the update)."""
    return {accuracy_metric(d, s): acc for d, row in accuracy.items() for s, acc in row.items()}


def accuracy_table(accuracy: dict) -> dict[str, list]:
    """{difficulty: {steps: acc}} as the columns of a table: one row per difficulty and number of steps."""
    rows = [(int(d), int(s), acc) for d, row in accuracy.items() for s, acc in row.items()]
    return {name: [r[i] for r in rows] for i, name in enumerate(("difficulty", "thinking_steps", "accuracy"))}


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
        self.experiment_id: str | None = None
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
            with store_lock(self.uri):  # creating the store or the experiment is not safe to do concurrently
                mlflow.set_experiment(self.experiment)
                run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
            if run_id is None:
                mlflow.log_params(flatten(params))
                mlflow.set_tags({k: v for k, v in tags.items() if v is not None})
            self.experiment_id = run.info.experiment_id
            return run.info.run_id

        self.run_id = self._call(begin)

    def ui_link(self) -> str | None:
        """How to open this run in the MLflow UI's training view (MLflow 3 otherwise opens a GenAI view)."""
        if self.run_id is None:
            return None
        page = f"#/experiments/{self.experiment_id}/runs/{self.run_id}?workflowType=machine_learning"
        if self.uri.startswith("http"):
            return f"{self.uri.rstrip('/')}/{page}"
        return f"mlflow ui --backend-store-uri {self.uri}, then open http://127.0.0.1:5000/{page}"

    def metrics(self, values: dict[str, float], step: int) -> None:
        import mlflow

        self._call(mlflow.log_metrics, values, step=step)

    def table(self, columns: dict[str, list], artifact_file: str) -> None:
        """A table artifact (column -> values), stored as mlflow.log_table stores it (JSON)."""
        import mlflow

        self._call(mlflow.log_table, columns, artifact_file)

    def dataset(self, path: Path, context: str) -> None:
        """Link the run to a data file: its name, absolute path and md5 (the version DVC tracks)."""
        import mlflow
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource

        path = Path(path).resolve()

        def log():
            source = LocalArtifactDatasetSource(str(path))
            md5 = file_digest(path, "md5")  # the hash DVC 3 records for the file in dvc.lock and .dvc files
            mlflow.log_input(MetaDataset(source, name=path.name, digest=md5), context=context)

        self._call(log)

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
