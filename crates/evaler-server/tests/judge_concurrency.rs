//! Assign and the fair scheduler, measured. One test function on purpose,
//! so its phases do not overlap. The assertions use sleeping tests, whose
//! durations do not depend on what else the machine's CPUs are doing; the
//! same with CPU-bound tests is printed for information. Ratios are
//! generous; exact timings are not asserted.

mod judge_common;

use std::time::{Duration, Instant};

use judge_common::*;
use serde_json::json;

/// Sends `n` tests of `ms` each (`mode` is `sleep` or `spin`) and waits for
/// all of them.
async fn batch(c: &mut Raw, mode: &str, first_tid: i64, n: i64, ms: u64) -> Duration {
    let start = Instant::now();
    for tid in first_tid..first_tid + n {
        c.send(&test(1, tid, &format!("{mode} {ms}"))).await;
    }
    for _ in 0..n {
        let r = c.expect().await;
        assert_eq!(r["verdict"], "OK", "{r}");
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_sets_concurrency_and_boxes_are_shared_fairly() {
    let server = start(config()).await;
    let mut c = Raw::connect(server.addr).await;
    compile_multi(&mut c, 1).await;

    // Assign 1 (the default): two 0.5 s tests take about 1 s.
    let one = batch(&mut c, "sleep", 1, 2, 500).await;
    let one_cpu = batch(&mut c, "spin", 3, 2, 500).await;
    c.send(&json!({"type": "Assign", "count": 2})).await;
    let two = batch(&mut c, "sleep", 10, 2, 500).await;
    let two_cpu = batch(&mut c, "spin", 12, 2, 500).await;
    // More than the server's boxes is capped: still two at once.
    c.send(&json!({"type": "Assign", "count": 64})).await;
    let many = batch(&mut c, "sleep", 20, 4, 250).await;
    eprintln!(
        "two 0.5 s sleeps: Assign 1 {one:?}, Assign 2 {two:?}; two 0.5 s CPU-bound tests: \
         Assign 1 {one_cpu:?}, Assign 2 {two_cpu:?}; Assign 64, four 0.25 s sleeps: {many:?}"
    );
    assert!(one > Duration::from_millis(950), "{one:?}");
    assert!(
        one.as_secs_f64() / two.as_secs_f64() > 1.6,
        "Assign 2 should about halve the time: {one:?} vs {two:?}"
    );
    assert!(
        many > Duration::from_millis(450),
        "capped at 2 boxes: {many:?}"
    );
    // Assign 0 restores 1.
    c.send(&json!({"type": "Assign", "count": 0})).await;
    let zero = batch(&mut c, "sleep", 30, 2, 300).await;
    assert!(zero > Duration::from_millis(550), "{zero:?}");

    // Fairness: a connection with a long queue does not hold back one that
    // arrives later: boxes alternate between them.
    let mut greedy = Raw::connect(server.addr).await;
    compile_multi(&mut greedy, 1).await;
    greedy.send(&json!({"type": "Assign", "count": 2})).await;
    let mut late = Raw::connect(server.addr).await;
    compile_multi(&mut late, 1).await;
    late.send(&json!({"type": "Assign", "count": 2})).await;
    let start = Instant::now();
    for tid in 0..12 {
        greedy.send(&test(1, tid, "sleep 300")).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late_time = batch(&mut late, "sleep", 100, 2, 300).await + Duration::from_millis(100);
    for _ in 0..12 {
        greedy.expect().await;
    }
    let greedy_time = start.elapsed();
    eprintln!("late connection: {late_time:?}; greedy connection: {greedy_time:?}");
    assert!(
        late_time.as_secs_f64() < greedy_time.as_secs_f64() * 0.6,
        "the late connection got boxes in turn: {late_time:?} vs {greedy_time:?}"
    );
    server.stop().await;
}
