//! Host-side access to a box's `/box`, which the program controls.
//!
//! Everything in `/box` may have been planted by a hostile program: a
//! symlink to `/etc/shadow`, a FIFO that blocks whoever opens it, a directory
//! nested ten thousand deep. So every operation goes through a directory
//! descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, opens
//! with `O_NOFOLLOW | O_NONBLOCK`, checks the file type on the open
//! descriptor, and never recurses without a bound.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::error::SandboxError;
use crate::spec::valid_file_name;

/// How deep [`BoxDir::clear`] walks before it gives up and asks for the
/// whole filesystem to be replaced instead.
const MAX_DEPTH: usize = 32;

/// One entry of `/box`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxEntry {
    pub name: String,
    pub is_file: bool,
    pub size: u64,
}

/// A handle on a box's working directory, from the host side.
#[derive(Debug)]
pub struct BoxDir {
    fd: OwnedFd,
    uid: Uid,
    gid: Gid,
}

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn io_err(what: &'static str, name: &str, errno: Errno) -> SandboxError {
    SandboxError::Io {
        what,
        path: format!("/box/{name}").into(),
        source: std::io::Error::from(errno),
    }
}

impl BoxDir {
    pub(crate) fn new(fd: OwnedFd, uid: u32, gid: u32) -> BoxDir {
        BoxDir {
            fd,
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
        }
    }

    fn check(name: &str) -> Result<(), SandboxError> {
        if valid_file_name(name) {
            Ok(())
        } else {
            Err(SandboxError::BadFileName(name.to_string()))
        }
    }

    /// Writes a file owned by the box's user (replacing whatever the name
    /// held: a planted symlink is removed, not followed).
    pub fn write(&self, name: &str, contents: &[u8], executable: bool) -> Result<(), SandboxError> {
        Self::check(name)?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_err("replacing", name, e)),
        }
        let mode = if executable { 0o755 } else { 0o644 };
        let how = OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(mode))
            .resolve(beneath());
        let fd = openat2(&self.fd, name, how).map_err(|e| io_err("creating", name, e))?;
        fchown(&fd, Some(self.uid), Some(self.gid)).map_err(|e| io_err("chown", name, e))?;
        let mut file = File::from(fd);
        file.write_all(contents).map_err(|source| SandboxError::Io {
            what: "writing",
            path: format!("/box/{name}").into(),
            source,
        })
    }

    /// Creates (if needed) and opens a subdirectory, owned by the box's user.
    pub fn subdir(&self, name: &str) -> Result<BoxDir, SandboxError> {
        Self::check(name)?;
        match nix::sys::stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(io_err("mkdir", name, e)),
        }
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(beneath());
        let fd = openat2(&self.fd, name, how).map_err(|e| io_err("opening", name, e))?;
        fchown(&fd, Some(self.uid), Some(self.gid)).map_err(|e| io_err("chown", name, e))?;
        Ok(BoxDir {
            fd,
            uid: self.uid,
            gid: self.gid,
        })
    }

    /// Reads at most `cap` bytes of a regular file; the flag says whether it
    /// was longer.
    pub fn read(&self, name: &str, cap: usize) -> Result<(Vec<u8>, bool), SandboxError> {
        Self::check(name)?;
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
            .resolve(beneath());
        let fd = openat2(&self.fd, name, how).map_err(|e| io_err("opening", name, e))?;
        let st = fstat(&fd).map_err(|e| io_err("stat", name, e))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(SandboxError::NotRegular {
                name: name.to_string(),
            });
        }
        let mut buf = Vec::with_capacity((st.st_size.max(0) as usize).min(cap));
        let file = File::from(fd);
        file.take(cap as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|source| SandboxError::Io {
                what: "reading",
                path: format!("/box/{name}").into(),
                source,
            })?;
        let truncated = buf.len() > cap;
        buf.truncate(cap);
        Ok((buf, truncated))
    }

    /// The top-level entries of `/box`.
    pub fn list(&self) -> Result<Vec<BoxEntry>, SandboxError> {
        let mut dir = Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("listing", "", e))?;
        let mut out = Vec::new();
        for entry in dir.iter().flatten() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let is_file = entry.file_type() == Some(Type::File);
            let size = if is_file {
                nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|s| s.st_size.max(0) as u64)
                    .unwrap_or(0)
            } else {
                0
            };
            out.push(BoxEntry {
                name: name.to_string(),
                is_file,
                size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes everything in `/box`. Returns `false` when the tree was too
    /// deep to walk safely; the caller then replaces the whole filesystem.
    pub fn clear(&self) -> Result<bool, SandboxError> {
        clear_dir(self.fd.as_fd(), 0)
    }
}

fn clear_dir(dirfd: std::os::fd::BorrowedFd<'_>, depth: usize) -> Result<bool, SandboxError> {
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    let mut dir = Dir::openat(
        dirfd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("listing", "", e))?;
    let mut names = Vec::new();
    for entry in dir.iter().flatten() {
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push((entry.file_name().to_owned(), entry.file_type()));
        if names.len() > 100_000 {
            return Ok(false);
        }
    }
    for (name, kind) in names {
        let as_dir = match kind {
            Some(Type::Directory) => true,
            Some(_) => false,
            None => matches!(
                nix::sys::stat::fstatat(dirfd, name.as_c_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW),
                Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            ),
        };
        if as_dir {
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .resolve(beneath());
            let sub = openat2(dirfd, name.as_c_str(), how).map_err(|e| io_err("opening", "", e))?;
            if !clear_dir(sub.as_fd(), depth + 1)? {
                return Ok(false);
            }
            unlinkat(dirfd, name.as_c_str(), UnlinkatFlags::RemoveDir)
                .map_err(|e| io_err("removing", "", e))?;
        } else {
            match unlinkat(dirfd, name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(io_err("removing", "", e)),
            }
        }
    }
    Ok(true)
}
