//! Turning one line into a typed packet.
//!
//! The line is parsed in two steps: first into its top-level fields (name
//! and value, strings borrowed from the line whenever they hold no escape),
//! then field by field into the packet struct. Two steps so that `type`,
//! `id` and `tid` can be read even when the rest of the packet is wrong, and
//! so that every field error can name the field, the expected type and the
//! packet (serde's own messages do not).
//!
//! The first step is serde_json's parser driven by our own visitor rather
//! than a `serde_json::Value`: the same parser, so the same syntax errors at
//! the same positions, the same recursion limit and the same number and
//! escape checks (nested arrays and objects are parsed in full and thrown
//! away), but a megabyte of program output is not copied into a `Value` on
//! the way; it is copied once, into the packet, or not at all by
//! [`SessionReplyRef`](crate::SessionReplyRef).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::error::shorten;
use crate::packet::Packet;
use crate::{DecodeError, DecodeErrorKind};

/// Decodes one packet from one line (without its `\n`; a trailing `\r` and
/// surrounding JSON whitespace are allowed).
///
/// This does not apply the size limit; the framing layer does.
pub fn decode<P: Packet>(line: &[u8]) -> Result<P, DecodeError> {
    let (type_name, mut fields, ids) = parse_packet(line)?;
    P::from_object(&type_name, &mut fields).map_err(|kind| ids.error(kind))
}

/// Decodes one packet from an already-parsed JSON value.
pub fn decode_value<P: Packet>(value: Value) -> Result<P, DecodeError> {
    let (type_name, mut fields, ids) = split_object(Field::from_value(value))?;
    P::from_object(&type_name, &mut fields).map_err(|kind| ids.error(kind))
}

/// A packet's `id` and `tid`, when they are integers, for its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    id: Option<i64>,
    tid: Option<i64>,
}

impl Ids {
    pub(crate) fn error(self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            id: self.id,
            tid: self.tid,
        }
    }
}

/// The packet's type name, its other fields, and its ids.
type Parsed<'a> = (Cow<'a, str>, Fields<'a>, Ids);

/// The first step for a line: UTF-8, JSON, object, `type`.
pub(crate) fn parse_packet(line: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    parse_packet_noting(line, &mut Vec::new())
}

/// [`parse_packet`], noting in `escaped` where the strings that had escapes
/// were in the line (when the fast parser read it).
pub(crate) fn parse_packet_noting<'a>(
    line: &'a [u8],
    escaped: &mut Vec<Escaped>,
) -> Result<Parsed<'a>, DecodeError> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(err) => return Err(invalid_utf8(line, err.valid_up_to())),
    };
    let top = parse_fields(text, escaped).map_err(|e| DecodeError::new(json_error(&e)))?;
    split_object(top)
}

/// A string that had escapes, so was copied out of the line: which copy
/// (its address and length), where it was in the line (from its opening
/// quote to after its closing one), and whether each escape was the one
/// evaler's writer uses. Lets a relay check such a string in place without
/// scanning it again (see `encode::Compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Escaped {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) canonical: bool,
}

fn split_object(top: Field<'_>) -> Result<Parsed<'_>, DecodeError> {
    let entries = match top {
        Field::Object(Some(entries)) => entries,
        other => {
            return Err(DecodeError::new(DecodeErrorKind::NotAnObject {
                found: other.kind(),
            }))
        }
    };
    let mut fields = Fields {
        entries,
        packet: "",
    };
    let ids = fields.ids();
    let type_name = match fields.take("type") {
        None => return Err(ids.error(DecodeErrorKind::MissingType)),
        Some(Field::Str(name)) => name,
        Some(other) => {
            return Err(ids.error(DecodeErrorKind::TypeNotString {
                found: other.describe(),
            }))
        }
    };
    Ok((type_name, fields, ids))
}

/// The error for a type name outside `P::TYPES`.
pub(crate) fn unknown_type<P: Packet>(name: &str) -> DecodeErrorKind {
    DecodeErrorKind::UnknownType {
        name: shorten(name),
        protocol: P::PROTOCOL,
        valid: P::TYPES,
    }
}

/// Even a packet with a bad byte in, say, a test's input names the test it
/// belongs to; recover the ids from a lossy copy so the judge client learns
/// which test failed.
fn invalid_utf8(line: &[u8], valid_up_to: usize) -> DecodeError {
    let lossy = String::from_utf8_lossy(line);
    let ids = match parse_fields(&lossy, &mut Vec::new()) {
        Ok(Field::Object(Some(entries))) => Fields {
            entries,
            packet: "",
        }
        .ids(),
        _ => Ids {
            id: None,
            tid: None,
        },
    };
    ids.error(DecodeErrorKind::InvalidUtf8 { valid_up_to })
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

/// One JSON value as the first step keeps it: scalars and strings in full,
/// arrays and objects only as their kind, except the top-level object,
/// whose fields are kept in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array,
    Object(Option<Vec<(Cow<'a, str>, Field<'a>)>>),
}

impl<'a> Field<'a> {
    fn from_value(value: Value) -> Field<'a> {
        Self::from_value_at(value, true)
    }

    fn from_value_at(value: Value, top: bool) -> Field<'a> {
        match value {
            Value::Null => Field::Null,
            Value::Bool(b) => Field::Bool(b),
            Value::Number(n) => Field::Number(n),
            Value::String(s) => Field::Str(Cow::Owned(s)),
            Value::Array(_) => Field::Array,
            Value::Object(map) => Field::Object(top.then(|| {
                map.into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Self::from_value_at(v, false)))
                    .collect()
            })),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Bool(_) => "boolean",
            Field::Number(_) => "number",
            Field::Str(_) => "string",
            Field::Array => "array",
            Field::Object(_) => "object",
        }
    }

    /// A short description of a wrong value, for `found ...` in messages.
    fn describe(&self) -> String {
        match self {
            Field::Null => "null".to_owned(),
            Field::Bool(b) => format!("boolean {b}"),
            Field::Number(n) if n.is_f64() => format!("float {n}"),
            Field::Number(n) if n.is_i64() => format!("integer {n}"),
            Field::Number(n) => format!("integer {n} outside the i64 range"),
            Field::Str(s) => format!("string {:?}", shorten(s)),
            Field::Array => "array".to_owned(),
            Field::Object(_) => "object".to_owned(),
        }
    }
}

/// Parses `text` as one JSON value, keeping the fields of a top-level
/// object.
fn parse_fields<'a>(
    text: &'a str,
    escaped: &mut Vec<Escaped>,
) -> Result<Field<'a>, serde_json::Error> {
    if let Some(top) = flat::parse(text, escaped) {
        return Ok(top);
    }
    escaped.clear();
    let mut de = serde_json::Deserializer::from_str(text);
    let top = FieldSeed { top: true }.deserialize(&mut de)?;
    de.end()?;
    Ok(top)
}

/// The usual packet, parsed without serde_json's deserializer: one object
/// whose values are strings, numbers, booleans and nulls.
///
/// serde_json looks for the end of a string eight bytes at a time; this
/// looks 32 at a time (see `encode::next_escape`), which is most of the cost
/// of a packet carrying a megabyte of output. It is only a shortcut: it
/// gives up (`None`) on anything else, on anything wrong and on anything it
/// is not sure to read exactly as serde_json does (nested arrays and
/// objects, surrogate escapes, any syntax error), and the full parser then
/// decides, errors and positions included. What it accepts, serde_json
/// accepts with the same fields and values (numbers are read by serde_json
/// itself); a test compares the two on random input.
mod flat {
    use std::borrow::Cow;

    use serde_json::Number;

    use super::{Escaped, Field};
    use crate::encode::{escape_of, next_escape};

    pub(super) fn parse<'a>(text: &'a str, escaped: &mut Vec<Escaped>) -> Option<Field<'a>> {
        let b = text.as_bytes();
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = ws(b, i + 1);
        let mut entries = Vec::new();
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if b.get(i) != Some(&b'"') {
                    return None;
                }
                let (key, next) = string(text, i + 1, escaped)?;
                i = ws(b, next);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                let (v, next) = value(text, ws(b, i + 1), escaped)?;
                entries.push((key, v));
                i = ws(b, next);
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (ws(b, i) == b.len()).then_some(Field::Object(Some(entries)))
    }

    /// The index of the first byte at or after `i` that is not JSON
    /// whitespace.
    fn ws(b: &[u8], mut i: usize) -> usize {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    fn value<'a>(
        text: &'a str,
        i: usize,
        escaped: &mut Vec<Escaped>,
    ) -> Option<(Field<'a>, usize)> {
        let b = text.as_bytes();
        let literal = |word: &[u8], field: Field<'static>| {
            (b.get(i..i + word.len()) == Some(word)).then_some((field, i + word.len()))
        };
        match b.get(i)? {
            b'"' => string(text, i + 1, escaped).map(|(s, next)| (Field::Str(s), next)),
            b't' => literal(b"true", Field::Bool(true)),
            b'f' => literal(b"false", Field::Bool(false)),
            b'n' => literal(b"null", Field::Null),
            b'-' | b'0'..=b'9' => {
                let len = b
                    .get(i..)?
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(b.len() - i);
                // serde_json's own number parser, on exactly this token.
                let n: Number = serde_json::from_str(text.get(i..i + len)?).ok()?;
                Some((Field::Number(n), i + len))
            }
            _ => None,
        }
    }

    /// The string that starts at `i` (after its opening quote), and the
    /// index after its closing quote. Borrowed from `text` unless it has
    /// escapes.
    fn string<'a>(
        text: &'a str,
        mut i: usize,
        escaped: &mut Vec<Escaped>,
    ) -> Option<(Cow<'a, str>, usize)> {
        let b = text.as_bytes();
        let start = i.checked_sub(1)?;
        let mut owned: Option<String> = None;
        let mut canonical = true;
        let mut from = i;
        loop {
            let pos = next_escape(b, i)?;
            // `pos` is an ASCII byte, so a character boundary.
            let run = text.get(from..pos)?;
            match b.get(pos)? {
                b'"' => {
                    let s = match owned {
                        None => Cow::Borrowed(run),
                        Some(mut s) => {
                            s.push_str(run);
                            escaped.push(Escaped {
                                addr: s.as_ptr() as usize,
                                len: s.len(),
                                start,
                                end: pos + 1,
                                canonical,
                            });
                            Cow::Owned(s)
                        }
                    };
                    return Some((s, pos + 1));
                }
                b'\\' => {
                    let s = owned
                        .get_or_insert_with(|| String::with_capacity((b.len() - pos).min(1 << 16)));
                    s.push_str(run);
                    let (c, next) = escape(b, pos + 1)?;
                    s.push(c);
                    canonical &=
                        u8::try_from(u32::from(c)).ok().and_then(escape_of) == b.get(pos..next);
                    i = next;
                    from = next;
                }
                // A control character: an error, for serde_json to report.
                _ => return None,
            }
        }
    }

    /// The escape after a backslash at `i - 1`: the character and the index
    /// after it. Surrogates (`\ud83d\ude00`) are left to serde_json.
    fn escape(b: &[u8], i: usize) -> Option<(char, usize)> {
        let c = match b.get(i)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let mut code = 0u32;
                for &h in b.get(i + 1..i + 5)? {
                    code = code * 16 + char::from(h).to_digit(16)?;
                }
                return char::from_u32(code).map(|c| (c, i + 5));
            }
            _ => return None,
        };
        Some((c, i + 1))
    }
}

/// Deserializes a [`Field`]; `top` keeps an object's fields.
struct FieldSeed {
    top: bool,
}

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Field<'de>, E> {
        Ok(Field::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Field<'de>, E> {
        Ok(Field::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Field<'de>, E> {
        Ok(Field::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Field<'de>, E> {
        // As serde_json's own Value does; its parser never yields NaN or
        // infinities.
        Ok(Number::from_f64(n).map_or(Field::Null, Field::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_none<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element_seed(FieldSeed { top: false })?.is_some() {}
        Ok(Field::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        let mut entries = self.top.then(Vec::new);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(FieldSeed { top: false })?;
            if let Some(entries) = &mut entries {
                entries.push((key, value));
            }
        }
        Ok(Field::Object(entries))
    }
}

/// An object key, borrowed when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Self::Value, E> {
        Err(E::invalid_type(de::Unexpected::Bytes(b), &self))
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
/// Fields are taken out, so that strings are moved (or, when borrowed from
/// the line, copied once), never cloned. If a key appears twice, the last
/// value wins. Anything left over is an unknown field and is ignored. An
/// explicit `null` counts as absent for optional fields and as a wrong type
/// for required ones.
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, Field<'a>)>,
    packet: &'static str,
}

impl<'a> Fields<'a> {
    /// Names the packet type for the errors that follow.
    pub(crate) fn packet(&mut self, packet: &'static str) -> &mut Self {
        self.packet = packet;
        self
    }

    /// `id` and `tid`, when they are integers.
    fn ids(&self) -> Ids {
        let int = |name: &str| match self.last(name) {
            Some(Field::Number(n)) => n.as_i64(),
            _ => None,
        };
        Ids {
            id: int("id"),
            tid: int("tid"),
        }
    }

    fn last(&self, name: &str) -> Option<&Field<'a>> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    fn take(&mut self, name: &str) -> Option<Field<'a>> {
        let i = self.entries.iter().rposition(|(k, _)| k == name)?;
        let (_, value) = self.entries.remove(i);
        // Earlier duplicates go too: they lost to this one.
        self.entries.retain(|(k, _)| k != name);
        Some(value)
    }

    fn wrong(&self, field: &'static str, expected: &'static str, found: &Field) -> DecodeErrorKind {
        DecodeErrorKind::WrongFieldType {
            field,
            packet: self.packet,
            expected,
            found: found.describe(),
        }
    }

    fn required(&mut self, field: &'static str) -> Result<Field<'a>, DecodeErrorKind> {
        self.take(field).ok_or(DecodeErrorKind::MissingField {
            field,
            packet: self.packet,
        })
    }

    fn optional(&mut self, field: &'static str) -> Option<Field<'a>> {
        self.take(field).filter(|v| *v != Field::Null)
    }

    fn as_str(
        &self,
        field: &'static str,
        value: Field<'a>,
    ) -> Result<Cow<'a, str>, DecodeErrorKind> {
        match value {
            Field::Str(s) => Ok(s),
            other => Err(self.wrong(field, STRING, &other)),
        }
    }

    fn as_int(&self, field: &'static str, value: &Field) -> Result<i64, DecodeErrorKind> {
        match value {
            Field::Number(n) => n.as_i64(),
            _ => None,
        }
        .ok_or_else(|| self.wrong(field, INTEGER, value))
    }

    fn as_float(&self, field: &'static str, value: &Field) -> Result<f64, DecodeErrorKind> {
        match value {
            Field::Number(n) => n.as_f64(),
            _ => None,
        }
        .ok_or_else(|| self.wrong(field, NUMBER, value))
    }

    fn as_bool(&self, field: &'static str, value: &Field) -> Result<bool, DecodeErrorKind> {
        match value {
            Field::Bool(b) => Ok(*b),
            _ => Err(self.wrong(field, BOOLEAN, value)),
        }
    }

    /// A required string, borrowed from the line when it can be.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<Cow<'a, str>, DecodeErrorKind> {
        let value = self.required(field)?;
        self.as_str(field, value)
    }

    /// An optional string, borrowed from the line when it can be.
    pub(crate) fn opt_str(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Cow<'a, str>>, DecodeErrorKind> {
        self.optional(field)
            .map(|v| self.as_str(field, v))
            .transpose()
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeErrorKind> {
        self.str(field).map(Cow::into_owned)
    }

    pub(crate) fn opt_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, DecodeErrorKind> {
        self.opt_str(field).map(|s| s.map(Cow::into_owned))
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
                match &v {
                    Field::Str(s) => T::from_wire(s),
                    _ => None,
                }
                .ok_or_else(|| self.wrong(field, T::EXPECTED, &v))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn describe(v: Value) -> String {
        Field::from_value_at(v, false).describe()
    }

    #[test]
    fn describe_names_json_kinds_and_values() {
        assert_eq!(describe(json!(null)), "null");
        assert_eq!(describe(json!(true)), "boolean true");
        assert_eq!(describe(json!(-3)), "integer -3");
        assert_eq!(
            describe(json!(u64::MAX)),
            "integer 18446744073709551615 outside the i64 range"
        );
        assert_eq!(describe(json!(2.5)), "float 2.5");
        assert_eq!(describe(json!("a\n\"b")), r#"string "a\n\"b""#);
        assert_eq!(describe(json!([1])), "array");
        assert_eq!(describe(json!({})), "object");
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

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_line() {
        let line = r#"{"type":"RESULT","stdout":"plain","stderr":"a\nb","x":"\/"}"#;
        let mut escaped = Vec::new();
        let Field::Object(Some(entries)) = parse_fields(line, &mut escaped).unwrap() else {
            panic!("not an object")
        };
        assert!(matches!(entries[1].1, Field::Str(Cow::Borrowed("plain"))));
        let Field::Str(Cow::Owned(stderr)) = &entries[2].1 else {
            panic!("not copied")
        };
        assert_eq!(stderr, "a\nb");
        assert_eq!(escaped.len(), 2);
        assert_eq!(escaped[0].addr, stderr.as_ptr() as usize);
        assert_eq!(&line[escaped[0].start..escaped[0].end], r#""a\nb""#);
        assert!(escaped[0].canonical);
        assert!(!escaped[1].canonical, "\\/ is not how evaler writes /");
    }

    #[test]
    fn last_duplicate_wins() {
        let Field::Object(Some(entries)) =
            parse_fields(r#"{"a":1,"a":"x","b":2}"#, &mut Vec::new()).unwrap()
        else {
            panic!("not an object")
        };
        let mut f = Fields {
            entries,
            packet: "P",
        };
        assert_eq!(f.opt_string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(f.opt_string("a").unwrap(), None);
        assert_eq!(f.int("b").unwrap(), 2);
    }
}
