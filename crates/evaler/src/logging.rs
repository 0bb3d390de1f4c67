//! Logs of both executables: to stderr, filtered by `$EVALER_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `$EVALER_LOG` takes `level` and `target=level` directives separated by
/// commas (`debug`, `warn,evaler_server=trace`); unset or unparsable means
/// `warn`. `Targets` rather than `EnvFilter`: the same directives people
/// use, without the regex engine (~250 KiB of code in every process,
/// `evaler-kernel` included, for span and field filters nobody here needs).
pub fn init() {
    let filter = std::env::var("EVALER_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .try_init();
}
