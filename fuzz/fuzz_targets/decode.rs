//! Feeds arbitrary bytes to both decoders of evaler-proto (the tokio codec
//! and the blocking reader) for all four packet directions, and checks that
//! they agree. Any panic is a bug: decoders must only ever return errors.
//!
//! Run from the repository's `fuzz/` directory (needs nightly and
//! `cargo install cargo-fuzz`):
//!
//!     cargo +nightly fuzz run decode

#![no_main]

use std::io::{BufReader, Cursor};

use bytes::BytesMut;
use evaler_proto::{
    DecodeError, JudgeReply, JudgeRequest, Packet, PacketCodec, PacketReader, SessionReply,
    SessionRequest,
};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// A small limit as well as a large one, so the too-large path is exercised.
const LIMITS: [usize; 2] = [64, 1 << 20];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, so framing across chunk
    // boundaries is explored too.
    let (chunk, input) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first % 32) + 1, rest),
        None => (1, data),
    };
    for limit in LIMITS {
        check::<SessionRequest>(input, chunk, limit);
        check::<SessionReply>(input, chunk, limit);
        check::<JudgeRequest>(input, chunk, limit);
        check::<JudgeReply>(input, chunk, limit);
    }
});

fn check<P: Packet + std::fmt::Debug>(input: &[u8], chunk: usize, limit: usize) {
    let codec = with_codec::<P>(input, chunk, limit);
    let blocking = with_reader::<P>(input, chunk, limit);
    assert_eq!(codec, blocking, "codec and blocking reader disagree");
}

/// Outcome of one read, as comparable text.
fn show<P: std::fmt::Debug>(item: &Result<P, DecodeError>) -> String {
    match item {
        Ok(p) => format!("ok {p:?}"),
        Err(e) => format!("bad {e} {:?} {:?}", e.id, e.tid),
    }
}

fn with_codec<P: Packet + std::fmt::Debug>(
    input: &[u8],
    chunk: usize,
    limit: usize,
) -> Vec<String> {
    let mut codec = PacketCodec::<P, P>::with_max_packet(limit);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => out.push(show(&item)),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("fatal {e}"));
                    return out;
                }
            }
            assert!(buf.len() <= limit + chunk, "decoder buffer over limit");
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => out.push(show(&item)),
            Ok(None) => return out,
            Err(e) => {
                out.push(format!("fatal {e}"));
                return out;
            }
        }
    }
}

fn with_reader<P: Packet + std::fmt::Debug>(
    input: &[u8],
    chunk: usize,
    limit: usize,
) -> Vec<String> {
    let inner = BufReader::with_capacity(chunk, Cursor::new(input));
    let mut reader = PacketReader::<_, P>::with_max_packet(inner, limit);
    let mut out = Vec::new();
    loop {
        match reader.read_packet() {
            Ok(Some(item)) => out.push(show(&item)),
            Ok(None) => return out,
            Err(e) => {
                out.push(format!("fatal {e}"));
                return out;
            }
        }
    }
}
