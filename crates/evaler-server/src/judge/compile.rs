//! The compile step of a submission, in a box like any test.
//!
//! Compilers get hostile input too (`#include "/dev/random"`, template
//! bombs, gigabytes of diagnostics), so they run under the language's own
//! CPU, wall, memory and process limits, with their output captured up to
//! [`COMPILE_CAPTURE_KIB`] (beyond that the compiler is stopped) and shown up
//! to [`COMPILE_OUTPUT_SHOWN`] bytes with a marker.

use std::sync::Arc;

use evaler_proto::{output_to_string, CResponse};
use evaler_sandbox::{BoxFile, Limits, Outcome, RunSpec, SandboxBox, Verdict};

use super::pool::{ConnCtl, RunContext};
use super::store::StoredFile;
use super::{COMPILE_CAPTURE_KIB, COMPILE_OUTPUT_SHOWN};
use crate::languages::Language;

/// A queued `Compile`.
#[derive(Debug)]
pub(crate) struct CompileJob {
    pub id: i64,
    /// Tells this compile apart from a later one of the same id (after an
    /// `SRemove`), whose result must not be confused with it.
    pub seq: u64,
    pub lang: Arc<Language>,
    pub code: String,
}

/// A finished compile: the reply, and the files when it succeeded.
#[derive(Debug)]
pub(crate) struct CompileDone {
    pub id: i64,
    pub seq: u64,
    pub lang: Arc<Language>,
    pub response: CResponse,
    pub files: Option<Vec<StoredFile>>,
}

impl CompileJob {
    /// A failed result that blames the judge, not the code.
    pub fn failed(&self, other: &str) -> CompileDone {
        CompileDone {
            id: self.id,
            seq: self.seq,
            lang: Arc::clone(&self.lang),
            response: CResponse {
                id: self.id,
                output: String::new(),
                success: false,
                other: other.to_string(),
                time: None,
            },
            files: None,
        }
    }

    #[cfg(test)]
    pub fn for_tests(id: i64) -> CompileJob {
        let set = crate::languages::LanguageSet::bundled().unwrap_or_else(|e| panic!("{e}"));
        let lang = set.get("c").cloned().unwrap_or_else(|| panic!("no c"));
        CompileJob {
            id,
            seq: 0,
            lang: Arc::new(lang),
            code: String::new(),
        }
    }
}

/// The source alone, for a language without a compile step.
pub(crate) fn source_only(lang: &Language, code: String) -> Vec<StoredFile> {
    vec![StoredFile {
        name: lang.source.clone(),
        data: code.into_bytes(),
    }]
}

/// Runs the compiler. The flag says whether the box is known to be clean.
pub(crate) fn run(
    b: &mut SandboxBox,
    ctl: &ConnCtl,
    job: CompileJob,
    ctx: &RunContext,
) -> (CompileDone, bool) {
    if ctl.is_cancelled() {
        return (job.failed("connection closed"), true);
    }
    let Some((program, args)) = job.lang.compile_argv().and_then(|a| a.split_first()) else {
        let files = source_only(&job.lang, job.code.clone());
        let mut done = job.failed("");
        done.response.success = true;
        done.files = Some(files);
        return (done, true);
    };
    let mut spec = RunSpec::new(program.clone()).args(args.iter().cloned());
    spec.env = job
        .lang
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let limits = &job.lang.limits;
    spec.limits = Limits {
        cpu_time: Some(limits.compile_cpu()),
        wall_time: Some(limits.compile_wall()),
        memory_kib: Some(limits.compile_memory_mib.saturating_mul(1024)),
        stack_kib: None,
        processes: Some(u64::from(limits.compile_processes)),
        output_kib: Some(COMPILE_CAPTURE_KIB),
        file_size_kib: Some(ctx.file_size_kib),
        open_files: 256,
    };
    spec.keep_files = true;
    let (id, seq, lang) = (job.id, job.seq, Arc::clone(&job.lang));
    spec.files.push(BoxFile {
        name: lang.source.clone(),
        contents: job.code.into_bytes(),
        executable: false,
    });
    let mut done = CompileDone {
        id,
        seq,
        lang,
        response: CResponse {
            id,
            output: String::new(),
            success: false,
            other: String::new(),
            time: None,
        },
        files: None,
    };
    match ctl.run(b, spec) {
        Ok(outcome) => {
            done.response.output = compiler_output(&outcome);
            done.response.time = Some(outcome.wall_time.as_secs_f64());
            match judge(&outcome) {
                Ok(()) => match collect(b, ctx.max_submission_bytes) {
                    Ok(files) => {
                        done.response.success = true;
                        done.files = Some(files);
                    }
                    Err(why) => done.response.other = why,
                },
                Err(why) => done.response.other = why,
            }
        }
        Err(e) => done.response.other = format!("Sandbox error: {e}"),
    }
    let clean = b.clear();
    if let Err(e) = &clean {
        tracing::warn!(error = %e, "cannot empty a box after a compile");
    }
    (done, clean.is_ok())
}

/// `Ok` when the compiler succeeded; otherwise what to put in `other`
/// (empty for an ordinary compilation error, which the output explains).
fn judge(o: &Outcome) -> Result<(), String> {
    match o.verdict {
        Verdict::Ok => Ok(()),
        Verdict::RuntimeError if o.signal.is_none() => Err(String::new()),
        Verdict::SandboxError => Err(format!("Sandbox error: {}", o.comment)),
        _ => Err(format!("Compiler stopped: {}", o.comment)),
    }
}

/// Stdout then stderr, cut to [`COMPILE_OUTPUT_SHOWN`] bytes (on a character
/// boundary) with a marker saying how much there was.
fn compiler_output(o: &Outcome) -> String {
    let mut bytes = Vec::with_capacity(o.stdout.len() + o.stderr.len());
    bytes.extend_from_slice(&o.stdout);
    bytes.extend_from_slice(&o.stderr);
    let capped = o.stdout_truncated || o.stderr_truncated;
    let mut text = output_to_string(&bytes);
    if text.len() > COMPILE_OUTPUT_SHOWN || capped {
        let mut cut = COMPILE_OUTPUT_SHOWN.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        let total = if capped {
            format!("more than {} KiB", COMPILE_CAPTURE_KIB)
        } else {
            format!("{} bytes", bytes.len())
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[evaler: compiler output truncated to {cut} bytes of {total}]\n"
        ));
    }
    text
}

/// The regular files the compiler left at the top of `/box`.
fn collect(b: &SandboxBox, max: usize) -> Result<Vec<StoredFile>, String> {
    let too_big = || {
        format!(
            "the compiler produced more than {max} bytes of files, more than a submission may keep"
        )
    };
    let entries = b
        .files()
        .list()
        .map_err(|e| format!("Sandbox error: listing the compiled files: {e}"))?;
    let mut files = Vec::new();
    let mut total = 0usize;
    for entry in entries.into_iter().filter(|e| e.is_file) {
        let room = max.saturating_sub(total);
        if usize::try_from(entry.size).map_or(true, |s| s > room) {
            return Err(too_big());
        }
        let (data, truncated) = b
            .files()
            .read(&entry.name, room)
            .map_err(|e| format!("Sandbox error: reading compiled file {:?}: {e}", entry.name))?;
        if truncated {
            return Err(too_big());
        }
        total += data.len() + entry.name.len();
        files.push(StoredFile {
            name: entry.name,
            data,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(stdout: &[u8], stderr: &[u8], truncated: bool) -> Outcome {
        Outcome {
            verdict: Verdict::RuntimeError,
            exit_code: Some(1),
            signal: None,
            cpu_time: Duration::ZERO,
            wall_time: Duration::ZERO,
            memory_kib: 0,
            stdout: stdout.to_vec(),
            stderr: stderr.to_vec(),
            stdout_truncated: false,
            stderr_truncated: truncated,
            comment: "Exited with status 1".into(),
        }
    }

    #[test]
    fn output_is_cut_on_a_char_boundary_with_a_marker() {
        let short = compiler_output(&outcome(b"a\n", b"b\n", false));
        assert_eq!(short, "a\nb\n");
        let long = "é".repeat(COMPILE_OUTPUT_SHOWN);
        let text = compiler_output(&outcome(b"", long.as_bytes(), false));
        assert!(text.len() < COMPILE_OUTPUT_SHOWN + 200);
        assert!(text.contains("[evaler: compiler output truncated to 65536 bytes of 131072 bytes]"));
        let capped = compiler_output(&outcome(b"x", b"", true));
        assert!(capped.contains("of more than 1024 KiB"), "{capped}");
    }

    #[test]
    fn compile_verdicts() {
        let mut o = outcome(b"", b"", false);
        assert_eq!(judge(&o), Err(String::new()));
        o.signal = Some(9);
        o.exit_code = None;
        o.comment = "Killed by signal 9 (SIGKILL)".into();
        assert_eq!(
            judge(&o),
            Err("Compiler stopped: Killed by signal 9 (SIGKILL)".into())
        );
        o.verdict = Verdict::SandboxError;
        o.comment = "boom".into();
        assert_eq!(judge(&o), Err("Sandbox error: boom".into()));
        o.verdict = Verdict::Ok;
        assert_eq!(judge(&o), Ok(()));
    }
}
