"""Reasoning tasks generated from a seed (or read from files), each with a difficulty knob and exact scoring.

The names are known without importing torch (recipes validate light); a task's module is imported
when `make_task` builds it. Plugins register more with `@register_task("name")`.
"""

from __future__ import annotations

from importlib import import_module

# task name -> the module that defines it (imported by make_task)
BUILTIN_TASKS = {
    "prefix_parity": "prefix_parity", "addition": "addition", "maze": "maze", "text_qa": "text_qa",
    "delayed_recall": "delayed_recall", "kv_facts": "kv_facts", "kv_rule": "kv_facts", "kv_document": "kv_document",
    "speak": "speak", "media_qa": "media_files",
    "omni_qa": "omni_qa", "scene_qa": "scenes", "sound_qa": "sounds", "text_lm": "text_lm",
    "sudoku": "sudoku", "code_qa": "code_qa",
}
TASKS: dict[str, type] = {}  # name -> Task class, filled as task modules are imported


def register_task(name: str):
    """Class decorator: make a Task available to recipes as `task.kind: name`."""

    def wrap(cls):
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def task_names() -> list[str]:
    """Every task a recipe may name, sorted (imports no task module)."""
    return sorted(set(BUILTIN_TASKS) | set(TASKS))


def task_class(name: str) -> type:
    if name not in TASKS and name in BUILTIN_TASKS:
        import_module(f"th1nker.tasks.{BUILTIN_TASKS[name]}")
    return TASKS[name]


def make_task(config, seed: int = 0):
    """The task a recipe's `task` section describes; with `task.data`, examples come from those files."""
    task = task_class(config.kind)(config, seed)
    if getattr(config, "data", None) is None:
        return task
    from th1nker.tasks.files import FileTask

    return FileTask(task, config.data)


def __getattr__(name: str):  # Batch, Task, TaskSpec, IGNORE live in th1nker.tasks.base (torch)
    if name in ("IGNORE", "Batch", "Task", "TaskSpec"):
        return getattr(import_module("th1nker.tasks.base"), name)
    raise AttributeError(f"module 'th1nker.tasks' has no attribute {name!r}")


__all__ = ["IGNORE", "Batch", "Task", "TaskSpec", "TASKS", "register_task", "make_task", "task_names", "task_class"]
