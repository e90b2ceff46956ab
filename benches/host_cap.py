#!/usr/bin/env python3
"""The freezes this machine itself has: the floor under every tail latency.

    benches/host_cap.py [SECONDS] [BUSY_CPUS]     (default 10, all CPUs)

One process per CPU, pinned, reads the monotonic clock in a tight loop and
records every interval over 0.5 ms in which it did not get to read it: the
process was not running (the guest preempted it, or the host froze the
virtual CPU). A VM whose host caps its CPU time per period freezes when the
cap is reached until the period ends, so those freezes end at the same
phase of the period on every CPU. Prints, per CPU: the freezes, their total
and the longest, the host's steal time over the run (/proc/stat), and the
phases (ms, modulo 100 ms) at which the freezes ended. With BUSY_CPUS < the
CPU count, only that many spin (the others idle), to see whether the cap
needs the whole machine busy.
"""
import os
import sys
import time
from multiprocessing import Process, Queue

GAP_S = 0.0005


def spin(cpu, secs, out):
    os.sched_setaffinity(0, {cpu})
    end = time.monotonic() + secs
    last = time.monotonic()
    gaps = []
    while last < end:
        t = time.monotonic()
        if t - last > GAP_S:
            gaps.append((t - last, t))
        last = t
    out.put((cpu, gaps))


def steal():
    with open("/proc/stat") as f:
        return [int(line.split()[8]) for line in f if line.startswith("cpu") and line[3].isdigit()]


def main():
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    cpus = sorted(os.sched_getaffinity(0))
    busy = int(sys.argv[2]) if len(sys.argv) > 2 else len(cpus)
    out = Queue()
    s0 = steal()
    procs = [Process(target=spin, args=(c, secs, out)) for c in cpus[:busy]]
    for p in procs:
        p.start()
    found = dict(out.get() for _ in procs)
    for p in procs:
        p.join()
    s1 = steal()
    for cpu, gaps in sorted(found.items()):
        total = sum(g for g, _ in gaps)
        longest = max((g for g, _ in gaps), default=0.0)
        phases = sorted({round((t % 0.1) * 1e3) for g, t in gaps if g > 0.001})
        print(f"cpu{cpu}: {len(gaps)} freezes over 0.5 ms in {secs:.0f} s, {total * 1e3:.1f} ms in all, "
              f"longest {longest * 1e3:.2f} ms; steal {(s1[cpu] - s0[cpu]) * 10} ms; "
              f"freezes over 1 ms ended at ms {phases[:10]} of the 100 ms period")


if __name__ == "__main__":
    main()
