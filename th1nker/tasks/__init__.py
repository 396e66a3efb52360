"""Reasoning tasks generated from a seed, each with a difficulty knob and exact scoring."""

from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec

TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    """Class decorator: make a Task available to recipes as `task.kind: name`."""

    def wrap(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def make_task(config, seed: int = 0) -> Task:
    """The task a recipe's `task` section describes; with `task.data`, examples come from those files."""
    task = TASKS[config.kind](config, seed)
    if getattr(config, "data", None) is None:
        return task
    from th1nker.tasks.files import FileTask

    return FileTask(task, config.data)


from th1nker.tasks import prefix_parity  # noqa: E402,F401  (registers the built-in tasks)
from th1nker.tasks import addition, maze, text_qa  # noqa: E402,F401
from th1nker.tasks import delayed_recall, kv_facts  # noqa: E402,F401
from th1nker.tasks import speak  # noqa: E402,F401
from th1nker.tasks import media_files, omni_qa, scenes, sounds, text_lm  # noqa: E402,F401

__all__ = ["IGNORE", "Batch", "Task", "TaskSpec", "TASKS", "register_task", "make_task"]
