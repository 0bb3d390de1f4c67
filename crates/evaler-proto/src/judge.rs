//! Judge protocol (seed 001 plus project extensions): a client sends one
//! `Compile` per submission, then `Test`s against the compiled executable.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::decode::{unknown_type, Fields};
use crate::encode::{finite, opt_finite, Obj, Sink};
use crate::packet::{
    deserialize_packet,
    sealed::{FromObject, ToJson},
    ErrorPacket, Packet, Protocol,
};
use crate::{DecodeError, DecodeErrorKind, EncodeError, ValidationError, Verdict};

/// `Test.filename` value meaning "feed the input on stdin".
pub const STDIN_FILENAME: &str = "input";

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum JudgeRequest {
    /// `Compile`: compile a submission; answered by `CResponse`.
    Compile(Compile),
    /// `Test`: run a compiled submission on one test; answered by
    /// `TResponse`.
    Test(Test),
    /// `SRemove` (also accepted as `TRemove`, the seed diagram's spelling):
    /// the submission's executable may be removed.
    SRemove(SRemove),
    /// `Assign`: number of boxes to assign.
    Assign(Assign),
    /// `QLen`: submission queue length.
    QLen(QLen),
    /// `Auth` (extension): must be the first packet on a server listening on
    /// a non-loopback address.
    Auth(Auth),
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum JudgeReply {
    /// `CResponse`: result of `Compile`.
    CResponse(CResponse),
    /// `TResponse`: result of `Test`.
    TResponse(TResponse),
    /// `Error`: the client's packet was unusable or could not be served.
    Error(ErrorPacket),
}

/// `Compile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compile {
    /// Source code.
    pub code: String,
    /// Language key (server configuration decides which exist).
    pub lang: String,
    /// Submission id; later `Test.id` and `SRemove.id` refer to it.
    pub id: i64,
}

/// `Test`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Test {
    /// Executable (submission) id from `Compile`.
    pub id: i64,
    /// Test id, echoed in `TResponse.tid`.
    pub tid: i64,
    /// Test input.
    pub input: String,
    /// [`STDIN_FILENAME`] (`"input"`) for stdin, otherwise the name of the
    /// file the input is saved to.
    pub filename: String,
    /// CPU time limit in seconds; 0 means none.
    #[serde(serialize_with = "finite")]
    pub timelimit: f64,
    /// Memory limit in KiB; 0 means none.
    pub memorylimit: i64,
    /// Stack limit in KiB; 0 means none.
    pub stacklimit: i64,
    /// Extension: wall-clock limit in seconds; 0 means none requested,
    /// absent means the server's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_finite"
    )]
    pub walltimelimit: Option<f64>,
}

/// `SRemove` / `TRemove`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SRemove {
    /// Submission id whose executable may be removed.
    pub id: i64,
}

/// `Assign`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    /// Number of boxes to assign.
    pub count: i64,
}

/// `QLen`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QLen {
    /// Submission queue length.
    pub length: i64,
}

/// `Auth` (extension).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    /// Shared secret configured on the server.
    pub token: String,
}

/// Keeps the token out of logs.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `CResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CResponse {
    /// Submission id from `Compile`.
    pub id: i64,
    /// Compiler output.
    pub output: String,
    /// Whether an executable was produced.
    pub success: bool,
    /// Other errors (e.g. unknown language, sandbox failure).
    pub other: String,
    /// Extension: compilation wall time in seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_finite"
    )]
    pub time: Option<f64>,
}

/// `TResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TResponse {
    /// Test id from `Test`.
    pub tid: i64,
    /// Program output (see [`output_to_string`](crate::output_to_string)).
    pub output: String,
    /// CPU time in seconds.
    #[serde(serialize_with = "finite")]
    pub time: f64,
    /// Peak memory in KiB.
    pub memory: i64,
    /// Exit status.
    pub status: i64,
    /// Free text such as `Killed by signal 11` or `Sandbox error`.
    pub comments: String,
    /// Extension: summarised outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Extension: wall time in seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_finite"
    )]
    pub walltime: Option<f64>,
    /// Extension: submission id from `Test.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
}

fn non_negative_int(
    packet: &'static str,
    field: &'static str,
    value: i64,
) -> Result<(), ValidationError> {
    if value < 0 {
        return Err(ValidationError::Negative {
            packet,
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn non_negative_float(
    packet: &'static str,
    field: &'static str,
    value: f64,
) -> Result<(), ValidationError> {
    if !value.is_finite() {
        return Err(ValidationError::NonFinite {
            packet,
            field,
            value,
        });
    }
    if value < 0.0 {
        return Err(ValidationError::Negative {
            packet,
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

impl Test {
    /// Whether the input goes to stdin rather than to a file.
    pub fn uses_stdin(&self) -> bool {
        self.filename == STDIN_FILENAME
    }

    /// Rejects negative or non-finite limits (`timelimit`, `memorylimit`,
    /// `stacklimit`, `walltimelimit`). Ids and `filename` are the server's to
    /// check.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_negative_float("Test", "timelimit", self.timelimit)?;
        non_negative_int("Test", "memorylimit", self.memorylimit)?;
        non_negative_int("Test", "stacklimit", self.stacklimit)?;
        if let Some(wall) = self.walltimelimit {
            non_negative_float("Test", "walltimelimit", wall)?;
        }
        Ok(())
    }

    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(Test {
            id: f.int("id")?,
            tid: f.int("tid")?,
            input: f.string("input")?,
            filename: f.string("filename")?,
            timelimit: f.float("timelimit")?,
            memorylimit: f.int("memorylimit")?,
            stacklimit: f.int("stacklimit")?,
            walltimelimit: f.opt_float("walltimelimit")?,
        })
    }
}

impl Assign {
    /// Rejects a negative `count`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_negative_int("Assign", "count", self.count)
    }
}

impl QLen {
    /// Rejects a negative `length`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_negative_int("QLen", "length", self.length)
    }
}

impl Compile {
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(Compile {
            code: f.string("code")?,
            lang: f.string("lang")?,
            id: f.int("id")?,
        })
    }
}

impl CResponse {
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(CResponse {
            id: f.int("id")?,
            output: f.string("output")?,
            success: f.boolean("success")?,
            other: f.string("other")?,
            time: f.opt_float("time")?,
        })
    }
}

impl TResponse {
    fn read(f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        Ok(TResponse {
            tid: f.int("tid")?,
            output: f.string("output")?,
            time: f.float("time")?,
            memory: f.int("memory")?,
            status: f.int("status")?,
            comments: f.string("comments")?,
            verdict: f.opt_enum("verdict")?,
            walltime: f.opt_float("walltime")?,
            id: f.opt_int("id")?,
        })
    }
}

impl Packet for JudgeRequest {
    const PROTOCOL: Protocol = Protocol::Judge;
    const TYPES: &'static [&'static str] = &[
        "Compile", "Test", "SRemove", "TRemove", "Assign", "QLen", "Auth",
    ];

    fn type_name(&self) -> &'static str {
        match self {
            JudgeRequest::Compile(_) => "Compile",
            JudgeRequest::Test(_) => "Test",
            JudgeRequest::SRemove(_) => "SRemove",
            JudgeRequest::Assign(_) => "Assign",
            JudgeRequest::QLen(_) => "QLen",
            JudgeRequest::Auth(_) => "Auth",
        }
    }
}

impl FromObject for JudgeRequest {
    fn from_object(type_name: &str, f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        match type_name {
            "Compile" => Compile::read(f.packet("Compile")).map(JudgeRequest::Compile),
            "Test" => Test::read(f.packet("Test")).map(JudgeRequest::Test),
            "SRemove" | "TRemove" => {
                let f = f.packet(if type_name == "SRemove" {
                    "SRemove"
                } else {
                    "TRemove"
                });
                Ok(JudgeRequest::SRemove(SRemove { id: f.int("id")? }))
            }
            "Assign" => Ok(JudgeRequest::Assign(Assign {
                count: f.packet("Assign").int("count")?,
            })),
            "QLen" => Ok(JudgeRequest::QLen(QLen {
                length: f.packet("QLen").int("length")?,
            })),
            "Auth" => Ok(JudgeRequest::Auth(Auth {
                token: f.packet("Auth").string("token")?,
            })),
            other => Err(unknown_type::<Self>(other)),
        }
    }
}

impl ToJson for JudgeRequest {
    fn write_json<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        let mut obj = Obj::new(sink, self.type_name());
        match self {
            JudgeRequest::Compile(c) => obj
                .str("code", &c.code)
                .str("lang", &c.lang)
                .int("id", c.id),
            JudgeRequest::Test(t) => obj
                .int("id", t.id)
                .int("tid", t.tid)
                .str("input", &t.input)
                .str("filename", &t.filename)
                .float("timelimit", t.timelimit)?
                .int("memorylimit", t.memorylimit)
                .int("stacklimit", t.stacklimit)
                .opt_float("walltimelimit", t.walltimelimit)?,
            JudgeRequest::SRemove(r) => obj.int("id", r.id),
            JudgeRequest::Assign(a) => obj.int("count", a.count),
            JudgeRequest::QLen(q) => obj.int("length", q.length),
            JudgeRequest::Auth(a) => obj.str("token", &a.token),
        }
        .end()
    }

    fn size_hint(&self) -> usize {
        128 + match self {
            JudgeRequest::Compile(c) => c.code.len() + c.lang.len(),
            JudgeRequest::Test(t) => t.input.len() + t.filename.len(),
            JudgeRequest::Auth(a) => a.token.len(),
            _ => 0,
        }
    }
}

impl<'de> Deserialize<'de> for JudgeRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_packet(deserializer)
    }
}

impl Packet for JudgeReply {
    const PROTOCOL: Protocol = Protocol::Judge;
    const TYPES: &'static [&'static str] = &["CResponse", "TResponse", "Error"];

    fn type_name(&self) -> &'static str {
        match self {
            JudgeReply::CResponse(_) => "CResponse",
            JudgeReply::TResponse(_) => "TResponse",
            JudgeReply::Error(_) => "Error",
        }
    }
}

impl FromObject for JudgeReply {
    fn from_object(type_name: &str, f: &mut Fields) -> Result<Self, DecodeErrorKind> {
        match type_name {
            "CResponse" => CResponse::read(f.packet("CResponse")).map(JudgeReply::CResponse),
            "TResponse" => TResponse::read(f.packet("TResponse")).map(JudgeReply::TResponse),
            "Error" => ErrorPacket::read(f.packet("Error")).map(JudgeReply::Error),
            other => Err(unknown_type::<Self>(other)),
        }
    }
}

impl ToJson for JudgeReply {
    fn write_json<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        match self {
            JudgeReply::CResponse(c) => Obj::new(sink, "CResponse")
                .int("id", c.id)
                .str("output", &c.output)
                .bool("success", c.success)
                .str("other", &c.other)
                .opt_float("time", c.time)?
                .end(),
            JudgeReply::TResponse(t) => Obj::new(sink, "TResponse")
                .int("tid", t.tid)
                .str("output", &t.output)
                .float("time", t.time)?
                .int("memory", t.memory)
                .int("status", t.status)
                .str("comments", &t.comments)
                .opt_str("verdict", t.verdict.map(Verdict::as_str))
                .opt_float("walltime", t.walltime)?
                .opt_int("id", t.id)
                .end(),
            JudgeReply::Error(e) => e.write(sink),
        }
    }

    fn size_hint(&self) -> usize {
        128 + match self {
            JudgeReply::CResponse(c) => c.output.len() + c.other.len(),
            JudgeReply::TResponse(t) => t.output.len() + t.comments.len(),
            JudgeReply::Error(e) => e.value.len(),
        }
    }
}

impl<'de> Deserialize<'de> for JudgeReply {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_packet(deserializer)
    }
}

/// The judge `Error` reply for a bad client packet, with the ids it named.
impl From<&DecodeError> for JudgeReply {
    fn from(err: &DecodeError) -> Self {
        JudgeReply::Error(err.to_error_packet())
    }
}
