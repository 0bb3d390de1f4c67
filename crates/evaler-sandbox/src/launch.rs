//! The two processes of a run on the far side of `clone`.
//!
//! `clone(CLONE_NEWPID)` makes *init*: pid 1 of the run's own PID namespace.
//! It joins the box's network namespace, takes fresh IPC and UTS namespaces
//! and a private copy of the box's mount namespace, mounts the run's `/proc`,
//! `/tmp` and `/dev/shm`, and forks the *program*. The program joins the
//! box's cgroup, drops to the box's uid with no capabilities, sets its
//! rlimits, loads the seccomp filter and `execve`s.
//!
//! Init stays outside the cgroup (its few microseconds are not the
//! program's) and reaps orphans; when the program ends, init reports its wait
//! status and exits, and the kernel then kills whatever is left in the PID
//! namespace (daemons, forgotten children). A program cannot be pid 1 itself:
//! pid 1 ignores default-action signals, so `abort()` would not kill it.
//!
//! Both run between `clone` and `execve` of a multi-threaded parent: no
//! allocation, no panics (see [`crate::sys`]). Everything they use is
//! prepared in a [`ChildPlan`] beforehand.

use std::ffi::c_char;
use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::rootfs::{run_steps, Step};
use crate::seccomp::Filter;
use crate::sys;

/// Where a setup failure happened; sent as a number through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    JoinNamespaces = 1,
    Mounts = 2,
    Chdir = 3,
    Fork = 4,
    JoinCgroup = 5,
    Rlimits = 6,
    Fds = 7,
    DropPrivileges = 8,
    Seccomp = 9,
    Exec = 10,
}

impl Stage {
    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        Some(match v {
            1 => Stage::JoinNamespaces,
            2 => Stage::Mounts,
            3 => Stage::Chdir,
            4 => Stage::Fork,
            5 => Stage::JoinCgroup,
            6 => Stage::Rlimits,
            7 => Stage::Fds,
            8 => Stage::DropPrivileges,
            9 => Stage::Seccomp,
            10 => Stage::Exec,
            _ => return None,
        })
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Stage::JoinNamespaces => "entering the box's namespaces",
            Stage::Mounts => "mounting the run's filesystems",
            Stage::Chdir => "entering /box",
            Stage::Fork => "forking the program",
            Stage::JoinCgroup => "joining the box's cgroup",
            Stage::Rlimits => "setting rlimits",
            Stage::Fds => "arranging file descriptors",
            Stage::DropPrivileges => "dropping privileges",
            Stage::Seccomp => "loading the seccomp filter",
            Stage::Exec => "executing the program",
        }
    }
}

/// A 12-byte setup failure record: stage, errno, detail (step index).
pub(crate) const ERR_RECORD: usize = 12;

/// What the program process needs between fork and `execve`; shared by the
/// two ways of starting a run (init, or the box keeper).
pub(crate) struct ProgramPlan<'a> {
    /// cgroup.procs files to write "0" into (empty when the forking process
    /// is already in the box's cgroup).
    pub join_fds: &'a [RawFd],
    /// Take a fresh IPC namespace (when the forking process has not).
    pub new_ipc: bool,
    /// Take a cgroup namespace rooted at the box's cgroup (when the forking
    /// process does not already live in one).
    pub new_cgroup_ns: bool,
    pub rlimits: &'a [(libc::__rlimit_resource_t, u64, u64)],
    pub uid: u32,
    pub gid: u32,
    /// stdin, stdout, stderr, then the extra descriptors (fd 3, 4, ...).
    pub fds: &'a [RawFd],
    pub err_w: RawFd,
    /// Loaded just before `execve`; `None` when the forking process carries
    /// it already (the keeper) or seccomp is off.
    pub filter: Option<&'a Filter>,
    /// NUL-terminated candidate paths, tried in order.
    pub exec_paths: &'a [*const c_char],
    /// NULL-terminated.
    pub argv: &'a [*const c_char],
    /// NULL-terminated.
    pub envp: &'a [*const c_char],
}

/// Everything the two child processes need, built before `clone`.
pub(crate) struct ChildPlan<'a> {
    pub net_ns: RawFd,
    pub mnt_ns: RawFd,
    pub steps: &'a [Step],
    pub status_w: RawFd,
    pub program: ProgramPlan<'a>,
}

fn report(err_w: RawFd, stage: Stage, errno: Errno, detail: u32) -> ! {
    let mut rec = [0u8; ERR_RECORD];
    rec[0..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    rec[4..8].copy_from_slice(&(errno as i32).to_ne_bytes());
    rec[8..12].copy_from_slice(&detail.to_ne_bytes());
    let _ = sys::write_all(err_w, &rec);
    sys::exit(126)
}

/// Init: pid 1 of the run's PID namespace. Never returns.
pub(crate) fn init_main(plan: &ChildPlan<'_>) -> ! {
    let err_w = plan.program.err_w;
    // Should the supervising thread die, init dies, and with it the namespace.
    if let Err(e) = sys::die_with_parent() {
        report(err_w, Stage::JoinNamespaces, e, 0);
    }
    sys::reset_signals();
    if let Err(e) = sys::setns(plan.net_ns, libc::CLONE_NEWNET)
        .and_then(|()| sys::unshare(libc::CLONE_NEWIPC | libc::CLONE_NEWUTS))
        .and_then(|()| sys::sethostname(b"evaler"))
        .and_then(|()| sys::setns(plan.mnt_ns, libc::CLONE_NEWNS))
        .and_then(|()| sys::unshare(libc::CLONE_NEWNS))
    {
        report(err_w, Stage::JoinNamespaces, e, 0);
    }
    if let Err((i, e)) = run_steps(plan.steps) {
        report(err_w, Stage::Mounts, e, i as u32);
    }
    if let Err(e) = sys::chdir(c"/box") {
        report(err_w, Stage::Chdir, e, 0);
    }
    let prog = match sys::fork() {
        Ok(0) => exec_program(&plan.program),
        Ok(pid) => pid,
        Err(e) => report(err_w, Stage::Fork, e, 0),
    };
    // Keep only the status pipe: stdio copies held here would delay EOF.
    let status = match sys::dup_above(plan.status_w, 3) {
        Ok(fd) => fd,
        Err(e) => report(err_w, Stage::Fds, e, 0),
    };
    sys::close_range(0, status - 1);
    sys::close_from(status + 1);
    loop {
        match sys::waitpid(-1, libc::__WALL) {
            Ok((pid, st)) if pid == prog => {
                let _ = sys::write_all(status, &st.to_ne_bytes());
                sys::exit(0);
            }
            Ok(_) => {}
            Err(_) => sys::exit(2),
        }
    }
}

/// The program, from fork to `execve`. Never returns.
pub(crate) fn exec_program(plan: &ProgramPlan<'_>) -> ! {
    let err_w = plan.err_w;
    for &fd in plan.join_fds {
        if let Err(e) = sys::write_all(fd, b"0") {
            report(err_w, Stage::JoinCgroup, e, 0);
        }
    }
    if plan.new_ipc {
        // SysV IPC objects and POSIX queues never pass from run to run.
        if let Err(e) = sys::unshare(libc::CLONE_NEWIPC) {
            report(err_w, Stage::JoinNamespaces, e, 1);
        }
    }
    // The program sees its own cgroup as the root of the hierarchy.
    if plan.new_cgroup_ns {
        if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
            report(err_w, Stage::JoinCgroup, e, 1);
        }
    }
    // When the box runs out of memory, the OOM killer must pick the run's
    // processes, never the box keeper (raising one's score needs no
    // privilege; children inherit it).
    let _ = sys::write_existing(c"/proc/self/oom_score_adj", b"1000");
    // A new session: no controlling terminal, so no TIOCSTI on the host's.
    let _ = sys::setsid();
    for (i, &(res, soft, hard)) in plan.rlimits.iter().enumerate() {
        if let Err(e) = sys::setrlimit(res, soft, hard) {
            report(err_w, Stage::Rlimits, e, i as u32);
        }
    }
    // Move every source descriptor above the target range first, so that a
    // source numbered like a target is not clobbered by an earlier dup2.
    let first_free = plan.fds.len() as RawFd;
    let err_w = match sys::dup_above(plan.err_w, first_free) {
        Ok(fd) => fd,
        Err(e) => report(err_w, Stage::Fds, e, 0),
    };
    let mut moved = [0 as RawFd; 64];
    for (i, &fd) in plan.fds.iter().enumerate().take(moved.len()) {
        match sys::dup_above(fd, first_free) {
            Ok(m) => moved[i] = m,
            Err(e) => report(err_w, Stage::Fds, e, i as u32),
        }
    }
    for (target, &m) in moved.iter().enumerate().take(plan.fds.len()) {
        if let Err(e) = sys::dup2(m, target as RawFd) {
            report(err_w, Stage::Fds, e, target as u32);
        }
    }
    sys::close_range(first_free, err_w - 1);
    sys::close_from(err_w + 1);
    if let Err(e) = sys::drop_to(plan.uid, plan.gid) {
        report(err_w, Stage::DropPrivileges, e, 0);
    }
    if let Err(e) = sys::no_new_privs() {
        report(err_w, Stage::DropPrivileges, e, 1);
    }
    if let Some(filter) = plan.filter {
        if let Err(e) = filter.programs().try_for_each(|p| sys::seccomp_load(p)) {
            report(err_w, Stage::Seccomp, e, 0);
        }
    }
    // Like execvp: ENOENT means "try the next PATH entry"; a more telling
    // error (EACCES, ENOEXEC) found on the way is what gets reported.
    let mut last = Errno::ENOENT;
    for (i, &path) in plan.exec_paths.iter().enumerate() {
        let mut e = sys::execve(path, plan.argv, plan.envp);
        // ETXTBSY: a process forked from the supervisor at the moment it was
        // writing this executable into the box still holds the file open for
        // writing; that copy is closed within moments.
        let mut tries = 0;
        while e == Errno::ETXTBSY && tries < 200 {
            sys::sleep_us(1000);
            tries += 1;
            e = sys::execve(path, plan.argv, plan.envp);
        }
        if e != Errno::ENOENT && e != Errno::ENOTDIR {
            last = e;
            if e != Errno::EACCES {
                report(err_w, Stage::Exec, e, i as u32);
            }
        }
    }
    report(err_w, Stage::Exec, last, u32::MAX)
}
