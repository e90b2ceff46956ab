#!/usr/bin/env python3
"""The confirm latency of an ideal group commit on this disk.

Messages of SIZE bytes arrive at RATE per second. One loop does what the
broker's flusher does, with no CPU cost at all: write everything that
arrived since the previous write began (O_DIRECT, rounded up to 4 KiB,
into a file that already has its blocks, as a reused segment does), then
fdatasync. A message is confirmed when the fdatasync after its write
returns. No broker can confirm faster than this on the same device with
the same policy (fdatasync before the confirm), so this is the floor under
benches/confirm_tail.sh.

    benches/disk_floor.py RATE [SIZE] [SECONDS] [DIR]   (default 300000 1024 8 /tmp)

Prints the cycle times and the confirm-latency percentiles of the
messages (each cycle's messages spread evenly over the time they arrived).
"""
import mmap
import os
import sys
import time

FILE_BYTES = 64 << 20
BLOCK = 4096
MAX_WRITE = 32 << 20


def main():
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 300000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 8
    folder = sys.argv[4] if len(sys.argv) > 4 else os.environ.get("TMPDIR", "/tmp")
    path = os.path.join(folder, ".ringmq-disk-floor-%d" % os.getpid())
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        hist, cycles = run(fd, rate, size, secs)
    finally:
        os.close(fd)
        os.unlink(path)
    report(rate, size, hist, cycles)


def run(fd, rate, size, secs):
    # Give the file its blocks first: the log reuses segments, so its
    # fdatasyncs flush data only, with no allocation to commit.
    mib = mmap.mmap(-1, 1 << 20)
    mib.write(b"\x5a" * (1 << 20))
    for i in range(FILE_BYTES >> 20):
        os.pwrite(fd, mib, i << 20)
    os.fdatasync(fd)
    buf = mmap.mmap(-1, MAX_WRITE)
    buf.write(b"\x5a" * MAX_WRITE)
    view = memoryview(buf)
    hist = {}  # latency in units of 0.1 ms -> messages
    cycles = []
    pos = 0
    covered = time.perf_counter()
    end = covered + secs
    while True:
        start = time.perf_counter()
        if start > end:
            return hist, cycles
        n = int((start - covered) * rate * size)
        n = min(MAX_WRITE, max(BLOCK, -(-n // BLOCK) * BLOCK))
        if pos + n > FILE_BYTES:
            pos = 0
        os.pwrite(fd, view[:n], pos)
        os.fdatasync(fd)
        done = time.perf_counter()
        pos += n
        cycles.append(done - start)
        # The messages that arrived in [covered, start) are confirmed now.
        span = start - covered
        count = span * rate
        k = max(1, int(min(count, 1000)))
        for i in range(k):
            arrived = covered + span * (i + 0.5) / k
            b = round((done - arrived) * 1e4)
            hist[b] = hist.get(b, 0) + count / k
        covered = start


def report(rate, size, hist, cycles):
    total = sum(hist.values())
    qs = (0.5, 0.9, 0.99, 0.999)
    at = {}
    acc = 0.0
    for b in sorted(hist):
        acc += hist[b]
        for q in qs:
            if q not in at and acc >= q * total:
                at[q] = b / 10
    cycles.sort()
    n = len(cycles)
    over = sum(v for b, v in hist.items() if b > 20) / total
    print(
        "disk floor at %d msg/s of %d B: %d cycles (write+fdatasync p50 %.3f ms, p99 %.3f ms, max %.1f ms); "
        "confirm p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms; over 2 ms: %.2f %%"
        % (rate, size, n, 1e3 * cycles[n // 2], 1e3 * cycles[int(n * 0.99)], 1e3 * cycles[-1],
           at[0.5], at[0.9], at[0.99], at[0.999], 100 * over)
    )


if __name__ == "__main__":
    main()
