//! evaler's servers: the Evaler judge ([`judge`], behind `evaler serve`),
//! the interactive session supervisor and STDIO language server
//! ([`session`], behind `evaler kernel` and `evaler stdio-server`), and the
//! judge's language definitions ([`languages`], data from `languages.toml`).

pub mod judge;
pub mod languages;
pub mod session;
