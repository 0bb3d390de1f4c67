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
pub fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into
    // CStrings that the caller keeps alive (built before the fork).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
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
