"""The Python worker and enqueue against real hubs and Redis (docs/jobs.md)."""

from __future__ import annotations

import asyncio

import pytest

from relay_hub import Queue

from conftest import SocketIo, Ws, start_worker

pytestmark = pytest.mark.asyncio


async def text_of(ws: Ws, job_id: str) -> tuple:
    """Collects a job's chunks until its ai-result; returns (text, result, attempts seen)."""
    text, seq, attempts = "", 0, []
    while True:
        f = await ws.recv_type(["ai-chunk", "ai-result", "job-state"])
        d = f["data"]
        if d["jobId"] != job_id:
            continue
        if f["type"] == "job-state":
            if d["state"] == "running":
                attempts.append(d["attempt"])
                text, seq = "", d["seq"]  # a new attempt streams from the start
            continue
        if f["type"] == "ai-result":
            return text, d, attempts
        assert d["seq"] == seq + 1, f
        seq, text = d["seq"], text + d["delta"]


async def wait_advertised(queue: Queue, job_type: str) -> None:
    for _ in range(200):
        if await queue.redis.zscore(f"{queue.prefix}:types", job_type) is not None:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the worker did not advertise")


async def test_the_example_worker_streams_to_sessions_on_two_hubs(redis_url, hubs, client):
    queue = Queue(client)
    worker = start_worker(redis_url, "py-1")
    try:
        await wait_advertised(queue, "py_story")
        # A native session on one instance, a Socket.IO one on the other.
        one, two = await Ws.connect(hubs[0], "42"), await SocketIo.connect(hubs[1], "42")
        job = await queue.enqueue("py_story", 42, {"words": 12, "delayMs": 5})
        (t1, r1, _), (t2, r2, _) = await asyncio.gather(
            text_of(one, job["id"]), text_of(two, job["id"])
        )
        expected = "once upon a time a small worker streamed its answer to the"
        assert t1 == t2 == expected
        assert r1["status"] == "success" and r1["result"] == {"text": expected}
        assert r1["chunks"] == 12 and r2 == r1
        assert (await queue.enqueue("py_story", 42, {}, job_id=job["id"]))["duplicate"]
    finally:
        worker.kill()
        worker.wait()


async def test_a_killed_workers_job_finishes_on_another_from_the_start(redis_url, hubs, client):
    queue = Queue(client)
    first = start_worker(redis_url, "py-killed")
    second = None
    try:
        await wait_advertised(queue, "py_story")
        ws = await Ws.connect(hubs[0], "7")
        job = await queue.enqueue("py_story", 7, {"words": 30, "delayMs": 20})
        while True:  # mid-stream: a few chunks out
            f = await ws.recv_type(["ai-chunk"])
            if f["data"]["seq"] == 3:
                break
        first.kill()
        first.wait()
        second = start_worker(redis_url, "py-second")
        text, result, attempts = await text_of(ws, job["id"])
        assert attempts == [2]
        assert result["status"] == "success"
        assert text == result["result"]["text"] and len(text.split()) == 30
        state = await queue.status(job["id"])
        assert (
            state["state"] == "done"
            and state["attempts"] == "2"
            and state["worker"] == "py-second"
        )
    finally:
        for w in (first, second):
            if w:
                w.kill()
                w.wait()


async def test_cancel_stops_the_handler_and_nothing_is_recorded(redis_url, hubs, client):
    queue = Queue(client)
    worker = start_worker(redis_url, "py-c")
    try:
        await wait_advertised(queue, "py_story")
        ws = await Ws.connect(hubs[1], "9")
        job = await queue.enqueue("py_story", 9, {"words": 1000, "delayMs": 20})
        await ws.recv_type(["ai-chunk"])
        await ws.send({"type": "cancel-job", "jobId": job["id"], "id": 1})
        got = {}
        while len(got) < 2:  # the reply and the result, in either order
            f = await ws.recv_type(["job-cancel", "ai-result"])
            got[f["type"]] = f
        assert got["job-cancel"]["status"] == "cancelled"
        assert got["ai-result"]["data"]["status"] == "cancelled"
        await asyncio.sleep(0.3)  # the handler, stopped, emits nothing more
        state = await queue.status(job["id"])
        assert state["state"] == "cancelled"
        assert await queue.cancel(job["id"]) == "finished"
        kept = await queue.chunks(job["id"])
        assert len(kept) == int(state["seq"]) < 1000
    finally:
        worker.kill()
        worker.wait()


async def test_enqueue_refuses_an_unserved_type_unless_waiting(client, hubs):
    queue = Queue(client)
    with pytest.raises(ValueError, match="no worker handles job type `nobody`"):
        await queue.enqueue("nobody", 1, {})
    assert (await queue.enqueue("nobody", 1, {}, wait_for_worker=True))["status"] == "queued"
