//! One module per subcommand.

pub mod judge;
pub mod kernel;
pub mod languages;
pub mod repl;
pub mod run;
pub mod serve;
pub mod stdio_server;
