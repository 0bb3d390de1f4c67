//! The shipped `languages.toml` against the machine: every language complete,
//! every toolchain installed where the sandbox can see it, every version
//! command working, and the example solutions compiling and running with the
//! file's own commands (unsandboxed).
//!
//! The runtimes come from `.ci/install.sh`; a missing one is a failure, not a
//! skip: the judge would be broken on this machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evaler_server::languages::{Language, LanguageSet, RunParams, BUNDLED_TOML};

const SHIPPED: [&str; 11] = [
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
    "bash",
];

const KINDS: [&str; 5] = ["correct", "wrong", "slow", "memory", "crash"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped() -> LanguageSet {
    LanguageSet::load(repo().join("languages.toml")).expect("languages.toml loads")
}

#[test]
fn shipped_file_is_the_bundled_one() {
    let text = std::fs::read_to_string(repo().join("languages.toml")).unwrap();
    assert_eq!(text, BUNDLED_TOML);
    assert_eq!(shipped(), LanguageSet::bundled().unwrap());
}

#[test]
fn ships_the_judge_languages_in_order() {
    let set = shipped();
    assert_eq!(set.keys().collect::<Vec<_>>(), SHIPPED);
    for (alias, key) in [
        ("cpp", "cpp17"),
        ("js", "javascript"),
        ("node", "javascript"),
        ("golang", "go"),
    ] {
        assert_eq!(set.resolve(alias), Some(key), "alias {alias}");
    }
}

#[test]
fn every_language_is_complete() {
    for lang in &shipped() {
        let k = &lang.key;
        assert!(!lang.name.trim().is_empty(), "{k}: name");
        assert!(!lang.source.is_empty(), "{k}: source");
        assert!(!lang.packages.is_empty(), "{k}: packages");
        assert!(
            !lang.run.is_empty() && !lang.version.is_empty(),
            "{k}: run/version"
        );
        // Every shipped language has a compile step or a syntax check.
        assert!(
            lang.compile.as_ref().is_some_and(|c| !c.is_empty()),
            "{k}: compile"
        );
        assert!(
            lang.env.contains_key("PATH"),
            "{k}: env.PATH (the box's environment starts empty)"
        );
        let argv = lang.run_argv(&RunParams::from_mib(256, 64)).unwrap();
        assert!(
            argv.iter().all(|a| !a.contains(['{', '}'])),
            "{k}: {argv:?}"
        );
        let l = lang.limits;
        assert!(
            l.compile_wall_ms >= l.compile_cpu_ms,
            "{k}: compile wall < cpu"
        );
    }
    let java = shipped().get("java").unwrap().clone();
    let argv = java.run_argv(&RunParams::from_mib(256, 64)).unwrap();
    assert!(
        argv.contains(&"-Xmx256m".to_owned()) && argv.contains(&"-Xss65536k".to_owned()),
        "{argv:?}"
    );
}

/// Directories the sandbox shows a box (besides a few /etc entries).
fn visible_in_box(path: &Path) -> bool {
    ["/usr/", "/bin/", "/lib/", "/lib64/"]
        .iter()
        .any(|d| path.starts_with(d))
}

#[test]
fn programs_are_installed_in_system_dirs() {
    for lang in &shipped() {
        let argvs = [
            lang.compile.as_deref(),
            Some(&lang.run[..]),
            Some(&lang.version[..]),
        ];
        for program in argvs.into_iter().flatten().map(|argv| &argv[0]) {
            if program.starts_with("./") {
                continue; // built in the box
            }
            let real = std::fs::canonicalize(program).unwrap_or_else(|e| {
                panic!(
                    "{}: {program} is not installed ({e}); run .ci/install.sh",
                    lang.key
                )
            });
            // Not through /etc/alternatives, not in /root, /opt, ...
            assert!(
                visible_in_box(&real),
                "{}: {program} resolves to {}",
                lang.key,
                real.display()
            );
            let meta = std::fs::metadata(&real).unwrap();
            assert!(meta.is_file(), "{}: {}", lang.key, real.display());
            use std::os::unix::fs::PermissionsExt;
            assert!(
                meta.permissions().mode() & 0o111 != 0,
                "{}: {} not executable",
                lang.key,
                real.display()
            );
        }
        for path in &lang.readonly_paths {
            assert!(
                path.exists(),
                "{}: readonly path {} missing",
                lang.key,
                path.display()
            );
        }
    }
}

#[test]
fn packages_are_installed() {
    let mut missing = Vec::new();
    for lang in &shipped() {
        for package in &lang.packages {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .expect("dpkg-query runs (a Debian machine)");
            if String::from_utf8_lossy(&out.stdout) != "install ok installed" {
                missing.push(format!("{} ({})", package, lang.key));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not installed: {missing:?}; run .ci/install.sh"
    );
    let install = std::fs::read_to_string(repo().join(".ci/install.sh")).unwrap();
    for lang in &shipped() {
        for package in &lang.packages {
            let listed = install.lines().any(|l| l.trim() == package);
            assert!(listed, "{package} ({}) is not in .ci/install.sh", lang.key);
        }
    }
}

#[test]
fn version_commands_succeed() {
    let mut failed = Vec::new();
    for lang in &shipped() {
        match lang.installed_version() {
            Some(v) => println!("{:<11} {v}", lang.key),
            None => failed.push(lang.key.clone()),
        }
    }
    assert!(
        failed.is_empty(),
        "version command failed for {failed:?}; run .ci/install.sh"
    );
}

fn solutions_dir(key: &str) -> PathBuf {
    repo().join("examples/sum/solutions").join(key)
}

fn solution(key: &str, kind: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(solutions_dir(key))
        .unwrap_or_else(|e| panic!("examples/sum/solutions/{key}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_stem().is_some_and(|s| s == kind))
        .collect();
    assert_eq!(found.len(), 1, "{key}/{kind}.*: {found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn examples_cover_every_language() {
    let expected: toml::Table = std::fs::read_to_string(repo().join("examples/sum/expected.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let verdicts = expected["verdicts"].as_table().unwrap();
    for lang in &shipped() {
        for kind in KINDS {
            let path = solution(&lang.key, kind);
            let rel = format!(
                "{}/{}",
                lang.key,
                path.file_name().unwrap().to_str().unwrap()
            );
            assert!(verdicts.contains_key(&rel), "expected.toml lacks {rel}");
        }
    }
    for rel in verdicts.keys() {
        let key = rel.split('/').next().unwrap();
        assert!(
            shipped().get(key).is_some(),
            "expected.toml: {rel} is no shipped language"
        );
    }
}

/// Run argv in dir with the language's environment only; returns (success, stdout).
fn run_in(lang: &Language, dir: &Path, argv: &[String], stdin: Option<&Path>) -> (bool, String) {
    let program = match argv[0].strip_prefix("./") {
        Some(rel) => dir.join(rel),
        None => PathBuf::from(&argv[0]),
    };
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .env_clear()
        .envs(&lang.env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match stdin {
        Some(path) => cmd.stdin(std::fs::File::open(path).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {argv:?}: {e}", lang.key));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    // Generous: a cold JVM or Go cache on a loaded 2-core machine.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    if !out.status.success() {
        eprintln!(
            "{}: {argv:?}: {}\n{}",
            lang.key,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn correct_solutions_compile_and_run() {
    let tests = repo().join("examples/sum/tests");
    let params = RunParams::from_mib(256, 64);
    let mut failed = Vec::new();
    for lang in &shipped() {
        let dir =
            std::env::temp_dir().join(format!("evaler-lang-{}-{}", lang.key, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(solution(&lang.key, "correct"), dir.join(&lang.source)).unwrap();
        let started = Instant::now();
        let compiled = match lang.compile_argv() {
            Some(argv) => run_in(lang, &dir, argv, None).0,
            None => true,
        };
        if !compiled {
            failed.push(format!("{}: compile failed", lang.key));
            continue;
        }
        let run = lang.run_argv(&params).unwrap();
        for test in ["01_sample", "07_max_values", "08_min_values"] {
            let (ok, out) = run_in(lang, &dir, &run, Some(&tests.join(format!("{test}.in"))));
            let want = std::fs::read_to_string(tests.join(format!("{test}.out"))).unwrap();
            if !ok || out.split_whitespace().ne(want.split_whitespace()) {
                failed.push(format!(
                    "{} on {test}: ok={ok}, output {out:?}, expected {want:?}",
                    lang.key
                ));
            }
        }
        println!(
            "{:<11} compiled and ran 3 tests in {:?}",
            lang.key,
            started.elapsed()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
