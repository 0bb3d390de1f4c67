//! Property tests: no input panics a decoder, both readers agree, and every
//! packet survives the codec and the blocking reader/writer.

mod common;

use common::*;
use evaler_proto::*;
use proptest::prelude::*;

/// Renders decoder output comparably (errors as text).
fn summary<P: std::fmt::Debug>(items: &[Result<Result<P, DecodeError>, String>]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Ok(Ok(p)) => format!("ok {p:?}"),
            Ok(Err(e)) => format!("bad {e} {:?} {:?}", e.id, e.tid),
            Err(e) => format!("fatal {e}"),
        })
        .collect()
}

/// Feeds `input` to both readers for packet type `P`; they must agree and
/// must not panic.
fn both_agree<P: Packet + std::fmt::Debug>(input: &[u8], chunk: usize, limit: usize) {
    let codec = codec_decode_all::<P>(input, chunk, limit);
    let blocking = blocking_decode_all::<P>(input, chunk, limit);
    assert_eq!(summary(&codec), summary(&blocking));
}

fn all_decoders(input: &[u8], chunk: usize, limit: usize) {
    both_agree::<SessionRequest>(input, chunk, limit);
    both_agree::<SessionReply>(input, chunk, limit);
    both_agree::<JudgeRequest>(input, chunk, limit);
    both_agree::<JudgeReply>(input, chunk, limit);
}

/// Valid packet lines with some bytes overwritten, cut or duplicated: closer
/// to the interesting edge than uniformly random bytes.
fn mangled_stream() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        session_request().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()),
        session_reply().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()),
        judge_request().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()),
        judge_reply().prop_map(|p| encode_line(&p, DEFAULT_MAX_PACKET).unwrap()),
    ];
    (
        prop::collection::vec(line, 1..4),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(lines, edits, cut, do_cut)| {
            let mut bytes = lines.concat();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..256),
        chunk in 1usize..40,
        limit in 0usize..300,
    ) {
        all_decoders(&input, chunk, limit);
        all_decoders(&input, chunk, DEFAULT_MAX_PACKET);
    }

    #[test]
    fn json_like_bytes_never_panic(
        input in prop::collection::vec(
            prop::sample::select(b"{}[]\":,0123456789.-eE \n\r\\utrfalsnTypeidRUN".to_vec()),
            0..200,
        ),
        chunk in 1usize..40,
    ) {
        all_decoders(&input, chunk, 120);
    }

    #[test]
    fn mangled_packets_never_panic(input in mangled_stream(), chunk in 1usize..64) {
        all_decoders(&input, chunk, DEFAULT_MAX_PACKET);
        all_decoders(&input, chunk, 100);
    }
}

fn round_trip<P>(packets: Vec<P>, chunk: usize) -> Result<(), TestCaseError>
where
    P: Packet + Clone + PartialEq + std::fmt::Debug,
{
    let stream = codec_encode_all(&packets);
    prop_assert_eq!(&stream, &blocking_encode_all(&packets));
    prop_assert_eq!(
        stream.iter().filter(|&&b| b == b'\n').count(),
        packets.len(),
        "one line per packet"
    );
    prop_assert_eq!(
        &all_ok(codec_decode_all::<P>(&stream, chunk, DEFAULT_MAX_PACKET)),
        &packets
    );
    prop_assert_eq!(
        &all_ok(blocking_decode_all::<P>(&stream, chunk, DEFAULT_MAX_PACKET)),
        &packets
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn session_requests_round_trip(ps in prop::collection::vec(session_request(), 0..5), chunk in 1usize..300) {
        round_trip(ps, chunk)?;
    }

    #[test]
    fn session_replies_round_trip(ps in prop::collection::vec(session_reply(), 0..5), chunk in 1usize..300) {
        round_trip(ps, chunk)?;
    }

    #[test]
    fn judge_requests_round_trip(ps in prop::collection::vec(judge_request(), 0..5), chunk in 1usize..300) {
        round_trip(ps, chunk)?;
    }

    #[test]
    fn judge_replies_round_trip(ps in prop::collection::vec(judge_reply(), 0..5), chunk in 1usize..300) {
        round_trip(ps, chunk)?;
    }

    #[test]
    fn arbitrary_output_bytes_stay_one_line(
        stdout in prop::collection::vec(any::<u8>(), 0..200),
        stderr in prop::collection::vec(
            prop::sample::select(vec![b'\n', b'\r', 0, 0xff, 0xc3, 0xa9, 0xf0, 0x9f, b'"', b'\\', b'a']),
            0..100,
        ),
    ) {
        let reply = SessionReply::Result(RunResult {
            stdout: output_to_string(&stdout),
            stderr: output_to_string(&stderr),
            ..Default::default()
        });
        let line = encode_line(&reply, DEFAULT_MAX_PACKET).unwrap();
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert!(!line.contains(&b'\r'));
        prop_assert!(std::str::from_utf8(&line).is_ok());
        prop_assert_eq!(decode::<SessionReply>(&line[..line.len() - 1]).unwrap(), reply);
        // Valid UTF-8 passes through untouched.
        if let Ok(text) = std::str::from_utf8(&stdout) {
            prop_assert_eq!(output_to_string(&stdout), text);
        }

        let tr = JudgeReply::TResponse(TResponse {
            output: output_to_string(&stdout),
            comments: output_to_string(&stderr),
            ..Default::default()
        });
        let line = encode_line(&tr, DEFAULT_MAX_PACKET).unwrap();
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(decode::<JudgeReply>(&line[..line.len() - 1]).unwrap(), tr);
    }
}
