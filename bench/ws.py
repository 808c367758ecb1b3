"""Websocket fan-out benchmark: N sockets on one export's `/ws/exports/{id}`, K published messages.

Against a real `vexport serve --no-worker` on loopback: creates one (pending) export, opens
`--sockets` websockets to it (`?token=`), waits until every socket has its snapshot, then publishes
`--messages` progress messages `--interval-ms` apart with `gpu_worker.progress.publish_progress`
on the server's Redis, as a worker would. Message k carries `frames_done = k`; the publisher keeps
k -> perf_counter_ns just before the publish, so publish->receipt latency is measured per socket per
message on one monotonic clock (receipt = when `recv()` hands the message to the socket's task).
Reports connect time for all sockets, latency p50/p99/max, messages lost; goal p99 < 100 ms.
Finally publishes a terminal (completed) message and checks that every socket closes with 1000.

    uv run python bench/ws.py [--quick] [--json PATH] [--sockets N] [--messages K] [--interval-ms MS]

The server shares one Redis pub/sub connection among all its sockets (backend.domain.exports.fanout),
so N sockets mean about N more file descriptors in the server and no more Redis clients; the report
shows both. Sockets that fail
to connect are counted and the run goes on with the rest (the largest N that works).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from _server import (
    BenchServer,
    bench_server,
    cpu_seconds,
    environment,
    percentile,
    process_stats,
    raise_nofile,
    table,
    write_json,
)
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gpu_worker.contract import ExportStatus, Phase, ProgressMessage
from gpu_worker.progress import publish_progress

P99_GOAL_MS = 100.0
CONNECT_PARALLEL = 64
CONNECT_TIMEOUT_S = 60.0
SNAPSHOT_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 30.0
TERMINAL_MARK = -1


@dataclass(slots=True)
class Socket:
    """One client's view: when it connected, what it received (k, receipt ns), how it closed."""

    connect_s: float | None = None
    snapshot: bool = False
    received: list[tuple[int, int]] = field(default_factory=list)
    terminal: bool = False
    close_code: int | None = None
    error: str | None = None


class Countdown:
    """Set once `expect(n)` was called and `tick()` has been called n times (in any order)."""

    def __init__(self) -> None:
        self._left: int | None = None
        self._ticks = 0
        self._event = asyncio.Event()

    def expect(self, count: int) -> None:
        self._left = count
        self._check()

    def tick(self) -> None:
        self._ticks += 1
        self._check()

    def _check(self) -> None:
        if self._left is not None and self._ticks >= self._left:
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass(slots=True)
class Run:
    sockets: list[Socket]
    sent_ns: dict[int, int]
    connect_all_s: float
    server_idle: dict[str, int]
    server_connected: dict[str, int]
    redis_clients_idle: int | None
    redis_clients_connected: int | None
    publish_cpu: dict[str, float]
    closed_within_s: float


async def follow(
    server: BenchServer,
    export_id: str,
    state: Socket,
    gate: asyncio.Semaphore,
    snapshots: asyncio.Queue[None],
    complete: Countdown,
    messages: int,
    deflate: bool,
    stop: asyncio.Event,
) -> None:
    """Connect (at most CONNECT_PARALLEL at once), take the snapshot, then record every message
    until the server closes the socket or `stop` is set."""
    url = f"{server.ws_url}/ws/exports/{export_id}?token={server.token}"
    try:
        async with gate:
            started = time.perf_counter()
            ws: ClientConnection = await connect(
                url,
                open_timeout=CONNECT_TIMEOUT_S,
                ping_interval=None,
                compression="deflate" if deflate else None,
                max_queue=None,
            )
            await asyncio.wait_for(ws.recv(), SNAPSHOT_TIMEOUT_S)  # the snapshot (pending, seq 0)
            state.connect_s = time.perf_counter() - started
        state.snapshot = True
        snapshots.put_nowait(None)
    except (OSError, TimeoutError, ConnectionClosed) as exc:
        state.error = f"{type(exc).__name__}: {exc}"[:120]
        snapshots.put_nowait(None)
        return
    try:
        stopped = asyncio.ensure_future(stop.wait())
        while True:
            receive = asyncio.ensure_future(ws.recv())
            done, _ = await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break
            try:
                raw = receive.result()
            except ConnectionClosed:
                break
            at = time.perf_counter_ns()
            message = msgspec.json.decode(raw)
            if message["status"] in ("completed", "failed", "cancelled"):
                state.terminal = True
            else:
                state.received.append((int(message["frames_done"]), at))
                if len(state.received) == messages:
                    complete.tick()
        stopped.cancel()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)
        state.close_code = ws.close_code


def message(server: BenchServer, export_id: str, k: int, status: ExportStatus) -> ProgressMessage:
    return ProgressMessage(
        export_id=export_id,
        user_id=server.user_id,
        seq=0,
        status=status,
        phase=Phase.RENDERING if status is ExportStatus.PROCESSING else None,
        percent=min(99, k),
        frames_done=k,
        frames_total=1000,
    )


async def redis_clients(redis: Redis) -> int | None:
    with contextlib.suppress(Exception):
        return int((await redis.info("clients"))["connected_clients"])
    return None


async def bench(server: BenchServer, count: int, messages: int, interval_s: float, deflate: bool) -> Run:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"authorization": f"Bearer {server.token}"}, trust_env=False
    ) as http:
        created = await http.post(f"/api/videos/{server.video_id}/export", json={"resolution": "360p"})
        created.raise_for_status()
    export_id = str(created.json()["id"])
    redis = Redis.from_url(server.redis_url)
    try:
        server_idle, clients_idle = process_stats(server.pid), await redis_clients(redis)
        sockets = [Socket() for _ in range(count)]
        gate, snapshots, stop = asyncio.Semaphore(CONNECT_PARALLEL), asyncio.Queue[None](), asyncio.Event()
        complete = Countdown()
        started = time.perf_counter()
        tasks = [
            asyncio.create_task(
                follow(server, export_id, s, gate, snapshots, complete, messages, deflate, stop)
            )
            for s in sockets
        ]
        for _ in range(count):  # every task reports once, connected or not
            await snapshots.get()
        connect_all_s = time.perf_counter() - started
        connected = sum(s.snapshot for s in sockets)
        print(f"{connected}/{count} sockets have their snapshot after {connect_all_s:.2f} s", file=sys.stderr)
        server_connected, clients_connected = process_stats(server.pid), await redis_clients(redis)

        sent_ns: dict[int, int] = {}
        complete.expect(sum(s.snapshot for s in sockets))
        cpu0, server_cpu0 = cpu_seconds(), cpu_seconds(server.pid)
        t0 = time.perf_counter()
        for k in range(messages):
            await asyncio.sleep(max(0.0, t0 + k * interval_s - time.perf_counter()))
            sent_ns[k] = time.perf_counter_ns()
            await publish_progress(redis, message(server, export_id, k, ExportStatus.PROCESSING))
        with contextlib.suppress(TimeoutError):  # a socket that lost a message never completes
            await asyncio.wait_for(complete.wait(), DRAIN_TIMEOUT_S)
        publish_cpu = {
            "client_cpu_s": round(cpu_seconds() - cpu0, 2),
            "server_cpu_s": round(cpu_seconds(server.pid) - server_cpu0, 2),
            "wall_s": round(time.perf_counter() - t0, 2),
        }

        closing = time.perf_counter()
        await publish_progress(redis, message(server, export_id, TERMINAL_MARK, ExportStatus.COMPLETED))
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        closed_within_s = time.perf_counter() - closing
        stop.set()  # sockets the server did not close stop listening now
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pending:
            print(f"{len(pending)} sockets were not closed by the server", file=sys.stderr)
    finally:
        await redis.aclose()
    return Run(
        sockets=sockets,
        sent_ns=sent_ns,
        connect_all_s=connect_all_s,
        server_idle=server_idle,
        server_connected=server_connected,
        redis_clients_idle=clients_idle,
        redis_clients_connected=clients_connected,
        publish_cpu=publish_cpu,
        closed_within_s=closed_within_s,
    )


def summarize(run: Run, messages: int) -> dict[str, object]:
    live = [s for s in run.sockets if s.snapshot]
    latencies = sorted((at - run.sent_ns[k]) / 1e6 for s in live for k, at in s.received if k in run.sent_ns)
    by_message = {
        k: sorted((at - sent) / 1e6 for s in live for j, at in s.received if j == k)
        for k, sent in run.sent_ns.items()
    }
    connects = sorted(s.connect_s for s in live if s.connect_s is not None)
    lost = sum(messages - len({k for k, _ in s.received}) for s in live)
    errors = Counter(s.error.split(":")[0] for s in run.sockets if s.error)
    return {
        "sockets": len(run.sockets),
        "connected": len(live),
        "connect_errors": dict(errors),
        "connect_all_s": round(run.connect_all_s, 3),
        "connect_p50_ms": round(percentile(connects, 50) * 1000, 1),
        "connect_max_ms": round(connects[-1] * 1000, 1) if connects else float("nan"),
        "messages": messages,
        "delivered": len(latencies),
        "lost": lost,
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p99_ms": round(percentile(latencies, 99), 2),
        "latency_max_ms": round(latencies[-1], 2) if latencies else float("nan"),
        "per_message_p50_p99_ms": [
            [round(percentile(v, 50), 1), round(percentile(v, 99), 1)] for v in by_message.values()
        ],
        "terminal_received": sum(s.terminal for s in live),
        "closed_1000": sum(s.close_code == 1000 for s in live),
        "closed_within_s": round(run.closed_within_s, 2),
        "server_fds_idle": run.server_idle["fds"],
        "server_fds_connected": run.server_connected["fds"],
        "server_rss_mib_idle": round(run.server_idle["rss_kib"] / 1024, 1),
        "server_rss_mib_connected": round(run.server_connected["rss_kib"] / 1024, 1),
        "redis_clients_idle": run.redis_clients_idle,
        "redis_clients_connected": run.redis_clients_connected,
        "publish_phase": run.publish_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 sockets, 10 messages")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--sockets", type=int, help="websockets on the export (default 1000; --quick 100)")
    parser.add_argument("--messages", type=int, help="progress messages (default 20; --quick 10)")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="between messages (default 100)")
    parser.add_argument(
        "--no-deflate", action="store_true", help="do not offer permessage-deflate (browsers offer it)"
    )
    args = parser.parse_args()
    count = args.sockets or (100 if args.quick else 1000)
    messages = args.messages or (10 if args.quick else 20)
    # Per socket: ours, the server's end, its Redis connection, and Redis's end of that; children inherit.
    nofile = raise_nofile(4 * count + 1024)
    loadavg = os.getloadavg()

    print("starting the server ...", file=sys.stderr, flush=True)
    with bench_server() as server:
        print(f"server pid {server.pid}; {count} sockets, {messages} messages", file=sys.stderr, flush=True)
        run = asyncio.run(bench(server, count, messages, args.interval_ms / 1000, not args.no_deflate))
    env = environment(loadavg)
    s = summarize(run, messages)

    header = ["sockets", "connected", "connect all s", "msgs", "delivered", "lost"]
    header += ["p50 ms", "p99 ms", "max ms", "closed 1000", "srv fds", "redis clients", "srv RSS MiB"]
    cells = [
        str(s["sockets"]),
        str(s["connected"]),
        f"{s['connect_all_s']:.2f}",
        str(messages),
        str(s["delivered"]),
        str(s["lost"]),
        f"{s['latency_p50_ms']:.1f}",
        f"{s['latency_p99_ms']:.1f}",
        f"{s['latency_max_ms']:.1f}",
        f"{s['closed_1000']}/{s['connected']}",
        f"{s['server_fds_idle']}->{s['server_fds_connected']}",
        f"{s['redis_clients_idle']}->{s['redis_clients_connected']}",
        f"{s['server_rss_mib_idle']:.0f}->{s['server_rss_mib_connected']:.0f}",
    ]
    print(table(header, [cells]))
    if s["connect_errors"]:
        print(f"connect errors: {s['connect_errors']}")
    p99 = float(str(s["latency_p99_ms"]))
    met = p99 < P99_GOAL_MS and not s["lost"]
    print(
        f"\ngoal publish->receipt p99 < {P99_GOAL_MS:.0f} ms, nothing lost: {'MET' if met else 'NOT MET'}"
        f" ({p99:.1f} ms, {s['lost']} lost)"
    )
    per_message = " ".join(f"{p50:.0f}/{p99:.0f}" for p50, p99 in s["per_message_p50_p99_ms"])  # type: ignore[attr-defined]
    print(f"per message p50/p99 ms, in publish order: {per_message}")
    print(f"publish phase: {s['publish_phase']}; terminal message -> all closed in {s['closed_within_s']} s")
    print(
        f"{env['cpus']} CPUs, open-file limit {nofile}; loadavg at start {env['loadavg_start']}, "
        f"at end {env['loadavg_end']}"
    )
    print(f"note: {env['note']}")

    if args.json:
        config = {
            "sockets": count,
            "messages": messages,
            "interval_ms": args.interval_ms,
            "deflate": not args.no_deflate,
            "nofile": nofile,
        }
        write_json(
            args.json,
            "ws",
            args.quick,
            config,
            environment=env,
            result=s,
            goal={"p99_ms_below": P99_GOAL_MS, "met": met},
        )


if __name__ == "__main__":
    main()
