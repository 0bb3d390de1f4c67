//! Settings of a sandbox instance, fixed at start-up.

use std::path::PathBuf;

/// How a [`Sandbox`](crate::Sandbox) builds its boxes.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Evaler's own state: slot locks and the staging mount point. Boxes
    /// themselves live in memory (tmpfs in their own mount namespace) and are
    /// never visible here.
    pub workdir: PathBuf,
    /// Box `n` runs as uid and gid `uid_base + n`: a uid no other box and no
    /// host user has, so boxes cannot signal or read each other.
    pub uid_base: u32,
    /// How many box slots exist system-wide (slots are claimed with file
    /// locks, so several evaler processes on one machine never share a uid).
    pub max_slots: u32,
    /// Entries of the host's `/etc` made visible read-only, when they exist.
    /// Everything else of `/etc` (shadow, ssh keys, ...) stays hidden.
    pub etc_allow: Vec<String>,
    /// Size of `/box` (tmpfs), KiB.
    pub box_size_kib: u64,
    /// Size of the per-run `/tmp` (tmpfs), KiB.
    pub tmp_size_kib: u64,
    /// Size of the per-run `/dev/shm` (tmpfs), KiB.
    pub shm_size_kib: u64,
    /// Inodes per tmpfs, so a program cannot exhaust memory with empty files.
    pub max_inodes: u64,
    /// Turn the seccomp filter off (debugging only).
    pub seccomp: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let workdir = if std::path::Path::new("/run").is_dir() {
            PathBuf::from("/run/evaler")
        } else {
            std::env::temp_dir().join("evaler")
        };
        SandboxConfig {
            workdir,
            uid_base: 615_000,
            max_slots: 4096,
            etc_allow: DEFAULT_ETC.iter().map(|s| s.to_string()).collect(),
            box_size_kib: 256 * 1024,
            tmp_size_kib: 128 * 1024,
            shm_size_kib: 64 * 1024,
            max_inodes: 16 * 1024,
            seccomp: true,
        }
    }
}

/// What compilers and interpreters read from `/etc`: the dynamic linker's
/// cache, Debian's alternatives symlinks (`/usr/bin/java` points through
/// them), the JVM's configuration, time zone and TLS roots. Nothing secret.
pub const DEFAULT_ETC: &[&str] = &[
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "java-17-openjdk",
    "java-21-openjdk",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "debian_version",
    "os-release",
    "inputrc",
    "zsh",
    "bash.bashrc",
    "python3",
    "python3.11",
    "ruby",
    "gcrypt",
    "locale.alias",
    "manpath.config",
];
