//! C++ with clang-repl.
//!
//! clang-repl (as of LLVM 14, Debian 12's) reads one line at a time, each a
//! separate "partial translation unit" that may hold declarations only, and
//! prints nothing when it is done. So a cell is first split into top-level
//! chunks ([`split`]): preprocessor lines, and code up to a `;` or a closing
//! `}` at nesting depth 0, each flattened to one line (comments removed,
//! raw strings rewritten as ordinary literals). Each chunk is sent on its
//! own line:
//!
//! - a declaration (`int x = 5;`, `struct S {...};`, a function) is sent as
//!   it is, followed on the same line by `int __evaler_mN = (__evaler_ok =
//!   1);`. That initializer only runs if the whole line compiled and ran, so
//!   `__evaler_ok` tells whether the chunk took effect;
//! - a statement (`x++;`, `printf(...)`, `for (...) {...}`) is run in a
//!   lambda: `int __evaler_cN = []() -> int { try { <chunk> ; } catch ...
//!   return 1; }();`. Uncaught exceptions are reported instead of killing the
//!   REPL. A chunk that starts with a statement keyword or an operator goes
//!   this way directly; any other chunk is tried as a declaration first and
//!   run as a statement when clang says it is not one ("a type specifier is
//!   required", "unknown type name", ...), so `x = 6;` works whether or not
//!   it looks like a declaration. The output of the failed attempt is
//!   dropped. A real declaration error (redefinition, undeclared name) is
//!   reported as is.
//!
//! After each chunk, `int __evaler_eN = __evaler_end("<token>");` flushes
//! C stdio and prints the end marker with `__evaler_ok` on both streams.
//! The cell stops at the first chunk that fails, with status `error`.
//!
//! Limits: no `value` (clang-repl 14 cannot print values); preprocessor
//! directives must stand on their own lines outside any braces; SIGINT kills
//! clang-repl (it cannot abandon JIT-compiled code), so INTERRUPT and
//! timeouts end a C++ session.

use std::time::Instant;

use evaler_proto::RunStatus;

use super::{new_token, result, CellEnd, Server, Stop};

/// One top-level piece of a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// A preprocessor line (`#include <vector>`), continuation lines joined.
    Directive(String),
    /// Code up to a top-level `;` or `}`, on one line.
    Code(String),
}

const INIT: &str = "#include <cstdio>\n\
#include <exception>\n\
int __evaler_ok = 0;\n\
int __evaler_end(const char *t) { fflush(stdout); printf(\"\\n%s %d\\n\", t, __evaler_ok); fflush(stdout); \
fprintf(stderr, \"\\n%s %d\\n\", t, __evaler_ok); fflush(stderr); __evaler_ok = 0; return 0; }\n";

/// Words that start a statement, never a declaration.
const STATEMENT_WORDS: &[&str] = &[
    "if",
    "for",
    "while",
    "do",
    "switch",
    "return",
    "break",
    "continue",
    "goto",
    "try",
    "throw",
    "delete",
    "case",
    "default",
    "co_return",
    "co_await",
    "co_yield",
];

/// First clang errors meaning "this is not a declaration".
const NOT_A_DECLARATION: &[&str] = &[
    "type specifier",
    "unknown type name",
    "expected unqualified-id",
    "no type named",
    "cannot use dot operator on a type",
    "cannot use arrow operator on a type",
];

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn end_line(token: &str) -> String {
    format!("int __evaler_e{} = __evaler_end(\"{token}\");\n", next_id())
}

pub(super) fn init(server: &mut Server, deadline: Instant) -> Result<(), Stop> {
    let token = new_token();
    let input = format!("{INIT}{}", end_line(&token));
    let ex = server.exchange(input.as_bytes(), &token, None, Some(deadline))?;
    if contains_error(&ex.err) {
        tracing::warn!(
            "clang-repl start-up reported errors: {}",
            String::from_utf8_lossy(&ex.err)
        );
    }
    Ok(())
}

fn contains_error(err: &[u8]) -> bool {
    String::from_utf8_lossy(err).contains("error:")
}

/// Removes clang-repl's noise (every input is "included" from a
/// pseudo-file) and shows the user's code, not our wrappers, in the source
/// lines quoted by diagnostics (the caret line under a quoted line is
/// shifted with it).
fn clean_diagnostics(err: &[u8]) -> Vec<u8> {
    const STMT_HEAD: &str = "[]() -> int { try { ";
    const STMT_TAIL: &str = " ; } catch (const std::exception &__evaler_x)";
    const MARK: &str = " int __evaler_m";
    let text = String::from_utf8_lossy(err);
    let mut out = String::with_capacity(text.len());
    let mut shift: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        if l == "In file included from <<< inputs >>>:1:"
            || l.ends_with("note: '' included multiple times, additional include site here")
        {
            continue;
        }
        if let Some(n) = shift.take() {
            // The caret line under a rewritten source line.
            let cut = l.char_indices().nth(n).map_or(l.len(), |(i, _)| i);
            out.push_str(&l[cut..]);
            out.push('\n');
            continue;
        }
        if l.starts_with("int __evaler_c") {
            if let (Some(h), Some(t)) = (l.find(STMT_HEAD), l.find(STMT_TAIL)) {
                let start = h + STMT_HEAD.len();
                if start <= t {
                    out.push_str(&l[start..t]);
                    out.push('\n');
                    shift = Some(l[..start].chars().count());
                    continue;
                }
            }
        }
        if let Some(i) = l.rfind(MARK) {
            if l.ends_with("= (__evaler_ok = 1);") {
                out.push_str(&l[..i]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
    }
    out.into_bytes()
}

fn first_error(err: &[u8]) -> String {
    String::from_utf8_lossy(err)
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or("")
        .to_string()
}

/// Whether a chunk must be a statement (so trying it as a declaration is
/// pointless).
pub fn is_statement(chunk: &str) -> bool {
    let Some(c) = chunk.chars().next() else {
        return false;
    };
    if "{(*&+-!~\"'".contains(c) || c.is_ascii_digit() {
        return true;
    }
    let word: String = chunk
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    STATEMENT_WORDS.contains(&word.as_str())
}

fn statement_line(chunk: &str) -> String {
    let n = next_id();
    format!(
        "int __evaler_c{n} = []() -> int {{ try {{ {chunk} ; }} \
catch (const std::exception &__evaler_x) {{ fprintf(stderr, \"uncaught exception: %s\\n\", __evaler_x.what()); return 2; }} \
catch (...) {{ fputs(\"uncaught exception\\n\", stderr); return 2; }} return 1; }}(); \
int __evaler_m{n} = (__evaler_ok = __evaler_c{n});\n"
    )
}

fn declaration_line(chunk: &str) -> String {
    format!("{chunk} int __evaler_m{} = (__evaler_ok = 1);\n", next_id())
}

/// Output of one chunk, or why the cell must stop.
enum Step {
    Ran {
        out: Vec<u8>,
        err: Vec<u8>,
        ok: bool,
        truncated: bool,
    },
    Stop(Stop),
}

fn send(server: &mut Server, line: &str) -> Step {
    let token = new_token();
    let input = format!("{line}{}", end_line(&token));
    match server.exchange(input.as_bytes(), &token, None, None) {
        Ok(ex) => Step::Ran {
            ok: ex.code == 1,
            err: clean_diagnostics(&ex.err),
            out: ex.out,
            truncated: ex.truncated,
        },
        Err(stop) => Step::Stop(stop),
    }
}

/// Runs one cell.
pub(super) fn run_cell(server: &mut Server, code: &str) -> CellEnd {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut truncated = false;
    let mut status = RunStatus::Ok;
    for chunk in split(code) {
        let step = match &chunk {
            Chunk::Directive(line) => match send(server, &format!("{line}\n")) {
                Step::Ran {
                    out,
                    err,
                    truncated,
                    ..
                } => {
                    let ok = !contains_error(&err);
                    Step::Ran {
                        out,
                        err,
                        ok,
                        truncated,
                    }
                }
                stop => stop,
            },
            Chunk::Code(text) if is_statement(text) => send(server, &statement_line(text)),
            Chunk::Code(text) => match send(server, &declaration_line(text)) {
                Step::Ran {
                    ok: false,
                    err: decl_err,
                    out: decl_out,
                    truncated: decl_trunc,
                } if NOT_A_DECLARATION
                    .iter()
                    .any(|m| first_error(&decl_err).contains(m)) =>
                {
                    match send(server, &statement_line(text)) {
                        // Neither: show the errors that describe the chunk
                        // best. "a type specifier is required" means clang
                        // did not see a declaration at all.
                        Step::Ran { ok: false, .. }
                            if !first_error(&decl_err).contains("type specifier") =>
                        {
                            Step::Ran {
                                ok: false,
                                err: decl_err,
                                out: decl_out,
                                truncated: decl_trunc,
                            }
                        }
                        step => step,
                    }
                }
                step => step,
            },
        };
        match step {
            Step::Ran {
                out: o,
                err: e,
                ok,
                truncated: t,
            } => {
                out.extend_from_slice(&o);
                err.extend_from_slice(&e);
                truncated |= t;
                if !ok {
                    status = RunStatus::Error;
                    break;
                }
            }
            Step::Stop(Stop::Died {
                status,
                out: o,
                err: e,
            }) => {
                out.extend_from_slice(&o);
                err.extend_from_slice(&clean_diagnostics(&e));
                return CellEnd::Died {
                    status,
                    out,
                    err,
                    truncated,
                    elapsed: started.elapsed(),
                };
            }
            Step::Stop(stop) => return CellEnd::Stop(stop),
        }
    }
    if server.interrupted {
        status = RunStatus::Interrupted;
    }
    CellEnd::Result(result(out, err, status, truncated, started.elapsed()))
}

/// Splits a cell into top-level chunks; see the module documentation.
pub fn split(code: &str) -> Vec<Chunk> {
    Splitter::new(code).run()
}

struct Splitter {
    s: Vec<char>,
    i: usize,
    cur: String,
    depth: i32,
    /// Only whitespace since the last newline.
    line_start: bool,
    first_word: Option<String>,
    out: Vec<Chunk>,
}

impl Splitter {
    fn new(code: &str) -> Splitter {
        Splitter {
            s: code.chars().collect(),
            i: 0,
            cur: String::new(),
            depth: 0,
            line_start: true,
            first_word: None,
            out: Vec::new(),
        }
    }

    fn peek(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn space(&mut self) {
        if !self.cur.is_empty() && !self.cur.ends_with(' ') {
            self.cur.push(' ');
        }
    }

    fn end_chunk(&mut self) {
        let text = self.cur.trim().to_string();
        if !text.is_empty() {
            self.out.push(Chunk::Code(text));
        }
        self.cur.clear();
        self.depth = 0;
        self.first_word = None;
    }

    fn run(mut self) -> Vec<Chunk> {
        while let Some(c) = self.peek(0) {
            // Line splice.
            if c == '\\' && self.peek(1) == Some('\n') {
                self.i += 2;
                continue;
            }
            if c == '\n' {
                self.space();
                self.line_start = true;
                self.i += 1;
                continue;
            }
            if c.is_whitespace() {
                self.space();
                self.i += 1;
                continue;
            }
            if c == '#' && self.line_start && self.depth == 0 && self.cur.trim().is_empty() {
                self.directive();
                continue;
            }
            self.line_start = false;
            if c == '/' && self.peek(1) == Some('/') {
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
                continue;
            }
            if c == '/' && self.peek(1) == Some('*') {
                self.i += 2;
                while self.peek(0).is_some()
                    && !(self.peek(0) == Some('*') && self.peek(1) == Some('/'))
                {
                    self.i += 1;
                }
                self.i = (self.i + 2).min(self.s.len());
                self.space();
                continue;
            }
            if c == '"' || c == '\'' {
                self.literal(c);
                continue;
            }
            if c.is_ascii_digit() || (c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
            {
                self.number();
                continue;
            }
            if c.is_alphabetic() || c == '_' {
                self.word();
                continue;
            }
            self.cur.push(c);
            self.i += 1;
            match c {
                '(' | '[' | '{' => self.depth += 1,
                ')' | ']' => self.depth = (self.depth - 1).max(0),
                '}' => {
                    self.depth = (self.depth - 1).max(0);
                    if self.depth == 0 && self.ends_after_brace() {
                        self.end_chunk();
                    }
                }
                ';' if self.depth == 0 && self.ends_after_semicolon() => self.end_chunk(),
                _ => {}
            }
        }
        self.end_chunk();
        self.out
    }

    fn directive(&mut self) {
        let mut line = String::new();
        while let Some(c) = self.peek(0) {
            if c == '\\' && self.peek(1) == Some('\n') {
                self.i += 2;
                line.push(' ');
                continue;
            }
            if c == '\n' {
                break;
            }
            line.push(c);
            self.i += 1;
        }
        let line = line.trim().to_string();
        if line != "#" {
            self.out.push(Chunk::Directive(line));
        }
        self.cur.clear();
    }

    fn literal(&mut self, quote: char) {
        self.cur.push(quote);
        self.i += 1;
        while let Some(c) = self.peek(0) {
            if c == '\\' {
                if self.peek(1) == Some('\n') {
                    self.i += 2;
                    continue;
                }
                self.cur.push(c);
                if let Some(n) = self.peek(1) {
                    self.cur.push(n);
                }
                self.i += 2;
                continue;
            }
            if c == '\n' {
                // Unterminated: clang will say so.
                return;
            }
            self.cur.push(c);
            self.i += 1;
            if c == quote {
                return;
            }
        }
    }

    fn number(&mut self) {
        while let Some(c) = self.peek(0) {
            let exp = matches!(c, '+' | '-')
                && self
                    .cur
                    .chars()
                    .last()
                    .is_some_and(|p| matches!(p, 'e' | 'E' | 'p' | 'P'));
            if c.is_alphanumeric() || c == '_' || c == '.' || c == '\'' || exp {
                self.cur.push(c);
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn word(&mut self) {
        let start = self.i;
        while self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.i += 1;
        }
        let word: String = self.s[start..self.i].iter().collect();
        if self.peek(0) == Some('"') && matches!(word.as_str(), "R" | "u8R" | "uR" | "UR" | "LR") {
            self.raw_string(&word[..word.len() - 1]);
            return;
        }
        if self.cur.trim().is_empty() && self.first_word.is_none() {
            self.first_word = Some(word.clone());
        }
        self.cur.push_str(&word);
    }

    /// `R"delim(...)delim"` becomes an ordinary literal with escapes, so it
    /// fits on one line.
    fn raw_string(&mut self, prefix: &str) {
        self.i += 1; // the quote
        let mut delim = String::new();
        while let Some(c) = self.peek(0) {
            self.i += 1;
            if c == '(' {
                break;
            }
            delim.push(c);
        }
        let close: Vec<char> = format!("){delim}\"").chars().collect();
        let mut content = String::new();
        while self.i < self.s.len() {
            if self.s[self.i..].starts_with(&close) {
                self.i += close.len();
                break;
            }
            content.push(self.s[self.i]);
            self.i += 1;
        }
        self.cur.push_str(prefix);
        self.cur.push('"');
        for c in content.chars() {
            match c {
                '\\' => self.cur.push_str("\\\\"),
                '"' => self.cur.push_str("\\\""),
                '\n' => self.cur.push_str("\\n"),
                '\r' => self.cur.push_str("\\r"),
                '\t' => self.cur.push_str("\\t"),
                '?' => self.cur.push_str("\\?"),
                c => self.cur.push(c),
            }
        }
        self.cur.push('"');
    }

    /// The next token after whitespace and comments, and whether a newline
    /// came before it.
    fn next_token(&self) -> (Option<String>, bool) {
        let mut j = self.i;
        let mut newline = false;
        loop {
            match self.s.get(j) {
                None => return (None, newline),
                Some('\n') => {
                    newline = true;
                    j += 1;
                }
                Some(c) if c.is_whitespace() => j += 1,
                Some('/') if self.s.get(j + 1) == Some(&'/') => {
                    while self.s.get(j).is_some_and(|c| *c != '\n') {
                        j += 1;
                    }
                }
                Some('/') if self.s.get(j + 1) == Some(&'*') => {
                    j += 2;
                    while j < self.s.len() && !(self.s[j] == '*' && self.s.get(j + 1) == Some(&'/'))
                    {
                        if self.s[j] == '\n' {
                            newline = true;
                        }
                        j += 1;
                    }
                    j += 2;
                }
                Some(c) if c.is_alphabetic() || *c == '_' => {
                    let w: String = self.s[j..]
                        .iter()
                        .take_while(|c| c.is_alphanumeric() || **c == '_')
                        .collect();
                    return (Some(w), newline);
                }
                Some(c) => return (Some(c.to_string()), newline),
            }
        }
    }

    fn continues(&self, next: &str) -> bool {
        next == "else"
            || next == "catch"
            || (next == "while" && self.first_word.as_deref() == Some("do"))
    }

    fn ends_after_semicolon(&self) -> bool {
        match self.next_token() {
            (Some(next), _) => !self.continues(&next),
            (None, _) => true,
        }
    }

    /// A `}` back at depth 0 ends a chunk (a function, a loop) unless what
    /// follows on the same line continues it (`} s;`, `};`, `}(5);`) or it
    /// is `else`/`catch`/`while` of the same statement.
    fn ends_after_brace(&self) -> bool {
        match self.next_token() {
            (None, _) => true,
            (Some(next), newline) => {
                if next == ";" || self.continues(&next) {
                    false
                } else {
                    newline
                }
            }
        }
    }
}
