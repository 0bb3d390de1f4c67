//! `evaler run`: one program in the sandbox, the way isolate's `--run` is
//! used from scripts. Exit code 0 whenever the run was carried out, whatever
//! its verdict; non-zero only for usage errors (2) and sandbox errors (1).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use evaler_sandbox::files::BoxDir;
use evaler_sandbox::{Limits, Outcome, RunSpec, Sandbox, SandboxConfig, Stdin, Verdict};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// CPU time limit in seconds (all processes and threads together).
    #[arg(long, value_name = "S")]
    time: Option<f64>,
    /// Wall-clock limit in seconds [default: 2 × --time + 1 when --time is set].
    #[arg(long, value_name = "S")]
    wall: Option<f64>,
    /// Memory limit of the whole run in KiB (cgroup, swap included).
    #[arg(long, value_name = "KB")]
    memory: Option<u64>,
    /// Stack limit in KiB [default: the memory limit, or 64 MiB].
    #[arg(long, value_name = "KB")]
    stack: Option<u64>,
    /// Processes and threads alive at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    processes: u64,
    /// Bytes kept of stdout and of stderr, each, in KiB; more is OLE.
    #[arg(long, value_name = "KB", default_value_t = 64 * 1024)]
    output: u64,
    /// File given to the program as stdin [default: empty].
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Directory whose contents become the box's working directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Environment variable for the program (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Print exactly one JSON object with the outcome on stdout.
    #[arg(long)]
    json: bool,
    /// Program (resolved inside the sandbox) and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

fn seconds(name: &str, v: Option<f64>) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("--{name} must be a positive number of seconds, not {s}"),
    }
}

fn usage(msg: impl std::fmt::Display) -> Result<i32> {
    eprintln!("evaler run: {msg}");
    Ok(2)
}

pub fn main(args: RunArgs) -> Result<i32> {
    let (time, wall) = match (seconds("time", args.time), seconds("wall", args.wall)) {
        (Ok(t), Ok(w)) => (t, w),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let wall = wall.or(time.map(|t| t * 2 + Duration::from_secs(1)));
    let mut env = Vec::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => return usage(format!("--env takes K=V, not {kv:?}")),
        }
    }
    let stdin = match &args.stdin {
        None => Stdin::Null,
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Stdin::File(f.into()),
            Err(e) => return usage(format!("cannot open --stdin {}: {e}", p.display())),
        },
    };
    if let Some(dir) = &args.dir {
        if !dir.is_dir() {
            return usage(format!("--dir {} is not a directory", dir.display()));
        }
    }
    let Some((program, rest)) = args.command.split_first() else {
        return usage("no program given");
    };
    let limits = Limits {
        cpu_time: time,
        wall_time: wall,
        memory_kib: args.memory.filter(|&m| m > 0),
        stack_kib: args.stack.filter(|&s| s > 0),
        processes: Some(args.processes.max(1)),
        output_kib: Some(args.output.max(1)),
        ..Limits::default()
    };
    let spec = RunSpec {
        env,
        stdin,
        limits,
        ..RunSpec::new(program.clone()).args(rest.iter().cloned())
    };

    let outcome = match run(spec, args.dir.as_deref()) {
        Ok(o) => o,
        Err(e) => Outcome::sandbox_error(format!("{e:#}")),
    };
    report(&outcome, args.json)?;
    Ok(if outcome.verdict == Verdict::SandboxError {
        1
    } else {
        0
    })
}

fn run(spec: RunSpec, dir: Option<&Path>) -> Result<Outcome> {
    let sandbox = Sandbox::new(SandboxConfig::default()).context("starting the sandbox")?;
    let mut sandbox_box = sandbox.open_box().context("opening a box")?;
    if let Some(dir) = dir {
        copy_into(dir, sandbox_box.files(), 0)
            .with_context(|| format!("copying {} into the box", dir.display()))?;
    }
    Ok(sandbox_box.run(spec)?)
}

/// Copies regular files and directories (not links or devices) into the box.
fn copy_into(src: &Path, dst: &BoxDir, depth: usize) -> Result<()> {
    if depth > 16 {
        bail!("{} nests too deep", src.display());
    }
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(path = %entry.path().display(), "skipping a non-UTF-8 name");
            continue;
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_into(&entry.path(), &dst.subdir(name)?, depth + 1)?;
        } else if kind.is_file() {
            let data = std::fs::read(entry.path())?;
            let exec = entry.metadata()?.permissions().mode() & 0o111 != 0;
            dst.write(name, &data, exec)?;
        } else {
            tracing::warn!(path = %entry.path().display(), "skipping: not a regular file or directory");
        }
    }
    Ok(())
}

fn report(o: &Outcome, json: bool) -> Result<()> {
    if json {
        let value = serde_json::json!({
            "verdict": o.verdict.as_str(),
            "status": o.status(),
            "signal": o.signal,
            "time": o.cpu_time.as_secs_f64(),
            "walltime": o.wall_time.as_secs_f64(),
            "memory": o.memory_kib,
            "comments": o.comment,
            "stdout": String::from_utf8_lossy(&o.stdout),
            "stderr": String::from_utf8_lossy(&o.stderr),
        });
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    std::io::stdout().lock().write_all(&o.stdout)?;
    let mut err = std::io::stderr().lock();
    err.write_all(&o.stderr)?;
    let comment = if o.comment.is_empty() {
        String::new()
    } else {
        format!(" ({})", o.comment)
    };
    writeln!(
        err,
        "evaler: {} status={} time={:.3}s wall={:.3}s memory={}KiB{comment}",
        o.verdict,
        o.status(),
        o.cpu_time.as_secs_f64(),
        o.wall_time.as_secs_f64(),
        o.memory_kib
    )?;
    Ok(())
}
