"""Checks sacred-server's /metrics as Prometheus reads it, with an independent
parser (prometheus_client), against real traffic from the Python package:

- the page parses, and every family has its HELP text;
- traffic moves the counters (connections, commands, publications,
  deliveries, errors, bytes) and the gauges (connections by kind and runtime);
- label values stay in their bounded sets (a client's odd words are `other`,
  codes are numbers; no channel name or user id anywhere);
- every metric the alert rules (deploy/prometheus/alerts.yml) and the
  Grafana dashboard (deploy/grafana/sacred.json) use is on the page;
- with --metrics-bind, /metrics is on that address only.

Usage: python scripts/check_metrics.py path/to/sacred-server
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import sacred_client
import sacred_client.exceptions
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"agent", "app", "service", "other"}
RUNTIMES = {"rust", "python", "browser", "node", "mobile", "other"}
# Labels whose values are open-ended and must therefore never appear.
BOUNDED = {
    "kind": KINDS,
    "runtime": RUNTIMES,
    "outcome": {"recovered", "not_recovered", "ok", "failed"},
    "scope": {"connect", "message"},
    "reason": {"origin", "rate", "lockout", "draining", "subprotocol", "auth", "limit"},
}
NUMERIC_LABELS = {"code"}
# Series that exist once what they describe happened: the label is open
# (a close code), or there is no value before (the last backup's duration).
ONLY_AFTER_THE_EVENT = {
    "sacred_disconnects_total",
    "sacred_store_last_backup_duration_seconds",
    "sacred_store_last_prune_duration_seconds",
}
WAIT_S = 10.0


def fail(message: str) -> None:
    print(f"check_metrics: {message}", file=sys.stderr)
    sys.exit(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def start(binary: str, store: Path) -> tuple[subprocess.Popen[str], str, str]:
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0",
         "--log-format", "json", "--store", f"sqlite:{store}", "--store-max-mb", "64",
         "--connections-per-minute", "0", "--messages-per-minute", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    assert server.stdout is not None
    main = metrics = None
    for line in server.stdout:
        fields = json.loads(line).get("fields", {})
        metrics = fields.get("metrics_address", metrics)
        main = fields.get("address", main)
        if main and metrics:
            return server, main, metrics
    fail("sacred-server exited before listening")
    raise AssertionError


def scrape(address: str) -> dict[str, Any]:
    status, text = get(f"http://{address}/metrics")
    if status != 200:
        fail(f"/metrics answered {status}")
    families = {}
    for family in text_string_to_metric_families(text):
        if not family.documentation:
            fail(f"{family.name} has no HELP text")
        families[family.name] = family
    return families


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    total = 0.0
    family = families.get(name.removesuffix("_total"))
    for sample in family.samples if family else []:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            total += sample.value
    return total


async def traffic(url: str) -> None:
    async with sacred_client.connect(url, name="reader", kind="agent") as reader, \
            sacred_client.connect(url, name="<img src=x>", kind="user-4242") as writer:
        sub = await reader.subscribe("room")
        for n in range(7):
            await writer.publish("room", {"n": n})
        for _ in range(7):
            await sub.next(timeout=WAIT_S)
        try:
            await writer.publish("nowhere:x", 1)
        except sacred_client.exceptions.ReplyError as err:
            if err.code != 102:
                fail(f"expected error 102, got {err.code}")
        else:
            fail("a publish to an unknown namespace succeeded")


def names_used_by_rules_and_dashboard() -> set[str]:
    text = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    dashboard = json.loads((ROOT / "deploy/grafana/sacred.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    found = set(re.findall(r"\bsacred_[a-z_]+", text + "\n".join(exprs)))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in found}


def main() -> None:
    if len(sys.argv) != 2:
        fail(__doc__ or "")
    with tempfile.TemporaryDirectory() as tmp:
        server, main_address, metrics_address = start(sys.argv[1], Path(tmp) / "h.db")
        try:
            status, _ = get(f"http://{main_address}/metrics")
            if status != 404:
                fail(f"with --metrics-bind, /metrics on --bind answered {status}")
            before = scrape(metrics_address)
            asyncio.run(asyncio.wait_for(traffic(f"ws://{main_address}/ws"), WAIT_S * 2))
            after = scrape(metrics_address)
        finally:
            server.terminate()
            server.wait(timeout=WAIT_S * 3)
    if server.returncode != 0:
        fail(f"sacred-server exited with {server.returncode} after SIGTERM")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    expect = {
        ("sacred_publications_total", ()): 7,
        ("sacred_deliveries_total", ()): 7,
        ("sacred_commands_total", (("command", "publish"),)): 8,
        ("sacred_errors_total", (("code", "102"),)): 1,
        ("sacred_connections_accepted_total", (("kind", "agent"), ("runtime", "python"))): 1,
        ("sacred_connections_accepted_total", (("kind", "other"), ("runtime", "python"))): 1,
    }
    for (name, labels), want in expect.items():
        got = delta(name, **dict(labels))
        if got != want:
            fail(f"{name}{dict(labels)} moved by {got}, expected {want}")
    for name in ("sacred_received_bytes_total", "sacred_sent_bytes_total"):
        if delta(name) <= 0:
            fail(f"{name} did not move")
    if value(after, "sacred_store_max_bytes") != 64 * 1024 * 1024:
        fail("sacred_store_max_bytes is not the --store-max-mb cap")

    for family in after.values():
        for sample in family.samples:
            for label, text in sample.labels.items():
                if label in NUMERIC_LABELS and not text.isdigit():
                    fail(f"{sample.name}: {label}={text!r} is not a code")
                if label in BOUNDED and text not in BOUNDED[label]:
                    fail(f"{sample.name}: {label}={text!r} is outside its bounded set")
                if "room" in text or "<img" in text or "4242" in text:
                    fail(f"{sample.name}: a client's words in label {label}={text!r}")

    served = {name.removesuffix("_total") for name in after}
    missing = sorted(
        name for name in names_used_by_rules_and_dashboard() - ONLY_AFTER_THE_EVENT
        if name.removesuffix("_total") not in served
    )
    if missing:
        fail(f"the alert rules or the dashboard use metrics the server does not serve: {missing}")
    print(f"check_metrics: {len(after)} families parsed; counters, labels, rules and dashboard agree")


if __name__ == "__main__":
    os.environ.setdefault("SACRED_LOG", "warn,sacred_server=info")
    main()
