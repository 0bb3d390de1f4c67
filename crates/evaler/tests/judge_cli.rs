//! `evaler judge` and `evaler serve` as a user runs them: the built binary,
//! real processes, real TCP.
//!
//! The examples test judges every solution of `examples/sum` (every shipped
//! language × correct/wrong/slow/memory/crash) and checks the verdicts of
//! `examples/sum/expected.toml`, under its limits. Needs root (the sandbox),
//! like CI; without it the binary's one-sentence error fails the test.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EVALER: &str = env!("CARGO_BIN_EXE_evaler");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sum() -> PathBuf {
    repo().join("examples/sum")
}

fn evaler(args: &[&str]) -> Output {
    Command::new(EVALER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("evaler runs")
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `expected.toml`: its `[limits]` and `[verdicts]` (a flat file of
/// `key = value` lines, read without a TOML dependency).
struct Expected {
    time_ms: u64,
    wall_ms: u64,
    memory_mib: u64,
    stack_mib: u64,
    verdicts: Vec<(String, String)>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(sum().join("expected.toml")).unwrap();
    let mut e = Expected {
        time_ms: 0,
        wall_ms: 0,
        memory_mib: 0,
        stack_mib: 0,
        verdicts: Vec::new(),
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().trim_matches('"'), value.trim().trim_matches('"'));
        let num = || value.parse::<u64>().unwrap();
        match key {
            "time_ms" => e.time_ms = num(),
            "wall_ms" => e.wall_ms = num(),
            "memory_mib" => e.memory_mib = num(),
            "stack_mib" => e.stack_mib = num(),
            k if k.contains('/') => e.verdicts.push((k.to_string(), value.to_string())),
            _ => {}
        }
    }
    assert!(e.time_ms > 0 && e.memory_mib > 0 && !e.verdicts.is_empty());
    e
}

/// Judges every solution of one language and checks its verdict.
fn judge_language(lang: &str) {
    let e = expected();
    let mine: Vec<_> = e
        .verdicts
        .iter()
        .filter(|(k, _)| k.split('/').next() == Some(lang))
        .collect();
    assert_eq!(mine.len(), 5, "five solutions of {lang} in expected.toml");
    let time = format!("{}", e.time_ms as f64 / 1000.0);
    let wall = format!("{}", e.wall_ms as f64 / 1000.0);
    let memory = (e.memory_mib * 1024).to_string();
    let stack = (e.stack_mib * 1024).to_string();
    let tests = sum().join("tests");
    let mut failures = Vec::new();
    for (file, want) in mine {
        let solution = sum().join("solutions").join(file);
        let start = Instant::now();
        let out = evaler(&[
            "judge",
            solution.to_str().unwrap(),
            "--lang",
            lang,
            "--tests",
            tests.to_str().unwrap(),
            "--time",
            &time,
            "--wall",
            &wall,
            "--memory",
            &memory,
            "--stack",
            &stack,
            "--boxes",
            "2",
            "--fail-fast",
            "--json",
        ]);
        let report = stdout_json(&out);
        let got = report["verdict"].as_str().unwrap_or("?");
        let code = out.status.code();
        eprintln!(
            "{file}: {got} (expected {want}) in {:.1?}, first failure {}",
            start.elapsed(),
            report["first_failure"]
        );
        if got != want || code != Some(if want == "AC" { 0 } else { 1 }) {
            failures.push(format!(
                "{file}: got {got} (exit {code:?}), expected {want}; tests: {}",
                report["tests"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! languages {
    ($($name:ident => $key:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                judge_language($key);
            }
        )*
    };
}

languages! {
    examples_sum_c => "c",
    examples_sum_cpp17 => "cpp17",
    examples_sum_cpp20 => "cpp20",
    examples_sum_python3 => "python3",
    examples_sum_pypy3 => "pypy3",
    examples_sum_java => "java",
    examples_sum_javascript => "javascript",
    examples_sum_ruby => "ruby",
    examples_sum_rust => "rust",
    examples_sum_go => "go",
    examples_sum_bash => "bash",
}

#[test]
fn every_shipped_language_is_covered() {
    let e = expected();
    let mut langs: Vec<&str> = e
        .verdicts
        .iter()
        .filter_map(|(k, _)| k.split('/').next())
        .collect();
    langs.dedup();
    assert_eq!(
        langs,
        [
            "c",
            "cpp17",
            "cpp20",
            "python3",
            "pypy3",
            "java",
            "javascript",
            "ruby",
            "rust",
            "go",
            "bash"
        ]
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn judge_cli_reports_checks_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests");
    std::fs::create_dir(&tests).unwrap();
    for (name, input, answer, ext) in [
        ("10", "5 5", "10", "out"),
        ("2", "1 1", "2", "ans"),
        ("1", "0 1", "1", "out"),
    ] {
        write(&tests, &format!("{name}.in"), input);
        write(&tests, &format!("{name}.{ext}"), answer);
    }
    let ok = write(
        dir.path(),
        "ok.c",
        "#include <stdio.h>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);}\n",
    );
    let t = tests.to_str().unwrap();
    // Tokens (default): AC; natural order of names; language from ".c".
    let out = evaler(&["judge", ok.to_str().unwrap(), "--tests", t, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["verdict"], "AC");
    assert_eq!(report["language"], "c");
    let names: Vec<&str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1", "2", "10"]);
    assert_eq!(
        (report["passed"].as_u64(), report["total"].as_u64()),
        (Some(3), Some(3))
    );
    // Exact: the answers have no trailing newline, so WA.
    let out = evaler(&[
        "judge",
        ok.to_str().unwrap(),
        "--tests",
        t,
        "--checker",
        "exact",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["verdict"], "WA");
    // Human table.
    let out = evaler(&["judge", ok.to_str().unwrap(), "--tests", t]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("test"), "{table}");
    assert!(table.contains("c: AC; 3/3 AC"), "{table}");
    // A float checker tolerates small differences.
    let float = write(
        dir.path(),
        "f.py",
        "a, b = map(int, input().split())\nprint(a + b + 1e-9)\n",
    );
    let out = evaler(&[
        "judge",
        float.to_str().unwrap(),
        "--tests",
        t,
        "--checker",
        "float:1e-6",
        "--json",
    ]);
    assert_eq!(stdout_json(&out)["verdict"], "AC");
    assert_eq!(stdout_json(&out)["language"], "python3");
    // Compilation error: CE everywhere, exit 1, compiler output kept.
    let broken = write(dir.path(), "broken.c", "int main( {\n");
    let out = evaler(&["judge", broken.to_str().unwrap(), "--tests", t, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout_json(&out);
    assert_eq!(report["verdict"], "CE");
    assert_eq!(report["compile"]["success"], false);
    assert!(report["compile"]["output"]
        .as_str()
        .unwrap()
        .contains("error"));
    assert!(report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["verdict"] == "CE"));
    // Usage errors: exit 2.
    for args in [
        vec![
            "judge",
            ok.to_str().unwrap(),
            "--tests",
            "/nonexistent/tests",
        ],
        vec!["judge", "/nonexistent/sol.c", "--tests", t],
        vec![
            "judge",
            ok.to_str().unwrap(),
            "--tests",
            t,
            "--checker",
            "lines",
        ],
        vec!["judge", ok.to_str().unwrap(), "--tests", t, "--time", "-1"],
        vec!["judge", ok.to_str().unwrap()],
    ] {
        let out = evaler(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let odd = write(dir.path(), "sol.xyz", "");
    let out = evaler(&["judge", odd.to_str().unwrap(), "--tests", t]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lang"));
}

/// `evaler serve` on a random port; returns the child and its address.
fn serve(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(EVALER)
        .args(["serve", "--listen", "127.0.0.1:0", "--boxes", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("evaler serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("evaler serve exited: {:?}", child.wait()))
            .unwrap();
        if let Some(rest) = line.strip_prefix("evaler serve: listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "evaler serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_binary_speaks_the_protocol_and_stops_on_sigterm() {
    let (child, addr) = serve(&[]);
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut roundtrip = |packet: &str| {
        writer.write_all(packet.as_bytes()).unwrap();
        writer.write_all(b"\n").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let r = roundtrip(
        r#"{"type":"Compile","id":1,"lang":"python3","code":"print(sum(map(int, input().split())))"}"#,
    );
    assert_eq!(r["success"], true, "{r}");
    let r = roundtrip(
        r#"{"type":"Test","id":1,"tid":7,"input":"2 3","filename":"input","timelimit":1,"memorylimit":262144,"stacklimit":0}"#,
    );
    assert_eq!(
        (r["tid"].as_i64(), r["output"].as_str()),
        (Some(7), Some("5\n")),
        "{r}"
    );
    // `evaler judge --server` against it.
    let correct = sum().join("solutions/c/correct.c");
    let out = evaler(&[
        "judge",
        correct.to_str().unwrap(),
        "--tests",
        sum().join("tests").to_str().unwrap(),
        "--server",
        &addr,
        "--json",
    ]);
    assert_eq!(
        stdout_json(&out)["verdict"],
        "AC",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = terminate(child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let out = evaler(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear sentence: {err}");
    // With a token file it starts, and clients must authenticate.
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "  hunter2-but-longer\n");
    let (child, addr) = serve(&["--token-file", token.to_str().unwrap()]);
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer
        .write_all(b"{\"type\":\"QLen\",\"length\":5}\n")
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("authentication required"), "{line}");
    assert!(terminate(child).success());
    let empty = write(dir.path(), "empty", " \n");
    let out = evaler(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}
