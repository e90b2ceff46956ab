#!/usr/bin/env python3
"""Reads `perf script -F comm,tid,cpu,time,event,trace` of benches/wake_trace.sh.

usage: wake_trace.py PERF_TXT BODY_WRITE_BYTES [SLOW]
"""
import re
import sys

LINE = re.compile(r"^\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")


def events(path):
    out = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m and m.group(1) != "perf":
                comm, tid, cpu, t, event, rest = m.groups()
                out.append((float(t), comm, int(tid), int(cpu), event, rest, line.rstrip()))
    out.sort(key=lambda e: e[0])
    return out


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")


def summary(name, values):
    if not values:
        return f"{name}: none"
    return (f"{name} ({len(values)}): p50 {pct(values, .5):.0f}, p90 {pct(values, .9):.0f}, "
            f"p99 {pct(values, .99):.0f}, max {max(values):.0f} us")


def main():
    path, body, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0
    ev = events(path)
    body_hex = f"count: 0x{body:08x}"
    shard = next((e[2] for e in ev if e[1].startswith("ringmq-shard") and e[4].startswith("syscalls")), None)
    turn, queued, in_place, waking = [], [], [], None
    first_body, first_i = None, None
    worst = []
    for i, (t, comm, tid, cpu, event, rest, _) in enumerate(ev):
        if event == "syscalls:sys_enter_write" and body_hex in rest and not comm.startswith("ringmq"):
            if first_body is None:
                first_body, first_i = t, i
        elif event == "syscalls:sys_enter_sendto" and tid == shard and first_body is not None:
            d = (t - first_body) * 1e6
            turn.append(d)
            worst.append((d, first_i, i))
            first_body = None
        elif event == "sched:sched_waking" and "comm=ringmq-shard" in rest:
            waking = (t, cpu)
        elif event == "sched:sched_wakeup" and "comm=ringmq-shard" in rest and waking:
            (queued if cpu != waking[1] else in_place).append((t - waking[0]) * 1e6)
            waking = None
    print(summary("the broker's turnaround, body write to delivery sendto", turn))
    print(summary("the shard's wake-ups queued to its idle CPU", queued))
    print(summary("the shard's wake-ups in place", in_place))
    for d, a, b in sorted(worst, reverse=True)[:slow]:
        print(f"---- {d:.0f} us")
        t0 = ev[a][0]
        for e in ev[max(0, a - 3):b + 1]:
            if e[4] != "io_uring:io_uring_complete":
                print(f"{(e[0] - t0) * 1e6:8.1f} {e[6][:160]}")


if __name__ == "__main__":
    main()
