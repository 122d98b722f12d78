"""A compute backend that does in one process what crossing to Ray workers does to a task.

The fast tests never start Ray; this backend still makes a task's inputs and result travel as
they would (pickled, each task its own copy) and runs the tasks out of order, so code that
only works when everything shares one process fails here too.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

from agent.compute import Progress


class CrossingBackend:
    """What crossing to Ray workers does, in one process: the shared input and every item are
    pickled into each task, the results pickled back, and the tasks run in reverse order."""

    name = "crossing"
    workers = 2

    def __init__(self) -> None:
        self.tasks = 0

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        shared: Any,
        items: Sequence[Any],
        *,
        label: str,
        progress: Progress | None = None,
    ) -> list[Any]:
        blob = pickle.dumps(shared)
        results: dict[int, Any] = {}
        for index in reversed(range(len(items))):
            task_input = pickle.loads(blob), pickle.loads(pickle.dumps(items[index]))
            results[index] = pickle.loads(pickle.dumps(fn(*task_input)))
            self.tasks += 1
            if progress is not None:
                progress(len(results), len(items))
        return [results[index] for index in range(len(items))]
