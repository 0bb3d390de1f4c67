//! The syscall layer: the only place in evaler where `unsafe` lives.
//!
//! Much of this runs in a child forked from a multi-threaded parent, between
//! `clone` and `execve`. There another thread may have held the allocator's
//! lock at fork time, so everything here must be async-signal-safe: no heap
//! allocation, no locks, no panics. Each wrapper takes pre-built `&CStr`s and
//! raw descriptors and returns `Errno` (a `Copy` integer) on failure.

use std::ffi::{c_char, CStr};
use std::os::fd::RawFd;

use nix::errno::Errno;

pub type SysResult<T> = Result<T, Errno>;

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `clone(2)` used like `fork(2)`, but entering new namespaces. Returns 0 in
/// the child and the child's pid in the parent.
///
/// Raw `clone` skips glibc's `fork` handlers (`pthread_atfork`), which is what
/// we want: the child only runs async-signal-safe code and then `execve`s.
pub fn clone_fork(flags: libc::c_int) -> SysResult<libc::pid_t> {
    // SAFETY: with a null stack pointer `clone` duplicates the calling thread
    // like fork(2); no CLONE_VM, so the child gets its own copy of memory. The
    // callers of this function only run async-signal-safe code in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    check_long(ret).map(|pid| pid as libc::pid_t)
}

/// Plain `fork` by the raw syscall (see [`clone_fork`]).
pub fn fork() -> SysResult<libc::pid_t> {
    clone_fork(0)
}

/// A fresh read-write anonymous mapping of `len` bytes (`flags` adds the
/// sharing and any hint to `MAP_ANONYMOUS`).
fn map_anonymous(len: usize, flags: libc::c_int) -> SysResult<std::ptr::NonNull<u8>> {
    // SAFETY: an anonymous mapping with no address hint; no existing memory
    // is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    std::ptr::NonNull::new(p.cast::<u8>()).ok_or(Errno::ENOMEM)
}

/// A stack for children started by [`spawn_in_our_memory`], mapped once and
/// reused: such a child runs while its parent is suspended, so one at a time.
#[derive(Debug)]
pub struct ChildStack {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl ChildStack {
    pub fn new(len: usize) -> SysResult<ChildStack> {
        let ptr = map_anonymous(len, libc::MAP_PRIVATE | libc::MAP_STACK)?;
        Ok(ChildStack { ptr, len })
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping we made; no child runs on it
        // (they are done by the time spawn_in_our_memory returns).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Starts `f(arg)` in a child process that shares our memory, like
/// `vfork(2)` but on a stack of its own, and returns its pid once it has
/// called `execve` or exited (`CLONE_VFORK` suspends us until then).
///
/// What `fork` would cost is skipped: copying the page tables, the child's
/// copy-on-write faults, and tearing the copy down at `execve`. `f` must
/// never return and must only make system calls and write its own stack
/// (like every child-side function here); anything else it wrote would be
/// seen by us. Its credentials, rlimits, namespaces and `oom_score_adj`
/// are its own (the kernel keeps a vfork child's `oom_score_adj` apart).
pub fn spawn_in_our_memory<T>(
    stack: &mut ChildStack,
    f: fn(&T) -> !,
    arg: &T,
) -> SysResult<libc::pid_t> {
    struct Call<'a, T> {
        f: fn(&T) -> !,
        arg: &'a T,
    }
    extern "C" fn trampoline<T>(p: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `p` is the `Call` below, alive on the parent's stack while
        // the parent is suspended by CLONE_VFORK.
        let call = unsafe { &*p.cast::<Call<'_, T>>() };
        (call.f)(call.arg)
    }
    let call = Call { f, arg };
    // The stack grows down on every architecture we build for; clone wants
    // its top, 16-byte aligned.
    let top = (stack.ptr.as_ptr() as usize + stack.len) & !15;
    // SAFETY: `top` is the aligned end of a live mapping of `stack.len`
    // bytes that only this child uses; the child gets `call` by pointer and
    // we stay suspended (CLONE_VFORK) until it has exec'd or exited, so the
    // pointer stays valid for as long as the child may read it.
    let ret = unsafe {
        libc::clone(
            trampoline::<T>,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&call as *const Call<'_, T>).cast_mut().cast(),
        )
    };
    check(ret)
}

pub fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running atexit handlers or
    // destructors, which is what a forked child must do.
    unsafe { libc::_exit(code) }
}

pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    let ret = unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags,
            p(data).cast::<libc::c_void>(),
        )
    };
    check(ret).map(drop)
}

pub fn umount_detach(target: &CStr) -> SysResult<()> {
    // SAFETY: target is a valid C string.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both are valid C strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(ret).map(drop)
}

pub fn setns(fd: RawFd, nstype: libc::c_int) -> SysResult<()> {
    // SAFETY: setns only reads its integer arguments.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: unshare only reads its integer argument.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub fn mkdir(path: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: valid C string.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn symlink(target: &CStr, link: &CStr) -> SysResult<()> {
    // SAFETY: valid C strings.
    check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

/// Creates (or truncates) `path` and writes `data` into it.
pub fn write_file(path: &CStr, data: &[u8], mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: valid C string; the flags make a plain regular file.
    let fd = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    })?;
    let res = write_all(fd, data);
    close(fd);
    res
}

pub fn write_all(fd: RawFd, mut data: &[u8]) -> SysResult<()> {
    while !data.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        data = data.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

/// Reads into `buf` until it is full or EOF; returns the bytes read.
pub fn read_full(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        // SAFETY: the pointer and length describe a live mutable slice.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    Ok(got)
}

pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

/// `dup2` that keeps the close-on-exec flag off on the new descriptor.
pub fn dup2(old: RawFd, new: RawFd) -> SysResult<()> {
    if old == new {
        // dup2 with equal fds would leave FD_CLOEXEC as it is: clear it.
        // SAFETY: fcntl on an fd number; failure is reported as EBADF.
        return check(unsafe { libc::fcntl(old, libc::F_SETFD, 0) }).map(drop);
    }
    // SAFETY: dup2 only takes integers.
    check(unsafe { libc::dup2(old, new) }).map(drop)
}

/// Duplicates `fd` to the lowest free number >= `min`, close-on-exec.
pub fn dup_above(fd: RawFd, min: RawFd) -> SysResult<RawFd> {
    // SAFETY: fcntl F_DUPFD_CLOEXEC only takes integers.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })
}

/// Closes descriptors `first..=last` (nothing when `last < first`).
pub fn close_range(first: RawFd, last: RawFd) {
    if last < first || first < 0 {
        return;
    }
    // SAFETY: close_range only takes integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0,
        )
    };
    if ret != 0 {
        for fd in first..=last {
            close(fd);
        }
    }
}

/// Closes every descriptor from `first` up.
pub fn close_from(first: RawFd) {
    // SAFETY: close_range only takes integers.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, u32::MAX, 0) };
    if ret != 0 {
        // Kernels before 5.9: close one by one up to the soft limit.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into our stack struct.
        let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur.min(1 << 20) as RawFd
        } else {
            4096
        };
        for fd in first..max {
            close(fd);
        }
    }
}

pub fn setrlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> SysResult<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads our stack struct.
    check(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// Drops to `uid`/`gid` for good, with no supplementary groups. Leaving uid 0
/// for a non-zero uid clears every capability.
///
/// Raw system calls on purpose: glibc's wrappers apply credential changes to
/// every thread of the process (`__nptl_setxid`), and a child cloned from a
/// multi-threaded parent still carries glibc's list of the parent's threads,
/// so the wrapper would wait forever for threads that do not exist here.
pub fn drop_to(uid: libc::uid_t, gid: libc::gid_t) -> SysResult<()> {
    // SAFETY: setgroups with a zero-length list reads nothing.
    check_long(unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) })?;
    // SAFETY: integer arguments.
    check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    // SAFETY: integer arguments.
    check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
    Ok(())
}

pub fn setsid() -> SysResult<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }).map(drop)
}

pub fn no_new_privs() -> SysResult<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// Asks the kernel to SIGKILL us when our parent dies, so a box never
/// outlives the process supervising it.
pub fn die_with_parent() -> SysResult<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }).map(drop)
}

/// Resets every signal to its default action and unblocks all of them: a
/// server that ignores SIGPIPE must not pass that on to the programs it runs.
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always valid; errors (invalid signal
        // numbers reserved by libc) are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: sigset_t lives on our stack and is initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

pub fn sethostname(name: &[u8]) -> SysResult<()> {
    // SAFETY: pointer and length describe a live slice.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `execve`; only returns on failure.
pub fn execve(path: *const c_char, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: `path` is a NUL-terminated string and argv and envp are
    // NULL-terminated arrays of pointers to such strings, all kept alive by
    // the caller (built before the fork, or in the keeper's shared page).
    unsafe { libc::execve(path, argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// `waitpid` with retry on EINTR; returns (pid, raw wait status).
pub fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> SysResult<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    loop {
        // SAFETY: status is a live stack integer.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret == -1 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok((ret, status));
    }
}

pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

pub fn pidfd_open(pid: libc::pid_t) -> SysResult<RawFd> {
    // SAFETY: integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    check_long(ret).map(|fd| fd as RawFd)
}

pub fn pidfd_send_signal(pidfd: RawFd, sig: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments and a null siginfo pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check_long(ret).map(drop)
}

/// Loads a seccomp BPF program into the calling thread (no_new_privs must be
/// set first).
pub fn seccomp_load(prog: &[seccompiler::sock_filter]) -> SysResult<()> {
    seccompiler::apply_filter(prog).map_err(|e| match e {
        seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => {
            Errno::from_raw(io.raw_os_error().unwrap_or(libc::EINVAL))
        }
        _ => Errno::EINVAL,
    })
}

/// Makes a pipe whose both ends are close-on-exec: (read, write).
pub fn pipe() -> SysResult<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a live two-element array.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// Opens a path read-only close-on-exec (used for namespace files).
pub fn open_readonly(path: &CStr, extra: libc::c_int) -> SysResult<RawFd> {
    // SAFETY: valid C string.
    check(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | extra) })
}

/// Most descriptors passed in one message.
pub const MAX_PASSED_FDS: usize = 48;

/// A connected `SOCK_SEQPACKET` pair, close-on-exec: message boundaries are
/// kept, so one request is one message.
pub fn seqpacket_pair() -> SysResult<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a live two-element array.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((fds[0], fds[1]))
}

/// Sends `data` and, as SCM_RIGHTS, `fds` in one message. No allocation.
pub fn send_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> SysResult<()> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(Errno::EMSGSIZE);
    }
    // Room for the largest control message, aligned for cmsghdr.
    let mut cbuf = [0u64; (MAX_PASSED_FDS * 4 + 64) / 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds) as libc::c_uint;
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `cbuf`, large enough for `space`
        // bytes (at most MAX_PASSED_FDS descriptors), so the first header
        // and its data lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: msg and everything it points to are live for the call.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Receives one message into `buf` and up to `fds.len()` descriptors
/// (close-on-exec). Returns (bytes, descriptors); (0, 0) means the peer is
/// gone. No allocation.
pub fn recv_fds(sock: RawFd, buf: &mut [u8], fds: &mut [RawFd]) -> SysResult<(usize, usize)> {
    let mut cbuf = [0u64; (MAX_PASSED_FDS * 4 + 64) / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: msg points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    };
    let mut got = 0;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed control messages; we only read within each header's
    // length and copy at most `fds.len()` descriptors out.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len =
                    ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..len {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if got < fds.len() {
                        fds[got] = fd;
                        got += 1;
                    } else {
                        close(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, got))
}

/// Memory shared between the supervisor and a box keeper it forked: the
/// supervisor writes a run's plan there, the keeper reads it after fork.
#[derive(Debug)]
pub struct SharedRegion {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain bytes owned by this value; access goes through
// &self / &mut self, so Rust's aliasing rules hold within this process (the
// keeper is another process with its own copy of the value).
unsafe impl Send for SharedRegion {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    pub fn new(len: usize) -> SysResult<SharedRegion> {
        let ptr = map_anonymous(len, libc::MAP_SHARED)?;
        Ok(SharedRegion { ptr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable, alive while self is.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, writable, and &mut self makes this the only
        // reference in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping we made.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Writes to an existing file (procfs, cgroupfs), without creating it.
pub fn write_existing(path: &CStr, data: &[u8]) -> SysResult<()> {
    // SAFETY: valid C string.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let res = write_all(fd, data);
    close(fd);
    res
}

/// CPU time (user + system) this process has used itself, in nanoseconds.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: rusage lives on our stack and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime)
}

fn tv_ns(tv: libc::timeval) -> u64 {
    (tv.tv_sec.max(0) as u64) * 1_000_000_000 + (tv.tv_usec.max(0) as u64) * 1000
}

/// `poll` with a millisecond timeout; EINTR counts as a timeout.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> SysResult<usize> {
    // SAFETY: fds is a live slice of pollfd.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match check(ret) {
        Ok(n) => Ok(n as usize),
        Err(Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sleeps without touching the allocator (async-signal-safe).
pub fn sleep_us(us: u64) {
    let ts = libc::timespec {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
    };
    // SAFETY: ts lives on our stack; a null remainder is allowed.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount
/// tree at `path`, to be attached elsewhere with [`move_mount`].
pub fn open_tree_clone(path: &CStr) -> SysResult<RawFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: valid C string; integer flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    check_long(ret).map(|fd| fd as RawFd)
}

/// Attaches the detached mount tree `tree` on `target`.
pub fn move_mount(tree: RawFd, target: &CStr) -> SysResult<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    // SAFETY: valid C strings ("" and target); integer flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check_long(ret).map(drop)
}
