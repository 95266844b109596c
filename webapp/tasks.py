"""The task queue (Huey): sending runs here, off the request path.

SQLite storage under instance/ by default, Redis with TASK_QUEUE_URL=redis://...,
and, for tests only, `immediate` (tasks run inline) or `memory` (kept, never run).
The queue knows nothing of messages: the app factory hands it the functions its
tasks run (Handlers), so services may enqueue without the queue importing them back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handlers:
    """What the tasks run, given by the app factory."""

    dispatch_message: Callable[[int], None]
    recover_stalled: Callable[[int], dict[str, int]]
    confirm_callback: Callable[[dict[str, str]], object]
    forget_expired: Callable[[], dict[str, int]]
    reconcile: Callable[[], dict[str, int]]
    probe_circuit: Callable[[], dict[str, int]]
    refresh_rollups: Callable[[], dict[str, int]]
    # A send to many: one lane of a batch takes its next messages (messages.batches).
    dispatch_batch: Callable[[int, int], None]
    restart_batches: Callable[[], dict[str, int]]
    # Plivo's pace: the sender numbers looked up in Plivo's Number API (at start, then
    # daily), and messages that expired in Plivo's queue sent again once.
    refresh_numbers: Callable[[], dict[str, int]] = lambda: {}
    retry_expired: Callable[[], dict[str, int]] = lambda: {}
    # Replies: a customer's pictures fetched and any automatic answer sent (by the
    # reply's public id), and the sweep that finds what a lost task left waiting.
    after_inbound: Callable[[str], object] = lambda public_id: None
    inbound_waiting: Callable[[], dict[str, int]] = lambda: {}


@dataclass
class TaskQueue:
    huey: Huey
    dispatch: TaskWrapper
    confirm: TaskWrapper
    batch: TaskWrapper
    handlers: Handlers
    inbound: TaskWrapper | None = None


def _make_huey(url: str) -> Huey:
    if url == "immediate":  # tests: tasks run inline
        return MemoryHuey("mms", immediate=True, results=False)
    if url == "memory":  # tests: tasks are kept in memory and never run
        return MemoryHuey("mms", results=False)
    if url.startswith("sqlite:///"):
        return SqliteHuey("mms", filename=url.removeprefix("sqlite:///"), results=False)
    return RedisHuey("mms", url=url, results=False)


def init_app(app: Flask, handlers: Handlers) -> None:
    settings = app.extensions["settings"]
    huey = _make_huey(settings.task_queue_url)

    @huey.task(name="dispatch_message")
    def dispatch(message_id: int) -> None:
        with app.app_context():
            handlers.dispatch_message(message_id)

    @huey.task(name="confirm_callback")
    def confirm(payload: dict[str, str]) -> None:
        with app.app_context():
            handlers.confirm_callback(payload)

    @huey.task(name="dispatch_batch")
    def batch(batch_id: int, lane: int) -> None:
        with app.app_context():
            handlers.dispatch_batch(batch_id, lane)

    @huey.task(name="after_inbound")
    def inbound(public_id: str) -> None:
        with app.app_context():
            handlers.after_inbound(public_id)

    app.extensions["task_queue"] = TaskQueue(huey=huey, dispatch=dispatch, confirm=confirm,
                                             batch=batch, handlers=handlers, inbound=inbound)


def enqueue_dispatch(message_id: int) -> None:
    current_app.extensions["task_queue"].dispatch(message_id)


def enqueue_batch_lane(batch_id: int, lane: int) -> None:
    """One lane of a batch's dispatch: it sends a slice of the batch, then queues itself
    again behind whatever was queued meanwhile (single sends go first)."""
    current_app.extensions["task_queue"].batch(batch_id, lane)


def enqueue_confirmation(callback_payload: dict[str, str]) -> None:
    """Ask Plivo whether a V2-signed callback tells the truth, off the request path."""
    current_app.extensions["task_queue"].confirm(callback_payload)


def enqueue_inbound(public_id: str) -> None:
    """Fetch a customer's pictures and send any automatic answer, off the request path."""
    current_app.extensions["task_queue"].inbound(public_id)


def _sweep_forever(app: Flask, every_seconds: int, lease_seconds: int) -> None:
    handlers = app.extensions["task_queue"].handlers
    first = True
    while True:
        if not first:
            time.sleep(every_seconds)
        first = False
        try:
            with app.app_context():
                counts = handlers.refresh_numbers()
                counts |= handlers.recover_stalled(lease_seconds)
                counts |= handlers.restart_batches()
                counts |= handlers.forget_expired()
                counts |= handlers.probe_circuit()
                counts |= handlers.reconcile()
                counts |= handlers.refresh_rollups()
                counts |= handlers.retry_expired()
                counts |= handlers.inbound_waiting()
        except Exception:  # keep sweeping: a database blip must not end the thread
            log.exception("recovery sweep failed")
            continue
        if any(counts.values()):
            log.warning("recovery sweep: %s", counts)


def run_worker(app: Flask, workers: int) -> None:
    """Run a consumer in this process with `workers` threads, until a signal stops it.

    A sweeper thread also re-queues lost tasks and resolves sends a killed
    worker left open (see messages.dispatch.recover_stalled), lets one message a
    minute through while Plivo refuses the account (messages.circuit), and asks
    Plivo about messages whose callbacks never came (messages.reconcile).
    """
    settings = app.extensions["settings"]
    threading.Thread(target=_sweep_forever, daemon=True, name="recovery-sweep",
                     args=(app, settings.queue_sweep_seconds,
                           settings.queue_lease_seconds)).start()
    huey = app.extensions["task_queue"].huey
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.05, max_delay=0.5)
    consumer.run()
