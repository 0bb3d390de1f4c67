//! Typed errors shared by every reader and writer of the protocols.
//!
//! Decoding errors are values, not strings, so that servers can decide what
//! to do (answer with an `Error` packet, or close the connection) without
//! parsing messages, and so that clients see messages that name the problem.

use std::fmt;
use std::io;

use crate::packet::Protocol;
use crate::ErrorPacket;

/// Longest piece of client-supplied text echoed back in an error message;
/// a 60 MiB bogus `type` must not come back as a 60 MiB `Error` packet.
const MAX_ECHO_CHARS: usize = 64;

/// Why one packet could not be decoded, plus the ids it referred to.
///
/// `id`/`tid` are read from the top-level JSON object whenever they are
/// integers, even if the rest of the packet is unusable, so that a judge
/// client can match the resulting `Error` packet to the submission or test
/// it was waiting for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What exactly was wrong.
    pub kind: DecodeErrorKind,
    /// The packet's `"id"`, when it could be read as an integer.
    pub id: Option<i64>,
    /// The packet's `"tid"`, when it could be read as an integer.
    pub tid: Option<i64>,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind) -> Self {
        DecodeError {
            kind,
            id: None,
            tid: None,
        }
    }

    /// Whether the stream is unusable after this error.
    ///
    /// Only [`DecodeErrorKind::TooLarge`] is fatal: the rest of the oversized
    /// line cannot be trusted to be a packet boundary, so the peer is told
    /// and the connection closed.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::TooLarge { .. })
    }

    /// The judge-protocol `Error` packet describing this error, carrying the
    /// offending `id`/`tid` when they were readable.
    pub fn to_error_packet(&self) -> ErrorPacket {
        ErrorPacket {
            value: self.kind.to_string(),
            id: self.id,
            tid: self.tid,
        }
    }
}

/// The specific problem found in a packet. Each variant's `Display` is the
/// exact text sent in the `"value"` of the `Error` packet (see
/// `docs/PROTOCOL.md`, section Errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The line is not UTF-8; `valid_up_to` is the byte offset of the first
    /// bad sequence.
    #[error("invalid UTF-8 in packet at byte {valid_up_to}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence within the line.
        valid_up_to: usize,
    },
    /// The line is not one JSON value. `line` is always 1 for well-framed
    /// input, so `column` is the 1-based character position.
    #[error("invalid JSON: {message} at line {line} column {column}")]
    InvalidJson {
        /// serde_json's description, without its position suffix.
        message: String,
        /// 1-based line of the error (from serde_json).
        line: usize,
        /// 1-based column of the error (from serde_json).
        column: usize,
    },
    /// Valid JSON, but not an object.
    #[error("packet is not a JSON object (found {found})")]
    NotAnObject {
        /// The JSON kind found instead: array, string, number, boolean, null.
        found: &'static str,
    },
    /// The object has no `"type"` field.
    #[error("packet has no \"type\" field")]
    MissingType,
    /// `"type"` is present but is not a string.
    #[error("field \"type\" must be a string (found {found})")]
    TypeNotString {
        /// Description of the value found.
        found: String,
    },
    /// `"type"` names no packet this side of the protocol accepts.
    #[error(
        "unknown packet type \"{name}\" for the {protocol} protocol (valid types: {})",
        ValidTypes(valid)
    )]
    UnknownType {
        /// The type name received (shortened if very long).
        name: String,
        /// Protocol whose decoder rejected it.
        protocol: Protocol,
        /// Every type name that decoder accepts.
        valid: &'static [&'static str],
    },
    /// A required field is absent.
    #[error("missing required field \"{field}\" in {packet} packet")]
    MissingField {
        /// Field name.
        field: &'static str,
        /// Packet type name.
        packet: &'static str,
    },
    /// A field holds a value of the wrong JSON type (or, for enumerated
    /// strings, a value outside the allowed set).
    #[error("field \"{field}\" of {packet} packet must be {expected} (found {found})")]
    WrongFieldType {
        /// Field name.
        field: &'static str,
        /// Packet type name.
        packet: &'static str,
        /// What the field must hold, e.g. `an integer (i64)`.
        expected: &'static str,
        /// Description of the value found, e.g. `float 1.5`.
        found: String,
    },
    /// The line is longer than the reader's limit. Fatal: see
    /// [`DecodeError::is_fatal`].
    #[error("packet too large: at least {size} bytes (limit {limit} bytes)")]
    TooLarge {
        /// Bytes seen so far for this line (the exact size when the end of
        /// the line was already buffered).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Comma-separated type list for messages.
struct ValidTypes<'a>(&'a [&'a str]);

impl fmt::Display for ValidTypes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// Shortens client-supplied text before it is echoed in a message.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// Why a packet could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// serde_json refused the packet; in practice a NaN or infinite float,
    /// which JSON cannot represent.
    #[error("cannot serialize packet: {0}")]
    Json(#[from] serde_json::Error),
    /// The encoded line would exceed the configured limit, so the peer would
    /// reject it and close the connection; servers should cap output (and
    /// set `truncated`) instead.
    #[error("packet too large to send: {size} bytes (limit {limit} bytes)")]
    TooLarge {
        /// Encoded size without the trailing newline.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Errors that end a packet stream (the codec's `Decoder::Error` and the
/// blocking reader/writer's error).
///
/// Recoverable per-packet problems are *not* here: readers yield them as
/// `Err(DecodeError)` items so the stream stays usable.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The underlying transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A fatal decoding error (currently only
    /// [`DecodeErrorKind::TooLarge`]); send its
    /// [`DecodeError::to_error_packet`] if possible, then close.
    #[error(transparent)]
    Decode(DecodeError),
    /// A packet could not be encoded; nothing was written for it.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A packet whose fields are well-typed but semantically unusable as limits.
///
/// Decoding deliberately accepts these (the wire format allows any i64/f64);
/// servers call `validate()` so that they all reject the same things with the
/// same message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// A limit or count below zero.
    #[error("field \"{field}\" of {packet} packet must not be negative (found {value})")]
    Negative {
        /// Packet type name.
        packet: &'static str,
        /// Field name.
        field: &'static str,
        /// The value, as it would be written in JSON.
        value: String,
    },
    /// A NaN or infinite float (only possible when the packet was built in
    /// code, since JSON cannot carry them).
    #[error("field \"{field}\" of {packet} packet must be a finite number (found {value})")]
    NonFinite {
        /// Packet type name.
        packet: &'static str,
        /// Field name.
        field: &'static str,
        /// The value.
        value: f64,
    },
}
