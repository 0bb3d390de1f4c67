//! The native language servers' sources, embedded in the binary.
//!
//! A server's source reaches the box as the server's standard input (a
//! sealed memory file; `python3 -`, `ruby -`), which the servers replace
//! with `/dev/null` as they start. So nothing is written on the host and no
//! bind mount (and no run down the sandbox's slower bind path) is needed.

/// The embedded servers, by name.
pub const SERVERS: &[&str] = &["python", "ruby"];

const PYTHON: &str = include_str!("../../../../servers/python/server.py");
const RUBY: &str = include_str!("../../../../servers/ruby/server.rb");

/// The source of an embedded server.
pub fn server_source(server: &str) -> Option<&'static str> {
    match server {
        "python" => Some(PYTHON),
        "ruby" => Some(RUBY),
        _ => None,
    }
}

/// The placeholder in a native kernel's command replaced by the server's
/// script argument (`-`: read the program from standard input).
pub const SERVER_PLACEHOLDER: &str = "{server}";
