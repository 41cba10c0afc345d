"""The client benchmarks of docs/benchmarks.md: how many publications one
subscriber receives per second (Sacred's Rust client, the Python package's
asyncio and blocking APIs, and a pure-Python websockets client reading the
same stream), and publish round trips per second (Rust, asyncio, blocking).

    .venv/bin/python benches/clients.py            # 3 rounds, a table on stdout

Needs release builds of sacred-server and client-bench (it builds them), the
sacred_client wheel installed in the running interpreter, and the websockets
package (installed if missing). Each measurement gets a fresh server on
core 0, with the Rust publisher; the measured client runs alone on core 1.
Every subscriber receives the same COUNT publications of the same 200-byte
payload; the Python subscribers get a subscription buffer of COUNT, so the
figure is the binding's throughput, not the pause-and-recover path a full
buffer takes.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release"
COUNT = int(os.environ.get("COUNT", "400000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECONDS = float(os.environ.get("SECONDS", "5"))
HERE = pathlib.Path(__file__).resolve().parent / "python"
PINNED = (os.cpu_count() or 1) >= 2


def on_core(core: int, args: List[str]) -> List[str]:
    return ["taskset", "-c", str(core), *args] if PINNED else args


def start_server() -> "tuple[subprocess.Popen[str], str]":
    server = subprocess.Popen(
        on_core(0, [str(BIN / "sacred-server"), "--bind", "127.0.0.1:0", "--log-format", "json"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        found = re.search(r'"address":"([^"]+)"', line)
        if found:
            return server, f"ws://{found.group(1)}/ws"
    server.kill()
    raise SystemExit("sacred-server did not start")


def stop(process: "subprocess.Popen[str]") -> None:
    process.kill()
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def run_child(args: List[str], ready: Optional[str], then: Optional[List[str]]) -> Dict[str, float]:
    """Runs a measured client; once it prints `ready`, runs `then` (the
    publisher). Returns its JSON line and the CPU seconds it used."""
    child = subprocess.Popen(on_core(1, args), stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    publisher = None
    if ready is not None:
        line = child.stdout.readline().strip()
        if line != ready:
            child.kill()
            raise SystemExit(f"{args}: expected {ready!r}, got {line!r}")
    if then is not None:
        publisher = subprocess.Popen(on_core(0, then), stdout=subprocess.PIPE, text=True)
    out = child.stdout.readline()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    published = None
    if publisher is not None:
        published, _ = publisher.communicate(timeout=120)
    if not out:
        raise SystemExit(f"{args} printed no result (exit {child.returncode})")
    result: Dict[str, float] = json.loads(out)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    if published:
        result["published_per_s"] = json.loads(published)["per_s"]
    return result


def subscribe(kind: str, url: str) -> Dict[str, float]:
    publisher = [str(BIN / "client-bench"), "publish", "--url", url, "--channel", "bench", "--count", str(COUNT)]
    if kind == "rust":
        args = [str(BIN / "client-bench"), "subscribe", "--url", url, "--channel", "bench", "--count", str(COUNT)]
    else:
        args = [sys.executable, str(HERE / "subscriber.py"), kind, url, "bench", str(COUNT)]
    return run_child(args, "subscribed", publisher)


def round_trips(kind: str, url: str) -> Dict[str, float]:
    if kind == "rust":
        args = [str(BIN / "client-bench"), "round-trips", "--url", url, "--seconds", str(int(SECONDS))]
    else:
        args = [sys.executable, str(HERE / "round_trips.py"), kind, url, str(SECONDS)]
    return run_child(args, None, None)


def main() -> None:
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "sacred-server", "-p", "sacred-benches",
                    "--bin", "sacred-server", "--bin", "client-bench"], check=True, cwd=ROOT)
    try:
        import websockets  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "websockets"], check=True)
    receive: Dict[str, List[Dict[str, float]]] = {}
    calls: Dict[str, List[Dict[str, float]]] = {}
    for round in range(ROUNDS):
        for kind in ("rust", "asyncio", "blocking", "websockets"):
            server, url = start_server()
            try:
                receive.setdefault(kind, []).append(subscribe(kind, url))
            finally:
                stop(server)
            print(f"round {round + 1} receive {kind}: {receive[kind][-1]}", file=sys.stderr)
        for kind in ("rust", "asyncio", "blocking"):
            server, url = start_server()
            try:
                calls.setdefault(kind, []).append(round_trips(kind, url))
            finally:
                stop(server)
            print(f"round {round + 1} round trips {kind}: {calls[kind][-1]}", file=sys.stderr)

    names = {"rust": "Rust client", "asyncio": "Python, asyncio", "blocking": "Python, blocking",
             "websockets": "pure Python (websockets + json)"}
    rust = statistics.median(r["per_s"] for r in receive["rust"])
    print(f"Publications received per second by one subscriber ({COUNT} of 200 bytes, median of {ROUNDS}):\n")
    print("| subscriber | received/s | vs Rust | the publisher meanwhile | subscriber CPU per publication | vs Rust |")
    print("|---|--:|--:|--:|--:|--:|")
    rust_cpu = statistics.median(r["cpu_s"] / r["received"] * 1e6 for r in receive["rust"])
    for kind, runs in receive.items():
        rate = statistics.median(r["per_s"] for r in runs)
        published = statistics.median(r["published_per_s"] for r in runs)
        cpu = statistics.median(r["cpu_s"] / r["received"] * 1e6 for r in runs)
        print(f"| {names[kind]} | {rate / 1e3:.0f} k | {rate / rust:.2f}x | {published / 1e3:.0f} k/s "
              f"| {cpu:.2f} µs | {cpu / rust_cpu:.2f}x |")
    rust = statistics.median(r["per_s"] for r in calls["rust"])
    print(f"\nPublish round trips per second, one at a time ({SECONDS:.0f} s, median of {ROUNDS}):\n")
    print("| caller | round trips/s | vs Rust |")
    print("|---|--:|--:|")
    for kind, runs in calls.items():
        rate = statistics.median(r["per_s"] for r in runs)
        print(f"| {names[kind]} | {rate / 1e3:.1f} k | {rate / rust:.2f}x |")


if __name__ == "__main__":
    main()
