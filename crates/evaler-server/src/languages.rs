//! Judge language definitions, loaded from `languages.toml`.
//!
//! The languages the judge accepts are data, not code: each is a table
//! `[languages.<key>]` of the TOML file at the repository root (its header
//! comment is the reference for the schema). This module parses and validates
//! that file, resolves aliases, expands the `{placeholder}`s of run commands
//! and asks the host which version of each runtime is installed.
//!
//! ```
//! use evaler_server::languages::{LanguageSet, RunParams};
//!
//! let set = LanguageSet::bundled().unwrap();
//! let cpp = set.get("cpp").unwrap(); // an alias
//! assert_eq!(cpp.key, "cpp17");
//! let java = set.get("java").unwrap();
//! let argv = java.run_argv(&RunParams::from_mib(256, 64)).unwrap();
//! assert!(argv.iter().any(|a| a == "-Xmx256m"));
//! ```
//!
//! Top-level tables other than `languages` (e.g. a future `[kernels.*]`) are
//! ignored here, so other sections can share the file. Unknown fields inside
//! a language table are errors.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The repository's `languages.toml`, embedded at build time.
pub const BUNDLED_TOML: &str = include_str!("../../../languages.toml");

/// Environment variable naming a languages file to use instead of the
/// bundled one (see [`LanguageSet::from_env_or_bundled`]).
pub const LANGUAGES_ENV: &str = "EVALER_LANGUAGES";

/// How long [`Language::installed_version`] waits for the version command.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Placeholder names accepted in `run` arguments, without braces.
pub const PLACEHOLDERS: [&str; 5] = [
    "memory_kib",
    "memory_mib",
    "stack_kib",
    "stack_mib",
    "stack_kib_usable",
];

/// Most bytes of a version command's stdout and stderr that are read.
const VERSION_OUTPUT_LIMIT: u64 = 64 * 1024;

/// Why a languages file was rejected, or a template could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
    #[error("cannot read languages file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid languages file{}: {source}", origin(path.as_deref()))]
    Parse {
        /// `None` when parsed from a string.
        path: Option<PathBuf>,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("no judge languages defined (expected [languages.<key>] tables)")]
    Empty,
    #[error(
        "invalid language key or alias `{0}`: use lowercase ASCII letters, digits, '-', '_', '+'"
    )]
    InvalidKey(String),
    #[error("language `{key}`: field `{field}` is empty")]
    EmptyField { key: String, field: &'static str },
    #[error("language `{key}`: `{field}` argv is empty")]
    EmptyArgv { key: String, field: &'static str },
    #[error(
        "language `{key}`: `{field}` program `{program}` must be an absolute path{}",
        if *field == "version" { "" } else { " or start with ./" }
    )]
    BadProgram {
        key: String,
        field: &'static str,
        program: String,
    },
    #[error("language `{key}`: `{field}` contains a NUL byte")]
    NulByte { key: String, field: &'static str },
    #[error(
        "language `{key}`: source `{source_name}` must be a plain file name (no '/', not . or ..)"
    )]
    BadSource { key: String, source_name: String },
    #[error("alias `{alias}` of language `{key}` is already {taken_by}")]
    DuplicateAlias {
        alias: String,
        key: String,
        /// e.g. "the key of language `cpp17`" or "an alias of language `c`".
        taken_by: String,
    },
    #[error("language `{key}`: limit `{field}` must be positive")]
    ZeroLimit { key: String, field: &'static str },
    #[error("language `{key}`: readonly path `{path}` must be absolute")]
    RelativeReadonlyPath { key: String, path: String },
    #[error("language `{key}`: invalid environment variable name `{name}`")]
    BadEnvName { key: String, name: String },
    #[error("language `{key}`: run argument `{arg}`: {source}")]
    Placeholder {
        key: String,
        arg: String,
        #[source]
        source: PlaceholderError,
    },
}

fn origin(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// A malformed `{placeholder}` template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error(
        "unknown placeholder `{{{name}}}` (known: memory_kib, memory_mib, stack_kib, stack_mib, stack_kib_usable)"
    )]
    Unknown { name: String },
    #[error("unmatched `{brace}` at byte {offset} (write `{brace}{brace}` for a literal brace)")]
    Unmatched { brace: char, offset: usize },
}

/// Values substituted into a run command's placeholders: the limits of the
/// test being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunParams {
    /// Memory limit of the run, KiB: `{memory_kib}`, and `{memory_mib}`
    /// (rounded down, at least 1).
    pub memory_kib: u64,
    /// Stack limit of the run, KiB: `{stack_kib}`, and `{stack_mib}`
    /// (rounded down, at least 1); `{stack_kib_usable}` keeps a sixteenth
    /// of it (at least 256 KiB) for the runtime's own frames, for
    /// interpreters that bound their stack themselves (node's
    /// `--stack-size`) and would crash, not throw, past the real one.
    pub stack_kib: u64,
}

impl RunParams {
    /// Limits given in MiB.
    pub fn from_mib(memory_mib: u64, stack_mib: u64) -> Self {
        RunParams {
            memory_kib: memory_mib.saturating_mul(1024),
            stack_kib: stack_mib.saturating_mul(1024),
        }
    }

    fn value(&self, name: &str) -> Option<u64> {
        match name {
            "memory_kib" => Some(self.memory_kib),
            "memory_mib" => Some((self.memory_kib / 1024).max(1)),
            "stack_kib" => Some(self.stack_kib),
            "stack_mib" => Some((self.stack_kib / 1024).max(1)),
            "stack_kib_usable" => {
                let guard = (self.stack_kib / 16).max(256);
                Some(self.stack_kib.saturating_sub(guard).max(64))
            }
            _ => None,
        }
    }
}

/// Expand `{name}` placeholders in `template` (`{{` and `}}` are literal
/// braces). Fails on an unknown name or an unmatched brace.
pub fn expand_placeholders(template: &str, params: &RunParams) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let offset = template.len() - rest.len() + i;
        let brace = rest.as_bytes()[i] as char;
        let after = &rest[i + 1..];
        if after.starts_with(brace) {
            out.push(brace);
            rest = &after[1..];
        } else if brace == '}' {
            return Err(PlaceholderError::Unmatched { brace, offset });
        } else {
            let Some(end) = after
                .find(['{', '}'])
                .filter(|&e| after.as_bytes()[e] == b'}')
            else {
                return Err(PlaceholderError::Unmatched { brace, offset });
            };
            let name = &after[..end];
            let value = params
                .value(name)
                .ok_or_else(|| PlaceholderError::Unknown {
                    name: name.to_owned(),
                })?;
            out.push_str(&value.to_string());
            rest = &after[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Default resource limits of a language's compile step, and its pids limit.
/// Time and memory limits of a run come from the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU time limit of the compile step, milliseconds.
    pub compile_cpu_ms: u64,
    /// Wall-clock limit of the compile step, milliseconds.
    pub compile_wall_ms: u64,
    /// Memory limit of the compile step, MiB.
    pub compile_memory_mib: u64,
    /// Pids (processes + threads) limit of the compile step.
    pub compile_processes: u32,
    /// Pids (processes + threads) limit of each run.
    pub run_processes: u32,
}

impl Limits {
    pub fn compile_cpu(&self) -> Duration {
        Duration::from_millis(self.compile_cpu_ms)
    }

    pub fn compile_wall(&self) -> Duration {
        Duration::from_millis(self.compile_wall_ms)
    }

    pub fn compile_memory_bytes(&self) -> u64 {
        self.compile_memory_mib.saturating_mul(1024 * 1024)
    }
}

/// One judge language: a `[languages.<key>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// The table's key, e.g. `cpp17`.
    pub key: String,
    /// Human name, e.g. `C++17 (GCC 12)`.
    pub name: String,
    /// Other keys resolving to this language.
    pub aliases: Vec<String>,
    /// File name the submission is saved as in the box's working directory.
    pub source: String,
    /// Compile (or syntax-check) argv; `None` = no compile step.
    pub compile: Option<Vec<String>>,
    /// Run argv template; see [`Language::run_argv`].
    pub run: Vec<String>,
    /// Host-side argv printing the runtime's version.
    pub version: Vec<String>,
    /// Debian packages providing the toolchain.
    pub packages: Vec<String>,
    /// Environment of the compile and run steps (the box starts empty).
    pub env: BTreeMap<String, String>,
    /// Extra host paths to bind read-only into the box.
    pub readonly_paths: Vec<PathBuf>,
    pub limits: Limits,
}

impl Language {
    /// The compile step's argv, if the language has one.
    pub fn compile_argv(&self) -> Option<&[String]> {
        self.compile.as_deref()
    }

    /// The run step's argv with placeholders expanded for these limits.
    /// Cannot fail for a language loaded through [`LanguageSet`] (checked at
    /// load time) unless `run` was modified since.
    pub fn run_argv(&self, params: &RunParams) -> Result<Vec<String>, LanguageError> {
        self.run
            .iter()
            .map(|arg| {
                expand_placeholders(arg, params).map_err(|source| LanguageError::Placeholder {
                    key: self.key.clone(),
                    arg: arg.clone(),
                    source,
                })
            })
            .collect()
    }

    /// Whether `name` is this language's key or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.key == name || self.aliases.iter().any(|a| a == name)
    }

    /// Run the version command on the host and return the first non-empty
    /// line of its stdout, else of its stderr (`java -version` writes to
    /// stderr). `None` if it cannot start, fails, prints nothing or takes
    /// longer than [`VERSION_TIMEOUT`].
    pub fn installed_version(&self) -> Option<String> {
        self.installed_version_within(VERSION_TIMEOUT)
    }

    /// [`Language::installed_version`] with a custom timeout.
    pub fn installed_version_within(&self, timeout: Duration) -> Option<String> {
        let (program, args) = self.version.split_first()?;
        // The same environment as in the box: nothing of the caller's.
        let mut child = match Command::new(program)
            .args(args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                tracing::debug!(language = %self.key, %program, %err, "version command did not start");
                return None;
            }
        };
        // Readers on threads, results over a channel: a grandchild holding a
        // pipe open must not hang us past the deadline.
        let (tx, rx) = mpsc::channel();
        for (stream, pipe) in [
            (
                0,
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
            (
                1,
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.take(VERSION_OUTPUT_LIMIT).read_to_end(&mut buf);
                let _ = tx.send((stream, buf));
            });
        }
        drop(tx);
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) | Err(_) => {
                    tracing::debug!(language = %self.key, "version command timed out");
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        };
        if !status.success() {
            tracing::debug!(language = %self.key, %status, "version command failed");
            return None;
        }
        let mut outputs: [Vec<u8>; 2] = Default::default();
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.max(Duration::from_millis(100))) {
                Ok((stream, buf)) => outputs[stream] = buf,
                Err(_) => break,
            }
        }
        outputs.iter().find_map(|out| {
            String::from_utf8_lossy(out)
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .map(str::to_owned)
        })
    }
}

/// All judge languages of a languages file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageSet {
    languages: Vec<Language>,
    /// Key or alias -> index into `languages`.
    index: HashMap<String, usize>,
}

impl LanguageSet {
    /// Read and validate a languages file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LanguageError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LanguageError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parse and validate the text of a languages file.
    pub fn from_toml_str(text: &str) -> Result<Self, LanguageError> {
        Self::parse(text, None)
    }

    /// The repository's `languages.toml` as embedded in the binary.
    pub fn bundled() -> Result<Self, LanguageError> {
        Self::from_toml_str(BUNDLED_TOML)
    }

    /// `$EVALER_LANGUAGES` if set (and not empty), else `None`.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os(LANGUAGES_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// Load [`LanguageSet::default_path`] if set, else the bundled file.
    pub fn from_env_or_bundled() -> Result<Self, LanguageError> {
        match Self::default_path() {
            Some(path) => Self::load(path),
            None => Self::bundled(),
        }
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, LanguageError> {
        let file: RawFile = toml::from_str(text).map_err(|source| LanguageError::Parse {
            path: path.map(Path::to_owned),
            source: Box::new(source),
        })?;
        let languages = file
            .languages
            .0
            .into_iter()
            .map(|(key, raw)| raw.into_language(key))
            .collect();
        let set = Self::new(languages)?;
        tracing::debug!(count = set.len(), path = ?path, "loaded judge languages");
        Ok(set)
    }

    /// Build a set from languages made in code, with the same validation as
    /// a file gets.
    pub fn new(languages: Vec<Language>) -> Result<Self, LanguageError> {
        if languages.is_empty() {
            return Err(LanguageError::Empty);
        }
        let mut index = HashMap::new();
        for (i, lang) in languages.iter().enumerate() {
            validate(lang)?;
            // Keys are unique in a TOML table, but not necessarily in code.
            if let Some(&j) = index.get(&lang.key) {
                return Err(LanguageError::DuplicateAlias {
                    alias: lang.key.clone(),
                    key: lang.key.clone(),
                    taken_by: describe_owner(&languages[j], &lang.key),
                });
            }
            index.insert(lang.key.clone(), i);
        }
        for (i, lang) in languages.iter().enumerate() {
            for alias in &lang.aliases {
                if let Some(&j) = index.get(alias) {
                    return Err(LanguageError::DuplicateAlias {
                        alias: alias.clone(),
                        key: lang.key.clone(),
                        taken_by: describe_owner(&languages[j], alias),
                    });
                }
                index.insert(alias.clone(), i);
            }
        }
        Ok(LanguageSet { languages, index })
    }

    /// The language with this key or alias.
    pub fn get(&self, key_or_alias: &str) -> Option<&Language> {
        self.index.get(key_or_alias).map(|&i| &self.languages[i])
    }

    /// The canonical key of a key or alias.
    pub fn resolve(&self, key_or_alias: &str) -> Option<&str> {
        self.get(key_or_alias).map(|l| l.key.as_str())
    }

    /// Languages in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Language> {
        self.languages.iter()
    }

    /// Canonical keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.languages.iter().map(|l| l.key.as_str())
    }

    pub fn len(&self) -> usize {
        self.languages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.languages.is_empty()
    }
}

impl<'a> IntoIterator for &'a LanguageSet {
    type Item = &'a Language;
    type IntoIter = std::slice::Iter<'a, Language>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

fn describe_owner(owner: &Language, name: &str) -> String {
    if owner.key == name {
        format!("the key of language `{}`", owner.key)
    } else {
        format!("an alias of language `{}`", owner.key)
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'+')
        })
}

fn validate(lang: &Language) -> Result<(), LanguageError> {
    let key = || lang.key.clone();
    for name in std::iter::once(&lang.key).chain(&lang.aliases) {
        if !valid_key(name) {
            return Err(LanguageError::InvalidKey(name.clone()));
        }
    }
    if lang.name.trim().is_empty() {
        return Err(LanguageError::EmptyField {
            key: key(),
            field: "name",
        });
    }
    if lang.source.is_empty() {
        return Err(LanguageError::EmptyField {
            key: key(),
            field: "source",
        });
    }
    if lang.source.contains(['/', '\0']) || lang.source == "." || lang.source == ".." {
        return Err(LanguageError::BadSource {
            key: key(),
            source_name: lang.source.clone(),
        });
    }
    let argvs = [
        ("compile", lang.compile.as_deref()),
        ("run", Some(lang.run.as_slice())),
        ("version", Some(lang.version.as_slice())),
    ];
    for (field, argv) in argvs {
        let Some(argv) = argv else { continue };
        let Some(program) = argv.first() else {
            return Err(LanguageError::EmptyArgv { key: key(), field });
        };
        let box_relative = field != "version" && program.starts_with("./") && program.len() > 2;
        if !(program.starts_with('/') || box_relative) {
            return Err(LanguageError::BadProgram {
                key: key(),
                field,
                program: program.clone(),
            });
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(LanguageError::NulByte { key: key(), field });
        }
    }
    let params = RunParams::from_mib(256, 256);
    for arg in &lang.run {
        if let Err(source) = expand_placeholders(arg, &params) {
            return Err(LanguageError::Placeholder {
                key: key(),
                arg: arg.clone(),
                source,
            });
        }
    }
    for (name, value) in &lang.env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(LanguageError::BadEnvName {
                key: key(),
                name: name.clone(),
            });
        }
        if value.contains('\0') {
            return Err(LanguageError::NulByte {
                key: key(),
                field: "env",
            });
        }
    }
    for path in &lang.readonly_paths {
        if !path.is_absolute() {
            return Err(LanguageError::RelativeReadonlyPath {
                key: key(),
                path: path.display().to_string(),
            });
        }
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(LanguageError::NulByte {
                key: key(),
                field: "readonly_paths",
            });
        }
    }
    let l = &lang.limits;
    let limits = [
        ("compile_cpu_ms", l.compile_cpu_ms),
        ("compile_wall_ms", l.compile_wall_ms),
        ("compile_memory_mib", l.compile_memory_mib),
        ("compile_processes", u64::from(l.compile_processes)),
        ("run_processes", u64::from(l.run_processes)),
    ];
    for (field, value) in limits {
        if value == 0 {
            return Err(LanguageError::ZeroLimit { key: key(), field });
        }
    }
    Ok(())
}

/// The file as the judge sees it: only `languages`; other top-level tables
/// are ignored.
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    languages: Ordered,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLanguage {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    source: String,
    compile: Option<Vec<String>>,
    run: Vec<String>,
    version: Vec<String>,
    packages: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    readonly_paths: Vec<PathBuf>,
    limits: Limits,
}

impl RawLanguage {
    fn into_language(self, key: String) -> Language {
        Language {
            key,
            name: self.name,
            aliases: self.aliases,
            source: self.source,
            compile: self.compile,
            run: self.run,
            version: self.version,
            packages: self.packages,
            env: self.env,
            readonly_paths: self.readonly_paths,
            limits: self.limits,
        }
    }
}

/// The `[languages]` table's entries in file order.
#[derive(Default)]
struct Ordered(Vec<(String, RawLanguage)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;

        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Ordered;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of [languages.<key>] tables")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                // The toml crate hands a table's entries over sorted by key;
                // the span of each value gives back the order of the file.
                let mut entries = Vec::new();
                while let Some((key, value)) =
                    map.next_entry::<String, toml::Spanned<RawLanguage>>()?
                {
                    entries.push((value.span().start, key, value.into_inner()));
                }
                entries.sort_by_key(|(start, _, _)| *start);
                Ok(Ordered(
                    entries
                        .into_iter()
                        .map(|(_, key, value)| (key, value))
                        .collect(),
                ))
            }
        }

        deserializer.deserialize_map(OrderedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [languages.zz]
        name = "Zed"
        source = "main.zz"
        run = ["/usr/bin/zz", "main.zz"]
        version = ["/usr/bin/zz", "--version"]
        packages = ["zz"]
        [languages.zz.limits]
        compile_cpu_ms = 1
        compile_wall_ms = 1
        compile_memory_mib = 1
        compile_processes = 1
        run_processes = 1

        [languages.aa]
        name = "Aa"
        aliases = ["a", "a-2"]
        source = "Main.aa"
        compile = ["/usr/bin/aac", "-o", "main", "Main.aa"]
        run = ["./main", "--heap={memory_mib}M", "{{literal}}"]
        version = ["/usr/bin/aac", "-V"]
        packages = []
        env = { HOME = "/tmp", X = "{not_expanded}" }
        readonly_paths = ["/etc/aa"]
        [languages.aa.limits]
        compile_cpu_ms = 2000
        compile_wall_ms = 3000
        compile_memory_mib = 512
        compile_processes = 4
        run_processes = 2
    "#;

    fn minimal() -> LanguageSet {
        LanguageSet::from_toml_str(MINIMAL).unwrap()
    }

    /// MINIMAL with every `from` replaced by `to` (`from` must occur).
    fn edited(from: &str, to: &str) -> Result<LanguageSet, LanguageError> {
        assert!(MINIMAL.contains(from), "{from}");
        LanguageSet::from_toml_str(&MINIMAL.replace(from, to))
    }

    #[test]
    fn parses_fields_and_keeps_file_order() {
        let set = minimal();
        assert_eq!(set.keys().collect::<Vec<_>>(), ["zz", "aa"]);
        assert_eq!(set.len(), 2);
        let aa = set.get("aa").unwrap();
        assert_eq!(aa.name, "Aa");
        assert_eq!(aa.source, "Main.aa");
        assert_eq!(
            aa.compile_argv().unwrap(),
            ["/usr/bin/aac", "-o", "main", "Main.aa"]
        );
        assert_eq!(aa.env["HOME"], "/tmp");
        assert_eq!(aa.env["X"], "{not_expanded}");
        assert_eq!(aa.readonly_paths, [PathBuf::from("/etc/aa")]);
        assert_eq!(aa.limits.compile_cpu(), Duration::from_secs(2));
        assert_eq!(aa.limits.compile_wall(), Duration::from_secs(3));
        assert_eq!(aa.limits.compile_memory_bytes(), 512 << 20);
        let zz = set.get("zz").unwrap();
        assert!(zz.compile.is_none() && zz.aliases.is_empty() && zz.env.is_empty());
        assert_eq!((&set).into_iter().count(), 2);
    }

    #[test]
    fn resolves_aliases() {
        let set = minimal();
        for name in ["aa", "a", "a-2"] {
            assert_eq!(set.resolve(name), Some("aa"));
            assert!(set.get(name).unwrap().answers_to(name));
        }
        assert!(set.get("b").is_none());
        assert!(set.resolve("A").is_none(), "keys are case-sensitive");
    }

    #[test]
    fn expands_run_placeholders() {
        let aa = minimal().get("aa").unwrap().clone();
        let argv = aa.run_argv(&RunParams::from_mib(300, 8)).unwrap();
        assert_eq!(argv, ["./main", "--heap=300M", "{literal}"]);
        let p = RunParams {
            memory_kib: 1500,
            stack_kib: 100,
        };
        let s = expand_placeholders("{memory_kib}k {memory_mib}m {stack_kib}k {stack_mib}m", &p);
        assert_eq!(s.unwrap(), "1500k 1m 100k 1m");
        let usable = |stack_kib| {
            let p = RunParams {
                memory_kib: 1,
                stack_kib,
            };
            expand_placeholders("{stack_kib_usable}", &p).unwrap()
        };
        assert_eq!(usable(65536), "61440");
        assert_eq!(usable(1024), "768");
        assert_eq!(usable(100), "64");
        assert_eq!(expand_placeholders("}}{{", &p).unwrap(), "}{");
        assert_eq!(expand_placeholders("plain", &p).unwrap(), "plain");
        assert_eq!(expand_placeholders("é{stack_kib}é", &p).unwrap(), "é100é");
    }

    #[test]
    fn rejects_bad_placeholders() {
        let p = RunParams::from_mib(1, 1);
        assert_eq!(
            expand_placeholders("-Xmx{memroy_mib}", &p),
            Err(PlaceholderError::Unknown {
                name: "memroy_mib".into()
            })
        );
        for (bad, brace, offset) in [("{memory_kib", '{', 0), ("a}", '}', 1), ("x{a{b}", '{', 1)] {
            assert_eq!(
                expand_placeholders(bad, &p),
                Err(PlaceholderError::Unmatched { brace, offset }),
                "{bad}"
            );
        }
        let err = edited("{memory_mib}", "{heap}").unwrap_err();
        assert!(matches!(err, LanguageError::Placeholder { ref key, .. } if key == "aa"));
        assert!(
            err.to_string().contains("unknown placeholder `{heap}`"),
            "{err}"
        );
        // Placeholders are not expanded in compile, so braces there are literal.
        edited("\"-o\", \"main\"", "\"-o\", \"{main}\"").unwrap();
        // A mutated `run` is caught at expansion time, not with a panic.
        let mut aa = minimal().get("aa").unwrap().clone();
        aa.run.push("{oops".into());
        assert!(aa.run_argv(&p).is_err());
    }

    #[test]
    fn ignores_other_top_level_tables() {
        let text = format!("{MINIMAL}\n[kernels.python]\nanything = [1, 2]\n[misc]\nx = 1\n");
        assert_eq!(LanguageSet::from_toml_str(&text).unwrap(), minimal());
    }

    #[test]
    fn rejects_missing_and_unknown_fields() {
        let err = edited("source = \"main.zz\"", "").unwrap_err();
        assert!(matches!(err, LanguageError::Parse { path: None, .. }));
        assert!(err.to_string().contains("source"), "{err}");
        let err = edited("source = \"main.zz\"", "source = \"main.zz\"\ncomplie = []").unwrap_err();
        assert!(err.to_string().contains("complie"), "{err}");
        let err = edited("run_processes = 1", "").unwrap_err();
        assert!(err.to_string().contains("run_processes"), "{err}");
        let err = edited("run_processes = 1", "run_processes = -1").unwrap_err();
        assert!(matches!(err, LanguageError::Parse { .. }), "{err}");
        assert!(matches!(
            LanguageSet::from_toml_str("[kernels.x]\na = 1\n"),
            Err(LanguageError::Empty)
        ));
        assert!(matches!(
            LanguageSet::from_toml_str("languages = 3"),
            Err(LanguageError::Parse { .. })
        ));
        assert!(matches!(
            LanguageSet::from_toml_str("not toml ["),
            Err(LanguageError::Parse { .. })
        ));
    }

    #[test]
    fn validates_values() {
        type Check = fn(&LanguageError) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            (
                "compile = [\"/usr/bin/aac\", \"-o\", \"main\", \"Main.aa\"]",
                "compile = []",
                |e| {
                    matches!(
                        e,
                        LanguageError::EmptyArgv {
                            field: "compile",
                            ..
                        }
                    )
                },
            ),
            ("run = [\"/usr/bin/zz\", \"main.zz\"]", "run = []", |e| {
                matches!(e, LanguageError::EmptyArgv { field: "run", .. })
            }),
            (
                "run = [\"/usr/bin/zz\", \"main.zz\"]",
                "run = [\"zz\"]",
                |e| matches!(e, LanguageError::BadProgram { field: "run", .. }),
            ),
            (
                "version = [\"/usr/bin/zz\", \"--version\"]",
                "version = [\"./zz\"]",
                |e| {
                    matches!(
                        e,
                        LanguageError::BadProgram {
                            field: "version",
                            ..
                        }
                    )
                },
            ),
            (
                "run = [\"/usr/bin/zz\", \"main.zz\"]",
                "run = [\"/usr/bin/zz\", \"a\\u0000b\"]",
                |e| matches!(e, LanguageError::NulByte { field: "run", .. }),
            ),
            ("name = \"Zed\"", "name = \" \"", |e| {
                matches!(e, LanguageError::EmptyField { field: "name", .. })
            }),
            ("source = \"main.zz\"", "source = \"\"", |e| {
                matches!(
                    e,
                    LanguageError::EmptyField {
                        field: "source",
                        ..
                    }
                )
            }),
            ("source = \"main.zz\"", "source = \"../main.zz\"", |e| {
                matches!(e, LanguageError::BadSource { .. })
            }),
            ("source = \"main.zz\"", "source = \"..\"", |e| {
                matches!(e, LanguageError::BadSource { .. })
            }),
            ("aliases = [\"a\", \"a-2\"]", "aliases = [\"zz\"]", |e| {
                matches!(e, LanguageError::DuplicateAlias { alias, taken_by, .. }
                    if alias == "zz" && taken_by.contains("key of language `zz`"))
            }),
            (
                "aliases = [\"a\", \"a-2\"]",
                "aliases = [\"a\", \"a\"]",
                |e| {
                    matches!(e, LanguageError::DuplicateAlias { taken_by, .. }
                    if taken_by.contains("alias of language `aa`"))
                },
            ),
            ("aliases = [\"a\", \"a-2\"]", "aliases = [\"aa\"]", |e| {
                matches!(e, LanguageError::DuplicateAlias { .. })
            }),
            (
                "aliases = [\"a\", \"a-2\"]",
                "aliases = [\"C++\"]",
                |e| matches!(e, LanguageError::InvalidKey(k) if k == "C++"),
            ),
            (
                "languages.zz",
                "languages.\"z z\"",
                |e| matches!(e, LanguageError::InvalidKey(k) if k == "z z"),
            ),
            ("compile_memory_mib = 512", "compile_memory_mib = 0", |e| {
                matches!(
                    e,
                    LanguageError::ZeroLimit {
                        field: "compile_memory_mib",
                        ..
                    }
                )
            }),
            (
                "readonly_paths = [\"/etc/aa\"]",
                "readonly_paths = [\"etc/aa\"]",
                |e| matches!(e, LanguageError::RelativeReadonlyPath { .. }),
            ),
            (
                "HOME = \"/tmp\"",
                "\"A=B\" = \"/tmp\"",
                |e| matches!(e, LanguageError::BadEnvName { name, .. } if name == "A=B"),
            ),
        ];
        for (from, to, check) in cases {
            let err = edited(from, to).expect_err(to);
            assert!(check(&err), "{to}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
        // A key may not equal another language's alias either: zz renamed
        // to "a" clashes with aa's alias "a".
        let err = edited("languages.zz", "languages.a").unwrap_err();
        assert!(
            matches!(err, LanguageError::DuplicateAlias { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn new_rejects_duplicate_keys_and_empty() {
        let aa = minimal().get("aa").unwrap().clone();
        let err = LanguageSet::new(vec![aa.clone(), aa]).unwrap_err();
        assert!(
            matches!(err, LanguageError::DuplicateAlias { .. }),
            "{err:?}"
        );
        assert!(matches!(
            LanguageSet::new(vec![]),
            Err(LanguageError::Empty)
        ));
    }

    #[test]
    fn load_reports_io_errors_without_panicking() {
        let missing = Path::new("/nonexistent/evaler/languages.toml");
        let err = LanguageSet::load(missing).unwrap_err();
        assert!(matches!(err, LanguageError::Io { ref path, .. } if path == missing));
        assert!(err
            .to_string()
            .contains("/nonexistent/evaler/languages.toml"));
        // A directory, not a file.
        assert!(matches!(
            LanguageSet::load("/"),
            Err(LanguageError::Io { .. })
        ));
    }

    #[test]
    fn load_reads_files_and_names_them_in_errors() {
        let dir = std::env::temp_dir().join(format!("evaler-languages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, MINIMAL).unwrap();
        assert_eq!(LanguageSet::load(&good).unwrap(), minimal());
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[languages.x]\nname = 1\n").unwrap();
        let err = LanguageSet::load(&bad).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bundled_file_is_valid() {
        let set = LanguageSet::bundled().unwrap();
        assert_eq!(set.resolve("cpp"), Some("cpp17"));
        assert!(set.len() >= 11);
    }

    #[test]
    fn installed_version_reads_stdout_then_stderr() {
        let mut lang = minimal().get("zz").unwrap().clone();
        lang.version = vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo; echo '  v1.2 ' ; echo x".into(),
        ];
        assert_eq!(lang.installed_version().as_deref(), Some("v1.2"));
        lang.version = vec!["/bin/sh".into(), "-c".into(), "echo 'java 17' >&2".into()];
        assert_eq!(lang.installed_version().as_deref(), Some("java 17"));
        // The language's env, and only it, is set.
        lang.env.insert("EVALER_TEST_V".into(), "from-env".into());
        lang.version = vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo ${EVALER_TEST_V}${HOME}".into(),
        ];
        assert_eq!(lang.installed_version().as_deref(), Some("from-env"));
        lang.version = vec!["/bin/sh".into(), "-c".into(), "echo v; exit 3".into()];
        assert_eq!(lang.installed_version(), None, "failing command");
        lang.version = vec!["/bin/sh".into(), "-c".into(), "true".into()];
        assert_eq!(lang.installed_version(), None, "no output");
        lang.version = vec!["/nonexistent/bin/zz".into()];
        assert_eq!(lang.installed_version(), None, "missing program");
        lang.version = vec![];
        assert_eq!(lang.installed_version(), None, "empty argv");
    }

    #[test]
    fn installed_version_times_out() {
        let mut lang = minimal().get("zz").unwrap().clone();
        // The grandchild `sleep` keeps the pipes open after sh is killed.
        lang.version = vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo v; sleep 5 & exec sleep 30".into(),
        ];
        let start = Instant::now();
        assert_eq!(
            lang.installed_version_within(Duration::from_millis(300)),
            None
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
