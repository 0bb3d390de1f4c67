//! The sandbox instance: what all boxes of one evaler process share.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};

use crate::boxes::SandboxBox;
use crate::cgroup::{CgroupVersion, Cgroups, InstanceCgroup};
use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::seccomp::{self, Filter};

pub(crate) struct Inner {
    pub config: SandboxConfig,
    pub filter: Filter,
    pub cgroups: InstanceCgroup,
    pub version: CgroupVersion,
    pub stage: PathBuf,
    pub slots: PathBuf,
    pub ncpus: u32,
}

/// A sandbox instance. Cheap to clone; boxes opened from it may live on any
/// thread.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("workdir", &self.inner.config.workdir)
            .field("cgroup", &self.inner.version)
            .finish()
    }
}

impl Sandbox {
    /// Checks for root, detects cgroups (v1 or v2), removes what crashed
    /// evaler processes left behind, and builds the seccomp filter.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let uid = nix::unistd::geteuid().as_raw();
        if uid != 0 {
            return Err(SandboxError::NotRoot { uid });
        }
        let io = |what: &'static str, path: &PathBuf| {
            let path = path.clone();
            move |source| SandboxError::Io { what, path, source }
        };
        let stage = config.workdir.join("stage");
        let slots = config.workdir.join("slots");
        for dir in [&config.workdir, &stage, &slots] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("creating", dir))?;
        }
        let cgroups = Cgroups::detect()?;
        let version = cgroups.version();
        match cgroups.sweep_stale() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "removed stale cgroups of dead evaler processes"
            ),
            Err(e) => tracing::warn!(error = %e, "could not sweep stale cgroups"),
        }
        let instance = cgroups.create_instance()?;
        let filter = seccomp::build()?;
        let ncpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                config,
                filter,
                cgroups: instance,
                version,
                stage,
                slots,
                ncpus,
            }),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.inner.version
    }

    /// Opens a new box on the lowest free slot. Slots are claimed with a file
    /// lock, so two evaler processes on one machine never share a uid.
    pub fn open_box(&self) -> Result<SandboxBox, SandboxError> {
        let (slot, lock) = self.claim_slot()?;
        SandboxBox::open(self.clone(), slot, lock)
    }

    fn claim_slot(&self) -> Result<(u32, Flock<File>), SandboxError> {
        for slot in 0..self.inner.config.max_slots {
            let path = self.inner.slots.join(format!("{slot}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| SandboxError::Io {
                    what: "opening slot lock",
                    path: path.clone(),
                    source,
                })?;
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                return Ok((slot, lock));
            }
        }
        Err(SandboxError::Invalid(format!(
            "all {} box slots are in use",
            self.inner.config.max_slots
        )))
    }
}
