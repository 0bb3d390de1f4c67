//! Small file-system helpers for cgroupfs: control-file I/O that never
//! creates files, directory creation/removal, and process killing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::error::CgroupError;
use super::parse;

/// How many times the kill loop re-reads `cgroup.procs` before giving up.
const KILL_ATTEMPTS: u32 = 200;

/// Writes `value` to an existing control file in a single `write(2)`.
///
/// Never creates the file (control files are made by the kernel; a missing
/// one means a missing controller or an old kernel, which callers decide
/// how to handle via [`CgroupError::is_not_found`]).
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| CgroupError::io(format!("write {value:?} to"), path, e))?;
    rewrite(&f, path, value)
}

/// Writes `value` to a control file through an fd opened read-write, at
/// offset 0, after truncating it. On cgroupfs each write is a whole new
/// value and the truncate does nothing; on the plain files of the tests'
/// fake trees it makes the file hold exactly `value`, as cgroupfs would.
pub(crate) fn rewrite(file: &File, path: &Path, value: &str) -> Result<(), CgroupError> {
    let op = || format!("write {value:?} to");
    file.set_len(0)
        .map_err(|e| CgroupError::io(op(), path, e))?;
    let n = file
        .write_at(value.as_bytes(), 0)
        .map_err(|e| CgroupError::io(op(), path, e))?;
    if n != value.len() {
        return Err(CgroupError::io(
            op(),
            path,
            io::Error::new(io::ErrorKind::WriteZero, "short write"),
        ));
    }
    Ok(())
}

/// Like [`write_file`] but `Ok(false)` when the file does not exist.
pub(crate) fn write_file_if_exists(path: &Path, value: &str) -> Result<bool, CgroupError> {
    match write_file(path, value) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))
}

/// Opens a control file read-only (close-on-exec) for repeated `pread`s.
pub(crate) fn open_read(path: &Path) -> Result<File, CgroupError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| CgroupError::io("open", path, e))
}

/// Re-reads a control file from offset 0 into `buf` through an open fd.
/// cgroupfs files are seq_files: a `pread` at offset 0 regenerates the
/// content, so the same fd can be sampled forever. Allocation-free.
pub(crate) fn pread_all<'a>(
    file: &File,
    path: &Path,
    buf: &'a mut [u8],
) -> Result<&'a [u8], CgroupError> {
    let mut len = 0;
    while len < buf.len() {
        let n = file
            .read_at(&mut buf[len..], len as u64)
            .map_err(|e| CgroupError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    Ok(&buf[..len])
}

/// `pread`s a single-number file (`cpuacct.usage`, `memory.peak`...).
pub(crate) fn pread_u64(file: &File, path: &Path) -> Result<u64, CgroupError> {
    let mut buf = [0u8; 64];
    let content = pread_all(file, path, &mut buf)?;
    parse::parse_u64(content).ok_or_else(|| bad_number(path, content))
}

/// `pread`s a flat-keyed file and returns the value of `key`.
pub(crate) fn pread_key(file: &File, path: &Path, key: &str) -> Result<u64, CgroupError> {
    let mut buf = [0u8; 1024];
    let content = pread_all(file, path, &mut buf)?;
    parse::find_key(content, key.as_bytes()).ok_or_else(|| {
        CgroupError::parse(
            "parse",
            path,
            format!("no {key:?} line in {:?}", String::from_utf8_lossy(content)),
        )
    })
}

#[cold]
fn bad_number(path: &Path, content: &[u8]) -> CgroupError {
    CgroupError::parse(
        "parse",
        path,
        format!(
            "not a number: {:?}",
            String::from_utf8_lossy(content).trim()
        ),
    )
}

/// Opens a file for writing with `O_WRONLY | O_CLOEXEC` (no create, no
/// truncate), returning the raw owned fd.
pub(crate) fn open_write_fd(path: &Path) -> Result<OwnedFd, CgroupError> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| CgroupError::io("open for writing", path, e))?;
    Ok(OwnedFd::from(f))
}

/// Creates one cgroup directory. Kernel-side this also creates the control
/// files; in unit tests a fake "kernel" populates them.
pub(crate) fn mkdir(path: &Path) -> io::Result<()> {
    fs::create_dir(path)?;
    #[cfg(test)]
    super::fake::after_mkdir(path);
    Ok(())
}

/// Removes one (empty) cgroup directory. On cgroupfs `rmdir(2)` removes a
/// directory that still holds control files; never use `remove_dir_all`.
pub(crate) fn rmdir(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    super::fake::before_rmdir(path);
    fs::remove_dir(path)
}

/// Lists `cgroup.procs` of `dir`. A vanished directory reads as empty.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::io("read", &path, e)),
    };
    text.split_whitespace()
        .map(|t| {
            t.parse()
                .map_err(|_| CgroupError::parse("parse", &path, format!("bad pid {t:?}")))
        })
        .collect()
}

/// Which cgroup a process must be in for us to SIGKILL it: guards against
/// a pid read from `cgroup.procs` having exited and been reused by an
/// unrelated process before the signal is sent.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    /// v1: one controller of the hierarchy (to pick the `/proc/<pid>/cgroup`
    /// line); `None` for the v2 line `0::`.
    pub controller: Option<String>,
    /// The cgroup path as it appears in `/proc/<pid>/cgroup`.
    pub rel: String,
    /// Accept descendants of `rel` too.
    pub subtree: bool,
}

impl Membership {
    fn matches(&self, proc_cgroup: &str) -> bool {
        parse::parse_proc_cgroup(proc_cgroup).iter().any(|l| {
            let right_line = match &self.controller {
                None => l.is_v2(),
                Some(c) => l.hierarchy_id != 0 && l.controllers.iter().any(|x| x == c),
            };
            right_line
                && (l.path == self.rel
                    || (self.subtree
                        && parse::strip_cgroup_prefix(&l.path, &self.rel)
                            .is_some_and(|r| !r.is_empty())))
        })
    }
}

/// One cgroup directory to empty, with the membership test for its pids.
#[derive(Debug, Clone)]
pub(crate) struct KillTarget {
    pub dir: PathBuf,
    pub member: Membership,
}

/// SIGKILLs every process listed in the targets' `cgroup.procs` and repeats
/// until all are empty (processes may fork while we kill). Bounded: gives
/// up with [`CgroupError::KillTimeout`] after about two seconds.
pub(crate) fn kill_until_empty(targets: &[KillTarget]) -> Result<(), CgroupError> {
    for attempt in 0..KILL_ATTEMPTS {
        let mut any = false;
        for t in targets {
            for pid in read_procs(&t.dir)? {
                any = true;
                kill_if_member(pid, &t.member);
            }
        }
        if !any {
            return Ok(());
        }
        // Let the kernel finish the exits: 0.1 ms, 0.2 ms ... capped at 10 ms.
        let us = (100u64 << attempt.min(7)).min(10_000);
        std::thread::sleep(Duration::from_micros(us));
    }
    for t in targets {
        let remaining = read_procs(&t.dir)?;
        if !remaining.is_empty() {
            return Err(CgroupError::KillTimeout {
                path: t.dir.clone(),
                remaining,
            });
        }
    }
    Ok(())
}

/// SIGKILLs `pid` if it is (still) a member of the cgroup. Uses a pidfd so
/// the membership check and the signal are about the same process.
fn kill_if_member(pid: i32, member: &Membership) {
    if pid <= 0 {
        return;
    }
    // SAFETY: pidfd_open(2) takes a pid and flags by value and returns a new
    // descriptor or -1; no memory is shared with the kernel.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw >= 0 {
        // SAFETY: `raw` is a descriptor the kernel just created for us and
        // nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        if is_member(pid, member) {
            // SAFETY: pidfd_send_signal(2) gets a valid pidfd we own, a
            // signal number, a null siginfo (allowed: the kernel fills in a
            // default one) and flags 0.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    tracing::warn!(pid, error = %e, "cgroup: pidfd_send_signal(SIGKILL) failed");
                }
            }
        }
        return;
    }
    let e = Errno::last();
    if e == Errno::ESRCH {
        return; // already gone
    }
    // No pidfd support (Linux < 5.3, or filtered): plain kill(2).
    if is_member(pid, member) {
        match signal::kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, error = %e, "cgroup: kill(SIGKILL) failed"),
        }
    }
}

fn is_member(pid: i32, member: &Membership) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(text) => member.matches(&text),
        // Gone (ENOENT/ESRCH): nothing to kill.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            false
        }
        // /proc unreadable for another reason: trust cgroup.procs.
        Err(_) => true,
    }
}

/// Removes a whole cgroup subtree in one hierarchy: kills every process in
/// it (via `cgroup.kill` first when the kernel has it), then removes the
/// directories bottom-up.
pub(crate) fn destroy_tree(dir: &Path, member: &Membership) -> Result<(), CgroupError> {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs)?;
    if dirs.is_empty() {
        return Ok(());
    }
    // cgroup v2 (>= 5.14): kills the whole subtree atomically, even racing forks.
    if member.controller.is_none() {
        let _ = write_file_if_exists(&dir.join("cgroup.kill"), "1");
    }
    let targets: Vec<KillTarget> = dirs
        .iter()
        .map(|d| KillTarget {
            dir: d.clone(),
            member: Membership {
                subtree: true,
                ..member.clone()
            },
        })
        .collect();
    kill_until_empty(&targets)?;
    // `dirs` is in pre-order; remove children first.
    for d in dirs.iter().rev() {
        rmdir_retry(d)?;
    }
    Ok(())
}

/// `rmdir` that tolerates a missing directory and retries `EBUSY` briefly
/// (a killed process can linger a moment after leaving `cgroup.procs`).
pub(crate) fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let mut attempt = 0;
    loop {
        match rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(CgroupError::io("remove directory", dir, e)),
        }
    }
}

/// Pre-order list of `dir` and all its subdirectories (none when missing).
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io("list directory", dir, e)),
    };
    out.push(dir.to_path_buf());
    for entry in rd {
        let entry = entry.map_err(|e| CgroupError::io("list directory", dir, e))?;
        let ft = entry
            .file_type()
            .map_err(|e| CgroupError::io("stat", &entry.path(), e))?;
        if ft.is_dir() {
            collect_dirs(&entry.path(), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_matching() {
        let text = "4:memory:/base/evaler-7/box-0\n2:cpu,cpuacct:/base/evaler-7/box-0\n0::/\n";
        let m = |c: Option<&str>, rel: &str, subtree| Membership {
            controller: c.map(str::to_string),
            rel: rel.to_string(),
            subtree,
        };
        assert!(m(Some("memory"), "/base/evaler-7/box-0", false).matches(text));
        assert!(m(Some("cpuacct"), "/base/evaler-7/box-0", false).matches(text));
        assert!(!m(Some("pids"), "/base/evaler-7/box-0", false).matches(text));
        assert!(!m(Some("memory"), "/base/evaler-7", false).matches(text));
        assert!(m(Some("memory"), "/base/evaler-7", true).matches(text));
        assert!(!m(Some("memory"), "/base/evaler-70", true).matches(text));
        assert!(m(None, "/", false).matches(text));
        assert!(!m(None, "/base", true).matches(text));
    }
}
