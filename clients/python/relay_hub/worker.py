"""A job worker: handlers per job type, leases renewed, chunks streamed, cancellation seen.

A handler is an ``async def handler(job)`` that returns the result (any JSON value), or an
async generator that yields text chunks (each is pushed to the user as an ``ai-chunk``; the
result is then ``{"text": <all chunks>}``). Raise ``JobError(message, permanent=True)`` for a
failure retrying cannot fix; any other exception is retried after a backoff.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Union

from .queue import DAY_MS, PARKED_MAX, JobCancelled, LeaseLost, Queue, _s

log = logging.getLogger("relay_hub")

CHECK_EVERY = 0.05
"""Seconds between the worker's cancellation checks (one call for all its running jobs)."""


class JobError(Exception):
    """A handler failure; ``permanent`` ones are dead-lettered without retries."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Job:
    """A claimed job, as its handler sees it."""

    id: str
    type: str
    user_id: Any
    payload: Any
    priority: str
    attempt: int
    job: Dict[str, Any]
    lease: str
    queue: Queue = field(repr=False)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def emit(self, delta: str) -> int:
        """Streams a chunk to the user; returns its seq. Raises ``JobCancelled`` or
        ``LeaseLost`` when the job is no longer this worker's to run."""
        seq = int(await self.queue.call("relay_job_chunk", self.id, self.lease, delta))
        if seq == -1:
            self.cancelled.set()
            raise JobCancelled(self.id)
        if seq == 0:
            raise LeaseLost(self.id)
        return seq


Handler = Callable[[Job], Union[Awaitable[Any], AsyncIterator[str]]]


class Worker:
    """Runs handlers for job types from ``queue`` until ``stop()``."""

    def __init__(
        self,
        queue: Queue,
        *,
        consumer: Optional[str] = None,
        concurrency: int = 4,
        visibility_ms: int = 30_000,
        max_attempts: int = 3,
        retry_backoff_ms: int = 1_000,
    ) -> None:
        self.queue = queue
        self.consumer = consumer or f"py-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = max(1, concurrency)
        self.visibility_ms = max(30, visibility_ms)
        self.max_attempts = max(1, max_attempts)
        self.retry_backoff_ms = retry_backoff_ms
        self.handlers: Dict[str, Handler] = {}
        self.running: Dict[str, Job] = {}
        self._stopping = asyncio.Event()

    def handle(self, job_type: str, handler: Handler) -> None:
        """Registers the handler of a job type."""
        self.handlers[job_type] = handler

    def stop(self) -> None:
        """Claims nothing more; running jobs are released (given back, not counted)."""
        self._stopping.set()

    async def run(self) -> None:
        """Advertises the types, then claims and runs jobs until ``stop()``."""
        types = sorted(self.handlers)
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set = set()
        background = [
            asyncio.create_task(self._advertise(types)),
            asyncio.create_task(self._watch()),
        ]
        log.info("worker %s taking jobs (%s)", self.consumer, ", ".join(types))
        try:
            while not self._stopping.is_set():
                await slots.acquire()
                if self._stopping.is_set():
                    break
                reply = await self.queue.call(
                    "relay_job_claim",
                    self.consumer,
                    self.visibility_ms,
                    self.max_attempts,
                    self.queue.state_ttl_ms,
                    PARKED_MAX,
                    *types,
                )
                if _s(reply[0]) == "job":
                    job = self._job(reply)
                    task = asyncio.create_task(self._run(job))
                    tasks.add(task)
                    task.add_done_callback(lambda t: (tasks.discard(t), slots.release()))
                    continue
                slots.release()
                await self._wait([_s(m) for m in reply[1:4]])
        finally:
            for job in list(self.running.values()):
                await self.queue.call(
                    "relay_job_release",
                    job.id,
                    job.lease,
                    self.visibility_ms,
                    self.queue.state_ttl_ms,
                )
            for task in tasks:
                task.cancel()
            for task in background:
                task.cancel()
            await self.queue.call("relay_job_retire", self.consumer)

    def _job(self, r: List[Any]) -> Job:
        body = json.loads(_s(r[3]))
        return Job(
            id=_s(r[7]),
            type=_s(r[8]),
            user_id=body.get("userId"),
            payload=body.get("payload"),
            priority=_s(r[1]),
            attempt=int(r[4]),
            job=body,
            lease=_s(r[5]),
            queue=self.queue,
        )

    async def _wait(self, marks: List[str]) -> None:
        """Waits for a new entry in a priority stream (at most a second)."""
        p = self.queue.prefix
        streams = {f"{p}:stream:{prio}": m for prio, m in zip(("high", "normal", "low"), marks)}
        waiter = asyncio.create_task(self.queue.redis.xread(streams, count=1, block=1000))
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not waiter.done():
            waiter.cancel()

    async def _advertise(self, types: List[str]) -> None:
        while True:
            try:
                await self.queue.advertise(types)
            except Exception as e:  # noqa: BLE001 - logged, retried at the next beat
                log.warning("worker %s: advertising: %s", self.consumer, e)
            await asyncio.sleep(5)

    async def _watch(self) -> None:
        """Every 50 ms, asks whether the running jobs were cancelled or taken over."""
        while True:
            await asyncio.sleep(CHECK_EVERY)
            jobs = list(self.running.values())
            if not jobs:
                continue
            args: List[str] = []
            for j in jobs:
                args += [j.id, j.lease]
            try:
                states = await self.queue.redis.fcall_ro(
                    "relay_job_check", 1, self.queue.prefix, *args
                )
            except Exception as e:  # noqa: BLE001 - logged, checked again in 50 ms
                log.warning("worker %s: checking leases: %s", self.consumer, e)
                continue
            for j, state in zip(jobs, states):
                if _s(state) != "running":
                    j.cancelled.set()

    async def _run(self, job: Job) -> None:
        self.running[job.id] = job
        try:
            await self._attempt(job)
        finally:
            self.running.pop(job.id, None)

    async def _attempt(self, job: Job) -> None:
        q, started = self.queue, time.monotonic()
        handler = self.handlers.get(job.type)
        work = asyncio.create_task(self._call(handler, job))
        cancelled = asyncio.create_task(job.cancelled.wait())
        renew = asyncio.create_task(self._renew(job))
        try:
            await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            renew.cancel()
        if not work.done():
            work.cancel()
            log.info("job %s: cancelled or taken over; its handler was stopped", job.id)
            return
        cancelled.cancel()
        err = work.exception()
        if err is None:
            took = int((time.monotonic() - started) * 1000)
            await q.call(
                "relay_job_complete",
                job.id,
                job.lease,
                json.dumps(work.result()),
                took,
                q.state_ttl_ms,
            )
            return
        if isinstance(err, (JobCancelled, LeaseLost)):
            return
        permanent = isinstance(err, JobError) and err.permanent
        backoff = min(self.retry_backoff_ms * 2 ** (job.attempt - 1), self.visibility_ms)
        await q.call(
            "relay_job_fail",
            job.id,
            job.lease,
            str(err) or type(err).__name__,
            1 if permanent else 0,
            self.max_attempts,
            self.visibility_ms,
            backoff,
            q.state_ttl_ms,
        )

    async def _call(self, handler: Optional[Handler], job: Job) -> Any:
        if handler is None:
            raise JobError(f"no handler for job type `{job.type}`")
        out = handler(job)
        if inspect.isasyncgen(out):
            text = []
            async for delta in out:
                await job.emit(delta)
                text.append(delta)
            return {"text": "".join(text)}
        return await out

    async def _renew(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.visibility_ms / 3000)
            state = _s(
                await self.queue.call(
                    "relay_job_renew", job.id, job.lease, self.queue.state_ttl_ms
                )
            )
            if state != "ok":
                job.cancelled.set()
                return


__all__ = ["Job", "JobError", "Worker", "DAY_MS"]
