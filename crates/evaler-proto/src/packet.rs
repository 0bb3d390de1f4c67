//! What every packet enum has in common, so that the decoder, the codec and
//! the blocking reader/writer can be written once for both protocols.

use std::fmt;

use serde::Serialize;

use crate::decode::Fields;
use crate::encode::{Obj, Sink};
use crate::{DecodeErrorKind, EncodeError};

/// The two wire protocols. Only used to make error messages precise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Interactive interpreter sessions (seed 000).
    Session,
    /// The judge (seed 001).
    Judge,
}

impl Protocol {
    /// Name used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Session => "interactive session",
            Protocol::Judge => "judge",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One direction of one protocol: [`SessionRequest`](crate::SessionRequest),
/// [`SessionReply`](crate::SessionReply),
/// [`JudgeRequest`](crate::JudgeRequest) or
/// [`JudgeReply`](crate::JudgeReply).
///
/// Sealed: the decoder relies on each implementation reporting typed field
/// errors, which only this crate's packet enums do.
pub trait Packet: Serialize + sealed::FromObject + sealed::ToJson + Sized {
    /// The protocol this direction belongs to.
    const PROTOCOL: Protocol;
    /// Every `"type"` spelling this direction's decoder accepts, including
    /// accepted aliases (`TRemove`).
    const TYPES: &'static [&'static str];

    /// The `"type"` this packet is sent with.
    fn type_name(&self) -> &'static str;
}

pub(crate) mod sealed {
    use super::*;

    /// Builds a packet from its already-parsed JSON object.
    pub trait FromObject: Sized {
        /// `type_name` is the packet's `"type"`; `fields` holds the rest.
        /// Returns `UnknownType` for names outside `Packet::TYPES`.
        fn from_object(type_name: &str, fields: &mut Fields) -> Result<Self, DecodeErrorKind>;
    }

    /// Writes a packet as one compact JSON object (see `encode`): the same
    /// bytes as serde_json's output of the `Serialize` impl.
    pub trait ToJson {
        fn write_json<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError>;

        /// About how many bytes the JSON takes, so that a buffer is sized
        /// once rather than grown by doubling (copies, page faults) while a
        /// megabyte of output is written.
        fn size_hint(&self) -> usize;
    }
}

/// `Error`: the peer sent something unusable. Shared by both protocols.
///
/// In the judge protocol `id`/`tid` name the submission/test the bad packet
/// referred to, when they could be read; the interactive protocol never sets
/// them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ErrorPacket {
    /// Human-readable description of the problem.
    pub value: String,
    /// Judge only: the offending packet's `id`, if readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Judge only: the offending packet's `tid`, if readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<i64>,
}

impl ErrorPacket {
    /// An error without ids.
    pub fn new(value: impl Into<String>) -> Self {
        ErrorPacket {
            value: value.into(),
            id: None,
            tid: None,
        }
    }

    pub(crate) fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(ErrorPacket {
            value: f.string("value")?,
            id: f.opt_int("id")?,
            tid: f.opt_int("tid")?,
        })
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        Obj::new(sink, "Error")
            .str("value", &self.value)
            .opt_int("id", self.id)
            .opt_int("tid", self.tid)
            .end()
    }
}

impl From<&crate::DecodeError> for ErrorPacket {
    fn from(err: &crate::DecodeError) -> Self {
        err.to_error_packet()
    }
}

/// Routes serde deserialization of the packet enums through
/// [`decode_value`](crate::decode_value), so there is exactly one decoder
/// and `serde_json::from_str::<JudgeRequest>` behaves like the wire.
pub(crate) fn deserialize_packet<'de, D, P>(deserializer: D) -> Result<P, D::Error>
where
    D: serde::Deserializer<'de>,
    P: Packet,
{
    use serde::Deserialize;
    let value = serde_json::Value::deserialize(deserializer)?;
    crate::decode_value(value).map_err(serde::de::Error::custom)
}
