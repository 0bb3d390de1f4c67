//! Line splitting and the size limit, shared by the async codec and the
//! blocking reader so both enforce exactly the same framing rules.

use bytes::BytesMut;

use crate::{DecodeError, DecodeErrorKind};

/// Splits a byte buffer into packet lines.
///
/// Rules: a line ends at `\n`; one trailing `\r` is removed; lines that are
/// empty or only spaces/tabs/`\r` are skipped; a line longer than `limit`
/// bytes (counting everything before the `\n`) is an error. After that error
/// the rest of the oversized line is discarded as it arrives, so the buffer
/// never holds more than `limit` bytes plus what the last read appended.
#[derive(Debug, Clone)]
pub(crate) struct LineFramer {
    limit: usize,
    /// Prefix of the buffer already known to contain no `\n`, so a long line
    /// arriving in many small reads is scanned once, not quadratically.
    scanned: usize,
    /// Inside an oversized line whose end has not arrived yet.
    discarding: bool,
}

impl LineFramer {
    pub(crate) fn new(limit: usize) -> Self {
        LineFramer {
            limit,
            scanned: 0,
            discarding: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes the next complete, non-blank line out of `buf` (without its
    /// line terminator), or `None` if `buf` holds no complete line yet.
    pub(crate) fn next_line(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<BytesMut>, DecodeError> {
        loop {
            let start = self.scanned.min(buf.len());
            let newline = buf
                .get(start..)
                .and_then(|rest| memchr::memchr(b'\n', rest))
                .map(|i| start + i);
            let Some(newline) = newline else {
                return self.incomplete(buf);
            };
            let mut line = buf.split_to(newline + 1);
            self.scanned = 0;
            fresh_buffer_after(buf, newline);
            if self.discarding {
                // The tail of a line already reported as too large.
                self.discarding = false;
                continue;
            }
            line.truncate(newline);
            if newline > self.limit {
                return Err(too_large(newline, self.limit));
            }
            if let Some(line) = non_blank(line) {
                return Ok(Some(line));
            }
        }
    }

    /// Like [`next_line`](Self::next_line), but at end of input, where a
    /// final line without `\n` still counts as a packet.
    pub(crate) fn last_line(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<BytesMut>, DecodeError> {
        if let Some(line) = self.next_line(buf)? {
            return Ok(Some(line));
        }
        // `next_line` left no `\n` and at most `limit` bytes in `buf`.
        self.scanned = 0;
        if self.discarding {
            self.discarding = false;
            buf.clear();
            return Ok(None);
        }
        Ok(non_blank(buf.split()))
    }

    fn incomplete(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        if self.discarding {
            buf.clear();
            self.scanned = 0;
            return Ok(None);
        }
        if buf.len() > self.limit {
            let size = buf.len();
            buf.clear();
            self.scanned = 0;
            self.discarding = true;
            return Err(too_large(size, self.limit));
        }
        self.scanned = buf.len();
        Ok(None)
    }
}

/// Lines above this size get the buffer after them replaced.
const BIG_LINE: usize = 64 * 1024;

/// After a big line is split off, gives `buf` an allocation of its own,
/// sized for a line like that one.
///
/// Otherwise the rest of the old allocation (which the split-off line still
/// shares) is what the next big line is read into; when that line reaches
/// the end, `BytesMut` makes room by moving everything read so far to the
/// front: a copy of up to a megabyte per packet, the biggest cost of a relay
/// after parsing. Only the few bytes already read of the next line, if any,
/// are copied here.
fn fresh_buffer_after(buf: &mut BytesMut, line: usize) {
    if line > BIG_LINE && buf.len() <= BIG_LINE {
        let mut fresh = BytesMut::with_capacity(line.saturating_add(1).max(buf.len()));
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

fn too_large(size: usize, limit: usize) -> DecodeError {
    DecodeError::new(DecodeErrorKind::TooLarge { size, limit })
}

/// Strips one trailing `\r`; `None` for blank lines.
fn non_blank(mut line: BytesMut) -> Option<BytesMut> {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        None
    } else {
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, DecodeErrorKind>> {
        let mut framer = LineFramer::new(limit);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match framer.last_line(&mut buf) {
                Ok(Some(line)) => out.push(Ok(line.to_vec())),
                Ok(None) => return out,
                Err(e) => out.push(Err(e.kind)),
            }
        }
    }

    #[test]
    fn splits_strips_cr_and_skips_blank_lines() {
        let got = lines(b"a\r\n\n \t\r\n\r\nb\nc", 100);
        assert_eq!(
            got,
            vec![Ok(b"a".to_vec()), Ok(b"b".to_vec()), Ok(b"c".to_vec())]
        );
    }

    #[test]
    fn only_one_cr_is_stripped() {
        assert_eq!(lines(b"a\r\r\n", 100), vec![Ok(b"a\r".to_vec())]);
    }

    #[test]
    fn limit_counts_bytes_before_newline() {
        assert_eq!(lines(b"abcd\n", 4), vec![Ok(b"abcd".to_vec())]);
        assert_eq!(
            lines(b"abcde\nxy\n", 4),
            vec![
                Err(DecodeErrorKind::TooLarge { size: 5, limit: 4 }),
                Ok(b"xy".to_vec())
            ]
        );
    }

    #[test]
    fn oversized_partial_line_is_discarded_in_pieces() {
        let mut framer = LineFramer::new(4);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert!(framer.next_line(&mut buf).is_err());
        assert!(buf.is_empty());
        buf.extend_from_slice(b"ghij");
        assert_eq!(framer.next_line(&mut buf), Ok(None));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"kl\nok\n");
        assert_eq!(
            framer.next_line(&mut buf).map(|l| l.map(|l| l.to_vec())),
            Ok(Some(b"ok".to_vec()))
        );
    }

    #[test]
    fn discarded_tail_at_eof_yields_nothing() {
        let mut framer = LineFramer::new(2);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert!(framer.next_line(&mut buf).is_err());
        buf.extend_from_slice(b"more");
        assert_eq!(framer.last_line(&mut buf), Ok(None));
    }
}
