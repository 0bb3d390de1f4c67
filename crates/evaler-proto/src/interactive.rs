//! Interactive sessions protocol (seed 000 plus project extensions): a client
//! drives one persistent interpreter per connection.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use crate::decode::{parse_packet, parse_packet_noting, unknown_type, Fields, WireEnum};
use crate::encode::{
    encode_line_of, is_encoding_of, is_encoding_of_decoded, opt_finite, Obj, Sink,
};
use crate::packet::{
    deserialize_packet,
    sealed::{FromObject, ToJson},
    ErrorPacket, Packet, Protocol,
};
use crate::{DecodeError, DecodeErrorKind, EncodeError};

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum SessionRequest {
    /// `RUN`: run code in the session and answer with `RESULT`.
    #[serde(rename = "RUN")]
    Run(Run),
    /// `RUNANDKILL`: like `RUN`, then end the session.
    #[serde(rename = "RUNANDKILL")]
    RunAndKill(Run),
    /// `KILL`: end the interpreter now; a pending `RUN` gets no answer.
    #[serde(rename = "KILL")]
    Kill,
    /// `PING`: health check, answered by `CONNECTION-OK` or
    /// `CONNECTION-ERROR`.
    #[serde(rename = "PING")]
    Ping,
    /// `INTERRUPT` (extension): stop the running cell but keep the session's
    /// state.
    #[serde(rename = "INTERRUPT")]
    Interrupt,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum SessionReply {
    /// `RESULT`: the answer to `RUN`/`RUNANDKILL`.
    #[serde(rename = "RESULT")]
    Result(RunResult),
    /// `CONNECTION-OK`: the answer to `PING` when the interpreter is alive.
    #[serde(rename = "CONNECTION-OK")]
    ConnectionOk,
    /// `CONNECTION-ERROR`: the wrapped interpreter died.
    #[serde(rename = "CONNECTION-ERROR")]
    ConnectionError(ConnectionError),
    /// `Error`: the client's packet was unusable.
    #[serde(rename = "Error")]
    Error(ErrorPacket),
    /// `STOPPED` (server → supervisor only, never sent to clients): the
    /// running cell's code gave up the interpreter after SIGINT, and its
    /// `RESULT` follows. It lets the supervisor tell a cell that ignores
    /// SIGINT (killed after the grace period) from a server that is merely
    /// slow to format the traceback on a loaded machine.
    #[serde(rename = "STOPPED")]
    Stopped,
}

/// Body of `RUN` and `RUNANDKILL`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Source to run in the session.
    pub code: String,
    /// Extension: per-cell time limit in seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_finite"
    )]
    pub timeout: Option<f64>,
}

/// How a cell ended (extension `RESULT.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Ran to completion.
    Ok,
    /// Raised an error / exception; the session is still usable.
    Error,
    /// Exceeded the `timeout`.
    Timeout,
    /// Stopped by `INTERRUPT`.
    Interrupted,
    /// The interpreter died.
    Crashed,
    /// The interpreter exited on purpose; see `exit_code`.
    Exited,
}

impl RunStatus {
    /// Every status, in wire order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Ok,
        RunStatus::Error,
        RunStatus::Timeout,
        RunStatus::Interrupted,
        RunStatus::Crashed,
        RunStatus::Exited,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Timeout => "timeout",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Crashed => "crashed",
            RunStatus::Exited => "exited",
        }
    }
}

impl WireEnum for RunStatus {
    const EXPECTED: &'static str =
        "one of \"ok\", \"error\", \"timeout\", \"interrupted\", \"crashed\", \"exited\"";

    fn from_wire(text: &str) -> Option<Self> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Body of `RESULT`. Only `stdout`/`stderr` are in the seed protocol; the
/// rest are extensions a client may ignore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Captured standard output (see [`output_to_string`](crate::output_to_string)).
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// How the cell ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// repr of the cell's trailing expression, as a notebook shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Wall time of the cell in seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_finite"
    )]
    pub time: Option<f64>,
    /// Exit code of the interpreter, with status `exited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Whether stdout/stderr were cut to the server's output cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// Body of `CONNECTION-ERROR`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionError {
    /// Extension: why the interpreter is unusable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Run {
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(Run {
            code: f.string("code")?,
            timeout: f.opt_float("timeout")?,
        })
    }
}

impl RunResult {
    /// The same result with borrowed strings (for [`SessionReplyRef`]'s
    /// checks).
    pub fn to_ref(&self) -> RunResultRef<'_> {
        RunResultRef {
            stdout: Cow::Borrowed(&self.stdout),
            stderr: Cow::Borrowed(&self.stderr),
            status: self.status,
            value: self.value.as_deref().map(Cow::Borrowed),
            time: self.time,
            exit_code: self.exit_code,
            truncated: self.truncated,
        }
    }
}

/// A `RESULT` whose strings are still in the line it was decoded from,
/// unless they held escapes: what a relay needs to check a result and pass
/// it on without copying megabytes of output (see [`SessionReplyRef`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResultRef<'a> {
    /// See [`RunResult::stdout`].
    pub stdout: Cow<'a, str>,
    /// See [`RunResult::stderr`].
    pub stderr: Cow<'a, str>,
    /// See [`RunResult::status`].
    pub status: Option<RunStatus>,
    /// See [`RunResult::value`].
    pub value: Option<Cow<'a, str>>,
    /// See [`RunResult::time`].
    pub time: Option<f64>,
    /// See [`RunResult::exit_code`].
    pub exit_code: Option<i64>,
    /// See [`RunResult::truncated`].
    pub truncated: Option<bool>,
}

impl<'a> RunResultRef<'a> {
    /// The owned result (copies the strings that are still borrowed).
    pub fn into_owned(self) -> RunResult {
        RunResult {
            stdout: self.stdout.into_owned(),
            stderr: self.stderr.into_owned(),
            status: self.status,
            value: self.value.map(Cow::into_owned),
            time: self.time,
            exit_code: self.exit_code,
            truncated: self.truncated,
        }
    }

    fn read(f: &mut Fields<'a>) -> Result<Self, DecodeErrorKind> {
        Ok(RunResultRef {
            stdout: f.str("stdout")?,
            stderr: f.str("stderr")?,
            status: f.opt_enum("status")?,
            value: f.opt_str("value")?,
            time: f.opt_float("time")?,
            exit_code: f.opt_int("exit_code")?,
            truncated: f.opt_bool("truncated")?,
        })
    }

    fn write<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        Obj::new(sink, "RESULT")
            .str("stdout", &self.stdout)
            .str("stderr", &self.stderr)
            .opt_str("status", self.status.map(RunStatus::as_str))
            .opt_str("value", self.value.as_deref())
            .opt_float("time", self.time)?
            .opt_int("exit_code", self.exit_code)
            .opt_bool("truncated", self.truncated)
            .end()
    }

    fn size_hint(&self) -> usize {
        128 + self.stdout.len() + self.stderr.len() + self.value.as_ref().map_or(0, |v| v.len())
    }
}

/// Server → client, decoded without copying: [`SessionReply`] with the
/// `RESULT` as a [`RunResultRef`].
///
/// For relays (`evaler kernel` between a language server and its client):
/// decode the line with [`SessionReplyRef::decode`] (the same checks and
/// errors as [`decode`](crate::decode)`::<SessionReply>`), look at the
/// result, and when [`is_encoded_as`](SessionReplyRef::is_encoded_as) the
/// line, forward the line itself: nothing is copied or encoded again, and
/// what is sent is exactly what encoding the packet would have sent.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionReplyRef<'a> {
    /// `RESULT`.
    Result(RunResultRef<'a>),
    /// `CONNECTION-OK`.
    ConnectionOk,
    /// `CONNECTION-ERROR`.
    ConnectionError(ConnectionError),
    /// `Error`.
    Error(ErrorPacket),
    /// `STOPPED`.
    Stopped,
}

impl<'a> SessionReplyRef<'a> {
    /// Decodes one line, exactly as `decode::<SessionReply>` would, but
    /// borrowing the `RESULT`'s strings from `line` when they have no
    /// escapes.
    pub fn decode(line: &'a [u8]) -> Result<Self, DecodeError> {
        let (type_name, mut fields, ids) = parse_packet(line)?;
        Self::read(&type_name, &mut fields).map_err(|kind| ids.error(kind))
    }

    /// [`decode`](SessionReplyRef::decode), and whether
    /// [`is_encoded_as`](SessionReplyRef::is_encoded_as) the line, found
    /// more cheaply than by asking afterwards: a string borrowed from the line
    /// is the line's own bytes (the parser found no escape in it), so it is
    /// not compared again.
    pub fn decode_verbatim(line: &'a [u8]) -> Result<(Self, bool), DecodeError> {
        let mut escaped = Vec::new();
        let (type_name, mut fields, ids) = parse_packet_noting(line, &mut escaped)?;
        let reply = Self::read(&type_name, &mut fields).map_err(|kind| ids.error(kind))?;
        let verbatim = is_encoding_of_decoded(&reply, line, &escaped);
        Ok((reply, verbatim))
    }

    /// The owned packet.
    pub fn into_owned(self) -> SessionReply {
        match self {
            SessionReplyRef::Result(r) => SessionReply::Result(r.into_owned()),
            SessionReplyRef::ConnectionOk => SessionReply::ConnectionOk,
            SessionReplyRef::ConnectionError(e) => SessionReply::ConnectionError(e),
            SessionReplyRef::Error(e) => SessionReply::Error(e),
            SessionReplyRef::Stopped => SessionReply::Stopped,
        }
    }

    /// Whether `line` (without its `\n`) is byte for byte what
    /// [`encode_line`](crate::encode_line) would send for this packet:
    /// compact, `"type"` first, no unknown or repeated field, every string
    /// escaped and every number written as evaler writes them.
    pub fn is_encoded_as(&self, line: &[u8]) -> bool {
        is_encoding_of(self, line)
    }

    /// Encodes the packet as [`encode_line`](crate::encode_line) encodes the
    /// owned one: the same bytes, without copying the strings first.
    pub fn encode_line(&self, limit: usize) -> Result<Vec<u8>, EncodeError> {
        encode_line_of(self, limit)
    }

    fn read(type_name: &str, f: &mut Fields<'a>) -> Result<Self, DecodeErrorKind> {
        match type_name {
            "RESULT" => RunResultRef::read(f.packet("RESULT")).map(SessionReplyRef::Result),
            "CONNECTION-OK" => Ok(SessionReplyRef::ConnectionOk),
            "CONNECTION-ERROR" => ConnectionError::read(f.packet("CONNECTION-ERROR"))
                .map(SessionReplyRef::ConnectionError),
            "Error" => ErrorPacket::read(f.packet("Error")).map(SessionReplyRef::Error),
            "STOPPED" => Ok(SessionReplyRef::Stopped),
            other => Err(unknown_type::<SessionReply>(other)),
        }
    }
}

impl ToJson for SessionReplyRef<'_> {
    fn write_json<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        match self {
            SessionReplyRef::Result(r) => r.write(sink),
            SessionReplyRef::ConnectionOk => Obj::new(sink, "CONNECTION-OK").end(),
            SessionReplyRef::ConnectionError(e) => e.write(sink),
            SessionReplyRef::Error(e) => e.write(sink),
            SessionReplyRef::Stopped => Obj::new(sink, "STOPPED").end(),
        }
    }

    fn size_hint(&self) -> usize {
        match self {
            SessionReplyRef::Result(r) => r.size_hint(),
            SessionReplyRef::ConnectionError(e) => 64 + e.value.as_ref().map_or(0, |v| v.len()),
            SessionReplyRef::Error(e) => 64 + e.value.len(),
            SessionReplyRef::ConnectionOk | SessionReplyRef::Stopped => 32,
        }
    }
}

impl ConnectionError {
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(ConnectionError {
            value: f.opt_string("value")?,
        })
    }

    fn write<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        Obj::new(sink, "CONNECTION-ERROR")
            .opt_str("value", self.value.as_deref())
            .end()
    }
}

impl Run {
    fn write<S: Sink + ?Sized>(&self, sink: &mut S, type_name: &str) -> Result<(), EncodeError> {
        Obj::new(sink, type_name)
            .str("code", &self.code)
            .opt_float("timeout", self.timeout)?
            .end()
    }
}

impl Packet for SessionRequest {
    const PROTOCOL: Protocol = Protocol::Session;
    const TYPES: &'static [&'static str] = &["RUN", "RUNANDKILL", "KILL", "PING", "INTERRUPT"];

    fn type_name(&self) -> &'static str {
        match self {
            SessionRequest::Run(_) => "RUN",
            SessionRequest::RunAndKill(_) => "RUNANDKILL",
            SessionRequest::Kill => "KILL",
            SessionRequest::Ping => "PING",
            SessionRequest::Interrupt => "INTERRUPT",
        }
    }
}

impl FromObject for SessionRequest {
    fn from_object(type_name: &str, f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        match type_name {
            "RUN" => Run::read(f.packet("RUN")).map(SessionRequest::Run),
            "RUNANDKILL" => Run::read(f.packet("RUNANDKILL")).map(SessionRequest::RunAndKill),
            "KILL" => Ok(SessionRequest::Kill),
            "PING" => Ok(SessionRequest::Ping),
            "INTERRUPT" => Ok(SessionRequest::Interrupt),
            other => Err(unknown_type::<Self>(other)),
        }
    }
}

impl ToJson for SessionRequest {
    fn write_json<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        match self {
            SessionRequest::Run(run) | SessionRequest::RunAndKill(run) => {
                run.write(sink, self.type_name())
            }
            SessionRequest::Kill | SessionRequest::Ping | SessionRequest::Interrupt => {
                Obj::new(sink, self.type_name()).end()
            }
        }
    }

    fn size_hint(&self) -> usize {
        match self {
            SessionRequest::Run(run) | SessionRequest::RunAndKill(run) => 64 + run.code.len(),
            _ => 32,
        }
    }
}

impl<'de> Deserialize<'de> for SessionRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_packet(deserializer)
    }
}

impl Packet for SessionReply {
    const PROTOCOL: Protocol = Protocol::Session;
    const TYPES: &'static [&'static str] = &[
        "RESULT",
        "CONNECTION-OK",
        "CONNECTION-ERROR",
        "Error",
        "STOPPED",
    ];

    fn type_name(&self) -> &'static str {
        match self {
            SessionReply::Result(_) => "RESULT",
            SessionReply::ConnectionOk => "CONNECTION-OK",
            SessionReply::ConnectionError(_) => "CONNECTION-ERROR",
            SessionReply::Error(_) => "Error",
            SessionReply::Stopped => "STOPPED",
        }
    }
}

/// One decoder for both: [`SessionReplyRef`]'s, made owned.
impl FromObject for SessionReply {
    fn from_object(type_name: &str, f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        SessionReplyRef::read(type_name, f).map(SessionReplyRef::into_owned)
    }
}

impl ToJson for SessionReply {
    fn write_json<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        match self {
            SessionReply::Result(r) => r.to_ref().write(sink),
            SessionReply::ConnectionOk => Obj::new(sink, "CONNECTION-OK").end(),
            SessionReply::ConnectionError(e) => e.write(sink),
            SessionReply::Error(e) => e.write(sink),
            SessionReply::Stopped => Obj::new(sink, "STOPPED").end(),
        }
    }

    fn size_hint(&self) -> usize {
        match self {
            SessionReply::Result(r) => r.to_ref().size_hint(),
            SessionReply::ConnectionError(e) => 64 + e.value.as_ref().map_or(0, |v| v.len()),
            SessionReply::Error(e) => 64 + e.value.len(),
            SessionReply::ConnectionOk | SessionReply::Stopped => 32,
        }
    }
}

impl<'de> Deserialize<'de> for SessionReply {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_packet(deserializer)
    }
}

/// The session `Error` reply for a bad client packet (without ids, which
/// sessions do not use).
impl From<&DecodeError> for SessionReply {
    fn from(err: &DecodeError) -> Self {
        SessionReply::Error(ErrorPacket::new(err.kind.to_string()))
    }
}
