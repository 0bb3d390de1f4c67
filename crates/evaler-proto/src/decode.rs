//! Turning one line into a typed packet.
//!
//! The line is parsed to a `serde_json::Value` first, rather than straight
//! into the packet type, so that `type`, `id` and `tid` can be read even when
//! the rest of the packet is wrong, and so that every field error can name
//! the field, the expected type and the packet (serde's own messages do not).

use serde_json::{Map, Value};

use crate::error::shorten;
use crate::packet::Packet;
use crate::{DecodeError, DecodeErrorKind};

/// Decodes one packet from one line (without its `\n`; a trailing `\r` and
/// surrounding JSON whitespace are allowed).
///
/// This does not apply the size limit; the framing layer does.
pub fn decode<P: Packet>(line: &[u8]) -> Result<P, DecodeError> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(err) => return Err(invalid_utf8(line, err.valid_up_to())),
    };
    let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::new(json_error(&e)))?;
    decode_value(value)
}

/// Decodes one packet from an already-parsed JSON value.
pub fn decode_value<P: Packet>(value: Value) -> Result<P, DecodeError> {
    let mut map = match value {
        Value::Object(map) => map,
        other => {
            return Err(DecodeError::new(DecodeErrorKind::NotAnObject {
                found: json_kind(&other),
            }))
        }
    };
    let (id, tid) = read_ids(&map);
    let with_ids = |kind| DecodeError { kind, id, tid };
    let type_name = match map.remove("type") {
        None => return Err(with_ids(DecodeErrorKind::MissingType)),
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(with_ids(DecodeErrorKind::TypeNotString {
                found: describe(&other),
            }))
        }
    };
    let mut fields = Fields { map, packet: "" };
    P::from_object(&type_name, &mut fields).map_err(with_ids)
}

/// The error for a type name outside `P::TYPES`.
pub(crate) fn unknown_type<P: Packet>(name: &str) -> DecodeErrorKind {
    DecodeErrorKind::UnknownType {
        name: shorten(name),
        protocol: P::PROTOCOL,
        valid: P::TYPES,
    }
}

fn read_ids(map: &Map<String, Value>) -> (Option<i64>, Option<i64>) {
    (
        map.get("id").and_then(Value::as_i64),
        map.get("tid").and_then(Value::as_i64),
    )
}

/// Even a packet with a bad byte in, say, a test's input names the test it
/// belongs to; recover the ids from a lossy copy so the judge client learns
/// which test failed.
fn invalid_utf8(line: &[u8], valid_up_to: usize) -> DecodeError {
    let lossy = String::from_utf8_lossy(line);
    let (id, tid) = match serde_json::from_str::<Value>(&lossy) {
        Ok(Value::Object(map)) => read_ids(&map),
        _ => (None, None),
    };
    DecodeError {
        kind: DecodeErrorKind::InvalidUtf8 { valid_up_to },
        id,
        tid,
    }
}

fn json_error(err: &serde_json::Error) -> DecodeErrorKind {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let message = full
        .strip_suffix(suffix.as_str())
        .unwrap_or(&full)
        .to_owned();
    DecodeErrorKind::InvalidJson {
        message,
        line: err.line(),
        column: err.column(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A short description of a wrong value, for `found ...` in messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) if n.is_i64() => format!("integer {n}"),
        Value::Number(n) => format!("integer {n} outside the i64 range"),
        Value::String(s) => format!("string {:?}", shorten(s)),
        Value::Array(_) => "array".to_owned(),
        Value::Object(_) => "object".to_owned(),
    }
}

/// A string-valued enumeration on the wire (`status`, `verdict`).
pub(crate) trait WireEnum: Sized {
    /// Text for `must be ...` in messages, listing the allowed values.
    const EXPECTED: &'static str;
    fn from_wire(text: &str) -> Option<Self>;
}

const STRING: &str = "a string";
const INTEGER: &str = "an integer (i64)";
const NUMBER: &str = "a number";
const BOOLEAN: &str = "a boolean";

/// The fields of one packet, consumed one by one with typed errors.
///
/// Fields are removed from the map so that large strings (code, input,
/// output) are moved, not copied. Anything left over is an unknown field and
/// is ignored. An explicit `null` counts as absent for optional fields and as
/// a wrong type for required ones.
pub struct Fields {
    map: Map<String, Value>,
    packet: &'static str,
}

impl Fields {
    /// Names the packet type for the errors that follow.
    pub(crate) fn packet(&mut self, packet: &'static str) -> &mut Self {
        self.packet = packet;
        self
    }

    fn wrong(&self, field: &'static str, expected: &'static str, found: &Value) -> DecodeErrorKind {
        DecodeErrorKind::WrongFieldType {
            field,
            packet: self.packet,
            expected,
            found: describe(found),
        }
    }

    fn required(&mut self, field: &'static str) -> Result<Value, DecodeErrorKind> {
        self.map.remove(field).ok_or(DecodeErrorKind::MissingField {
            field,
            packet: self.packet,
        })
    }

    fn optional(&mut self, field: &'static str) -> Option<Value> {
        self.map.remove(field).filter(|v| !v.is_null())
    }

    fn as_string(&self, field: &'static str, value: Value) -> Result<String, DecodeErrorKind> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(self.wrong(field, STRING, &other)),
        }
    }

    fn as_int(&self, field: &'static str, value: &Value) -> Result<i64, DecodeErrorKind> {
        value
            .as_i64()
            .ok_or_else(|| self.wrong(field, INTEGER, value))
    }

    fn as_float(&self, field: &'static str, value: &Value) -> Result<f64, DecodeErrorKind> {
        value
            .as_f64()
            .ok_or_else(|| self.wrong(field, NUMBER, value))
    }

    fn as_bool(&self, field: &'static str, value: &Value) -> Result<bool, DecodeErrorKind> {
        value
            .as_bool()
            .ok_or_else(|| self.wrong(field, BOOLEAN, value))
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeErrorKind> {
        let value = self.required(field)?;
        self.as_string(field, value)
    }

    pub(crate) fn opt_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, DecodeErrorKind> {
        self.optional(field)
            .map(|v| self.as_string(field, v))
            .transpose()
    }

    pub(crate) fn int(&mut self, field: &'static str) -> Result<i64, DecodeErrorKind> {
        let value = self.required(field)?;
        self.as_int(field, &value)
    }

    pub(crate) fn opt_int(&mut self, field: &'static str) -> Result<Option<i64>, DecodeErrorKind> {
        self.optional(field)
            .map(|v| self.as_int(field, &v))
            .transpose()
    }

    pub(crate) fn float(&mut self, field: &'static str) -> Result<f64, DecodeErrorKind> {
        let value = self.required(field)?;
        self.as_float(field, &value)
    }

    pub(crate) fn opt_float(
        &mut self,
        field: &'static str,
    ) -> Result<Option<f64>, DecodeErrorKind> {
        self.optional(field)
            .map(|v| self.as_float(field, &v))
            .transpose()
    }

    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeErrorKind> {
        let value = self.required(field)?;
        self.as_bool(field, &value)
    }

    pub(crate) fn opt_bool(
        &mut self,
        field: &'static str,
    ) -> Result<Option<bool>, DecodeErrorKind> {
        self.optional(field)
            .map(|v| self.as_bool(field, &v))
            .transpose()
    }

    pub(crate) fn opt_enum<T: WireEnum>(
        &mut self,
        field: &'static str,
    ) -> Result<Option<T>, DecodeErrorKind> {
        self.optional(field)
            .map(|v| {
                v.as_str()
                    .and_then(T::from_wire)
                    .ok_or_else(|| self.wrong(field, T::EXPECTED, &v))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_names_json_kinds_and_values() {
        assert_eq!(describe(&json!(null)), "null");
        assert_eq!(describe(&json!(true)), "boolean true");
        assert_eq!(describe(&json!(-3)), "integer -3");
        assert_eq!(
            describe(&json!(u64::MAX)),
            "integer 18446744073709551615 outside the i64 range"
        );
        assert_eq!(describe(&json!(2.5)), "float 2.5");
        assert_eq!(describe(&json!("a\n\"b")), r#"string "a\n\"b""#);
        assert_eq!(describe(&json!([1])), "array");
        assert_eq!(describe(&json!({})), "object");
    }

    #[test]
    fn json_error_message_has_no_duplicate_position() {
        let err = serde_json::from_str::<Value>("{").unwrap_err();
        let DecodeErrorKind::InvalidJson {
            message,
            line,
            column,
        } = json_error(&err)
        else {
            panic!("not InvalidJson");
        };
        assert_eq!(
            (message.as_str(), line, column),
            ("EOF while parsing an object", 1, 1)
        );
    }

    #[test]
    fn shorten_cuts_on_char_boundaries() {
        assert_eq!(shorten("abc"), "abc");
        let long = "é".repeat(65);
        assert_eq!(shorten(&long), format!("{}...", "é".repeat(64)));
        assert_eq!(shorten(&"x".repeat(64)), "x".repeat(64));
    }
}
