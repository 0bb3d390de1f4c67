"""Latency and memory figures for evaler's session servers (not a unit test).

    /usr/bin/python3 servers/tests/bench.py [python|ruby ...]

For each server, started as the supervisor starts it (socket on an inherited
fd, $EVALER_FD; Python both with the development command line and with the
kernels.toml one, source on stdin):
  * start -> first RESULT: spawn the process with a RUN "1+1" already queued
    on its socket, until the RESULT arrives (median and min of N runs);
  * round trip: RUN "1+1" -> RESULT on a warm session, p50/p90/p99; PING too;
    a cell printing 1 MiB;
  * idle memory: RSS and PSS from /proc/PID/smaps_rollup after the first
    cell (0.5 s later, as evaler's bench_sessions measures) and after the
    warm-up.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_servers import PY_CMD, PY_KERNEL_CMD, PY_SOURCE, RB_CMD, RUBY  # noqa: E402

STARTS = 20
ROUNDS = 3000


def spawn(cmd, stdin=None):
    parent, child = socket.socketpair()
    env = dict(os.environ, EVALER_FD=str(child.fileno()))
    with open(stdin or os.devnull, "rb") as f:
        proc = subprocess.Popen(cmd, env=env, pass_fds=(child.fileno(),),
                                stdin=f, stdout=subprocess.DEVNULL)
    child.close()
    return proc, parent


def rpc(sock, f, payload):
    sock.sendall(payload)
    line = f.readline()
    if not line:
        raise RuntimeError("server closed the connection")
    return json.loads(line)


def mem_mib(pid):
    """(RSS, PSS) in MiB."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key] = int(rest.split()[0]) / 1024
    return out.get("Rss", -1), out.get("Pss", -1)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def bench(name, cmd, stdin=None):
    run = (json.dumps({"type": "RUN", "code": "1+1"}) + "\n").encode()
    ping = b'{"type":"PING"}\n'
    starts = []
    for _ in range(STARTS):
        t0 = time.perf_counter()
        proc, sock = spawn(cmd, stdin)
        f = sock.makefile("rb")
        r = rpc(sock, f, run)
        starts.append(time.perf_counter() - t0)
        assert r.get("value") == "2", r
        proc.kill()
        proc.wait()
        sock.close()

    proc, sock = spawn(cmd, stdin)
    f = sock.makefile("rb")
    rpc(sock, f, run)
    time.sleep(0.5)
    mem_start = mem_mib(proc.pid)
    for _ in range(200):
        rpc(sock, f, run)
    rts = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        rpc(sock, f, run)
        rts.append(time.perf_counter() - t0)
    pings = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        rpc(sock, f, ping)
        pings.append(time.perf_counter() - t0)
    mem_idle = mem_mib(proc.pid)
    mib = None
    if MIB_CELL.get(name):
        big = (json.dumps({"type": "RUN", "code": MIB_CELL[name]}) + "\n").encode()
        mib = []
        for _ in range(30):
            t0 = time.perf_counter()
            r = rpc(sock, f, big)
            mib.append(time.perf_counter() - t0)
            assert len(r["stdout"]) == 1 << 20, r.keys()
    proc.kill()
    proc.wait()
    sock.close()

    ms = 1000.0
    print("%s: %s" % (name, " ".join(cmd)))
    print("  start -> first RESULT: median %.1f ms, min %.1f ms (%d runs)"
          % (statistics.median(starts) * ms, min(starts) * ms, STARTS))
    print("  RUN 1+1 round trip:    p50 %.3f ms, p90 %.3f ms, p99 %.3f ms (%d runs)"
          % (pct(rts, .5) * ms, pct(rts, .9) * ms, pct(rts, .99) * ms, ROUNDS))
    print("  PING round trip:       p50 %.3f ms" % (pct(pings, .5) * ms))
    if mib:
        print("  cell printing 1 MiB:   p50 %.2f ms, p90 %.2f ms (client included: json.loads of the reply)"
              % (pct(mib, .5) * ms, pct(mib, .9) * ms))
    print("  RSS/PSS: %.1f/%.1f MiB after the first cell, %.1f/%.1f MiB after %d cells"
          % (mem_start + mem_idle + (ROUNDS + 201,)))


MIB_CELL = {"python": "print('x' * (1 << 20), end='')", "python (kernels.toml)": "print('x' * (1 << 20), end='')",
            "ruby": "print 'x' * (1 << 20)\nnil"}


def main(argv):
    which = argv or ["python", "ruby"]
    if "python" in which:
        bench("python", PY_CMD)
        if PY_KERNEL_CMD:
            bench("python (kernels.toml)", PY_KERNEL_CMD, PY_SOURCE)
    if "ruby" in which:
        if RUBY:
            bench("ruby", RB_CMD)
        else:
            print("ruby: not installed, skipped")


if __name__ == "__main__":
    main(sys.argv[1:])
