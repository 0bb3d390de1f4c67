//! Per-box resource control and metering with Linux control groups, over
//! cgroup v1 and cgroup v2 behind one API.
//!
//! # Layout
//!
//! [`Cgroups::detect`] reads `/proc/self/mountinfo` and `/proc/self/cgroup`
//! and picks:
//!
//! * **v2** when a `cgroup2` mount (pure v2 at `/sys/fs/cgroup`, or the
//!   hybrid `unified` mount) offers the `memory` and `pids` controllers to
//!   our own cgroup (its `cgroup.controllers`); `cpu` is enabled too when
//!   offered but is not required (`cpu.stat` `usage_usec` exists without it);
//! * otherwise **v1** when the `memory`, `pids` and `cpuacct` v1
//!   hierarchies are mounted (co-mounted hierarchies like `cpu,cpuacct` are
//!   handled; other v1 controllers — cpuset, freezer, devices... — are not
//!   used, so e.g. cpuset's `cpus`/`mems` never need initialising);
//! * otherwise an [`CgroupError::Unsupported`] error whose message is one
//!   sentence saying what is missing.
//!
//! evaler never mounts, unmounts or remounts anything: the mounts belong to
//! the machine's init. It creates its groups under **its own current cgroup
//! of each hierarchy** (from `/proc/self/cgroup`, which can differ per
//! hierarchy: here memory is at `/process_api/<hash>`, the others at `/`):
//!
//! ```text
//! <our cgroup>/evaler-<pid>/          InstanceCgroup (one per evaler process)
//! <our cgroup>/evaler-<pid>/box-<N>/  BoxCgroup (one per sandbox slot, reused run after run)
//! <our cgroup>/evaler-<pid>.self/     v2 only, only if needed: evaler itself (see below)
//! ```
//!
//! Dropping a [`BoxCgroup`] kills what is left in it and removes it; the
//! instance directory is removed once the [`InstanceCgroup`] and all its
//! boxes are dropped. [`Cgroups::sweep_stale`] removes `evaler-<pid>`
//! groups (and `.self` leaves) left behind by evaler processes that died
//! without cleaning up, killing any processes still in them first.
//!
//! Processes moved: only the ones evaler starts (they join a box with
//! [`BoxCgroup::join_files`] or [`BoxCgroup::add_pid`]), plus, **in v2
//! only and only when needed, the evaler process itself**: cgroup v2's
//! "no internal processes" rule forbids enabling controllers in
//! `cgroup.subtree_control` of a (non-root) cgroup that holds processes. If
//! our cgroup does not already delegate memory/pids to its children and the
//! write fails with `EBUSY`, and evaler is the *only* process in it, evaler
//! moves itself into the leaf `<our cgroup>/evaler-<pid>.self` and retries.
//! If other processes share our cgroup, [`Cgroups::create_instance`] fails
//! with [`CgroupError::Conflict`] asking to start evaler in a cgroup of its
//! own (e.g. `systemd-run --scope -p Delegate=yes evaler ...`). Detection
//! treats a current cgroup named `evaler-<our pid>.self` as its parent, so
//! this is idempotent. Side effect: after the move, nothing else can be
//! attached to our former cgroup (e.g. a later `docker exec` into it).
//!
//! # What the figures include
//!
//! **CPU time** ([`RunMeter::cpu_time`]): user + system time of every
//! process that ran in the box since [`BoxCgroup::begin_run`], including
//! processes that have already exited, from the scheduler's precise
//! accounting (not tick sampling). v1: `cpuacct.usage` (ns); v2: `cpu.stat`
//! `usage_usec` (µs). Time a process spent before joining the box (between
//! fork and its write to `cgroup.procs`) is not included; that window is a
//! few microseconds of evaler's own code. No CPU bandwidth limit is set
//! (the v1 `cpu` hierarchy is not joined): time limits are enforced by the
//! supervisor from this figure.
//!
//! **Memory peak** ([`RunMeter::memory_peak_bytes`]): the high-water mark of
//! the memory charged to the box. What the kernel charges to a memory cgroup
//! is broader than the processes' RSS:
//!
//! * anonymous memory (heap, stacks, private writable mappings) that was
//!   actually touched (untouched `malloc` reservations cost nothing);
//! * page cache of files read or written by the box, and **tmpfs/shmem
//!   pages** (files written to a tmpfs, `memfd`s, SysV/POSIX shared memory).
//!   Such pages stay charged to the box after the process exits, until the
//!   file is deleted or the page is reclaimed; the sandbox must therefore
//!   delete per-run tmpfs files between runs or they count in the next run's
//!   baseline (see below);
//! * kernel memory allocated on the box's behalf with accounting
//!   (page tables, kernel stacks, dentries/inodes, pipe and socket
//!   buffers...). v2 always charges it; v1 does too since about Linux 4.6
//!   (kmem accounting on by default) unless booted with
//!   `cgroup.memory=nokmem`;
//! * v1 with swap accounting: swap too (`memory.memsw.*`); we report
//!   `max(memory.max_usage_in_bytes, memory.memsw.max_usage_in_bytes)`.
//!   v2 reports `memory.peak`, RAM only, and forbids swap whenever a memory
//!   limit is set (`memory.swap.max = 0`).
//!
//! Charges are not moved when a process joins (v1
//! `memory.move_charge_at_immigrate` is left at 0; v2 never moves them):
//! what the forked child touched before joining stays charged to evaler's
//! cgroup, and everything after `execve` is charged to the box.
//! Pages shared with processes outside the box (e.g. the page cache of a
//! libc already cached by someone else) are charged to whichever cgroup
//! touched them first, so they usually do not count. Resetting the peak
//! sets it to the box's *current* usage, not to zero (v1 semantics of
//! writing 0 to `max_usage_in_bytes`; v2's per-fd reset does the same), so
//! anything still charged at `begin_run` is in the peak: the meter reads
//! that usage then and subtracts what earlier runs left above the box's
//! floor ([`RunMeter::memory_peak_bytes`]).
//!
//! On v2, a resettable `memory.peak` needs Linux >= 6.12: the file is opened
//! read-write, `reset` is written, and the peak is read through that same
//! descriptor (each open file has its own watermark). On older kernels the
//! meter uses the lifetime `memory.peak` if the box never ran anything
//! before, and otherwise samples `memory.current` at every
//! [`RunMeter::memory_peak_bytes`] call (see [`RunMeter::peak_method`]).
//!
//! **OOM** ([`RunMeter::oom_killed`]): whether the OOM killer killed a
//! process of the box since `begin_run`, as a delta of the kernel's
//! counters, so an OOM in one run never leaks into the next. v2 sets
//! `memory.oom.group = 1`, so an OOM kills the whole box at once. v1 has no
//! group OOM: the kernel kills one victim (the largest), so the supervisor
//! should call [`BoxCgroup::kill_all`] once `oom_killed()` is true.
//!
//! **Memory limit** ([`BoxCgroup::set_limits`]) includes swap: v1 sets
//! `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (the latter
//! only exists with swap accounting; without it, `memory.swappiness` is set
//! to 0 on a best-effort basis so the box does not swap); v2 sets
//! `memory.max` and `memory.swap.max = 0`.
//!
//! # Testing without root
//!
//! [`Cgroups::detect_in`] and [`Cgroups::from_proc_texts`] take a root
//! prefix for `/proc` and `/sys`, so the unit tests run against fake
//! cgroupfs trees built in temporary directories.

mod error;
mod fsops;
mod meter;
mod parse;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use error::CgroupError;
use meter::Counters;
pub use meter::RunMeter;

use fsops::{KillTarget, Membership};
use parse::{join_cgroup_path, parse_mountinfo, parse_proc_cgroup, strip_cgroup_prefix};

/// Which cgroup hierarchy evaler uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies (memory, pids, cpuacct).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Prefix of evaler's instance group names (`evaler-<pid>`).
const INSTANCE_PREFIX: &str = "evaler-";
/// Suffix of the v2 leaf evaler may move itself into (`evaler-<pid>.self`).
const SELF_LEAF_SUFFIX: &str = ".self";

/// One hierarchy evaler uses (v2: the only one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// v1: the controllers bound to the hierarchy (e.g. `cpu,cpuacct`);
    /// empty for v2.
    controllers: Vec<String>,
    /// Directory of our own cgroup (under the root prefix): the parent of
    /// `evaler-<pid>`.
    base: PathBuf,
    /// The same cgroup as `/proc/<pid>/cgroup` shows it (e.g. `/a/b`).
    rel: String,
}

impl Hierarchy {
    fn membership(&self, rel: String, subtree: bool) -> Membership {
        Membership {
            controller: self.controllers.first().cloned(),
            rel,
            subtree,
        }
    }
}

#[derive(Debug)]
struct Layout {
    version: CgroupVersion,
    /// Distinct hierarchies; v2 has exactly one.
    hiers: Vec<Hierarchy>,
    /// Index in `hiers` of the hierarchy holding each controller we use.
    memory: usize,
    pids: usize,
    cpu: usize,
    /// v2: the controllers to enable for evaler's groups.
    v2_enable: Vec<&'static str>,
}

/// The detected cgroup layout of this process.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Arc<Layout>,
}

/// Instance directories owned by live [`InstanceCgroup`]s of this process.
static LIVE_INSTANCES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn under_root(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn join_rel(base: &Path, rest: &str) -> PathBuf {
    if rest.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

impl Cgroups {
    /// Detects the layout of the running system (`/proc/self/...`).
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_in(Path::new("/"))
    }

    /// Detects the layout with `root` prefixed to `/proc` and `/sys` paths
    /// (`root/proc/self/mountinfo`, `root/sys/fs/cgroup/...`), for tests.
    pub fn detect_in(root: &Path) -> Result<Self, CgroupError> {
        let mi_path = root.join("proc/self/mountinfo");
        let cg_path = root.join("proc/self/cgroup");
        let mountinfo = fsops::read_file(&mi_path)?;
        let cgroup = fsops::read_file(&cg_path)?;
        Self::from_proc_texts(&mountinfo, &cgroup, root)
    }

    /// Detects the layout from the texts of `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`; mount points are looked up under `root`.
    pub fn from_proc_texts(
        mountinfo: &str,
        proc_self_cgroup: &str,
        root: &Path,
    ) -> Result<Self, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let lines = parse_proc_cgroup(proc_self_cgroup);
        let why_not_v2 = match detect_v2(&mounts, &lines, root) {
            Ok(layout) => {
                return Ok(Cgroups {
                    layout: Arc::new(layout),
                })
            }
            Err(why) => why,
        };
        let why_not_v1 = match detect_v1(&mounts, &lines, root) {
            Ok(layout) => {
                return Ok(Cgroups {
                    layout: Arc::new(layout),
                })
            }
            Err(why) => why,
        };
        Err(CgroupError::Unsupported(format!(
            "no usable cgroup hierarchy for evaler: {why_not_v2}, and {why_not_v1}."
        )))
    }

    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.layout.version
    }

    /// Our own cgroup directory in each hierarchy used (the parents of the
    /// `evaler-<pid>` groups): v2 one, v1 one per distinct hierarchy.
    pub fn base_dirs(&self) -> Vec<&Path> {
        self.layout.hiers.iter().map(|h| h.base.as_path()).collect()
    }

    /// Removes `evaler-<pid>` groups (and v2 `evaler-<pid>.self` leaves)
    /// in our cgroup(s) whose evaler process is gone, killing whatever
    /// processes are still in them first. Returns how many distinct groups
    /// were removed. Groups of live processes, and of this process, are
    /// left alone (a stale group that carries *our* pid, left by an earlier
    /// process that had the same pid, is replaced by `create_instance`).
    ///
    /// Caveat: a stale group whose pid has been reused by an unrelated live
    /// process is kept until that process exits.
    pub fn sweep_stale(&self) -> Result<usize, CgroupError> {
        let me = std::process::id();
        let mut removed = BTreeSet::new();
        let mut first_err = None;
        for h in &self.layout.hiers {
            let rd =
                fs::read_dir(&h.base).map_err(|e| CgroupError::io("list directory", &h.base, e))?;
            for entry in rd {
                let entry = entry.map_err(|e| CgroupError::io("list directory", &h.base, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Some(pid) = parse_instance_name(&name) else {
                    continue;
                };
                if pid == me || pid_alive(pid) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let dir = entry.path();
                let member = h.membership(join_cgroup_path(&h.rel, &name), true);
                match fsops::destroy_tree(&dir, &member) {
                    Ok(()) => {
                        tracing::info!(path = %dir.display(), "cgroup: removed stale group");
                        removed.insert(name);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cgroup: cannot remove stale group");
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed.len()),
        }
    }

    /// Creates this process's instance group `evaler-<pid>` in each
    /// hierarchy (v2: after making sure our cgroup delegates memory, pids
    /// and cpu to its children, then enabling them in the instance's
    /// `cgroup.subtree_control` for the boxes).
    ///
    /// Only one live instance per process: a second call while the first
    /// is alive fails with [`CgroupError::Conflict`].
    pub fn create_instance(&self) -> Result<InstanceCgroup, CgroupError> {
        let layout = &self.layout;
        let name = format!("{INSTANCE_PREFIX}{}", std::process::id());
        let key = layout.hiers[0].base.join(&name);
        {
            let mut live = lock(&LIVE_INSTANCES);
            if live.contains(&key) {
                return Err(CgroupError::conflict(
                    "create",
                    &key,
                    "this process already has a live InstanceCgroup there",
                ));
            }
            live.push(key.clone());
        }
        let unregister = || lock(&LIVE_INSTANCES).retain(|k| k != &key);

        let result = (|| {
            if layout.version == CgroupVersion::V2 {
                self.delegate_v2_controllers()?;
            }
            let parent = Node {
                dirs: layout.hiers.iter().map(|h| h.base.clone()).collect(),
                rels: layout.hiers.iter().map(|h| h.rel.clone()).collect(),
            };
            let node = parent.create_child(layout, &name)?;
            let setup = match layout.version {
                CgroupVersion::V2 => {
                    let value = layout
                        .v2_enable
                        .iter()
                        .map(|c| format!("+{c}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    fsops::write_file(&node.dirs[0].join("cgroup.subtree_control"), &value)
                }
                CgroupVersion::V1 => {
                    // Hierarchical accounting is forced on by Linux >= 5.x (and
                    // inherited from the parent before); best effort.
                    let p = node.dirs[layout.memory].join("memory.use_hierarchy");
                    if let Err(e) = fsops::write_file_if_exists(&p, "1") {
                        tracing::debug!(error = %e, "cgroup: memory.use_hierarchy");
                    }
                    Ok(())
                }
            };
            if let Err(e) = setup {
                node.remove_best_effort(layout);
                return Err(e);
            }
            Ok(node)
        })();
        match result {
            Ok(node) => Ok(InstanceCgroup {
                inner: Arc::new(InstanceInner {
                    layout: layout.clone(),
                    node,
                    key,
                    live_boxes: Mutex::new(HashSet::new()),
                }),
            }),
            Err(e) => {
                unregister();
                Err(e)
            }
        }
    }

    /// v2: makes sure our base cgroup has the wanted controllers in its
    /// `cgroup.subtree_control`, moving evaler into a leaf if the
    /// no-internal-processes rule requires it (see the module docs).
    fn delegate_v2_controllers(&self) -> Result<(), CgroupError> {
        let h = &self.layout.hiers[0];
        let sc = h.base.join("cgroup.subtree_control");
        let enabled = fsops::read_file(&sc)?;
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        let missing: Vec<String> = self
            .layout
            .v2_enable
            .iter()
            .filter(|c| !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let value = missing.join(" ");
        match fsops::write_file(&sc, &value) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                self.move_self_into_leaf()?;
                fsops::write_file(&sc, &value)
            }
            other => other,
        }
    }

    fn move_self_into_leaf(&self) -> Result<(), CgroupError> {
        let h = &self.layout.hiers[0];
        let me = std::process::id();
        let procs = fsops::read_procs(&h.base)?;
        let others: Vec<i32> = procs
            .iter()
            .copied()
            .filter(|&p| u32::try_from(p).ok() != Some(me))
            .collect();
        if !others.is_empty() || procs.is_empty() {
            return Err(CgroupError::conflict(
                "enable controllers in",
                &h.base,
                format!(
                    "cgroup v2 forbids delegating controllers from a cgroup that holds \
                     processes, and it holds processes other than evaler ({others:?}); start \
                     evaler in a cgroup of its own (e.g. `systemd-run --scope -p Delegate=yes`)"
                ),
            ));
        }
        let leaf = h
            .base
            .join(format!("{INSTANCE_PREFIX}{me}{SELF_LEAF_SUFFIX}"));
        match fsops::mkdir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("create directory", &leaf, e)),
        }
        fsops::write_file(&leaf.join("cgroup.procs"), &me.to_string())?;
        tracing::info!(
            leaf = %leaf.display(),
            "cgroup: moved evaler into a leaf cgroup (cgroup v2 no-internal-processes rule)"
        );
        Ok(())
    }
}

/// `evaler-<pid>` or `evaler-<pid>.self` → pid.
fn parse_instance_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(INSTANCE_PREFIX)?;
    let digits = rest.strip_suffix(SELF_LEAF_SUFFIX).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

fn detect_v2(
    mounts: &[parse::MountEntry],
    lines: &[parse::ProcCgroup],
    root: &Path,
) -> Result<Layout, String> {
    let Some(line) = lines.iter().find(|l| l.is_v2()) else {
        return Err("/proc/self/cgroup has no cgroup v2 entry".into());
    };
    let mut why = None;
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let Some(rest) = strip_cgroup_prefix(&line.path, &m.root) else {
            continue;
        };
        let mut base = join_rel(&under_root(root, &m.mount_point), rest);
        let mut rel = line.path.clone();
        // Already moved into our own leaf by an earlier create_instance.
        let leaf = format!("{INSTANCE_PREFIX}{}{SELF_LEAF_SUFFIX}", std::process::id());
        if base.file_name().is_some_and(|n| n == leaf.as_str()) {
            base.pop();
            rel = rel
                .rsplit_once('/')
                .map(|(p, _)| {
                    if p.is_empty() {
                        "/".to_string()
                    } else {
                        p.to_string()
                    }
                })
                .unwrap_or_else(|| "/".into());
        }
        let ctl_path = base.join("cgroup.controllers");
        let available = match fs::read_to_string(&ctl_path) {
            Ok(s) => s,
            Err(e) => {
                why.get_or_insert_with(|| format!("cannot read {} ({e})", ctl_path.display()));
                continue;
            }
        };
        let available: Vec<&str> = available.split_whitespace().collect();
        let missing: Vec<&str> = ["memory", "pids"]
            .into_iter()
            .filter(|c| !available.contains(c))
            .collect();
        if !missing.is_empty() {
            why = Some(format!(
                "the cgroup v2 hierarchy at {} does not offer the {} controller{} to our cgroup {} \
                 (it offers: {})",
                m.mount_point,
                missing.join(" and "),
                if missing.len() > 1 { "s" } else { "" },
                line.path,
                if available.is_empty() { "none".into() } else { available.join(" ") }
            ));
            continue;
        }
        let mut v2_enable = vec!["memory", "pids"];
        if available.contains(&"cpu") {
            v2_enable.push("cpu");
        }
        return Ok(Layout {
            version: CgroupVersion::V2,
            hiers: vec![Hierarchy {
                controllers: Vec::new(),
                base,
                rel,
            }],
            memory: 0,
            pids: 0,
            cpu: 0,
            v2_enable,
        });
    }
    Err(why.unwrap_or_else(|| "no cgroup2 filesystem is mounted".into()))
}

fn detect_v1(
    mounts: &[parse::MountEntry],
    lines: &[parse::ProcCgroup],
    root: &Path,
) -> Result<Layout, String> {
    let mut hiers: Vec<Hierarchy> = Vec::new();
    let mut ids: Vec<u32> = Vec::new();
    let mut idx = [0usize; 3];
    let mut missing = Vec::new();
    for (i, ctrl) in ["memory", "pids", "cpuacct"].into_iter().enumerate() {
        let found = lines
            .iter()
            .find(|l| l.hierarchy_id != 0 && l.controllers.iter().any(|c| c == ctrl))
            .and_then(|line| {
                mounts
                    .iter()
                    .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == ctrl))
                    .find_map(|m| {
                        let rest = strip_cgroup_prefix(&line.path, &m.root)?;
                        let base = join_rel(&under_root(root, &m.mount_point), rest);
                        base.is_dir().then_some((line, base))
                    })
            });
        let Some((line, base)) = found else {
            missing.push(ctrl);
            continue;
        };
        idx[i] = match ids.iter().position(|&id| id == line.hierarchy_id) {
            Some(j) => j,
            None => {
                ids.push(line.hierarchy_id);
                hiers.push(Hierarchy {
                    controllers: line.controllers.clone(),
                    base,
                    rel: line.path.clone(),
                });
                hiers.len() - 1
            }
        };
    }
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v1 has no mounted {} hierarch{} containing our process",
            missing.join(", "),
            if missing.len() > 1 { "ies" } else { "y" }
        ));
    }
    Ok(Layout {
        version: CgroupVersion::V1,
        hiers,
        memory: idx[0],
        pids: idx[1],
        cpu: idx[2],
        v2_enable: Vec::new(),
    })
}

/// The same cgroup in every hierarchy used (parallel to `Layout::hiers`).
#[derive(Debug)]
struct Node {
    dirs: Vec<PathBuf>,
    rels: Vec<String>,
}

impl Node {
    /// Creates the child `name` in every hierarchy. A leftover directory of
    /// that name (from a crashed earlier owner) is destroyed and recreated.
    /// On failure nothing is left behind.
    fn create_child(&self, layout: &Layout, name: &str) -> Result<Node, CgroupError> {
        let mut child = Node {
            dirs: Vec::new(),
            rels: Vec::new(),
        };
        for (i, h) in layout.hiers.iter().enumerate() {
            let dir = self.dirs[i].join(name);
            let rel = join_cgroup_path(&self.rels[i], name);
            let made = match fsops::mkdir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    tracing::warn!(path = %dir.display(), "cgroup: replacing leftover group");
                    fsops::destroy_tree(&dir, &h.membership(rel.clone(), true)).and_then(|()| {
                        fsops::mkdir(&dir).map_err(|e| CgroupError::io("create directory", &dir, e))
                    })
                }
                other => other.map_err(|e| CgroupError::io("create directory", &dir, e)),
            };
            if let Err(e) = made {
                child.remove_best_effort(layout);
                return Err(e);
            }
            child.dirs.push(dir);
            child.rels.push(rel);
        }
        Ok(child)
    }

    fn targets(&self, layout: &Layout, subtree: bool) -> Vec<KillTarget> {
        self.dirs
            .iter()
            .zip(&self.rels)
            .zip(&layout.hiers)
            .map(|((dir, rel), h)| KillTarget {
                dir: dir.clone(),
                member: h.membership(rel.clone(), subtree),
            })
            .collect()
    }

    /// Kills everything in the subtree and removes it, logging failures.
    fn remove_best_effort(&self, layout: &Layout) {
        for t in self.targets(layout, true) {
            if let Err(e) = fsops::destroy_tree(&t.dir, &t.member) {
                tracing::warn!(error = %e, "cgroup: cleanup failed");
            }
        }
    }
}

/// evaler's group `evaler-<pid>` (one per process), parent of the boxes.
///
/// Removed (best effort, failures logged with `tracing`) when it and all
/// its [`BoxCgroup`]s have been dropped.
#[derive(Debug)]
pub struct InstanceCgroup {
    inner: Arc<InstanceInner>,
}

#[derive(Debug)]
struct InstanceInner {
    layout: Arc<Layout>,
    node: Node,
    key: PathBuf,
    live_boxes: Mutex<HashSet<u32>>,
}

impl Drop for InstanceInner {
    fn drop(&mut self) {
        self.node.remove_best_effort(&self.layout);
        lock(&LIVE_INSTANCES).retain(|k| k != &self.key);
    }
}

impl InstanceCgroup {
    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.inner.layout.version
    }

    /// The instance directory in each hierarchy used.
    pub fn paths(&self) -> &[PathBuf] {
        &self.inner.node.dirs
    }

    /// Creates the box group `box-<index>` (v2: with `memory.oom.group=1`).
    /// Fails with [`CgroupError::Conflict`] while a live [`BoxCgroup`] of
    /// the same index exists; a leftover directory is replaced.
    pub fn create_box(&self, index: u32) -> Result<BoxCgroup, CgroupError> {
        let inner = &self.inner;
        let layout = &inner.layout;
        if !lock(&inner.live_boxes).insert(index) {
            return Err(CgroupError::conflict(
                "create",
                &inner.node.dirs[0].join(format!("box-{index}")),
                "a live BoxCgroup with this index exists",
            ));
        }
        let release = || lock(&inner.live_boxes).remove(&index);
        let node = match inner.node.create_child(layout, &format!("box-{index}")) {
            Ok(n) => n,
            Err(e) => {
                release();
                return Err(e);
            }
        };
        if layout.version == CgroupVersion::V2 {
            let p = node.dirs[0].join("memory.oom.group");
            match fsops::write_file_if_exists(&p, "1") {
                Ok(true) => {}
                Ok(false) => tracing::debug!("cgroup: no memory.oom.group (Linux < 4.19)"),
                Err(e) => {
                    node.remove_best_effort(layout);
                    release();
                    return Err(e);
                }
            }
        }
        Ok(BoxCgroup {
            instance: inner.clone(),
            index,
            node,
            ran: AtomicBool::new(false),
            counters: Mutex::new(None),
            tasks_file: Mutex::new(None),
        })
    }
}

/// One box's group `evaler-<pid>/box-<N>`, reused run after run.
///
/// Dropping it kills any process left in it and removes the directories
/// (best effort, failures logged with `tracing`).
#[derive(Debug)]
pub struct BoxCgroup {
    instance: Arc<InstanceInner>,
    index: u32,
    node: Node,
    /// Whether `begin_run` was ever called (the box may have been used).
    ran: AtomicBool,
    /// The counter files, opened by the first `begin_run`.
    counters: Mutex<Option<Arc<Counters>>>,
    /// `pids.current`, opened by the first `tasks`.
    tasks_file: Mutex<Option<fs::File>>,
}

impl Drop for BoxCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.kill_all() {
            tracing::warn!(error = %e, "cgroup: cannot empty box before removal");
        }
        for d in &self.node.dirs {
            if let Err(e) = fsops::rmdir_retry(d) {
                tracing::warn!(error = %e, "cgroup: cannot remove box");
            }
        }
        lock(&self.instance.live_boxes).remove(&self.index);
    }
}

impl BoxCgroup {
    fn layout(&self) -> &Layout {
        &self.instance.layout
    }

    fn dir_of(&self, hier: usize) -> &Path {
        &self.node.dirs[hier]
    }

    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.layout().version
    }

    /// The box index `N` of `box-<N>`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The box directory in each hierarchy used (v2: one).
    pub fn paths(&self) -> &[PathBuf] {
        &self.node.dirs
    }

    /// Sets the limits for the next run. `None` = no limit.
    ///
    /// The memory limit includes swap. v1: `memory.limit_in_bytes` and
    /// `memory.memsw.limit_in_bytes` (when swap accounting exists; written in
    /// an order that keeps `memsw >= limit` at every step), `-1` for none.
    /// v2: `memory.max` and `memory.swap.max` (`0` with a limit, `max`
    /// without), `max` for none. Processes: `pids.max`.
    pub fn set_limits(
        &self,
        memory_bytes: Option<u64>,
        max_processes: Option<u64>,
    ) -> Result<(), CgroupError> {
        let layout = self.layout();
        let mem = self.dir_of(layout.memory);
        let pids = self.dir_of(layout.pids);
        let max_procs = max_processes.map_or_else(|| "max".to_string(), |n| n.to_string());
        match layout.version {
            CgroupVersion::V1 => {
                let v = memory_bytes.map_or_else(|| "-1".to_string(), |b| b.to_string());
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                // Lift memsw first so the RAM limit can move either way.
                let has_memsw = fsops::write_file_if_exists(&memsw, "-1")?;
                fsops::write_file(&mem.join("memory.limit_in_bytes"), &v)?;
                if has_memsw {
                    fsops::write_file(&memsw, &v)?;
                } else if memory_bytes.is_some() {
                    let p = mem.join("memory.swappiness");
                    if let Err(e) = fsops::write_file_if_exists(&p, "0") {
                        tracing::debug!(error = %e, "cgroup: cannot disable swapping");
                    }
                }
            }
            CgroupVersion::V2 => {
                let v = memory_bytes.map_or_else(|| "max".to_string(), |b| b.to_string());
                fsops::write_file(&mem.join("memory.max"), &v)?;
                let swap = if memory_bytes.is_some() { "0" } else { "max" };
                fsops::write_file_if_exists(&mem.join("memory.swap.max"), swap)?;
            }
        }
        fsops::write_file(&pids.join("pids.max"), &max_procs)
    }

    /// Start-of-run snapshot; call after [`set_limits`](Self::set_limits)
    /// and before the run's first process joins the box.
    ///
    /// Resets the memory peak (v1: writes `0` to `memory.max_usage_in_bytes`
    /// and `memory.memsw.max_usage_in_bytes`; v2: per-fd `memory.peak` reset,
    /// see the module docs for fallbacks) and records the CPU usage and OOM
    /// counters as the baseline, so every figure of the returned meter is
    /// about this run only.
    pub fn begin_run(&self) -> Result<RunMeter, CgroupError> {
        let layout = self.layout();
        let counters = {
            let mut cached = lock(&self.counters);
            match &*cached {
                Some(c) => Arc::clone(c),
                None => {
                    let c = Arc::new(match layout.version {
                        CgroupVersion::V1 => {
                            Counters::open_v1(self.dir_of(layout.memory), self.dir_of(layout.cpu))?
                        }
                        CgroupVersion::V2 => Counters::open_v2(self.dir_of(0))?,
                    });
                    *cached = Some(Arc::clone(&c));
                    c
                }
            }
        };
        let fresh = !self.ran.swap(true, Ordering::Relaxed);
        counters.begin(fresh)
    }

    /// Opens, `O_WRONLY | O_CLOEXEC`, the `cgroup.procs` file of the box in
    /// each hierarchy used (v1: memory, pids, cpuacct — fewer files when
    /// co-mounted; v2: one). A freshly forked child joins the box by
    /// writing `b"0"` ("the writing process") to each of them before exec;
    /// that needs no allocation. The fds are close-on-exec, so they do not
    /// leak into the sandboxed program.
    pub fn join_files(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        self.node
            .dirs
            .iter()
            .map(|d| fsops::open_write_fd(&d.join("cgroup.procs")))
            .collect()
    }

    /// v2: an `O_RDONLY | O_DIRECTORY | O_CLOEXEC` fd on the box directory,
    /// for `clone3(CLONE_INTO_CGROUP)`. `None` on v1.
    pub fn dir_fd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        if self.version() != CgroupVersion::V2 {
            return Ok(None);
        }
        let dir = self.dir_of(0);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| CgroupError::io("open directory", dir, e))?;
        Ok(Some(OwnedFd::from(f)))
    }

    /// Moves process `pid` into the box (all hierarchies). For tests and
    /// diagnostics; the sandbox uses [`join_files`](Self::join_files).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let value = pid.to_string();
        for d in &self.node.dirs {
            fsops::write_file(&d.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// Tasks (processes and threads) in the box, from `pids.current`
    /// through a descriptor kept open: a cheap emptiness check after each
    /// run (`cgroup.procs` cannot be re-read that way: v1 caches its list
    /// per open file for a second).
    pub fn tasks(&self) -> Result<u64, CgroupError> {
        let path = self.dir_of(self.layout().pids).join("pids.current");
        let mut file = lock(&self.tasks_file);
        if file.is_none() {
            *file = Some(fsops::open_read(&path)?);
        }
        match &*file {
            Some(f) => fsops::pread_u64(f, &path),
            None => Ok(0),
        }
    }

    /// Host pids currently in the box (union over the hierarchies, sorted).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for d in &self.node.dirs {
            all.extend(fsops::read_procs(d)?);
        }
        Ok(all.into_iter().collect())
    }

    /// Kills every process in the box and returns once `cgroup.procs` is
    /// empty. v2 writes `1` to `cgroup.kill` (Linux >= 5.14, race-free
    /// against forks) when present; in every case it then SIGKILLs whatever
    /// is still listed, re-reading `cgroup.procs` until it is empty (bounded
    /// retries, about two seconds; the freezer is not needed: forks are
    /// bounded by `pids.max`). A pid is only signalled after checking, via a
    /// pidfd, that it is still in the box. Zombies are not listed in
    /// `cgroup.procs`; reaping them is the caller's business.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let layout = self.layout();
        if layout.version == CgroupVersion::V2 {
            fsops::write_file_if_exists(&self.dir_of(0).join("cgroup.kill"), "1")?;
        }
        fsops::kill_until_empty(&self.node.targets(layout, false))
    }
}
