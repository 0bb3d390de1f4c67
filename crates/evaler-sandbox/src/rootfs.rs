//! The box's filesystem: a minimal root built once per box, plus the few
//! mounts made fresh for every run.
//!
//! Plans are lists of [`Step`]s built (allocated) in the parent and carried
//! out in a forked child that may not allocate; a failure reports the index
//! of the step, which the parent turns back into words.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::config::SandboxConfig;
use crate::sys;

const MS_RO_BIND: libc::c_ulong =
    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// One filesystem operation of a plan.
#[derive(Debug)]
pub(crate) enum Step {
    /// Stop mount events from propagating back to the host.
    MakePrivate,
    Tmpfs {
        target: CString,
        data: CString,
        flags: libc::c_ulong,
    },
    Proc {
        target: CString,
    },
    Mkdir(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    WriteFile {
        path: CString,
        data: Vec<u8>,
    },
    /// Bind `src` on `dst`, then remount it with `remount` flags.
    Bind {
        src: CString,
        dst: CString,
        remount: libc::c_ulong,
    },
    Chdir(CString),
    /// Attach a detached mount tree (from `open_tree`, made in the host's
    /// mount namespace before the clone, since host paths are out of reach
    /// from inside the box) on `dst`, read-only.
    Attach {
        tree: RawFd,
        dst: CString,
    },
    /// Detach a mount (and everything under it).
    Umount(CString),
    /// `pivot_root(".", ".")` and detach the old root: afterwards nothing of
    /// the host's tree is reachable.
    PivotHere,
    RemountRootReadOnly,
}

impl Step {
    pub(crate) fn describe(&self) -> String {
        match self {
            Step::MakePrivate => "make mounts private".into(),
            Step::Tmpfs { target, .. } => format!("mount tmpfs on {target:?}"),
            Step::Proc { target } => format!("mount proc on {target:?}"),
            Step::Mkdir(p) => format!("mkdir {p:?}"),
            Step::Symlink { target, link } => format!("symlink {link:?} -> {target:?}"),
            Step::WriteFile { path, .. } => format!("write {path:?}"),
            Step::Bind { src, dst, .. } => format!("bind {src:?} on {dst:?}"),
            Step::Chdir(p) => format!("chdir {p:?}"),
            Step::Umount(p) => format!("umount {p:?}"),
            Step::Attach { dst, .. } => format!("attach a bind on {dst:?}"),
            Step::PivotHere => "pivot_root".into(),
            Step::RemountRootReadOnly => "remount / read-only".into(),
        }
    }

    /// Carries the step out. Async-signal-safe: no allocation.
    pub(crate) fn run(&self) -> Result<(), Errno> {
        match self {
            Step::MakePrivate => {
                sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            }
            Step::Tmpfs {
                target,
                data,
                flags,
            } => sys::mount(Some(c"tmpfs"), target, Some(c"tmpfs"), *flags, Some(data)),
            Step::Proc { target } => sys::mount(
                Some(c"proc"),
                target,
                Some(c"proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(c"hidepid=2"),
            ),
            Step::Mkdir(p) => sys::mkdir(p, 0o755),
            Step::Symlink { target, link } => sys::symlink(target, link),
            Step::WriteFile { path, data } => sys::write_file(path, data, 0o644),
            Step::Bind { src, dst, remount } => {
                sys::mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
                sys::mount(None, dst, None, *remount, None)
            }
            Step::Chdir(p) => sys::chdir(p),
            Step::Umount(p) => sys::umount_detach(p),
            Step::Attach { tree, dst } => {
                sys::move_mount(*tree, dst)?;
                sys::mount(None, dst, None, MS_RO_BIND, None)
            }
            Step::PivotHere => {
                sys::pivot_root(c".", c".")?;
                sys::umount_detach(c".")?;
                sys::chdir(c"/")
            }
            Step::RemountRootReadOnly => sys::mount(None, c"/", None, MS_RO_BIND, None),
        }
    }
}

/// Carries out `steps`; on failure returns the failing step's index.
pub(crate) fn run_steps(steps: &[Step]) -> Result<(), (usize, Errno)> {
    for (i, step) in steps.iter().enumerate() {
        step.run().map_err(|e| (i, e))?;
    }
    Ok(())
}

pub(crate) fn cstr(p: impl AsRef<Path>) -> CString {
    // Paths built here come from our own configuration; an interior NUL
    // cannot occur in a path the kernel gave us, and would fail the mount.
    CString::new(p.as_ref().as_os_str().as_bytes()).unwrap_or_default()
}

/// The plan that builds a box's root, run in a fresh mount namespace.
/// `stage` is an empty host directory to build on (covered only inside that
/// namespace).
pub(crate) fn box_root_plan(config: &SandboxConfig, stage: &Path, uid: u32, gid: u32) -> Vec<Step> {
    let r = |rel: &str| cstr(stage.join(rel));
    let mut steps = vec![
        Step::MakePrivate,
        Step::Tmpfs {
            target: cstr(stage),
            data: CString::new("size=4m,nr_inodes=4096,mode=0755").unwrap_or_default(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        },
    ];
    for dir in [
        "usr",
        "etc",
        "dev",
        "proc",
        "tmp",
        "box",
        "opt",
        "opt/evaler",
    ] {
        steps.push(Step::Mkdir(r(dir)));
    }
    steps.push(Step::Bind {
        src: c"/usr".into(),
        dst: r("usr"),
        remount: MS_RO_BIND,
    });
    // On merged-/usr systems these are symlinks into /usr: copy the links;
    // elsewhere bind the directories.
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = PathBuf::from("/").join(top);
        add_host_entry(&mut steps, &host, &stage.join(top));
    }
    for name in &config.etc_allow {
        if crate::spec::valid_file_name(name) {
            add_host_entry(
                &mut steps,
                &Path::new("/etc").join(name),
                &stage.join("etc").join(name),
            );
        }
    }
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nevaler:x:{uid}:{gid}:evaler box:/box:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nevaler:x:{gid}:\nnogroup:x:65534:\n");
    for (name, data) in [
        ("etc/passwd", passwd.into_bytes()),
        ("etc/group", group.into_bytes()),
        ("etc/hostname", b"evaler\n".to_vec()),
        (
            "etc/hosts",
            b"127.0.0.1 localhost evaler\n::1 localhost\n".to_vec(),
        ),
    ] {
        steps.push(Step::WriteFile {
            path: r(name),
            data,
        });
    }
    for dev in ["null", "zero", "full", "random", "urandom"] {
        let dst = stage.join("dev").join(dev);
        steps.push(Step::WriteFile {
            path: cstr(&dst),
            data: Vec::new(),
        });
        steps.push(Step::Bind {
            src: cstr(Path::new("/dev").join(dev)),
            dst: cstr(&dst),
            remount: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NOEXEC,
        });
    }
    for (link, target) in [
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: cstr(target),
            link: r(link),
        });
    }
    steps.push(Step::Mkdir(r("dev/shm")));
    steps.push(box_tmpfs(config, r("box"), uid, gid));
    steps.push(Step::Chdir(cstr(stage)));
    steps.push(Step::PivotHere);
    steps.push(Step::RemountRootReadOnly);
    // The box keeper's own /proc (of the box's PID namespace), /tmp and
    // /dev/shm, which its runs share and the supervisor empties after each.
    steps.extend(run_plan(config, &[]));
    steps
}

/// The box's working directory: a size-capped tmpfs owned by the box's user.
pub(crate) fn box_tmpfs(config: &SandboxConfig, target: CString, uid: u32, gid: u32) -> Step {
    Step::Tmpfs {
        target,
        data: CString::new(format!(
            "size={}k,nr_inodes={},mode=0755,uid={uid},gid={gid}",
            config.box_size_kib, config.max_inodes
        ))
        .unwrap_or_default(),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
    }
}

/// Replaces `/box` with an empty filesystem, for when a program left a tree
/// too deep to remove entry by entry.
pub(crate) fn reset_box_plan(config: &SandboxConfig, uid: u32, gid: u32) -> Vec<Step> {
    vec![
        Step::Umount(c"/box".into()),
        box_tmpfs(config, c"/box".into(), uid, gid),
    ]
}

/// Replaces the keeper's `/tmp` or `/dev/shm` with an empty one.
pub(crate) fn reset_scratch_plan(config: &SandboxConfig, target: &std::ffi::CStr) -> Vec<Step> {
    let size = if target == c"/tmp" {
        config.tmp_size_kib
    } else {
        config.shm_size_kib
    };
    vec![
        Step::Umount(target.into()),
        Step::Tmpfs {
            target: target.into(),
            data: CString::new(format!(
                "size={size}k,nr_inodes={},mode=1777",
                config.max_inodes
            ))
            .unwrap_or_default(),
            flags: if target == c"/tmp" {
                libc::MS_NOSUID | libc::MS_NODEV
            } else {
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
            },
        },
    ]
}

/// Mirrors one host entry into the new root: a symlink as the same symlink,
/// a directory or file as a read-only bind; absent entries are skipped.
fn add_host_entry(steps: &mut Vec<Step>, host: &Path, dst: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(host) else {
        return;
    };
    if meta.file_type().is_symlink() {
        if let Ok(target) = std::fs::read_link(host) {
            steps.push(Step::Symlink {
                target: cstr(target),
                link: cstr(dst),
            });
        }
    } else if meta.is_dir() {
        steps.push(Step::Mkdir(cstr(dst)));
        steps.push(Step::Bind {
            src: cstr(host),
            dst: cstr(dst),
            remount: MS_RO_BIND,
        });
    } else if meta.is_file() {
        steps.push(Step::WriteFile {
            path: cstr(dst),
            data: Vec::new(),
        });
        steps.push(Step::Bind {
            src: cstr(host),
            dst: cstr(dst),
            remount: MS_RO_BIND,
        });
    }
}

/// The mounts made fresh for each run inside the run's own copy of the box's
/// mount namespace: its `/proc` (of its new PID namespace), an empty `/tmp`
/// and `/dev/shm` (so nothing passes from one run to the next), and the
/// caller's read-only binds under `/opt/evaler`.
pub(crate) fn run_plan(config: &SandboxConfig, binds: &[(&crate::spec::Bind, RawFd)]) -> Vec<Step> {
    let mut steps = vec![
        Step::Proc {
            target: c"/proc".into(),
        },
        Step::Tmpfs {
            target: c"/tmp".into(),
            data: CString::new(format!(
                "size={}k,nr_inodes={},mode=1777",
                config.tmp_size_kib, config.max_inodes
            ))
            .unwrap_or_default(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        },
        Step::Tmpfs {
            target: c"/dev/shm".into(),
            data: CString::new(format!(
                "size={}k,nr_inodes={},mode=1777",
                config.shm_size_kib, config.max_inodes
            ))
            .unwrap_or_default(),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        },
    ];
    if !binds.is_empty() {
        steps.push(Step::Tmpfs {
            target: c"/opt/evaler".into(),
            data: c"size=64k,nr_inodes=256,mode=0755".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        });
        for &(bind, tree) in binds {
            let dst = Path::new("/opt/evaler").join(&bind.name);
            if bind.host.is_dir() {
                steps.push(Step::Mkdir(cstr(&dst)));
            } else {
                steps.push(Step::WriteFile {
                    path: cstr(&dst),
                    data: Vec::new(),
                });
            }
            steps.push(Step::Attach {
                tree,
                dst: cstr(&dst),
            });
        }
    }
    steps
}
