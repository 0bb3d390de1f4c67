"""evaler Python session server (standard library only, single file).

Runs notebook-style cells in one persistent namespace and speaks evaler's
newline-delimited JSON session protocol over an already-connected stream
socket.  See README.md beside this file for the protocol, the command lines
and the design notes.

Transport (exactly one):
  * default / production: the socket is the fd named by $EVALER_FD (default 3),
    handed over by the supervisor (`evaler kernel`);
  * --connect HOST:PORT: connect out to a listening test harness;
  * --listen HOST:PORT: accept one client at a time, keep state across
    reconnects; prints "LISTENING host:port" on stdout once bound (port 0 ok).

Everything the server needs lives in this module's globals; the user's code
runs in a separate namespace (a fresh ``__main__`` module), so none of these
names are visible to it.
"""

# Only built-in / C modules at start-up: importing json, signal, linecache
# and friends would pull in re, enum, tokenize... and double the start time.
import os
import sys
import io
import _thread
import _signal
import select
import builtins
from time import perf_counter, sleep

MAX_LINE = 64 << 20          # largest accepted packet line, bytes
OUTPUT_CAP = 8 << 20         # per stream and cell, bytes
VALUE_CAP = 64 << 10         # repr of the trailing value, characters
DRAIN_GRACE = 0.1            # seconds to wait for EOF on the capture pipes
EXIT_GRACE = 2.0             # seconds allowed for the whole exit() path
THREAD_GRACE = 0.5           # ... of which waiting for non-daemon threads
PyCF_ONLY_AST = 0x400

try:
    OUTPUT_CAP = int(os.environ.get("EVALER_OUTPUT_CAP", OUTPUT_CAP))
except ValueError:
    pass

_default_int = _signal.default_int_handler
SIGINT = _signal.SIGINT
_CodeType = type((lambda: None).__code__)
_SERVER_FILE = (lambda: None).__code__.co_filename
_SELF = sys.modules[__name__]   # keeps this module alive once unregistered
_PID = os.getpid()
_STDLIB = os.path.dirname(os.__file__) + os.sep
# A first cell mentioning one of these gets linecache before it runs.
_NEEDS_LINECACHE = ("traceback", "linecache", "inspect", "warn", "logging", "pdb", "exc_info")



class Oversized(Exception):
    pass


class ClientGone(Exception):
    pass


def _sigint_idle(signum, frame):
    # SIGINT handler between cells: ignore (the supervisor's INTERRUPT may race
    # with the end of a cell).  While a cell runs, SIGINT is handled by
    # default_int_handler (C, so no server frame in the traceback) or
    # by whatever handler the user installed.
    pass


def _ensure_std_fds():
    """fds 0-2 must be open (so pipes never land there); stdin is /dev/null."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            n = os.open(os.devnull, os.O_WRONLY)
            if n != fd:
                os.dup2(n, fd)
                os.close(n)
    try:
        n = os.open(os.devnull, os.O_RDONLY)
    except OSError:                       # no /dev/null: an empty pipe does
        n, w = os.pipe()
        os.close(w)
    if n != 0:
        os.dup2(n, 0)
        os.close(n)


def _stdlib_import(name):
    """Import a stdlib module lazily without letting the user's cwd shadow it."""
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    saved = sys.path[:]
    try:
        sys.path[:] = [p for p in saved if p not in ("", ".", os.getcwd())]
        __import__(name)
        return sys.modules[name]
    finally:
        sys.path[:] = saved


# --------------------------------------------------------------------------
# JSON: the C accelerator directly (the json package imports re, ~5 ms).

try:
    from _json import make_scanner as _make_scanner, encode_basestring as _enc_str

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float          # NaN, Infinity, -Infinity
        memo = None

    _scan = _make_scanner(_ScanContext())
    _WS = " \t\n\r"

    def _loads(data):
        s = data.decode("utf-8")
        i = len(s) - len(s.lstrip(_WS))
        try:
            obj, end = _scan(s, i)
        except StopIteration as e:
            raise ValueError("Expecting value: line 1 column %d (char %d)" % (e.value + 1, e.value)) from None
        if s[end:].strip(_WS):
            raise ValueError("Extra data: line 1 column %d (char %d)" % (end + 1, end))
        return obj

    def _dumps(obj):
        """Our replies only: a flat dict of str, int, float and bool."""
        parts = []
        for k, v in obj.items():
            t = v.__class__
            if t is str:
                v = _enc_str(v)
            elif v is True:
                v = "true"
            elif v is False:
                v = "false"
            elif t is int:
                v = int.__repr__(v)
            elif t is float and v == v and v not in (float("inf"), float("-inf")):
                v = float.__repr__(v)
            else:
                v = _enc_str(str(v))
            parts.append(_enc_str(k) + ":" + v)
        return "{" + ",".join(parts) + "}"
except ImportError:                                  # pragma: no cover
    import json as _json_mod

    def _loads(data):
        return _json_mod.loads(data.decode("utf-8"))

    def _dumps(obj):
        return _json_mod.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------
# Transport: newline-delimited JSON over a stream fd


class Transport:
    def __init__(self, fd, sock=None):
        self.fd = fd
        self.sock = sock                  # keeps a socket object alive
        self.buf = bytearray()
        self.scan = 0
        os.set_blocking(fd, True)

    def readline(self):
        """Next line without its newline; None at EOF; Oversized past MAX_LINE."""
        buf = self.buf
        while True:
            i = buf.find(b"\n", self.scan)
            if i >= 0:
                line = bytes(buf[:i])
                del buf[:i + 1]
                self.scan = 0
                return line
            self.scan = len(buf)
            if len(buf) > MAX_LINE:
                raise Oversized
            try:
                data = os.read(self.fd, 1 << 20 if len(buf) > 1 << 16 else 1 << 16)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if buf:                   # last line without newline
                    line = bytes(buf)
                    buf.clear()
                    self.scan = 0
                    if len(line) > MAX_LINE:
                        raise Oversized
                    return line
                return None
            buf += data

    def pending(self):
        """Is a packet (or part of one) already waiting?"""
        if self.buf:
            return True
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return bool(p.poll(0))

    def send(self, obj):
        data = (_dumps(obj) + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as e:
            raise ClientGone from e

    def shutdown(self):
        """Make the peer see EOF now, even if a forked child holds the fd."""
        try:
            socket = _stdlib_import("socket")
            s = self.sock or socket.socket(fileno=os.dup(self.fd))
            s.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass

    def close(self):
        try:
            if self.sock is not None:
                self.sock.close()
            else:
                os.close(self.fd)
        except OSError:
            pass


# --------------------------------------------------------------------------
# fd-level output capture


class Capture:
    """fds 1 and 2 always point into pipes drained by one persistent thread.

    While a cell runs they are that cell's own pipes, so the end of the cell's
    output is their EOF (awaited for at most DRAIN_GRACE: a background process
    may hold them).  Between cells they are two idle pipes.  Everything read
    goes into one capped buffer per stream, which each RESULT takes: output
    written between cells (background threads and processes) shows at the
    start of the next cell's output instead of being lost or reaching the
    server's own stdout/stderr (which the supervisor caps).  Pipes of earlier
    cells still held by background processes keep being drained (up to
    MAX_LINGER of them), so those processes don't die of SIGPIPE.
    """

    MAX_LINGER = 16

    def __init__(self):
        self.real = (os.dup(1), os.dup(2))        # non-inheritable copies
        self.mu = _thread.allocate_lock()         # guards chunks/sizes/truncated/cmds
        self.cell_done = _thread.allocate_lock()
        self.cell_done.acquire()
        self.cmds = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self._reset()
        ir1, iw1 = os.pipe()
        ir2, iw2 = os.pipe()
        self.idle_w = (iw1, iw2)
        self.streams = {ir1: 0, ir2: 1}           # read fd -> stream (reader thread's)
        for fd in self.streams:
            os.set_blocking(fd, False)
        self.cell_fds = set()
        self.cell_pending = False
        self.linger = []
        os.dup2(iw1, 1)
        os.dup2(iw2, 2)
        _thread.start_new_thread(self._loop, ())

    def _reset(self):
        self.chunks = ([], [])
        self.sizes = [0, 0]
        self.truncated = False

    def _command(self, cmd):
        with self.mu:
            self.cmds.append(cmd)
        os.write(self.wake_w, b"x")

    def start(self):
        r1, w1 = os.pipe()
        try:
            r2, w2 = os.pipe()
        except OSError:
            os.close(r1)
            os.close(w1)
            raise
        os.set_blocking(r1, False)
        os.set_blocking(r2, False)
        os.dup2(w1, 1)
        os.dup2(w2, 2)
        os.close(w1)
        os.close(w2)
        self._command(("cell", r1, r2))

    def stop(self):
        """Back to the idle pipes; returns (stdout, stderr, truncated) since
        the previous stop()."""
        os.dup2(self.idle_w[0], 1)
        os.dup2(self.idle_w[1], 2)
        # Our copies of the cell's write ends are gone: EOF comes unless a
        # background process still holds one.  Wait for it DRAIN_GRACE at most.
        if not self.cell_done.acquire(True, DRAIN_GRACE):
            self._command(("release",))
            self.cell_done.acquire()
        return self.take()

    def take(self):
        with self.mu:
            out = (b"".join(self.chunks[0]), b"".join(self.chunks[1]), self.truncated)
            self._reset()
        return out

    def _loop(self):
        try:                    # SIGINT is for the main thread (the cell)
            _signal.pthread_sigmask(_signal.SIG_BLOCK, [SIGINT])
        except (AttributeError, OSError, ValueError):
            pass
        poll = select.poll()
        streams = self.streams
        cell = self.cell_fds
        linger = self.linger
        wake = self.wake_r
        cap = OUTPUT_CAP
        for fd in streams:
            poll.register(fd, select.POLLIN)
        poll.register(wake, select.POLLIN)

        def drop(fd):
            try:
                poll.unregister(fd)
            except KeyError:
                pass
            streams.pop(fd, None)
            try:
                os.close(fd)
            except OSError:
                pass

        def take_in(fd, i, data):
            with self.mu:
                room = cap - self.sizes[i]
                if len(data) > room:
                    self.truncated = True
                    data = data[:room] if room > 0 else b""
                if data:
                    self.chunks[i].append(data)
                    self.sizes[i] += len(data)

        def drain():
            # Read what already sits in the pipes now, not at the next poll:
            # at a cell's start, so that output written between cells comes
            # before the cell's own; at its end, so that it is in this RESULT.
            for fd, i in list(streams.items()):
                for _ in range(16):
                    try:
                        data = os.read(fd, 1 << 16)
                    except OSError:
                        break                   # EAGAIN: drained (EOF: next poll)
                    if not data:
                        break
                    take_in(fd, i, data)

        def finish_cell():
            drain()
            self.cell_pending = False
            self.cell_done.release()

        while True:
            try:
                events = poll.poll()
            except OSError:
                continue
            for fd, _ev in events:
                try:
                    if fd == wake:
                        try:
                            while os.read(wake, 4096):
                                pass
                        except OSError:
                            pass
                        with self.mu:
                            cmds, self.cmds = self.cmds, []
                        for cmd in cmds:
                            if cmd[0] == "cell":
                                drain()
                                for i, r in enumerate(cmd[1:]):
                                    streams[r] = i
                                    poll.register(r, select.POLLIN)
                                    cell.add(r)
                                self.cell_pending = True
                            elif cmd[0] == "release" and self.cell_pending:
                                linger.extend(cell)
                                cell.clear()
                                while len(linger) > self.MAX_LINGER:
                                    drop(linger.pop(0))
                                finish_cell()
                        continue
                    i = streams.get(fd)
                    if i is None:
                        continue
                    try:
                        data = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        take_in(fd, i, data)
                        continue
                    drop(fd)                      # EOF
                    if fd in cell:
                        cell.discard(fd)
                        if not cell and self.cell_pending:
                            finish_cell()
                    elif fd in linger:
                        linger.remove(fd)
                except BaseException:             # never let the reader die
                    pass


# --------------------------------------------------------------------------
# The session


def _fresh_text(fd, mode, errors):
    raw = io.FileIO(fd, mode, closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors,
                            line_buffering=False, write_through=(mode == "w"))


class Session:
    def __init__(self):
        self.count = 0
        self.transport = None             # the connection being served
        self.exit_lock = _thread.allocate_lock()   # who sends the last RESULT
        self.sources = {}                 # cell sources not yet in linecache
        self.warm = False
        main = type(sys)("__main__")
        main.__dict__.update(__builtins__=builtins, __doc__=None, __package__=None,
                             __spec__=None, __loader__=None)
        self.ns = main.__dict__
        self.main = main
        self.capture = Capture()
        self.user_sigint = None           # a SIGINT handler the user installed
        self.nmods = 0
        self.fflush = None                # C stdio fflush, once needed
        self.want_fflush = False
        self._stdio(force=True)

    def _stdio(self, force=False):
        """Each cell starts with sys.std* on fds 0-2 (unbuffered writers, so
        print and child processes interleave in order)."""
        if force or self.out.closed:
            self.out = _fresh_text(1, "w", "surrogateescape")
        if force or self.err.closed:
            self.err = _fresh_text(2, "w", "backslashreplace")
        if force or self.inp.closed:
            self.inp = _fresh_text(0, "r", "surrogateescape")
        sys.stdout = sys.__stdout__ = self.out
        sys.stderr = sys.__stderr__ = self.err
        sys.stdin = sys.__stdin__ = self.inp

    def _flush_all(self):
        for f in (sys.stdout, sys.stderr, self.out, self.err):
            try:
                f.flush()
            except BaseException:
                pass
        # C stdio (printf from ctypes / C extensions) is buffered when fd 1 is
        # a pipe.  Importing ctypes costs ~5 ms, so only once it can matter.
        if self.fflush is None:
            mods = sys.modules
            if len(mods) != self.nmods:
                self.nmods = len(mods)
                if "_ctypes" in mods or "_cffi_backend" in mods:
                    self.want_fflush = True
                else:
                    for m in list(mods.values()):
                        f = getattr(m, "__file__", None)
                        if isinstance(f, str) and f.endswith(".so") and not f.startswith(_STDLIB):
                            self.want_fflush = True
                            break
            if self.want_fflush:
                try:
                    ctypes = _stdlib_import("ctypes")
                    self.fflush = ctypes.CDLL(None).fflush
                except BaseException:
                    self.fflush = False
        if self.fflush:
            try:
                self.fflush(None)
            except BaseException:
                pass

    def _register_source(self, fn, code):
        """Make the cell's source visible to tracebacks (linecache)."""
        entry = (len(code), None, code.splitlines(True), fn)
        self.sources[fn] = entry
        lc = sys.modules.get("linecache")
        if lc is None and self.count == 1 and any(w in code for w in _NEEDS_LINECACHE):
            lc = _stdlib_import("linecache")
        if lc is not None:
            lc.cache.update(self.sources)
            self.sources.clear()

    def _prune_source(self, fn, *code_objs):
        """Forget the source of a cell that left no code behind (no def,
        class, lambda, comprehension): nothing can show it in a traceback
        any more, and a long session would otherwise keep every cell."""
        for co in code_objs:
            if co is not None:
                for c in co.co_consts:
                    if type(c) is _CodeType:
                        return
        self.sources.pop(fn, None)
        lc = sys.modules.get("linecache")
        if lc is not None:
            lc.cache.pop(fn, None)

    def warm_up(self):
        """Called once while idle after the first cell: import what errors
        and tracebacks need (kept out of the start-up path)."""
        self.warm = True
        try:
            _stdlib_import("traceback")
            sys.modules["linecache"].cache.update(self.sources)
            self.sources.clear()
        except BaseException:
            pass

    def _idle_sigint(self):
        """Back to ignoring SIGINT; remember a handler the cell installed."""
        prev = _signal.signal(SIGINT, _sigint_idle)
        if prev is not _sigint_idle:
            self.user_sigint = None if prev is _default_int else prev

    def _format_exc(self, e):
        traceback = _stdlib_import("traceback")
        sys.modules["linecache"].cache.update(self.sources)
        self.sources.clear()
        if isinstance(e, SyntaxError) and not e.text and e.lineno and e.filename:
            try:                           # raised compiling the AST: no text
                e.text = sys.modules["linecache"].getline(e.filename, e.lineno) or None
            except BaseException:
                pass
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _SERVER_FILE:
            tb = tb.tb_next
        try:
            return "".join(traceback.format_exception(type(e), e, tb))
        except BaseException:
            return "%s: %s\n" % (type(e).__name__, e)

    def run(self, code, final=False):
        """Run one cell.  Returns (RESULT, None), or (RESULT, process exit
        code) when the server must exit after sending it: the cell called
        exit(), or `final` (RUNANDKILL).  Before returning in that case it has
        already run the interpreter's shutdown steps (threads, atexit), whose
        output is in the RESULT."""
        self.count += 1
        fn = "<cell-%d>" % self.count
        self._register_source(fn, code)
        self._stdio()
        ns = self.ns
        status = "ok"
        value = None
        exit_code = None
        extra_err = ""
        t0 = perf_counter()
        fallback = None
        code_obj = expr_obj = None
        try:
            self.capture.start()
        except OSError as e:
            # e.g. EMFILE: the cell used up the fds.  Run it anyway (it may be
            # the one that frees them), capturing Python-level output only.
            fallback = (io.StringIO(), io.StringIO())
            sys.stdout, sys.stderr = fallback
            extra_err = "evaler: output of the cell may be incomplete (%s)\n" % e
        try:
            try:
                try:
                    tree = compile(code, fn, "exec", PyCF_ONLY_AST, True)
                except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError, UnicodeError) as e:
                    traceback = _stdlib_import("traceback")
                    sys.modules["linecache"].cache.update(self.sources)
                    self.sources.clear()
                    status = "error"
                    extra_err += "".join(traceback.format_exception_only(type(e), e))
                    tree = None
                if tree is not None:
                    body = tree.body
                    last = None
                    if body and isinstance(body[-1], _Expr):
                        last = body.pop()
                    code_obj = compile(tree, fn, "exec", 0, True)
                    if last is not None:
                        expr_obj = compile(_Expression(last.value), fn, "eval", 0, True)
                    _signal.signal(SIGINT, _default_int if self.user_sigint is None else self.user_sigint)
                    exec(code_obj, ns)
                    if expr_obj is not None:
                        v = eval(expr_obj, ns)
                        if v is not None:
                            ns["_"] = v
                            r = repr(v)
                            if len(r) > VALUE_CAP:
                                r = r[:VALUE_CAP] + "..."
                                self.capture.truncated = True
                            value = r
            finally:
                self._idle_sigint()
        except SystemExit as e:
            exit_code, msg = _exit_status(e.code)
            status = "exited"
            if msg is not None:
                extra_err += msg + "\n"
        except KeyboardInterrupt as e:
            status = "interrupted"
            extra_err += self._format_exc(e)
        except BaseException as e:
            status = "error"
            extra_err += self._format_exc(e)
        self._idle_sigint()
        elapsed = perf_counter() - t0
        self._prune_source(fn, code_obj, expr_obj)
        if os.getpid() != _PID:
            # A child forked by the cell (os.fork) got back here: finish it as
            # a plain interpreter would, never let it touch the protocol.
            self._flush_all()
            if extra_err:
                try:
                    os.write(2, extra_err.encode("utf-8", "backslashreplace"))
                except OSError:
                    pass
            os._exit((exit_code if exit_code is not None else 1 if status != "ok" else 0) & 0xFF)
        fields = (status, value, elapsed, exit_code, extra_err)
        leave = exit_code if exit_code is not None else 0 if final else None
        if leave is not None:
            _thread.start_new_thread(self._watchdog, (leave, fields))
            self._finalize()
        self._flush_all()
        if fallback is None:
            out, err, truncated = self.capture.stop()
        else:
            # fd-level output went to the idle pipes: take what has arrived
            self._flush_all()
            out, err, truncated = self.capture.take()
            out += fallback[0].getvalue().encode("utf-8", "replace")
            err += fallback[1].getvalue().encode("utf-8", "replace")
        return _reply(out, err, truncated, *fields), leave

    def _finalize(self):
        """The interpreter's shutdown, inside the cell's capture: let
        non-daemon threads finish (THREAD_GRACE at most), run atexit
        handlers, drop the namespace so open files get flushed."""
        threading = sys.modules.get("threading")
        if threading is not None:
            try:
                deadline = perf_counter() + THREAD_GRACE
                main = threading.main_thread()
                for t in threading.enumerate():
                    if t is not main and not t.daemon:
                        t.join(max(0.0, deadline - perf_counter()))
                if not any(t is not main and not t.daemon and t.is_alive()
                           for t in threading.enumerate()):
                    threading._shutdown()
            except BaseException:
                pass
        atexit = sys.modules.get("atexit")
        try:
            if atexit is None:
                import atexit
            atexit._run_exitfuncs()
        except BaseException:
            pass
        try:
            self.ns.clear()
        except BaseException:
            pass

    def _watchdog(self, code, fields):
        """Exit after EXIT_GRACE even if _finalize hangs (an atexit handler
        or __del__ blocking): send the RESULT with what was captured."""
        try:
            _signal.pthread_sigmask(_signal.SIG_BLOCK, [SIGINT])
        except BaseException:
            pass
        sleep(EXIT_GRACE)
        if not self.exit_lock.acquire(False):
            return                       # the main thread is sending it
        try:
            out, err, truncated = self.capture.take()
            reply = _reply(out, err, truncated, *fields)
            reply["stderr"] += "evaler: shutdown still running after %gs, exiting\n" % EXIT_GRACE
            self.transport.send(reply)
        except BaseException:
            pass
        finally:
            try:
                self.transport.shutdown()
            finally:
                os._exit(code & 0xFF)


def _reply(out, err, truncated, status, value, elapsed, exit_code, extra_err):
    reply = {"type": "RESULT",
             "stdout": out.decode("utf-8", "replace"),
             "stderr": err.decode("utf-8", "replace") + extra_err,
             "status": status}
    if value is not None:
        reply["value"] = value
    reply["time"] = elapsed
    if exit_code is not None:
        reply["exit_code"] = exit_code
    if truncated:
        reply["truncated"] = True
    return reply


_Expression = _Expr = None


def _exit_status(code):
    """(exit code, message for stderr or None) as the interpreter does it."""
    if code is None:
        return 0, None
    if isinstance(code, int):
        return int(code), None
    try:
        return 1, str(code)
    except BaseException:
        return 1, None


def _error(message):
    return {"type": "Error", "value": message}


def serve(session, transport):
    """Serve one connection.  Returns at EOF/oversize; exits the process on
    exit()/RUNANDKILL/KILL."""
    session.transport = transport
    while True:
        if not session.warm and session.count and not transport.pending():
            session.warm_up()
        try:
            line = transport.readline()
        except Oversized:
            try:
                transport.send(_error("packet too large: line exceeds %d bytes; closing the connection" % MAX_LINE))
            except ClientGone:
                pass
            return
        if line is None:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            continue
        try:
            pkt = _loads(line)
        except UnicodeDecodeError as e:
            reply = _error("invalid JSON: packet is not valid UTF-8 (%s)" % e)
        except (ValueError, RecursionError) as e:
            reply = _error("invalid JSON: %s" % e)
        else:
            reply = None
            if not isinstance(pkt, dict):
                reply = _error("packet must be a JSON object, got %s" % type(pkt).__name__)
            else:
                kind = pkt.get("type")
                if not isinstance(kind, str):
                    reply = _error('packet has no string "type" field')
                elif kind == "RUN" or kind == "RUNANDKILL":
                    code = pkt.get("code")
                    if not isinstance(code, str):
                        reply = _error('%s packet needs a string "code" field' % kind)
                    else:
                        try:
                            reply, leave = session.run(code, kind == "RUNANDKILL")
                        except Exception as e:    # a bug of ours: say so, keep serving
                            reply, leave = _error("internal server error: %r" % (e,)), None
                            if kind == "RUNANDKILL":
                                leave = 0
                        if leave is None:
                            try:
                                transport.send(reply)
                            except ClientGone:
                                return
                            continue
                        # exit() in the cell, or RUNANDKILL: last reply, then exit
                        if not session.exit_lock.acquire(False):
                            while True:           # the watchdog is sending it
                                sleep(60)
                        try:
                            transport.send(reply)
                        except ClientGone:
                            pass
                        transport.shutdown()
                        os._exit(leave & 0xFF)
                elif kind == "PING":
                    reply = {"type": "CONNECTION-OK"}
                elif kind == "KILL":
                    os._exit(0)
                elif kind == "INTERRUPT":
                    continue                # idle: nothing to interrupt
                else:
                    reply = _error("unknown packet type %r" % kind)
        try:
            transport.send(reply)
        except ClientGone:
            return


def _parse_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT, got %r" % s)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _usage(msg):
    sys.stderr.write("server.py: %s\nusage: server.py [--listen HOST:PORT | --connect HOST:PORT]"
                     "  (default: socket on fd $EVALER_FD, else 3)\n" % msg)
    sys.exit(2)


def main(argv):
    global _Expression, _Expr
    mode, addr = None, None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("--listen", "--connect"):
            if not args:
                _usage("%s needs HOST:PORT" % a)
            mode, addr = a[2:], args.pop(0)
        elif a.startswith("--listen=") or a.startswith("--connect="):
            mode, _, addr = a[2:].partition("=")
        else:
            _usage("unknown argument %r" % a)
    if addr is not None:
        try:
            addr = _parse_hostport(addr)
        except ValueError as e:
            _usage(str(e))

    import _ast
    _Expression = _ast.Expression
    _Expr = _ast.Expr
    if not hasattr(builtins, "exit"):     # started with -S: no site.Quitter
        def exit(code=None):
            raise SystemExit(code)
        builtins.exit = builtins.quit = exit

    proto_fd = None
    if mode is None:
        try:
            proto_fd = int(os.environ.get("EVALER_FD", "3"))
            os.fstat(proto_fd)
        except (ValueError, OSError) as e:
            _usage("no protocol socket: EVALER_FD=%r: %s" % (os.environ.get("EVALER_FD"), e))
        # Move it out of the way of user fds and of children.
        try:
            import fcntl
            high = fcntl.fcntl(proto_fd, fcntl.F_DUPFD_CLOEXEC, 64)
            if proto_fd > 2:
                os.close(proto_fd)
            proto_fd = high
        except OSError:
            os.set_inheritable(proto_fd, False)

    _ensure_std_fds()
    _signal.signal(SIGINT, _sigint_idle)
    session = Session()

    # Hide the server from the user's code.
    sys.modules["__main__"] = session.main
    sys.argv = [""]
    if "" not in sys.path:
        sys.path.insert(0, "")

    transport_ref = []

    def close_in_child():                 # forked children must not hold it
        for t in transport_ref:
            try:
                os.close(t.fd)
            except OSError:
                pass
    os.register_at_fork(after_in_child=close_in_child)

    if mode is None:
        t = Transport(proto_fd)
        transport_ref.append(t)
        serve(session, t)
        os._exit(0)

    import socket
    if mode == "connect":
        s = socket.create_connection(addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = Transport(s.fileno(), s)
        transport_ref.append(t)
        serve(session, t)
        os._exit(0)

    infos = socket.getaddrinfo(addr[0], addr[1], 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(sockaddr)
    ls.listen(8)
    host, port = ls.getsockname()[:2]
    shown = "[%s]" % host if ":" in host else host
    os.write(session.capture.real[0], ("LISTENING %s:%d\n" % (shown, port)).encode())
    while True:
        try:
            conn, _ = ls.accept()
        except InterruptedError:
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = Transport(conn.fileno(), conn)
        transport_ref[:] = [t]
        serve(session, t)
        t.close()
        transport_ref[:] = []


if __name__ == "__main__":
    main(sys.argv[1:])
