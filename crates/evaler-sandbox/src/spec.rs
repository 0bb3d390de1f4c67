//! What to run: the request a caller hands to a box.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::limits::Limits;

/// Where the program's standard input comes from.
#[derive(Debug, Default)]
pub enum Stdin {
    /// `/dev/null`: reads see EOF at once.
    #[default]
    Null,
    /// These bytes. They are handed over in a sealed memory file, not a pipe,
    /// so a program that never reads cannot block the sandbox and one that
    /// does can seek.
    Bytes(Vec<u8>),
    /// A file on the host, opened read-only by the caller.
    File(OwnedFd),
}

/// A file placed in the box's working directory before the run.
#[derive(Debug, Clone)]
pub struct BoxFile {
    /// One plain path component (no `/`, not `.` or `..`).
    pub name: String,
    pub contents: Vec<u8>,
    pub executable: bool,
}

/// A host path made visible read-only under `/opt/evaler/<name>` for one run
/// (the language servers' own code, for instance).
#[derive(Debug, Clone)]
pub struct Bind {
    pub host: PathBuf,
    /// One plain path component.
    pub name: String,
}

/// One run request.
#[derive(Debug)]
pub struct RunSpec {
    /// Resolved inside the sandbox: through `PATH` when it has no `/`,
    /// otherwise as a path (relative ones from `/box`).
    pub program: String,
    pub args: Vec<String>,
    /// Added to the clean base environment (`PATH`, `HOME`, `LANG`); the
    /// caller's own environment is never passed on.
    pub env: Vec<(String, String)>,
    pub stdin: Stdin,
    pub files: Vec<BoxFile>,
    pub binds: Vec<Bind>,
    /// Descriptors given to the program as fd 3, 4, ... (for instance the
    /// socket of a language server, since the box has no network).
    pub extra_fds: Vec<OwnedFd>,
    pub limits: Limits,
    /// Keep what the run left in `/box` (a compiler's output, say) instead
    /// of wiping the box afterwards.
    pub keep_files: bool,
}

impl RunSpec {
    pub fn new(program: impl Into<String>) -> RunSpec {
        RunSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: Stdin::Null,
            files: Vec::new(),
            binds: Vec::new(),
            extra_fds: Vec::new(),
            limits: Limits::default(),
            keep_files: false,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> RunSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// The clean environment every program starts from.
pub const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(crate) fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), BASE_PATH.into()),
        ("HOME".into(), "/box".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// A box file name must be one plain component: checked before any host-side
/// file operation, so a name can never walk out of the box.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 255
}
