"""The task queue (Huey): sending runs here, off the request path.

SQLite storage under instance/ by default, Redis with TASK_QUEUE_URL=redis://...,
and, for tests only, `immediate` (tasks run inline) or `memory` (kept, never run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

log = logging.getLogger(__name__)


@dataclass
class TaskQueue:
    huey: Huey
    dispatch: TaskWrapper


def _make_huey(url: str) -> Huey:
    if url == "immediate":  # tests: tasks run inline
        return MemoryHuey("mms", immediate=True, results=False)
    if url == "memory":  # tests: tasks are kept in memory and never run
        return MemoryHuey("mms", results=False)
    if url.startswith("sqlite:///"):
        return SqliteHuey("mms", filename=url.removeprefix("sqlite:///"), results=False)
    return RedisHuey("mms", url=url, results=False)


def init_app(app: Flask) -> None:
    settings = app.extensions["settings"]
    huey = _make_huey(settings.task_queue_url)

    @huey.task(name="dispatch_message")
    def dispatch(message_id: int) -> None:
        from .messages.service import dispatch_message

        with app.app_context():
            dispatch_message(message_id)

    app.extensions["task_queue"] = TaskQueue(huey=huey, dispatch=dispatch)


def enqueue_dispatch(message_id: int) -> None:
    current_app.extensions["task_queue"].dispatch(message_id)


def run_worker(app: Flask, workers: int) -> None:
    """Run a consumer in this process with `workers` threads, until a signal stops it."""
    huey = app.extensions["task_queue"].huey
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.05, max_delay=0.5)
    consumer.run()
