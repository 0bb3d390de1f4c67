//! Starting a session's language server in a sandbox box.
//!
//! The sandbox API is blocking and a box dies with the thread that spawned
//! its run, so one thread per session opens the box, spawns the server,
//! hands a [`ProcessHandle`] to the async side, and waits for the run to end
//! (then drops the box, which cleans its cgroup, before reporting the end).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use evaler_sandbox::{Bind, Limits, Outcome, ProcessHandle, RunSpec, Sandbox, Stdin, Verdict};
use tokio::sync::oneshot;

use super::assets;
use super::kernels::{KernelKind, KernelSpec};

/// Limits for one session, after command-line overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub memory_kib: u64,
    pub processes: u64,
}

/// What the launcher needs besides the kernel definition.
#[derive(Debug, Clone)]
pub struct LaunchParams {
    pub limits: SessionLimits,
    /// The evaler binary to show as `/opt/evaler/evaler` for STDIO kernels.
    pub evaler_exe: Option<PathBuf>,
    /// Bytes kept of each cell's stdout and stderr in the server.
    pub output_cap: usize,
}

/// Builds the run of `spec`'s server; `theirs` is the server's end of the
/// socket pair.
///
/// - Native servers get the socket as fd 3 (`EVALER_FD=3`) and their source
///   as standard input (`{server}` in the command becomes `-`);
///   `EVALER_STOP_ACK=1` asks them for `STOPPED` when SIGINT stops a cell.
/// - The STDIO server is this executable (`evaler-kernel`, or `evaler`),
///   passed as fd 3 and executed as `/proc/self/fd/3` (the box shows no
///   host path outside `/usr`), with the socket as standard input (`EVALER_FD=0`: safe Rust cannot adopt an
///   inherited descriptor by number, but it can clone stdin).
pub fn build_spec(
    spec: &KernelSpec,
    params: &LaunchParams,
    theirs: UnixStream,
) -> Result<RunSpec, String> {
    let argv = spec.resolved_command()?;
    let mut run = match &spec.kind {
        KernelKind::Native { server } => {
            let source = assets::server_source(server)
                .ok_or_else(|| format!("no embedded server {server}"))?;
            let argv: Vec<String> = argv
                .into_iter()
                .map(|a| {
                    if a == assets::SERVER_PLACEHOLDER {
                        "-".to_string()
                    } else {
                        a
                    }
                })
                .collect();
            let mut run = RunSpec::new(argv[0].clone()).args(argv[1..].iter().cloned());
            run.stdin = Stdin::Bytes(source.as_bytes().to_vec());
            run.extra_fds = vec![OwnedFd::from(theirs)];
            run.env.push(("EVALER_FD".into(), "3".into()));
            // Say STOPPED when SIGINT stops a cell (see the supervisor).
            run.env.push(("EVALER_STOP_ACK".into(), "1".into()));
            run
        }
        KernelKind::Stdio { dialect } => {
            let exe = match &params.evaler_exe {
                Some(p) => p.clone(),
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot find the evaler binary: {e}"))?,
            };
            let file = std::fs::File::open(&exe).map_err(|e| {
                format!(
                    "cannot open the evaler binary {} (rebuilt while running?): {e}",
                    exe.display()
                )
            })?;
            let mut run = RunSpec::new("/proc/self/fd/3").args([
                "stdio-server".to_string(),
                "--lang".to_string(),
                dialect.as_str().to_string(),
                "--".to_string(),
            ]);
            run.args.extend(argv);
            run.stdin = Stdin::File(OwnedFd::from(theirs));
            run.extra_fds = vec![OwnedFd::from(file)];
            run.env.push(("EVALER_FD".into(), "0".into()));
            run
        }
    };
    run.env
        .push(("EVALER_OUTPUT_CAP".into(), params.output_cap.to_string()));
    run.env.extend(spec.env.iter().cloned());
    run.binds = spec
        .binds
        .iter()
        .map(|b| Bind {
            host: b.host.clone(),
            name: b.name.clone(),
        })
        .collect();
    run.limits = Limits {
        cpu_time: None,
        wall_time: None,
        memory_kib: Some(params.limits.memory_kib),
        stack_kib: Some(8 * 1024),
        processes: Some(params.limits.processes),
        output_kib: Some(spec.output_kib),
        file_size_kib: None,
        open_files: spec.open_files,
    };
    Ok(run)
}

/// The async side's view of the sandboxed server.
pub struct Launched {
    /// The handle once the server has started, or why it could not.
    pub started: oneshot::Receiver<Result<ProcessHandle, String>>,
    /// The run's outcome once it is over (after the box was cleaned).
    pub ended: oneshot::Receiver<Result<Outcome, String>>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Spawns the session thread.
pub fn launch(sandbox: Sandbox, run: RunSpec) -> std::io::Result<Launched> {
    let (started_tx, started) = oneshot::channel();
    let (ended_tx, ended) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("evaler-session".into())
        .spawn(move || {
            // The box and the sandbox (the instance's cgroups) are gone
            // before the end is reported: the kernel exits as soon as it
            // hears, which would cut their removal short.
            let mut started_tx = Some(started_tx);
            let outcome = match sandbox.open_box() {
                Err(e) => Err(e.to_string()),
                Ok(mut sandbox_box) => match sandbox_box.spawn(run) {
                    Ok(running) => {
                        if let Some(tx) = started_tx.take() {
                            let _ = tx.send(Ok(running.handle()));
                        }
                        Ok(running.wait().map_err(|e| e.to_string()))
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
            drop(sandbox);
            match outcome {
                Ok(outcome) => {
                    let _ = ended_tx.send(outcome);
                }
                // Could not start: no `ended`; `started` says why.
                Err(msg) => {
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(Err(msg));
                    }
                }
            }
        })?;
    Ok(Launched {
        started,
        ended,
        thread,
    })
}

/// One sentence on why a server run ended, for CONNECTION-ERROR.
pub fn describe_end(server: &str, outcome: &Outcome, limits: &SessionLimits) -> String {
    match outcome.verdict {
        Verdict::MemoryLimit => format!(
            "the session ran out of memory (limit {} MiB)",
            limits.memory_kib / 1024
        ),
        Verdict::OutputLimit => format!("the {server} server wrote too much outside cells"),
        Verdict::SandboxError => format!("the {server} server could not run: {}", outcome.comment),
        _ => match (outcome.exit_code, outcome.signal) {
            (_, Some(sig)) => format!(
                "the {server} server was killed by signal {sig} ({})",
                evaler_sandbox::signal_name(sig)
            ),
            (Some(code), None) => format!("the {server} server exited with status {code}"),
            (None, None) => format!("the {server} server ended"),
        },
    }
}
