//! One test of a submission: limits from the packet, files into a clean
//! box, the language's run command, and the outcome as a `TResponse`.

use std::sync::Arc;
use std::time::Duration;

use evaler_proto::{output_to_string, TResponse, Test};
use evaler_sandbox::{valid_file_name, Limits, Outcome, RunSpec, SandboxBox, Stdin, Verdict};

use super::pool::{ConnCtl, RunContext};
use super::store::Submission;
use super::{shorten, JudgeConfig};
use crate::languages::RunParams;

/// The limits a test runs under, after defaults and maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestLimits {
    pub cpu: Duration,
    pub wall: Duration,
    pub memory_kib: u64,
    pub stack_kib: u64,
}

/// A queued `Test`.
#[derive(Debug)]
pub(crate) struct TestJob {
    pub sub: Arc<Submission>,
    pub tid: i64,
    pub input: String,
    /// `None`: the input is stdin; otherwise the file it is written to.
    pub file: Option<String>,
    pub limits: TestLimits,
}

impl TestJob {
    /// A result that blames the judge (`SE`), not the program.
    pub fn failed(&self, why: &str) -> TResponse {
        se_response(self.sub.id, self.tid, why)
    }
}

/// An `SE` reply: the sandbox (or the judge) failed, not the program.
pub(crate) fn se_response(id: i64, tid: i64, why: &str) -> TResponse {
    TResponse {
        tid,
        output: String::new(),
        time: 0.0,
        memory: 0,
        status: -1,
        comments: format!("Sandbox error: {why}"),
        verdict: Some(Verdict::SandboxError),
        walltime: Some(0.0),
        id: Some(id),
    }
}

/// Applies the documented defaults and maxima to a test's limits.
pub(crate) fn resolve_limits(t: &Test, cfg: &JudgeConfig) -> Result<TestLimits, String> {
    t.validate().map_err(|e| e.to_string())?;
    let seconds = |field: &str, value: f64, max: Duration| {
        if value == 0.0 {
            Ok(max)
        } else if value > max.as_secs_f64() {
            Err(format!(
                "field \"{field}\" of Test packet is above this server's maximum of {} s (found {value})",
                max.as_secs_f64()
            ))
        } else {
            Ok(Duration::from_secs_f64(value))
        }
    };
    let kib = |field: &str, value: i64, max: u64| {
        let value = u64::try_from(value).unwrap_or(0);
        if value > max {
            Err(format!(
                "field \"{field}\" of Test packet is above this server's maximum of {max} KiB (found {value})"
            ))
        } else {
            Ok(value)
        }
    };
    let cpu = seconds("timelimit", t.timelimit, cfg.max_time)?;
    let memory_kib = match kib("memorylimit", t.memorylimit, cfg.max_memory_kib)? {
        0 => cfg.max_memory_kib,
        m => m,
    };
    let stack_kib = match kib("stacklimit", t.stacklimit, cfg.max_stack_kib)? {
        0 => memory_kib.min(cfg.max_stack_kib),
        s => s,
    };
    let wall = match t.walltimelimit {
        None => cpu
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1))
            .min(cfg.max_wall),
        Some(w) => seconds("walltimelimit", w, cfg.max_wall)?,
    };
    Ok(TestLimits {
        cpu,
        wall,
        memory_kib,
        stack_kib,
    })
}

/// `None` for stdin, else the checked file name.
pub(crate) fn input_file(t: &Test) -> Result<Option<String>, String> {
    if t.uses_stdin() {
        Ok(None)
    } else if valid_file_name(&t.filename) {
        Ok(Some(t.filename.clone()))
    } else {
        Err(format!(
            "invalid filename {:?}: it must be \"input\" (stdin) or one plain file name (no '/', not '.' or '..', no NUL, at most 255 bytes)",
            shorten(&t.filename)
        ))
    }
}

/// The reply for a finished run.
pub(crate) fn response(id: i64, tid: i64, o: Outcome) -> TResponse {
    if o.verdict == Verdict::SandboxError {
        return se_response(id, tid, &o.comment);
    }
    TResponse {
        tid,
        output: output_to_string(&o.stdout),
        time: o.cpu_time.as_secs_f64(),
        memory: i64::try_from(o.memory_kib).unwrap_or(i64::MAX),
        status: i64::from(o.status()),
        comments: o.comment,
        verdict: Some(o.verdict),
        walltime: Some(o.wall_time.as_secs_f64()),
        id: Some(id),
    }
}

/// Runs one test. The flag says whether the box is known to be clean.
pub(crate) fn run(
    b: &mut SandboxBox,
    ctl: &ConnCtl,
    job: TestJob,
    ctx: &RunContext,
) -> (TResponse, bool) {
    if ctl.is_cancelled() {
        return (job.failed("connection closed"), true);
    }
    let lang = &job.sub.lang;
    let params = RunParams {
        memory_kib: job.limits.memory_kib,
        stack_kib: job.limits.stack_kib,
    };
    let argv = match lang.run_argv(&params) {
        Ok(argv) => argv,
        Err(e) => return (job.failed(&e.to_string()), true),
    };
    let Some((program, args)) = argv.split_first() else {
        return (job.failed("the language's run command is empty"), true);
    };
    let prepared = (|| {
        for f in &job.sub.files {
            b.files().write(&f.name, &f.data, true)?;
        }
        if let Some(name) = &job.file {
            b.files().write(name, job.input.as_bytes(), false)?;
        }
        Ok::<(), evaler_sandbox::SandboxError>(())
    })();
    if let Err(e) = prepared {
        let clean = b.clear().is_ok();
        return (job.failed(&e.to_string()), clean);
    }
    let mut spec = RunSpec::new(program.clone()).args(args.iter().cloned());
    spec.env = lang
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    spec.limits = Limits {
        cpu_time: Some(job.limits.cpu),
        wall_time: Some(job.limits.wall),
        memory_kib: Some(job.limits.memory_kib),
        stack_kib: Some(job.limits.stack_kib),
        processes: Some(u64::from(lang.limits.run_processes)),
        output_kib: Some(ctx.output_kib),
        file_size_kib: Some(ctx.file_size_kib),
        open_files: 256,
    };
    let (id, tid) = (job.sub.id, job.tid);
    spec.stdin = match job.file {
        Some(_) => Stdin::Null,
        None => Stdin::Bytes(job.input.into_bytes()),
    };
    match ctl.run(b, spec) {
        Ok(outcome) => (response(id, tid, outcome), true),
        Err(e) => {
            let clean = b.clear().is_ok();
            (se_response(id, tid, &e.to_string()), clean)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(timelimit: f64, memorylimit: i64, stacklimit: i64, wall: Option<f64>) -> Test {
        Test {
            id: 1,
            tid: 2,
            input: String::new(),
            filename: "input".into(),
            timelimit,
            memorylimit,
            stacklimit,
            walltimelimit: wall,
        }
    }

    #[test]
    fn limits_defaults_and_maxima() {
        let cfg = JudgeConfig::default();
        let l = resolve_limits(&test(1.5, 65536, 0, None), &cfg).unwrap();
        assert_eq!(l.cpu, Duration::from_millis(1500));
        assert_eq!(l.wall, Duration::from_secs(4));
        assert_eq!((l.memory_kib, l.stack_kib), (65536, 65536));
        let l = resolve_limits(&test(0.0, 0, 8192, Some(0.0)), &cfg).unwrap();
        assert_eq!(l.cpu, cfg.max_time);
        assert_eq!(l.wall, cfg.max_wall);
        assert_eq!((l.memory_kib, l.stack_kib), (cfg.max_memory_kib, 8192));
        let l = resolve_limits(&test(0.0, 0, 0, None), &cfg).unwrap();
        assert_eq!(l.wall, Duration::from_secs(21));
        let l = resolve_limits(&test(1.0, 0, 0, Some(2.5)), &cfg).unwrap();
        assert_eq!(l.wall, Duration::from_millis(2500));
    }

    #[test]
    fn limits_rejected() {
        let cfg = JudgeConfig::default();
        for (t, needle) in [
            (test(-1.0, 0, 0, None), "must not be negative"),
            (test(f64::NAN, 0, 0, None), "finite"),
            (test(11.0, 0, 0, None), "timelimit"),
            (test(1.0, 1 << 40, 0, None), "memorylimit"),
            (test(1.0, 0, 1 << 40, None), "stacklimit"),
            (test(1.0, 0, 0, Some(61.0)), "walltimelimit"),
            (test(1.0, 0, 0, Some(-2.0)), "must not be negative"),
            (test(1.0, -5, 0, None), "memorylimit"),
        ] {
            let err = resolve_limits(&t, &cfg).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn filenames() {
        let mut t = test(1.0, 0, 0, None);
        assert_eq!(input_file(&t), Ok(None));
        t.filename = "data.in".into();
        assert_eq!(input_file(&t), Ok(Some("data.in".into())));
        for bad in ["", ".", "..", "a/b", "/etc/passwd", "a\0b"] {
            t.filename = bad.into();
            assert!(input_file(&t).is_err(), "{bad:?}");
        }
        t.filename = "x".repeat(300);
        assert!(input_file(&t).unwrap_err().contains("..."));
    }
}
