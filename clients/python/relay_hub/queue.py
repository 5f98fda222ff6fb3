"""The job queue's Redis functions, one method each (``docs/jobs.md``)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Union

import redis.asyncio as aioredis

NAME = re.compile(r"^[A-Za-z0-9:_.\-]{1,128}$")
PRIORITIES = ("high", "normal", "low")
DAY_MS = 24 * 3600 * 1000
LIVE_MS = 30_000
PARKED_MAX = 10_000


class JobCancelled(Exception):
    """The job was cancelled (by its user or the API): stop, record nothing."""


class LeaseLost(Exception):
    """Another worker took the job over: stop, record nothing."""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Queue:
    """The queue under ``prefix`` (``jobs``; ``{jobs}`` on a Redis Cluster).

    ``client`` is a ``redis.asyncio`` client (``Redis`` or ``RedisCluster``).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "jobs",
        state_ttl_ms: int = DAY_MS,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.state_ttl_ms = state_ttl_ms

    async def call(self, function: str, *args: Any) -> Any:
        """``FCALL function 1 <prefix> args...``."""
        return await self.redis.fcall(function, 1, self.prefix, *args)

    async def enqueue(
        self,
        job_type: str,
        user_id: Union[int, str],
        payload: Any,
        *,
        job_id: Optional[str] = None,
        priority: str = "normal",
        wait_for_worker: bool = False,
        **extra: Any,
    ) -> Dict[str, Any]:
        """Queues a job; returns ``{"status": "queued", "id", "workerLive"?, "duplicate"?}``.

        Unless ``wait_for_worker``, a type no worker advertised within a day is refused with
        ``ValueError`` (like ``POST /api/jobs``'s ``no_worker``); ``workerLive`` says whether
        a worker advertised it in the last 30 s.
        """
        if payload is None:
            raise ValueError("payload is required")
        if priority not in PRIORITIES:
            raise ValueError("priority must be high, normal or low")
        job_id = job_id or str(uuid.uuid4())
        if not NAME.match(job_id) or not NAME.match(job_type):
            raise ValueError("ids and types are 1-128 characters of A-Z a-z 0-9 : _ . -")
        job = dict(extra)
        job.update(
            id=job_id,
            type=job_type,
            userId=user_id,
            payload=payload,
            priority=priority,
            timestamp=extra.get("timestamp", int(time.time() * 1000)),
        )
        reply = await self.call(
            "relay_job_enqueue",
            job_id,
            job_type,
            json.dumps(user_id),
            priority,
            json.dumps(job, separators=(",", ":")),
            self.state_ttl_ms,
            LIVE_MS,
            0 if wait_for_worker else DAY_MS,
        )
        kind = _s(reply[0])
        if kind == "unknown":
            known = ", ".join(_s(t) for t in reply[1:]) or "none"
            raise ValueError(f"no worker handles job type `{job_type}` (known types: {known})")
        answer: Dict[str, Any] = {"status": "queued", "id": job_id}
        if kind == "duplicate":
            answer["duplicate"] = True
        else:
            answer["workerLive"] = _s(reply[2]) == "1"
        return answer

    async def cancel(self, job_id: str, user: Optional[str] = None) -> str:
        """Cancels a job: ``cancelled``, ``finished``, ``unknown`` or ``forbidden``."""
        reply = await self.call("relay_job_cancel", job_id, user or "")
        return _s(reply[0])

    async def status(self, job_id: str) -> Optional[Dict[str, str]]:
        """The job's state hash (``state``, ``attempts``, ``result``...), or ``None``."""
        raw = await self.redis.hgetall(f"{self.prefix}:job:{job_id}")
        return {_s(k): _s(v) for k, v in raw.items()} or None

    async def chunks(self, job_id: str, after: int = 0) -> List[str]:
        """The deltas the job's current attempt streamed after seq ``after``, in order."""
        reply = await self.call("relay_job_chunks", job_id, after)
        return [_s(d) for d in reply[3::2]]

    async def advertise(self, types: Sequence[str]) -> None:
        await self.call("relay_job_advertise", DAY_MS, *types)
