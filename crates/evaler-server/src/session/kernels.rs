//! Session language definitions ("kernels"), loaded from `kernels.toml`.
//!
//! The file at the repository root is embedded as the default
//! ([`KernelTable::bundled`]); its header comment documents the schema. This
//! module parses and validates it, resolves aliases and the one `*` a
//! program path may hold, and turns a kernel into the argv the sandbox runs.
//!
//! ```
//! use evaler_server::session::kernels::{KernelKind, KernelTable};
//!
//! let table = KernelTable::bundled().unwrap();
//! let py = table.get("python3").unwrap(); // an alias
//! assert_eq!(py.name, "python");
//! assert!(matches!(py.kind, KernelKind::Native { .. }));
//! assert!(table.get("cobol").is_none());
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository's `kernels.toml`, embedded at build time.
pub const BUNDLED_KERNELS: &str = include_str!("../../../../kernels.toml");

/// Environment variable naming a kernels file to use instead of the bundled
/// one.
pub const KERNELS_ENV: &str = "EVALER_KERNELS";

/// Why a kernels file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum KernelsError {
    #[error("cannot read kernels file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid kernels file: {0}")]
    Parse(#[from] Box<toml::de::Error>),
    #[error("no kernels defined (expected [kernels.<name>] tables)")]
    Empty,
    #[error(
        "invalid kernel name or alias `{0}`: use lowercase ASCII letters, digits, '-', '_', '+'"
    )]
    InvalidName(String),
    #[error("kernel name or alias `{0}` is used twice")]
    Duplicate(String),
    #[error("kernel `{name}`: {message}")]
    Invalid { name: String, message: String },
}

/// How a session's language server is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelKind {
    /// One of evaler's own servers (embedded; see [`super::assets`]),
    /// speaking the protocol on fd 3.
    Native {
        /// The embedded server's name (`python`, `ruby`).
        server: String,
    },
    /// `evaler stdio-server` drives the interpreter over pipes.
    Stdio {
        /// How to drive it.
        dialect: Dialect,
    },
}

/// Interpreters the STDIO server knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// GNU bash, interactive mode without line editing.
    Bash,
    /// zsh, interactive mode without startup files.
    Zsh,
    /// clang-repl (C++).
    Cpp,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 3] = [Dialect::Bash, Dialect::Zsh, Dialect::Cpp];

    /// The name used in `kernels.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Bash => "bash",
            Dialect::Zsh => "zsh",
            Dialect::Cpp => "cpp",
        }
    }

    /// Parses [`Dialect::as_str`].
    pub fn parse(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host path shown read-only at `/opt/evaler/<name>` in the box.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindSpec {
    pub host: PathBuf,
    pub name: String,
}

/// One session language, with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    /// The table key, e.g. `python`.
    pub name: String,
    pub description: String,
    pub kind: KernelKind,
    /// argv; the program may hold one `*` (see [`KernelSpec::resolved_command`]).
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub memory_kib: u64,
    pub processes: u64,
    pub output_kib: u64,
    pub open_files: u64,
    pub aliases: Vec<String>,
    pub binds: Vec<BindSpec>,
}

impl KernelSpec {
    /// The command with a `*` in the program resolved on the host (the box
    /// shows the host's `/usr`), picking the highest version: for
    /// `/usr/lib/llvm-*/bin/clang-repl`, llvm-16 beats llvm-14.
    pub fn resolved_command(&self) -> Result<Vec<String>, String> {
        let mut argv = self.command.clone();
        let program = argv.first().cloned().unwrap_or_default();
        if program.contains('*') {
            let found = resolve_glob(&program)
                .ok_or_else(|| format!("no installed program matches {program}"))?;
            if let Some(first) = argv.first_mut() {
                *first = found;
            }
        }
        Ok(argv)
    }
}

/// Resolves one `*` within one path component, choosing the match whose
/// digits compare highest (so `llvm-16` > `llvm-9`).
pub fn resolve_glob(pattern: &str) -> Option<String> {
    let star = pattern.find('*')?;
    let dir_end = pattern[..star].rfind('/')?;
    let dir = &pattern[..dir_end];
    let rest = &pattern[dir_end + 1..];
    let (comp, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (prefix, suffix) = comp.split_once('*')?;
    let mut best: Option<(Vec<u64>, String)> = None;
    for entry in std::fs::read_dir(if dir.is_empty() { "/" } else { dir }).ok()? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(mid) = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(suffix))
        else {
            continue;
        };
        let candidate = format!("{dir}/{name}{tail}");
        if !is_executable(Path::new(&candidate)) {
            continue;
        }
        let key: Vec<u64> = mid
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, candidate));
        }
    }
    best.map(|(_, path)| path)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    kernels: BTreeMap<String, RawKernel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    memory_kib: Option<u64>,
    processes: Option<u64>,
    output_kib: Option<u64>,
    open_files: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    #[serde(default)]
    description: String,
    kind: String,
    server: Option<String>,
    dialect: Option<String>,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    memory_kib: Option<u64>,
    processes: Option<u64>,
    output_kib: Option<u64>,
    open_files: Option<u64>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    binds: Vec<BindSpec>,
}

/// Every session language of one kernels file.
#[derive(Debug, Clone)]
pub struct KernelTable {
    kernels: BTreeMap<String, KernelSpec>,
    /// Alias → kernel name.
    aliases: BTreeMap<String, String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_+".contains(&b))
}

impl KernelTable {
    /// The embedded `kernels.toml`.
    pub fn bundled() -> Result<KernelTable, KernelsError> {
        KernelTable::parse(BUNDLED_KERNELS)
    }

    /// `$EVALER_KERNELS` when set, else the bundled file.
    pub fn from_env_or_bundled() -> Result<KernelTable, KernelsError> {
        match std::env::var_os(KERNELS_ENV) {
            Some(path) if !path.is_empty() => KernelTable::load(PathBuf::from(path)),
            _ => KernelTable::bundled(),
        }
    }

    /// Reads and parses a file.
    pub fn load(path: impl AsRef<Path>) -> Result<KernelTable, KernelsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| KernelsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        KernelTable::parse(&text)
    }

    /// Parses and validates a kernels file's text.
    pub fn parse(text: &str) -> Result<KernelTable, KernelsError> {
        let doc: FileDoc = toml::from_str(text).map_err(Box::new)?;
        if doc.kernels.is_empty() {
            return Err(KernelsError::Empty);
        }
        let mut kernels = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        for (name, raw) in doc.kernels {
            let spec = build(&name, raw, &doc.defaults)?;
            for alias in &spec.aliases {
                if !valid_name(alias) {
                    return Err(KernelsError::InvalidName(alias.clone()));
                }
                if aliases.insert(alias.clone(), name.clone()).is_some() {
                    return Err(KernelsError::Duplicate(alias.clone()));
                }
            }
            kernels.insert(name, spec);
        }
        if let Some(alias) = aliases.keys().find(|a| kernels.contains_key(*a)) {
            return Err(KernelsError::Duplicate(alias.clone()));
        }
        Ok(KernelTable { kernels, aliases })
    }

    /// A kernel by name or alias.
    pub fn get(&self, name: &str) -> Option<&KernelSpec> {
        self.kernels
            .get(name)
            .or_else(|| self.aliases.get(name).and_then(|n| self.kernels.get(n)))
    }

    /// Every kernel, by name.
    pub fn iter(&self) -> impl Iterator<Item = &KernelSpec> {
        self.kernels.values()
    }

    /// Kernel names (not aliases), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kernels.keys().map(String::as_str)
    }
}

fn build(name: &str, raw: RawKernel, defaults: &Defaults) -> Result<KernelSpec, KernelsError> {
    if !valid_name(name) {
        return Err(KernelsError::InvalidName(name.to_string()));
    }
    let invalid = |message: String| KernelsError::Invalid {
        name: name.to_string(),
        message,
    };
    let kind = match raw.kind.as_str() {
        "native" => {
            if raw.dialect.is_some() {
                return Err(invalid("`dialect` is for kind = \"stdio\"".into()));
            }
            let server = raw
                .server
                .ok_or_else(|| invalid("kind = \"native\" needs `server`".into()))?;
            if super::assets::server_source(&server).is_none() {
                return Err(invalid(format!(
                    "no embedded server `{server}` (known: {})",
                    super::assets::SERVERS.join(", ")
                )));
            }
            if !raw
                .command
                .iter()
                .any(|a| a == super::assets::SERVER_PLACEHOLDER)
            {
                return Err(invalid(format!(
                    "a native kernel's command must pass the server as \"{}\"",
                    super::assets::SERVER_PLACEHOLDER
                )));
            }
            KernelKind::Native { server }
        }
        "stdio" => {
            if raw.server.is_some() {
                return Err(invalid("`server` is for kind = \"native\"".into()));
            }
            let dialect = raw
                .dialect
                .ok_or_else(|| invalid("kind = \"stdio\" needs `dialect`".into()))?;
            let dialect = Dialect::parse(&dialect).ok_or_else(|| {
                invalid(format!(
                    "unknown dialect `{dialect}` (known: bash, zsh, cpp)"
                ))
            })?;
            KernelKind::Stdio { dialect }
        }
        other => {
            return Err(invalid(format!(
                "unknown kind `{other}` (use \"native\" or \"stdio\")"
            )))
        }
    };
    let Some(program) = raw.command.first() else {
        return Err(invalid("`command` is empty".into()));
    };
    if !program.starts_with('/') {
        return Err(invalid(format!(
            "the program `{program}` must be an absolute path"
        )));
    }
    if program.matches('*').count() > 1 {
        return Err(invalid(format!(
            "the program `{program}` has more than one `*`"
        )));
    }
    if raw.command.iter().any(|a| a.contains('\0')) {
        return Err(invalid("`command` contains a NUL byte".into()));
    }
    for (k, v) in &raw.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("invalid environment variable `{k}`")));
        }
    }
    for b in &raw.binds {
        if !evaler_sandbox::valid_file_name(&b.name) {
            return Err(invalid(format!("invalid bind name `{}`", b.name)));
        }
    }
    let pick =
        |own: Option<u64>, default: Option<u64>, fallback: u64| own.or(default).unwrap_or(fallback);
    let spec = KernelSpec {
        name: name.to_string(),
        description: raw.description,
        kind,
        command: raw.command,
        env: raw.env.into_iter().collect(),
        memory_kib: pick(raw.memory_kib, defaults.memory_kib, 512 * 1024),
        processes: pick(raw.processes, defaults.processes, 64),
        output_kib: pick(raw.output_kib, defaults.output_kib, 1024),
        open_files: pick(raw.open_files, defaults.open_files, 256),
        aliases: raw.aliases,
        binds: raw.binds,
    };
    if spec.memory_kib == 0 || spec.processes == 0 || spec.output_kib == 0 || spec.open_files < 16 {
        return Err(invalid(
            "memory_kib, processes and output_kib must be positive, open_files at least 16".into(),
        ));
    }
    Ok(spec)
}
