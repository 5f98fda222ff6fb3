"""A private redis-server and real relay-hub instances per test, on free ports."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[3]
HUB = os.environ.get("RELAY_HUB_BIN", str(ROOT / "target" / "debug" / "relay-hub"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture
def redis_url():
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    yield f"redis://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


@pytest.fixture
def hubs(redis_url):
    """Two hub instances (dev mode) on the test's Redis; yields their ports."""
    procs, ports = [], []
    for _ in range(2):
        port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "PORT": str(port),
            "HUB_HOST": "127.0.0.1",
            "REDIS_URL": redis_url,
            "HUB_AUTH": "dev",
            "RUST_LOG": "error",
        }
        proc = subprocess.Popen(
            [HUB], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(port, proc)
        procs.append(proc)
        ports.append(port)
    yield ports
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
async def client(redis_url):
    c = aioredis.from_url(redis_url)
    yield c
    await c.aclose()


class Ws:
    """A minimal native WebSocket client of the hub (text frames only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def upgrade(cls, port: int, path: str) -> "Ws":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    @classmethod
    async def connect(cls, port: int, user: str) -> "Ws":
        ws = await cls.upgrade(port, f"/ws?userId={user}")
        assert (await ws.recv())["type"] == "connected"
        return ws

    async def send(self, frame: Dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        head = bytes([0x81]) + (
            bytes([0x80 | len(data)])
            if len(data) < 126
            else bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
        )
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        await self.writer.drain()

    async def recv_text(self) -> str:
        while True:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 10)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(n)
            if b0 & 0x0F == 1:
                return payload.decode()

    async def recv(self) -> Dict[str, Any]:
        return json.loads(await self.recv_text())

    async def recv_type(self, kinds: List[str]) -> Dict[str, Any]:
        """The next frame of one of `kinds`, skipping others."""
        while True:
            frame = await self.recv()
            if frame["type"] in kinds:
                return frame

    def close(self) -> None:
        self.writer.close()


class SocketIo(Ws):
    """A minimal Socket.IO client of the hub over a WebSocket (Engine.IO 4): each event
    `42["name",data]` comes out of `recv` as `{"type": name, "data": data}`, as native frames
    do; Engine.IO pings are answered."""

    @classmethod
    async def connect(cls, port: int, user: str) -> "SocketIo":
        ws = await cls.upgrade(port, "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.recv_text()).startswith("0"), "Engine.IO open"
        await ws.send_text("40" + json.dumps({"userId": user}))
        reply = await ws.recv_text()
        assert reply.startswith("40{"), reply
        return ws

    async def recv(self) -> Dict[str, Any]:
        while True:
            packet = await self.recv_text()
            if packet == "2":
                await self.send_text("3")
            elif packet.startswith("42"):
                name, data = json.loads(packet[2:])[:2]
                return {"type": name, "data": data}


def start_worker(redis_url: str, name: str) -> subprocess.Popen:
    """The example streaming worker, with a short visibility timeout for the takeover test."""
    code = (
        "import asyncio, os, sys; sys.path.insert(0, os.environ['EXAMPLES']);"
        "import streaming_worker as ex; import redis.asyncio as r;"
        "from relay_hub import Queue, Worker\n"
        "async def main():\n"
        "    queue = Queue(r.from_url(os.environ['REDIS_URL']))\n"
        "    w = Worker(queue, consumer=os.environ['WORKER_ID'], visibility_ms=600)\n"
        "    w.handle('py_story', ex.story)\n"
        "    await w.run()\n"
        "asyncio.run(main())\n"
    )
    env = dict(
        os.environ,
        REDIS_URL=redis_url,
        WORKER_ID=name,
        EXAMPLES=str(Path(__file__).resolve().parents[1] / "examples"),
    )
    return subprocess.Popen([sys.executable, "-c", code], env=env)
