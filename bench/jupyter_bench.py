"""The Jupyter peer of crates/evaler/examples/bench_sessions.rs (not a test).

Measures, for an ipykernel Python kernel and (if installed) bash_kernel,
driven by jupyter_client the way a notebook server drives them:

  * start to first result: start the kernel, wait until ready, run "1+1",
    until its execute_result arrives (median of N);
  * round trip of "1+1": execute request until the reply and the result
    are in, p50/p99 over many runs;
  * a cell printing 1 MiB;
  * idle memory per kernel: RSS and PSS of the kernel process (and its
    children), with 20 kernels up.

Setup (a venv under /tmp, PyPI):

    python3 -m venv /tmp/jbench
    /tmp/jbench/bin/pip install ipykernel jupyter_client
    /tmp/jbench/bin/python bench/jupyter_bench.py [--idle 20]
"""

import argparse
import os
import statistics
import sys
import time

from jupyter_client.manager import KernelManager


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, round((len(v) - 1) * p))]


def mem(pid):
    rss = pss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def children(pid):
    out = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[1]) == pid:
                out.extend(children(int(entry)))
        except (OSError, IndexError):
            pass
    return out


def execute(kc, code, timeout=30):
    """Runs code; returns (stdout length, result text) once idle."""
    msg_id = kc.execute(code, store_history=False)
    out_len = 0
    result = None
    deadline = time.time() + timeout
    while True:
        if time.time() > deadline:
            raise TimeoutError("no reply within %d s" % timeout)
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        t = msg["msg_type"]
        if t == "stream":
            out_len += len(msg["content"]["text"])
        elif t == "execute_result":
            result = msg["content"]["data"].get("text/plain")
        elif t == "status" and msg["content"]["execution_state"] == "idle":
            break
    kc.get_shell_msg(timeout=timeout)  # the execute_reply
    return out_len, result


def start(name):
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def bench(name, one_plus_one, mib, idle):
    print("## %s" % name)
    starts = []
    for _ in range(10):
        t = time.perf_counter()
        km, kc = start(name)
        execute(kc, one_plus_one)
        starts.append((time.perf_counter() - t) * 1000)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print("start to first result: p50 %.1f ms, min %.1f ms" % (statistics.median(starts), min(starts)))

    km, kc = start(name)
    for _ in range(100):
        execute(kc, one_plus_one)
    rt = []
    for _ in range(1000):
        t = time.perf_counter()
        execute(kc, one_plus_one)
        rt.append((time.perf_counter() - t) * 1000)
    print("`%s` round trip: p50 %.3f ms, p99 %.3f ms" % (one_plus_one, pct(rt, 0.5), pct(rt, 0.99)))
    big = []
    try:
        for _ in range(20):
            t = time.perf_counter()
            n, _ = execute(kc, mib)
            big.append((time.perf_counter() - t) * 1000)
            assert n >= 1 << 20, n  # bash_kernel adds a newline
        print("cell printing 1 MiB: p50 %.2f ms" % statistics.median(big))
    except Exception as e:  # noqa: BLE001 (bash_kernel stalls on it)
        print("cell printing 1 MiB: did not finish (%s)" % (e or type(e).__name__))
    kc.stop_channels()
    km.shutdown_kernel(now=True)

    kernels = []
    for _ in range(idle):
        km, kc = start(name)
        execute(kc, one_plus_one)
        kernels.append((km, kc))
    time.sleep(1)
    rss = pss = 0
    for km, _ in kernels:
        pid = km.provisioner.process.pid
        for p in children(pid):
            r, s = mem(p)
            rss += r
            pss += s
    print("%d idle kernels: RSS %.1f MiB, PSS %.1f MiB per kernel" % (idle, rss / idle / 1024, pss / idle / 1024))
    for km, kc in kernels:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=20)
    args = ap.parse_args()
    import ipykernel
    import jupyter_client
    print("ipykernel %s, jupyter_client %s, Python %s" % (
        ipykernel.__version__, jupyter_client.__version__, sys.version.split()[0]))
    bench("python3", "1+1", "print('x' * (1 << 20), end='')", args.idle)
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        if "bash" in KernelSpecManager().find_kernel_specs():
            bench("bash", "echo $((1+1))", "printf '%*s' 1048576 ''", args.idle)
        else:
            print("## bash\nbash_kernel not installed (pip install bash_kernel && python -m bash_kernel.install)")
    except Exception as e:  # noqa: BLE001
        print("bash kernel: %s" % e)


if __name__ == "__main__":
    main()
