"""`th1nker runs`: the recent runs of an MLflow experiment side by side, read from the tracking store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from th1nker.errors import Th1nkerError

EXAMPLE = "Example: th1nker runs --experiment th1nker --limit 5"


def register(app: typer.Typer, user_errors) -> None:
    """Add the `runs` command to the th1nker app."""

    @app.command(epilog=EXAMPLE)
    @user_errors
    def runs(experiment: str = typer.Option("th1nker", help="MLflow experiment (a recipe's tracking.experiment)"),
             limit: int = typer.Option(10, min=1, help="how many of the newest runs to show")):
        """Recent runs: recipe, commit, training data, updates, final loss and accuracy at the trained steps.

        The store is $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db (what `th1nker train` writes to).
        """
        from th1nker.train.tracking import tracking_uri

        uri = tracking_uri(None)
        Console().print(runs_table(uri, experiment, fetch_runs(uri, experiment, limit)))


def fetch_runs(uri: str, experiment: str, limit: int) -> list:
    """The newest `limit` runs of `experiment`, newest first; a Th1nkerError names a missing store or experiment."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise Th1nkerError(f"{uri}: no MLflow store there; train a recipe first (th1nker train RECIPE) or set "
                           "MLFLOW_TRACKING_URI to your store")
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = sorted(e.name for e in client.search_experiments())
        raise Th1nkerError(f"--experiment {experiment!r}: no such experiment in {uri} "
                           f"(known: {', '.join(known) or 'none'}); pass one of those names")
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)


def run_row(run) -> tuple[list[str], dict[str, float]]:
    """One run's cells (started, run id, recipe, commit, data, updates, final loss) and its accuracy per difficulty
    at the thinking steps it was trained with."""
    from th1nker.train.tracking import ACCURACY_METRIC

    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    commit = tags.get("git_commit", "")[:8] + ("*" if tags.get("git_dirty") == "true" else "") or "-"
    training = [i.dataset.digest for i in run.inputs.dataset_inputs
                if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags)]
    updates = metrics.get("updates")
    loss = metrics.get("final_loss")
    accuracy = {}
    for name, value in metrics.items():
        match = ACCURACY_METRIC.fullmatch(name)
        if match and match[2] == params.get("schedule.steps"):
            accuracy[match[1]] = value
    started = datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")
    cells = [started, run.info.run_id[:8], params.get("name", "-"), commit,
             training[0][:8] if training else "generated", "-" if updates is None else str(int(updates)),
             "-" if loss is None else f"{loss:.4f}"]
    return cells, accuracy


def runs_table(uri: str, experiment: str, runs: list) -> Table:
    """The runs as a rich table, one accuracy column per difficulty any of them evaluated."""
    rows = [run_row(run) for run in runs]
    difficulties = sorted({d for _, acc in rows for d in acc}, key=int)
    table = Table(title=f"runs of '{experiment}' in {uri} (accuracy at each run's trained thinking steps; * = "
                        "uncommitted changes)")
    for column in ("started", "run id", "recipe", "commit", "train data (md5)", "updates", "final loss"):
        table.add_column(column, no_wrap=column in ("commit", "train data (md5)"))
    for d in difficulties:
        table.add_column(f"acc d{d}", justify="right")
    for cells, acc in rows:
        table.add_row(*cells, *(f"{acc[d]:.3f}" if d in acc else "-" for d in difficulties))
    if not rows:
        table.caption = "no runs yet: th1nker train RECIPE logs one"
    return table
