//! `evaler judge`: one solution against a directory of tests, the way a
//! problem setter checks a reference or a wrong solution.
//!
//! It is a client of the judge protocol like any other: unless `--server`
//! is given it starts an embedded judge on 127.0.0.1 (random port) in this
//! process and talks to it over TCP, so what it reports is exactly what a
//! judge front-end would see. Answers are checked here, client-side.
//!
//! Exit codes: 0 when every test is AC, 1 otherwise (or when judging failed),
//! 2 for a usage error.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use evaler_client::judge::{ClientError, ClientOptions, JudgeClient};
use evaler_proto::{TResponse, Test, Verdict as Wire, STDIN_FILENAME};
use evaler_sandbox::{Sandbox, SandboxConfig};
use evaler_server::judge::{self, Judge, JudgeConfig};
use evaler_server::languages::LanguageSet;
use futures::stream::{FuturesUnordered, StreamExt};

#[derive(Args, Debug)]
pub struct JudgeArgs {
    /// Source file of the solution.
    #[arg(value_name = "SOLUTION")]
    solution: PathBuf,
    /// Language key or alias [default: from the file extension, first match
    /// in languages.toml order].
    #[arg(long, value_name = "L")]
    lang: Option<String>,
    /// Directory of tests: NAME.in with NAME.out or NAME.ans.
    #[arg(long, value_name = "DIR")]
    tests: PathBuf,
    /// CPU time limit per test, seconds.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    time: f64,
    /// Wall-clock limit per test, seconds [default: 2 × --time + 1].
    #[arg(long, value_name = "S")]
    wall: Option<f64>,
    /// Memory limit per test, KiB.
    #[arg(long, value_name = "KB", default_value_t = 262_144)]
    memory: u64,
    /// Stack limit per test, KiB [default: the memory limit].
    #[arg(long, value_name = "KB")]
    stack: Option<u64>,
    /// Tests run at once [default: number of CPUs].
    #[arg(long, value_name = "N")]
    boxes: Option<usize>,
    /// Use this judge server instead of an embedded one.
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// Token for --server (a file holding it).
    #[arg(long, value_name = "FILE", requires = "server")]
    token_file: Option<PathBuf>,
    /// How answers are compared: tokens (whitespace-separated, the
    /// default), exact (byte for byte), or float:EPS (tokens; numbers equal
    /// within EPS, absolute or relative).
    #[arg(long, value_name = "MODE", default_value = "tokens")]
    checker: String,
    /// Stop at the first test (in name order) that is not AC; later tests
    /// are reported as skipped.
    #[arg(long)]
    fail_fast: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// How an answer is compared with the expected one.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Checker {
    Exact,
    Tokens,
    Float(f64),
}

impl Checker {
    fn parse(s: &str) -> Option<Checker> {
        match s {
            "exact" => Some(Checker::Exact),
            "tokens" => Some(Checker::Tokens),
            _ => {
                let eps: f64 = s.strip_prefix("float:")?.parse().ok()?;
                (eps.is_finite() && eps >= 0.0).then_some(Checker::Float(eps))
            }
        }
    }

    /// `None` when accepted, else a short reason.
    fn check(self, got: &str, want: &str) -> Option<String> {
        if self == Checker::Exact {
            if got == want {
                return None;
            }
            let at = got
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            return Some(format!("output differs from the answer at byte {at}"));
        }
        let mut got_tokens = got.split_ascii_whitespace();
        let mut want_tokens = want.split_ascii_whitespace();
        let mut index = 1;
        loop {
            match (got_tokens.next(), want_tokens.next()) {
                (None, None) => return None,
                (Some(g), None) => {
                    return Some(format!("extra output from token {index}: {}", clip(g)))
                }
                (None, Some(w)) => {
                    return Some(format!(
                        "output ends at token {index}; expected {}",
                        clip(w)
                    ))
                }
                (Some(g), Some(w)) => {
                    if !self.same_token(g, w) {
                        return Some(format!(
                            "token {index}: expected {}, got {}",
                            clip(w),
                            clip(g)
                        ));
                    }
                }
            }
            index += 1;
        }
    }

    fn same_token(self, got: &str, want: &str) -> bool {
        if got == want {
            return true;
        }
        let Checker::Float(eps) = self else {
            return false;
        };
        match (got.parse::<f64>(), want.parse::<f64>()) {
            (Ok(g), Ok(w)) if g.is_finite() && w.is_finite() => {
                let diff = (g - w).abs();
                diff <= eps || diff <= eps * w.abs()
            }
            _ => false,
        }
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(24) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

/// Natural order: digit runs compare as numbers, so `2` < `10`; names equal
/// that way (`01`, `1`) fall back to plain string order.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, dx), (true, dy)) => {
                let (tx, ty) = (dx.trim_start_matches('0'), dy.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            ((_, sx), (_, sy)) => sx.cmp(sy),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

struct TestCase {
    name: String,
    input: PathBuf,
    answer: PathBuf,
}

/// `DIR/NAME.in` with `NAME.out` (or `NAME.ans`), in natural order.
fn collect_tests(dir: &Path) -> std::result::Result<Vec<TestCase>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the tests directory {}: {e}", dir.display()))?;
    let mut tests = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("in") || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let answer = ["out", "ans"]
            .iter()
            .map(|ext| path.with_extension(ext))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("test {name}: no {name}.out or {name}.ans next to {name}.in"))?;
        tests.push(TestCase {
            name: name.to_string(),
            input: path.clone(),
            answer,
        });
    }
    if tests.is_empty() {
        return Err(format!("no NAME.in files in {}", dir.display()));
    }
    tests.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    Ok(tests)
}

/// The first language, in file order, whose source file has this
/// extension.
fn detect_language(set: &LanguageSet, file: &Path) -> Option<String> {
    let ext = file.extension()?.to_str()?;
    set.iter()
        .find(|l| Path::new(&l.source).extension().and_then(|e| e.to_str()) == Some(ext))
        .map(|l| l.key.clone())
}

/// One test's result as shown.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    name: String,
    verdict: String,
    time: Option<f64>,
    walltime: Option<f64>,
    memory: Option<i64>,
    status: Option<i64>,
    comments: String,
}

impl Row {
    fn new(name: &str, verdict: &str, comments: String) -> Row {
        Row {
            name: name.to_string(),
            verdict: verdict.to_string(),
            time: None,
            walltime: None,
            memory: None,
            status: None,
            comments,
        }
    }
}

fn usage(msg: impl std::fmt::Display) -> Result<i32> {
    eprintln!("evaler judge: {msg}");
    Ok(2)
}

fn positive_seconds(flag: &str, s: f64) -> std::result::Result<f64, String> {
    if s.is_finite() && s > 0.0 && s < 1e6 {
        Ok(s)
    } else {
        Err(format!(
            "--{flag} must be a positive number of seconds, not {s}"
        ))
    }
}

struct Plan {
    code: String,
    lang: String,
    tests: Vec<TestCase>,
    checker: Checker,
    time: f64,
    wall: Option<f64>,
    memory: u64,
    stack: u64,
    boxes: usize,
}

pub fn main(args: JudgeArgs) -> Result<i32> {
    let Some(checker) = Checker::parse(&args.checker) else {
        return usage(format!(
            "--checker takes exact, tokens or float:EPS, not {:?}",
            args.checker
        ));
    };
    let time = match positive_seconds("time", args.time) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let wall = match args.wall.map(|w| positive_seconds("wall", w)).transpose() {
        Ok(w) => w,
        Err(e) => return usage(e),
    };
    if args.memory == 0 {
        return usage("--memory must be at least 1 KiB");
    }
    let boxes = args
        .boxes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if boxes == 0 {
        return usage("--boxes must be at least 1");
    }
    let code = match std::fs::read(&args.solution) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(code) => code,
            Err(_) => return usage(format!("{} is not UTF-8 text", args.solution.display())),
        },
        Err(e) => return usage(format!("cannot read {}: {e}", args.solution.display())),
    };
    let languages = LanguageSet::from_env_or_bundled()?;
    let lang = match &args.lang {
        Some(l) => l.clone(),
        None => match detect_language(&languages, &args.solution) {
            Some(l) => l,
            None => {
                let known: Vec<&str> = languages.keys().collect();
                return usage(format!(
                    "cannot tell the language of {} from its extension; give --lang (one of {})",
                    args.solution.display(),
                    known.join(", ")
                ));
            }
        },
    };
    if args.server.is_none() && languages.get(&lang).is_none() {
        let known: Vec<&str> = languages.keys().collect();
        return usage(format!(
            "unknown language {lang:?} (known: {})",
            known.join(", ")
        ));
    }
    let tests = match collect_tests(&args.tests) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --token-file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let plan = Plan {
        code,
        lang,
        tests,
        checker,
        time,
        wall,
        memory: args.memory,
        stack: args.stack.unwrap_or(0),
        boxes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let solution = args.solution.display().to_string();
    let report = runtime.block_on(async {
        match &args.server {
            Some(addr) => {
                let options = ClientOptions {
                    token,
                    ..ClientOptions::default()
                };
                let client = JudgeClient::connect_with(addr.as_str(), options).await?;
                judge(client, &plan, args.fail_fast).await
            }
            None => {
                let (judge_server, addr) = embedded(&languages, &plan).await?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(judge_server.serve_until(stopped));
                let client = JudgeClient::connect(addr).await?;
                let report = judge(client, &plan, args.fail_fast).await;
                let _ = stop.send(());
                let _ = server.await;
                report
            }
        }
    })?;
    print_report(&solution, &plan, &report, args.json)?;
    Ok(if report.verdict == "AC" { 0 } else { 1 })
}

/// A judge started in this process, not yet serving.
struct Embedded {
    judge: Judge,
    listener: tokio::net::TcpListener,
}

impl Embedded {
    async fn serve_until(self, stop: tokio::sync::oneshot::Receiver<()>) {
        if let Err(e) = self.judge.serve(self.listener, stop).await {
            tracing::warn!(error = %e, "embedded judge stopped");
        }
    }
}

async fn embedded(
    languages: &LanguageSet,
    plan: &Plan,
) -> Result<(Embedded, std::net::SocketAddr)> {
    let sandbox_config = judge::sandbox_config_for(languages, SandboxConfig::default());
    let sandbox = Sandbox::new(sandbox_config).context("starting the sandbox")?;
    let wall = plan.wall.unwrap_or(plan.time * 2.0 + 1.0);
    let defaults = JudgeConfig::default();
    let config = JudgeConfig {
        boxes: plan.boxes,
        max_time: defaults.max_time.max(Duration::from_secs_f64(plan.time)),
        max_wall: defaults.max_wall.max(Duration::from_secs_f64(wall)),
        max_memory_kib: defaults.max_memory_kib.max(plan.memory),
        max_stack_kib: defaults.max_stack_kib.max(plan.memory).max(plan.stack),
        queue: plan.tests.len().max(judge::DEFAULT_QUEUE),
        ..defaults
    };
    let judge = Judge::new(&sandbox, languages.clone(), config).context("starting the judge")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((Embedded { judge, listener }, addr))
}

struct Report {
    verdict: String,
    first_failure: Option<String>,
    compile: Option<evaler_proto::CResponse>,
    rows: Vec<Row>,
}

async fn judge(client: JudgeClient, plan: &Plan, fail_fast: bool) -> Result<Report> {
    let compiled = match client.compile(1, &plan.lang, &plan.code).await {
        Ok(c) => c,
        Err(ClientError::Disconnected) => bail!(
            "the judge server closed the connection: {}",
            client.disconnect_reason().unwrap_or_default()
        ),
        Err(e) => bail!("compiling: {e}"),
    };
    if !compiled.success {
        let why = if compiled.other.is_empty() {
            "compilation failed".to_string()
        } else {
            compiled.other.clone()
        };
        let rows = plan
            .tests
            .iter()
            .map(|t| Row::new(&t.name, "CE", why.clone()))
            .collect();
        return Ok(Report {
            verdict: "CE".into(),
            first_failure: plan.tests.first().map(|t| t.name.clone()),
            compile: Some(compiled),
            rows,
        });
    }
    let count = u32::try_from(plan.boxes).unwrap_or(u32::MAX);
    client.assign(count).await?;
    client
        .qlen(u32::try_from(plan.tests.len()).unwrap_or(u32::MAX))
        .await?;

    let progress = progress_bar(plan.tests.len());
    let mut running = FuturesUnordered::new();
    for (index, case) in plan.tests.iter().enumerate() {
        let input = std::fs::read(&case.input)
            .with_context(|| format!("reading {}", case.input.display()))?;
        let test = Test {
            id: 1,
            tid: index as i64,
            input: String::from_utf8_lossy(&input).into_owned(),
            filename: STDIN_FILENAME.into(),
            timelimit: plan.time,
            memorylimit: i64::try_from(plan.memory).unwrap_or(i64::MAX),
            stacklimit: i64::try_from(plan.stack).unwrap_or(i64::MAX),
            walltimelimit: plan.wall,
        };
        let client = &client;
        running.push(async move { (index, client.test(test).await) });
    }
    let mut rows: BTreeMap<usize, Row> = BTreeMap::new();
    while let Some((index, result)) = running.next().await {
        let case = &plan.tests[index];
        let row = match result {
            Ok(response) => checked_row(case, response, plan.checker)?,
            Err(ClientError::Server(e)) => Row::new(&case.name, "SE", e.value),
            Err(e) => Row::new(&case.name, "SE", e.to_string()),
        };
        progress.inc(1);
        if row.verdict != "AC" {
            progress.set_message(format!("{}: {}", row.name, row.verdict));
        }
        rows.insert(index, row);
        if fail_fast && decided(&rows) {
            break;
        }
    }
    progress.finish_and_clear();
    // Dropping the futures and the client closes the connection; the server
    // then kills whatever is still running.
    drop(running);
    drop(client);
    let rows: Vec<Row> = plan
        .tests
        .iter()
        .enumerate()
        .map(|(i, case)| {
            rows.remove(&i)
                .unwrap_or_else(|| Row::new(&case.name, "SKIP", "not run (--fail-fast)".into()))
        })
        .collect();
    let first = rows.iter().find(|r| r.verdict != "AC");
    Ok(Report {
        verdict: first.map_or_else(|| "AC".to_string(), |r| r.verdict.clone()),
        first_failure: first.map(|r| r.name.clone()),
        compile: Some(compiled),
        rows,
    })
}

/// Whether the first non-AC test in name order is known.
fn decided(rows: &BTreeMap<usize, Row>) -> bool {
    for (expected, (index, row)) in rows.iter().enumerate() {
        if *index != expected {
            return false;
        }
        if row.verdict != "AC" {
            return true;
        }
    }
    false
}

fn checked_row(case: &TestCase, r: TResponse, checker: Checker) -> Result<Row> {
    let verdict = match r.verdict {
        Some(Wire::Ok) | None if r.status == 0 => {
            let want = std::fs::read(&case.answer)
                .with_context(|| format!("reading {}", case.answer.display()))?;
            let want = String::from_utf8_lossy(&want);
            match checker.check(&r.output, &want) {
                None => ("AC", r.comments.clone()),
                Some(why) => ("WA", why),
            }
        }
        Some(Wire::Ok) | None | Some(Wire::RuntimeError) => ("RE", r.comments.clone()),
        Some(Wire::TimeLimit) => ("TLE", r.comments.clone()),
        Some(Wire::MemoryLimit) => ("MLE", r.comments.clone()),
        Some(Wire::OutputLimit) => ("OLE", r.comments.clone()),
        Some(Wire::SandboxError) => ("SE", r.comments.clone()),
    };
    Ok(Row {
        name: case.name.clone(),
        verdict: verdict.0.to_string(),
        time: Some(r.time),
        walltime: r.walltime,
        memory: Some(r.memory),
        status: Some(r.status),
        comments: verdict.1,
    })
}

fn progress_bar(len: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("judging [{bar:30}] {pos}/{len} {elapsed} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn mib(kib: i64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn print_report(solution: &str, plan: &Plan, report: &Report, json: bool) -> Result<()> {
    let passed = report.rows.iter().filter(|r| r.verdict == "AC").count();
    let mut out = std::io::stdout().lock();
    if json {
        let compile = report.compile.as_ref().map(|c| {
            serde_json::json!({
                "success": c.success,
                "output": c.output,
                "other": c.other,
                "time": c.time,
            })
        });
        let value = serde_json::json!({
            "solution": solution,
            "language": plan.lang,
            "verdict": report.verdict,
            "first_failure": report.first_failure,
            "passed": passed,
            "total": report.rows.len(),
            "compile": compile,
            "tests": report.rows,
        });
        serde_json::to_writer(&mut out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    if let Some(c) = report.compile.as_ref().filter(|c| !c.success) {
        writeln!(
            out,
            "Compilation failed{}",
            if c.other.is_empty() {
                String::new()
            } else {
                format!(": {}", c.other)
            }
        )?;
        out.write_all(c.output.as_bytes())?;
        if !c.output.ends_with('\n') && !c.output.is_empty() {
            writeln!(out)?;
        }
    }
    let width = report
        .rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<width$}  {:<7}  {:>8}  {:>10}  comments",
        "test", "verdict", "time", "memory"
    )?;
    for r in &report.rows {
        let time = r.time.map_or_else(|| "-".into(), |t| format!("{t:.3}s"));
        let memory = r.memory.map_or_else(|| "-".into(), mib);
        writeln!(
            out,
            "{:<width$}  {:<7}  {:>8}  {:>10}  {}",
            r.name, r.verdict, time, memory, r.comments
        )?;
    }
    let max_time = report
        .rows
        .iter()
        .filter_map(|r| r.time)
        .fold(0.0, f64::max);
    let max_memory = report
        .rows
        .iter()
        .filter_map(|r| r.memory)
        .max()
        .unwrap_or(0);
    let failure = report
        .first_failure
        .as_ref()
        .map_or_else(String::new, |f| format!(" (first failure: {f})"));
    writeln!(
        out,
        "{}: {}{failure}; {passed}/{} AC; max time {max_time:.3}s; max memory {}",
        plan.lang,
        report.verdict,
        report.rows.len(),
        mib(max_memory)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkers() {
        let tokens = Checker::parse("tokens").unwrap();
        assert_eq!(tokens.check("1 2\n", " 1\n2 "), None);
        assert!(tokens.check("1 2 3", "1 2").unwrap().contains("extra"));
        assert!(tokens.check("1", "1 2").unwrap().contains("ends"));
        assert!(tokens.check("1 3", "1 2").unwrap().contains("token 2"));
        let exact = Checker::parse("exact").unwrap();
        assert_eq!(exact.check("a\n", "a\n"), None);
        assert!(exact.check("a", "a\n").is_some());
        let float = Checker::parse("float:1e-6").unwrap();
        assert_eq!(float.check("1.0000001 x", "1.0 x"), None);
        assert_eq!(float.check("1000000.5", "1000000.0"), None, "relative");
        assert!(float.check("1.1", "1.0").is_some());
        assert!(float.check("nan", "1.0").is_some());
        for bad in ["float:", "float:-1", "float:x", "lines", ""] {
            assert!(Checker::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn natural_order() {
        let mut names = vec!["10", "2", "1b", "1a", "a10", "a9", "01", "1"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["01", "1", "1a", "1b", "2", "10", "a9", "a10"]);
    }

    #[test]
    fn fail_fast_decision() {
        let row = |v: &str| Row::new("t", v, String::new());
        let mut rows = BTreeMap::new();
        rows.insert(1, row("WA"));
        assert!(!decided(&rows), "test 0 may still fail first");
        rows.insert(0, row("AC"));
        assert!(decided(&rows));
        rows.insert(1, row("AC"));
        assert!(!decided(&rows));
    }
}
