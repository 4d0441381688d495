"""How a wait shows on stderr: a rich progress bar with the resource's message on a terminal, plain lines in a log.

A log (CI, a pipe, a file) gets a line when the status changes or the progress passes another tenth, and now and
then when only the message changed, so a long wait is neither silent nor chatty; the last state seen (COMPLETED,
FAILED…) always has its line, with its message."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Protocol

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from mlsvc.resources import Resource, Status


class WaitDisplay(Protocol):
    def show(self, resource: Resource) -> None: ...

    def close(self) -> None: ...


def open_display(started: float) -> WaitDisplay:
    """The display for stderr as it is now: a bar where a person watches (a terminal, a notebook), lines where a
    log records (rich's reading of it: ``TTY_INTERACTIVE=0`` asks for lines on a terminal too)."""
    console = Console(stderr=True)
    return _Bar(console) if console.is_interactive or console.is_jupyter else _Lines(started)


def shown_progress(resource: Resource) -> float:
    """A COMPLETED resource is done, whatever its last progress report said."""
    return 1.0 if Status(resource.status) == Status.COMPLETED else resource.progress


def state_line(resource: Resource, elapsed_s: float) -> str:
    """``ml-1a2b INPROGRESS 40% (12 s): 12 candidates validated (rung 2); best BinaryAUC 0.8435 (mlp#1)``."""
    line = f"{resource.id} {Status(resource.status).value} {shown_progress(resource):.0%} ({elapsed_s:.0f} s)"
    return f"{line}: {resource.message}" if resource.message else line


class _Lines:
    """Plain lines on stderr: one when the status changes or the progress reaches another tenth, and one when only
    the message changed if the last line is ``MESSAGE_EVERY_S`` old (a search reports every candidate)."""

    MESSAGE_EVERY_S = 30.0

    def __init__(self, started: float) -> None:
        self._started = started
        self._milestone: tuple[str, int] | None = None
        self._message = ""
        self._printed_at = -float("inf")

    def show(self, resource: Resource) -> None:
        now = time.monotonic()
        milestone = (str(resource.status), int(shown_progress(resource) * 10))
        news = resource.message != self._message and now - self._printed_at >= self.MESSAGE_EVERY_S
        if milestone == self._milestone and not news:
            return
        self._milestone, self._message, self._printed_at = milestone, resource.message, now
        print(state_line(resource, now - self._started), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _MessageProgress(Progress):
    """rich's bar with each task's message on the line under it, whole, rather than cut to fit beside the bar."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.fields.get("message"):
                yield Text(f"  {task.fields['message']}", style="dim")


class _Bar:
    def __init__(self, console: Console) -> None:
        self._progress = _MessageProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID = self._progress.add_task("waiting …", total=1.0, message="")
        self._progress.start()

    def show(self, resource: Resource) -> None:
        self._progress.update(
            self._task,
            completed=shown_progress(resource),
            description=f"{resource.id} {Status(resource.status).value}",
            message=resource.message,
        )

    def close(self) -> None:
        self._progress.stop()
