"""Sender threads: where the worker's requests wait for their answers.

    pool = SenderPool(limit=8)
    pool.submit(job)      # runs job() on an idle sender thread, starting one if needed

The worker thread schedules, encodes and settles; only the exchange itself (``Sender.post``)
runs here, at most two requests per (endpoint, key) lane at a time. A collector that
accepts a connection and never answers then holds its lane's sender threads for its
``timeout``, never the worker, so every other lane keeps moving. Threads start on demand,
up to ``limit`` (requests beyond it wait for a free thread), and live as daemons.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .queued import log

SENDER_THREADS = 16  # requests in flight at once: 8 lanes hung at two requests each


class SenderPool:
    def __init__(self, limit: int = SENDER_THREADS, name: str = "aicm-delivery-send") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._limit = limit
        self._name = name
        self._threads = 0
        self._idle = 0  # threads waiting for a job nobody has reserved them for
        self._waiting = 0  # jobs queued while every thread was busy

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, job: Callable[[], None]) -> None:
        start = False
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._threads < self._limit:
                self._threads += 1
                start = True
            else:
                self._waiting += 1
        self._jobs.put(job)
        if start:
            n = self._threads
            threading.Thread(target=self._serve, name=f"{self._name}-{n}", daemon=True).start()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            try:
                job()
            except BaseException:  # a job reports its own failures; never lose the thread
                log.exception("aicm: delivery sender error")
            with self._lock:
                if self._waiting:
                    self._waiting -= 1  # this thread takes the job that waited for one
                else:
                    self._idle += 1
