//! Turning a typed packet into one line.
//!
//! Packets are written by a small JSON writer of our own rather than by
//! serde_json, because program output makes strings of megabytes and
//! serde_json looks at a string one byte at a time to find what to escape;
//! this writer skips eight bytes at a time. The bytes are exactly serde_json's
//! compact output for the same packet (`"type"` first, then the fields in
//! declaration order, absent extensions left out; a test checks this against
//! the `Serialize` impls), so either can be used to send.

use bytes::BytesMut;
use serde::Serializer;
use serde_json::ser::Formatter;

use crate::decode::Escaped;
use crate::packet::sealed::ToJson;
use crate::packet::Packet;
use crate::EncodeError;

/// Encodes `packet` as one line including its trailing `\n`.
///
/// JSON escapes every control character (including `\n` and `\r`) in
/// strings, so the only newline is the terminator. Fails if the JSON (without
/// the `\n`) would be longer than `limit` bytes, or if a float is NaN or
/// infinite.
pub fn encode_line<P: Packet>(packet: &P, limit: usize) -> Result<Vec<u8>, EncodeError> {
    encode_line_of(packet, limit)
}

/// [`encode_line`] for anything with a JSON writer (packets and borrowed
/// packets).
pub(crate) fn encode_line_of<P: ToJson + ?Sized>(
    packet: &P,
    limit: usize,
) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(packet.size_hint() + 1);
    write_line(packet, &mut buf, limit)?;
    Ok(buf)
}

/// Appends `packet` and `\n` to `dst`; on error `dst` is left as it was, so
/// a half-written packet can never reach the peer.
pub(crate) fn encode_line_into<P: Packet>(
    packet: &P,
    dst: &mut BytesMut,
    limit: usize,
) -> Result<(), EncodeError> {
    dst.reserve(packet.size_hint() + 1);
    write_line(packet, dst, limit)
}

fn write_line<P: ToJson + ?Sized, S: Sink>(
    packet: &P,
    dst: &mut S,
    limit: usize,
) -> Result<(), EncodeError> {
    let start = dst.len();
    if let Err(err) = packet.write_json(dst) {
        dst.truncate(start);
        return Err(err);
    }
    let size = dst.len().saturating_sub(start);
    if size > limit {
        dst.truncate(start);
        return Err(EncodeError::TooLarge { size, limit });
    }
    dst.put(b"\n");
    Ok(())
}

/// Whether `line` (without its `\n`) is byte for byte what [`encode_line`]
/// writes for `packet`: a relay can then pass the line on as it came.
pub(crate) fn is_encoding_of<P: ToJson + ?Sized>(packet: &P, line: &[u8]) -> bool {
    compare(packet, line, false, &[])
}

/// [`is_encoding_of`] for a packet just decoded from `line`: its strings
/// are not written again and compared, they are checked in place (see
/// `Compare::put_str`), so a megabyte of output is not scanned twice.
///
/// `escaped` is what the parser noted of the strings it copied.
pub(crate) fn is_encoding_of_decoded<P: ToJson + ?Sized>(
    packet: &P,
    line: &[u8],
    escaped: &[Escaped],
) -> bool {
    compare(packet, line, true, escaped)
}

fn compare<P: ToJson + ?Sized>(
    packet: &P,
    line: &[u8],
    in_place: bool,
    escaped: &[Escaped],
) -> bool {
    let mut cmp = Compare {
        expected: line,
        pos: 0,
        equal: true,
        in_place,
        escaped,
    };
    packet.write_json(&mut cmp).is_ok() && cmp.equal && cmp.pos == line.len()
}

/// Where the writer puts bytes. (`pub` only to appear in the sealed
/// `ToJson` trait; not reachable from outside the crate.)
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn len(&self) -> usize;
    fn truncate(&mut self, len: usize);

    /// A string value, quoted and escaped.
    fn put_str(&mut self, s: &str) {
        write_str(self, s);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn len(&self) -> usize {
        BytesMut::len(self)
    }
    fn truncate(&mut self, len: usize) {
        BytesMut::truncate(self, len);
    }
}

/// A sink that writes nothing and only checks that what would be written
/// equals `expected`.
struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
    equal: bool,
    /// Strings that are slices of `expected` need no escape (see
    /// [`is_encoding_of_decoded`]).
    in_place: bool,
    /// The parser's notes on the strings it copied out of `expected`.
    escaped: &'a [Escaped],
}

impl Sink for Compare<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if !self.equal {
            return;
        }
        let end = self.pos.saturating_add(bytes.len());
        match self.expected.get(self.pos..end) {
            Some(same) if same == bytes => self.pos = end,
            _ => self.equal = false,
        }
    }
    fn len(&self) -> usize {
        self.pos
    }
    fn truncate(&mut self, len: usize) {
        self.pos = len.min(self.pos);
    }

    fn put_str(&mut self, s: &str) {
        if self.in_place && self.equal {
            let start = self.pos.saturating_add(1);
            let end = start.saturating_add(s.len());
            let here = self.expected.get(start..end);
            if here.is_some_and(|h| std::ptr::eq(h, s.as_bytes()))
                && self.expected.get(self.pos) == Some(&b'"')
                && self.expected.get(end) == Some(&b'"')
            {
                self.pos = end.saturating_add(1);
                return;
            }
            // A string that had escapes (so was copied out of the line): if
            // the whole line matches, its key is in the line once, here, so
            // the string here is where it was decoded from, and it is this
            // writer's encoding of it exactly when each escape is the one
            // this writer would use. The parser noted that already, or the
            // string is looked at again.
            let noted = self
                .escaped
                .iter()
                .find(|e| e.addr == s.as_ptr() as usize && e.len == s.len() && e.start == self.pos);
            if let Some(e) = noted {
                if e.canonical {
                    self.pos = e.end;
                } else {
                    self.equal = false;
                }
                return;
            }
            match canonical_string_end(self.expected, self.pos) {
                Some(after) => self.pos = after,
                None => self.equal = false,
            }
            return;
        }
        write_str(self, s);
    }
}

/// If a JSON string starts at `pos` of `line` and each of its escapes is
/// the one [`write_str`] writes for that character, the index after its
/// closing quote.
fn canonical_string_end(line: &[u8], pos: usize) -> Option<usize> {
    if line.get(pos) != Some(&b'"') {
        return None;
    }
    let mut i = pos + 1;
    loop {
        let at = next_escape(line, i)?;
        match line.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => {
                i = match *line.get(at + 1)? {
                    b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => at + 2,
                    b'u' => {
                        // Only control characters without a short escape
                        // are written as `\u00xx`, in lowercase.
                        let hex = line.get(at + 2..at + 6)?;
                        let code = match hex {
                            [b'0', b'0', high @ (b'0' | b'1'), low @ (b'0'..=b'9' | b'a'..=b'f')] => {
                                char::from(*high).to_digit(16)? * 16
                                    + char::from(*low).to_digit(16)?
                            }
                            _ => return None,
                        };
                        let own = escape_of(u8::try_from(code).ok()?)?;
                        if own.len() != 6 {
                            return None;
                        }
                        at + 6
                    }
                    _ => return None,
                };
            }
            _ => return None,
        }
    }
}

/// Writes one packet object: `{"type":"<name>"`, then each field, then `}`.
pub(crate) struct Obj<'s, S: Sink + ?Sized> {
    sink: &'s mut S,
}

impl<'s, S: Sink + ?Sized> Obj<'s, S> {
    pub(crate) fn new(sink: &'s mut S, type_name: &str) -> Self {
        sink.put(b"{\"type\":");
        write_str(sink, type_name);
        Obj { sink }
    }

    fn key(&mut self, key: &str) {
        self.sink.put(b",");
        write_str(self.sink, key);
        self.sink.put(b":");
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.sink.put_str(value);
        self
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    pub(crate) fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        let mut num = NumBuf::default();
        // Writing into a fixed buffer that fits any i64 cannot fail.
        let _ = serde_json::ser::CompactFormatter.write_i64(&mut num, value);
        self.sink.put(num.as_bytes());
        self
    }

    pub(crate) fn opt_int(&mut self, key: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.int(key, v);
        }
        self
    }

    /// serde_json writes NaN and infinities as `null`, which every decoder
    /// then rejects; refusing them here reports the bug on the side that has
    /// it.
    pub(crate) fn float(&mut self, key: &str, value: f64) -> Result<&mut Self, EncodeError> {
        if !value.is_finite() {
            return Err(EncodeError::Json(non_finite(value)));
        }
        self.key(key);
        let mut num = NumBuf::default();
        // ryu's longest output (24 bytes) fits the buffer.
        let _ = serde_json::ser::CompactFormatter.write_f64(&mut num, value);
        self.sink.put(num.as_bytes());
        Ok(self)
    }

    pub(crate) fn opt_float(
        &mut self,
        key: &str,
        value: Option<f64>,
    ) -> Result<&mut Self, EncodeError> {
        if let Some(v) = value {
            self.float(key, v)?;
        }
        Ok(self)
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.sink.put(if value { b"true" } else { b"false" });
        self
    }

    pub(crate) fn opt_bool(&mut self, key: &str, value: Option<bool>) -> &mut Self {
        if let Some(v) = value {
            self.bool(key, v);
        }
        self
    }

    pub(crate) fn end(&mut self) -> Result<(), EncodeError> {
        self.sink.put(b"}");
        Ok(())
    }
}

/// A number's text, on the stack.
#[derive(Default)]
struct NumBuf {
    buf: [u8; 32],
    len: usize,
}

impl NumBuf {
    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl std::io::Write for NumBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = data.len().min(room.len());
        room[..n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn non_finite(value: f64) -> serde_json::Error {
    serde::ser::Error::custom(format_args!("float fields must be finite, got {value}"))
}

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// For 8 bytes read little-endian: a mask whose lowest set bit is in the
/// first byte that is `"`, `\` or below 0x20 (the bytes JSON must escape);
/// 0 if there is none. These are the classic "has zero byte" and "has byte
/// less than" tricks: higher bits may be set spuriously (borrows move up),
/// the lowest one never is.
#[inline]
fn escape_mask(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let q = word ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = word ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH
}

/// Index of the first byte at or after `from` that JSON must escape.
///
/// The next 16 bytes are tested 8 at a time first (text with short lines
/// has an escape every few dozen bytes); then blocks of 64 bytes with a
/// branch-free loop that the compiler turns into vector compares, several
/// times faster than the 8-byte trick on long strings; the block that has
/// one is then searched 8 bytes at a time.
#[inline]
pub(crate) fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    const BLOCK: usize = 64;
    let word_at = |from: usize| {
        let word = bytes.get(from..from + 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        Some(escape_mask(u64::from_le_bytes(w)))
    };
    for _ in 0..2 {
        match word_at(from) {
            Some(0) => from += 8,
            Some(mask) => return Some(from + (mask.trailing_zeros() / 8) as usize),
            None => break,
        }
    }
    while let Some(block) = bytes.get(from..from + BLOCK) {
        let mut any = 0u8;
        for &b in block {
            any |= u8::from((b < 0x20) | (b == b'"') | (b == b'\\'));
        }
        if any != 0 {
            break;
        }
        from += BLOCK;
    }
    while let Some(mask) = word_at(from) {
        if mask != 0 {
            return Some(from + (mask.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    let rest = bytes.get(from..)?;
    rest.iter()
        .position(|&b| escape_of(b).is_some())
        .map(|p| from + p)
}

/// The escape [`write_str`] writes for `byte`, if it escapes it.
#[inline]
pub(crate) fn escape_of(byte: u8) -> Option<&'static [u8]> {
    Some(match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        0x00..=0x1f => return Some(&CONTROL[usize::from(byte)]),
        _ => return None,
    })
}

/// `\u00XX` for each control character (serde_json's lowercase hex).
static CONTROL: [[u8; 6]; 32] = {
    let hex = b"0123456789abcdef";
    let mut table = [[0u8; 6]; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = [b'\\', b'u', b'0', b'0', hex[i >> 4], hex[i & 15]];
        i += 1;
    }
    table
};

/// Writes `s` as a JSON string, escaping exactly what serde_json escapes.
pub(crate) fn write_str<S: Sink + ?Sized>(sink: &mut S, s: &str) {
    let bytes = s.as_bytes();
    sink.put(b"\"");
    let mut start = 0;
    while let Some(pos) = next_escape(bytes, start) {
        let Some(esc) = bytes.get(pos).and_then(|&b| escape_of(b)) else {
            break;
        };
        sink.put(bytes.get(start..pos).unwrap_or_default());
        sink.put(esc);
        start = pos + 1;
    }
    sink.put(bytes.get(start..).unwrap_or_default());
    sink.put(b"\"");
}

/// serde `serialize_with` for required floats; see [`Obj::float`].
pub(crate) fn finite<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else {
        Err(serde::ser::Error::custom(format_args!(
            "float fields must be finite, got {value}"
        )))
    }
}

/// [`finite`] for optional fields (only called when `Some`, as `None` is
/// skipped).
pub(crate) fn opt_finite<S: Serializer>(
    value: &Option<f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => finite(v, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut all = String::new();
        for c in (0u32..0x80).filter_map(char::from_u32) {
            all.push(c);
        }
        all.push_str("é😀\u{2028}\u{7f}");
        for s in [
            "",
            "plain",
            "0123456789abcdef0123456789",
            "a\"b\\c\nd",
            all.as_str(),
            "12345678\"",
            "\u{1f}1234567",
        ] {
            assert_eq!(json(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn escape_detection_is_exact_for_every_byte_position() {
        for special in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
            for pos in 0..8 {
                // Bytes before the first special one are never flagged, even
                // when they are special too further on.
                let mut w = [0xffu8; 8];
                w[7] = 0;
                w[pos] = special;
                let mask = escape_mask(u64::from_le_bytes(w));
                assert_eq!(mask.trailing_zeros() / 8, pos as u32, "{special} at {pos}");
            }
        }
        for byte in 0x20u8..=0xff {
            if byte != b'"' && byte != b'\\' {
                assert_eq!(escape_mask(u64::from_le_bytes([byte; 8])), 0, "{byte}");
            }
        }
    }
}
