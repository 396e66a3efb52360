"""`th1nker rl RECIPE --checkpoint DIR`: RL on the probe of a supervised-trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, user_errors) -> None:
    """Add the `rl` command to the th1nker command line."""

    @app.command()
    @user_errors
    def rl(recipe: Path,
           checkpoint: Path = typer.Option(..., help="a supervised run of this recipe (its folder or a checkpoint)"),
           out: Optional[Path] = typer.Option(None, help="run directory (default runs/<name>/rl-<timestamp>)"),
           set_: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe field: --set rl.updates=50")):
        """Teach the probe which block to run next (and when to stop) by RL; writes a checkpoint and metrics.json."""
        from th1nker.rl.run import rl_recipe

        rl_recipe(recipe, checkpoint, set_ or [], out)
