//! The client library (`evaler_client::judge`) against the real server.

mod judge_common;

use std::time::Duration;

use evaler_client::judge::{ClientError, ClientEvent, JudgeClient};
use evaler_proto::{Test, Verdict};
use evaler_server::judge::JudgeConfig;
use judge_common::*;

fn packet(id: i64, tid: i64, input: &str) -> Test {
    Test {
        id,
        tid,
        input: input.into(),
        filename: "input".into(),
        timelimit: 1.0,
        memorylimit: 262_144,
        stacklimit: 0,
        walltimelimit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tests_in_flight_and_errors_routed() {
    let server = start(config()).await;
    let client = JudgeClient::connect(server.addr).await.unwrap();
    let compiled = client.compile(1, "c", MULTI_C).await.unwrap();
    assert!(compiled.success, "{compiled:?}");
    client.assign(2).await.unwrap();
    let tests = (0..60).map(|tid| client.test(packet(1, tid, &format!("sum {tid} 1"))));
    let results = futures::future::join_all(tests).await;
    for (tid, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.tid, tid as i64);
        assert_eq!(r.id, Some(1));
        assert_eq!(r.verdict, Some(Verdict::Ok));
        assert_eq!(r.output, format!("{}\n", tid + 1));
    }
    // Out of order: the slow one is asked first and answered last.
    let slow = client.test(packet(1, 100, "spin 500"));
    let fast = client.test(packet(1, 101, "sum 1 1"));
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(
        (slow.unwrap().output, fast.unwrap().output),
        ("spun\n".into(), "2\n".into())
    );
    // Errors reach the future they name.
    match client.test(packet(9, 1, "")).await {
        Err(ClientError::Server(e)) => {
            assert_eq!((e.id, e.tid), (Some(9), Some(1)));
            assert!(e.value.contains("unknown submission id 9"), "{}", e.value);
        }
        other => panic!("{other:?}"),
    }
    let mut bad_name = packet(1, 2, "");
    bad_name.filename = "a/b".into();
    assert!(matches!(
        client.test(bad_name).await,
        Err(ClientError::Server(_))
    ));
    match client.compile(1, "c", MULTI_C).await {
        Err(ClientError::Server(e)) => assert!(e.value.contains("already in use"), "{}", e.value),
        other => panic!("{other:?}"),
    }
    let unknown = client.compile(2, "cobol", "").await.unwrap();
    assert!(!unknown.success && unknown.other.contains("known languages"));
    client.remove(1).await.unwrap();
    assert!(matches!(
        client.test(packet(1, 3, "")).await,
        Err(ClientError::Server(_))
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_going_away_resolves_pending_futures() {
    let server = start(config()).await;
    let client = JudgeClient::connect(server.addr).await.unwrap();
    let mut events = client.events().unwrap();
    assert!(client.compile(1, "c", MULTI_C).await.unwrap().success);
    let c = client.clone();
    let pending = tokio::spawn(async move { c.test(packet(1, 1, "sleep 5000")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("resolved after the server left")
        .unwrap();
    assert!(
        matches!(result, Err(ClientError::Disconnected)),
        "{result:?}"
    );
    assert!(matches!(
        client.test(packet(1, 2, "")).await,
        Err(ClientError::Disconnected)
    ));
    let reason = client.disconnect_reason().unwrap();
    assert!(reason.contains("server shutting down"), "{reason}");
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, ClientEvent::Error(p) if p.value == "server shutting down")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, ClientEvent::Disconnected(_))),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authentication() {
    let server = start(JudgeConfig {
        token: Some("letmein".into()),
        ..config()
    })
    .await;
    let client = JudgeClient::connect_with_token(server.addr, "letmein")
        .await
        .unwrap();
    assert!(client.compile(1, "c", MULTI_C).await.unwrap().success);
    let r = client.test(packet(1, 1, "sum 40 2")).await.unwrap();
    assert_eq!(r.output, "42\n");
    let wrong = JudgeClient::connect_with_token(server.addr, "nope")
        .await
        .unwrap();
    assert!(matches!(
        wrong.compile(1, "c", MULTI_C).await,
        Err(ClientError::Disconnected)
    ));
    let reason = wrong.disconnect_reason().unwrap();
    assert!(reason.contains("authentication failed"), "{reason}");
    // Dropping a client closes its connection; the server cancels its work.
    drop(client);
    assert!(
        eventually(Duration::from_secs(5), || processes_of(&server.uids)
            .is_empty())
        .await
    );
    server.stop().await;
}
