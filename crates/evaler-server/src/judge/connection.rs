//! One client connection: the judge protocol's state machine.
//!
//! The connection task is the only owner of the client's socket and of its
//! submissions, so none of that needs a lock. It waits on three things:
//! server shutdown, results coming back from the boxes, and the next packet.
//! Replies are written in batches; while a write is blocked on a client that
//! does not read, nothing else of this connection moves (and the scheduler
//! stops giving it boxes), but no other connection notices.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use evaler_proto::{
    CResponse, Compile, ErrorPacket, JudgeReply, JudgeRequest, JudgeServerCodec, StreamError, Test,
};
use futures::{SinkExt, StreamExt};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::compile::{self, CompileDone, CompileJob};
use super::pool::{ConnCtl, ConnId, Job, JobDone, Work};
use super::server::Shared;
use super::shorten;
use super::store::{ConnectionStore, Submission};
use super::test_run::{self, TestJob, TestLimits};
use super::MAX_QUEUE;

/// Results written per batch before the socket is flushed.
const BATCH: usize = 64;
/// How long a closing connection spends telling the client why.
const GOODBYE: Duration = Duration::from_secs(1);

type Transport = Framed<TcpStream, JudgeServerCodec>;

/// A submission id's state on this connection.
enum Entry {
    /// Compiling; tests that arrived meanwhile wait here, counted in the
    /// queue bound, until the result decides between queueing them and
    /// answering `Error`.
    Compiling {
        seq: u64,
        waiting: Vec<Held>,
    },
    Ready(Arc<Submission>),
}

/// A test waiting for its submission's compile.
struct Held {
    tid: i64,
    input: String,
    file: Option<String>,
    limits: TestLimits,
}

pub(crate) struct Connection {
    id: ConnId,
    peer: SocketAddr,
    framed: Transport,
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    done_rx: UnboundedReceiver<JobDone>,
    subs: HashMap<i64, Entry>,
    /// Tests in `Entry::Compiling::waiting`, all submissions together.
    held: usize,
    held_bytes: usize,
    qlen: usize,
    next_seq: u64,
    store: ConnectionStore,
    out: Vec<JudgeReply>,
}

/// Leaves the scheduler however the connection ends (including a panic of
/// its task): queued jobs are dropped and running ones killed.
impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.scheduler.close(self.id);
        tracing::info!(conn = self.id, peer = %self.peer, "judge connection closed");
    }
}

enum Event {
    Shutdown,
    Done(Option<JobDone>),
    Packet(Option<Result<Result<JudgeRequest, evaler_proto::DecodeError>, StreamError>>),
}

impl Connection {
    pub fn new(id: ConnId, stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        let (done_tx, done_rx) = unbounded_channel();
        let ctl = shared.scheduler.register(id, done_tx);
        let codec = JudgeServerCodec::with_max_packet(shared.config.max_packet);
        let qlen = shared.config.queue;
        tracing::info!(conn = id, %peer, "judge connection opened");
        Connection {
            id,
            peer,
            framed: Framed::new(stream, codec),
            shared,
            ctl,
            done_rx,
            subs: HashMap::new(),
            held: 0,
            held_bytes: 0,
            qlen,
            next_seq: 0,
            store: ConnectionStore::default(),
            out: Vec::new(),
        }
    }

    /// Serves the client until it leaves, breaks the protocol fatally, or
    /// the server shuts down.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if let Some(token) = self.shared.config.token.clone() {
            if !self.authenticate(token.as_bytes(), &shutdown).await {
                return;
            }
        }
        loop {
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Event::Shutdown,
                done = self.done_rx.recv() => Event::Done(done),
                packet = self.framed.next() => Event::Packet(packet),
            };
            let mut results = 0;
            match event {
                Event::Shutdown => {
                    self.goodbye(ErrorPacket::new("server shutting down")).await;
                    return;
                }
                // The scheduler keeps the sender until `close`.
                Event::Done(None) => return,
                Event::Done(Some(done)) => {
                    self.on_done(done);
                    results = 1;
                    while results < BATCH {
                        let Ok(done) = self.done_rx.try_recv() else {
                            break;
                        };
                        self.on_done(done);
                        results += 1;
                    }
                }
                Event::Packet(None) => {
                    tracing::debug!(conn = self.id, "client closed its side");
                    return;
                }
                Event::Packet(Some(Err(StreamError::Decode(e)))) => {
                    // Too large: the rest of the line cannot be trusted.
                    self.goodbye(e.to_error_packet()).await;
                    return;
                }
                Event::Packet(Some(Err(e))) => {
                    tracing::debug!(conn = self.id, error = %e, "connection failed");
                    return;
                }
                Event::Packet(Some(Ok(Err(e)))) => self.out.push(JudgeReply::from(&e)),
                Event::Packet(Some(Ok(Ok(request)))) => self.on_request(request),
            }
            if !self.out.is_empty() {
                let written = tokio::select! {
                    r = self.flush() => r,
                    _ = shutdown.cancelled() => return,
                };
                if let Err(e) = written {
                    tracing::debug!(conn = self.id, error = %e, "cannot write to client");
                    return;
                }
            }
            self.shared.scheduler.delivered(self.id, results);
        }
    }

    /// The first packet must be `Auth` with the right token; anything else
    /// gets one `Error` and the connection is closed.
    async fn authenticate(&mut self, token: &[u8], shutdown: &CancellationToken) -> bool {
        let first = tokio::select! {
            first = tokio::time::timeout(self.shared.config.auth_timeout, self.framed.next()) => first,
            _ = shutdown.cancelled() => return false,
        };
        let refusal = match first {
            Ok(Some(Ok(Ok(JudgeRequest::Auth(auth))))) => {
                if token_matches(auth.token.as_bytes(), token) {
                    return true;
                }
                "authentication failed: wrong token"
            }
            Ok(Some(Ok(_))) => "authentication required: the first packet must be Auth",
            Ok(Some(Err(StreamError::Decode(e)))) => {
                self.goodbye(e.to_error_packet()).await;
                return false;
            }
            Ok(Some(Err(_)) | None) => return false,
            Err(_) => "authentication required: no Auth packet in time",
        };
        tracing::info!(conn = self.id, peer = %self.peer, "{refusal}");
        self.goodbye(ErrorPacket::new(refusal)).await;
        false
    }

    /// Sends a last `Error`, then closes gently: our side first, then the
    /// client's bytes are drained for a moment so that closing with unread
    /// data (which makes the kernel send a reset) does not destroy the
    /// `Error` before the client reads it.
    async fn goodbye(&mut self, error: ErrorPacket) {
        self.out.push(JudgeReply::Error(error));
        let _ = tokio::time::timeout(GOODBYE, async {
            let _ = self.flush().await;
            let stream = self.framed.get_mut();
            let _ = stream.shutdown().await;
            let mut sink = vec![0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    async fn flush(&mut self) -> Result<(), StreamError> {
        for reply in std::mem::take(&mut self.out) {
            let fallback = too_large_fallback(&reply);
            match self.framed.feed(reply).await {
                Ok(()) => {}
                Err(StreamError::Encode(e)) => {
                    tracing::warn!(conn = self.id, error = %e, "reply too large to send");
                    self.framed.feed(fallback).await?;
                }
                Err(e) => return Err(e),
            }
        }
        SinkExt::<JudgeReply>::flush(&mut self.framed).await
    }

    fn error(&mut self, value: String, id: Option<i64>, tid: Option<i64>) {
        self.out
            .push(JudgeReply::Error(ErrorPacket { value, id, tid }));
    }

    fn on_request(&mut self, request: JudgeRequest) {
        match request {
            JudgeRequest::Compile(c) => self.compile(c),
            JudgeRequest::Test(t) => self.test(t),
            JudgeRequest::SRemove(r) => self.remove(r.id),
            JudgeRequest::Assign(a) => match a.validate() {
                Err(e) => self.error(e.to_string(), None, None),
                Ok(()) => {
                    let count = usize::try_from(a.count).unwrap_or(usize::MAX);
                    let used = self.shared.scheduler.set_assign(self.id, count);
                    tracing::debug!(conn = self.id, asked = a.count, used, "Assign");
                }
            },
            JudgeRequest::QLen(q) => match q.validate() {
                Err(e) => self.error(e.to_string(), None, None),
                Ok(()) => {
                    let length = usize::try_from(q.length).unwrap_or(usize::MAX);
                    self.qlen = match length {
                        0 => self.shared.config.queue,
                        n => n.min(MAX_QUEUE),
                    };
                }
            },
            // Already authenticated, or no token is configured.
            JudgeRequest::Auth(_) => {}
        }
    }

    fn compile(&mut self, c: Compile) {
        let id = c.id;
        if self.subs.contains_key(&id) {
            return self.error(
                format!("submission id {id} is already in use on this connection; send SRemove {id} before reusing it"),
                Some(id),
                None,
            );
        }
        let Some(lang) = self.shared.languages.get(&c.lang) else {
            let other = format!(
                "unknown language \"{}\"; known languages: {}",
                shorten(&c.lang),
                self.shared.known_languages
            );
            self.out.push(JudgeReply::CResponse(CResponse {
                id,
                output: String::new(),
                success: false,
                other,
                time: None,
            }));
            return;
        };
        let lang = Arc::new(lang.clone());
        self.next_seq += 1;
        let seq = self.next_seq;
        if lang.compile.is_none() {
            // Nothing to run: the source is the submission.
            let files = compile::source_only(&lang, c.code);
            let mut done = CompileJob {
                id,
                seq,
                lang,
                code: String::new(),
            }
            .failed("");
            done.response.success = true;
            done.response.time = Some(0.0);
            done.files = Some(files);
            self.subs.insert(
                id,
                Entry::Compiling {
                    seq,
                    waiting: Vec::new(),
                },
            );
            return self.compiled(done);
        }
        let job = Job {
            ctl: Arc::clone(&self.ctl),
            bytes: c.code.len(),
            work: Work::Compile(CompileJob {
                id,
                seq,
                lang,
                code: c.code,
            }),
        };
        match self
            .shared
            .scheduler
            .submit(job, Some((self.held, self.qlen)))
        {
            Ok(()) => {
                self.subs.insert(
                    id,
                    Entry::Compiling {
                        seq,
                        waiting: Vec::new(),
                    },
                );
            }
            Err(why) => self.error(format!("Compile {id} not queued: {why}"), Some(id), None),
        }
    }

    fn test(&mut self, t: Test) {
        let (id, tid) = (t.id, t.tid);
        let checked = test_run::resolve_limits(&t, &self.shared.config)
            .and_then(|limits| Ok((limits, test_run::input_file(&t)?)));
        let (limits, file) = match checked {
            Ok(x) => x,
            Err(why) => return self.error(why, Some(id), Some(tid)),
        };
        let max_held_bytes = self.shared.config.max_queued_per_connection;
        match self.subs.get_mut(&id) {
            None => self.error(
                format!("unknown submission id {id} (test {tid}): it was never compiled on this connection, failed to compile, or was removed"),
                Some(id),
                Some(tid),
            ),
            Some(Entry::Compiling { waiting, .. }) => {
                let bytes = t.input.len();
                let waiting_now = self.shared.scheduler.queued(self.id) + self.held;
                if waiting_now >= self.qlen {
                    let why = super::pool::Rejected::QueueFull { limit: self.qlen };
                    return self.error(format!("Test {tid} not queued: {why}"), Some(id), Some(tid));
                }
                if self.held_bytes + bytes > max_held_bytes {
                    let why = super::pool::Rejected::ConnectionBytes { limit: max_held_bytes };
                    return self.error(format!("Test {tid} not queued: {why}"), Some(id), Some(tid));
                }
                waiting.push(Held {
                    tid,
                    input: t.input,
                    file,
                    limits,
                });
                self.held += 1;
                self.held_bytes += bytes;
            }
            Some(Entry::Ready(sub)) => {
                let sub = Arc::clone(sub);
                let held = Held {
                    tid,
                    input: t.input,
                    file,
                    limits,
                };
                self.enqueue(sub, held, true);
            }
        }
    }

    /// Queues a test of a compiled submission; `bounded` applies `QLen`
    /// (tests released after a compile were already counted while held).
    fn enqueue(&mut self, sub: Arc<Submission>, held: Held, bounded: bool) {
        let (id, tid) = (sub.id, held.tid);
        if let Some(name) = &held.file {
            if sub.has_file(name) {
                return self.error(
                    format!("filename {:?} is a file of submission {id}; choose another name for the input", shorten(name)),
                    Some(id),
                    Some(tid),
                );
            }
        }
        let job = Job {
            ctl: Arc::clone(&self.ctl),
            bytes: held.input.len(),
            work: Work::Test(TestJob {
                sub,
                tid,
                input: held.input,
                file: held.file,
                limits: held.limits,
            }),
        };
        let bound = bounded.then_some((self.held, self.qlen));
        if let Err(why) = self.shared.scheduler.submit(job, bound) {
            self.error(format!("Test {tid} not queued: {why}"), Some(id), Some(tid));
        }
    }

    fn remove(&mut self, id: i64) {
        if let Some(Entry::Compiling { waiting, .. }) = self.subs.remove(&id) {
            for h in waiting {
                self.held -= 1;
                self.held_bytes -= h.input.len();
                self.error(
                    format!(
                        "Test {} not run: submission {id} was removed before it finished compiling",
                        h.tid
                    ),
                    Some(id),
                    Some(h.tid),
                );
            }
        }
    }

    fn on_done(&mut self, done: JobDone) {
        match done {
            JobDone::Tested(r) => self.out.push(JudgeReply::TResponse(*r)),
            JobDone::Compiled(c) => self.compiled(c),
        }
    }

    fn compiled(&mut self, done: CompileDone) {
        let CompileDone {
            id,
            seq,
            lang,
            mut response,
            files,
        } = done;
        let current =
            matches!(self.subs.get(&id), Some(Entry::Compiling { seq: s, .. }) if *s == seq);
        if !current {
            // Removed while compiling: answer, keep nothing.
            self.out.push(JudgeReply::CResponse(response));
            return;
        }
        let waiting = match self.subs.remove(&id) {
            Some(Entry::Compiling { waiting, .. }) => waiting,
            _ => Vec::new(),
        };
        self.held -= waiting.len();
        self.held_bytes -= waiting.iter().map(|h| h.input.len()).sum::<usize>();
        let sub = match (response.success, files) {
            (true, Some(files)) => match self.shared.store.admit(&self.store, id, lang, files) {
                Ok(sub) => Some(Arc::new(sub)),
                Err(e) => {
                    response.success = false;
                    response.other = e.to_string();
                    None
                }
            },
            _ => {
                response.success = false;
                None
            }
        };
        self.out.push(JudgeReply::CResponse(response));
        match sub {
            Some(sub) => {
                self.subs.insert(id, Entry::Ready(Arc::clone(&sub)));
                for held in waiting {
                    self.enqueue(Arc::clone(&sub), held, false);
                }
            }
            None => {
                for h in waiting {
                    self.error(
                        format!("Test {} not run: submission {id} failed to compile", h.tid),
                        Some(id),
                        Some(h.tid),
                    );
                }
            }
        }
    }
}

/// Compares in time that depends only on the configured token's length.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    let mut same = subtle::Choice::from(u8::from(given.len() == expected.len()));
    for (i, e) in expected.iter().enumerate() {
        same &= given.get(i).copied().unwrap_or(0).ct_eq(e);
    }
    same.into()
}

/// What to send when a reply cannot be encoded within the packet limit.
fn too_large_fallback(reply: &JudgeReply) -> JudgeReply {
    let (id, tid) = match reply {
        JudgeReply::TResponse(t) => (t.id, Some(t.tid)),
        JudgeReply::CResponse(c) => (Some(c.id), None),
        JudgeReply::Error(e) => (e.id, e.tid),
    };
    JudgeReply::Error(ErrorPacket {
        value: "the reply to this request is larger than the packet size limit and was dropped"
            .into(),
        id,
        tid,
    })
}

/// Tells a connection over the limit why it is closed.
pub(crate) async fn refuse(stream: TcpStream, max_packet: usize, why: String) {
    let mut framed = Framed::new(stream, JudgeServerCodec::with_max_packet(max_packet));
    let _ = tokio::time::timeout(GOODBYE, async {
        let _ = framed.send(JudgeReply::Error(ErrorPacket::new(why))).await;
        let stream = framed.get_mut();
        let _ = stream.shutdown().await;
        let mut sink = vec![0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"secret", b"secret"));
        assert!(!token_matches(b"secreT", b"secret"));
        assert!(!token_matches(b"secret!", b"secret"));
        assert!(!token_matches(b"secre", b"secret"));
        assert!(!token_matches(b"", b"secret"));
    }
}
