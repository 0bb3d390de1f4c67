//! Wire protocols of evaler: interactive interpreter sessions and the judge.
//!
//! Every server and client of evaler speaks through this crate so that
//! framing, limits and error messages are identical everywhere. The contract
//! with third-party clients is `docs/PROTOCOL.md`; this crate is its
//! reference implementation, and a test decodes every example in that file.
//!
//! - Packets: [`SessionRequest`]/[`SessionReply`] (interactive) and
//!   [`JudgeRequest`]/[`JudgeReply`] (judge), one struct per packet body with
//!   public fields. All four enums implement [`Packet`], `Serialize` and
//!   `Deserialize` (deserialization goes through the same typed decoder as
//!   the wire).
//! - Transport: [`PacketCodec`] for tokio (`Framed`), [`PacketReader`] /
//!   [`PacketWriter`] for blocking I/O; both share one line splitter.
//! - Relays: [`LineCodec`] yields lines undecoded, [`SessionReplyRef`]
//!   decodes one without copying its output and tells whether the line can
//!   be passed on as it is; [`shrink_buffer`] gives an idle connection's
//!   buffer memory back after a big packet.
//! - Errors: [`DecodeError`] for one bad packet (the stream stays usable),
//!   [`StreamError`] for what ends a connection, [`ValidationError`] for
//!   semantically bad limits.
//!
//! A blocking judge server loop, in full:
//!
//! ```
//! use std::io::BufReader;
//! use evaler_proto::*;
//!
//! let input = b"{\"type\":\"QLen\",\"length\":-1}\nnot json\n{\"type\":\"TRemove\",\"id\":3}\n";
//! let mut reader = PacketReader::<_, JudgeRequest>::new(BufReader::new(&input[..]));
//! let mut writer = PacketWriter::<_, JudgeReply>::new(Vec::new());
//! while let Some(item) = reader.read_packet()? {
//!     match item {
//!         Ok(JudgeRequest::QLen(q)) => {
//!             if let Err(e) = q.validate() {
//!                 writer.write_packet(&JudgeReply::Error(ErrorPacket::new(e.to_string())))?;
//!             }
//!         }
//!         Ok(JudgeRequest::SRemove(r)) => assert_eq!(r.id, 3),
//!         Ok(_) => {}
//!         // A bad packet: answer it and keep reading.
//!         Err(e) => writer.write_packet(&JudgeReply::from(&e))?,
//!     }
//! }
//! let sent = String::from_utf8(writer.into_inner()).unwrap();
//! assert_eq!(sent.lines().count(), 2);
//! assert!(sent.contains("\"value\":\"invalid JSON: expected ident at line 1 column 2\""));
//! # Ok::<(), StreamError>(())
//! ```
//!
//! With tokio, `Framed::new(socket, JudgeServerCodec::new())` yields
//! `Result<Result<JudgeRequest, DecodeError>, StreamError>` items: the outer
//! error ends the connection, the inner one is answered with
//! `JudgeReply::from(&err)`.

mod blocking;
mod codec;
mod decode;
mod encode;
mod error;
mod frame;
mod interactive;
mod judge;
mod packet;
mod verdict;

pub use blocking::{PacketReader, PacketWriter};
pub use codec::{
    shrink_buffer, JudgeClientCodec, JudgeServerCodec, LineCodec, PacketCodec, SessionClientCodec,
    SessionServerCodec,
};
pub use decode::{decode, decode_value};
pub use encode::encode_line;
pub use error::{DecodeError, DecodeErrorKind, EncodeError, StreamError, ValidationError};
pub use interactive::{
    ConnectionError, Run, RunResult, RunResultRef, RunStatus, SessionReply, SessionReplyRef,
    SessionRequest,
};
pub use judge::{
    Assign, Auth, CResponse, Compile, JudgeReply, JudgeRequest, QLen, SRemove, TResponse, Test,
    STDIN_FILENAME,
};
pub use packet::{ErrorPacket, Packet, Protocol};
pub use verdict::Verdict;

/// Default per-packet size limit, in bytes, not counting the `\n`.
///
/// Large enough for any realistic source file or test input; small enough
/// that one connection cannot make a server buffer gigabytes.
pub const DEFAULT_MAX_PACKET: usize = 64 * 1024 * 1024;

/// Converts program output to a string that can always be sent.
///
/// Output is arbitrary bytes but packets are UTF-8 JSON, so every invalid
/// UTF-8 sequence becomes U+FFFD (the standard "maximal subpart" lossy rule).
/// Valid UTF-8 passes through unchanged; control characters are kept and
/// escaped by the JSON encoder, so framing is never affected.
pub fn output_to_string(bytes: &[u8]) -> String {
    // `from_utf8` checks a word at a time; the lossy conversion walks byte by
    // byte, so it is kept for output that needs it.
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// [`output_to_string`] without a copy when the output is valid UTF-8 (a
/// megabyte of output is then checked and kept where it is).
pub fn output_into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned())
}
