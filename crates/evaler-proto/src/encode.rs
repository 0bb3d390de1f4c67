//! Turning a typed packet into one line.

use bytes::{BufMut, BytesMut};
use serde::Serializer;

use crate::packet::Packet;
use crate::EncodeError;

/// Encodes `packet` as one line including its trailing `\n`.
///
/// serde_json escapes every control character (including `\n` and `\r`) in
/// strings, so the only newline is the terminator. Fails if the JSON (without
/// the `\n`) would be longer than `limit` bytes, or if a float is NaN or
/// infinite.
pub fn encode_line<P: Packet>(packet: &P, limit: usize) -> Result<Vec<u8>, EncodeError> {
    let mut buf = BytesMut::new();
    encode_line_into(packet, &mut buf, limit)?;
    Ok(buf.to_vec())
}

/// Appends `packet` and `\n` to `dst`; on error `dst` is left as it was, so
/// a half-written packet can never reach the peer.
pub(crate) fn encode_line_into<P: Packet>(
    packet: &P,
    dst: &mut BytesMut,
    limit: usize,
) -> Result<(), EncodeError> {
    let start = dst.len();
    if let Err(err) = serde_json::to_writer((&mut *dst).writer(), packet) {
        dst.truncate(start);
        return Err(err.into());
    }
    let size = dst.len().saturating_sub(start);
    if size > limit {
        dst.truncate(start);
        return Err(EncodeError::TooLarge { size, limit });
    }
    dst.put_u8(b'\n');
    Ok(())
}

/// serde_json writes NaN and infinities as `null`, which every decoder then
/// rejects; refusing them here reports the bug on the side that has it.
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
