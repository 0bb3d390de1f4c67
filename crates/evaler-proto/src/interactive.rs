//! Interactive sessions protocol (seed 000 plus project extensions): a client
//! drives one persistent interpreter per connection.

use serde::{Deserialize, Deserializer, Serialize};

use crate::decode::{unknown_type, Fields, WireEnum};
use crate::encode::opt_finite;
use crate::packet::{deserialize_packet, sealed::FromObject, ErrorPacket, Packet, Protocol};
use crate::{DecodeError, DecodeErrorKind};

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
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(RunResult {
            stdout: f.string("stdout")?,
            stderr: f.string("stderr")?,
            status: f.opt_enum("status")?,
            value: f.opt_string("value")?,
            time: f.opt_float("time")?,
            exit_code: f.opt_int("exit_code")?,
            truncated: f.opt_bool("truncated")?,
        })
    }
}

impl ConnectionError {
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(ConnectionError {
            value: f.opt_string("value")?,
        })
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

impl<'de> Deserialize<'de> for SessionRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_packet(deserializer)
    }
}

impl Packet for SessionReply {
    const PROTOCOL: Protocol = Protocol::Session;
    const TYPES: &'static [&'static str] =
        &["RESULT", "CONNECTION-OK", "CONNECTION-ERROR", "Error"];

    fn type_name(&self) -> &'static str {
        match self {
            SessionReply::Result(_) => "RESULT",
            SessionReply::ConnectionOk => "CONNECTION-OK",
            SessionReply::ConnectionError(_) => "CONNECTION-ERROR",
            SessionReply::Error(_) => "Error",
        }
    }
}

impl FromObject for SessionReply {
    fn from_object(type_name: &str, f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        match type_name {
            "RESULT" => RunResult::read(f.packet("RESULT")).map(SessionReply::Result),
            "CONNECTION-OK" => Ok(SessionReply::ConnectionOk),
            "CONNECTION-ERROR" => ConnectionError::read(f.packet("CONNECTION-ERROR"))
                .map(SessionReply::ConnectionError),
            "Error" => ErrorPacket::read(f.packet("Error")).map(SessionReply::Error),
            other => Err(unknown_type::<Self>(other)),
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
