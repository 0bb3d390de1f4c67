//! `evaler run`, exactly in the form outside checks use it. Needs root
//! (the sandbox does); CI runs as root.

use std::process::{Command, Output};

fn evaler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evaler"))
        .args(args)
        .env("EVALER_CALLER_SECRET", "do-not-pass")
        .output()
        .expect("evaler runs")
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let first = lines.next().expect("one JSON line");
    assert!(
        lines.next().is_none(),
        "more than one line on stdout: {text}"
    );
    serde_json::from_str(first).expect("valid JSON")
}

#[test]
fn json_has_every_field() {
    let out = evaler(&[
        "run",
        "--json",
        "--",
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    for key in [
        "verdict", "status", "signal", "time", "walltime", "memory", "comments", "stdout", "stderr",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["verdict"], "RE");
    assert_eq!(v["status"], 3);
    assert_eq!(v["signal"], serde_json::Value::Null);
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert!(v["time"].as_f64().unwrap() >= 0.0 && v["walltime"].as_f64().unwrap() > 0.0);
    assert!(v["memory"].as_u64().is_some());
}

#[test]
fn verdicts_exit_zero_and_signals_are_reported() {
    let out = evaler(&[
        "run",
        "--json",
        "--time",
        "0.3",
        "--",
        "/bin/sh",
        "-c",
        "while :; do :; done",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["verdict"], "TLE");
    assert_eq!(v["status"], 137);
    assert_eq!(v["signal"], 9);
    assert!(
        v["comments"]
            .as_str()
            .unwrap()
            .starts_with("Time limit exceeded (cpu"),
        "{v}"
    );

    let out = evaler(&[
        "run",
        "--json",
        "--memory",
        "32768",
        "--",
        "/usr/bin/python3",
        "-c",
        "b = bytearray(100 << 20)",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["verdict"], "MLE");

    let out = evaler(&["run", "--json", "--wall", "0.2", "--", "sleep", "5"]);
    assert_eq!(json(&out)["verdict"], "TLE");

    let out = evaler(&[
        "run", "--json", "--output", "1", "--", "/bin/sh", "-c", "yes",
    ]);
    assert_eq!(json(&out)["verdict"], "OLE");
}

#[test]
fn clean_environment_and_env_flag() {
    let out = evaler(&[
        "run", "--json", "--env", "A=1", "--env", "B=x=y", "--", "env",
    ]);
    let v = json(&out);
    let env = v["stdout"].as_str().unwrap();
    assert!(env.contains("A=1\n") && env.contains("B=x=y\n"), "{env}");
    assert!(
        env.contains("PATH=") && env.contains("HOME=") && env.contains("LANG="),
        "{env}"
    );
    assert!(!env.contains("do-not-pass"), "{env}");
}

#[test]
fn stdin_is_empty_unless_given() {
    let v = json(&evaler(&["run", "--json", "--", "cat"]));
    assert_eq!(
        (v["verdict"].as_str(), v["stdout"].as_str()),
        (Some("OK"), Some(""))
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "2 3\n").unwrap();
    let v = json(&evaler(&[
        "run",
        "--json",
        "--stdin",
        input.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "read a b; echo $((a * b))",
    ]));
    assert_eq!(v["stdout"], "6\n");
}

#[test]
fn dir_becomes_the_working_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "hello\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/x"), "y").unwrap();
    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\ncat data.txt sub/x; echo; pwd\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = json(&evaler(&[
        "run",
        "--json",
        "--dir",
        dir.path().to_str().unwrap(),
        "--",
        "./run.sh",
    ]));
    assert_eq!(v["stdout"], "hello\ny\n/box\n", "{v}");
    // The host directory is untouched by what the program does.
    let v = json(&evaler(&[
        "run",
        "--json",
        "--dir",
        dir.path().to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "rm -rf ./*; echo gone > new",
    ]));
    assert_eq!(v["verdict"], "OK");
    assert!(dir.path().join("data.txt").exists() && !dir.path().join("new").exists());
}

#[test]
fn plain_mode_passes_output_through_and_summarises() {
    let out = evaler(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "echo visible; echo warn >&2; kill -SEGV $$",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "visible\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("warn\n"), "{err}");
    let summary = err.lines().last().unwrap();
    assert!(summary.starts_with("evaler: RE status=139"), "{summary}");
    assert!(
        summary.contains("Killed by signal 11 (SIGSEGV)"),
        "{summary}"
    );
}

#[test]
fn usage_errors_and_sandbox_errors_are_non_zero() {
    assert_eq!(
        evaler(&["run", "--time", "-1", "--", "true"]).status.code(),
        Some(2)
    );
    assert_eq!(
        evaler(&["run", "--env", "NOEQUALS", "--", "true"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        evaler(&["run", "--stdin", "/nonexistent/file", "--", "true"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(evaler(&["run"]).status.code(), Some(2));
    let out = evaler(&["run", "--json", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["verdict"], "SE");
    assert!(
        v["comments"].as_str().unwrap().contains("No such file"),
        "{v}"
    );
}
