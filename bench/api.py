"""API latency benchmark: concurrent clients against a real `vexport serve --no-worker` on loopback.

Two phases, each with `--clients` concurrent clients (one keep-alive connection each, bearer
token; the lean client of `_http.py`, so the load generator leaves the shared cores to the server):
(1) `POST /api/videos/{id}/export` with a valid body and a fresh Idempotency-Key per request,
(2) `GET /api/exports/{id}` over the exports phase 1 created.
Each phase stops after `--requests` requests or `--seconds`, whichever comes first.
Reports p50/p90/p99/max latency (ms), throughput and errors per endpoint; goal: GET p99 < 50 ms.
A last, single-client GET phase (a tenth of the requests) shows the latency without queueing, and
the CPU seconds of this process and of the server process (not its Postgres/Redis) show who used the
shared cores.
No worker runs, so exports stay pending (the per-user limits are lifted for the run).

    uv run python bench/api.py [--quick] [--json PATH] [--clients 50] [--requests N] [--seconds S]
                               [--processes N]

The server runs with the environment's settings: `ACCESS_LOG=false` measures it without the
per-request log line (as behind a proxy that logs); the report names both knobs.

Uses DATABASE_URL / REDIS_URL when set, else embedded Postgres/Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from _http import Answer, Connection
from _server import (
    BenchServer,
    bench_server,
    cpu_seconds,
    environment,
    percentile,
    process_stats,
    table,
    write_json,
)

GET_P99_GOAL_MS = 50.0
WARMUP_PER_CLIENT = 2
REQUEST_TIMEOUT_S = 30.0
EXPORT_BODY = {
    "segments": [{"start": "0.1", "end": "0.5"}],
    "resolution": "360p",
    "quality": "draft",
    "format": "mp4",
}

Call = Callable[[Connection, int], Awaitable[Answer]]


@dataclass(slots=True)
class Phase:
    """One endpoint's results: latencies of answered requests (ms), failures by status or exception."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies_ms)
        return {
            "endpoint": self.name,
            "requests": self.requests,
            "ok": len(ordered),
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "wall_s": round(self.wall_s, 3),
            "client_cpu_s": round(self.client_cpu_s, 2),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "throughput_rps": round(self.requests / self.wall_s, 1) if self.wall_s else 0.0,
            **{f"p{q}_ms": round(percentile(ordered, q), 2) for q in (50, 90, 99)},
            "max_ms": round(ordered[-1], 2) if ordered else float("nan"),
        }


async def connect(server: BenchServer) -> Connection:
    host, _, port = server.base_url.removeprefix("http://").rpartition(":")
    connection = Connection(host, int(port), {"authorization": f"Bearer {server.token}"})
    await connection.open()
    return connection


async def run_phase(
    server: BenchServer, phase: Phase, call: Call, clients: int, requests: int, seconds: float | None
) -> None:
    """`clients` workers share one request counter; all stop at `requests` or at the deadline."""
    counter = itertools.count()
    deadline = None if seconds is None else time.perf_counter() + seconds

    async def worker(http: Connection) -> None:
        while (i := next(counter)) < requests and (deadline is None or time.perf_counter() < deadline):
            started = time.perf_counter_ns()
            try:
                response = await asyncio.wait_for(call(http, i), REQUEST_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                phase.errors[type(exc).__name__] += 1
                await http.aclose()
                await http.open()  # a fresh connection: the old one may hold half an answer
                continue
            elapsed_ms = (time.perf_counter_ns() - started) / 1e6
            if response.is_success:
                phase.latencies_ms.append(elapsed_ms)
            else:
                phase.errors[f"HTTP {response.status}"] += 1

    https = await asyncio.gather(*(connect(server) for _ in range(clients)))
    try:

        async def warm(http: Connection, n: int) -> None:
            for j in range(WARMUP_PER_CLIENT):  # one request at a time on a connection
                await call(http, -1 - n * WARMUP_PER_CLIENT - j)

        await asyncio.gather(*(warm(h, n) for n, h in enumerate(https)))
        started, client_cpu, server_cpu = time.perf_counter(), cpu_seconds(), cpu_seconds(server.pid)
        await asyncio.gather(*(worker(h) for h in https))
        phase.wall_s = time.perf_counter() - started
        phase.client_cpu_s = cpu_seconds() - client_cpu
        phase.server_cpu_s = cpu_seconds(server.pid) - server_cpu
    finally:
        await asyncio.gather(*(h.aclose() for h in https))


async def bench(server: BenchServer, clients: int, requests: int, seconds: float | None) -> list[Phase]:
    created: list[str] = []
    run_tag = uuid.uuid4().hex[:8]

    body = json.dumps(EXPORT_BODY).encode()

    async def post_export(http: Connection, i: int) -> Answer:
        raw = http.encode(
            "POST",
            f"/api/videos/{server.video_id}/export",
            body,
            {"content-type": "application/json", "idempotency-key": f"bench-{run_tag}-{i}"},
        )
        response = await http.request(raw)
        if response.status == 202:
            created.append(response.json()["id"])
        return response

    async def get_export(http: Connection, i: int) -> Answer:
        return await http.request(http.encode("GET", f"/api/exports/{created[i % len(created)]}"))

    post = Phase("POST /api/videos/{id}/export")
    await run_phase(server, post, post_export, clients, requests, seconds)
    if not created:
        raise RuntimeError(f"no export was created: {dict(post.errors)}")
    get = Phase("GET /api/exports/{id}")
    await run_phase(server, get, get_export, clients, requests, seconds)
    alone = Phase("GET /api/exports/{id}, 1 client")
    await run_phase(server, alone, get_export, 1, max(50, requests // 10), seconds)
    return [post, get, alone]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (300 requests per endpoint)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--requests", type=int, help="requests per endpoint (default 5000; --quick 300)")
    parser.add_argument("--seconds", type=float, help="also stop each phase after this many seconds")
    parser.add_argument("--processes", type=int, default=1, help="API processes (serve --processes; 1)")
    args = parser.parse_args()
    requests = args.requests or (300 if args.quick else 5000)
    loadavg = os.getloadavg()

    print("starting the server ...", file=sys.stderr, flush=True)
    with bench_server(args=["--processes", str(args.processes)]) as server:
        print(
            f"server pid {server.pid} at {server.base_url}; {args.clients} clients, "
            f"{requests} requests per endpoint",
            file=sys.stderr,
            flush=True,
        )
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            phases = runner.run(bench(server, args.clients, requests, args.seconds))
        server_after = process_stats(server.pid)
    env = environment(loadavg)
    summaries = [p.summary() for p in phases]

    header = ["endpoint", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    header += ["client CPU s", "server CPU s", "wall s"]
    rows = [
        [
            str(s["endpoint"]),
            str(s["requests"]),
            str(s["errors"]),
            f"{s['throughput_rps']:.0f}",
            *(f"{s[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")),
            *(f"{s[k]:.1f}" for k in ("client_cpu_s", "server_cpu_s", "wall_s")),
        ]
        for s in summaries
    ]
    print(table(header, rows))
    for s in summaries:
        if s["errors"]:
            print(f"  {s['endpoint']} errors: {s['errors_by_kind']}")
    get_p99 = percentile(sorted(phases[1].latencies_ms), 99)
    met = get_p99 < GET_P99_GOAL_MS
    print(f"\ngoal GET p99 < {GET_P99_GOAL_MS:.0f} ms: {'MET' if met else 'NOT MET'} ({get_p99:.1f} ms)")
    print(f"{args.processes} API process(es), ACCESS_LOG={os.environ.get('ACCESS_LOG', 'true')}")
    print(
        f"{args.clients} concurrent clients; loadavg at start {env['loadavg_start']}, "
        f"at end {env['loadavg_end']}; {env['cpus']} CPUs"
    )
    print(f"note: {env['note']}")

    if args.json:
        config = {
            "clients": args.clients,
            "requests_per_endpoint": requests,
            "seconds_per_endpoint": args.seconds,
            "export_body": EXPORT_BODY,
            "services": "env" if os.environ.get("DATABASE_URL") else "embedded",
            "api_processes": args.processes,
            "access_log": os.environ.get("ACCESS_LOG", "true"),
        }
        write_json(
            args.json,
            "api",
            args.quick,
            config,
            environment=env,
            server_after=server_after,
            endpoints=summaries,
            goal={"get_p99_ms_below": GET_P99_GOAL_MS, "met": met},
        )


if __name__ == "__main__":
    main()
