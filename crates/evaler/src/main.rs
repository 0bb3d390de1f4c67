//! `evaler`: the command line over evaler's crates. Each subcommand lives in
//! its own module under `cmd/` and stays thin: the work is in the libraries.

use clap::{Parser, Subcommand};
use evaler_cli::{cmd, logging};

#[derive(Parser)]
#[command(
    name = "evaler",
    version,
    about = "Runs untrusted code fast and safely"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one program in the sandbox under limits and report what it did.
    Run(cmd::run::RunArgs),
    /// Serve the Evaler judge protocol over TCP.
    Serve(cmd::serve::ServeArgs),
    /// Judge a solution against a directory of tests.
    Judge(cmd::judge::JudgeArgs),
    /// Start one sandboxed interactive language server (a session).
    Kernel(cmd::kernel::KernelArgs),
    /// An interactive terminal REPL on a sandboxed session.
    Repl(cmd::repl::ReplArgs),
    /// List the judge languages and their installed versions.
    Languages(cmd::languages::LanguagesArgs),
    /// The STDIO language server; runs inside the sandbox (internal).
    #[command(hide = true)]
    StdioServer(cmd::stdio_server::StdioServerArgs),
}

fn main() {
    logging::init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => cmd::run::main(args),
        Command::Serve(args) => cmd::serve::main(args),
        Command::Judge(args) => cmd::judge::main(args),
        Command::Kernel(args) => cmd::kernel::main(args),
        Command::Repl(args) => cmd::repl::main(args),
        Command::Languages(args) => cmd::languages::main(args),
        Command::StdioServer(args) => cmd::stdio_server::main(args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("evaler: {e:#}");
            std::process::exit(1);
        }
    }
}
