//! Shared helpers and proptest strategies for the integration tests.
#![allow(dead_code)]

use std::io::Cursor;

use bytes::BytesMut;
use evaler_proto::*;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

/// Strings biased towards what breaks line framing and JSON escaping.
pub fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => prop::char::range('a', 'z'),
        1 => Just('\n'),
        1 => Just('\r'),
        1 => Just('"'),
        1 => Just('\\'),
        1 => Just('\u{0}'),
        1 => Just('\u{1b}'),
        1 => Just('\u{7f}'),
        1 => Just('\u{2028}'),
        1 => Just('\u{fffd}'),
        1 => Just('😀'),
        1 => Just('\u{10ffff}'),
    ];
    prop::collection::vec(ch, 0..24).prop_map(String::from_iter)
}

/// Finite floats (JSON has no NaN/inf), including awkward ones.
pub fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        -1e6..1e6f64,
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ]
}

pub fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(i64::MIN),
        Just(i64::MAX),
        -1000..1000i64,
        any::<i64>()
    ]
}

pub fn status() -> impl Strategy<Value = RunStatus> {
    prop::sample::select(RunStatus::ALL.to_vec())
}

pub fn verdict() -> impl Strategy<Value = Verdict> {
    prop::sample::select(Verdict::ALL.to_vec())
}

pub fn run() -> impl Strategy<Value = Run> {
    (text(), prop::option::of(float())).prop_map(|(code, timeout)| Run { code, timeout })
}

pub fn session_request() -> impl Strategy<Value = SessionRequest> {
    prop_oneof![
        run().prop_map(SessionRequest::Run),
        run().prop_map(SessionRequest::RunAndKill),
        Just(SessionRequest::Kill),
        Just(SessionRequest::Ping),
        Just(SessionRequest::Interrupt),
    ]
}

pub fn error_packet() -> impl Strategy<Value = ErrorPacket> {
    (text(), prop::option::of(int()), prop::option::of(int()))
        .prop_map(|(value, id, tid)| ErrorPacket { value, id, tid })
}

pub fn run_result() -> impl Strategy<Value = RunResult> {
    (
        text(),
        text(),
        prop::option::of(status()),
        prop::option::of(text()),
        prop::option::of(float()),
        prop::option::of(int()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(stdout, stderr, status, value, time, exit_code, truncated)| RunResult {
                stdout,
                stderr,
                status,
                value,
                time,
                exit_code,
                truncated,
            },
        )
}

pub fn session_reply() -> impl Strategy<Value = SessionReply> {
    prop_oneof![
        run_result().prop_map(SessionReply::Result),
        Just(SessionReply::ConnectionOk),
        prop::option::of(text())
            .prop_map(|value| SessionReply::ConnectionError(ConnectionError { value })),
        error_packet().prop_map(SessionReply::Error),
    ]
}

pub fn test_packet() -> impl Strategy<Value = Test> {
    (
        (int(), int(), text(), text()),
        (float(), int(), int(), prop::option::of(float())),
    )
        .prop_map(
            |((id, tid, input, filename), (timelimit, memorylimit, stacklimit, walltimelimit))| {
                Test {
                    id,
                    tid,
                    input,
                    filename,
                    timelimit,
                    memorylimit,
                    stacklimit,
                    walltimelimit,
                }
            },
        )
}

pub fn judge_request() -> impl Strategy<Value = JudgeRequest> {
    prop_oneof![
        (int(), text(), text()).prop_map(|(id, code, lang)| JudgeRequest::Compile(Compile {
            id,
            code,
            lang
        })),
        test_packet().prop_map(JudgeRequest::Test),
        int().prop_map(|id| JudgeRequest::SRemove(SRemove { id })),
        int().prop_map(|count| JudgeRequest::Assign(Assign { count })),
        int().prop_map(|length| JudgeRequest::QLen(QLen { length })),
        text().prop_map(|token| JudgeRequest::Auth(Auth { token })),
    ]
}

pub fn tresponse() -> impl Strategy<Value = TResponse> {
    (
        (int(), text(), float(), int(), int(), text()),
        (
            prop::option::of(verdict()),
            prop::option::of(float()),
            prop::option::of(int()),
        ),
    )
        .prop_map(
            |((tid, output, time, memory, status, comments), (verdict, walltime, id))| TResponse {
                tid,
                output,
                time,
                memory,
                status,
                comments,
                verdict,
                walltime,
                id,
            },
        )
}

pub fn judge_reply() -> impl Strategy<Value = JudgeReply> {
    prop_oneof![
        (
            int(),
            text(),
            any::<bool>(),
            text(),
            prop::option::of(float())
        )
            .prop_map(|(id, output, success, other, time)| JudgeReply::CResponse(
                CResponse {
                    id,
                    output,
                    success,
                    other,
                    time,
                }
            )),
        tresponse().prop_map(JudgeReply::TResponse),
        error_packet().prop_map(JudgeReply::Error),
    ]
}

/// Everything the codec yields for `input`, fed in `chunk`-byte pieces, then
/// EOF. Stops at (and includes) the first fatal error.
pub fn codec_decode_all<P: Packet>(
    input: &[u8],
    chunk: usize,
    limit: usize,
) -> Vec<Result<Result<P, DecodeError>, String>> {
    let mut codec = PacketCodec::<P, P>::with_max_packet(limit);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => out.push(Ok(item)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => out.push(Ok(item)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e.to_string()));
                return out;
            }
        }
    }
}

/// Same contract as [`codec_decode_all`], with the blocking reader over a
/// `BufReader` of capacity `chunk`.
pub fn blocking_decode_all<P: Packet>(
    input: &[u8],
    chunk: usize,
    limit: usize,
) -> Vec<Result<Result<P, DecodeError>, String>> {
    let inner = std::io::BufReader::with_capacity(chunk.max(1), Cursor::new(input.to_vec()));
    let reader = PacketReader::<_, P>::with_max_packet(inner, limit);
    reader.map(|item| item.map_err(|e| e.to_string())).collect()
}

/// Encodes with the codec (as a server would) into one byte string.
pub fn codec_encode_all<P: Packet + Clone>(packets: &[P]) -> Vec<u8> {
    let mut codec = PacketCodec::<P, P>::new();
    let mut buf = BytesMut::new();
    for p in packets {
        codec
            .encode(p.clone(), &mut buf)
            .expect("test packets are encodable");
    }
    buf.to_vec()
}

/// Encodes with the blocking writer.
pub fn blocking_encode_all<P: Packet>(packets: &[P]) -> Vec<u8> {
    let mut writer = PacketWriter::<_, P>::new(Vec::new());
    for p in packets {
        writer.write_packet(p).expect("test packets are encodable");
    }
    writer.into_inner()
}

/// Unwraps a stream of decode results that must all be good packets.
pub fn all_ok<P: std::fmt::Debug>(items: Vec<Result<Result<P, DecodeError>, String>>) -> Vec<P> {
    items
        .into_iter()
        .map(|item| match item {
            Ok(Ok(p)) => p,
            other => panic!("expected a packet, got {other:?}"),
        })
        .collect()
}
