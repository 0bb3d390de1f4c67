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
//! - Errors: [`DecodeError`] for one bad packet (the stream stays usable),
//!   [`StreamError`] for what ends a connection, [`ValidationError`] for
//!   semantically bad limits.

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
    JudgeClientCodec, JudgeServerCodec, PacketCodec, SessionClientCodec, SessionServerCodec,
};
pub use decode::{decode, decode_value};
pub use encode::encode_line;
pub use error::{DecodeError, DecodeErrorKind, EncodeError, StreamError, ValidationError};
pub use interactive::{ConnectionError, Run, RunResult, RunStatus, SessionReply, SessionRequest};
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
    String::from_utf8_lossy(bytes).into_owned()
}
