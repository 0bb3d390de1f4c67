//! tokio-util codec for both protocols.

use std::fmt;
use std::marker::PhantomData;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::decode::decode;
use crate::encode::encode_line_into;
use crate::frame::LineFramer;
use crate::interactive::{SessionReply, SessionRequest};
use crate::judge::{JudgeReply, JudgeRequest};
use crate::packet::Packet;
use crate::{DecodeError, StreamError, DEFAULT_MAX_PACKET};

/// Reads `In` packets and writes `Out` packets, one JSON object per line.
///
/// Decoded items are `Result<In, DecodeError>` rather than `In`, because
/// `FramedRead` ends the stream after any `Decoder::Error`; a malformed
/// packet is reported as an `Err` item and the next line decodes normally.
/// `Decoder::Error` ([`StreamError`]) is reserved for what ends the
/// connection: I/O errors and a packet over the size limit.
///
/// Memory: each `decode` call errors as soon as the buffer holds more than
/// the limit without a newline, so the buffer never exceeds the limit plus
/// the bytes of the read that crossed it.
pub struct PacketCodec<In, Out> {
    framer: LineFramer,
    _packets: PhantomData<fn(Out) -> In>,
}

/// Server side of an interactive session.
pub type SessionServerCodec = PacketCodec<SessionRequest, SessionReply>;
/// Client side of an interactive session.
pub type SessionClientCodec = PacketCodec<SessionReply, SessionRequest>;
/// Server side of the judge protocol.
pub type JudgeServerCodec = PacketCodec<JudgeRequest, JudgeReply>;
/// Client side of the judge protocol.
pub type JudgeClientCodec = PacketCodec<JudgeReply, JudgeRequest>;

impl<In, Out> PacketCodec<In, Out> {
    /// A codec with the [`DEFAULT_MAX_PACKET`] limit.
    pub fn new() -> Self {
        Self::with_max_packet(DEFAULT_MAX_PACKET)
    }

    /// A codec refusing packets (in both directions) longer than
    /// `max_packet` bytes, not counting the `\n`.
    pub fn with_max_packet(max_packet: usize) -> Self {
        PacketCodec {
            framer: LineFramer::new(max_packet),
            _packets: PhantomData,
        }
    }

    /// The size limit in bytes.
    pub fn max_packet(&self) -> usize {
        self.framer.limit()
    }
}

impl<In, Out> Default for PacketCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> Clone for PacketCodec<In, Out> {
    fn clone(&self) -> Self {
        PacketCodec {
            framer: self.framer.clone(),
            _packets: PhantomData,
        }
    }
}

impl<In, Out> fmt::Debug for PacketCodec<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketCodec")
            .field("framer", &self.framer)
            .finish()
    }
}

impl<In: Packet, Out> Decoder for PacketCodec<In, Out> {
    type Item = Result<In, DecodeError>;
    type Error = StreamError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, StreamError> {
        match self.framer.next_line(src) {
            Ok(line) => Ok(line.map(|line| decode(&line))),
            Err(err) => Err(StreamError::Decode(err)),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, StreamError> {
        match self.framer.last_line(src) {
            Ok(line) => Ok(line.map(|line| decode(&line))),
            Err(err) => Err(StreamError::Decode(err)),
        }
    }
}

impl<In, Out: Packet> Encoder<Out> for PacketCodec<In, Out> {
    type Error = StreamError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), StreamError> {
        self.encode(&item, dst)
    }
}

impl<In, Out: Packet> Encoder<&Out> for PacketCodec<In, Out> {
    type Error = StreamError;

    fn encode(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), StreamError> {
        Ok(encode_line_into(item, dst, self.framer.limit())?)
    }
}

/// Reads lines without decoding them and writes `Out` packets: the codec of
/// a relay, which decodes each line itself (with
/// [`SessionReplyRef::decode`](crate::SessionReplyRef::decode)) and may pass
/// a line on as it came.
///
/// Lines follow exactly the framing rules of [`PacketCodec`] (a trailing
/// `\r` removed, blank lines skipped, the size limit), and the items are
/// the same: `Ok(line)` for each line (without its terminator), and
/// [`StreamError`] for what ends the connection.
pub struct LineCodec<Out> {
    framer: LineFramer,
    _packets: PhantomData<fn(Out)>,
}

impl<Out> LineCodec<Out> {
    /// A codec refusing lines (in both directions) longer than `max_packet`
    /// bytes, not counting the `\n`.
    pub fn with_max_packet(max_packet: usize) -> Self {
        LineCodec {
            framer: LineFramer::new(max_packet),
            _packets: PhantomData,
        }
    }

    /// The size limit in bytes.
    pub fn max_packet(&self) -> usize {
        self.framer.limit()
    }
}

impl<Out> fmt::Debug for LineCodec<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineCodec")
            .field("framer", &self.framer)
            .finish()
    }
}

impl<Out> Decoder for LineCodec<Out> {
    type Item = BytesMut;
    type Error = StreamError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, StreamError> {
        self.framer.next_line(src).map_err(StreamError::Decode)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, StreamError> {
        self.framer.last_line(src).map_err(StreamError::Decode)
    }
}

impl<Out: Packet> Encoder<Out> for LineCodec<Out> {
    type Error = StreamError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), StreamError> {
        Ok(encode_line_into(&item, dst, self.framer.limit())?)
    }
}

impl<Out: Packet> Encoder<&Out> for LineCodec<Out> {
    type Error = StreamError;

    fn encode(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), StreamError> {
        Ok(encode_line_into(item, dst, self.framer.limit())?)
    }
}

/// Gives a connection buffer's memory back once it is idle.
///
/// A packet of megabytes leaves the read buffer of a `Framed` (or a
/// writer's buffer) that large for as long as the connection lives, and
/// it is the bulk of an idle session's memory. When `buf` holds at most
/// `keep` bytes of capacity it is left alone; otherwise its contents (a
/// partial next line, usually nothing) move to a right-sized buffer and the
/// big one is freed (once no split-off line still shares it).
pub fn shrink_buffer(buf: &mut BytesMut, keep: usize) {
    if buf.capacity() > keep && buf.len() <= keep / 2 {
        let mut small = BytesMut::with_capacity(keep.min(8 * 1024).max(buf.len()));
        small.extend_from_slice(buf);
        *buf = small;
    }
}
