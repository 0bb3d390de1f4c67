//! The command line's subcommands and its logging, shared by the `evaler`
//! executable and the small `evaler-kernel` one that `evaler kernel` runs
//! (see `cmd::kernel`).

pub mod cmd;
pub mod logging;
