//! Every packet of both protocols survives encode → decode, with extension
//! fields present and absent, through every path a server or client uses.

mod common;

use common::*;
use evaler_proto::*;
use serde_json::json;

fn session_requests() -> Vec<SessionRequest> {
    vec![
        SessionRequest::Run(Run {
            code: "print(1)".into(),
            timeout: None,
        }),
        SessionRequest::Run(Run {
            code: "x = 1\nx".into(),
            timeout: Some(2.5),
        }),
        SessionRequest::RunAndKill(Run {
            code: "exit()".into(),
            timeout: None,
        }),
        SessionRequest::RunAndKill(Run {
            code: "".into(),
            timeout: Some(0.0),
        }),
        SessionRequest::Kill,
        SessionRequest::Ping,
        SessionRequest::Interrupt,
    ]
}

fn session_replies() -> Vec<SessionReply> {
    let mut replies = vec![
        SessionReply::Result(RunResult {
            stdout: "1\n".into(),
            stderr: "".into(),
            ..Default::default()
        }),
        SessionReply::Result(RunResult {
            stdout: "a".into(),
            stderr: "b".into(),
            status: Some(RunStatus::Exited),
            value: Some("'x'".into()),
            time: Some(0.125),
            exit_code: Some(3),
            truncated: Some(true),
        }),
        SessionReply::ConnectionOk,
        SessionReply::Stopped,
        SessionReply::ConnectionError(ConnectionError { value: None }),
        SessionReply::ConnectionError(ConnectionError {
            value: Some("bash exited".into()),
        }),
        SessionReply::Error(ErrorPacket::new("bad")),
    ];
    for status in RunStatus::ALL {
        replies.push(SessionReply::Result(RunResult {
            status: Some(status),
            ..Default::default()
        }));
    }
    replies
}

fn judge_requests() -> Vec<JudgeRequest> {
    vec![
        JudgeRequest::Compile(Compile {
            id: 1,
            code: "int main(){}".into(),
            lang: "cpp".into(),
        }),
        JudgeRequest::Test(Test {
            id: 1,
            tid: 2,
            input: "1 2\n".into(),
            filename: "input".into(),
            timelimit: 1.5,
            memorylimit: 65536,
            stacklimit: 0,
            walltimelimit: None,
        }),
        JudgeRequest::Test(Test {
            id: 1,
            tid: 3,
            input: "".into(),
            filename: "data.txt".into(),
            timelimit: 0.0,
            memorylimit: 0,
            stacklimit: 8192,
            walltimelimit: Some(10.0),
        }),
        JudgeRequest::SRemove(SRemove { id: 1 }),
        JudgeRequest::Assign(Assign { count: 4 }),
        JudgeRequest::QLen(QLen { length: 17 }),
        JudgeRequest::Auth(Auth {
            token: "s3cret".into(),
        }),
    ]
}

fn judge_replies() -> Vec<JudgeReply> {
    let mut replies = vec![
        JudgeReply::CResponse(CResponse {
            id: 1,
            output: "".into(),
            success: true,
            other: "".into(),
            time: None,
        }),
        JudgeReply::CResponse(CResponse {
            id: 1,
            output: "warning".into(),
            success: false,
            other: "x".into(),
            time: Some(0.75),
        }),
        JudgeReply::TResponse(TResponse {
            tid: 2,
            output: "3\n".into(),
            time: 0.01,
            memory: 1024,
            status: 0,
            comments: "".into(),
            ..Default::default()
        }),
        JudgeReply::Error(ErrorPacket::new("bad")),
        JudgeReply::Error(ErrorPacket {
            value: "bad".into(),
            id: Some(-1),
            tid: Some(9),
        }),
    ];
    for verdict in Verdict::ALL {
        replies.push(JudgeReply::TResponse(TResponse {
            tid: 5,
            output: "".into(),
            time: 1.0,
            memory: 0,
            status: -11,
            comments: "Killed by signal 11".into(),
            verdict: Some(verdict),
            walltime: Some(1.25),
            id: Some(1),
        }));
    }
    replies
}

fn check_all_paths<P>(packets: Vec<P>)
where
    P: Packet + Clone + PartialEq + std::fmt::Debug + serde::de::DeserializeOwned,
{
    for p in &packets {
        let line = encode_line(p, DEFAULT_MAX_PACKET).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        assert!(!body.contains(&b'\n'), "packet spans lines: {line:?}");
        assert_eq!(&decode::<P>(body).unwrap(), p);
        // serde entry points agree with the wire decoder.
        let text = serde_json::to_string(p).unwrap();
        assert_eq!(text.as_bytes(), body);
        assert_eq!(&serde_json::from_str::<P>(&text).unwrap(), p);
        // "type" comes first, so humans reading a log see it at once.
        assert!(text.starts_with(&format!("{{\"type\":\"{}\"", p.type_name())));
    }
    let stream = codec_encode_all(&packets);
    assert_eq!(stream, blocking_encode_all(&packets));
    for chunk in [1, 7, 4096] {
        assert_eq!(
            all_ok(codec_decode_all::<P>(&stream, chunk, 1 << 20)),
            packets
        );
        assert_eq!(
            all_ok(blocking_decode_all::<P>(&stream, chunk, 1 << 20)),
            packets
        );
    }
}

#[test]
fn session_requests_round_trip() {
    check_all_paths(session_requests());
}

#[test]
fn session_replies_round_trip() {
    check_all_paths(session_replies());
}

#[test]
fn judge_requests_round_trip() {
    check_all_paths(judge_requests());
}

#[test]
fn judge_replies_round_trip() {
    check_all_paths(judge_replies());
}

#[test]
fn absent_extensions_are_not_serialized() {
    let run = SessionRequest::Run(Run {
        code: "1".into(),
        timeout: None,
    });
    assert_eq!(
        serde_json::to_value(&run).unwrap(),
        json!({"type": "RUN", "code": "1"})
    );
    let result = SessionReply::Result(RunResult {
        stdout: "o".into(),
        stderr: "e".into(),
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"type": "RESULT", "stdout": "o", "stderr": "e"})
    );
    assert_eq!(
        serde_json::to_value(SessionReply::ConnectionError(ConnectionError {
            value: None
        }))
        .unwrap(),
        json!({"type": "CONNECTION-ERROR"})
    );
    assert_eq!(
        serde_json::to_value(JudgeReply::Error(ErrorPacket::new("x"))).unwrap(),
        json!({"type": "Error", "value": "x"})
    );
    assert_eq!(
        serde_json::to_value(SessionRequest::Kill).unwrap(),
        json!({"type": "KILL"})
    );
}

#[test]
fn extension_fields_have_documented_wire_form() {
    let result = SessionReply::Result(RunResult {
        stdout: "".into(),
        stderr: "".into(),
        status: Some(RunStatus::Interrupted),
        value: Some("42".into()),
        time: Some(1.0),
        exit_code: Some(0),
        truncated: Some(false),
    });
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"type": "RESULT", "stdout": "", "stderr": "", "status": "interrupted",
               "value": "42", "time": 1.0, "exit_code": 0, "truncated": false})
    );
    let t = JudgeReply::TResponse(TResponse {
        verdict: Some(Verdict::TimeLimit),
        ..Default::default()
    });
    assert_eq!(serde_json::to_value(&t).unwrap()["verdict"], json!("TLE"));
    for v in Verdict::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), json!(v.as_str()));
        assert_eq!(Verdict::from_wire(v.as_str()), Some(v));
        assert_eq!(v.to_string(), v.as_str());
    }
    for s in RunStatus::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
}

#[test]
fn seed_spelling_tremove_is_accepted_and_emitted_as_sremove() {
    let p: JudgeRequest = decode(br#"{"type":"TRemove","id":12}"#).unwrap();
    assert_eq!(p, JudgeRequest::SRemove(SRemove { id: 12 }));
    let line = encode_line(&p, DEFAULT_MAX_PACKET).unwrap();
    assert_eq!(line, b"{\"type\":\"SRemove\",\"id\":12}\n");
}

#[test]
fn unknown_fields_are_ignored() {
    let p: JudgeRequest = decode(
        br#"{"type":"Compile","id":1,"code":"c","lang":"py","extra":[1,{"a":null}],"priority":3.5}"#,
    )
    .unwrap();
    assert_eq!(
        p,
        JudgeRequest::Compile(Compile {
            id: 1,
            code: "c".into(),
            lang: "py".into()
        })
    );
    let p: SessionRequest = decode(br#"{"future":"x","type":"PING","id":"str"}"#).unwrap();
    assert_eq!(p, SessionRequest::Ping);
}

#[test]
fn null_optional_fields_mean_absent() {
    let p: SessionRequest = decode(br#"{"type":"RUN","code":"1","timeout":null}"#).unwrap();
    assert_eq!(
        p,
        SessionRequest::Run(Run {
            code: "1".into(),
            timeout: None
        })
    );
}

#[test]
fn integers_are_accepted_where_floats_are_required() {
    let p: JudgeRequest = decode(
        br#"{"type":"Test","id":1,"tid":1,"input":"","filename":"input","timelimit":2,"memorylimit":0,"stacklimit":0}"#,
    )
    .unwrap();
    let JudgeRequest::Test(t) = p else {
        panic!("not a Test: {p:?}")
    };
    assert_eq!(t.timelimit, 2.0);
    assert!(t.uses_stdin());
}

#[test]
fn crlf_blank_lines_whitespace_and_missing_final_newline_are_tolerated() {
    let input = b"\r\n  {\"type\":\"PING\"}  \r\n\n\t\n{\"type\":\"KILL\"}";
    let want = vec![SessionRequest::Ping, SessionRequest::Kill];
    assert_eq!(
        all_ok(codec_decode_all::<SessionRequest>(input, 3, 100)),
        want
    );
    assert_eq!(
        all_ok(blocking_decode_all::<SessionRequest>(input, 3, 100)),
        want
    );
}

#[test]
fn control_characters_and_newlines_stay_on_one_line() {
    let nasty: String = (0u32..0x80)
        .filter_map(char::from_u32)
        .chain(['\u{2028}', '\u{2029}', '😀', '\u{fffd}'])
        .collect();
    let p = SessionReply::Result(RunResult {
        stdout: nasty.clone(),
        stderr: "\r\n\r\n".into(),
        value: Some(nasty),
        ..Default::default()
    });
    let line = encode_line(&p, DEFAULT_MAX_PACKET).unwrap();
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(!line.contains(&b'\r'));
    assert_eq!(decode::<SessionReply>(&line[..line.len() - 1]).unwrap(), p);
}

#[test]
fn output_to_string_replaces_invalid_utf8() {
    assert_eq!(output_to_string(b"ok\n"), "ok\n");
    assert_eq!(output_to_string(b"a\xffb"), "a\u{fffd}b");
    assert_eq!(output_to_string(b"\xe2\x82"), "\u{fffd}");
    assert_eq!(output_to_string("é😀".as_bytes()), "é😀");
    for bytes in [
        &b"ok\n"[..],
        b"a\xffb",
        b"\xe2\x82",
        "é😀".as_bytes(),
        b"\xf0\x9f\x98",
    ] {
        assert_eq!(output_into_string(bytes.to_vec()), output_to_string(bytes));
        assert_eq!(output_to_string(bytes), String::from_utf8_lossy(bytes));
    }
}

#[test]
fn auth_token_is_not_debug_printed() {
    let auth = Auth {
        token: "hunter2".into(),
    };
    assert!(!format!("{auth:?}").contains("hunter2"));
}

#[test]
fn validate_rejects_negative_and_non_finite_limits() {
    let good = Test {
        filename: "input".into(),
        timelimit: 1.0,
        walltimelimit: Some(0.0),
        ..Default::default()
    };
    assert_eq!(good.validate(), Ok(()));
    let cases: Vec<(Test, &str)> = vec![
        (
            Test {
                timelimit: -1.0,
                ..good.clone()
            },
            "field \"timelimit\" of Test packet must not be negative (found -1)",
        ),
        (
            Test {
                timelimit: f64::NAN,
                ..good.clone()
            },
            "field \"timelimit\" of Test packet must be a finite number (found NaN)",
        ),
        (
            Test {
                memorylimit: -5,
                ..good.clone()
            },
            "field \"memorylimit\" of Test packet must not be negative (found -5)",
        ),
        (
            Test {
                stacklimit: i64::MIN,
                ..good.clone()
            },
            "field \"stacklimit\" of Test packet must not be negative (found -9223372036854775808)",
        ),
        (
            Test {
                walltimelimit: Some(f64::INFINITY),
                ..good.clone()
            },
            "field \"walltimelimit\" of Test packet must be a finite number (found inf)",
        ),
    ];
    for (test, message) in cases {
        assert_eq!(test.validate().unwrap_err().to_string(), message);
    }
    assert!(matches!(
        Assign { count: -1 }.validate(),
        Err(ValidationError::Negative {
            field: "count",
            packet: "Assign",
            ..
        })
    ));
    assert_eq!(Assign { count: 0 }.validate(), Ok(()));
    assert!(matches!(
        QLen { length: -1 }.validate(),
        Err(ValidationError::Negative {
            field: "length",
            packet: "QLen",
            ..
        })
    ));
    assert_eq!(QLen { length: 3 }.validate(), Ok(()));
}

#[test]
fn non_finite_floats_are_refused_on_encode_and_nothing_is_written() {
    let p = JudgeReply::TResponse(TResponse {
        time: f64::NAN,
        ..Default::default()
    });
    let err = encode_line(&p, DEFAULT_MAX_PACKET).unwrap_err();
    assert!(matches!(err, EncodeError::Json(_)), "{err:?}");
    assert!(err.to_string().contains("finite"), "{err}");

    let mut writer = PacketWriter::<_, JudgeReply>::new(Vec::new());
    assert!(matches!(
        writer.write_packet(&p),
        Err(StreamError::Encode(EncodeError::Json(_)))
    ));
    assert!(writer.get_ref().is_empty());

    let p = SessionRequest::Run(Run {
        code: "".into(),
        timeout: Some(f64::NEG_INFINITY),
    });
    assert!(encode_line(&p, DEFAULT_MAX_PACKET).is_err());
}

#[test]
fn too_large_packets_are_refused_on_encode() {
    let p = SessionRequest::Run(Run {
        code: "x".repeat(100),
        timeout: None,
    });
    let err = encode_line(&p, 50).unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::TooLarge {
                size: 124,
                limit: 50
            }
        ),
        "{err:?}"
    );

    let mut codec = SessionClientCodec::with_max_packet(50);
    let mut buf = bytes::BytesMut::from(&b"keep"[..]);
    let res = tokio_util::codec::Encoder::encode(&mut codec, &p, &mut buf);
    assert!(matches!(
        res,
        Err(StreamError::Encode(EncodeError::TooLarge { .. }))
    ));
    assert_eq!(&buf[..], b"keep");
}

/// The way servers and clients will actually use the codec: `Framed` on both
/// ends of a socket-like stream, sending with `SinkExt::send`.
#[tokio::test]
async fn framed_client_and_server_talk() {
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    let (client_io, server_io) = tokio::io::duplex(64);
    let mut client = Framed::new(client_io, JudgeClientCodec::new());
    let mut server = Framed::new(server_io, JudgeServerCodec::new());

    let server_task = tokio::spawn(async move {
        while let Some(item) = server.next().await {
            let reply = match item.expect("no fatal errors in this test") {
                Ok(JudgeRequest::Compile(c)) => JudgeReply::CResponse(CResponse {
                    id: c.id,
                    output: format!("compiled {} bytes of {}", c.code.len(), c.lang),
                    success: true,
                    other: String::new(),
                    time: Some(0.5),
                }),
                Ok(other) => JudgeReply::Error(ErrorPacket::new(other.type_name())),
                Err(err) => JudgeReply::from(&err),
            };
            server.send(reply).await.unwrap();
        }
    });

    let big_code = "x\n\"\u{0}😀".repeat(10_000);
    client
        .send(JudgeRequest::Compile(Compile {
            code: big_code.clone(),
            lang: "cpp".into(),
            id: 12,
        }))
        .await
        .unwrap();
    let reply = client.next().await.unwrap().unwrap().unwrap();
    assert_eq!(
        reply,
        JudgeReply::CResponse(CResponse {
            id: 12,
            output: format!("compiled {} bytes of cpp", big_code.len()),
            success: true,
            other: String::new(),
            time: Some(0.5),
        })
    );

    // A raw bad line in between, then a good packet, on the same connection.
    use tokio::io::AsyncWriteExt;
    client
        .get_mut()
        .write_all(b"{\"type\":\"Test\",\"id\":12,\"tid\":1}\n")
        .await
        .unwrap();
    let reply = client.next().await.unwrap().unwrap().unwrap();
    assert_eq!(
        reply,
        JudgeReply::Error(ErrorPacket {
            value: "missing required field \"input\" in Test packet".into(),
            id: Some(12),
            tid: Some(1),
        })
    );
    client
        .send(&JudgeRequest::QLen(QLen { length: 0 }))
        .await
        .unwrap();
    let reply = client.next().await.unwrap().unwrap().unwrap();
    assert_eq!(reply, JudgeReply::Error(ErrorPacket::new("QLen")));

    drop(client);
    server_task.await.unwrap();
}
