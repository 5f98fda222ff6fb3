"""An example streaming worker: answers `py_story` jobs token by token.

    REDIS_URL=redis://127.0.0.1:6379 python examples/streaming_worker.py

Enqueue one (a hub must run on the same Redis; it loads the functions):

    curl -X POST localhost:8080/api/jobs -H 'content-type: application/json' \
      -d '{"type":"py_story","userId":42,"payload":{"words":20,"delayMs":50}}'
"""

import asyncio
import os
import signal

import redis.asyncio as aioredis

from relay_hub import Job, Queue, Worker

WORDS = "once upon a time a small worker streamed its answer to the browser".split()


async def story(job: Job):
    """Yields `payload.words` words, one every `payload.delayMs` ms; stops when cancelled."""
    n = int(job.payload.get("words", 10))
    delay = int(job.payload.get("delayMs", 0)) / 1000
    for i in range(n):
        if job.cancelled.is_set():
            return
        yield ("" if i == 0 else " ") + WORDS[i % len(WORDS)]
        await asyncio.sleep(delay)


async def main() -> None:
    client = aioredis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    worker = Worker(Queue(client), consumer=os.environ.get("WORKER_ID"))
    worker.handle("py_story", story)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
