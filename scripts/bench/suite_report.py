#!/usr/bin/env python3
"""The tables of the benchmark suite, from its JSON reports, as Markdown.

    scripts/bench/suite_report.py DIR COMMON_RATE

DIR holds chat-TARGET.json (the chat scenario stepping the offered rate up)
and idle-TARGET.json (idle sessions with the server's RSS), as
scripts/bench/suite.sh writes them. Throughput is the best step's delivered
messages per second; latency is the delivery p50/p99 of the step offered
COMMON_RATE sends/s, a load every target carries; memory is RSS per idle
joined session. Ratios are Telehub's figure over the other's: above 1 is
better for throughput, below 1 for latency and memory.
"""
import json
import os
import sys

NAMES = {
    "limit": "the limit (bare relay)",
    "telehub-1": "Telehub, one node (SQLite)",
    "telehub-2": "Telehub, two nodes (PostgreSQL, Redis)",
    "socketio-1": "Socket.IO 4, one node",
    "socketio-2": "Socket.IO 4, two nodes (Redis adapter)",
}
PAIRS = [
    ("telehub-1", "limit"),
    ("telehub-1", "socketio-1"),
    ("telehub-2", "socketio-2"),
    ("telehub-2", "limit"),
]


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def figures(directory, target, common):
    chat = load(os.path.join(directory, f"chat-{target}.json"))
    idle = load(os.path.join(directory, f"idle-{target}.json"))
    if chat is None and idle is None:
        return None
    steps = chat["steps"] if chat else []
    best = max(steps, key=lambda s: s["delivered_per_s"]) if steps else None
    at_common = next((s for s in steps if abs(s["offered_per_s"] - common) < 0.5), None)
    delivery = at_common["latency_ms"]["delivery"] if at_common else None
    return {
        "chat": chat is not None,
        "throughput": best["delivered_per_s"] if best else None,
        "best_offered": best["offered_per_s"] if best else None,
        "p50": delivery["p50"] if delivery else None,
        "p99": delivery["p99"] if delivery else None,
        "steps": steps,
        "lost": chat["lost"] if chat else None,
        "duplicated": chat["duplicated"] if chat else None,
        "out_of_order": chat["out_of_order"] if chat else None,
        "closed": chat.get("closed_sessions", 0) if chat else None,
        "kib": idle.get("rss_kib_per_session") if idle else None,
        "idle_sessions": idle.get("sessions") if idle else None,
        "idle_failed": idle.get("failed_sessions", 0) + idle.get("closed_sessions", 0) if idle else None,
        "join_per_s": idle.get("join_per_s") if idle else None,
    }


def num(value, fmt="{:,.0f}"):
    return "n/a" if value is None else fmt.format(value)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def main():
    directory, common = sys.argv[1], float(sys.argv[2])
    rows = {t: figures(directory, t, common) for t in NAMES}
    rows = {t: f for t, f in rows.items() if f is not None}
    print(f"Delivered messages/s: the best step of the run; latency: the step offered {common:,.0f} sends/s "
          f"({2 * common:,.0f} deliveries/s); memory: RSS per idle joined session.\n")
    print("| server | delivered/s (best step) | at offered sends/s | p50 | p99 | lost | duplicated | out of order "
          "| sessions closed | RSS per session |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target, f in rows.items():
        if not f["chat"]:
            continue
        kib = "n/a" if f["kib"] is None else f"{f['kib']:.1f} KiB"
        print(f"| {NAMES[target]} | {num(f['throughput'])} | {num(f['best_offered'])} | {num(f['p50'], '{:.2f} ms')} "
              f"| {num(f['p99'], '{:.2f} ms')} | {f['lost']} | {f['duplicated']} | {f['out_of_order']} "
              f"| {f['closed']} | {kib} |")
    print()
    print("Ratios, Telehub over the other (throughput: higher is better; p99 and memory: lower is better):\n")
    print("| Telehub | over | throughput | p99 | memory per session |")
    print("|---|---|---:|---:|---:|")
    for mine, theirs in PAIRS:
        if mine in rows and theirs in rows:
            a, b = rows[mine], rows[theirs]
            print(f"| {NAMES[mine]} | {NAMES[theirs]} | {ratio(a['throughput'], b['throughput'])} "
                  f"| {ratio(a['p99'], b['p99'])} | {ratio(a['kib'], b['kib'])} |")
    print()
    print("Idle joined sessions held on one node, and what their memory means for 100,000:\n")
    print("| server | sessions held | failed or closed | join rate | RSS per session | 100,000 sessions |")
    print("|---|---:|---:|---:|---:|---:|")
    for target, f in rows.items():
        if f["idle_sessions"] is None:
            continue
        kib = f["kib"]
        projected = "n/a" if kib is None else f"{kib * 100_000 / 1024 / 1024:.1f} GiB"
        print(f"| {NAMES[target]} | {num(f['idle_sessions'])} | {f['idle_failed']} | {num(f['join_per_s'], '{:,.0f}/s')} "
              f"| {num(kib, '{:.1f} KiB')} | {projected} |")
    print()
    stepped = [f for f in rows.values() if f["steps"]]
    if not stepped:
        return
    print("Every step (offered sends/s: delivered/s, delivery p99):\n")
    print("| server | " + " | ".join(num(s["offered_per_s"]) for s in stepped[0]["steps"]) + " |")
    print("|---|" + "---:|" * len(stepped[0]["steps"]))
    for target, f in rows.items():
        if not f["steps"]:
            continue
        cells = [f"{num(s['delivered_per_s'])}, {num(s['latency_ms']['delivery']['p99'], '{:.1f} ms')}"
                 for s in f["steps"]]
        print(f"| {NAMES[target]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
