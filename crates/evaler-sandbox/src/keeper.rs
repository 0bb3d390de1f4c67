//! The box keeper: one long-lived process per box that starts the box's runs.
//!
//! Creating namespaces is what makes a sandboxed run slow: a copy of a mount
//! namespace, a fresh `/proc`, a PID namespace and its init, and the
//! expedited RCU grace periods their teardown takes, cost more than the
//! program itself; so does joining a cgroup v1 (a write lock that waits for a
//! grace period). The keeper pays for all of that once. It is pid 1 of the
//! box's own PID namespace, lives in the box's mount, network, IPC and UTS
//! namespaces with `/proc`, `/tmp` and `/dev/shm` already mounted, and sits
//! in the box's cgroup. A run is then one `fork` of a small process: the
//! program inherits the namespaces, the cgroup and the seccomp filter (the
//! keeper loads it once), takes a fresh IPC namespace, drops privileges and
//! `execve`s.
//!
//! The supervisor writes the run's plan (argv, environment, rlimits) into a
//! shared page and sends the program's descriptors over a `SOCK_SEQPACKET`
//! socket; the keeper answers with a pidfd of the program, and when the
//! program has ended and every process it left has been killed and reaped,
//! with its wait status and the CPU time the keeper spent on the run (which
//! the cgroup counted, and the supervisor subtracts).
//!
//! The keeper is forked from a multi-threaded supervisor, so like the rest of
//! the child side it never allocates. It exits when the supervisor's end of
//! the socket closes, and since it is pid 1, its exit kills whatever is left
//! in the box.

use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::launch::{exec_program, ProgramPlan};
use crate::rootfs::{run_steps, Step};
use crate::seccomp::Filter;
use crate::sys::{self, SharedRegion, MAX_PASSED_FDS};

/// Size of the shared plan page (a plan that does not fit takes the slower
/// path through a fresh init).
pub(crate) const SHM_SIZE: usize = 1 << 20;
const MAX_ARGS: usize = 4096;
const MAX_ENV: usize = 1024;
const MAX_EXEC: usize = 64;
const MAX_RLIMITS: usize = 16;
const HEADER: usize = 32;
const RLIMIT_REC: usize = 24;
const MAGIC: &[u8; 4] = b"EVLP";

/// Request: start a run with the plan in the shared page.
const REQ_RUN: u8 = b'R';
/// Reply: the program started; a pidfd of it rides along.
const REP_STARTED: u8 = b'S';
/// Reply: the run is over; wait status and keeper CPU follow.
const REP_DONE: u8 = b'D';
/// Reply: the request could not be carried out; errno follows.
const REP_FAILED: u8 = b'F';
// Set-up failures after the mount steps, reported in place of a step index.
const SETUP_STACK: usize = u32::MAX as usize - 4;
const SETUP_HOSTNAME: usize = u32::MAX as usize - 3;
const SETUP_CGROUP: usize = u32::MAX as usize - 2;
const SETUP_SECCOMP: usize = u32::MAX as usize - 1;
const SETUP_CHDIR: usize = u32::MAX as usize;

/// Reply: the keeper is ready (after building the box).
const REP_READY: u8 = b'K';
/// Reply: building the box failed at step N with errno.
const REP_SETUP_FAILED: u8 = b'E';

/// The supervisor's side of a keeper.
#[derive(Debug)]
pub(crate) struct Keeper {
    pub pid: libc::pid_t,
    sock: OwnedFd,
    shm: SharedRegion,
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass descriptors fresh from a successful syscall that
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// How a started run ended, as the keeper reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    pub status: i32,
    /// CPU the keeper itself spent on the run, charged to the box's cgroup.
    pub overhead_ns: u64,
}

impl Keeper {
    /// Forks the keeper into new namespaces; it builds the box's root with
    /// `steps`, joins the cgroup through `join_fds` and reports ready.
    pub(crate) fn start(
        steps: &[Step],
        join_fds: &[RawFd],
        filter: Option<&Filter>,
        uid: u32,
        gid: u32,
    ) -> Result<Keeper, (String, Errno)> {
        let (ours, theirs) = sys::seqpacket_pair().map_err(|e| ("socketpair".to_string(), e))?;
        let (ours, theirs) = (owned(ours), owned(theirs));
        let shm = SharedRegion::new(SHM_SIZE).map_err(|e| ("mmap".to_string(), e))?;
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        let sock = theirs.as_raw_fd();
        match sys::clone_fork(flags) {
            Ok(0) => keeper_main(sock, steps, join_fds, &shm, filter, uid, gid),
            Ok(pid) => {
                drop(theirs);
                let keeper = Keeper {
                    pid,
                    sock: ours,
                    shm,
                };
                let mut buf = [0u8; 16];
                let mut none = [0 as RawFd; 0];
                match sys::recv_fds(keeper.sock.as_raw_fd(), &mut buf, &mut none) {
                    Ok((1, _)) if buf[0] == REP_READY => Ok(keeper),
                    Ok((9, _)) if buf[0] == REP_SETUP_FAILED => {
                        let i = u32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                        let e = i32::from_ne_bytes([buf[5], buf[6], buf[7], buf[8]]);
                        let step = match i {
                            SETUP_HOSTNAME => "setting the hostname".to_string(),
                            SETUP_STACK => "mapping the runs' start-up stack".to_string(),
                            SETUP_CGROUP => "joining the box's cgroup".to_string(),
                            SETUP_CHDIR => "entering /box".to_string(),
                            SETUP_SECCOMP => "loading the seccomp filter".to_string(),
                            _ => steps.get(i).map_or_else(
                                || "starting the box keeper".to_string(),
                                Step::describe,
                            ),
                        };
                        Err((step, Errno::from_raw(e)))
                    }
                    Ok(_) => Err((
                        "the box keeper died while starting".to_string(),
                        Errno::ECHILD,
                    )),
                    Err(e) => Err(("reading from the box keeper".to_string(), e)),
                }
            }
            Err(e) => Err(("clone".to_string(), e)),
        }
    }

    /// Writes a plan into the shared page. Returns false (and nothing is
    /// sent) when it does not fit; the caller then takes the slower path.
    pub(crate) fn write_plan(
        &mut self,
        exec: &[CString],
        argv: &[CString],
        env: &[CString],
        rlimits: &[(libc::__rlimit_resource_t, u64, u64)],
        nfds: usize,
        seccomp: bool,
    ) -> bool {
        if exec.len() > MAX_EXEC
            || argv.len() >= MAX_ARGS
            || env.len() >= MAX_ENV
            || rlimits.len() > MAX_RLIMITS
            || !(4..=MAX_PASSED_FDS).contains(&nfds)
        {
            return false;
        }
        let strings: usize = exec
            .iter()
            .chain(argv)
            .chain(env)
            .map(|c| c.as_bytes_with_nul().len())
            .sum();
        let start = HEADER + rlimits.len() * RLIMIT_REC;
        if start + strings > SHM_SIZE {
            return false;
        }
        let page = self.shm.bytes_mut();
        let mut put_u32 = |at: usize, v: u32| page[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        put_u32(4, exec.len() as u32);
        put_u32(8, argv.len() as u32);
        put_u32(12, env.len() as u32);
        put_u32(16, rlimits.len() as u32);
        put_u32(20, nfds as u32);
        put_u32(24, u32::from(seccomp));
        page[0..4].copy_from_slice(MAGIC);
        for (i, &(res, soft, hard)) in rlimits.iter().enumerate() {
            let at = HEADER + i * RLIMIT_REC;
            // The resource type is u32 on glibc but c_int on musl.
            #[allow(clippy::unnecessary_cast)]
            let res = res as u32;
            page[at..at + 4].copy_from_slice(&res.to_ne_bytes());
            page[at + 8..at + 16].copy_from_slice(&soft.to_ne_bytes());
            page[at + 16..at + 24].copy_from_slice(&hard.to_ne_bytes());
        }
        let mut at = start;
        for s in exec.iter().chain(argv).chain(env) {
            let b = s.as_bytes_with_nul();
            page[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        true
    }

    /// Starts the run whose plan was just written; `fds` are stdin, stdout,
    /// stderr, the setup-error pipe, then the extra descriptors. Returns a
    /// pidfd of the program and the CPU the keeper spent starting it (which
    /// the cgroup counts but is not the program's).
    pub(crate) fn start_run(&self, fds: &[RawFd]) -> Result<(OwnedFd, u64), Errno> {
        sys::send_fds(self.sock.as_raw_fd(), &[REQ_RUN], fds)?;
        let mut buf = [0u8; 16];
        let mut pidfd = [-1 as RawFd; 1];
        match sys::recv_fds(self.sock.as_raw_fd(), &mut buf, &mut pidfd)? {
            (13, 1) if buf[0] == REP_STARTED => Ok((owned(pidfd[0]), u64_at(&buf, 5))),
            (_, 1) => {
                drop(owned(pidfd[0]));
                Err(Errno::EPROTO)
            }
            (5, _) if buf[0] == REP_FAILED => Err(Errno::from_raw(i32::from_ne_bytes([
                buf[1], buf[2], buf[3], buf[4],
            ]))),
            (0, _) => Err(Errno::EPIPE),
            _ => Err(Errno::EPROTO),
        }
    }

    /// Waits for the keeper's report that the run is over and nothing of it
    /// is left.
    pub(crate) fn finish_run(&self) -> Result<Done, Errno> {
        let mut buf = [0u8; 16];
        let mut none = [0 as RawFd; 0];
        match sys::recv_fds(self.sock.as_raw_fd(), &mut buf, &mut none)? {
            (13, _) if buf[0] == REP_DONE => Ok(Done {
                status: i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]),
                overhead_ns: u64::from_ne_bytes([
                    buf[5], buf[6], buf[7], buf[8], buf[9], buf[10], buf[11], buf[12],
                ]),
            }),
            (0, _) => Err(Errno::EPIPE),
            _ => Err(Errno::EPROTO),
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The keeper is pid 1 of the box: killing it ends every process there.
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::waitpid(self.pid, 0);
    }
}

fn u32_at(page: &[u8], at: usize) -> usize {
    match page.get(at..at + 4) {
        Some(b) => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => 0,
    }
}

fn u64_at(page: &[u8], at: usize) -> u64 {
    match page.get(at..at + 8) {
        Some(b) => u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

/// Fills `out` with pointers to the next `n` NUL-terminated strings of
/// `page` from `*at`. False when the page does not hold them.
fn take_strings(page: &[u8], at: &mut usize, n: usize, out: &mut [*const c_char]) -> bool {
    if n > out.len() {
        return false;
    }
    for slot in out.iter_mut().take(n) {
        let Some(rest) = page.get(*at..) else {
            return false;
        };
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return false;
        };
        *slot = rest.as_ptr().cast();
        *at += len + 1;
    }
    true
}

fn reply(sock: RawFd, data: &[u8], fds: &[RawFd]) {
    if sys::send_fds(sock, data, fds).is_err() {
        // The supervisor is gone: end the box.
        sys::exit(0);
    }
}

/// The keeper process. Never returns.
fn keeper_main(
    sock: RawFd,
    steps: &[Step],
    join_fds: &[RawFd],
    shm: &SharedRegion,
    filter: Option<&Filter>,
    uid: u32,
    gid: u32,
) -> ! {
    let setup = run_steps(steps)
        .and_then(|()| sys::sethostname(b"evaler").map_err(|e| (SETUP_HOSTNAME, e)))
        .and_then(|()| {
            join_fds
                .iter()
                .try_for_each(|&fd| sys::write_all(fd, b"0"))
                .map_err(|e| (SETUP_CGROUP, e))
        })
        // Every run sees the box's cgroup as the root of the hierarchy.
        .and_then(|()| sys::unshare(libc::CLONE_NEWCGROUP).map_err(|e| (SETUP_CGROUP, e)))
        .and_then(|()| sys::chdir(c"/box").map_err(|e| (SETUP_CHDIR, e)));
    // Never the OOM killer's choice, where allowed (it takes
    // CAP_SYS_RESOURCE); the programs also raise their own score.
    let _ = sys::write_existing(c"/proc/self/oom_score_adj", b"-1000");
    // Last: the filter is loaded once, here, and every run inherits it.
    // Loading costs a third of a millisecond (the kernel compiles it and
    // evaluates it for every syscall number), more than the rest of a run's
    // set-up. The keeper needs none of the denied calls from now on; the
    // one namespace it still makes, a run's IPC namespace, is let through.
    let setup = setup.and_then(|()| {
        filter.map_or(Ok(()), |f| {
            f.programs()
                .try_for_each(|p| sys::seccomp_load(p))
                .map_err(|e| (SETUP_SECCOMP, e))
        })
    });
    // The programs start on a stack of their own in the keeper's memory
    // (see sys::spawn_in_our_memory); exec_program needs a few KiB of it.
    let stack = setup.and_then(|()| sys::ChildStack::new(256 << 10).map_err(|e| (SETUP_STACK, e)));
    let mut stack = match stack {
        Ok(stack) => stack,
        Err((i, e)) => {
            let mut rec = [0u8; 9];
            rec[0] = REP_SETUP_FAILED;
            rec[1..5].copy_from_slice(&(i as u32).to_ne_bytes());
            rec[5..9].copy_from_slice(&(e as i32).to_ne_bytes());
            let _ = sys::send_fds(sock, &rec, &[]);
            sys::exit(1);
        }
    };
    sys::reset_signals();
    // Nothing of the supervisor's but the socket stays open here.
    sys::close_range(0, sock - 1);
    sys::close_from(sock + 1);
    reply(sock, &[REP_READY], &[]);

    let mut fds = [-1 as RawFd; MAX_PASSED_FDS];
    loop {
        let mut req = [0u8; 16];
        let (n, nfds) = match sys::recv_fds(sock, &mut req, &mut fds) {
            Ok((0, _)) | Err(_) => sys::exit(0),
            Ok(got) => got,
        };
        let received = &fds[..nfds];
        if n != 1 || req[0] != REQ_RUN || nfds < 4 {
            for &fd in received {
                sys::close(fd);
            }
            reply(sock, &fail_record(Errno::EPROTO), &[]);
            continue;
        }
        // run_one closes the received descriptors on every path.
        run_one(sock, shm, &mut stack, received, filter, uid, gid);
    }
}

fn fail_record(e: Errno) -> [u8; 5] {
    let mut rec = [0u8; 5];
    rec[0] = REP_FAILED;
    rec[1..5].copy_from_slice(&(e as i32).to_ne_bytes());
    rec
}

/// One run: fork the program, report it, supervise it to its end, kill and
/// reap everything it left, report how it ended.
fn run_one(
    sock: RawFd,
    shm: &SharedRegion,
    stack: &mut sys::ChildStack,
    fds: &[RawFd],
    filter: Option<&Filter>,
    uid: u32,
    gid: u32,
) {
    let cpu_before = sys::self_cpu_ns();
    let page = shm.bytes();
    let mut exec = [std::ptr::null::<c_char>(); MAX_EXEC];
    let mut argv = [std::ptr::null::<c_char>(); MAX_ARGS];
    let mut envp = [std::ptr::null::<c_char>(); MAX_ENV];
    let mut rlimits = [(0 as libc::__rlimit_resource_t, 0u64, 0u64); MAX_RLIMITS];
    let (n_exec, n_argv, n_env, n_rl, n_fds) = (
        u32_at(page, 4),
        u32_at(page, 8),
        u32_at(page, 12),
        u32_at(page, 16),
        u32_at(page, 20),
    );
    // The keeper loaded the filter at start (or seccomp is off for the whole
    // sandbox); a plan cannot ask for anything else.
    let seccomp = u32_at(page, 24) != 0;
    let mut at = HEADER + n_rl.min(MAX_RLIMITS) * RLIMIT_REC;
    let ok = page.get(0..4) == Some(MAGIC.as_slice())
        && n_rl <= MAX_RLIMITS
        && n_fds == fds.len()
        && seccomp == filter.is_some()
        && take_strings(page, &mut at, n_exec, &mut exec)
        && take_strings(page, &mut at, n_argv, &mut argv[..MAX_ARGS - 1])
        && take_strings(page, &mut at, n_env, &mut envp[..MAX_ENV - 1]);
    if !ok {
        for &fd in fds {
            sys::close(fd);
        }
        reply(sock, &fail_record(Errno::EINVAL), &[]);
        return;
    }
    for (i, slot) in rlimits.iter_mut().enumerate().take(n_rl) {
        let rec = HEADER + i * RLIMIT_REC;
        *slot = (
            u32_at(page, rec) as libc::__rlimit_resource_t,
            u64_at(page, rec + 8),
            u64_at(page, rec + 16),
        );
    }
    // fds: stdin, stdout, stderr, error pipe, extras...
    let mut prog_fds = [-1 as RawFd; MAX_PASSED_FDS];
    prog_fds[..3].copy_from_slice(&fds[..3]);
    let extras = &fds[4..];
    prog_fds[3..3 + extras.len()].copy_from_slice(extras);
    let plan = ProgramPlan {
        join_fds: &[],
        new_ipc: true,
        new_cgroup_ns: false,
        rlimits: &rlimits[..n_rl],
        uid,
        gid,
        fds: &prog_fds[..3 + extras.len()],
        err_w: fds[3],
        // Loaded by the keeper at start; see keeper_main.
        filter: None,
        exec_paths: &exec[..n_exec],
        argv: &argv[..=n_argv],
        envp: &envp[..=n_env],
    };
    // A reset of /box (see SandboxBox::clear) mounts a new filesystem there:
    // enter whatever is mounted now.
    let _ = sys::chdir(c"/box");
    let forked = sys::spawn_in_our_memory(stack, exec_program, &plan);
    for &fd in fds {
        sys::close(fd);
    }
    let prog = match forked {
        Ok(pid) => pid,
        Err(e) => {
            reply(sock, &fail_record(e), &[]);
            return;
        }
    };
    let pidfd = match sys::pidfd_open(prog) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = sys::kill(prog, libc::SIGKILL);
            let _ = sys::waitpid(prog, 0);
            reply(sock, &fail_record(e), &[]);
            return;
        }
    };
    let mut started = [0u8; 13];
    started[0] = REP_STARTED;
    started[1..5].copy_from_slice(&prog.to_ne_bytes());
    let so_far = sys::self_cpu_ns().saturating_sub(cpu_before);
    started[5..13].copy_from_slice(&so_far.to_ne_bytes());
    reply(sock, &started, &[pidfd]);

    // Supervise: reap orphans as they die (zombies would count against the
    // box's process limit) and end the box if the supervisor goes away.
    let status = loop {
        let mut pfds = [
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sock,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let _ = sys::poll(&mut pfds, 50);
        if pfds[1].revents != 0 {
            // Nothing is sent during a run: the supervisor is gone or gave up.
            sys::exit(0);
        }
        let mut done = None;
        loop {
            match sys::waitpid(-1, libc::WNOHANG | libc::__WALL) {
                Ok((0, _)) | Err(_) => break,
                Ok((pid, st)) if pid == prog => done = Some(st),
                Ok(_) => {}
            }
        }
        if let Some(st) = done {
            break st;
        }
    };
    sys::close(pidfd);
    // Kill what the program left. As pid 1 of the box's PID namespace, the
    // keeper's kill(-1) reaches every process of the box and nothing
    // outside it; a killed process cannot fork, so this converges.
    let mut rounds = 0;
    loop {
        match sys::waitpid(-1, libc::WNOHANG | libc::__WALL) {
            Err(_) => break,
            Ok((0, _)) => {
                rounds += 1;
                if rounds > 10_000 {
                    break;
                }
                let _ = sys::kill(-1, libc::SIGKILL);
                let _ = sys::waitpid(-1, libc::__WALL);
            }
            Ok(_) => {}
        }
    }
    let overhead = sys::self_cpu_ns().saturating_sub(cpu_before);
    let mut rec = [0u8; 13];
    rec[0] = REP_DONE;
    rec[1..5].copy_from_slice(&status.to_ne_bytes());
    rec[5..13].copy_from_slice(&overhead.to_ne_bytes());
    reply(sock, &rec, &[]);
}
