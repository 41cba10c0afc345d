"""The comparison table of docs/benchmarks.md, from the JSON lines of
benches/load.sh: for each row and server, the median over the rounds.

Run: python3 benches/table.py load.jsonl
"""

import json
import statistics
import sys

SERVERS = [("raw", "raw tokio-tungstenite"), ("sacred", "Sacred"), ("socketio", "socketioxide")]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(value):
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.0f} k"


def cell(row, runs):
    """One server's cell of one row: the figure the row is about."""
    if row.startswith("idle"):
        per = median([r.get("server_bytes_per_connection") for r in runs])
        return f"{per / 1024:.1f} KiB" if per else "-"
    if "/s" in row:
        p50 = median([r["latency_us"].get("p50") for r in runs])
        p99 = median([r["latency_us"].get("p99") for r in runs])
        if p50 is None:
            return "-"
        return f"{p50 / 1000:.1f} / {p99 / 1000:.1f} ms"
    text = rate(median([r.get("delivered_per_s") for r in runs]))
    expected = sum(r.get("published_per_s", 0) for r in runs)
    lost = sum(r.get("lost", 0) for r in runs)
    if "open loop" in row:
        delivered = sum(r.get("delivered_per_s", 0) * r.get("seconds", 0) for r in runs)
        if lost:
            share = lost / (lost + delivered) if delivered else 1
            text += f", {share:.1%} lost"
        else:
            text += ", nothing lost"
    elif lost:
        text += f", {lost} lost"
    del expected
    bound = {r.get("bound") for r in runs} - {None, "server"}
    if bound & {"generator"}:
        text += " (generator-bound)"
    return text


def main() -> int:
    lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    rows = []
    for line in lines:
        if line["row"] not in rows:
            rows.append(line["row"])
    print("| scenario | " + " | ".join(name for _, name in SERVERS) + " | Sacred / raw | Sacred / socketioxide |")
    print("|---|" + "--:|" * (len(SERVERS) + 2))
    cpu_rows = []
    for row in rows:
        runs = {key: [l for l in lines if l["row"] == row and l["protocol"] == key] for key, _ in SERVERS}
        if not runs["raw"] and not runs["socketio"]:
            continue
        cells = [cell(row, runs[key]) if runs[key] else "-" for key, _ in SERVERS]
        ratios = []
        for other in ("raw", "socketio"):
            if row.startswith("idle") or "/s" in row:
                ratios.append("")
                continue
            mine = median([r.get("delivered_per_s") for r in runs["sacred"]])
            theirs = median([r.get("delivered_per_s") for r in runs[other]])
            ratios.append(f"{mine / theirs:.2f}x" if mine and theirs else "-")
        print(f"| {row} | " + " | ".join(cells + ratios) + " |")
        if not row.startswith("idle"):
            ns = [median([r.get("server_cpu_ns_per_delivery") for r in runs[key]]) for key, _ in SERVERS]
            gen = [median([r["cpu"].get("generator_cores") for r in runs[key]]) for key, _ in SERVERS]
            cpu_rows.append((row, ns, gen))
    print()
    print("Server CPU per delivery (ns), and the generator's cores, medians:")
    print()
    print("| scenario | " + " | ".join(name for _, name in SERVERS) + " |")
    print("|---|" + "--:|" * len(SERVERS))
    for row, ns, gen in cpu_rows:
        cells = [f"{n:.0f} ns (generator {g:.2f})" if n is not None else "-" for n, g in zip(ns, gen)]
        print(f"| {row} | " + " | ".join(cells) + " |")
    others = [l for l in lines if not any(l["row"] == r for r in rows if l["protocol"] != "sacred") and l["protocol"] == "sacred"]
    del others
    return 0


if __name__ == "__main__":
    sys.exit(main())
