//! Blocking reader and writer with the same framing as the codec, for
//! clients and helpers that do not run tokio.

use std::io::{self, BufRead, Write};
use std::marker::PhantomData;

use bytes::BytesMut;

use crate::decode::decode;
use crate::encode::encode_line_into;
use crate::frame::LineFramer;
use crate::packet::Packet;
use crate::{DecodeError, StreamError, DEFAULT_MAX_PACKET};

/// Reads `In` packets from a `BufRead`.
///
/// Bytes are copied out of the `BufRead` only up to the next `\n`, so the
/// internal buffer holds at most one line, and never more than the limit
/// plus one `fill_buf` chunk.
#[derive(Debug)]
pub struct PacketReader<R, In> {
    inner: R,
    buf: BytesMut,
    framer: LineFramer,
    /// Set by the iterator after a fatal error, so `for` loops end.
    stopped: bool,
    _packets: PhantomData<fn() -> In>,
}

impl<R: BufRead, In: Packet> PacketReader<R, In> {
    /// A reader with the [`DEFAULT_MAX_PACKET`] limit.
    pub fn new(inner: R) -> Self {
        Self::with_max_packet(inner, DEFAULT_MAX_PACKET)
    }

    /// A reader refusing lines longer than `max_packet` bytes.
    pub fn with_max_packet(inner: R, max_packet: usize) -> Self {
        PacketReader {
            inner,
            buf: BytesMut::new(),
            framer: LineFramer::new(max_packet),
            stopped: false,
            _packets: PhantomData,
        }
    }

    /// Reads the next packet.
    ///
    /// - `Ok(None)`: clean end of input.
    /// - `Ok(Some(Err(e)))`: a malformed packet; reading may continue.
    /// - `Err(_)`: I/O error or packet too large; stop reading (after a
    ///   too-large error, further calls would skip the rest of that line).
    ///
    /// A final line without `\n` at end of input is still a packet.
    pub fn read_packet(&mut self) -> Result<Option<Result<In, DecodeError>>, StreamError> {
        loop {
            if let Some(line) = self
                .framer
                .next_line(&mut self.buf)
                .map_err(StreamError::Decode)?
            {
                return Ok(Some(decode(&line)));
            }
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err.into()),
            };
            if chunk.is_empty() {
                let line = self
                    .framer
                    .last_line(&mut self.buf)
                    .map_err(StreamError::Decode)?;
                return Ok(line.map(|line| decode(&line)));
            }
            let take = memchr::memchr(b'\n', chunk).map_or(chunk.len(), |i| i + 1);
            self.buf
                .extend_from_slice(chunk.get(..take).unwrap_or(chunk));
            self.inner.consume(take);
        }
    }

    /// The size limit in bytes.
    pub fn max_packet(&self) -> usize {
        self.framer.limit()
    }

    /// Bytes of an incomplete line currently held (for tests and metrics).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying reader; reading from it directly desynchronises
    /// framing.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The underlying reader; an incomplete buffered line is lost.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: BufRead, In: Packet> Iterator for PacketReader<R, In> {
    type Item = Result<Result<In, DecodeError>, StreamError>;

    /// Yields a fatal `Err` once, then ends, so a loop that only logs
    /// errors cannot spin on a dead connection.
    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let item = self.read_packet().transpose();
        if matches!(item, Some(Err(_))) {
            self.stopped = true;
        }
        item
    }
}

/// Writes `Out` packets to a `Write`, flushing after each one because both
/// protocols are request/response and a buffered reply is a hung peer.
#[derive(Debug)]
pub struct PacketWriter<W, Out> {
    inner: W,
    buf: BytesMut,
    max_packet: usize,
    _packets: PhantomData<fn(Out)>,
}

impl<W: Write, Out: Packet> PacketWriter<W, Out> {
    /// A writer with the [`DEFAULT_MAX_PACKET`] limit.
    pub fn new(inner: W) -> Self {
        Self::with_max_packet(inner, DEFAULT_MAX_PACKET)
    }

    /// A writer refusing to send packets longer than `max_packet` bytes.
    pub fn with_max_packet(inner: W, max_packet: usize) -> Self {
        PacketWriter {
            inner,
            buf: BytesMut::new(),
            max_packet,
            _packets: PhantomData,
        }
    }

    /// Encodes, writes and flushes one packet. On an encoding error nothing
    /// is written.
    pub fn write_packet(&mut self, packet: &Out) -> Result<(), StreamError> {
        self.buf.clear();
        encode_line_into(packet, &mut self.buf, self.max_packet)?;
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        // Do not keep a 64 MiB allocation alive because of one big packet.
        if self.buf.capacity() > 64 * 1024 {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    /// The size limit in bytes.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}
