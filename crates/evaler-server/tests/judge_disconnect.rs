//! What a vanished or non-reading client leaves behind: nothing, and it
//! slows down nobody else.

mod judge_common;

use std::time::{Duration, Instant};

use evaler_server::judge::JudgeConfig;
use judge_common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_run_kills_everything_and_keeps_nothing() {
    let server = start(JudgeConfig {
        max_time: Duration::from_secs(30),
        max_wall: Duration::from_secs(60),
        ..config()
    })
    .await;
    let workdir = sandbox().config().workdir.clone();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&workdir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let mut c = Raw::connect(server.addr).await;
    compile_multi(&mut c, 1).await;
    compile_multi(&mut c, 2).await;
    assert!(server.monitor.stored_bytes() > 0);
    c.send(&json!({"type": "Assign", "count": 2})).await;
    let mut sleeper = test(1, 1, "sleep 40000");
    sleeper["walltimelimit"] = json!(50);
    c.send(&sleeper).await;
    let mut spinner = test(2, 2, "spin 25000");
    spinner["timelimit"] = json!(25);
    c.send(&spinner).await;
    for tid in 3..10 {
        c.send(&test(1, tid, "sum 1 1")).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || processes_of(&server.uids).len()
            >= 2)
        .await,
        "both tests are running"
    );
    let closed = Instant::now();
    c.close();
    assert!(
        eventually(Duration::from_secs(5), || processes_of(&server.uids)
            .is_empty())
        .await,
        "processes left: {:?}",
        processes_of(&server.uids)
    );
    eprintln!("box processes gone {:?} after the close", closed.elapsed());
    // Each box cgroup holds at most the sandbox's box keeper (pid 1 of the
    // box, not running as the box's uid), no program.
    let cgroups = box_cgroup_procs(&server.uids);
    assert!(!cgroups.is_empty(), "found the box cgroups");
    for (path, procs) in &cgroups {
        let pids: Vec<i32> = procs
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(pids.len() <= 1, "{} holds {pids:?}", path.display());
        for pid in pids {
            assert!(
                !processes_of(&server.uids).contains(&pid),
                "{} holds a box-uid process {pid}",
                path.display()
            );
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || server.monitor.stored_bytes()
            == 0)
        .await,
        "submissions freed: {} bytes left",
        server.monitor.stored_bytes()
    );
    // Submissions never touch the workdir (the sandbox's state and other
    // servers' entries live there; nothing new appeared).
    assert_eq!(listing(), before, "{}", workdir.display());
    // The queued tests were dropped, the boxes are free and clean.
    let mut d = Raw::connect(server.addr).await;
    compile_multi(&mut d, 1).await;
    d.send(&json!({"type": "Assign", "count": 2})).await;
    let start = Instant::now();
    let mut from_file = test(1, 1, "sum 2 2");
    from_file["filename"] = json!("data.in");
    d.send(&from_file).await;
    d.send(&test(1, 2, "sum 3 3")).await;
    let mut outputs = vec![
        d.expect().await["output"].as_str().unwrap().to_string(),
        d.expect().await["output"].as_str().unwrap().to_string(),
    ];
    outputs.sort();
    assert_eq!(outputs, ["4\n", "6\n"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_blocks_only_itself() {
    let server = start(JudgeConfig {
        output_kib: 1024,
        max_packet: 8 << 20,
        ..config()
    })
    .await;
    let mut hog = Raw::connect(server.addr).await;
    compile_multi(&mut hog, 1).await;
    hog.send(&json!({"type": "Assign", "count": 2})).await;
    hog.send(&json!({"type": "QLen", "length": 5000})).await;
    // ~1 MiB of output each, never read: far more than the socket buffers.
    for tid in 0..400 {
        hog.send(&test(1, tid, "out 10000")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut polite = Raw::connect(server.addr).await;
    compile_multi(&mut polite, 1).await;
    polite.send(&json!({"type": "Assign", "count": 2})).await;
    let start = Instant::now();
    for tid in 0..50 {
        polite.send(&test(1, tid, "sum 1 2")).await;
    }
    for _ in 0..50 {
        assert_eq!(polite.expect().await["output"], "3\n");
    }
    let took = start.elapsed();
    eprintln!("50 tests next to a stalled client: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The hog is still served once it reads.
    let first = hog.expect().await;
    assert_eq!(first["type"], "TResponse");
    assert_eq!(first["output"].as_str().unwrap().len(), 1_010_000);
    server.stop().await;
}
