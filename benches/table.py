"""The tables of docs/benchmarks.md, from the JSON lines of benches/load.sh.

    python3 benches/table.py load.jsonl              # the comparison
    python3 benches/table.py load.jsonl before.jsonl # and Sacred before -> after

Every figure is the median over the rounds of its row and server. The
comparison puts Sacred beside the raw tokio-tungstenite broadcast and
socketioxide, with the ratios the goals are stated in; then the server's CPU
per delivery (and how busy the generator was, so that a row the generator
bounds shows it); then the scenarios only a hub has.
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
    if value >= 1e5:
        return f"{value / 1e6:.2f} M"
    return f"{value / 1e3:.0f} k" if value >= 1e4 else f"{value:.0f}"


def is_latency(row):
    return "/s" in row


def is_idle(row):
    return row.startswith("idle")


def figure(row, runs):
    """The number a row is about, for ratios: deliveries/s, p99 or bytes."""
    if is_idle(row):
        return median([r.get("server_bytes_per_connection") for r in runs])
    if is_latency(row):
        return median([r["latency_us"].get("p99") for r in runs])
    return median([r.get("delivered_per_s") for r in runs])


def cell(row, runs):
    """One server's cell of one row."""
    if not runs:
        return "-"
    if is_idle(row):
        per = figure(row, runs)
        return f"{per / 1024:.1f} KiB" if per else "-"
    if is_latency(row):
        p50 = median([r["latency_us"].get("p50") for r in runs])
        p99 = median([r["latency_us"].get("p99") for r in runs])
        if p50 is None:
            return "-"
        return f"{p50 / 1000:.1f} / {p99 / 1000:.1f} ms"
    text = rate(figure(row, runs))
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
    if any(r.get("bound") == "generator" for r in runs):
        text += " (generator-bound)"
    return text


def rows_of(lines):
    rows = []
    for line in lines:
        if line["row"] not in rows:
            rows.append(line["row"])
    return rows


def runs_of(lines, row, server):
    return [l for l in lines if l["row"] == row and l["protocol"] == server]


def comparison(lines):
    print("| scenario | " + " | ".join(name for _, name in SERVERS) + " | Sacred / raw | Sacred / socketioxide |")
    print("|---|" + "--:|" * (len(SERVERS) + 2))
    cpu_rows = []
    for row in rows_of(lines):
        runs = {key: runs_of(lines, row, key) for key, _ in SERVERS}
        if not runs["raw"] and not runs["socketio"]:
            continue
        cells = [cell(row, runs[key]) for key, _ in SERVERS]
        ratios = []
        for other in ("raw", "socketio"):
            mine, theirs = figure(row, runs["sacred"]), figure(row, runs[other])
            if is_idle(row) or not (mine and theirs):
                ratios.append("")
            elif is_latency(row):
                ratios.append(f"p99 {mine / theirs:.2f}x")
            else:
                ratios.append(f"{mine / theirs:.2f}x")
        print(f"| {row} | " + " | ".join(cells + ratios) + " |")
        if not is_idle(row):
            ns = [median([r.get("server_cpu_ns_per_delivery") for r in runs[key]]) for key, _ in SERVERS]
            gen = [median([r["cpu"].get("generator_cores") for r in runs[key]]) for key, _ in SERVERS]
            cpu_rows.append((row, ns, gen))
    print()
    print("Server CPU per delivery, and the generator's cores:")
    print()
    print("| scenario | " + " | ".join(name for _, name in SERVERS) + " |")
    print("|---|" + "--:|" * len(SERVERS))
    for row, ns, gen in cpu_rows:
        cells = [f"{n:.0f} ns (generator {g:.2f})" if n is not None else "-" for n, g in zip(ns, gen)]
        print(f"| {row} | " + " | ".join(cells) + " |")


def sacred_only(lines):
    rows = [row for row in rows_of(lines) if not runs_of(lines, row, "raw") and not runs_of(lines, row, "socketio")]
    if not rows:
        return
    print()
    print("Sacred alone:")
    print()
    print("| scenario | codec | result |")
    print("|---|---|--:|")
    for row in rows:
        for line in runs_of(lines, row, "sacred"):
            if "delivered_per_s" in line:
                text = f"{rate(line['delivered_per_s'])} delivered/s"
                if line.get("lost") or line.get("errors"):
                    text += f", {line.get('lost', 0)} lost, {line.get('errors', 0)} errors"
            elif "connects_per_s" in line:
                p99 = line["connect_and_subscribe_us"].get("p99")
                text = f"{line['connects_per_s']:.0f} connects/s, p99 {p99 / 1000:.1f} ms"
            elif "channels_per_s" in line:
                peak = max(point["server_rss_bytes"] or 0 for point in line["server_rss"])
                text = f"{line['channels_per_s']:.0f} channels/s, peak RSS {peak / 1e6:.1f} MB"
            else:
                text = "?"
            print(f"| {row} | {line['codec']} | {text} |")


def before_after(lines, before):
    print()
    print("Sacred, before -> after:")
    print()
    print("| scenario | before | after | change |")
    print("|---|--:|--:|--:|")
    for row in rows_of(lines):
        now, then = runs_of(lines, row, "sacred"), runs_of(before, row, "sacred")
        if not now or not then:
            continue
        old, new = figure(row, then), figure(row, now)
        change = f"{new / old:.2f}x" if old and new else "-"
        print(f"| {row} | {cell(row, then)} | {cell(row, now)} | {change} |")


def main() -> int:
    lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    comparison(lines)
    sacred_only(lines)
    if len(sys.argv) > 2:
        before = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
        before_after(lines, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
