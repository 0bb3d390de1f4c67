//! Where the time of a big packet goes, pass by pass: framing, decoding,
//! encoding, and the codec as a whole, for a 1 MiB `RESULT` (the
//! interactive-session benchmark's "cell printing 1 MiB") and a small one.
//!
//! `cargo bench -p evaler-proto --bench passes`. Not a test: prints the
//! median of many runs of each pass.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use evaler_proto::*;
use tokio_util::codec::{Decoder, Encoder};

/// The fastest and the median of many runs (the fastest is the cost without
/// interference from whatever else the machine runs).
fn median(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 20 || (started.elapsed() < Duration::from_millis(500) && times.len() < 2000)
    {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    (times[0], times[times.len() / 2])
}

fn report(name: &str, (min, median): (Duration, Duration)) {
    println!(
        "{name:<48} min {:>8.1} µs  median {:>8.1} µs",
        min.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6
    );
}

fn result(stdout: String) -> SessionReply {
    SessionReply::Result(RunResult {
        stdout,
        stderr: String::new(),
        status: Some(RunStatus::Ok),
        value: None,
        time: Some(0.0025),
        exit_code: None,
        truncated: None,
    })
}

fn passes(label: &str, reply: &SessionReply) {
    let line = encode_line(reply, DEFAULT_MAX_PACKET).unwrap();
    println!("## {label} ({} bytes)", line.len());
    let body = &line[..line.len() - 1];
    report(
        "utf-8 check",
        median(|| {
            black_box(std::str::from_utf8(black_box(body)).is_ok());
        }),
    );
    report(
        "decode::<SessionReply>",
        median(|| {
            black_box(decode::<SessionReply>(black_box(body)).unwrap());
        }),
    );
    report(
        "SessionReplyRef::decode_verbatim (relay)",
        median(|| {
            let (r, verbatim) = SessionReplyRef::decode_verbatim(black_box(body)).unwrap();
            assert!(verbatim);
            black_box(r);
        }),
    );
    report(
        "encode_line",
        median(|| {
            black_box(encode_line(black_box(reply), DEFAULT_MAX_PACKET).unwrap());
        }),
    );
    // One codec and one buffer for all runs, as on a connection: what a
    // relay or client pays per packet once its buffers have grown.
    let mut codec = SessionClientCodec::new();
    let mut buf = BytesMut::new();
    report(
        "codec decode (64 KiB reads, one connection)",
        median(|| {
            let mut got = None;
            for chunk in line.chunks(64 * 1024) {
                buf.extend_from_slice(chunk);
                if let Some(p) = codec.decode(&mut buf).unwrap() {
                    got = Some(p);
                }
            }
            black_box(got.unwrap().unwrap());
        }),
    );
    report(
        "codec encode",
        median(|| {
            let mut codec = SessionServerCodec::new();
            let mut buf = BytesMut::new();
            codec.encode(black_box(reply), &mut buf).unwrap();
            black_box(buf);
        }),
    );
    let mut reader_input = line.clone();
    reader_input.extend_from_slice(&line);
    report(
        "PacketReader (2 packets, 64 KiB BufReader)",
        median(|| {
            let r = std::io::BufReader::with_capacity(64 * 1024, &reader_input[..]);
            let mut reader = PacketReader::<_, SessionReply>::new(r);
            black_box(reader.read_packet().unwrap().unwrap().unwrap());
            black_box(reader.read_packet().unwrap().unwrap().unwrap());
        }),
    );
}

fn main() {
    passes("1 MiB RESULT", &result("x".repeat(1 << 20)));
    passes(
        "1 MiB RESULT, text with newlines",
        &result("hello world\n".repeat((1 << 20) / 12)),
    );
    passes("`1+1` RESULT", &result("2\n".into()));
}
