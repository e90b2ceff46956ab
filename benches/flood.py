#!/usr/bin/env python3
"""Connection flood against a running broker (docs/benchmarks.md, "Other measurements").

    benches/flood.py NATIVE_PORT AMQP_PORT SECONDS [CONNECTIONS]

Keeps CONNECTIONS (default 10,000) hostile sockets open against the native and
AMQP listeners of a broker on 127.0.0.1 for SECONDS, reopening each one the
broker closes (at most REOPEN_PER_S a second, so the population stays while
the broker cuts them off). Half are idle: they connect and send nothing. The
other half misbehave, in four equal kinds:

- garbage:  random bytes, then silence;
- claim:    a native frame header claiming a 4 MiB frame, and nothing else
            (or the AMQP header, then a frame header claiming 128 KiB);
- trickle:  a valid handshake sent one byte a second;
- hello:    a native Hello with a wrong password, repeated on each reopen.

Prints one JSON line: how many sockets of each kind were opened, how many the
broker closed, and the median and max seconds a closed socket had lived.
Bounded: SECONDS plus a few seconds to open the first population.
"""

import collections
import json
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time

REOPEN_PER_S = 2000
KINDS = ["idle"] * 4 + ["garbage", "claim", "trickle", "hello"]


def native_header(opcode, body_len, request_id=1):
    return struct.pack("<IBBHQ", body_len, opcode, 0, 0, request_id)


def native_hello(user, password):
    u, p = user.encode(), password.encode()
    body = b"RGMQ" + struct.pack("<HH", 1, len(u)) + u + struct.pack("<H", len(p)) + p
    return native_header(0x01, len(body)) + body


AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def payload(kind, amqp, rng):
    """What a socket of `kind` sends: (bytes at once, bytes trickled)."""
    if kind == "idle":
        return b"", b""
    if kind == "garbage":
        return bytes(rng.getrandbits(8) for _ in range(64)), b""
    if kind == "claim":
        # The largest frames the default limits allow: 4 MiB native, 128 KiB AMQP.
        if amqp:
            return AMQP_HEADER + struct.pack(">BHI", 1, 0, (128 << 10) - 8), b""
        return native_header(0x01, (4 << 20) - 16), b""
    if kind == "trickle":
        return b"", (AMQP_HEADER if amqp else native_hello("guest", "guest"))
    if kind == "hello":
        if amqp:
            return AMQP_HEADER, b""
        return native_hello("guest", "not-the-password"), b""
    raise ValueError(kind)


class Sock:
    __slots__ = ("s", "kind", "amqp", "trickle", "opened", "next_byte")


def main():
    native_port, amqp_port, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    total = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if total + 64 > hard:
        sys.exit(f"RLIMIT_NOFILE {hard} is below {total} sockets")
    rng = random.Random(int(os.environ.get("SEED", "1")))
    sel = selectors.DefaultSelector()
    stats = {k: {"opened": 0, "closed_by_broker": 0} for k in set(KINDS)}
    lifetimes = []
    pending = collections.deque((KINDS[i % len(KINDS)], i % 2 == 1) for i in range(total))
    live = {}
    trickling = {}

    def open_one(kind, amqp):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A blocking connect (fast on loopback) so the first bytes go out.
        s.settimeout(2.0)
        first, trickle = payload(kind, amqp, rng)
        try:
            s.connect(("127.0.0.1", amqp_port if amqp else native_port))
            if first:
                s.sendall(first)
        except OSError:
            s.close()
            return False
        s.setblocking(False)
        now = time.monotonic()
        x = Sock()
        x.s, x.kind, x.amqp, x.trickle, x.opened, x.next_byte = s, kind, amqp, trickle, now, now + 1.0
        live[s.fileno()] = x
        if trickle:
            trickling[s.fileno()] = x
        sel.register(s, selectors.EVENT_READ, x)
        stats[kind]["opened"] += 1
        return True

    end = time.monotonic() + seconds
    budget_at = time.monotonic() - 0.01
    while time.monotonic() < end:
        now = time.monotonic()
        # Reopen what the broker closed, at a bounded rate.
        if not pending:
            budget_at = now
        allowed = int((now - budget_at) * REOPEN_PER_S)
        if pending and allowed > 0:
            budget_at = now
            for _ in range(min(allowed, len(pending))):
                kind, amqp = pending.popleft()
                if not open_one(kind, amqp):
                    pending.appendleft((kind, amqp))
                    break
        for key, _ in sel.select(timeout=0.05):
            x = key.data
            try:
                data = x.s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                continue  # an error frame or connection.start: keep reading
            sel.unregister(x.s)
            live.pop(x.s.fileno(), None)
            trickling.pop(x.s.fileno(), None)
            x.s.close()
            stats[x.kind]["closed_by_broker"] += 1
            lifetimes.append(time.monotonic() - x.opened)
            pending.append((x.kind, x.amqp))
        now = time.monotonic()
        for x in list(trickling.values()):
            if x.trickle and now >= x.next_byte:
                try:
                    x.s.send(x.trickle[:1])
                    x.trickle = x.trickle[1:]
                except OSError:
                    pass
                x.next_byte = now + 1.0
    lifetimes.sort()
    out = {
        "connections": total,
        "seconds": seconds,
        "open_at_end": len(live),
        "kinds": stats,
        "closed_lifetime_s_median": round(lifetimes[len(lifetimes) // 2], 3) if lifetimes else None,
        "closed_lifetime_s_max": round(lifetimes[-1], 3) if lifetimes else None,
    }
    print(json.dumps(out))
    for x in live.values():
        x.s.close()


if __name__ == "__main__":
    main()
