"""Benchmark the web process: live pushes to 100 sockets, and the history API.

One real ``daphne cpusched.asgi:application`` subprocess with a throwaway
data directory, authentication on (the clients use an API key):

1. **Live push.** This script plays the scheduler: it rewrites the
   live-state row once a second with a new CPU value. ``--clients`` raw
   WebSocket clients (default 100) connect to ``/ws/monitoring``; after a
   warm-up, the daphne process's CPU is read from ``/proc/<pid>/stat``
   (utime + stime) over ``--seconds`` seconds. Targets: under 5 % of one
   core, and every client receives every push (the same sequence of live
   states as every other client, one per ``server.ws_push_interval``). Also
   reported: how many of the scheduler's writes the pushes carried (the
   broadcaster reads once per interval on its own clock, so a write can be
   read twice or skipped when the two clocks meet), and the resident memory
   of daphne before and after, with one extra client that connects and
   never reads (a stalled client: memory must stay flat).
2. **History.** 86,400 one-second samples (24 h) are inserted, then
   ``GET /api/monitoring/history?hours=24`` (automatic resolution, 720
   points) and ``...&resolution=60&per_page=1440`` are timed over HTTP
   (``--requests`` each). Target: under 100 ms. The server's own CPU per
   request (from /proc) is reported too: the machine may be shared, and
   wall time then includes waiting for a core.

Usage::

    .venv/bin/python bench/bench_web.py [--clients 100] [--seconds 60] [--write]

``--write`` replaces the "Web" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import benchdoc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Web"
TICK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 5
HOST = "127.0.0.1"


# -- the daphne process ---------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_daphne(port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        HOST,
        "-p",
        str(port),
        "cpusched.asgi:application",
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("daphne did not start listening within 30 s")


# -- Django, for writing the rows the scheduler would write -----------------------


def setup_django(data: str) -> str:
    """Migrate a fresh database; return an API key's secret."""
    os.environ["CPUSCHED_DATA_DIR"] = data
    os.environ["CPUSCHED_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpusched.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from cpusched.apikeys import create_key

    call_command("migrate", verbosity=0)
    user = User.objects.create_superuser("bench", "bench@example.com", "pw-bench-1")
    return create_key(user, "bench")[1]


class FakeScheduler(threading.Thread):
    """Rewrites the live-state row once a second with a new CPU value."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.written: list[float] = []

    def run(self) -> None:
        from django.db import connection
        from django.utils import timezone

        from monitoring.models import LiveState

        step = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            step += 1
            cpu = round(step * 0.01, 2)
            LiveState.objects.update_or_create(
                id=1,
                defaults={
                    "updated_at": timezone.now(),
                    "data": {"cpu_usage": cpu, "cap": 80.0, "avg_mean": 20.0},
                },
            )
            self.written.append(cpu)
            next_at += 1.0
            self.stopping.wait(max(0.0, next_at - time.monotonic()))
        connection.close()


def insert_day_of_samples() -> tuple[float, datetime]:
    """86,400 one-second samples ending now; returns (seconds taken, end)."""
    from monitoring.models import Sample

    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=1)
    started = time.monotonic()
    rows = (
        Sample(
            timestamp=start + timedelta(seconds=i),
            cpu_usage=random.uniform(0, 100),
            memory_usage=50.0,
            cpu_limit=60.0,
            is_peak=False,
        )
        for i in range(86400)
    )
    Sample.objects.bulk_create(rows, batch_size=5000)
    return time.monotonic() - started, end


# -- a minimal WebSocket client -----------------------------------------------------


class Client:
    """RFC 6455 client: handshake, unmasked server frames, masked pongs."""

    def __init__(self, port: int, secret: str, read: bool = True):
        self.port = port
        self.secret = secret
        self.read = read
        self.values: list[float] = []
        self.stamps: list[str] = []
        self.closed = False
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        if not self.read:
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/monitoring HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://{HOST}:{self.port}\r\nX-API-Key: {self.secret}\r\n\r\n"
        )
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake refused: {head[:80]!r}")

    async def listen(self) -> None:
        assert self.reader is not None
        try:
            while True:
                opcode, payload = await self._frame()
                if opcode == 1:
                    data = json.loads(payload)["data"]
                    self.values.append(data["cpu_usage"])
                    self.stamps.append(data["timestamp"])
                elif opcode == 9:
                    self._send(10, payload)
                elif opcode == 8:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.closed = True

    async def _frame(self) -> tuple[int, bytes]:
        assert self.reader is not None
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    def _send(self, opcode: int, payload: bytes) -> None:
        assert self.writer is not None
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def live_push(port: int, secret: str, clients: int, seconds: int) -> dict:
    pid = SERVER.pid
    idle_rss = rss_mb(pid)
    sockets = [Client(port, secret) for _ in range(clients)]
    for client in sockets:
        await client.connect()
    tasks = [asyncio.create_task(client.listen()) for client in sockets]
    stalled = Client(port, secret, read=False)
    await stalled.connect()

    await asyncio.sleep(WARMUP_S)
    for client in sockets:
        client.values.clear()
        client.stamps.clear()
    written_before = len(SCHEDULER.written)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    rss_before = rss_mb(pid)
    await asyncio.sleep(seconds)
    cpu_after, wall_after = cpu_seconds(pid), time.monotonic()
    rss_after = rss_mb(pid)
    written = SCHEDULER.written[written_before:]

    for client in sockets:
        client.close()
    stalled.close()
    for task in tasks:
        task.cancel()
    return summarize(
        sockets, written, cpu_after - cpu_before, wall_after - wall_before
    ) | {
        "idle_rss_mb": idle_rss,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
    }


def summarize(
    sockets: list[Client], written: list, cpu_s: float, wall_s: float
) -> dict:
    # Compare the pushes each client got over the span all of them cover.
    common = set.intersection(*(set(c.stamps) for c in sockets))
    first, last = min(common), max(common)
    sequences = [[s for s in c.stamps if first <= s <= last] for c in sockets]
    received = {v for c in sockets for v in c.values}
    return {
        "clients": len(sockets),
        "cpu_percent": 100 * cpu_s / wall_s,
        "seconds": wall_s,
        "pushes": len(sequences[0]),
        "identical": all(seq == sequences[0] for seq in sequences),
        "closed": sum(c.closed for c in sockets),
        "carried": len(received & set(written)) / max(1, len(written)),
        "written": len(written),
    }


# -- history ------------------------------------------------------------------------


HISTORY_QUERIES = ("hours=24", "hours=24&resolution=60&per_page=1440")


def allow_sockets(count: int) -> None:
    """Room for the clients and the stalled one (the default is 100)."""
    from cpusched import config

    config.apply({"server.ws_max_connections": count}, user="bench")


def set_cache(enabled: bool) -> None:
    """Switch the history cache in the server (it rereads within a second)."""
    from cpusched import config

    config.apply({"performance.cache_enabled": enabled}, user="bench")
    time.sleep(1.5)


def time_history(
    port: int, secret: str, query: str, requests: int, cached: bool
) -> dict:
    set_cache(cached)
    url = f"http://{HOST}:{port}/api/monitoring/history?{query}"
    request = urllib.request.Request(url, headers={"X-API-Key": secret})
    with urllib.request.urlopen(request) as response:  # warm-up
        points = len(json.load(response)["data"])
    walls = []
    cpu_before = cpu_seconds(SERVER.pid)
    for _ in range(requests):
        started = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            response.read()
        walls.append(time.perf_counter() - started)
    cpu_ms = 1000 * (cpu_seconds(SERVER.pid) - cpu_before) / requests
    walls.sort()
    return {
        "query": query,
        "cache": "on" if cached else "off",
        "points": points,
        "median_ms": 1000 * statistics.median(walls),
        "p95_ms": 1000 * walls[int(0.95 * (len(walls) - 1))],
        "min_ms": 1000 * walls[0],
        "server_cpu_ms": cpu_ms,
    }


# -- report -------------------------------------------------------------------------


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def report(push: dict, history: list[dict], insert_s: float, load: str) -> str:
    ok_cpu = "yes" if push["cpu_percent"] < 5 else "**no**"
    ok_all = "yes" if push["identical"] and not push["closed"] else "**no**"
    lines = [
        SECTION,
        "",
        f"`bench/bench_web.py`, {datetime.now(UTC):%Y-%m-%d}. One daphne process,",
        f"authentication on. Machine load during the run: {load}.",
        "",
        "| live push | value | target | met |",
        "|---|---|---|---|",
        f"| WebSocket clients | {push['clients']} (+1 stalled) | 100 | |",
        f"| daphne CPU over {push['seconds']:.0f} s | {push['cpu_percent']:.2f} % "
        f"of one core | < 5 % | {ok_cpu} |",
        f"| pushes per client | {push['pushes']}, identical for all: "
        f"{push['identical']}, dropped sockets: {push['closed']} | every client "
        f"every push | {ok_all} |",
        f"| scheduler writes carried | {100 * push['carried']:.1f} % of "
        f"{push['written']} | | |",
        f"| daphne RSS idle / before / after | {push['idle_rss_mb']:.1f} / "
        f"{push['rss_before_mb']:.1f} / {push['rss_after_mb']:.1f} MB | flat | |",
        "",
        f"History: 86,400 one-second samples inserted in {insert_s:.1f} s.",
        "",
        "| history query | cache | points | median | p95 | min | server CPU | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in history:
        met = "yes" if row["median_ms"] < 100 else "**no**"
        lines.append(
            f"| `{row['query']}` | {row['cache']} | {row['points']} | "
            f"{row['median_ms']:.1f} ms | "
            f"{row['p95_ms']:.1f} ms | {row['min_ms']:.1f} ms | "
            f"{row['server_cpu_ms']:.1f} ms | {met} |"
        )
    lines += [
        "",
        "Server CPU is daphne's utime + stime per request: the time a request",
        "costs on an idle core. On a shared machine the wall times include",
        "waiting for a core. With the cache off every request aggregates all",
        "86,400 rows; with it on (the default) settled one-hour chunks are",
        "reused and only the newest chunk is aggregated again.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    benchdoc.write_section(SECTION, text, DOC)


SERVER: subprocess.Popen
SCHEDULER: FakeScheduler


def main() -> None:
    global SERVER, SCHEDULER

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-web-") as data:
        secret = setup_django(data)
        allow_sockets(args.clients + 1)
        SCHEDULER = FakeScheduler()
        SCHEDULER.start()
        port = free_port()
        SERVER = start_daphne(port)
        try:
            load_before = os.getloadavg()[0]
            push = asyncio.run(live_push(port, secret, args.clients, args.seconds))
            SCHEDULER.stopping.set()
            insert_s, _ = insert_day_of_samples()
            history = [
                time_history(port, secret, query, args.requests, cached)
                for cached in (False, True)
                for query in HISTORY_QUERIES
            ]
            load = f"{load_before:.2f} before, " + machine_load() + " after"
        finally:
            SCHEDULER.stopping.set()
            SERVER.terminate()
            SERVER.wait(timeout=10)

    text = report(push, history, insert_s, load)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
