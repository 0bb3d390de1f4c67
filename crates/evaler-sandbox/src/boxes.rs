//! A box: one isolated place to run programs, one after another.
//!
//! What is expensive is built once per box and kept: the root filesystem and
//! `/box` (in a mount namespace of their own, held open by a descriptor), an
//! empty network namespace (creating and destroying one per run costs more
//! than the whole rest of a run), and the cgroup. A run then only has to
//! clone into a new PID namespace, copy the prepared mount namespace and
//! mount its own `/proc`, `/tmp` and `/dev/shm`.

use std::ffi::{c_char, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, Flock, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::cgroup::BoxCgroup;
use crate::error::SandboxError;
use crate::files::BoxDir;
use crate::keeper::Keeper;
use crate::launch::{self, ChildPlan, ProgramPlan, Stage, ERR_RECORD};
use crate::rootfs::{self, cstr, Step};
use crate::run::{Origin, Running};
use crate::sandbox::Sandbox;
use crate::spec::{base_env, valid_file_name, RunSpec, Stdin};
use crate::sys;

/// Most descriptors a caller may hand to a program besides stdio.
pub const MAX_EXTRA_FDS: usize = 32;

pub struct SandboxBox {
    pub(crate) sandbox: Sandbox,
    slot: u32,
    uid: u32,
    gid: u32,
    pub(crate) cgroup: BoxCgroup,
    mnt_ns: OwnedFd,
    net_ns: OwnedFd,
    /// Starts the runs that need nothing per-run of the mount namespace.
    pub(crate) keeper: Keeper,
    /// The keeper stopped answering; rebuilt before the next run.
    pub(crate) keeper_broken: bool,
    /// The memory and process limits last written to the cgroup.
    cgroup_limits: Option<(Option<u64>, Option<u64>)>,
    dir: BoxDir,
    /// The keeper's `/tmp` and `/dev/shm`, emptied after every run.
    tmp: BoxDir,
    shm: BoxDir,
    /// The per-run mounts without extra binds, built once.
    default_steps: Vec<Step>,
    _slot_lock: Flock<File>,
}

impl std::fmt::Debug for SandboxBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxBox")
            .field("slot", &self.slot)
            .field("uid", &self.uid)
            .finish()
    }
}

/// A helper process parked inside a namespace we are building, so that the
/// parent can open its namespace files and `/box`. The open descriptors keep
/// the namespaces alive after the helper is gone.
struct Helper {
    pid: libc::pid_t,
    /// The helper blocks reading the other end (it holds a copy of this one
    /// too, being a fork, so it never sees EOF: it is killed instead).
    _park: OwnedFd,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::waitpid(self.pid, 0);
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass descriptors fresh from a successful syscall that
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (r, w) = sys::pipe().map_err(SandboxError::sys("pipe"))?;
    Ok((owned(r), owned(w)))
}

/// Starts a helper in new namespaces (`flags`), or in the existing mount
/// namespace `enter`, runs `steps` there and parks it.
fn start_helper(
    flags: libc::c_int,
    enter: Option<RawFd>,
    steps: &[Step],
) -> Result<Helper, (String, Errno)> {
    let (ready_r, ready_w) = pipe().map_err(|_| ("pipe".to_string(), Errno::EMFILE))?;
    let (release_r, release_w) = pipe().map_err(|_| ("pipe".to_string(), Errno::EMFILE))?;
    let (ready_rfd, ready_wfd, release_rfd) = (
        ready_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        release_r.as_raw_fd(),
    );
    match sys::clone_fork(flags) {
        Ok(0) => {
            // Child: no allocation from here on.
            let _ = sys::die_with_parent();
            let mut rec = [0u8; 8];
            let res = match enter {
                Some(fd) => sys::setns(fd, libc::CLONE_NEWNS).map_err(|e| (usize::MAX, e)),
                None => Ok(()),
            }
            .and_then(|()| rootfs::run_steps(steps));
            match res {
                Ok(()) => {
                    let _ = sys::write_all(ready_wfd, b"ok");
                }
                Err((i, e)) => {
                    rec[0..4].copy_from_slice(&(i as u32).to_ne_bytes());
                    rec[4..8].copy_from_slice(&(e as i32).to_ne_bytes());
                    let _ = sys::write_all(ready_wfd, &rec);
                    sys::exit(1);
                }
            }
            sys::close(ready_wfd);
            let mut b = [0u8; 1];
            let _ = sys::read_full(release_rfd, &mut b);
            sys::exit(0)
        }
        Ok(pid) => {
            drop(ready_w);
            drop(release_r);
            let helper = Helper {
                pid,
                _park: release_w,
            };
            let mut buf = [0u8; 8];
            let n = sys::read_full(ready_rfd, &mut buf)
                .map_err(|e| ("reading helper".to_string(), e))?;
            if n == 2 && &buf[..2] == b"ok" {
                return Ok(helper);
            }
            if n == 8 {
                let i = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                let e = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
                let step = steps.get(i).map_or_else(
                    || "entering the mount namespace".to_string(),
                    Step::describe,
                );
                return Err((step, Errno::from_raw(e)));
            }
            Err(("helper died".to_string(), Errno::ECHILD))
        }
        Err(e) => Err(("clone".to_string(), e)),
    }
}

fn open_proc(pid: libc::pid_t, rel: &str, extra: libc::c_int) -> Result<OwnedFd, SandboxError> {
    let path = format!("/proc/{pid}/{rel}");
    sys::open_readonly(&cstr(&path), extra)
        .map(owned)
        .map_err(|errno| SandboxError::Io {
            what: "opening",
            path: path.into(),
            source: std::io::Error::from(errno),
        })
}

/// What a box's keeper holds: the namespaces and the host-side handles on
/// its scratch filesystems.
struct Parts {
    keeper: Keeper,
    mnt_ns: OwnedFd,
    net_ns: OwnedFd,
    dir: BoxDir,
    tmp: BoxDir,
    shm: BoxDir,
}

fn build(
    sandbox: &Sandbox,
    slot: u32,
    uid: u32,
    gid: u32,
    cgroup: &BoxCgroup,
) -> Result<Parts, SandboxError> {
    let inner = &sandbox.inner;
    let steps = rootfs::box_root_plan(&inner.config, &inner.stage, uid, gid);
    let join = cgroup.join_files()?;
    let join_raw: Vec<RawFd> = join.iter().map(AsRawFd::as_raw_fd).collect();
    let filter = inner.config.seccomp.then_some(&inner.filter);
    let keeper = Keeper::start(&steps, &join_raw, filter, uid, gid).map_err(|(step, errno)| {
        SandboxError::Prepare {
            index: slot,
            step,
            errno,
        }
    })?;
    drop(join);
    let box_fd = open_proc(keeper.pid, "root/box", libc::O_DIRECTORY)?;
    let tmp_fd = open_proc(keeper.pid, "root/tmp", libc::O_DIRECTORY)?;
    let shm_fd = open_proc(keeper.pid, "root/dev/shm", libc::O_DIRECTORY)?;
    Ok(Parts {
        mnt_ns: open_proc(keeper.pid, "ns/mnt", 0)?,
        net_ns: open_proc(keeper.pid, "ns/net", 0)?,
        keeper,
        dir: BoxDir::new(box_fd, uid, gid),
        tmp: BoxDir::new(tmp_fd, 0, 0),
        shm: BoxDir::new(shm_fd, 0, 0),
    })
}

impl SandboxBox {
    pub(crate) fn open(
        sandbox: Sandbox,
        slot: u32,
        lock: Flock<File>,
    ) -> Result<SandboxBox, SandboxError> {
        let inner = &sandbox.inner;
        let uid = inner.config.uid_base + slot;
        let gid = uid;
        let cgroup = inner.cgroups.create_box(slot)?;
        let parts = build(&sandbox, slot, uid, gid, &cgroup)?;
        let default_steps = rootfs::run_plan(&inner.config, &[]);
        Ok(SandboxBox {
            uid,
            gid,
            slot,
            cgroup,
            mnt_ns: parts.mnt_ns,
            net_ns: parts.net_ns,
            keeper: parts.keeper,
            keeper_broken: false,
            cgroup_limits: None,
            dir: parts.dir,
            tmp: parts.tmp,
            shm: parts.shm,
            default_steps,
            _slot_lock: lock,
            sandbox,
        })
    }

    /// Replaces a keeper that died (the box's namespaces died with it) by a
    /// fresh one with fresh namespaces.
    fn rebuild(&mut self) -> Result<(), SandboxError> {
        tracing::warn!(slot = self.slot, "the box keeper died; rebuilding the box");
        let parts = build(&self.sandbox, self.slot, self.uid, self.gid, &self.cgroup)?;
        self.mnt_ns = parts.mnt_ns;
        self.net_ns = parts.net_ns;
        self.keeper = parts.keeper;
        self.dir = parts.dir;
        self.tmp = parts.tmp;
        self.shm = parts.shm;
        self.keeper_broken = false;
        Ok(())
    }

    /// The box's slot number (its uid is `uid_base + slot`).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Host pids of the run processes in the box's cgroup (none between
    /// runs). The box keeper is not one of them.
    pub fn processes(&self) -> Result<Vec<i32>, SandboxError> {
        let mut procs = self.cgroup.procs()?;
        procs.retain(|&p| p != self.keeper.pid);
        Ok(procs)
    }

    /// The box's working directory (`/box` inside), from the host side.
    pub fn files(&self) -> &BoxDir {
        &self.dir
    }

    /// Empties `/box`. A tree too deep to walk is replaced by a fresh
    /// filesystem instead.
    pub fn clear(&mut self) -> Result<(), SandboxError> {
        if self.dir.clear()? {
            return Ok(());
        }
        let steps = rootfs::reset_box_plan(&self.sandbox.inner.config, self.uid, self.gid);
        self.dir = BoxDir::new(self.remount(&steps, "root/box")?, self.uid, self.gid);
        Ok(())
    }

    /// Empties the keeper's `/tmp` and `/dev/shm`, replacing a filesystem
    /// whose tree is too deep to walk.
    fn clear_scratch(&mut self) -> Result<(), SandboxError> {
        let config = &self.sandbox.inner.config;
        if !self.tmp.clear()? {
            let steps = rootfs::reset_scratch_plan(config, c"/tmp");
            self.tmp = BoxDir::new(self.remount(&steps, "root/tmp")?, 0, 0);
        }
        if !self.shm.clear()? {
            let steps = rootfs::reset_scratch_plan(config, c"/dev/shm");
            self.shm = BoxDir::new(self.remount(&steps, "root/dev/shm")?, 0, 0);
        }
        Ok(())
    }

    /// Runs `steps` in the box's mount namespace and opens `rel` (under the
    /// helper's `/proc/PID/`) afterwards.
    fn remount(&self, steps: &[Step], rel: &str) -> Result<OwnedFd, SandboxError> {
        let helper =
            start_helper(0, Some(self.mnt_ns.as_raw_fd()), steps).map_err(|(step, errno)| {
                SandboxError::Prepare {
                    index: self.slot,
                    step,
                    errno,
                }
            })?;
        open_proc(helper.pid, rel, libc::O_DIRECTORY)
    }

    /// Runs a program to the end and returns what it did.
    pub fn run(&mut self, spec: RunSpec) -> Result<crate::Outcome, SandboxError> {
        self.spawn(spec)?.wait()
    }

    /// Starts a program; [`Running::wait`] supervises it to the end. The
    /// thread that calls `spawn` must outlive the run: the box dies with it.
    pub fn spawn(&mut self, spec: RunSpec) -> Result<Running<'_>, SandboxError> {
        validate(&spec)?;
        if self.keeper_broken {
            self.rebuild()?;
        }
        for f in &spec.files {
            self.dir.write(&f.name, &f.contents, f.executable)?;
        }
        let limits = spec.limits.clone();
        // The keeper lives in the cgroup too: one more process. Judges run
        // test after test with the same limits: write them only on change.
        let wanted = (
            limits.memory_kib.map(|k| k.saturating_mul(1024)),
            limits.processes.map(|p| p.saturating_add(1)),
        );
        if self.cgroup_limits != Some(wanted) {
            self.cgroup_limits = None;
            self.cgroup.set_limits(wanted.0, wanted.1)?;
            self.cgroup_limits = Some(wanted);
        }
        let meter = self.cgroup.begin_run()?;

        // Everything the children touch is built here, before the clone.
        let exec_paths = exec_candidates(&spec.program, &spec.env);
        let argv_c: Vec<CString> = std::iter::once(spec.program.as_str())
            .chain(spec.args.iter().map(String::as_str))
            .map(|a| CString::new(a).unwrap_or_default())
            .collect();
        let mut env: Vec<(String, String)> = base_env();
        for (k, v) in &spec.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let envp_c: Vec<CString> = env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap_or_default())
            .collect();
        let argv: Vec<*const c_char> = argv_c
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp: Vec<*const c_char> = envp_c
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect();

        let stdin = stdin_fd(spec.stdin)?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        for fd in [&out_r, &err_r] {
            // Fewer wake-ups for big outputs; the limit may be lower, so best effort.
            let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(1 << 20));
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(SandboxError::sys("fcntl"))?;
        }
        let (fail_r, fail_w) = pipe()?;
        let rlimits = rlimits(&limits);
        let seccomp = self.sandbox.inner.config.seccomp;
        let started =
            |pidfd: OwnedFd, origin: Origin, start: Instant, setup: u64| crate::run::Started {
                origin,
                setup_cpu: Duration::from_nanos(setup),
                pidfd: std::sync::Arc::new(pidfd),
                start,
                stdout: out_r,
                stderr: err_r,
                failure: fail_r,
                meter,
                limits,
                keep_files: spec.keep_files,
                program: spec.program,
            };

        // The fast path: the box keeper forks the program inside the box.
        let nfds = 4 + spec.extra_fds.len();
        if spec.binds.is_empty()
            && self
                .keeper
                .write_plan(&exec_paths, &argv_c, &envp_c, &rlimits, nfds, seccomp)
        {
            let mut fds: Vec<RawFd> = vec![
                stdin.as_raw_fd(),
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
                fail_w.as_raw_fd(),
            ];
            fds.extend(spec.extra_fds.iter().map(AsRawFd::as_raw_fd));
            let start = Instant::now();
            let (pidfd, setup) = match self.keeper.start_run(&fds) {
                Ok(started) => started,
                Err(errno) => {
                    self.keeper_broken = true;
                    return Err(SandboxError::Setup {
                        step: "starting the run in the box keeper",
                        errno,
                    });
                }
            };
            drop((stdin, out_w, err_w, fail_w, spec.extra_fds));
            return Ok(Running::new(
                self,
                started(pidfd, Origin::Keeper, start, setup),
            ));
        }

        // Runs with their own binds get a fresh init and mount namespace.
        let (status_r, status_w) = pipe()?;
        let join = self.cgroup.join_files()?;
        let join_raw: Vec<RawFd> = join.iter().map(AsRawFd::as_raw_fd).collect();
        let mut fds: Vec<RawFd> = vec![stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        fds.extend(spec.extra_fds.iter().map(AsRawFd::as_raw_fd));
        let bind_steps;
        let trees;
        let steps: &[Step] = if spec.binds.is_empty() {
            &self.default_steps
        } else {
            trees = spec
                .binds
                .iter()
                .map(|b| {
                    sys::open_tree_clone(&cstr(&b.host))
                        .map(owned)
                        .map_err(|errno| SandboxError::Io {
                            what: "opening bind source",
                            path: b.host.clone(),
                            source: std::io::Error::from(errno),
                        })
                })
                .collect::<Result<Vec<OwnedFd>, _>>()?;
            let pairs: Vec<_> = spec
                .binds
                .iter()
                .zip(trees.iter().map(AsRawFd::as_raw_fd))
                .collect();
            bind_steps = rootfs::run_plan(&self.sandbox.inner.config, &pairs);
            &bind_steps
        };
        let inner = &self.sandbox.inner;
        let exec_ptrs: Vec<*const c_char> = exec_paths.iter().map(|c| c.as_ptr()).collect();
        let plan = ChildPlan {
            net_ns: self.net_ns.as_raw_fd(),
            mnt_ns: self.mnt_ns.as_raw_fd(),
            steps,
            status_w: status_w.as_raw_fd(),
            program: ProgramPlan {
                join_fds: &join_raw,
                new_ipc: false,
                new_cgroup_ns: true,
                rlimits: &rlimits,
                uid: self.uid,
                gid: self.gid,
                fds: &fds,
                err_w: fail_w.as_raw_fd(),
                filter: seccomp.then_some(&inner.filter),
                exec_paths: &exec_ptrs,
                argv: &argv,
                envp: &envp,
            },
        };
        let start = Instant::now();
        let pid = match sys::clone_fork(libc::CLONE_NEWPID) {
            Ok(0) => launch::init_main(&plan),
            Ok(pid) => pid,
            Err(errno) => {
                return Err(SandboxError::Setup {
                    step: "clone",
                    errno,
                })
            }
        };
        // The children hold their own copies now.
        drop((stdin, out_w, err_w, status_w, fail_w, join, spec.extra_fds));
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => owned(fd),
            Err(errno) => {
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid(pid, 0);
                return Err(SandboxError::Setup {
                    step: "pidfd_open",
                    errno,
                });
            }
        };
        Ok(Running::new(
            self,
            started(
                pidfd,
                Origin::Init {
                    pid,
                    status: status_r,
                },
                start,
                0,
            ),
        ))
    }

    /// After a run: make sure nothing of it is alive and, unless asked to
    /// keep them, remove its files; `/tmp` and `/dev/shm` always go.
    pub(crate) fn finish_run(&mut self, keep_files: bool) -> Result<(), SandboxError> {
        // The keeper (or init) has killed and reaped everything already; this
        // is the backstop, through the cgroup, sparing only the keeper. The
        // keeper alone is one task: then there is nothing to list.
        let only_keeper = matches!(self.cgroup.tasks(), Ok(n) if n <= 1);
        for attempt in 0.. {
            if only_keeper {
                break;
            }
            let left = self.processes()?;
            if left.is_empty() {
                break;
            }
            if attempt >= 200 {
                return Err(SandboxError::Invalid(format!(
                    "processes {left:?} of box {} would not die",
                    self.slot
                )));
            }
            for pid in left {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.clear_scratch()?;
        if !keep_files {
            self.clear()?;
        }
        Ok(())
    }
}

fn validate(spec: &RunSpec) -> Result<(), SandboxError> {
    let bad = |what: &str| Err(SandboxError::Invalid(what.to_string()));
    if spec.program.is_empty() {
        return bad("the program name is empty");
    }
    if spec.program.contains('\0') || spec.args.iter().any(|a| a.contains('\0')) {
        return bad("the program name and arguments may not contain NUL bytes");
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(SandboxError::Invalid(format!(
                "invalid environment variable {k:?}"
            )));
        }
    }
    if spec.extra_fds.len() > MAX_EXTRA_FDS {
        return Err(SandboxError::Invalid(format!(
            "at most {MAX_EXTRA_FDS} extra descriptors"
        )));
    }
    for f in &spec.files {
        if !valid_file_name(&f.name) {
            return Err(SandboxError::BadFileName(f.name.clone()));
        }
    }
    for b in &spec.binds {
        if !valid_file_name(&b.name) {
            return Err(SandboxError::BadFileName(b.name.clone()));
        }
        if !b.host.exists() {
            return Err(SandboxError::Invalid(format!(
                "bind source {} does not exist",
                b.host.display()
            )));
        }
    }
    Ok(())
}

/// Where `execve` looks for the program: itself when it has a `/`, else each
/// `PATH` directory (the run's own PATH, as the program would see it).
fn exec_candidates(program: &str, env: &[(String, String)]) -> Vec<CString> {
    if program.contains('/') {
        return vec![CString::new(program).unwrap_or_default()];
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(crate::spec::BASE_PATH, |(_, v)| v.as_str());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cstr(Path::new(d).join(program)))
        .collect()
}

fn stdin_fd(stdin: Stdin) -> Result<OwnedFd, SandboxError> {
    match stdin {
        Stdin::Null => sys::open_readonly(c"/dev/null", 0)
            .map(owned)
            .map_err(SandboxError::sys("open /dev/null")),
        Stdin::File(fd) => Ok(fd),
        Stdin::Bytes(bytes) => {
            let fd = memfd_create(
                c"evaler-stdin",
                MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
            )
            .map_err(SandboxError::sys("memfd_create"))?;
            let mut file = File::from(fd);
            file.write_all(&bytes).map_err(|source| SandboxError::Io {
                what: "writing stdin",
                path: "memfd:evaler-stdin".into(),
                source,
            })?;
            let fd = OwnedFd::from(file);
            fcntl(
                &fd,
                FcntlArg::F_ADD_SEALS(
                    SealFlag::F_SEAL_WRITE
                        | SealFlag::F_SEAL_GROW
                        | SealFlag::F_SEAL_SHRINK
                        | SealFlag::F_SEAL_SEAL,
                ),
            )
            .map_err(SandboxError::sys("sealing stdin"))?;
            nix::unistd::lseek(&fd, 0, nix::unistd::Whence::SeekSet)
                .map_err(SandboxError::sys("lseek"))?;
            Ok(fd)
        }
    }
}

fn rlimits(limits: &crate::Limits) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let stack = limits.effective_stack_bytes();
    let nofile = limits.open_files.max(16);
    let mut v = vec![
        (libc::RLIMIT_STACK, stack, stack),
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_NOFILE, nofile, nofile),
    ];
    if let Some(kib) = limits.file_size_kib {
        let b = kib.saturating_mul(1024);
        v.push((libc::RLIMIT_FSIZE, b, b));
    }
    if let Some(cpu) = limits.cpu_time {
        // A backstop only: the supervisor kills at the limit itself, within
        // milliseconds, for all processes together.
        let secs = cpu.as_secs() + 2;
        v.push((libc::RLIMIT_CPU, secs, secs + 1));
    }
    v
}

/// Turns a failure record from the error pipe into words.
pub(crate) fn describe_failure(rec: &[u8; ERR_RECORD], program: &str, steps_hint: &str) -> String {
    let stage = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let errno = Errno::from_raw(i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]));
    match Stage::from_u32(stage) {
        Some(Stage::Exec) => format!("cannot execute {program:?}: {}", errno.desc()),
        Some(s) => format!(
            "sandbox setup failed while {}{steps_hint}: {}",
            s.describe(),
            errno.desc()
        ),
        None => format!("sandbox setup failed: {}", errno.desc()),
    }
}

/// Rounds a duration for human comments.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}
