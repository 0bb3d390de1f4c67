//! `evaler-kernel`: the session supervisor of `evaler kernel` in an
//! executable of its own, a third of `evaler`'s size, so that each session
//! keeps less of it resident. Started only by `evaler kernel` (see
//! `evaler_cli::cmd::kernel`).

fn main() {
    evaler_cli::logging::init();
    match evaler_cli::cmd::kernel::slim_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("evaler kernel: {e:#}");
            std::process::exit(1);
        }
    }
}
