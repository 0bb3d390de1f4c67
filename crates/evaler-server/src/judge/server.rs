//! The listener: address policy, connection limit, and graceful shutdown.
//!
//! As in mini-redis, each accepted socket gets a task and a permit of a
//! semaphore; shutdown is a cancellation token every connection watches, and
//! the server waits (boundedly) for the connection tasks to end before
//! stopping the box threads. Unlike mini-redis, a connection over the limit
//! is not left waiting in the accept backlog: it is told so in an `Error`
//! and closed, so a client can tell "busy" from "hung".

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evaler_sandbox::Sandbox;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::connection::{self, Connection};
use super::pool::{Pool, RunContext, Scheduler};
use super::store::Store;
use super::{JudgeConfig, JudgeError};
use crate::languages::LanguageSet;

/// How long shutdown waits for connections to say goodbye.
const DRAIN: Duration = Duration::from_secs(5);

/// What every connection task shares.
pub(crate) struct Shared {
    pub config: JudgeConfig,
    pub languages: LanguageSet,
    /// `c, cpp17 (cpp), ...` for "unknown language" replies.
    pub known_languages: String,
    pub scheduler: Arc<Scheduler>,
    pub store: Store,
}

/// A judge server: its boxes are open and their threads waiting.
pub struct Judge {
    shared: Arc<Shared>,
    pool: Pool,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("config", &self.shared.config)
            .field("box_uids", &self.pool.uids())
            .finish_non_exhaustive()
    }
}

/// The address policy: a non-loopback address needs a token. Call it before
/// binding to fail with one clear sentence; [`Judge::serve`] checks again.
pub fn check_listen_address(addr: SocketAddr, has_token: bool) -> Result<(), JudgeError> {
    if addr.ip().is_loopback() || has_token {
        Ok(())
    } else {
        Err(JudgeError::TokenRequired { addr })
    }
}

impl Judge {
    /// Opens `config.boxes` boxes of `sandbox` and starts their threads.
    /// Blocking (a few milliseconds per box).
    pub fn new(
        sandbox: &Sandbox,
        languages: LanguageSet,
        config: JudgeConfig,
    ) -> Result<Judge, JudgeError> {
        if config.boxes == 0 {
            return Err(JudgeError::Config("at least one box is needed".into()));
        }
        if config.queue == 0 || config.max_connections == 0 {
            return Err(JudgeError::Config(
                "the queue length and the connection limit must be at least 1".into(),
            ));
        }
        if config.max_packet < 1024 {
            return Err(JudgeError::Config(
                "the packet size limit must be at least 1024 bytes".into(),
            ));
        }
        if let Some(token) = &config.token {
            if token.trim().is_empty() {
                return Err(JudgeError::EmptyToken);
            }
        }
        warn_unreachable_paths(sandbox, &languages);
        // Worst-case JSON escaping is 6 bytes per output byte: keep every
        // TResponse under the packet limit.
        let packet_kib = (config.max_packet / 6 / 1024) as u64;
        let ctx = RunContext {
            output_kib: config.output_kib.min(packet_kib.saturating_sub(1)).max(1),
            file_size_kib: config.file_size_kib.max(1),
            max_submission_bytes: config.max_submission_bytes,
        };
        let pool = Pool::start(
            sandbox,
            config.boxes,
            config.result_window,
            config.max_queued_per_connection,
            config.max_queued,
            ctx,
        )?;
        let known_languages = languages
            .iter()
            .map(|l| match l.aliases.as_slice() {
                [] => l.key.clone(),
                aliases => format!("{} ({})", l.key, aliases.join(", ")),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let store = Store::new(
            config.max_stored,
            config.max_stored_per_connection,
            config.max_submission_bytes,
        );
        tracing::info!(boxes = config.boxes, "judge boxes ready");
        Ok(Judge {
            shared: Arc::new(Shared {
                scheduler: Arc::clone(&pool.scheduler),
                config,
                languages,
                known_languages,
                store,
            }),
            pool,
            next_conn: AtomicU64::new(1),
        })
    }

    /// Host uids of the boxes; a process with one of them is a program of
    /// this judge.
    pub fn box_uids(&self) -> &[u32] {
        self.pool.uids()
    }

    /// The configuration in use.
    pub fn config(&self) -> &JudgeConfig {
        &self.shared.config
    }

    /// Bytes of compiled submissions held right now, all connections.
    pub fn stored_bytes(&self) -> usize {
        self.shared.store.used()
    }

    /// A cheap handle reporting [`Judge::stored_bytes`] after `serve` has
    /// taken the judge.
    pub fn monitor(&self) -> JudgeMonitor {
        JudgeMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts connections until `shutdown` completes, then closes every
    /// connection (queued tests dropped, running ones killed, each client
    /// told "server shutting down"), and stops the boxes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future,
    ) -> Result<(), JudgeError> {
        let addr = listener.local_addr()?;
        check_listen_address(addr, self.shared.config.token.is_some())?;
        tracing::info!(%addr, "judge listening");
        let max = self.shared.config.max_connections;
        let limit = Arc::new(Semaphore::new(max));
        let cancel = CancellationToken::new();
        // Each connection task holds a sender; `recv` returns `None` once
        // they are all gone.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends pass; a judge must not die of them.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                tracing::warn!(%peer, max, "connection refused: at the connection limit");
                let why = format!(
                    "server busy: it already serves its maximum of {max} connections; try again later"
                );
                tokio::spawn(connection::refuse(
                    stream,
                    self.shared.config.max_packet,
                    why,
                ));
                continue;
            };
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let conn = Connection::new(id, stream, peer, Arc::clone(&self.shared));
            let token = cancel.child_token();
            let alive = alive_tx.clone();
            tokio::spawn(async move {
                conn.run(token).await;
                drop(permit);
                drop(alive);
            });
        }
        tracing::info!("judge shutting down");
        drop(listener);
        cancel.cancel();
        drop(alive_tx);
        if tokio::time::timeout(DRAIN, alive_rx.recv()).await.is_err() {
            tracing::warn!("some connections did not close in time");
        }
        let pool = self.pool;
        let _ = tokio::task::spawn_blocking(move || pool.join()).await;
        Ok(())
    }
}

/// Read-only view of a running judge (for tests and monitoring).
#[derive(Clone)]
pub struct JudgeMonitor {
    shared: Arc<Shared>,
}

impl JudgeMonitor {
    /// Bytes of compiled submissions held right now, all connections.
    pub fn stored_bytes(&self) -> usize {
        self.shared.store.used()
    }
}

impl std::fmt::Debug for JudgeMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeMonitor").finish_non_exhaustive()
    }
}

/// Languages may name host paths they need; the sandbox shows only the
/// `/etc` entries of its configuration, so say early which are missing.
fn warn_unreachable_paths(sandbox: &Sandbox, languages: &LanguageSet) {
    for lang in languages {
        for path in &lang.readonly_paths {
            if !etc_entry(path).is_some_and(|e| sandbox.config().etc_allow.iter().any(|a| a == e)) {
                tracing::warn!(
                    language = %lang.key,
                    path = %path.display(),
                    "readonly path is not visible in the sandbox (only /etc entries of its configuration are)"
                );
            }
        }
    }
}

fn etc_entry(path: &std::path::Path) -> Option<&str> {
    let rest = path.strip_prefix("/etc").ok()?.to_str()?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// `base` with the `/etc` entries the languages ask for added to what the
/// sandbox shows, so that a `--languages` file needing, say,
/// `/etc/java-21-openjdk` works without code changes.
pub fn sandbox_config_for(
    languages: &LanguageSet,
    mut base: evaler_sandbox::SandboxConfig,
) -> evaler_sandbox::SandboxConfig {
    for lang in languages {
        for path in &lang.readonly_paths {
            if let Some(entry) = etc_entry(path) {
                if !base.etc_allow.iter().any(|a| a == entry) {
                    base.etc_allow.push(entry.to_string());
                }
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_policy() {
        let lo: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let lo6: SocketAddr = "[::1]:7070".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert!(check_listen_address(lo, false).is_ok());
        assert!(check_listen_address(lo6, false).is_ok());
        assert!(check_listen_address(any, true).is_ok());
        let err = check_listen_address(any, false).unwrap_err();
        assert!(err.to_string().contains("--token-file"), "{err}");
    }

    #[test]
    fn etc_entries() {
        assert_eq!(
            etc_entry("/etc/alternatives".as_ref()),
            Some("alternatives")
        );
        assert_eq!(etc_entry("/etc/a/b".as_ref()), None);
        assert_eq!(etc_entry("/usr/lib".as_ref()), None);
        let set = LanguageSet::bundled().unwrap();
        let mut base = evaler_sandbox::SandboxConfig::default();
        base.etc_allow.clear();
        let cfg = sandbox_config_for(&set, base);
        assert!(cfg.etc_allow.iter().any(|e| e == "java-17-openjdk"));
        assert!(cfg.etc_allow.iter().any(|e| e == "alternatives"));
    }
}
