//! Interactive sessions: notebook-style interpreters that keep their state
//! from one cell to the next, each in its own sandbox box.
//!
//! - [`kernels`]: the session languages, from `kernels.toml`.
//! - [`supervisor`]: `evaler kernel`, the per-session supervisor and TCP
//!   proxy that runs outside the sandbox.
//! - [`launch`]: how a session's server is started in a box.
//! - [`assets`]: the native servers' sources (Python, Ruby), embedded.
//! - [`stdio`]: `evaler stdio-server`, the server that drives bash, zsh and
//!   clang-repl over pipes, inside the box.
//!
//! The client side is `evaler_client::session`. The semantics are
//! documented in `docs/PROTOCOL.md`, section "Session semantics".

pub mod assets;
pub mod kernels;
pub mod launch;
pub mod stdio;
pub mod supervisor;

pub use kernels::{Dialect, KernelKind, KernelSpec, KernelTable};
pub use supervisor::{run_kernel, KernelError, KernelOptions};
