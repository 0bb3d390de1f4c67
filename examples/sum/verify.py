#!/usr/bin/env python3
"""Check every solution of examples/sum against expected.toml, WITHOUT evaler.

For each solution: copy it into a fresh temporary directory under the name
languages.toml gives (`source`), run the language's `compile` argv, then its
`run` argv on every test in name order, with the language's `env` only (and,
with --bwrap, inside a minimal bubblewrap box). Stops at the first test that
is not AC, like a judge, and compares that verdict with expected.toml.

This is a tool for humans and a check of languages.toml; the sandboxed
end-to-end test of the judge lives elsewhere. Usage: see verify.sh --help.
"""

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KINDS = ("correct", "wrong", "slow", "memory", "crash")
PLACEHOLDERS = ("memory_kib", "memory_mib", "stack_kib", "stack_mib")


def expand(arg, values):
    """Expand {name} placeholders; {{ and }} are literal braces."""
    out, i = [], 0
    while i < len(arg):
        c = arg[i]
        if arg.startswith("{{", i) or arg.startswith("}}", i):
            out.append(c)
            i += 2
        elif c == "{":
            end = arg.index("}", i)
            out.append(str(values[arg[i + 1:end]]))
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Runner:
    def __init__(self, bwrap):
        self.bwrap = bwrap

    def wrap(self, argv, lang, workdir):
        env = dict(lang.get("env", {}))
        if not self.bwrap:
            return argv, env, str(workdir)
        # Every namespace but the PID one: with --unshare-pid the program is
        # not reaped by bwrap itself, so wait4() would not see its CPU time
        # and memory.
        # Inside, the program is nobody (65534), not root, as in evaler's boxes.
        box = ["/usr/bin/bwrap", "--unshare-user", "--uid", "65534", "--gid", "65534",
               "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            p = Path("/" + name)
            if p.is_symlink():
                box += ["--symlink", os.readlink(p), "/" + name]
            elif p.is_dir():
                box += ["--ro-bind", str(p), str(p)]
        box += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        for path in lang.get("readonly_paths", []):
            box += ["--ro-bind", path, path]
        box += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--bind", str(workdir), "/box", "--chdir", "/box", "--clearenv"]
        for key, value in env.items():
            box += ["--setenv", key, value]
        return box + ["--"] + argv, {}, str(workdir)

    def run(self, argv, lang, workdir, stdin, stdout, stderr, cpu_s, wall_s, stack_bytes=None):
        """Run argv; return (status, cpu seconds, max RSS KiB, timed_out)."""
        argv, env, cwd = self.wrap(argv, lang, workdir)

        def limits():
            os.setsid()
            soft = int(cpu_s) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
            if stack_bytes is not None:
                resource.setrlimit(resource.RLIMIT_STACK, (stack_bytes, stack_bytes))

        with open(stdin, "rb") as fin, open(stdout, "wb") as fout, open(stderr, "ab") as ferr:
            proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd, env=env,
                                    preexec_fn=limits)
        deadline = time.monotonic() + wall_s
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        proc.returncode = 0  # reaped by wait4; keep Popen from waiting again
        # Kill whatever the program left behind in its session.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, timed_out


def describe(status, bwrap=False):
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    code = os.WEXITSTATUS(status)
    if bwrap and code > 128:
        # bwrap reports its child's death by signal N as exit 128 + N.
        try:
            return f"exit {code} (signal {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit {code}"


def judge(runner, lang, solution, tests, limits, verbose):
    """Return (verdict, detail)."""
    time_s = limits["time_ms"] / 1000
    memory_kib = limits["memory_mib"] * 1024
    stack_kib = limits["stack_mib"] * 1024
    values = {"memory_kib": memory_kib, "memory_mib": memory_kib // 1024,
              "stack_kib": stack_kib, "stack_mib": stack_kib // 1024}
    with tempfile.TemporaryDirectory(prefix="evaler-sum-") as tmp:
        work = Path(tmp) / "box"
        work.mkdir()
        os.chmod(work, 0o777)
        shutil.copyfile(solution, work / lang["source"])
        log = Path(tmp) / "compile.log"
        if "compile" in lang:
            lim = lang["limits"]
            t0 = time.monotonic()
            status, cpu, _, timed_out = runner.run(
                lang["compile"], lang, work, os.devnull, log, log,
                lim["compile_cpu_ms"] / 1000, lim["compile_wall_ms"] / 1000)
            if timed_out or status != 0:
                return "CE", f"compile {describe(status, runner.bwrap)}: {log.read_text(errors='replace')[-2000:]}"
            if verbose:
                print(f"    compiled in {time.monotonic() - t0:.2f}s wall, {cpu:.2f}s cpu")
        run = [expand(a, values) for a in lang["run"]]
        for name in tests:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            status, cpu, rss, timed_out = runner.run(
                run, lang, work, HERE / "tests" / f"{name}.in", out, err,
                time_s, limits["wall_ms"] / 1000, stack_kib * 1024)
            detail = f"{name}: {describe(status, runner.bwrap)}, {cpu:.2f}s cpu, {rss // 1024} MiB"
            if verbose:
                print(f"    {detail}")
            if timed_out or cpu > time_s:
                return "TLE", detail
            if rss > memory_kib:
                return "MLE", detail
            if status != 0:
                last = err.read_text(errors="replace").strip().splitlines()[-1:]
                return "RE", f"{detail}{': ' + last[0][:100] if last else ''}"
            expected = (HERE / "tests" / f"{name}.out").read_bytes().split()
            if out.read_bytes().split() != expected:
                got = out.read_bytes()[:60]
                return "WA", f"{detail}, output {got!r}"
        return "AC", f"{len(tests)} tests"


def main():
    parser = argparse.ArgumentParser(prog="verify.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--lang", action="append", help="only this language key (repeatable)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="only this kind (repeatable)")
    parser.add_argument("--bwrap", action="store_true",
                        help="run every step in a minimal bubblewrap box (see README.md)")
    parser.add_argument("--languages", type=Path, default=REPO / "languages.toml",
                        help="languages file (default: the repo's languages.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every test")
    args = parser.parse_args()

    languages = tomllib.loads(args.languages.read_text())["languages"]
    expected_file = tomllib.loads((HERE / "expected.toml").read_text())
    limits, verdicts = expected_file["limits"], expected_file["verdicts"]
    tests = sorted(p.stem for p in (HERE / "tests").glob("*.in"))
    if args.bwrap and not Path("/usr/bin/bwrap").exists():
        sys.exit("verify.sh: --bwrap needs /usr/bin/bwrap (apt-get install bubblewrap)")

    passed = failed = 0
    # Completeness: every language key has every kind, on disk and in expected.toml.
    for key in languages:
        for kind in KINDS:
            listed = [f for f in verdicts if f.startswith(f"{key}/{kind}.")]
            on_disk = list((HERE / "solutions" / key).glob(f"{kind}.*"))
            if len(listed) != 1 or len(on_disk) != 1:
                print(f"FAIL {key}/{kind}: {len(on_disk)} file(s) on disk, {len(listed)} in expected.toml")
                failed += 1

    runner = Runner(args.bwrap)
    for rel, want in verdicts.items():
        key, file = rel.split("/", 1)
        kind = file.split(".", 1)[0]
        if (args.lang and key not in args.lang) or (args.kind and kind not in args.kind):
            continue
        if key not in languages:
            print(f"FAIL {rel}: no language {key!r} in {args.languages}")
            failed += 1
            continue
        print(f"  .. {rel}", flush=True)
        t0 = time.monotonic()
        got, detail = judge(runner, languages[key], HERE / "solutions" / rel, tests, limits,
                            args.verbose)
        took = time.monotonic() - t0
        ok = got == want
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {rel}: {got} (expected {want}; {took:.1f}s) {detail}",
              flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
