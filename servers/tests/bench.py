"""Latency and memory figures for evaler's session servers (not a unit test).

    /usr/bin/python3 servers/tests/bench.py [python|ruby ...]

For each server, started as the supervisor starts it (socket on an inherited
fd, $EVALER_FD):
  * start -> first RESULT: spawn the process with a RUN "1+1" already queued
    on its socket, until the RESULT arrives (median and min of N runs);
  * round trip: RUN "1+1" -> RESULT on a warm session, p50/p90/p99; PING too;
  * idle RSS: VmRSS from /proc/PID/status after start and after the warm-up.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_servers import PY_CMD, RB_CMD, RUBY  # noqa: E402

STARTS = 20
ROUNDS = 3000


def spawn(cmd):
    parent, child = socket.socketpair()
    env = dict(os.environ, EVALER_FD=str(child.fileno()))
    proc = subprocess.Popen(cmd, env=env, pass_fds=(child.fileno(),),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    child.close()
    return proc, parent


def rpc(sock, f, payload):
    sock.sendall(payload)
    line = f.readline()
    if not line:
        raise RuntimeError("server closed the connection")
    return json.loads(line)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def bench(name, cmd):
    run = (json.dumps({"type": "RUN", "code": "1+1"}) + "\n").encode()
    ping = b'{"type":"PING"}\n'
    starts = []
    for _ in range(STARTS):
        t0 = time.perf_counter()
        proc, sock = spawn(cmd)
        f = sock.makefile("rb")
        r = rpc(sock, f, run)
        starts.append(time.perf_counter() - t0)
        assert r.get("value") == "2", r
        proc.kill()
        proc.wait()
        sock.close()

    proc, sock = spawn(cmd)
    f = sock.makefile("rb")
    rpc(sock, f, ping)
    rss_start = rss_kib(proc.pid)
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
    rss_idle = rss_kib(proc.pid)
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
    print("  VmRSS: %.1f MiB after start, %.1f MiB idle after %d cells"
          % (rss_start / 1024, rss_idle / 1024, ROUNDS + 200))


def main(argv):
    which = argv or ["python", "ruby"]
    if "python" in which:
        bench("python", PY_CMD)
    if "ruby" in which:
        if RUBY:
            bench("ruby", RB_CMD)
        else:
            print("ruby: not installed, skipped")


if __name__ == "__main__":
    main(sys.argv[1:])
