//! Async client of the judge protocol (`docs/PROTOCOL.md`, "Judge
//! protocol").
//!
//! One [`JudgeClient`] is one connection. Requests are written by a
//! background writer task; a background reader task routes each reply to
//! the future waiting for it: a `CResponse` by `id`, a `TResponse` by
//! `(id, tid)` (by `tid` alone when the server leaves `id` out), an `Error`
//! by the `id`/`tid` it carries. So any number of [`JudgeClient::test`]
//! futures can be in flight and complete in whatever order the server
//! finishes them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), evaler_client::judge::ClientError> {
//! use evaler_client::judge::JudgeClient;
//! use evaler_proto::Test;
//!
//! let client = JudgeClient::connect("127.0.0.1:7070").await?;
//! let compiled = client
//!     .compile(1, "cpp", "#include <cstdio>\nint main(){puts(\"hi\");}")
//!     .await?;
//! assert!(compiled.success, "{}", compiled.output);
//! client.assign(4).await?;
//! let tests = (0..10).map(|tid| {
//!     client.test(Test {
//!         id: 1,
//!         tid,
//!         filename: "input".into(),
//!         timelimit: 1.0,
//!         memorylimit: 262144,
//!         ..Test::default()
//!     })
//! });
//! for result in futures::future::join_all(tests).await {
//!     println!("{:?}", result?.verdict);
//! }
//! # Ok(()) }
//! ```
//!
//! **When the server goes away** (it closes the connection, the connection
//! breaks, or it sends a packet over the size limit), every pending future
//! resolves to [`ClientError::Disconnected`], and so does every later
//! request. [`JudgeClient::disconnect_reason`] then says why, including the
//! server's last unrouted `Error` (e.g. "authentication failed").
//!
//! **Errors the server sends** become [`ClientError::Server`] on the future
//! they name. An `Error` that names no pending request (a bad `Assign`, for
//! instance) is reported as a [`ClientEvent`] on the channel returned by
//! [`JudgeClient::events`] (bounded; events are dropped, never buffered
//! without limit, when nobody reads them).
//!
//! Everything read is capped: packets by the codec's size limit
//! ([`ClientOptions::max_packet`]), events by their channel's capacity.
//! Nothing here panics on what the server sends.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use evaler_proto::{
    encode_line, Assign, Auth, CResponse, Compile, DecodeError, EncodeError, ErrorPacket,
    JudgeClientCodec, JudgeReply, JudgeRequest, QLen, SRemove, StreamError, TResponse, Test,
    ValidationError,
};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

/// Requests buffered for the writer task before callers wait.
const WRITE_QUEUE: usize = 1024;
/// Unrouted events kept for [`JudgeClient::events`].
const EVENT_QUEUE: usize = 256;

/// What can go wrong with one request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to the judge server at {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
    /// The server answered this request with an `Error`.
    #[error("judge server error: {}", .0.value)]
    Server(ErrorPacket),
    /// The server's reply to this request could not be decoded.
    #[error("malformed reply from the judge server: {0}")]
    BadReply(DecodeError),
    /// The request was not sent: its limits are invalid.
    #[error("invalid request: {0}")]
    Invalid(ValidationError),
    /// The request was not sent: it cannot be encoded (too large, or a
    /// non-finite number).
    #[error("cannot send request: {0}")]
    Encode(EncodeError),
    /// A `Compile` with this id is already waiting for its `CResponse`; the
    /// replies could not be told apart.
    #[error("a Compile with id {0} is already waiting for its reply")]
    DuplicateCompile(i64),
    /// The connection is gone; see [`JudgeClient::disconnect_reason`].
    #[error("disconnected from the judge server")]
    Disconnected,
}

/// Something the server sent that no pending request was waiting for.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// An `Error` naming no pending request.
    Error(ErrorPacket),
    /// A `CResponse` or `TResponse` nobody waits for (the future was
    /// dropped, or the server sent a reply twice).
    Unexpected(JudgeReply),
    /// A line the client could not decode and could not route.
    BadPacket(DecodeError),
    /// The connection ended; the text says why.
    Disconnected(String),
}

/// Connection settings.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Sent as `Auth`, first, when set.
    pub token: Option<String>,
    /// Packet size limit both ways, bytes; 0 means
    /// [`evaler_proto::DEFAULT_MAX_PACKET`].
    pub max_packet: usize,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_packet", &self.max_packet)
            .finish()
    }
}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

#[derive(Default)]
struct Pending {
    closed: bool,
    reason: Option<String>,
    /// The last `Error` nobody waited for: often why the server closed.
    last_error: Option<String>,
    compiles: HashMap<i64, VecDeque<Reply<CResponse>>>,
    tests: HashMap<(i64, i64), VecDeque<Reply<TResponse>>>,
}

struct Shared {
    pending: Mutex<Pending>,
    events: mpsc::Sender<ClientEvent>,
}

fn lock(m: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pop<K: std::hash::Hash + Eq, T>(map: &mut HashMap<K, VecDeque<T>>, key: &K) -> Option<T> {
    let queue = map.get_mut(key)?;
    let first = queue.pop_front();
    if queue.is_empty() {
        map.remove(key);
    }
    first
}

impl Shared {
    fn event(&self, event: ClientEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("judge client event dropped (nobody reads the events)");
        }
    }

    /// Fails everything pending, and everything after, with `Disconnected`.
    fn close(&self, reason: String) {
        let (compiles, tests) = {
            let mut p = lock(&self.pending);
            if p.closed {
                return;
            }
            p.closed = true;
            let reason = match &p.last_error {
                Some(e) => format!("{reason} (the server's last error: {e})"),
                None => reason,
            };
            p.reason = Some(reason.clone());
            self.event(ClientEvent::Disconnected(reason));
            (
                std::mem::take(&mut p.compiles),
                std::mem::take(&mut p.tests),
            )
        };
        for reply in compiles.into_values().flatten() {
            let _ = reply.send(Err(ClientError::Disconnected));
        }
        for reply in tests.into_values().flatten() {
            let _ = reply.send(Err(ClientError::Disconnected));
        }
    }

    fn take_test(p: &mut Pending, id: Option<i64>, tid: i64) -> Option<Reply<TResponse>> {
        let key = match id {
            Some(id) => (id, tid),
            None => *p.tests.keys().find(|(_, t)| *t == tid)?,
        };
        pop(&mut p.tests, &key)
    }

    fn route(&self, reply: JudgeReply) {
        let mut p = lock(&self.pending);
        match reply {
            JudgeReply::CResponse(c) => match pop(&mut p.compiles, &c.id) {
                Some(tx) => {
                    drop(p);
                    let _ = tx.send(Ok(c));
                }
                None => {
                    drop(p);
                    self.event(ClientEvent::Unexpected(JudgeReply::CResponse(c)));
                }
            },
            JudgeReply::TResponse(t) => match Self::take_test(&mut p, t.id, t.tid) {
                Some(tx) => {
                    drop(p);
                    let _ = tx.send(Ok(t));
                }
                None => {
                    drop(p);
                    self.event(ClientEvent::Unexpected(JudgeReply::TResponse(t)));
                }
            },
            JudgeReply::Error(e) => {
                if let Some(tid) = e.tid {
                    if let Some(tx) = Self::take_test(&mut p, e.id, tid) {
                        drop(p);
                        let _ = tx.send(Err(ClientError::Server(e)));
                        return;
                    }
                } else if let Some(tx) = e.id.and_then(|id| pop(&mut p.compiles, &id)) {
                    drop(p);
                    let _ = tx.send(Err(ClientError::Server(e)));
                    return;
                }
                p.last_error = Some(e.value.clone());
                drop(p);
                self.event(ClientEvent::Error(e));
            }
        }
    }

    fn route_bad(&self, err: DecodeError) {
        let mut p = lock(&self.pending);
        if let Some(tid) = err.tid {
            if let Some(tx) = Self::take_test(&mut p, err.id, tid) {
                drop(p);
                let _ = tx.send(Err(ClientError::BadReply(err)));
                return;
            }
        } else if let Some(tx) = err.id.and_then(|id| pop(&mut p.compiles, &id)) {
            drop(p);
            let _ = tx.send(Err(ClientError::BadReply(err)));
            return;
        }
        drop(p);
        self.event(ClientEvent::BadPacket(err));
    }
}

/// Aborts the reader when the last client handle goes; the writer ends by
/// itself when its channel closes, after writing what was queued.
struct Tasks {
    reader: JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A connection to a judge server. Cheap to clone; the connection closes
/// when the last clone is dropped (the server then cancels its queued tests
/// and kills its running ones).
#[derive(Clone)]
pub struct JudgeClient {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Vec<u8>>,
    max_packet: usize,
    events: Arc<Mutex<Option<mpsc::Receiver<ClientEvent>>>>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for JudgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeClient")
            .field("closed", &lock(&self.shared.pending).closed)
            .finish_non_exhaustive()
    }
}

impl JudgeClient {
    /// Connects over TCP (loopback servers need no token).
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects and authenticates with `token` (servers on non-loopback
    /// addresses require it). A wrong token shows as the first request
    /// failing with [`ClientError::Disconnected`] and
    /// [`JudgeClient::disconnect_reason`] naming the server's `Error`.
    pub async fn connect_with_token(
        addr: impl ToSocketAddrs + std::fmt::Display,
        token: impl Into<String>,
    ) -> Result<Self, ClientError> {
        let options = ClientOptions {
            token: Some(token.into()),
            ..ClientOptions::default()
        };
        Self::connect_with(addr, options).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let shown = addr.to_string();
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: shown,
                source,
            })?;
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Self::new(stream, options).await
    }

    /// A client over any byte stream (a Unix socket, an in-memory pipe).
    /// Must be called inside a tokio runtime: it spawns the reader and
    /// writer tasks.
    pub async fn new<T>(io: T, options: ClientOptions) -> Result<Self, ClientError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let max_packet = match options.max_packet {
            0 => evaler_proto::DEFAULT_MAX_PACKET,
            n => n,
        };
        let (read, write) = tokio::io::split(io);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            events: events_tx,
        });
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(write, queue, Arc::clone(&shared)));
        let reader = tokio::spawn(read_loop(
            FramedRead::new(read, JudgeClientCodec::with_max_packet(max_packet)),
            Arc::clone(&shared),
        ));
        let client = JudgeClient {
            shared,
            writer,
            max_packet,
            events: Arc::new(Mutex::new(Some(events_rx))),
            _tasks: Arc::new(Tasks { reader }),
        };
        if let Some(token) = options.token {
            client.send(&JudgeRequest::Auth(Auth { token })).await?;
        }
        Ok(client)
    }

    /// The channel of [`ClientEvent`]s; `Some` the first time only.
    pub fn events(&self) -> Option<mpsc::Receiver<ClientEvent>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.pending).closed
    }

    /// Why the connection ended, once it has.
    pub fn disconnect_reason(&self) -> Option<String> {
        lock(&self.shared.pending).reason.clone()
    }

    async fn send(&self, request: &JudgeRequest) -> Result<(), ClientError> {
        let line = encode_line(request, self.max_packet).map_err(ClientError::Encode)?;
        self.writer
            .send(line)
            .await
            .map_err(|_| ClientError::Disconnected)
    }

    /// Compiles a submission; `Ok` carries the `CResponse` whether or not
    /// compilation succeeded (see `success`, `output`, `other`).
    pub async fn compile(&self, id: i64, lang: &str, code: &str) -> Result<CResponse, ClientError> {
        let request = JudgeRequest::Compile(Compile {
            code: code.to_string(),
            lang: lang.to_string(),
            id,
        });
        let line = encode_line(&request, self.max_packet).map_err(ClientError::Encode)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.shared.pending);
            if p.closed {
                return Err(ClientError::Disconnected);
            }
            let queue = p.compiles.entry(id).or_default();
            if !queue.is_empty() {
                return Err(ClientError::DuplicateCompile(id));
            }
            queue.push_back(tx);
        }
        if self.writer.send(line).await.is_err() {
            self.shared.close("the writer stopped".into());
        }
        rx.await.unwrap_or(Err(ClientError::Disconnected))
    }

    /// Runs one test; resolves when its `TResponse` (or an `Error` naming
    /// it) arrives. Limits are checked before sending.
    pub async fn test(&self, test: Test) -> Result<TResponse, ClientError> {
        test.validate().map_err(ClientError::Invalid)?;
        let key = (test.id, test.tid);
        let line =
            encode_line(&JudgeRequest::Test(test), self.max_packet).map_err(ClientError::Encode)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.shared.pending);
            if p.closed {
                return Err(ClientError::Disconnected);
            }
            p.tests.entry(key).or_default().push_back(tx);
        }
        if self.writer.send(line).await.is_err() {
            self.shared.close("the writer stopped".into());
        }
        rx.await.unwrap_or(Err(ClientError::Disconnected))
    }

    /// `Assign`: how many of this connection's tests may run at once (the
    /// server caps it by its boxes; 0 restores the default of 1).
    pub async fn assign(&self, count: u32) -> Result<(), ClientError> {
        self.send(&JudgeRequest::Assign(Assign {
            count: i64::from(count),
        }))
        .await
    }

    /// `QLen`: how many of this connection's requests may wait for a box
    /// (0 restores the server's default).
    pub async fn qlen(&self, length: u32) -> Result<(), ClientError> {
        self.send(&JudgeRequest::QLen(QLen {
            length: i64::from(length),
        }))
        .await
    }

    /// `SRemove`: the submission is no longer needed.
    pub async fn remove(&self, id: i64) -> Result<(), ClientError> {
        self.send(&JudgeRequest::SRemove(SRemove { id })).await
    }
}

async fn write_loop<W: AsyncWrite>(
    write: W,
    mut queue: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut write = std::pin::pin!(write);
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        // Coalesce what is already queued into one write.
        while batch.len() < 1 << 20 {
            match queue.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = write.write_all(&batch).await {
            shared.close(format!("writing to the server failed: {e}"));
            return;
        }
    }
    let _ = write.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut framed: FramedRead<R, JudgeClientCodec>,
    shared: Arc<Shared>,
) {
    let reason = loop {
        match framed.next().await {
            None => break "the server closed the connection".to_string(),
            Some(Ok(Ok(reply))) => shared.route(reply),
            Some(Ok(Err(bad))) => shared.route_bad(bad),
            Some(Err(StreamError::Decode(e))) => {
                break format!("the server sent a packet over the size limit: {e}")
            }
            Some(Err(e)) => break format!("reading from the server failed: {e}"),
        }
    };
    shared.close(reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    /// A client on one end of a pipe; the test plays the server.
    async fn pair() -> (
        JudgeClient,
        tokio::io::Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
        tokio::io::WriteHalf<DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = JudgeClient::new(a, ClientOptions::default()).await.unwrap();
        let (r, w) = tokio::io::split(b);
        (client, BufReader::new(r).lines(), w)
    }

    fn test_packet(id: i64, tid: i64) -> Test {
        Test {
            id,
            tid,
            filename: "input".into(),
            timelimit: 1.0,
            ..Test::default()
        }
    }

    #[tokio::test]
    async fn routes_out_of_order_replies_and_errors() {
        let (client, mut lines, mut server) = pair().await;
        let mut events = client.events().unwrap();
        assert!(client.events().is_none());
        let c = client.clone();
        let run = tokio::spawn(async move {
            let compile = c.compile(7, "cpp", "int main(){}");
            let t1 = c.test(test_packet(7, 1));
            let t2 = c.test(test_packet(7, 2));
            let t3 = c.test(test_packet(8, 1));
            tokio::join!(compile, t1, t2, t3)
        });
        let mut seen = Vec::new();
        for _ in 0..4 {
            let line = lines.next_line().await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            seen.push(v["type"].as_str().unwrap().to_string());
        }
        seen.sort();
        assert_eq!(seen, ["Compile", "Test", "Test", "Test"]);
        let replies = concat!(
            r#"{"type":"TResponse","tid":2,"output":"b","time":0,"memory":1,"status":0,"comments":"","id":7}"#,
            "\n",
            r#"{"type":"Error","value":"unknown submission id 8","id":8,"tid":1}"#,
            "\n",
            r#"{"type":"Error","value":"stray"}"#,
            "\n",
            r#"{"type":"Nonsense","tid":99}"#,
            "\n",
            r#"{"type":"CResponse","id":7,"output":"","success":true,"other":""}"#,
            "\n",
            r#"{"type":"TResponse","tid":1,"output":"a","time":0,"memory":1,"status":0,"comments":""}"#,
            "\n",
        );
        server.write_all(replies.as_bytes()).await.unwrap();
        let (compile, t1, t2, t3) = run.await.unwrap();
        assert!(compile.unwrap().success);
        assert_eq!(t1.unwrap().output, "a", "routed by tid alone");
        assert_eq!(t2.unwrap().output, "b");
        match t3 {
            Err(ClientError::Server(e)) => assert_eq!(e.value, "unknown submission id 8"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            events.recv().await,
            Some(ClientEvent::Error(ErrorPacket::new("stray")))
        );
        assert!(matches!(
            events.recv().await,
            Some(ClientEvent::BadPacket(_))
        ));
    }

    #[tokio::test]
    async fn disconnect_fails_pending_and_later_requests() {
        let (client, mut lines, server) = pair().await;
        let c = client.clone();
        let pending = tokio::spawn(async move { c.test(test_packet(1, 1)).await });
        let _ = lines.next_line().await.unwrap();
        drop(server);
        drop(lines);
        assert!(matches!(
            pending.await.unwrap(),
            Err(ClientError::Disconnected)
        ));
        assert!(matches!(
            client.compile(2, "c", "").await,
            Err(ClientError::Disconnected)
        ));
        assert!(client.is_closed());
        assert!(client.disconnect_reason().unwrap().contains("closed"));
    }

    #[tokio::test]
    async fn local_checks() {
        let (client, _lines, _server) = pair().await;
        let mut bad = test_packet(1, 1);
        bad.timelimit = -1.0;
        assert!(matches!(
            client.test(bad).await,
            Err(ClientError::Invalid(_))
        ));
        bad = test_packet(1, 1);
        bad.timelimit = f64::INFINITY;
        assert!(matches!(
            client.test(bad).await,
            Err(ClientError::Invalid(_))
        ));
        let c = client.clone();
        let first = tokio::spawn(async move { c.compile(3, "c", "").await });
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if !lock(&client.shared.pending).compiles.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            client.compile(3, "c", "").await,
            Err(ClientError::DuplicateCompile(3))
        ));
        first.abort();
    }

    #[tokio::test]
    async fn oversized_server_packet_disconnects() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let options = ClientOptions {
            max_packet: 1024,
            ..ClientOptions::default()
        };
        let client = JudgeClient::new(a, options).await.unwrap();
        let (_r, mut w) = tokio::io::split(b);
        let c = client.clone();
        let pending = tokio::spawn(async move { c.test(test_packet(1, 1)).await });
        let big = format!(
            "{{\"type\":\"Error\",\"value\":\"{}\"}}\n",
            "x".repeat(4096)
        );
        w.write_all(big.as_bytes()).await.unwrap();
        assert!(matches!(
            pending.await.unwrap(),
            Err(ClientError::Disconnected)
        ));
        assert!(client.disconnect_reason().unwrap().contains("size limit"));
        // Requests over the limit are refused before sending.
        let huge = "y".repeat(2048);
        assert!(matches!(
            client.compile(1, "c", &huge).await,
            Err(ClientError::Encode(_))
        ));
    }
}
