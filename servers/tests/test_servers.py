"""Protocol and semantics tests for evaler's Python and Ruby session servers.

Standard library only:

    /usr/bin/python3 -m unittest discover -s servers/tests -v

Each server is started the way the supervisor starts it (see the READMEs),
in --listen 127.0.0.1:0 mode for most tests and with a socketpair on an
inherited fd for the fd-mode tests.  $EVALER_TEST_PYTHON and
$EVALER_TEST_RUBY pick the interpreters (default /usr/bin/python3, ruby on
PATH); the Ruby tests are skipped when no ruby is found, unless
$EVALER_TEST_REQUIRE_RUBY is set (then that is an error).
$EVALER_TEST_PYTHON_ARGS / $EVALER_TEST_RUBY_ARGS replace the interpreter
flags (default "-I -X utf8" and "--disable-gems").

The Python tests run twice: with server.py as a script file (the development
command line above), and with the python kernel's command from kernels.toml
(-S, the -c loader, the source on stdin), as `evaler kernel` runs it.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

try:
    import tomllib
except ImportError:                     # Python < 3.11
    tomllib = None

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.dirname(HERE)
PYTHON = os.environ.get("EVALER_TEST_PYTHON", "/usr/bin/python3")
RUBY = os.environ.get("EVALER_TEST_RUBY") or shutil.which("ruby")

PY_ARGS = shlex.split(os.environ.get("EVALER_TEST_PYTHON_ARGS", "-I -X utf8"))
RB_ARGS = shlex.split(os.environ.get("EVALER_TEST_RUBY_ARGS", "--disable-gems"))
PY_SOURCE = os.path.join(SERVERS, "python", "server.py")
PY_CMD = [PYTHON] + PY_ARGS + [PY_SOURCE]
RB_CMD = [RUBY or "ruby"] + RB_ARGS + [os.path.join(SERVERS, "ruby", "server.rb")]


def kernel_command(name):
    """The kernel's command from kernels.toml, "{server}" as evaler passes it
    (the source comes on stdin).  None without tomllib."""
    if tomllib is None:
        return None
    with open(os.path.join(os.path.dirname(SERVERS), "kernels.toml"), "rb") as f:
        cmd = tomllib.load(f)["kernels"][name]["command"]
    return ["-" if a == "{server}" else a for a in cmd]


PY_KERNEL_CMD = kernel_command("python")
if PY_KERNEL_CMD and os.environ.get("EVALER_TEST_PYTHON"):
    PY_KERNEL_CMD[0] = PYTHON

TIMEOUT = 10.0
MAX_LINE = 64 << 20
CAP = 8 << 20


class Conn:
    """A client connection speaking newline-delimited JSON."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw((json.dumps(obj) + "\n").encode())

    def recv_line(self, timeout=TIMEOUT):
        """Next line (bytes, without newline) or None at EOF."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def recv(self, timeout=TIMEOUT):
        line = self.recv_line(timeout)
        if line is None:
            return None
        obj = json.loads(line.decode("utf-8"))
        assert isinstance(obj, dict) and isinstance(obj.get("type"), str), obj
        return obj

    def run(self, code, kind="RUN", timeout=TIMEOUT):
        self.send({"type": kind, "code": code})
        reply = self.recv(timeout)
        assert reply is not None, "connection closed instead of a RESULT"
        assert reply["type"] == "RESULT", reply
        return reply

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    """A server process in --listen mode."""

    def __init__(self, cmd, env=None, stdin=None):
        with open(stdin or os.devnull, "rb") as f:
            self.proc = subprocess.Popen(cmd + ["--listen", "127.0.0.1:0"], stdin=f,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            self.proc.kill()
            raise AssertionError("no LISTENING line: %r %r" % (line, self.proc.stderr.read()))
        host, _, port = line.split()[1].rpartition(":")
        self.addr = (host, int(port))

    @property
    def pid(self):
        return self.proc.pid

    def connect(self):
        return Conn(socket.create_connection(self.addr, timeout=TIMEOUT))

    def wait(self, timeout=5.0):
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def wait_for_file(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError("cell never started (no %s)" % path)
        time.sleep(0.005)


class ServerTests:
    """Tests shared by both servers; subclasses give the command and snippets."""

    CMD = None
    STDIN = None    # file given as the server's stdin (its source, for "-")
    S = {}          # snippet name -> code
    SERVER_FILE = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CMD, stdin=cls.STDIN)
        cls.conn = cls.server.connect()

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.server.stop()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evaler-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_ok(self, code):
        r = self.conn.run(code)
        self.assertEqual(r["status"], "ok", r)
        return r

    def fresh(self):
        srv = Server(self.CMD, stdin=self.STDIN)
        self.addCleanup(srv.stop)
        conn = srv.connect()
        self.addCleanup(conn.close)
        return srv, conn

    # ---- state and values

    def test_state_survives_between_runs(self):
        self.run_ok(self.S["set_state"])
        r = self.run_ok(self.S["use_state"])
        self.assertEqual(r["value"], "42")
        self.assertIsInstance(r["time"], float)

    def test_trailing_value(self):
        r = self.run_ok(self.S["value"])
        self.assertEqual(r["value"], "[1, 2, 3]")
        r = self.run_ok(self.S["no_value"])
        self.assertNotIn("value", r)
        self.assertEqual(r["stdout"], "x\n")
        r = self.run_ok(self.S["value"])
        r = self.run_ok(self.S["underscore"])
        self.assertEqual(r["value"], "3")

    def test_no_server_internals_in_namespace(self):
        srv, conn = self.fresh()
        r = conn.run(self.S["namespace"])
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(r["value"], self.S["namespace_expected"])

    # ---- output capture

    def test_stdout_stderr_capture(self):
        r = self.run_ok(self.S["print_both"])
        self.assertEqual(r["stdout"], "out1\nout2")
        self.assertEqual(r["stderr"], "err1\n")
        self.assertNotIn("truncated", r)

    def test_child_process_output(self):
        r = self.run_ok(self.S["children"])
        self.assertEqual(r["stdout"], "a\nb\nc\nd")
        self.assertEqual(r["stderr"], "e1\ne2\n")

    def test_ordering_within_stream(self):
        r = self.run_ok(self.S["ordering"])
        expected = "".join("%d\ns%d\n" % (i, i) for i in range(5))
        self.assertEqual(r["stdout"], expected)
        r = self.run_ok(self.S["many_lines"])
        self.assertEqual(r["stdout"], "".join("%d\n" % i for i in range(2000)))

    def test_unflushed_output_at_cell_end(self):
        r = self.run_ok(self.S["unflushed"])
        self.assertEqual(r["stdout"], "buffered")
        r = self.run_ok(self.S["after_unflushed"])
        self.assertEqual(r["stdout"], "next\n")

    def test_c_level_stdio_flushed(self):
        # printf through ctypes / Fiddle: C stdio is fully buffered on a pipe
        r = self.run_ok(self.S["c_printf"])
        self.assertEqual(r["stdout"], "lang\nc-level")

    def test_non_utf8_output_replaced(self):
        r = self.run_ok(self.S["non_utf8"])
        self.assertEqual(r["stdout"], "\ufffd\n")

    def test_one_mib_output(self):
        r = self.run_ok(self.S["one_mib"])
        self.assertEqual(len(r["stdout"]), (1 << 20) + 1)
        self.assertNotIn("truncated", r)

    def test_output_over_cap_truncated(self):
        r = self.run_ok(self.S["nine_mib"])
        self.assertTrue(r.get("truncated"))
        self.assertEqual(len(r["stdout"]), CAP)
        self.assertEqual(r["stderr"], "tail\n")
        r = self.run_ok(self.S["after_unflushed"])
        self.assertEqual(r["stdout"], "next\n")
        self.assertNotIn("truncated", r)

    def test_background_process_does_not_hang_cell(self):
        # The process keeps the cell's pipe open: the cell ends anyway, the
        # process lives on and its later output opens the next RESULT.
        marker = os.path.join(self.tmp, "printed")
        t0 = time.monotonic()
        r = self.run_ok(self.S["background"] % marker)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(r["stdout"], "done\n")
        wait_for_file(marker)
        r = self.run_ok(self.S["after_unflushed"])
        self.assertEqual(r["stdout"], "late-proc\nnext\n")

    def test_output_between_cells_goes_to_next_result(self):
        marker = os.path.join(self.tmp, "printed")
        self.run_ok(self.S["late_thread"] % marker)
        wait_for_file(marker)
        r = self.run_ok(self.S["after_unflushed"])
        self.assertEqual(r["stdout"], "late-thread\nnext\n")
        self.assertEqual(r["stderr"], "late-err\n")

    def test_exit_handlers_output_in_result(self):
        srv, conn = self.fresh()
        r = conn.run(self.S["at_exit"])
        self.assertEqual(r["status"], "exited", r)
        self.assertEqual(r["exit_code"], 2)
        self.assertEqual(r["stdout"], "cell\nat exit\n")
        self.assertIsNone(conn.recv_line(timeout=5))
        self.assertEqual(srv.wait(5), 2)

    def test_stdin_is_eof(self):
        r = self.run_ok(self.S["stdin"])
        self.assertEqual(r["value"], self.S["stdin_expected"])

    # ---- errors

    def test_exception_traceback_and_session_lives(self):
        self.run_ok(self.S["set_state"])
        r = self.conn.run(self.S["raise"])
        self.assertEqual(r["status"], "error")
        for s in self.S["raise_expected"]:
            self.assertIn(s, r["stderr"])
        self.assertNotIn(self.SERVER_FILE, r["stderr"])
        self.assertNotIn("value", r)
        r = self.run_ok(self.S["use_state"])
        self.assertEqual(r["value"], "42")

    def test_syntax_error(self):
        r = self.conn.run(self.S["syntax"])
        self.assertEqual(r["status"], "error")
        self.assertIn(self.S["syntax_expected"], r["stderr"])
        self.assertNotIn(self.SERVER_FILE, r["stderr"])

    # ---- protocol

    def test_ping(self):
        self.conn.send({"type": "PING"})
        self.assertEqual(self.conn.recv(), {"type": "CONNECTION-OK"})

    def test_bad_packets(self):
        bad = [
            (b"this is not json\n", "JSON"),
            (b"[1, 2]\n", "object"),
            (b'"RUN"\n', "object"),
            (b'{"code": "1"}\n', "type"),
            (b'{"type": 7}\n', "type"),
            (b'{"type": "NOPE"}\n', "NOPE"),
            (b'{"type": "RUN"}\n', "code"),
            (b'{"type": "RUN", "code": 5}\n', "code"),
            (b'{"type": "RUNANDKILL", "code": null}\n', "code"),
            (b'{"type": "RUN", "code": "\xff"}\n', "UTF-8"),
        ]
        for raw, word in bad:
            self.conn.send_raw(raw)
            reply = self.conn.recv()
            self.assertEqual(reply["type"], "Error", (raw, reply))
            self.assertIsInstance(reply["value"], str)
            self.assertIn(word, reply["value"], raw)
        # Extra fields are ignored; the server still serves.
        self.conn.send({"type": "RUN", "code": self.S["use_state_literal"], "extra": [1]})
        self.assertEqual(self.conn.recv()["value"], "7")
        self.conn.send({"type": "PING", "id": 1})
        self.assertEqual(self.conn.recv(), {"type": "CONNECTION-OK"})

    def test_idle_interrupt_packet_and_sigint_are_noops(self):
        self.conn.send({"type": "INTERRUPT"})
        os.kill(self.server.pid, signal.SIGINT)
        time.sleep(0.05)
        self.conn.send({"type": "PING"})
        self.assertEqual(self.conn.recv(), {"type": "CONNECTION-OK"})
        self.assertIsNone(self.server.proc.poll())

    def test_sigint_interrupts_running_cell(self):
        self.run_ok(self.S["set_state"])
        marker = os.path.join(self.tmp, "started")
        self.conn.send({"type": "RUN", "code": self.S["sleep"] % marker})
        wait_for_file(marker)
        t0 = time.monotonic()
        os.kill(self.server.pid, signal.SIGINT)
        r = self.conn.recv(timeout=5)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(r["status"], "interrupted", r)
        self.assertEqual(r["stdout"], "before\n")
        self.assertIn(self.S["interrupt_expected"], r["stderr"])
        self.assertNotIn(self.SERVER_FILE, r["stderr"])
        r = self.run_ok(self.S["use_state"])
        self.assertEqual(r["value"], "42")

    def test_oversized_line_closes_connection(self):
        srv, conn = self.fresh()
        conn.send_raw(b"x" * (MAX_LINE + 10))
        reply = conn.recv(timeout=20)
        self.assertEqual(reply["type"], "Error")
        self.assertIn("too large", reply["value"])
        self.assertIsNone(conn.recv_line())
        # listen mode: the next client gets the same session
        conn2 = srv.connect()
        self.addCleanup(conn2.close)
        self.assertEqual(conn2.run(self.S["use_state_literal"])["value"], "7")

    def test_reconnect_keeps_state(self):
        srv, conn = self.fresh()
        conn.run(self.S["set_state"])
        conn.close()
        conn2 = srv.connect()
        self.addCleanup(conn2.close)
        r = conn2.run(self.S["use_state"])
        self.assertEqual(r["value"], "42")

    # ---- ending the session

    def check_exit(self, code, exit_code, stderr=""):
        srv, conn = self.fresh()
        r = conn.run(code)
        self.assertEqual(r["status"], "exited", r)
        self.assertEqual(r["exit_code"], exit_code)
        self.assertEqual(r["stderr"], stderr)
        self.assertIsNone(conn.recv_line(timeout=5))
        self.assertEqual(srv.wait(5), exit_code)

    def test_exit(self):
        self.check_exit(self.S["exit0"], 0)

    def test_exit_with_code(self):
        self.check_exit(self.S["exit3"], 3)

    def test_exit_with_message(self):
        self.check_exit(self.S["exit_msg"], 1, "bye\n")

    def test_runandkill(self):
        srv, conn = self.fresh()
        conn.send({"type": "RUNANDKILL", "code": self.S["runandkill"]})
        r = conn.recv()
        self.assertEqual(r["type"], "RESULT")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["value"], "2")
        self.assertEqual(r["stdout"], "hi\n")
        self.assertIsNone(conn.recv_line(timeout=5))
        self.assertEqual(srv.wait(5), 0)

    def test_hard_exit_closes_connection(self):
        srv, conn = self.fresh()
        conn.send({"type": "RUN", "code": self.S["hard_exit"]})
        self.assertIsNone(conn.recv_line(timeout=5))
        self.assertEqual(srv.wait(5), 3)

    def test_kill_packet(self):
        srv, conn = self.fresh()
        conn.send({"type": "KILL"})
        self.assertIsNone(conn.recv_line(timeout=5))
        self.assertEqual(srv.wait(5), 0)

    # ---- fd mode (how the supervisor runs it)

    def fd_mode(self, fd_number):
        parent, child = socket.socketpair()
        self.addCleanup(parent.close)
        env = dict(os.environ)
        stdin = open(self.STDIN or os.devnull, "rb")
        self.addCleanup(stdin.close)
        if fd_number is None:                 # the default: fd 3, no EVALER_FD
            env.pop("EVALER_FD", None)
            cfd = child.fileno()
            proc = subprocess.Popen(self.CMD, env=env, pass_fds=(3,),
                                    preexec_fn=lambda: os.dup2(cfd, 3),
                                    stdin=stdin, stdout=subprocess.DEVNULL)
        else:
            env["EVALER_FD"] = str(child.fileno())
            proc = subprocess.Popen(self.CMD, env=env, pass_fds=(child.fileno(),),
                                    stdin=stdin, stdout=subprocess.DEVNULL)
        child.close()
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait()))
        conn = Conn(parent)
        r = conn.run(self.S["fd_mode"])
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(r["stdout"], "fd mode\n")
        self.assertEqual(r["value"], "42")
        conn.send({"type": "PING"})
        self.assertEqual(conn.recv(), {"type": "CONNECTION-OK"})
        parent.shutdown(socket.SHUT_WR)       # EOF: the server ends
        self.assertIsNone(conn.recv_line())
        self.assertEqual(proc.wait(5), 0)

    def test_fd_mode_evaler_fd(self):
        self.fd_mode(fd_number=True)

    def test_fd_mode_default_fd3(self):
        self.fd_mode(fd_number=None)


class PythonServerTests(ServerTests, unittest.TestCase):
    CMD = PY_CMD
    SERVER_FILE = "server.py"
    S = {
        "set_state": "x = 41",
        "use_state": "x + 1",
        "use_state_literal": "3 + 4",
        "value": "[1, 2] + [3]",
        "no_value": "print('x')",
        "underscore": "len(_)",
        "namespace": "import sys\n(sorted(globals()), sys.argv)",
        "namespace_expected": "(['__builtins__', '__doc__', '__loader__', '__name__', '__package__', "
                              "'__spec__', 'sys'], [''])",
        "print_both": "import sys\nprint('out1')\nsys.stderr.write('err1\\n')\nprint('out2', end='')",
        "children": "import os, subprocess, sys\nprint('a')\nos.system('echo b')\n"
                    "subprocess.run(['echo', 'c'])\nos.system('echo e1 >&2')\n"
                    "sys.stderr.write('e2\\n')\nsys.stdout.write('d')",
        "ordering": "import os\nfor i in range(5):\n    print(i)\n    os.system('echo s%d' % i)",
        "many_lines": "for i in range(2000): print(i)",
        "unflushed": "import io, sys\n"
                     "sys.stdout = io.TextIOWrapper(open(1, 'wb', closefd=False), write_through=False)\n"
                     "sys.stdout.write('buffered')",
        "after_unflushed": "print('next')",
        "c_printf": "import ctypes\nprint('lang')\nctypes.CDLL(None).printf(b'c-level')\nNone",
        "non_utf8": "import sys\nsys.stdout.buffer.write(b'\\xff\\n')\nNone",
        "one_mib": "print('x' * (1 << 20))",
        "nine_mib": "import sys\nsys.stdout.write('y' * (9 << 20))\nsys.stderr.write('tail\\n')\nNone",
        "background": "import subprocess\n"
                      "subprocess.Popen('sleep 0.3; echo late-proc; touch %s', shell=True)\nprint('done')",
        "late_thread": "import threading, time, sys\n"
                       "def late():\n    time.sleep(0.1)\n    print('late-thread')\n    sys.stderr.write('late-err\\n')\n"
                       "    open(%r, 'w').close()\n"
                       "threading.Thread(target=late).start()",
        "at_exit": "import atexit\natexit.register(print, 'at exit')\nprint('cell')\nexit(2)",
        "stdin": "import sys\ntry:\n    input()\nexcept EOFError:\n    r = 'eof'\n(r, sys.stdin.read())",
        "stdin_expected": "('eof', '')",
        "raise": "def boom():\n    raise ValueError('bad')\n\nboom()",
        "raise_expected": ["Traceback (most recent call last):\n  File \"<cell-", "in boom\n",
                           "    raise ValueError('bad')\n", "ValueError: bad\n"],
        "syntax": "x = (1,\n",
        "syntax_expected": "SyntaxError:",
        "sleep": "import time\nprint('before')\nopen(%r, 'w').close()\ntime.sleep(30)",
        "interrupt_expected": "KeyboardInterrupt\n",
        "exit0": "exit()",
        "exit3": "import sys\nsys.exit(3)",
        "exit_msg": "import sys\nsys.exit('bye')",
        "runandkill": "print('hi')\n1 + 1",
        "hard_exit": "import os\nos._exit(3)",
        "fd_mode": "print('fd mode')\n6 * 7",
    }

    def test_traceback_shows_cell_source_and_user_modules(self):
        mod = os.path.join(self.tmp, "evaler_user_mod.py")
        with open(mod, "w") as f:
            f.write("def f():\n    return 1 / 0\n")
        r = self.conn.run("import sys\nsys.path.insert(0, %r)\nimport evaler_user_mod\n"
                          "evaler_user_mod.f()" % self.tmp)
        self.assertEqual(r["status"], "error")
        self.assertIn("evaler_user_mod.py\", line 2, in f\n    return 1 / 0\n", r["stderr"])
        self.assertTrue(r["stderr"].startswith("Traceback (most recent call last):\n  File \"<cell-"),
                        r["stderr"])
        self.assertIn("    evaler_user_mod.f()\n", r["stderr"])

    def test_main_module_is_user_namespace(self):
        r = self.run_ok("import __main__, pickle\nclass P: pass\n"
                        "(__main__.__dict__ is globals(), type(pickle.loads(pickle.dumps(P()))).__name__)")
        self.assertEqual(r["value"], "(True, 'P')")

    # ---- large and unusual output (fast paths of the capture and the JSON encoder)

    def test_large_output_exact(self):
        # More than a pipe holds, from print, os.write and a child process,
        # with every character the JSON encoder must escape (or must not),
        # multi-byte UTF-8 split across reads, and invalid UTF-8.
        r = self.run_ok("import os, subprocess, sys\n"
                        "chunk = ''.join(map(chr, range(1, 128))) + '\\u00e9\\u20ac\\U0001f600\\u2028\\ufeff'\n"
                        "print(chunk * 9000, end='')\n"
                        "os.write(1, b'\\x00raw\\xff\\xfe\\xe2\\x82' * 50000)\n"
                        "subprocess.run(['head', '-c', '300000', '/dev/zero'])\n"
                        "sys.stdout.write('end')\nNone")
        chunk = "".join(map(chr, range(1, 128))) + "\u00e9\u20ac\U0001f600\u2028\ufeff"
        expected = ((chunk * 9000).encode() + b"\x00raw\xff\xfe\xe2\x82" * 50000
                    + b"\x00" * 300000 + b"end").decode("utf-8", "replace")
        self.assertEqual(r["stdout"], expected)
        self.assertEqual(r["stderr"], "")
        self.assertNotIn("truncated", r)

    def test_small_output_every_byte(self):
        r = self.run_ok("import os\nos.write(1, bytes(range(256)))\nos.write(2, b'\\x1b[31mred\\x1b[0m\\\\\"')\nNone")
        self.assertEqual(r["stdout"], bytes(range(256)).decode("utf-8", "replace"))
        self.assertEqual(r["stderr"], "\x1b[31mred\x1b[0m\\\"")

    def test_stderr_larger_than_a_pipe(self):
        r = self.run_ok("import sys\nsys.stderr.write('e' * (3 << 20))\nprint('out')")
        self.assertEqual(r["stderr"], "e" * (3 << 20))
        self.assertEqual(r["stdout"], "out\n")

    def test_child_process_flood_capped(self):
        r = self.run_ok("import subprocess\n"
                        "subprocess.run('head -c 20000000 /dev/zero | tr \"\\\\0\" x; echo tail >&2', shell=True)\n"
                        "None")
        self.assertTrue(r.get("truncated"))
        self.assertEqual(r["stdout"], "x" * CAP)
        self.assertEqual(r["stderr"], "tail\n")
        r = self.run_ok("print('next')")
        self.assertEqual(r["stdout"], "next\n")
        self.assertNotIn("truncated", r)

    def test_background_output_larger_than_a_pipe(self):
        # Written after its cell ended, by a process holding that cell's pipe:
        # it is drained (the writer never blocks) and opens the next RESULT.
        marker = os.path.join(self.tmp, "done")
        r = self.run_ok("import subprocess\n"
                        "subprocess.Popen('sleep 0.2; head -c 3000000 /dev/zero | tr \"\\\\0\" y; touch %s',"
                        " shell=True)\nprint('started')" % marker)
        self.assertEqual(r["stdout"], "started\n")
        wait_for_file(marker)
        r = self.run_ok("print('next')")
        self.assertEqual(r["stdout"], "y" * 3000000 + "next\n")

    def test_background_flood_does_not_hang(self):
        # `yes` keeps its pipe full: reading it must not hold up the cell's
        # end (DRAIN_GRACE) or the next cells.
        t0 = time.monotonic()
        r = self.run_ok("import subprocess\np = subprocess.Popen(['yes'])\nNone")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertTrue(r["stdout"].startswith("y\ny\n"), r["stdout"][:20])
        t0 = time.monotonic()
        r = self.run_ok("p.kill()\np.wait()\nprint('killed')")
        self.assertLess(time.monotonic() - t0, 2.0)
        # what it wrote between the cells opens the RESULT, up to the cap
        self.assertTrue(r["stdout"].endswith("y\nkilled\n") or r.get("truncated"), r["stdout"][-20:])
        r = self.run_ok("print('clean')")
        self.assertEqual(r["stdout"], "clean\n")

    def test_print_loop(self):
        r = self.run_ok("for i in range(30000):\n    print('line', i)\n"
                        "    if i % 1000 == 0: print('err', i, file=__import__('sys').stderr)")
        self.assertEqual(r["stdout"], "".join("line %d\n" % i for i in range(30000)))
        self.assertEqual(r["stderr"], "".join("err %d\n" % i for i in range(0, 30000, 1000)))

    # ---- linecache, site

    def test_sources_reach_linecache_imported_mid_cell(self):
        # The server imports linecache only when something needs it; whatever
        # imports it first (here traceback and inspect, within a cell) still
        # sees the sources of that cell and earlier ones.  (Python 3.13 imports
        # linecache at start-up for -c.)
        srv, conn = self.fresh()
        r = conn.run("import sys\ndef f():\n    return 1 / 0\n"
                     "'linecache' not in sys.modules or sys.version_info >= (3, 13)")
        self.assertEqual(r["value"], "True", r)
        r = conn.run("import traceback, inspect\ntry:\n    f()\nexcept ZeroDivisionError:\n"
                     "    traceback.print_exc()\ninspect.getsource(f)")
        self.assertEqual(r["status"], "ok", r)
        self.assertIn("    f()\n", r["stderr"])
        self.assertIn("    return 1 / 0\n", r["stderr"])
        self.assertEqual(r["value"], repr("def f():\n    return 1 / 0\n"))
        r = conn.run("import warnings\nwarnings.warn('careful')")
        self.assertIn("UserWarning: careful\n  warnings.warn('careful')\n", r["stderr"])

    def test_site_packages_and_builtins(self):
        # Under -S (kernels.toml) the server puts the site-packages directories
        # on sys.path itself and defines what site adds to builtins.
        ref = subprocess.run([PYTHON, "-I", "-c",
                              "import json, os, site\n"
                              "print(json.dumps([d for d in site.getsitepackages() if os.path.isdir(d)]))"],
                             stdout=subprocess.PIPE, check=True)
        site_dirs = json.loads(ref.stdout)
        r = self.run_ok("import sys\nimport json\njson.dumps(sys.path)")
        path = json.loads(eval(r["value"]))
        self.assertEqual([p for p in path if p in site_dirs], site_dirs)
        r = self.run_ok("[repr(exit), repr(quit), repr(copyright)[:9], repr(credits)[:10],"
                        " repr(license)[:10], repr(help)[:10]]")
        self.assertEqual(eval(r["value"]), ["Use exit() or Ctrl-D (i.e. EOF) to exit",
                                            "Use quit() or Ctrl-D (i.e. EOF) to exit",
                                            "Copyright", "    Thanks", "Type licen", "Type help("])
        # A third-party package installed there imports (when there is one).
        for d in site_dirs:
            for name in sorted(os.listdir(d)):
                if (name.isidentifier() and not name.startswith("_")
                        and os.path.isfile(os.path.join(d, name, "__init__.py"))
                        and subprocess.run([PYTHON, "-I", "-c", "import " + name],
                                           stderr=subprocess.DEVNULL).returncode == 0):
                    r = self.run_ok("import %s\n%s.__file__" % (name, name))
                    self.assertTrue(eval(r["value"]).startswith(d), r)
                    return


@unittest.skipIf(PY_KERNEL_CMD is None, "no tomllib (Python < 3.11) to read kernels.toml")
class PythonKernelCommandTests(PythonServerTests):
    """All the Python tests again, with the server started by the python
    kernel's command line in kernels.toml, its source on stdin."""
    CMD = PY_KERNEL_CMD
    STDIN = PY_SOURCE
    SERVER_FILE = "<evaler-server>"

    def test_command_is_the_lean_one(self):
        # -S and compiling the source with compile(): see the README.  If the
        # command changes, the memory figures there need measuring again.
        self.assertIn("-S", self.CMD)
        srv, conn = self.fresh()
        r = conn.run("import sys\n[m for m in ('site', 'tokenize', 'ctypes') if m in sys.modules]")
        self.assertEqual(r["value"], "[]", r)


if not RUBY and os.environ.get("EVALER_TEST_REQUIRE_RUBY"):
    raise RuntimeError("EVALER_TEST_REQUIRE_RUBY is set but no ruby was found")


@unittest.skipIf(not RUBY, "ruby not installed (apt-get install -y ruby)")
class RubyServerTests(ServerTests, unittest.TestCase):
    CMD = RB_CMD
    SERVER_FILE = "server.rb"
    S = {
        "set_state": "x = 41",
        "use_state": "x + 1",
        "use_state_literal": "3 + 4",
        "value": "[1, 2] + [3]",
        "no_value": "puts 'x'",
        "underscore": "_.size",
        "namespace": "[self.to_s, local_variables, defined?(EvalerServer), ARGV]",
        "namespace_expected": '["main", [], nil, []]',
        "print_both": "puts 'out1'\n$stderr.puts 'err1'\nprint 'out2'\nnil",
        "children": "puts 'a'\nsystem('echo b')\npid = spawn('echo c'); Process.wait(pid)\n"
                    "system('echo e1 >&2')\n$stderr.puts 'e2'\nprint 'd'\nnil",
        "ordering": "5.times { |i| puts i; system(\"echo s#{i}\") }\nnil",
        "many_lines": "2000.times { |i| puts i }\nnil",
        "unflushed": "$stdout.sync = false\nprint 'buffered'\nnil",
        "after_unflushed": "puts 'next'",
        "c_printf": "require 'fiddle'\nputs 'lang'\nFiddle::Function.new(Fiddle::Handle::DEFAULT['printf'], "
                    "[Fiddle::TYPE_VOIDP], Fiddle::TYPE_INT).call('c-level')\nnil",
        "non_utf8": "$stdout.write(\"\\xff\\n\".b)\nnil",
        "one_mib": "puts 'x' * (1 << 20)",
        "nine_mib": "$stdout.write('y' * (9 << 20))\n$stderr.puts 'tail'\nnil",
        "background": "Process.detach(spawn('sleep 0.3; echo late-proc; touch %s'))\nputs 'done'",
        "late_thread": "Thread.new { sleep 0.1; puts 'late-thread'; $stderr.puts 'late-err'; File.write(%r, '') }\nnil",
        "at_exit": "at_exit { puts 'at exit' }\nputs 'cell'\nexit 2",
        "stdin": "[gets, $stdin.read, STDIN.eof?]",
        "stdin_expected": '[nil, "", true]',
        "raise": "def boom\n  raise ArgumentError, 'bad'\nend\n\nboom",
        "raise_expected": ["<cell-", ":2:in `boom': bad (ArgumentError)\n", ":5:in `<main>'"],
        "syntax": "x = (1,\n",
        "syntax_expected": "syntax error",
        "sleep": "puts 'before'\nFile.write(%r, '')\nsleep 30",
        "interrupt_expected": "Interrupt",
        "exit0": "exit",
        "exit3": "exit 3",
        "exit_msg": "abort 'bye'",
        "runandkill": "puts 'hi'\n1 + 1",
        "hard_exit": "exit!(3)",
        "fd_mode": "puts 'fd mode'\n6 * 7",
    }

    def test_methods_and_constants_persist(self):
        self.run_ok("def triple(v) = v * 3\nclass Foo; BAR = 5; end")
        r = self.run_ok("triple(Foo::BAR)")
        self.assertEqual(r["value"], "15")

    def test_require_loads_rubygems_lazily(self):
        # started with --disable-gems: a require that fails loads RubyGems and
        # retries (so installed gems work); a missing library still fails.
        if "--disable-gems" not in RB_ARGS:
            self.skipTest("RubyGems enabled")
        srv, conn = self.fresh()
        self.assertNotIn("value", conn.run("defined?(Gem)"))
        r = conn.run("require 'set'\nSet[1].size")
        self.assertEqual(r["value"], "1")
        r = conn.run("require 'evaler_no_such_lib'")
        self.assertEqual(r["status"], "error")
        self.assertIn("cannot load such file -- evaler_no_such_lib (LoadError)", r["stderr"])
        self.assertNotIn(self.SERVER_FILE, r["stderr"])
        self.assertEqual(conn.run("defined?(Gem)")["value"], '"constant"')
        # minitest is a bundled gem (in Debian's libruby3.1): only RubyGems finds it
        r = conn.run("require 'minitest'\nMinitest::VERSION.class")
        self.assertEqual(r["value"], "String", r)


if __name__ == "__main__":
    unittest.main()
