"""How every `th1nker` command reports a user mistake: one message, exit code 2, no traceback."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.text import Text

from th1nker.errors import Th1nkerError

err_console = Console(stderr=True)


def user_errors(fn):
    """Print our errors in one block and exit 2 (no traceback for a user mistake)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Th1nkerError as e:
            err_console.print(f"[bold red]error[/bold red] ({type(e).__name__})")
            err_console.print(Text(str(e)), soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
