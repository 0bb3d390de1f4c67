//! Supervising a run: collecting output, enforcing time and output limits,
//! and judging what happened.
//!
//! One thread does it all with `poll`: the two output pipes and a pidfd for
//! init. Between events it sleeps no longer than the CPU time left divided by
//! the number of CPUs (the fastest the run can burn it), so a program is
//! killed within a millisecond or two of its CPU limit without polling
//! constantly while it is far from it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::boxes::{describe_failure, secs, SandboxBox};
use crate::cgroup::RunMeter;
use crate::error::SandboxError;
use crate::launch::ERR_RECORD;
use crate::limits::Limits;
use crate::outcome::{killed_by, Outcome, Verdict};
use crate::sys;

/// Who started the program, and so who reports how it ended.
pub(crate) enum Origin {
    /// The box keeper; the pidfd is the program's own.
    Keeper,
    /// A fresh init; the pidfd is init's, the status pipe carries the
    /// program's wait status.
    Init { pid: libc::pid_t, status: OwnedFd },
}

pub(crate) struct Started {
    pub origin: Origin,
    /// CPU the box keeper spent starting the run, counted by the cgroup.
    pub setup_cpu: Duration,
    pub pidfd: Arc<OwnedFd>,
    pub start: Instant,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub failure: OwnedFd,
    pub meter: RunMeter,
    pub limits: Limits,
    pub keep_files: bool,
    pub program: String,
}

/// Why the supervisor ended a run itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    Cpu,
    Wall,
    Output(&'static str),
    /// cgroup v1 OOM-kills one process, not the run: the rest is ended here.
    Memory,
    Requested,
}

/// A handle to signal a running program from another thread (a session's
/// KILL or INTERRUPT). It holds a pidfd, so it can never hit a recycled pid.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    /// Host pid of init when the run has one; the pidfd is then init's.
    init: Option<libc::pid_t>,
    pidfd: Arc<OwnedFd>,
    killed: Arc<std::sync::atomic::AtomicBool>,
}

impl ProcessHandle {
    /// Ends the run at once: init dies, and the kernel kills every process of
    /// its PID namespace with it.
    pub fn kill(&self) {
        self.killed.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = pidfd_signal(&self.pidfd, libc::SIGKILL);
    }

    /// Host pid of init (pid 1 of the run's own PID namespace) for runs that
    /// have one, 0 for runs started by the box keeper; for logs.
    pub fn init_pid(&self) -> i32 {
        self.init.unwrap_or(0)
    }

    /// Sends `sig` to the program itself (not to init), e.g. SIGINT for an
    /// interrupt. Returns false when the program is gone.
    pub fn signal_program(&self, sig: i32) -> bool {
        let Some(init) = self.init else {
            return pidfd_signal(&self.pidfd, sig).is_ok();
        };
        let path = format!("/proc/{init}/task/{init}/children");
        let Ok(children) = std::fs::read_to_string(path) else {
            return false;
        };
        let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            return false;
        };
        sys::kill(pid, sig).is_ok()
    }
}

fn pidfd_signal(pidfd: &OwnedFd, sig: i32) -> Result<(), Errno> {
    sys::pidfd_send_signal(pidfd.as_raw_fd(), sig)
}

/// A program running in a box. [`Running::wait`] supervises it to the end.
pub struct Running<'a> {
    sandbox_box: &'a mut SandboxBox,
    s: Started,
    handle: ProcessHandle,
    /// Set once the run has been supervised to its end; a `Running` dropped
    /// before that kills the run and collects it, so the box stays usable.
    finished: bool,
}

/// Output of one stream, capped.
struct Capture {
    buf: Vec<u8>,
    cap: usize,
    over: bool,
    open: bool,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            buf: Vec::new(),
            cap,
            over: false,
            open: true,
        }
    }

    /// Reads what is there without blocking; marks EOF.
    fn pull(&mut self, fd: &OwnedFd, chunk: &mut [u8]) {
        while self.open {
            match nix::unistd::read(fd, chunk) {
                Ok(0) => self.open = false,
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.buf.len());
                    if n > room {
                        self.over = true;
                    }
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
}

/// Waits up to `ms` for output (or for `pidfd` to become readable), then
/// takes whatever output is there. Returns whether `pidfd` fired.
fn pump(
    pidfd: Option<&OwnedFd>,
    stdout: &OwnedFd,
    stderr: &OwnedFd,
    (out, err): (&mut Capture, &mut Capture),
    chunk: &mut [u8],
    ms: u16,
) -> Result<bool, Errno> {
    let mut fds = Vec::with_capacity(3);
    if let Some(p) = pidfd {
        fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
    }
    if out.open {
        fds.push(PollFd::new(stdout.as_fd(), PollFlags::POLLIN));
    }
    if err.open {
        fds.push(PollFd::new(stderr.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(errno) => return Err(errno),
    }
    let fired = pidfd.is_some() && fds[0].revents().is_some_and(|r| !r.is_empty());
    drop(fds);
    out.pull(stdout, chunk);
    err.pull(stderr, chunk);
    Ok(fired)
}

impl<'a> Running<'a> {
    pub(crate) fn new(sandbox_box: &'a mut SandboxBox, s: Started) -> Running<'a> {
        let handle = ProcessHandle {
            init: match s.origin {
                Origin::Init { pid, .. } => Some(pid),
                Origin::Keeper => None,
            },
            pidfd: Arc::clone(&s.pidfd),
            killed: Arc::default(),
        };
        Running {
            sandbox_box,
            s,
            handle,
            finished: false,
        }
    }

    pub fn handle(&self) -> ProcessHandle {
        self.handle.clone()
    }

    /// Supervises the run to its end, cleans the box, and judges it.
    pub fn wait(mut self) -> Result<Outcome, SandboxError> {
        let result = self.supervise();
        self.finished = true;
        result
    }

    fn supervise(&mut self) -> Result<Outcome, SandboxError> {
        let Running {
            sandbox_box,
            s,
            handle,
            ..
        } = self;
        let ncpus = sandbox_box.sandbox.inner.ncpus.max(1);
        let cap = s.limits.output_cap_bytes();
        let mut out = Capture::new(cap);
        let mut err = Capture::new(cap);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut cut: Option<Cut> = None;
        let mut cpu_seen = Duration::ZERO;
        loop {
            if cut.is_none() && handle.killed.load(std::sync::atomic::Ordering::SeqCst) {
                cut = Some(Cut::Requested);
            }
            let elapsed = s.start.elapsed();
            let mut wait = Duration::from_millis(500);
            if let Some(limit) = s.limits.cpu_time {
                cpu_seen = s.meter.cpu_time()?.saturating_sub(s.setup_cpu);
                if cpu_seen > limit {
                    cut.get_or_insert(Cut::Cpu);
                } else {
                    wait = wait.min((limit - cpu_seen) / ncpus + Duration::from_micros(500));
                }
            }
            if let Some(limit) = s.limits.wall_time {
                if elapsed > limit {
                    cut.get_or_insert(Cut::Wall);
                } else {
                    wait = wait.min(limit - elapsed + Duration::from_micros(500));
                }
            }
            if s.limits.memory_kib.is_some() {
                if s.meter.oom_killed()? {
                    cut.get_or_insert(Cut::Memory);
                }
                wait = wait.min(Duration::from_millis(100));
            }
            if out.over {
                cut.get_or_insert(Cut::Output("stdout"));
            }
            if err.over {
                cut.get_or_insert(Cut::Output("stderr"));
            }
            if cut.is_some() {
                let _ = pidfd_signal(&s.pidfd, libc::SIGKILL);
                wait = Duration::from_millis(50);
            }
            let ms = wait.as_micros().div_ceil(1000).clamp(1, 1000) as u16;
            let exited = pump(
                Some(&s.pidfd),
                &s.stdout,
                &s.stderr,
                (&mut out, &mut err),
                &mut chunk,
                ms,
            )
            .map_err(|errno| SandboxError::Sys {
                what: "poll",
                errno,
            })?;
            if exited {
                break;
            }
        }
        let wall = s.start.elapsed();
        // Everything in the PID namespace is dead now, so the pipes are at EOF
        // unless a sibling run's fresh fork still holds a copy for an instant.
        let deadline = Instant::now() + Duration::from_millis(200);
        while (out.open || err.open) && Instant::now() < deadline {
            let _ = pump(
                None,
                &s.stdout,
                &s.stderr,
                (&mut out, &mut err),
                &mut chunk,
                10,
            );
        }
        // A program can write past the cap into the pipe and exit before the
        // loop above saw it: that is an output limit all the same (its exit
        // status stays what it was).
        if cut.is_none() {
            if out.over {
                cut = Some(Cut::Output("stdout"));
            } else if err.over {
                cut = Some(Cut::Output("stderr"));
            }
        }
        // How the program ended, and the CPU the keeper spent on the run
        // (charged to the cgroup, not the program's).
        let (status, overhead, init_status) = match &s.origin {
            Origin::Keeper => match sandbox_box.keeper.finish_run() {
                Ok(done) => (Some(done.status), Duration::from_nanos(done.overhead_ns), 0),
                Err(e) => {
                    // The keeper died with the run (its namespace with it);
                    // the box is rebuilt before its next run.
                    tracing::warn!(error = %e, "the box keeper did not report the run's end");
                    sandbox_box.keeper_broken = true;
                    (None, Duration::ZERO, 0)
                }
            },
            Origin::Init { pid, status } => {
                let (_, init_status) =
                    sys::waitpid(*pid, 0).map_err(SandboxError::sys("waitpid"))?;
                let mut buf = [0u8; 4];
                let got = sys::read_full(status.as_raw_fd(), &mut buf).unwrap_or(0) == 4;
                (
                    got.then(|| i32::from_ne_bytes(buf)),
                    Duration::ZERO,
                    init_status,
                )
            }
        };
        let mut rec = [0u8; ERR_RECORD];
        let failed = sys::read_full(s.failure.as_raw_fd(), &mut rec).unwrap_or(0) == ERR_RECORD;

        let cpu = s.meter.cpu_time()?.saturating_sub(overhead).max(cpu_seen);
        let memory_kib = s.meter.memory_peak_bytes()? / 1024;
        let oom = s.meter.oom_killed()?;
        sandbox_box.finish_run(s.keep_files)?;

        let mut outcome = Outcome {
            verdict: Verdict::Ok,
            exit_code: None,
            signal: None,
            cpu_time: cpu,
            wall_time: wall,
            memory_kib,
            stdout: std::mem::take(&mut out.buf),
            stderr: std::mem::take(&mut err.buf),
            stdout_truncated: out.over,
            stderr_truncated: err.over,
            comment: String::new(),
        };
        if failed {
            outcome.verdict = Verdict::SandboxError;
            outcome.comment = describe_failure(&rec, &s.program, "");
            return Ok(outcome);
        }
        if let Some(st) = status {
            if libc::WIFEXITED(st) {
                outcome.exit_code = Some(libc::WEXITSTATUS(st));
            } else if libc::WIFSIGNALED(st) {
                outcome.signal = Some(libc::WTERMSIG(st));
            }
        } else if cut.is_some() {
            outcome.signal = Some(libc::SIGKILL);
        } else if !libc::WIFEXITED(init_status) || libc::WEXITSTATUS(init_status) != 0 {
            // Init died without a report and we did not kill it.
            outcome.verdict = Verdict::SandboxError;
            outcome.comment = format!(
                "the sandbox's init process ended unexpectedly (wait status {init_status})"
            );
            return Ok(outcome);
        }
        judge(&mut outcome, cut, oom, &s.limits);
        Ok(outcome)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned: end the run and collect it, so that the box (and its
            // keeper, which reports every run's end) is ready for the next.
            self.handle.kill();
            if let Err(e) = self.supervise() {
                tracing::warn!(error = %e, "cleaning up an abandoned run failed");
            }
        }
    }
}

/// Decides the verdict. Order matters: a limit the supervisor enforced
/// explains the kill; an OOM kill anywhere in the run is MLE even if the main
/// process survived it; CPU over the limit is TLE even when the program
/// managed to exit first.
fn judge(o: &mut Outcome, cut: Option<Cut>, oom: bool, limits: &Limits) {
    let mle = || {
        (
            Verdict::MemoryLimit,
            format!(
                "Memory limit exceeded (peak {} KiB, limit {} KiB)",
                o.memory_kib,
                limits.memory_kib.unwrap_or_default()
            ),
        )
    };
    let (verdict, comment) = match cut {
        Some(Cut::Cpu) => (
            Verdict::TimeLimit,
            format!(
                "Time limit exceeded (cpu {} s > {} s)",
                secs(o.cpu_time),
                secs(limits.cpu_time.unwrap_or_default())
            ),
        ),
        Some(Cut::Wall) => (
            Verdict::TimeLimit,
            format!(
                "Wall time limit exceeded (wall {} s > {} s)",
                secs(o.wall_time),
                secs(limits.wall_time.unwrap_or_default())
            ),
        ),
        Some(Cut::Output(stream)) => (
            Verdict::OutputLimit,
            format!(
                "Output limit exceeded ({stream} over {} KiB)",
                limits.output_kib.unwrap_or_default()
            ),
        ),
        Some(Cut::Requested) => (Verdict::RuntimeError, "Killed on request".to_string()),
        Some(Cut::Memory) => mle(),
        None if oom => mle(),
        None => match (o.exit_code, o.signal, limits.cpu_time) {
            (_, _, Some(limit)) if o.cpu_time > limit => (
                Verdict::TimeLimit,
                format!(
                    "Time limit exceeded (cpu {} s > {} s)",
                    secs(o.cpu_time),
                    secs(limit)
                ),
            ),
            (_, Some(sig), _) if sig == libc::SIGXCPU => (
                Verdict::TimeLimit,
                format!("Time limit exceeded ({})", killed_by(sig)),
            ),
            (_, Some(sig), _) if sig == libc::SIGXFSZ => (
                Verdict::OutputLimit,
                format!("File size limit exceeded ({})", killed_by(sig)),
            ),
            (_, Some(sig), _) => (Verdict::RuntimeError, killed_by(sig)),
            (Some(0), None, _) => (Verdict::Ok, String::new()),
            (Some(code), None, _) => (Verdict::RuntimeError, format!("Exited with status {code}")),
            (None, None, _) => (
                Verdict::SandboxError,
                "the program's status was lost".to_string(),
            ),
        },
    };
    o.verdict = verdict;
    o.comment = comment;
}
