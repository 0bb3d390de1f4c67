//! Runs the native language servers' own test suite (`servers/tests`,
//! Python's unittest driving both the Python and the Ruby server over TCP) as
//! part of `cargo test`, so CI cannot skip it. A missing `/usr/bin/python3`
//! or `ruby` is a failure, not a skip.

use std::process::Command;

#[test]
fn native_server_suite_passes() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("/usr/bin/python3")
        .args(["-m", "unittest", "discover", "-s", "servers/tests"])
        // A missing ruby fails the Ruby tests instead of skipping them.
        .env("EVALER_TEST_REQUIRE_RUBY", "1")
        .current_dir(root)
        .output()
        .expect("/usr/bin/python3 must be installed (bash .ci/install.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "servers/tests failed:\n{stderr}");
    // unittest prints "Ran N tests"; make sure it actually ran some.
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")
                .and_then(|r| r.split_whitespace().next())
        })
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(ran > 10, "servers/tests ran only {ran} tests:\n{stderr}");
    assert!(
        !stderr.contains("skipped"),
        "servers/tests skipped tests:\n{stderr}"
    );
}
