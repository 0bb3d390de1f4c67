//! The library a host application embeds to use evaler: the judge client
//! ([`judge`]) and interactive sessions.
//!
//! Small on purpose: no sandbox and no server code, only the wire protocol
//! (`evaler-proto`) over tokio. Every reply is size-capped by the protocol
//! codec and nothing panics on what a server sends.

pub mod judge;
pub mod session;
