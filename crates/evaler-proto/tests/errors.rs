//! Each kind of malformed input gives its own error variant with a message
//! naming the problem, the ids when readable, and leaves the stream usable.

mod common;

use std::io::{self, BufReader, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use common::*;
use evaler_proto::*;
use futures::StreamExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, FramedRead};

/// One bad judge line, what it must decode to, and the exact Error packet.
struct Case {
    input: &'static [u8],
    check: fn(&DecodeErrorKind) -> bool,
    message: &'static str,
    id: Option<i64>,
    tid: Option<i64>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            input: b"{\"type\":\"Test\",\"id\":3,\"tid\":4,\"input\":\"\xff\xfe\"}",
            check: |k| matches!(k, DecodeErrorKind::InvalidUtf8 { valid_up_to: 39 }),
            message: "invalid UTF-8 in packet at byte 39",
            id: Some(3),
            tid: Some(4),
        },
        Case {
            input: b"\xc3",
            check: |k| matches!(k, DecodeErrorKind::InvalidUtf8 { valid_up_to: 0 }),
            message: "invalid UTF-8 in packet at byte 0",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"type":"Compile","id":1"#,
            check: |k| matches!(k, DecodeErrorKind::InvalidJson { line: 1, column: 24, .. }),
            message: "invalid JSON: EOF while parsing an object at line 1 column 24",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"type":"PING"} {"type":"PING"}"#,
            check: |k| matches!(k, DecodeErrorKind::InvalidJson { column: 17, .. }),
            message: "invalid JSON: trailing characters at line 1 column 17",
            id: None,
            tid: None,
        },
        Case {
            input: b"hello",
            check: |k| matches!(k, DecodeErrorKind::InvalidJson { .. }),
            message: "invalid JSON: expected value at line 1 column 1",
            id: None,
            tid: None,
        },
        Case {
            input: br#"[{"type":"Compile"}]"#,
            check: |k| matches!(k, DecodeErrorKind::NotAnObject { found: "array" }),
            message: "packet is not a JSON object (found array)",
            id: None,
            tid: None,
        },
        Case {
            input: br#""Compile""#,
            check: |k| matches!(k, DecodeErrorKind::NotAnObject { found: "string" }),
            message: "packet is not a JSON object (found string)",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"id":5,"tid":6,"input":""}"#,
            check: |k| matches!(k, DecodeErrorKind::MissingType),
            message: "packet has no \"type\" field",
            id: Some(5),
            tid: Some(6),
        },
        Case {
            input: br#"{"type":7,"id":5}"#,
            check: |k| matches!(k, DecodeErrorKind::TypeNotString { .. }),
            message: "field \"type\" must be a string (found integer 7)",
            id: Some(5),
            tid: None,
        },
        Case {
            input: br#"{"type":"RUN","code":"1","id":2}"#,
            check: |k| {
                matches!(k, DecodeErrorKind::UnknownType { name, protocol: Protocol::Judge, .. } if name == "RUN")
            },
            message: "unknown packet type \"RUN\" for the judge protocol (valid types: Compile, Test, SRemove, TRemove, Assign, QLen, Auth)",
            id: Some(2),
            tid: None,
        },
        Case {
            input: br#"{"type":"compile","id":2}"#,
            check: |k| matches!(k, DecodeErrorKind::UnknownType { .. }),
            message: "unknown packet type \"compile\" for the judge protocol (valid types: Compile, Test, SRemove, TRemove, Assign, QLen, Auth)",
            id: Some(2),
            tid: None,
        },
        Case {
            input: br#"{"type":"Compile","id":7,"code":"x"}"#,
            check: |k| {
                matches!(k, DecodeErrorKind::MissingField { field: "lang", packet: "Compile" })
            },
            message: "missing required field \"lang\" in Compile packet",
            id: Some(7),
            tid: None,
        },
        Case {
            input: br#"{"type":"TRemove"}"#,
            check: |k| {
                matches!(k, DecodeErrorKind::MissingField { field: "id", packet: "TRemove" })
            },
            message: "missing required field \"id\" in TRemove packet",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"type":"Test","id":1,"tid":2,"input":"","filename":"input","timelimit":1,"memorylimit":1.5,"stacklimit":0}"#,
            check: |k| {
                matches!(k, DecodeErrorKind::WrongFieldType { field: "memorylimit", packet: "Test", expected: "an integer (i64)", .. })
            },
            message: "field \"memorylimit\" of Test packet must be an integer (i64) (found float 1.5)",
            id: Some(1),
            tid: Some(2),
        },
        Case {
            input: br#"{"type":"Test","id":1,"tid":2,"input":"","filename":"input","timelimit":"1","memorylimit":0,"stacklimit":0}"#,
            check: |k| {
                matches!(k, DecodeErrorKind::WrongFieldType { field: "timelimit", expected: "a number", .. })
            },
            message: "field \"timelimit\" of Test packet must be a number (found string \"1\")",
            id: Some(1),
            tid: Some(2),
        },
        Case {
            input: br#"{"type":"Compile","id":"7","code":"","lang":"c"}"#,
            check: |k| matches!(k, DecodeErrorKind::WrongFieldType { field: "id", .. }),
            message: "field \"id\" of Compile packet must be an integer (i64) (found string \"7\")",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"type":"SRemove","id":18446744073709551615}"#,
            check: |k| matches!(k, DecodeErrorKind::WrongFieldType { field: "id", .. }),
            message: "field \"id\" of SRemove packet must be an integer (i64) (found integer 18446744073709551615 outside the i64 range)",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"type":"Auth","token":null}"#,
            check: |k| matches!(k, DecodeErrorKind::WrongFieldType { field: "token", .. }),
            message: "field \"token\" of Auth packet must be a string (found null)",
            id: None,
            tid: None,
        },
        Case {
            input: br#"{"type":"Assign","count":[1]}"#,
            check: |k| matches!(k, DecodeErrorKind::WrongFieldType { field: "count", .. }),
            message: "field \"count\" of Assign packet must be an integer (i64) (found array)",
            id: None,
            tid: None,
        },
    ]
}

#[test]
fn each_malformed_input_has_its_own_error() {
    for case in cases() {
        let err = decode::<JudgeRequest>(case.input).unwrap_err();
        let shown = String::from_utf8_lossy(case.input);
        assert!((case.check)(&err.kind), "{shown}: got {:?}", err.kind);
        assert_eq!(err.to_string(), case.message, "{shown}");
        assert_eq!((err.id, err.tid), (case.id, case.tid), "{shown}");
        assert!(!err.is_fatal());
        let packet = err.to_error_packet();
        assert_eq!(packet.value, case.message);
        assert_eq!((packet.id, packet.tid), (case.id, case.tid));
        // The reply itself is a well-formed one-line packet.
        let reply = JudgeReply::from(&err);
        let line = encode_line(&reply, DEFAULT_MAX_PACKET).unwrap();
        assert_eq!(
            decode::<JudgeReply>(&line[..line.len() - 1]).unwrap(),
            reply
        );
        // Sessions get the same text without ids.
        assert_eq!(
            SessionReply::from(&err),
            SessionReply::Error(ErrorPacket::new(case.message))
        );
    }
}

#[test]
fn judge_error_packet_has_exact_wire_form() {
    let err = decode::<JudgeRequest>(br#"{"type":"Compile","id":7,"code":"x"}"#).unwrap_err();
    let line = encode_line(&JudgeReply::from(&err), DEFAULT_MAX_PACKET).unwrap();
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"type\":\"Error\",\"value\":\"missing required field \\\"lang\\\" in Compile packet\",\"id\":7}\n"
    );
}

#[test]
fn session_errors_name_the_session_protocol() {
    let err = decode::<SessionRequest>(br#"{"type":"RESULT","stdout":""}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown packet type \"RESULT\" for the interactive session protocol (valid types: RUN, RUNANDKILL, KILL, PING, INTERRUPT)"
    );
    let err =
        decode::<SessionReply>(br#"{"type":"RESULT","stdout":"","stderr":"","status":"fine"}"#)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field \"status\" of RESULT packet must be one of \"ok\", \"error\", \"timeout\", \"interrupted\", \"crashed\", \"exited\" (found string \"fine\")"
    );
    let err = decode::<JudgeReply>(
        br#"{"type":"TResponse","tid":1,"output":"","time":0,"memory":0,"status":0,"comments":"","verdict":"WA"}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field \"verdict\" of TResponse packet must be one of \"OK\", \"RE\", \"TLE\", \"MLE\", \"OLE\", \"SE\" (found string \"WA\")"
    );
    assert_eq!(err.tid, Some(1));
    let err = decode::<JudgeReply>(
        br#"{"type":"CResponse","id":1,"output":"","success":"yes","other":""}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field \"success\" of CResponse packet must be a boolean (found string \"yes\")"
    );
}

#[test]
fn echoed_client_text_is_shortened() {
    let name = "X".repeat(10_000);
    let line = format!(r#"{{"type":"{name}"}}"#);
    let err = decode::<JudgeRequest>(line.as_bytes()).unwrap_err();
    assert!(err.to_string().len() < 300, "{err}");
    let line = format!(r#"{{"type":"Assign","count":"{}"}}"#, "7".repeat(10_000));
    let err = decode::<JudgeRequest>(line.as_bytes()).unwrap_err();
    assert!(err.to_string().len() < 300, "{err}");
    assert!(err.to_string().ends_with("...\")"), "{err}");
    let long_multibyte = "é".repeat(100);
    let line = format!(r#"{{"type":"{long_multibyte}"}}"#);
    let err = decode::<JudgeRequest>(line.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("\"{}...\"", "é".repeat(64))),
        "{err}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut line = "[".repeat(100_000);
    line.push_str(&"]".repeat(100_000));
    let err = decode::<JudgeRequest>(line.as_bytes()).unwrap_err();
    assert!(
        matches!(err.kind, DecodeErrorKind::InvalidJson { .. }),
        "{err}"
    );
    let line = format!(
        r#"{{"type":"PING","x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(decode::<SessionRequest>(line.as_bytes()).is_err());
}

/// Interleave every bad case with a good packet; both readers must report
/// each error and then decode the good packet that follows it.
#[test]
fn stream_recovers_after_every_non_fatal_error() {
    let good = JudgeRequest::QLen(QLen { length: 1 });
    let good_line = encode_line(&good, DEFAULT_MAX_PACKET).unwrap();
    let mut stream = Vec::new();
    for case in cases() {
        stream.extend_from_slice(case.input);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(&good_line);
    }
    let expected = cases().len() * 2;
    for chunk in [1, 5, 64, 1 << 16] {
        for (name, items) in [
            (
                "codec",
                codec_decode_all::<JudgeRequest>(&stream, chunk, 1 << 20),
            ),
            (
                "blocking",
                blocking_decode_all::<JudgeRequest>(&stream, chunk, 1 << 20),
            ),
        ] {
            assert_eq!(items.len(), expected, "{name} chunk {chunk}");
            for (i, (pair, case)) in items.chunks(2).zip(cases()).enumerate() {
                match &pair[0] {
                    Ok(Err(e)) => assert_eq!(e.to_string(), case.message, "{name} #{i}"),
                    other => panic!("{name} #{i}: expected decode error, got {other:?}"),
                }
                match &pair[1] {
                    Ok(Ok(p)) => assert_eq!(p, &good),
                    other => panic!("{name} #{i}: expected good packet, got {other:?}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn framed_read_keeps_going_after_bad_packets() {
    let input: &[u8] = b"{\"type\":\"PING\"\n{\"type\":\"FOO\"}\n{\"type\":\"PING\"}\n";
    let mut framed = FramedRead::new(input, SessionServerCodec::new());
    let first = framed.next().await.unwrap().unwrap();
    assert!(matches!(
        first,
        Err(DecodeError {
            kind: DecodeErrorKind::InvalidJson { .. },
            ..
        })
    ));
    let second = framed.next().await.unwrap().unwrap();
    assert!(matches!(
        second,
        Err(DecodeError {
            kind: DecodeErrorKind::UnknownType { .. },
            ..
        })
    ));
    assert_eq!(
        framed.next().await.unwrap().unwrap().unwrap(),
        SessionRequest::Ping
    );
    assert!(framed.next().await.is_none());
}

#[test]
fn too_large_is_fatal_and_decoder_buffer_stays_bounded() {
    const LIMIT: usize = 1000;
    for chunk in [1usize, 100, 999, 1000, 4096] {
        let mut codec = JudgeServerCodec::with_max_packet(LIMIT);
        let mut buf = BytesMut::new();
        let piece = vec![b'a'; chunk];
        let mut errors = Vec::new();
        let mut fed = 0;
        while fed < 20 * LIMIT {
            buf.extend_from_slice(&piece);
            fed += chunk;
            match codec.decode(&mut buf) {
                Ok(None) => {}
                Ok(Some(item)) => panic!("unexpected item {item:?}"),
                Err(e) => errors.push(e),
            }
            assert!(
                buf.len() <= LIMIT + chunk,
                "buffer {} > limit {LIMIT} + chunk {chunk}",
                buf.len()
            );
        }
        // One error for the whole oversized line; the rest is discarded.
        assert_eq!(errors.len(), 1, "chunk {chunk}");
        let StreamError::Decode(err) = &errors[0] else {
            panic!("{:?}", errors[0])
        };
        assert!(err.is_fatal());
        let DecodeErrorKind::TooLarge { size, limit } = err.kind else {
            panic!("{err:?}")
        };
        assert_eq!(limit, LIMIT);
        assert!(size > LIMIT && size <= LIMIT + chunk, "size {size}");
        assert!(err.to_string().starts_with("packet too large: at least "));
        assert!(err.to_string().ends_with(" bytes (limit 1000 bytes)"));
    }
}

#[test]
fn too_large_complete_line_reports_exact_size() {
    let mut line = br#"{"type":"Auth","token":""#.to_vec();
    line.extend(std::iter::repeat_n(b'x', 200));
    line.extend_from_slice(b"\"}\n");
    let items = codec_decode_all::<JudgeRequest>(&line, 1 << 16, 100);
    assert_eq!(
        items,
        vec![Err(
            "packet too large: at least 226 bytes (limit 100 bytes)".to_owned()
        )]
    );
    let items = blocking_decode_all::<JudgeRequest>(&line, 1 << 16, 100);
    assert_eq!(
        items,
        vec![Err(
            "packet too large: at least 226 bytes (limit 100 bytes)".to_owned()
        )]
    );
}

#[test]
fn packet_exactly_at_the_limit_is_accepted() {
    let p = SessionRequest::Run(Run {
        code: "x".repeat(50),
        timeout: None,
    });
    let line = encode_line(&p, DEFAULT_MAX_PACKET).unwrap();
    let limit = line.len() - 1;
    for chunk in [1, 3, 1000] {
        assert_eq!(
            all_ok(codec_decode_all::<SessionRequest>(&line, chunk, limit)),
            vec![p.clone()]
        );
        assert_eq!(
            all_ok(blocking_decode_all::<SessionRequest>(&line, chunk, limit)),
            vec![p.clone()]
        );
        let items = codec_decode_all::<SessionRequest>(&line, chunk, limit - 1);
        assert!(matches!(items.as_slice(), [Err(_)]), "{items:?}");
        let items = blocking_decode_all::<SessionRequest>(&line, chunk, limit - 1);
        assert!(matches!(items.as_slice(), [Err(_)]), "{items:?}");
    }
}

/// A `Read` that never ends and never sends a newline, counting what it gave.
struct Endless(Arc<AtomicUsize>);

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        buf.fill(b'a');
        self.0.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(buf.len())
    }
}

impl AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining();
        buf.put_slice(&vec![b'a'; n]);
        self.0.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[test]
fn blocking_reader_stops_endless_line_with_bounded_memory() {
    const LIMIT: usize = 100_000;
    const CHUNK: usize = 4096;
    let count = Arc::new(AtomicUsize::new(0));
    let inner = BufReader::with_capacity(CHUNK, Endless(count.clone()));
    let mut reader = PacketReader::<_, JudgeRequest>::with_max_packet(inner, LIMIT);
    let err = reader.read_packet().unwrap_err();
    assert!(
        matches!(
            &err,
            StreamError::Decode(DecodeError {
                kind: DecodeErrorKind::TooLarge { limit: LIMIT, .. },
                ..
            })
        ),
        "{err:?}"
    );
    assert!(reader.buffered() <= LIMIT + CHUNK);
    // Everything pulled from the source: the reader's buffer plus one
    // BufReader chunk at most.
    assert!(count.load(Ordering::Relaxed) <= LIMIT + 2 * CHUNK);
    assert!(reader.get_ref().buffer().len() <= CHUNK);
}

#[test]
fn blocking_iterator_ends_after_a_fatal_error() {
    let inner = BufReader::with_capacity(16, Endless(Arc::new(AtomicUsize::new(0))));
    let reader = PacketReader::<_, JudgeRequest>::with_max_packet(inner, 100);
    let items: Vec<_> = reader.take(5).collect();
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(StreamError::Decode(_))));
}

#[tokio::test]
async fn framed_read_stops_endless_line_with_bounded_memory() {
    const LIMIT: usize = 64 * 1024;
    let count = Arc::new(AtomicUsize::new(0));
    let mut framed = FramedRead::new(
        Endless(count.clone()),
        JudgeServerCodec::with_max_packet(LIMIT),
    );
    let first = framed.next().await.unwrap();
    assert!(
        matches!(
            first,
            Err(StreamError::Decode(DecodeError {
                kind: DecodeErrorKind::TooLarge { .. },
                ..
            }))
        ),
        "{first:?}"
    );
    assert!(framed.next().await.is_none());
    // FramedRead reads into its buffer's spare capacity, which it grows by
    // doubling; the decoder stops it as soon as the limit is crossed.
    assert!(count.load(Ordering::Relaxed) <= 2 * LIMIT + 8192);
}

#[test]
fn io_errors_are_reported_as_io() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "boom"))
        }
    }
    let mut reader = PacketReader::<_, JudgeRequest>::new(BufReader::new(Broken));
    assert!(matches!(reader.read_packet(), Err(StreamError::Io(_))));
}

#[test]
fn empty_and_blank_input_is_a_clean_end() {
    for input in [&b""[..], b"\n", b"\r\n\r\n", b"   ", b" \t\r"] {
        assert!(codec_decode_all::<JudgeRequest>(input, 2, 100).is_empty());
        assert!(blocking_decode_all::<JudgeRequest>(input, 2, 100).is_empty());
    }
}
