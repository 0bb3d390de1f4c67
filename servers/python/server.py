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
from fcntl import fcntl as _fcntl
from time import perf_counter, sleep

MAX_LINE = 64 << 20          # largest accepted packet line, bytes
OUTPUT_CAP = 8 << 20         # per stream and cell, bytes
VALUE_CAP = 64 << 10         # repr of the trailing value, characters
DRAIN_GRACE = 0.1            # seconds to wait for EOF on the capture pipes
EXIT_GRACE = 2.0             # seconds allowed for the whole exit() path
THREAD_GRACE = 0.5           # ... of which waiting for non-daemon threads
PIPE_READ = 1 << 16          # read size for the capture pipes (their default size)
PIPE_BIG = 1 << 20           # ... once one fills up: grow it (pipe-max-size default)
READER_PAUSE = 0.001         # capture reader's pause before reading a cell's output
TRIM_DELAY = 1.0             # idle seconds after a cell before giving memory back
HEAP_KEEP = 8 << 20          # free C heap kept until then (M_TRIM_THRESHOLD, see _tune_malloc)
HEAP_MMAP = 4 << 20          # larger blocks are mmap'ed (M_MMAP_THRESHOLD)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
F_SETPIPE_SZ = 1031
PyCF_ONLY_AST = 0x400

try:
    OUTPUT_CAP = int(os.environ.get("EVALER_OUTPUT_CAP", OUTPUT_CAP))
except ValueError:
    pass
# Under evaler's supervisor: say STOPPED as soon as SIGINT has stopped a cell,
# before the (possibly slow, first-time) traceback formatting.
STOP_ACK = os.environ.get("EVALER_STOP_ACK") == "1"
_STOPPED = {"type": "STOPPED"}

_default_int = _signal.default_int_handler
SIGINT = _signal.SIGINT
_CodeType = type((lambda: None).__code__)
_SERVER_FILE = (lambda: None).__code__.co_filename
_SELF = sys.modules[__name__]   # keeps this module alive once unregistered
_PID = os.getpid()



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


def _tune_malloc():
    """Set glibc's malloc thresholds (mallopt): freed blocks up to HEAP_KEEP
    stay in the heap until Session.trim() instead of going back to the
    system at once, so that a cell printing a MiB reuses the pages the
    previous one faulted in (in a VM a page fault costs ~3 us: ~1 ms per
    MiB, several times over on the way from print to the RESULT).  Blocks
    over HEAP_MMAP are mmap'ed and go back at once, as by default.  glibc's
    own dynamic thresholds end up much the same after the first large
    free(), only higher (up to 32/64 MiB)."""
    mallopt = _libc("mallopt")
    if mallopt is not None:
        try:
            mallopt(M_MMAP_THRESHOLD, HEAP_MMAP)
            mallopt(M_TRIM_THRESHOLD, HEAP_KEEP)
        except BaseException:
            pass


def _libc(name):
    """A C library function as f(*args) -> C int (args: int, bytes for a
    const char *, None for NULL), or None.  Through _ctypes' own dlopen,
    dlsym and call_function: the ctypes package takes ~5 ms and ~1 MiB to
    import, _ctypes alone ~0.4 ms."""
    try:
        _ctypes = _stdlib_import("_ctypes")
        addr = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), name)
        call = _ctypes.call_function
    except BaseException:                 # no _ctypes, libffi or symbol (musl: no malloc_trim)
        return None
    return lambda *args: call(addr, args)


class _LinecacheSeeder:
    """First on sys.meta_path until linecache is imported: fills its cache
    with the cell sources as soon as it exists.  linecache pulls in tokenize
    and re (~1 MiB, ~5 ms), so the server keeps it out until something needs
    it, and whatever imports it (traceback, warnings, inspect, pdb...) within
    a cell then still finds the sources of this cell and earlier ones."""

    def __init__(self, session):
        self.session = session

    def find_spec(self, name, path=None, target=None):
        if name != "linecache":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _SeedingLoader(spec.loader, self.session)
        return spec


class _SeedingLoader:
    def __init__(self, loader, session):
        self.loader = loader
        self.session = session

    def __getattr__(self, name):          # get_source, is_package...
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        module.cache.update(self.session.sources)
        self.session.sources.clear()


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
        """Our replies only (never empty): a flat dict of str, bytes (captured
        output, see _json_output), int, float and bool.  Returns the packet's
        UTF-8 bytes, newline included, as a list of pieces for os.writev:
        joining a MiB of output into one string would copy it once more."""
        parts = []
        text = "{"                      # JSON text not yet in parts
        for k, v in obj.items():
            t = v.__class__
            if t is bytes:
                parts.append((text + _enc_str(k) + ':"').encode())
                parts.append(_json_output(v))
                text = '",'
                continue
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
            text += _enc_str(k) + ":" + v + ","
        parts.append((text[:-1] + "}\n").encode("utf-8", "replace"))
        return parts
except ImportError:                                  # pragma: no cover
    import json as _json_mod

    def _loads(data):
        return _json_mod.loads(data.decode("utf-8"))

    def _dumps(obj):
        obj = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in obj.items()}
        return [(_json_mod.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace")]


# JSON escapes for the bytes of a UTF-8 string.  _json.encode_basestring
# reads every character twice (5-7 ms per MiB of output); bytes.replace finds
# a byte with memchr (~16 us per MiB) and returns the same object when there
# is none.  \b and \f as the C encoder writes them, so replies stay byte for
# byte the same.  The other control characters are rare: one pass over the
# output tells whether any is there (see _has_rare).
_ESCAPES = [(b'"', b'\\"'), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\t", b"\\t")]
_RARE = bytes(c for c in range(1, 32) if c not in (9, 10, 13))
_RARE_ESCAPES = [(b"\b", b"\\b"), (b"\f", b"\\f")]
_RARE_ESCAPES += [(bytes((c,)), b"\\u%04x" % c) for c in b"\0" + _RARE if c not in (8, 12)]
_SMALL_OUTPUT = 2048
_strcspn = None                         # libc's (main() looks it up)


def _has_rare(data):
    """Is there a control character other than \t \n \r (or a NUL)?"""
    if _strcspn is not None:
        # strcspn stops at the first of those bytes or at a NUL (a bytes
        # object always ends with one).  glibc's SSE 4.2 version takes up
        # to 16 bytes to look for: two passes cost half as much as 28 memchr.
        n = len(data)
        return _strcspn(data, _RARE[:14]) != n or _strcspn(data, _RARE[14:]) != n
    return 0 in data or any(c in data for c in _RARE)


def _json_output(data):
    """Captured output (bytes) -> the body of a JSON string (UTF-8 bytes):
    decoded as UTF-8 with errors="replace", without ASCII escaping."""
    if len(data) < _SMALL_OUTPUT:                 # the C encoder wins here
        return _enc_str(data.decode("utf-8", "replace"))[1:-1].encode()
    if not data.isascii():
        try:
            data.decode("utf-8")              # valid (no surrogates either)?
        except UnicodeDecodeError:
            data = data.decode("utf-8", "replace").encode("utf-8")
    # UTF-8 continuation bytes are >= 0x80: a byte-wise replace is safe.
    # Backslashes first: the escapes add some.
    rare = _has_rare(data)
    data = data.replace(b"\\", b"\\\\")
    if rare:
        for c, e in _RARE_ESCAPES:
            data = data.replace(c, e)
    for c, e in _ESCAPES:
        data = data.replace(c, e)
    return data


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

    def pending(self, timeout=0.0):
        """Is a packet (or part of one) waiting, or does one come within
        timeout seconds?"""
        if self.buf:
            return True
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return bool(p.poll(max(0, int(timeout * 1000))))

    def send(self, obj):
        parts = _dumps(obj)
        try:
            while parts:
                n = os.writev(self.fd, parts)
                while parts and n >= len(parts[0]):
                    n -= len(parts.pop(0))
                if n:
                    parts[0] = memoryview(parts[0])[n:]
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
    """fds 1 and 2 always point into pipes, and a persistent thread drains
    what the main thread does not read itself.

    While a cell runs they are that cell's own pipes, so the end of the cell's
    output is their EOF.  At the cell's end the main thread reads them itself
    until EOF (DRAIN_GRACE at most: a background process may hold them), so
    the RESULT never waits for a hand-off to the reader thread.  Between cells
    fds 1 and 2 are two idle pipes.  Everything read goes into one capped
    buffer per stream, which each RESULT takes: output written between cells
    (background threads and processes) shows at the start of the next cell's
    output instead of being lost or reaching the server's own stdout/stderr
    (which the supervisor caps).  Pipes of earlier cells still held by
    background processes keep being drained (up to MAX_LINGER of them), so
    those processes don't die of SIGPIPE.

    The reader thread waits in epoll, where the main thread adds and removes
    pipes itself: the reader never has to be woken (and to take the GIL)
    for that.  It sleeps through a short cell: the main thread takes a cell's
    pipes out of epoll before their EOF.  Both threads read, each read under
    mu, so that a read and its append are one step and the order within a
    stream holds whichever thread reads.  A pipe is closed under mu too: a
    stale event then finds its fd gone from streams (or reused by a new pipe
    of ours, which is as good).
    """

    MAX_LINGER = 16

    def __init__(self):
        self.real = (os.dup(1), os.dup(2))        # non-inheritable copies
        # mu guards chunks/sizes/truncated and streams/linger/rsize, and is
        # held for every read and close of a pipe.
        self.mu = _thread.allocate_lock()
        self._reset()
        self.ep = select.epoll()
        self.streams = {}                         # read fd -> stream (0 stdout, 1 stderr)
        self.linger = []                          # read ends of earlier cells still held
        self.rsize = {}                           # read fd -> read size, if not PIPE_READ
        self.cell = ()                            # the running cell's read ends
        self.next = None                          # the next cell's pipes (prepare)
        ir1, iw1 = os.pipe()
        ir2, iw2 = os.pipe()
        self.idle_r = (ir1, ir2)
        self.idle_w = (iw1, iw2)
        self.idle_poll = select.poll()
        for i, fd in enumerate(self.idle_r):
            os.set_blocking(fd, False)
            self.idle_poll.register(fd, select.POLLIN)
            self.ep.register(fd, select.EPOLLIN)
            self.streams[fd] = i
        os.dup2(iw1, 1)
        os.dup2(iw2, 2)
        _thread.start_new_thread(self._loop, ())

    def _reset(self):
        self.chunks = ([], [])
        self.sizes = [0, 0]
        self.truncated = False

    def _read(self, fd, i):
        """Take in what sits in one pipe now (caller holds mu), but no more
        than 8 full reads: a writer that keeps it full (`yes`) must not keep
        mu (or stop()) forever.  Returns the number of bytes read, -1 at EOF."""
        size = self.rsize.get(fd, PIPE_READ)
        n = 0
        for _ in range(8):
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                return n
            except OSError:
                return -1
            if not data:
                return -1
            got = len(data)
            n += got
            room = OUTPUT_CAP - self.sizes[i]
            if got > room:
                self.truncated = True
                data = data[:room] if room > 0 else b""
            if data:
                self.chunks[i].append(data)
                self.sizes[i] += len(data)
            if got < size:                        # a pipe read takes all there is
                return n
            if size < PIPE_BIG:
                # The pipe filled up: its writer is blocked.  A bigger pipe
                # and bigger reads mean fewer round trips between the writer
                # and us (and the GIL) for large output.
                size = self.rsize[fd] = PIPE_BIG
                try:
                    _fcntl(fd, F_SETPIPE_SZ, PIPE_BIG)
                except OSError:                   # over pipe-max-size or the user's quota
                    pass
        return n

    def _close(self, fd, unwatch=True):
        """Forget a pipe's read end (caller holds mu)."""
        if unwatch:
            try:
                self.ep.unregister(fd)
            except OSError:                       # not in epoll (any more)
                pass
        self.streams.pop(fd, None)
        self.rsize.pop(fd, None)
        try:
            os.close(fd)
        except OSError:
            pass

    def _read_shared(self):
        """Read the idle pipes and those of earlier cells now rather than when
        the reader gets to them: at a cell's start, so that output written
        between cells comes before the cell's own; at its end, so that it is
        in this RESULT."""
        if self.linger or self.idle_poll.poll(0):
            with self.mu:
                for i, fd in enumerate(self.idle_r):
                    self._read(fd, i)
                for fd in tuple(self.linger):
                    if self._read(fd, self.streams[fd]) < 0:
                        self.linger.remove(fd)
                        self._close(fd)

    def prepare(self):
        """Make the next cell's pipes, in epoll.  Called while idle, off the
        RESULT's path; start() calls it when there was no idle moment.
        Raises OSError (EMFILE)."""
        if self.next is not None:
            return
        fds = []
        try:
            r1, w1 = os.pipe()
            fds += (r1, w1)
            r2, w2 = os.pipe()
            fds += (r2, w2)
            os.set_blocking(r1, False)
            os.set_blocking(r2, False)
            try:
                # Room for a MiB of stdout: printing it need not wait for a
                # reader, and stop() reads it in one piece.
                _fcntl(w1, F_SETPIPE_SZ, PIPE_BIG)
                self.rsize[r1] = PIPE_BIG
            except OSError:                       # over pipe-max-size or the user's quota
                pass
            with self.mu:
                self.streams[r1] = 0
                self.streams[r2] = 1
                self.ep.register(r1, select.EPOLLIN)
                self.ep.register(r2, select.EPOLLIN)
        except OSError:
            with self.mu:
                for fd in fds:
                    self._close(fd)
            raise
        self.next = (r1, r2, w1, w2)

    def start(self):
        self.prepare()
        r1, r2, w1, w2 = self.next
        self.next = None
        self._read_shared()
        os.dup2(w1, 1)
        os.dup2(w2, 2)
        os.close(w1)
        os.close(w2)
        self.cell = (r1, r2)

    def close_in_child(self):
        """In a child forked between cells: drop the next cell's write ends,
        or that cell would wait DRAIN_GRACE for the child to close them."""
        if self.next is not None:
            for fd in self.next[2:]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.next = None

    def stop(self):
        """Back to the idle pipes; returns (stdout, stderr, truncated) since
        the previous stop()."""
        cell = self.cell
        self.cell = ()
        with self.mu:
            for fd in cell:                       # no wake-up for their EOF
                try:
                    self.ep.unregister(fd)
                except OSError:                   # the reader saw EOF already
                    pass
        os.dup2(self.idle_w[0], 1)
        os.dup2(self.idle_w[1], 2)
        # Our copies of the cell's write ends are gone: EOF comes unless a
        # background process still holds one.  Wait for it DRAIN_GRACE at most.
        left = list(cell)
        deadline = None
        while True:
            with self.mu:
                for fd in tuple(left):
                    if self._read(fd, self.streams[fd]) < 0:
                        left.remove(fd)
                        self._close(fd, unwatch=False)
            if not left:
                break
            now = perf_counter()
            if deadline is None:
                deadline = now + DRAIN_GRACE
            elif now >= deadline:
                break
            p = select.poll()
            for fd in left:
                p.register(fd, select.POLLIN)
            try:
                p.poll(max(1, int((deadline - now) * 1000)))
            except OSError:
                pass
        if left:                                  # the reader drains them from now on
            with self.mu:
                for fd in left:
                    self.ep.register(fd, select.EPOLLIN)
                    self.linger.append(fd)
                while len(self.linger) > self.MAX_LINGER:
                    self._close(self.linger.pop(0))
        self._read_shared()
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
        ep = self.ep
        mu = self.mu
        while True:
            try:
                events = ep.poll()
            except OSError:
                continue
            cell = self.cell
            if cell and any(fd in cell for fd, _ev in events):
                # The running cell writes: let its output pile up a little
                # before reading.  A short cell is over by then and stop()
                # reads it all; in a print loop, waking (and taking the GIL)
                # for every write would slow the cell down several times over.
                # The stdout pipe holds a MiB and a pipe that fills up grows
                # (see _read), so a fast writer is barely held up.
                sleep(READER_PAUSE)
            for fd, _ev in events:
                try:
                    with mu:
                        i = self.streams.get(fd)
                        if i is not None and self._read(fd, i) < 0:
                            if fd in self.linger:
                                self.linger.remove(fd)
                                self._close(fd)
                            else:                 # a cell's: stop() closes it
                                ep.unregister(fd)
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
        self.idle_due = True              # idle() has work to do
        self.trim_at = None               # when to give freed memory back (perf_counter)
        self.malloc_trim = _libc("malloc_trim")
        main = type(sys)("__main__")
        main.__dict__.update(__builtins__=builtins, __doc__=None, __package__=None,
                             __spec__=None, __loader__=None)
        self.ns = main.__dict__
        self.main = main
        self.capture = Capture()
        self.user_sigint = None           # a SIGINT handler the user installed
        self.fflush = _libc("fflush")
        self._stdio(force=True)
        sys.meta_path.insert(0, _LinecacheSeeder(self))

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
        # a pipe.
        if self.fflush is not None:
            try:
                self.fflush(None)
            except BaseException:
                pass

    def _register_source(self, fn, code):
        """Make the cell's source visible to tracebacks (linecache)."""
        entry = (len(code), None, code.splitlines(True), fn)
        self.sources[fn] = entry
        lc = sys.modules.get("linecache")
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

    def idle(self):
        """Work for a moment when no packet waits, off the RESULT's path:
        the next cell's capture pipes."""
        self.idle_due = False
        try:
            self.capture.prepare()
        except OSError:                   # EMFILE: start() will say so
            pass

    def trim(self):
        """Give the C heap's free memory back to the system (glibc keeps it,
        and it counts in RSS): at the first idle moment (compiling this file
        at start-up left ~2 MiB), then whenever the session has been idle
        for TRIM_DELAY after a cell.  Until then the freed memory of a cell
        is there for the next one (see _tune_malloc)."""
        self.trim_at = None
        if self.malloc_trim is not None:
            try:
                self.malloc_trim(0)
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
            if STOP_ACK and os.getpid() == _PID and self.transport is not None:
                try:
                    self.transport.send(_STOPPED)
                except ClientGone:
                    pass
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
        self.idle_due = True
        if fallback is None:
            out, err, truncated = self.capture.stop()
            if self.count == 1:
                self.trim_at = 0.0
            elif self.trim_at is None:
                self.trim_at = perf_counter() + TRIM_DELAY
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
            reply["stderr"] += b"evaler: shutdown still running after %gs, exiting\n" % EXIT_GRACE
            self.transport.send(reply)
        except BaseException:
            pass
        finally:
            try:
                self.transport.shutdown()
            finally:
                os._exit(code & 0xFF)


def _reply(out, err, truncated, status, value, elapsed, exit_code, extra_err):
    """The RESULT packet.  stdout/stderr stay bytes: _dumps decodes them."""
    if extra_err:
        err += extra_err.encode("utf-8", "replace")
    reply = {"type": "RESULT", "stdout": out, "stderr": err, "status": status}
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


def _without_site():
    """Started with -S (as kernels.toml does, see README): do the part of
    site.main() a notebook user relies on, cheaply.

    * The site-packages directories go on sys.path: those that exist, in
      site.getsitepackages() order (Debian's dist-packages and upstream's
      site-packages; a venv's first, as site.venv() does).  Their .pth files
      are not read: they import modules at every start (setuptools'
      distutils hack, certifi patches...), which is what -S saves.
    * exit, quit, help, copyright, credits, license: the objects site makes,
      from _sitebuiltins (frozen: nothing to read from disk).
    * No sitecustomize / usercustomize."""
    ver = "python%d.%d" % sys.version_info[:2]
    prefixes = [sys.prefix, sys.exec_prefix]
    venv = False
    exe_dir = os.path.dirname(os.path.abspath(sys.executable or "/"))
    for d in (exe_dir, os.path.dirname(exe_dir)):
        cfg = os.path.join(d, "pyvenv.cfg")
        if os.path.isfile(cfg):
            venv = True
            system_site = True
            try:
                with open(cfg, encoding="utf-8") as f:
                    for line in f:
                        key, eq, value = line.partition("=")
                        if eq and key.strip().lower() == "include-system-site-packages":
                            system_site = value.strip().lower() == "true"
            except (OSError, ValueError):
                pass
            root = os.path.dirname(exe_dir)
            sys.prefix = sys.exec_prefix = root
            prefixes = [root] + (prefixes if system_site else [])
            break
    platlib = getattr(sys, "platlibdir", "lib")      # 3.9+
    libdirs = [platlib] + (["lib"] if platlib != "lib" else [])
    for prefix in dict.fromkeys(prefixes):
        subdirs = ["lib/%s/site-packages" % ver] if venv else []
        subdirs += ["local/lib/%s/dist-packages" % ver, "lib/python3/dist-packages"]
        subdirs += ["%s/%s/dist-packages" % (d, ver) for d in libdirs]
        subdirs += ["%s/%s/site-packages" % (d, ver) for d in libdirs]
        for sub in subdirs:
            path = os.path.join(prefix, sub)
            if path not in sys.path and os.path.isdir(path):
                sys.path.append(path)
    import _sitebuiltins
    eof = "Ctrl-D (i.e. EOF)"
    builtins.quit = _sitebuiltins.Quitter("quit", eof)
    builtins.exit = _sitebuiltins.Quitter("exit", eof)
    builtins.copyright = _sitebuiltins._Printer("copyright", sys.copyright)
    builtins.credits = _sitebuiltins._Printer("credits", """\
    Thanks to CWI, CNRI, BeOpen.com, Zope Corporation and a cast of thousands
    for supporting Python development.  See www.python.org for more information.""")
    here = os.path.dirname(os.__file__)
    builtins.license = _sitebuiltins._Printer(
        "license", "See https://www.python.org/psf/license/",
        ["LICENSE.txt", "LICENSE"], [os.path.join(here, os.pardir), here, os.curdir])
    builtins.help = _sitebuiltins._Helper()


def _error(message):
    return {"type": "Error", "value": message}


def serve(session, transport):
    """Serve one connection.  Returns at EOF/oversize; exits the process on
    exit()/RUNANDKILL/KILL."""
    session.transport = transport
    while True:
        # Keep no packet or reply while idle: each may hold MiBs.
        line = pkt = code = reply = None
        if session.idle_due and not transport.pending():
            session.idle()
        if session.trim_at is not None and not transport.pending(session.trim_at - perf_counter()):
            session.trim()
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
    global _Expression, _Expr, _strcspn
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
        elif a == "-":                    # kernels.toml's bootstrap: source read from stdin
            pass
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
    if sys.flags.no_site:
        _without_site()

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
    _tune_malloc()
    _strcspn = _libc("strcspn")
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
        session.capture.close_in_child()
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
