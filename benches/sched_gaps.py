#!/usr/bin/env python3
"""Where a thread was not running, from a `perf script` of sched_switch.

    perf record -e sched:sched_switch -a -o perf.data -- sleep S
    perf script -i perf.data | benches/sched_gaps.py [TOP] [SKIP_S]

For the busiest broker shard thread (`ringmq-shard-*`) and the busiest
generator thread (`loadgen-*`), prints the longest intervals off the CPU
(with the state it left in: S asleep, R preempted, and who ran instead)
and the longest intervals on it, skipping the first SKIP_S seconds (the
warmup; default 4) and the last 2. benches/tail.sh runs it with TRACE=1.

How to read it (docs/benchmarks.md, "What the machine itself does"): a
shard asleep (S) with the CPU idle while the generator sits on its CPU
for as long, sending nothing, is a frozen VM (the host's CPU cap), not a
broker stall; a shard preempted (R) by another task is the guest's own
scheduler; a shard on the CPU for milliseconds is a long task.
"""
import re
import sys
from collections import Counter

RX = re.compile(r"\s(\d+\.\d+):\s+sched:sched_switch:\s+prev_comm=(.*?) prev_pid=(\d+) "
                r"prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")


def main():
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    skip = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    ev = []
    for line in sys.stdin:
        m = RX.search(line)
        if m:
            t, pc, pp, st, nc, np = m.groups()
            ev.append((float(t), pc, pp, st, nc, np))
    if not ev:
        print("sched gaps: no sched_switch events")
        return
    lo, hi = ev[0][0] + skip, ev[-1][0] - 2.0
    for prefix in ("ringmq-shard", "loadgen-"):
        busiest = Counter(e[2] for e in ev if e[1].startswith(prefix)).most_common(1)
        if not busiest:
            continue
        report(prefix, busiest[0][0], ev, lo, hi, top)


def report(prefix, tid, ev, lo, hi, top):
    off, on = [], []
    left = came = None
    for t, _pc, pp, st, nc, np in ev:
        if pp == tid:
            left = (t, st, nc)
            if came is not None and lo < came < hi:
                on.append((t - came, came))
        if np == tid:
            came = t
            if left and lo < left[0] < hi:
                off.append((t - left[0], left[0], left[1], left[2]))
    off.sort(reverse=True)
    on.sort(reverse=True)
    print(f"sched gaps: {prefix} thread {tid}, {len(off)} switches in the window")
    for d, t, st, nc in off[:top]:
        print(f"  off the CPU {d * 1e3:7.3f} ms at {t:.6f} (left {st}, then {nc} ran)")
    for d, t in on[:top]:
        print(f"  on the CPU  {d * 1e3:7.3f} ms at {t:.6f}")


if __name__ == "__main__":
    main()
