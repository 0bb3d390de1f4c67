//! The judge over TCP with a raw NDJSON client: every packet type, the
//! seed's submission procedure, verdicts, bad input, limits, auth.

mod judge_common;

use std::time::{Duration, Instant};

use evaler_server::judge::{Judge, JudgeConfig, JudgeError};
use evaler_server::languages::LanguageSet;
use judge_common::*;
use serde_json::{json, Value};

/// A bad line, text expected in the `Error`, and its expected `id`/`tid`.
type BadCase = (Vec<u8>, &'static str, Option<i64>, Option<i64>);

fn tid(p: &Value) -> i64 {
    p["tid"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_procedure_and_every_packet_type() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    // Auth on a loopback server without a token is accepted and ignored.
    c.send(&json!({"type": "Auth", "token": "anything"})).await;
    c.send(&json!({"type": "Assign", "count": 2})).await;
    c.send(&json!({"type": "QLen", "length": 10})).await;

    c.send(&compile(1, "c", MULTI_C)).await;
    let r = c.expect().await;
    assert_eq!(r["type"], "CResponse");
    assert_eq!(
        (r["id"].as_i64(), r["success"].as_bool()),
        (Some(1), Some(true)),
        "{r}"
    );
    assert_eq!(r["other"], "");
    assert!(r["time"].as_f64().unwrap() > 0.0, "{r}");

    c.send(&test(1, 10, "sum 1 2")).await;
    let r = c.expect().await;
    assert_eq!(r["type"], "TResponse", "{r}");
    assert_eq!(r["tid"], 10);
    assert_eq!(r["id"], 1);
    assert_eq!(r["output"], "3\n");
    assert_eq!(r["status"], 0);
    assert_eq!(r["verdict"], "OK");
    assert_eq!(r["comments"], "");
    assert!(r["time"].as_f64().unwrap() >= 0.0);
    assert!(r["walltime"].as_f64().unwrap() > 0.0);
    assert!(r["memory"].as_i64().unwrap() >= 0);

    // Input in a file: stdin is empty, stdout is still the output.
    let mut t = test(1, 11, "sum 20 22");
    t["filename"] = json!("data.in");
    c.send(&t).await;
    let r = c.expect().await;
    assert_eq!((tid(&r), r["output"].as_str()), (11, Some("42\n")), "{r}");

    // Duplicate id while the submission exists.
    c.send(&compile(1, "c", MULTI_C)).await;
    let r = c.expect().await;
    assert_eq!(r["type"], "Error", "{r}");
    assert_eq!(r["id"], 1);
    assert!(
        r["value"].as_str().unwrap().contains("already in use"),
        "{r}"
    );

    // SRemove, then the id is unknown; TRemove is accepted too.
    c.send(&json!({"type": "SRemove", "id": 1})).await;
    c.send(&test(1, 12, "sum 1 1")).await;
    let r = c.expect().await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_i64(), tid(&r)),
        (Some("Error"), Some(1), 12),
        "{r}"
    );
    assert!(
        r["value"]
            .as_str()
            .unwrap()
            .contains("unknown submission id 1"),
        "{r}"
    );
    c.send(&compile(1, "c", MULTI_C)).await;
    assert_eq!(c.expect().await["success"], true, "the id is free again");
    c.send(&json!({"type": "TRemove", "id": 1})).await;
    c.send(&test(1, 13, "sum 1 1")).await;
    assert_eq!(c.expect().await["type"], "Error");

    // A compile error, then tests of it are errors naming id and tid.
    c.send(&compile(2, "c", "int main( { return 0; }")).await;
    let r = c.expect().await;
    assert_eq!(
        (r["type"].as_str(), r["success"].as_bool()),
        (Some("CResponse"), Some(false)),
        "{r}"
    );
    assert!(r["output"].as_str().unwrap().contains("error"), "{r}");
    c.send(&test(2, 20, "sum 1 1")).await;
    let r = c.expect().await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_i64(), tid(&r)),
        (Some("Error"), Some(2), 20),
        "{r}"
    );

    // Unknown language: a failed CResponse listing what exists.
    c.send(&compile(3, "cobol", "")).await;
    let r = c.expect().await;
    assert_eq!(
        (r["type"].as_str(), r["success"].as_bool()),
        (Some("CResponse"), Some(false)),
        "{r}"
    );
    let other = r["other"].as_str().unwrap();
    assert!(other.contains("unknown language \"cobol\""), "{other}");
    assert!(
        other.contains("cpp17 (cpp)") && other.contains("python3"),
        "{other}"
    );
    // Aliases work.
    c.send(&compile(
        4,
        "cpp",
        "#include <cstdio>\nint main(){puts(\"hi\");}",
    ))
    .await;
    assert_eq!(c.expect().await["success"], true);
    c.send(&test(4, 40, "")).await;
    assert_eq!(c.expect().await["output"], "hi\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_statuses_and_comments() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    compile_multi(&mut c, 1).await;
    let cases: Vec<(Value, &str, i64, &str)> = vec![
        (
            test(1, 1, "segv"),
            "RE",
            139,
            "Killed by signal 11 (SIGSEGV)",
        ),
        (test(1, 2, "exit 3"), "RE", 3, "Exited with status 3"),
        (
            {
                let mut t = test(1, 3, "spin 5000");
                t["timelimit"] = json!(0.3);
                t
            },
            "TLE",
            137,
            "Time limit exceeded",
        ),
        (
            {
                let mut t = test(1, 4, "sleep 5000");
                t["walltimelimit"] = json!(0.5);
                t
            },
            "TLE",
            137,
            "Wall time limit exceeded",
        ),
        (
            {
                let mut t = test(1, 5, "mem 300");
                t["memorylimit"] = json!(65536);
                t
            },
            "MLE",
            137,
            "Memory limit exceeded",
        ),
        // The test config keeps 64 KiB of stdout. 5 MB cannot all fit in
        // the pipe (1 MiB), so the program is still writing when it is
        // killed; a program that overflows less may exit first (status 0,
        // still OLE: see the sandbox's hostile tests).
        (test(1, 6, "out 50000"), "OLE", 137, "Output limit exceeded"),
    ];
    for (packet, verdict, status, comment) in cases {
        c.send(&packet).await;
        let r = c.expect().await;
        assert_eq!(r["type"], "TResponse", "{r}");
        assert_eq!(r["verdict"], verdict, "{packet}: {r}");
        assert_eq!(r["status"], status, "{packet}: {r}");
        let comments = r["comments"].as_str().unwrap();
        assert!(comments.starts_with(comment), "{packet}: {comments}");
    }
    server.stop().await;
}

/// `stacklimit` bounds JavaScript's recursion too: node gets
/// `--stack-size` from it (V8's own default is ~1 MiB, whatever the limit).
/// Runs as root (the sandbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_limit_applies_to_javascript() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    let code = "function depth(n) { return n === 0 ? 0 : 1 + depth(n - 1); }\n\
                const n = Number(require('fs').readFileSync(0, 'utf8'));\n\
                console.log(depth(n));\n";
    c.send(&compile(1, "javascript", code)).await;
    let r = c.expect().await;
    assert_eq!(r["success"], true, "{r}");
    let mut deep = test(1, 1, "200000");
    deep["timelimit"] = json!(5);
    deep["stacklimit"] = json!(262144);
    c.send(&deep).await;
    let r = c.expect().await;
    assert_eq!(r["verdict"], "OK", "{r}");
    assert_eq!(r["output"], "200000\n", "{r}");
    // The same depth in a 4 MiB stack: a stack overflow, not a hang.
    deep["tid"] = json!(2);
    deep["stacklimit"] = json!(4096);
    c.send(&deep).await;
    let r = c.expect().await;
    assert_eq!(r["verdict"], "RE", "{r}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_come_out_of_order() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    compile_multi(&mut c, 1).await;
    c.send(&json!({"type": "Assign", "count": 2})).await;
    c.send(&test(1, 1, "spin 700")).await;
    c.send(&test(1, 2, "sum 2 3")).await;
    let first = c.expect().await;
    let second = c.expect().await;
    assert_eq!((tid(&first), tid(&second)), (2, 1), "{first} {second}");
    assert_eq!(first["output"], "5\n");
    assert_eq!(second["output"], "spun\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_sent_before_the_compile_ends_wait_for_it() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    c.send(&compile(1, "c", MULTI_C)).await;
    for t in 1..=3 {
        c.send(&test(1, t, &format!("sum {t} {t}"))).await;
    }
    c.send(&compile(2, "c", "syntax error")).await;
    c.send(&test(2, 9, "sum 1 1")).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(c.expect().await);
    }
    assert_eq!(got[0]["type"], "CResponse", "the compile answers first");
    let outputs: Vec<(i64, String)> = got
        .iter()
        .filter(|p| p["type"] == "TResponse")
        .map(|p| (tid(p), p["output"].as_str().unwrap().to_string()))
        .collect();
    let mut sorted = outputs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [(1, "2\n".into()), (2, "4\n".into()), (3, "6\n".into())]
    );
    let failed = got
        .iter()
        .find(|p| p["type"] == "CResponse" && p["id"] == 2)
        .unwrap();
    assert_eq!(failed["success"], false);
    let error = got.iter().find(|p| p["type"] == "Error").unwrap();
    assert_eq!((error["id"].as_i64(), tid(error)), (Some(2), 9), "{error}");
    assert!(error["value"]
        .as_str()
        .unwrap()
        .contains("failed to compile"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_is_an_error_naming_the_test() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    compile_multi(&mut c, 1).await;
    c.send(&json!({"type": "QLen", "length": 1})).await;
    c.send(&test(1, 1, "spin 800")).await;
    // Let the first test start: then one more fits in the queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(&test(1, 2, "sum 1 1")).await;
    c.send(&test(1, 3, "sum 1 2")).await;
    let r = c.expect().await;
    assert_eq!(
        (r["type"].as_str(), tid(&r), r["id"].as_i64()),
        (Some("Error"), 3, Some(1)),
        "{r}"
    );
    assert!(r["value"].as_str().unwrap().contains("queue full"), "{r}");
    assert!(r["value"].as_str().unwrap().contains("Test 3"), "{r}");
    let mut done: Vec<i64> = vec![tid(&c.expect().await), tid(&c.expect().await)];
    done.sort();
    assert_eq!(done, [1, 2]);
    // QLen 0 restores the default.
    c.send(&json!({"type": "QLen", "length": 0})).await;
    for t in 10..20 {
        c.send(&test(1, t, "sum 0 0")).await;
    }
    for _ in 10..20 {
        assert_eq!(c.expect().await["type"], "TResponse");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_the_connection_goes_on() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    compile_multi(&mut c, 1).await;
    let limit = |field: &str, value: Value| {
        let mut t = test(1, 7, "sum 1 1");
        t[field] = value;
        format!("{t}\n").into_bytes()
    };
    // (line, expected text in the Error, expected id, expected tid)
    let cases: Vec<BadCase> = vec![
        (b"not json\n".to_vec(), "invalid JSON", None, None),
        (b"{\"type\":\"Test\",\"id\":1,\n".to_vec(), "invalid JSON", None, None),
        (b"[1,2]\n".to_vec(), "not a JSON object", None, None),
        (b"{}\n".to_vec(), "no \"type\"", None, None),
        (b"{\"type\":5,\"id\":1}\n".to_vec(), "must be a string", Some(1), None),
        (b"{\"type\":\"Hello\",\"id\":4}\n".to_vec(), "unknown packet type", Some(4), None),
        (b"{\"type\":\"Compile\",\"id\":5,\"lang\":\"c\"}\n".to_vec(), "missing required field \"code\"", Some(5), None),
        (b"{\"type\":\"Test\",\"id\":1,\"tid\":2}\n".to_vec(), "missing required field", Some(1), Some(2)),
        (b"{\"type\":\"Test\",\"id\":1,\"tid\":3,\"input\":\"\",\"filename\":\"input\",\"timelimit\":\"1s\",\"memorylimit\":0,\"stacklimit\":0}\n".to_vec(), "must be a number", Some(1), Some(3)),
        (b"{\"type\":\"SRemove\",\"id\":1.5}\n".to_vec(), "must be an integer", None, None),
        (b"{\"type\":\"Test\",\"id\":1,\"tid\":4,\"input\":\"\xff\",\"filename\":\"input\",\"timelimit\":1,\"memorylimit\":0,\"stacklimit\":0}\n".to_vec(), "invalid UTF-8", Some(1), Some(4)),
        (b"{\"type\":\"Test\",\"id\":1,\"tid\":5,\"input\":\"\",\"filename\":\"input\",\"timelimit\":1e999,\"memorylimit\":0,\"stacklimit\":0}\n".to_vec(), "number out of range", None, None),
        (limit("timelimit", json!(-1)), "must not be negative", Some(1), Some(7)),
        (limit("memorylimit", json!(-1024)), "must not be negative", Some(1), Some(7)),
        (limit("stacklimit", json!(-1)), "must not be negative", Some(1), Some(7)),
        (limit("walltimelimit", json!(-0.5)), "must not be negative", Some(1), Some(7)),
        (limit("timelimit", json!(1e9)), "above this server's maximum", Some(1), Some(7)),
        (limit("memorylimit", json!(1i64 << 50)), "above this server's maximum", Some(1), Some(7)),
        (limit("filename", json!("../etc/passwd")), "invalid filename", Some(1), Some(7)),
        (limit("filename", json!("")), "invalid filename", Some(1), Some(7)),
        (limit("filename", json!("main")), "is a file of submission 1", Some(1), Some(7)),
        (limit("id", json!(99)), "unknown submission id 99", Some(99), Some(7)),
        (b"{\"type\":\"Assign\",\"count\":-1}\n".to_vec(), "must not be negative", None, None),
        (b"{\"type\":\"QLen\",\"length\":-3}\n".to_vec(), "must not be negative", None, None),
        (b"{\"type\":\"Assign\"}\n".to_vec(), "missing required field \"count\"", None, None),
    ];
    for (line, text, id, tid) in cases {
        c.send_bytes(&line).await;
        let r = c.expect().await;
        let shown = String::from_utf8_lossy(&line);
        assert_eq!(r["type"], "Error", "{shown}: {r}");
        assert!(r["value"].as_str().unwrap().contains(text), "{shown}: {r}");
        assert_eq!(r["id"].as_i64(), id, "{shown}: {r}");
        assert_eq!(r["tid"].as_i64(), tid, "{shown}: {r}");
    }
    // Blank lines are skipped; CRLF works; the connection is still fine.
    c.send_bytes(b"\n  \r\n").await;
    c.send_bytes(format!("{}\r\n", test(1, 8, "sum 2 2")).as_bytes())
        .await;
    let r = c.expect().await;
    assert_eq!((tid(&r), r["output"].as_str()), (8, Some("4\n")), "{r}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packet_gets_an_error_then_close() {
    let server = start(JudgeConfig {
        max_packet: 64 * 1024,
        ..config()
    })
    .await;
    let mut c = Raw::connect(server.addr).await;
    let big = compile(1, "c", &"x".repeat(100 * 1024));
    c.send(&big).await;
    let r = c.expect().await;
    assert_eq!(r["type"], "Error", "{r}");
    assert!(
        r["value"].as_str().unwrap().starts_with("packet too large"),
        "{r}"
    );
    c.expect_closed().await;
    // Others are unaffected.
    let mut d = Raw::connect(server.addr).await;
    compile_multi(&mut d, 1).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_when_configured() {
    let server = start(JudgeConfig {
        token: Some("s3cret-token".into()),
        auth_timeout: Duration::from_millis(500),
        ..config()
    })
    .await;
    // No Auth first.
    let mut c = Raw::connect(server.addr).await;
    c.send(&compile(1, "c", MULTI_C)).await;
    let r = c.expect().await;
    assert!(
        r["value"]
            .as_str()
            .unwrap()
            .contains("authentication required"),
        "{r}"
    );
    c.expect_closed().await;
    // Wrong token (and one of the right length).
    for wrong in ["nope", "s3cret-tokeN"] {
        let mut c = Raw::connect(server.addr).await;
        c.send(&json!({"type": "Auth", "token": wrong})).await;
        let r = c.expect().await;
        assert_eq!(r["value"], "authentication failed: wrong token", "{r}");
        c.expect_closed().await;
    }
    // Silence.
    let mut c = Raw::connect(server.addr).await;
    let r = c.expect().await;
    assert!(r["value"].as_str().unwrap().contains("in time"), "{r}");
    c.expect_closed().await;
    // Right token.
    let mut c = Raw::connect(server.addr).await;
    c.send(&json!({"type": "Auth", "token": "s3cret-token"}))
        .await;
    compile_multi(&mut c, 1).await;
    c.send(&test(1, 1, "sum 5 5")).await;
    assert_eq!(c.expect().await["output"], "10\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_told_and_closed() {
    let server = start(JudgeConfig {
        max_connections: 2,
        ..config()
    })
    .await;
    let mut a = Raw::connect(server.addr).await;
    let mut b = Raw::connect(server.addr).await;
    compile_multi(&mut a, 1).await;
    compile_multi(&mut b, 1).await;
    let mut c = Raw::connect(server.addr).await;
    let r = c.expect().await;
    assert!(r["value"].as_str().unwrap().contains("server busy"), "{r}");
    assert!(
        r["value"].as_str().unwrap().contains("2 connections"),
        "{r}"
    );
    c.expect_closed().await;
    a.close();
    // The freed slot is reusable once the server has seen the close.
    let mut ok = false;
    for _ in 0..50 {
        let mut d = Raw::connect(server.addr).await;
        d.send(&compile(1, "c", MULTI_C)).await;
        let r = d.expect().await;
        if r["type"] == "CResponse" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot frees up after a connection closes");
    b.send(&test(1, 1, "sum 1 1")).await;
    assert_eq!(b.expect().await["output"], "2\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_without_token_is_refused() {
    let judge = tokio::task::spawn_blocking(|| {
        Judge::new(
            sandbox(),
            LanguageSet::bundled().unwrap(),
            JudgeConfig {
                boxes: 1,
                ..JudgeConfig::default()
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = judge
        .serve(listener, std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::TokenRequired { .. }), "{err}");
    assert!(err.to_string().contains("--token-file"), "{err}");
}

/// A C language with tight compile limits, so hostile sources fail fast.
fn tight_c() -> LanguageSet {
    let bundled = LanguageSet::bundled().unwrap();
    let mut c = bundled.get("c").unwrap().clone();
    c.limits.compile_cpu_ms = 2000;
    c.limits.compile_wall_ms = 4000;
    c.limits.compile_memory_mib = 256;
    LanguageSet::new(vec![c]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_compiles_are_contained() {
    let server = start_with(config(), tight_c()).await;
    let mut c = Raw::connect(server.addr).await;
    let start = Instant::now();
    c.send(&compile(1, "c", "#include \"/dev/random\"\nint main(){}"))
        .await;
    let r = c.expect().await;
    assert_eq!(r["success"], false, "{r}");
    // Lots of diagnostics: cut with a marker.
    let errors = "int x = ;\n".repeat(3000);
    c.send(&compile(2, "c", &errors)).await;
    let r = c.expect().await;
    assert_eq!(r["success"], false, "{r}");
    let output = r["output"].as_str().unwrap();
    assert!(output.len() < 70 * 1024, "{}", output.len());
    assert!(
        output.contains("[evaler: compiler output truncated"),
        "{}",
        &output[output.len() - 200..]
    );
    // A preprocessor bomb hits the CPU or memory limit.
    let mut bomb = String::from("#define A0 x\n");
    for i in 1..30 {
        bomb.push_str(&format!("#define A{i} A{0} A{0} A{0} A{0}\n", i - 1));
    }
    bomb.push_str("int main(){ A29; }\n");
    c.send(&compile(3, "c", &bomb)).await;
    let r = c.expect().await;
    assert_eq!(r["success"], false, "{r}");
    assert!(
        r["other"].as_str().unwrap().starts_with("Compiler stopped"),
        "{r}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    // The boxes are fine afterwards.
    compile_multi(&mut c, 4).await;
    c.send(&test(4, 1, "sum 1 1")).await;
    assert_eq!(c.expect().await["output"], "2\n");
    server.stop().await;
}
