//! The fast paths against the straightforward ones they replace: the
//! encoder against serde_json's output of the same packet, the decoder
//! against decoding through a `serde_json::Value`, and the borrowed
//! `SessionReplyRef` against `decode::<SessionReply>`.

mod common;

use common::*;
use evaler_proto::*;
use proptest::prelude::*;
use serde_json::Value;

/// The reference decoder: UTF-8 check, `serde_json::Value`, then the typed
/// step (what `decode` did before it parsed into fields directly).
fn reference<P: Packet>(line: &[u8]) -> Result<P, DecodeError> {
    let ids = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => (
            map.get("id").and_then(Value::as_i64),
            map.get("tid").and_then(Value::as_i64),
        ),
        _ => (None, None),
    };
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            let (id, tid) = ids(&String::from_utf8_lossy(line));
            return Err(DecodeError {
                kind: DecodeErrorKind::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
                id,
                tid,
            });
        }
    };
    match serde_json::from_str::<Value>(text) {
        Ok(value) => decode_value(value),
        Err(e) => {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            Err(DecodeError {
                kind: DecodeErrorKind::InvalidJson {
                    message: full.strip_suffix(&suffix).unwrap_or(&full).to_owned(),
                    line: e.line(),
                    column: e.column(),
                },
                id: None,
                tid: None,
            })
        }
    }
}

fn agree(line: &[u8]) {
    assert_eq!(
        decode::<SessionRequest>(line),
        reference::<SessionRequest>(line)
    );
    let reply = decode::<SessionReply>(line);
    assert_eq!(reply, reference::<SessionReply>(line));
    assert_eq!(
        SessionReplyRef::decode(line).map(SessionReplyRef::into_owned),
        reply
    );
    if let Ok((borrowed, verbatim)) = SessionReplyRef::decode_verbatim(line) {
        assert_eq!(verbatim, borrowed.is_encoded_as(line));
        let canonical = encode_line(&borrowed.clone().into_owned(), usize::MAX).unwrap();
        assert_eq!(verbatim, canonical[..canonical.len() - 1] == *line);
    }
    assert_eq!(
        decode::<JudgeRequest>(line),
        reference::<JudgeRequest>(line)
    );
    assert_eq!(decode::<JudgeReply>(line), reference::<JudgeReply>(line));
}

fn serde_line<P: serde::Serialize>(p: &P) -> Vec<u8> {
    let mut v = serde_json::to_vec(p).unwrap();
    v.push(b'\n');
    v
}

#[test]
fn edge_cases_decode_as_through_a_value() {
    for line in [
        &br#"{"type":"PING","x":1e400}"#[..],
        br#"{"type":"RESULT","stdout":"\ud800","stderr":""}"#,
        br#"{"type":"RESULT","stdout":"\ud83d\ude00","stderr":"\u0041\/"}"#,
        br#"{"type":"RESULT","stdout":"a","stdout":5,"stderr":""}"#,
        br#"{"type":"RESULT","stdout":5,"stdout":"a","stderr":""}"#,
        br#"{"type":"Test","id":1,"id":"x","tid":2.0}"#,
        br#"{"type":"RESULT","stdout":"","stderr":"","x":[1,{"a":[-0,1e5,"\n"]}]}"#,
        br#"{"type":"RESULT","stdout":"","stderr":"","time":-0,"exit_code":-0}"#,
        br#"{"type":"RESULT","stdout":"","stderr":"","exit_code":18446744073709551616}"#,
        br#"{"type":"RESULT" , "stdout" : "" ,"stderr":""}  "#,
        br#"{"type":"RESULT","stdout":"","stderr":"",}"#,
        br#"{"type":"RESULT","stdout":"","stderr":""}x"#,
        br#"{"type":"PING",1:2}"#,
        br#"{"type":"PING","a":[1,]}"#,
        br#"{"ty\u0070e":"PING"}"#,
        b"{\"type\":\"PING\",\"a\":\"\x01\"}",
        b"{\"type\":\"RESULT\",\"stdout\":\"\xff\",\"id\":3,\"tid\":-4}",
        b"\t{\"type\":\r\n\"PING\"}\r",
        b"[]",
        b"\"PING\"",
        b"null",
        b"-0",
        b"",
    ] {
        agree(line);
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    agree(deep.as_bytes());
    let deep_in = format!(
        r#"{{"type":"PING","x":{}{}}}"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    agree(deep_in.as_bytes());
    let too_deep_in = format!(
        r#"{{"type":"PING","x":{}{}}}"#,
        "[".repeat(128),
        "]".repeat(128)
    );
    agree(too_deep_in.as_bytes());
}

#[test]
fn borrowed_result_only_matches_its_exact_encoding() {
    let r = SessionReply::Result(RunResult {
        stdout: "out\n\"x\"".into(),
        stderr: "err é \u{1}".into(),
        status: Some(RunStatus::Ok),
        value: Some("2".into()),
        time: Some(1e-7),
        exit_code: None,
        truncated: Some(false),
    });
    let line = encode_line(&r, DEFAULT_MAX_PACKET).unwrap();
    let line = &line[..line.len() - 1];
    let rr = SessionReplyRef::decode(line).unwrap();
    assert!(rr.is_encoded_as(line));
    assert_eq!(
        SessionReplyRef::decode_verbatim(line).unwrap(),
        (rr.clone(), true)
    );
    assert_eq!(rr.clone().into_owned(), r);
    let text = std::str::from_utf8(line).unwrap();
    let same_but = |s: String| {
        assert_ne!(s, text);
        let decoded = SessionReplyRef::decode(s.as_bytes()).unwrap();
        assert_eq!(decoded.clone().into_owned(), r, "{s}");
        assert!(!decoded.is_encoded_as(s.as_bytes()), "{s}");
        assert!(
            !SessionReplyRef::decode_verbatim(s.as_bytes()).unwrap().1,
            "{s}"
        );
    };
    same_but(format!("{text} "));
    same_but(text.replace(",\"stderr\"", " ,\"stderr\""));
    same_but(text.replace("\"time\":1e-7", "\"time\":1e-07"));
    same_but(text.replace("\\u0001", "\\u0001\",\"stderr\":\"err é \\u0001"));
    same_but(text.replace("é", "\\u00e9"));
    same_but(text.replace("\\\"x", "\\u0022x"));
    same_but(text.replace("}", ",\"extra\":1}"));
    same_but(
        text.replace("{\"type\":\"RESULT\",", "{")
            .replace("}", ",\"type\":\"RESULT\"}"),
    );
    assert!(!rr.is_encoded_as(&line[..line.len() - 1]));
    assert!(!rr.is_encoded_as(b""));

    let plain = br#"{"type":"RESULT","stdout":"no escapes here","stderr":""}"#;
    let SessionReplyRef::Result(res) = SessionReplyRef::decode(plain).unwrap() else {
        panic!("not a RESULT")
    };
    assert!(matches!(res.stdout, std::borrow::Cow::Borrowed(_)));
    assert!(SessionReplyRef::decode_verbatim(plain).unwrap().1);

    // A string made to point into the line where it would be written is
    // still compared in full by `is_encoded_as`.
    let line = r#"{"type":"RESULT","stdout":"a","stderr":"b","stderr":""}"#;
    let forged = SessionReplyRef::Result(RunResultRef {
        stdout: std::borrow::Cow::Borrowed(&line[27..41]),
        ..Default::default()
    });
    assert_eq!(&line[27..41], r#"a","stderr":"b"#);
    assert!(!forged.is_encoded_as(line.as_bytes()));
}

/// A JSON string for `s`, each character written raw or escaped in one of
/// the ways JSON allows (picked by `how`).
fn json_string(s: &str, how: &[u8]) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        let pick = how.get(i % how.len().max(1)).copied().unwrap_or(0) % 4;
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '/' if pick == 1 => Some("\\/"),
            _ => None,
        };
        let must = (c as u32) < 0x20 || c == '"' || c == '\\';
        if pick == 0 && !must {
            out.push(c);
        } else if let (Some(e), true) = (short, pick != 3) {
            out.push_str(e);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                if pick == 2 {
                    out.push_str(&format!("\\u{:04X}", u));
                } else {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Text with every character that has its own escape, and a few others.
fn escapable() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => prop::char::range('a', 'z'),
        3 => prop::sample::select(vec!['"', '\\', '/', '\u{8}', '\u{c}', '\n', '\r', '\t', '\0', '\u{1f}']),
        1 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..24).prop_map(String::from_iter)
}

/// Objects such as packets, written in the many ways JSON allows (and a few
/// it does not): whitespace, escapes, every kind of number, nesting,
/// repeated keys.
fn json_object() -> impl Strategy<Value = String> {
    let ws = prop::sample::select(vec!["", "", "", " ", "\t", "\n", "\r", " \r\n "]);
    let key = prop::sample::select(vec![
        "type",
        "stdout",
        "stderr",
        "status",
        "value",
        "time",
        "exit_code",
        "truncated",
        "id",
        "tid",
        "code",
        "timeout",
        "x",
        "",
    ]);
    let number = prop::sample::select(vec![
        "0",
        "-0",
        "1",
        "-1",
        "42",
        "1.5",
        "1e5",
        "1E+5",
        "-2.5e-3",
        "0.1e1",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "1e400",
        "01",
        "1.",
        "-",
        "2e",
        "+1",
        "1.5.2",
        "0x10",
    ]);
    let other = prop::sample::select(vec![
        "true",
        "false",
        "null",
        "[]",
        "{}",
        "[1,{\"a\":\"b\"}]",
        "tru",
        "nul",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\"",
        "\"\\u12\"",
        "\"a\u{1}b\"",
        "\"\\x\"",
    ]);
    let value = prop_oneof![
        4 => (escapable(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(t, how)| json_string(&t, &how)),
        2 => number.prop_map(str::to_owned),
        1 => other.prop_map(str::to_owned),
        1 => prop::sample::select(vec!["RESULT", "RUN", "PING", "Test", "Error", "CONNECTION-ERROR"])
            .prop_map(|t| format!("\"{t}\"")),
    ];
    let field = (
        key,
        prop::collection::vec(any::<u8>(), 1..4),
        value,
        ws.clone(),
        ws.clone(),
        ws.clone(),
    )
        .prop_map(|(k, how, v, a, b, c)| format!("{a}{}{b}:{c}{v}", json_string(k, &how)));
    (
        prop::collection::vec((field, ws.clone()), 0..8),
        ws.clone(),
        ws,
        any::<u8>(),
    )
        .prop_map(|(fields, a, b, tail)| {
            let body: Vec<String> = fields.into_iter().map(|(f, w)| format!("{f}{w}")).collect();
            let mut s = format!("{a}{{{}}}{b}", body.join(","));
            match tail % 16 {
                0 => s.push(','),
                1 => s.push('}'),
                2 => s = s.replacen('}', ",}", 1),
                _ => {}
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn objects_written_any_way_decode_as_through_a_value(line in json_object()) {
        agree(line.as_bytes());
    }

    /// A relay may pass a RESULT on as it came only if it is evaler's own
    /// encoding: the same packet with any string escaped another way is not.
    #[test]
    fn results_escaped_another_way_are_not_verbatim(
        r in run_result().boxed(),
        edits in prop::collection::vec((0usize..6, any::<prop::sample::Index>()), 0..3),
    ) {
        let packet = SessionReply::Result(r);
        let canonical = encode_line(&packet, DEFAULT_MAX_PACKET).unwrap();
        let canonical = std::str::from_utf8(&canonical[..canonical.len() - 1]).unwrap().to_owned();
        let mut line = canonical.clone();
        for (kind, at) in edits {
            let (from, to) = [
                ("/", "\\/"),
                ("\\n", "\\u000a"),
                ("\\u001b", "\\u001B"),
                ("\\t", "\\u0009"),
                ("\\\\", "\\u005c"),
                ("\\r", "\\u000d"),
            ][kind];
            // Only inside the values of stdout and stderr.
            let body_start = line.find("\"stdout\":\"").unwrap() + 10;
            let hits: Vec<usize> = line.match_indices(from).map(|(i, _)| i).filter(|&i| i >= body_start).collect();
            if hits.is_empty() {
                continue;
            }
            let i = hits[at.index(hits.len())];
            // Not in a key, not inside another escape.
            let before = &line[body_start..i];
            if before.ends_with('\\') && !before.ends_with("\\\\") {
                continue;
            }
            line.replace_range(i..i + from.len(), to);
        }
        let decoded = decode::<SessionReply>(line.as_bytes());
        if decoded.as_ref() != Ok(&packet) {
            // The edit broke something (a key, an escape): nothing to check.
            return Ok(());
        }
        let (borrowed, verbatim) = SessionReplyRef::decode_verbatim(line.as_bytes()).unwrap();
        prop_assert_eq!(borrowed.into_owned(), packet);
        prop_assert_eq!(verbatim, line == canonical, "{}", line);
    }

    #[test]
    fn encoding_is_serde_json_compact_output(
        sreq in session_request().boxed(),
        srep in session_reply().boxed(),
        jreq in judge_request().boxed(),
        jrep in judge_reply().boxed(),
    ) {
        prop_assert_eq!(encode_line(&sreq, DEFAULT_MAX_PACKET).unwrap(), serde_line(&sreq));
        prop_assert_eq!(encode_line(&srep, DEFAULT_MAX_PACKET).unwrap(), serde_line(&srep));
        prop_assert_eq!(encode_line(&jreq, DEFAULT_MAX_PACKET).unwrap(), serde_line(&jreq));
        prop_assert_eq!(encode_line(&jrep, DEFAULT_MAX_PACKET).unwrap(), serde_line(&jrep));
        let line = encode_line(&srep, DEFAULT_MAX_PACKET).unwrap();
        let body = &line[..line.len() - 1];
        let borrowed = SessionReplyRef::decode(body).unwrap();
        prop_assert!(borrowed.is_encoded_as(body));
        prop_assert_eq!(borrowed.into_owned(), srep);
    }

    #[test]
    fn long_strings_are_escaped_like_serde_json(
        s in prop::collection::vec(
            prop_oneof![
                8 => prop::char::range('a', 'z'),
                1 => prop::char::range('\u{0}', '\u{7f}'),
                1 => any::<char>(),
            ],
            0..200,
        ).prop_map(String::from_iter),
    ) {
        let p = SessionRequest::Run(Run { code: s, timeout: None });
        prop_assert_eq!(encode_line(&p, DEFAULT_MAX_PACKET).unwrap(), serde_line(&p));
    }

    #[test]
    fn decoding_matches_decoding_through_a_value(
        input in prop::collection::vec(
            prop::sample::select(b"{}[]\":,0123456789.-eE \t\r\\/utrfalsnTypeidRUNSLTcodx\xc3\xa9\xff".to_vec()),
            0..120,
        ),
    ) {
        agree(&input);
    }

    #[test]
    fn decoding_mangled_packets_matches_decoding_through_a_value(
        p in prop_oneof![
            session_request().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()).boxed(),
            session_reply().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()).boxed(),
            judge_request().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()).boxed(),
            judge_reply().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()).boxed(),
        ],
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut line = p;
        line.pop();
        for (at, byte) in edits {
            if !line.is_empty() {
                let i = at.index(line.len());
                line[i] = byte;
            }
        }
        agree(&line);
    }
}

#[test]
fn line_codec_frames_like_the_packet_codec() {
    use tokio_util::codec::Decoder;
    let input: &[u8] = b"{\"type\":\"PING\"}\r\n\n  \r\nnot json\n{\"type\":\"KILL\"}";
    let mut lines = LineCodec::<SessionRequest>::with_max_packet(100);
    let mut buf = bytes::BytesMut::from(input);
    let mut got = Vec::new();
    while let Some(line) = lines.decode_eof(&mut buf).unwrap() {
        got.push(line.to_vec());
    }
    assert_eq!(
        got,
        vec![
            b"{\"type\":\"PING\"}".to_vec(),
            b"not json".to_vec(),
            b"{\"type\":\"KILL\"}".to_vec()
        ]
    );
    let mut small = LineCodec::<SessionRequest>::with_max_packet(4);
    let mut buf = bytes::BytesMut::from(&b"abcdef\nok\n"[..]);
    assert!(matches!(
        small.decode(&mut buf),
        Err(StreamError::Decode(DecodeError {
            kind: DecodeErrorKind::TooLarge { size: 6, limit: 4 },
            ..
        }))
    ));
    assert_eq!(small.decode(&mut buf).unwrap().unwrap().to_vec(), b"ok");
}

#[test]
fn shrink_buffer_frees_big_idle_buffers_only() {
    let mut buf = bytes::BytesMut::with_capacity(1 << 20);
    buf.extend_from_slice(b"partial");
    shrink_buffer(&mut buf, 64 * 1024);
    assert_eq!(&buf[..], b"partial");
    assert!(buf.capacity() <= 64 * 1024);

    // A big partial line stays where it is.
    let mut busy = bytes::BytesMut::with_capacity(1 << 20);
    busy.extend_from_slice(&[b'x'; 100_000]);
    shrink_buffer(&mut busy, 64 * 1024);
    assert!(busy.capacity() >= 100_000);
    assert_eq!(busy.len(), 100_000);

    let mut small = bytes::BytesMut::with_capacity(1024);
    small.extend_from_slice(b"abc");
    shrink_buffer(&mut small, 64 * 1024);
    assert_eq!(small.capacity(), 1024);
}
