//! Per-run metering: CPU time, memory peak and OOM kills since `begin_run`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::CgroupError;
use super::fsops::{self, open_read, pread_all, pread_key, pread_u64};
use super::parse::find_key;

/// An open control file plus its path (for error messages).
#[derive(Debug)]
struct Source {
    file: File,
    path: PathBuf,
}

impl Source {
    fn open(path: PathBuf) -> Result<Self, CgroupError> {
        Ok(Source {
            file: open_read(&path)?,
            path,
        })
    }

    fn open_optional(path: PathBuf) -> Result<Option<Self>, CgroupError> {
        match Self::open(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn u64(&self) -> Result<u64, CgroupError> {
        pread_u64(&self.file, &self.path)
    }
}

#[derive(Debug)]
enum Cpu {
    /// v1 `cpuacct.usage`, nanoseconds.
    V1Usage(Source),
    /// v2 `cpu.stat` `usage_usec`, microseconds.
    V2Stat(Source),
}

impl Cpu {
    fn nanos(&self) -> Result<u64, CgroupError> {
        match self {
            Cpu::V1Usage(s) => s.u64(),
            Cpu::V2Stat(s) => Ok(pread_key(&s.file, &s.path, "usage_usec")?.saturating_mul(1000)),
        }
    }
}

#[derive(Debug)]
enum Peak {
    /// v1 `memory.max_usage_in_bytes` and, with swap accounting,
    /// `memory.memsw.max_usage_in_bytes` (both reset at `begin_run`).
    V1 { mem: Source, memsw: Option<Source> },
    /// v2 `memory.peak` opened read-write and reset through this very fd
    /// (Linux >= 6.12): reads report the peak since our reset only.
    V2Reset(Source),
    /// v2 `memory.peak` of a box that never ran anything before: the
    /// lifetime peak *is* the run's peak.
    V2Lifetime(Source),
    /// v2 without a resettable peak: the maximum of `memory.current` over
    /// the calls to `memory_peak_bytes`.
    V2Sampled { current: Source, max: AtomicU64 },
}

#[derive(Debug)]
enum OomKind {
    /// v1 `memory.oom_control` `oom_kill` (Linux >= 4.13).
    V1OomControl,
    /// v1 `memory.failcnt` (older kernels): counts every time usage hit the
    /// limit, including hits that reclaim resolved, so it over-reports.
    V1Failcnt,
    /// v2 `memory.events` `oom_kill` + `oom_group_kill`.
    V2Events,
}

#[derive(Debug)]
struct Oom {
    src: Source,
    kind: OomKind,
    base: u64,
}

impl Oom {
    fn count(&self) -> Result<u64, CgroupError> {
        match self.kind {
            OomKind::V1OomControl => pread_key(&self.src.file, &self.src.path, "oom_kill"),
            OomKind::V1Failcnt => self.src.u64(),
            OomKind::V2Events => {
                let mut buf = [0u8; 1024];
                let content = pread_all(&self.src.file, &self.src.path, &mut buf)?;
                let kills = find_key(content, b"oom_kill").unwrap_or(0);
                let group = find_key(content, b"oom_group_kill").unwrap_or(0);
                Ok(kills.saturating_add(group))
            }
        }
    }
}

/// The meter of one run in a box, returned by
/// [`BoxCgroup::begin_run`](super::BoxCgroup::begin_run).
///
/// Holds open descriptors on the box's counters; every reading is a
/// `pread(2)` into a stack buffer (no allocation), cheap enough to call
/// every few milliseconds while the run is in progress. It stays valid after
/// the run's processes have exited (the box keeps its counters until it is
/// removed or the next `begin_run`).
#[derive(Debug)]
pub struct RunMeter {
    cpu: Cpu,
    cpu_base_ns: u64,
    peak: Peak,
    oom: Oom,
}

impl RunMeter {
    /// Start-of-run snapshot for a cgroup v1 box.
    pub(crate) fn begin_v1(mem_dir: &Path, cpu_dir: &Path) -> Result<Self, CgroupError> {
        // Writing 0 resets the watermark to the *current* usage.
        let mem_max = mem_dir.join("memory.max_usage_in_bytes");
        fsops::write_file(&mem_max, "0")?;
        let memsw_max = mem_dir.join("memory.memsw.max_usage_in_bytes");
        let has_memsw = fsops::write_file_if_exists(&memsw_max, "0")?;
        let peak = Peak::V1 {
            mem: Source::open(mem_max)?,
            memsw: if has_memsw {
                Source::open_optional(memsw_max)?
            } else {
                None
            },
        };

        let cpu = Cpu::V1Usage(Source::open(cpu_dir.join("cpuacct.usage"))?);
        let cpu_base_ns = cpu.nanos()?;

        let oom_control = Source::open(mem_dir.join("memory.oom_control"))?;
        let mut buf = [0u8; 256];
        let content = pread_all(&oom_control.file, &oom_control.path, &mut buf)?;
        let oom = match find_key(content, b"oom_kill") {
            Some(base) => Oom {
                src: oom_control,
                kind: OomKind::V1OomControl,
                base,
            },
            None => {
                let src = Source::open(mem_dir.join("memory.failcnt"))?;
                let base = src.u64()?;
                Oom {
                    src,
                    kind: OomKind::V1Failcnt,
                    base,
                }
            }
        };
        Ok(RunMeter {
            cpu,
            cpu_base_ns,
            peak,
            oom,
        })
    }

    /// Start-of-run snapshot for a cgroup v2 box. `fresh`: nothing ever ran
    /// in this box (its lifetime `memory.peak` is usable as a fallback).
    pub(crate) fn begin_v2(dir: &Path, fresh: bool) -> Result<Self, CgroupError> {
        let peak = Self::v2_peak(dir, fresh)?;
        let cpu = Cpu::V2Stat(Source::open(dir.join("cpu.stat"))?);
        let cpu_base_ns = cpu.nanos()?;
        let mut oom = Oom {
            src: Source::open(dir.join("memory.events"))?,
            kind: OomKind::V2Events,
            base: 0,
        };
        oom.base = oom.count()?;
        Ok(RunMeter {
            cpu,
            cpu_base_ns,
            peak,
            oom,
        })
    }

    fn v2_peak(dir: &Path, fresh: bool) -> Result<Peak, CgroupError> {
        let path = dir.join("memory.peak");
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path);
        match opened {
            Ok(mut file) => match file.write(b"reset\n") {
                Ok(_) => return Ok(Peak::V2Reset(Source { file, path })),
                Err(e) => tracing::debug!(
                    path = %path.display(), error = %e,
                    "cgroup: memory.peak is not resettable (Linux < 6.12), falling back"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CgroupError::io("open for reading and writing", &path, e)),
        }
        if fresh {
            if let Some(src) = Source::open_optional(path)? {
                return Ok(Peak::V2Lifetime(src));
            }
        }
        Ok(Peak::V2Sampled {
            current: Source::open(dir.join("memory.current"))?,
            max: AtomicU64::new(0),
        })
    }

    /// CPU time (user + system) consumed by all processes of the box since
    /// `begin_run`, including processes that have already exited.
    /// v1: `cpuacct.usage` (ns); v2: `cpu.stat` `usage_usec`.
    pub fn cpu_time(&self) -> Result<Duration, CgroupError> {
        let now = self.cpu.nanos()?;
        Ok(Duration::from_nanos(now.saturating_sub(self.cpu_base_ns)))
    }

    /// Peak memory charged to the box during this run, in bytes (see the
    /// module documentation for what is included).
    ///
    /// In the v2 sampling fallback (kernel without resettable
    /// `memory.peak`, on a reused box) each call samples `memory.current`
    /// and returns the maximum seen so far: call it periodically.
    pub fn memory_peak_bytes(&self) -> Result<u64, CgroupError> {
        match &self.peak {
            Peak::V1 { mem, memsw } => {
                let m = mem.u64()?;
                match memsw {
                    Some(sw) => Ok(m.max(sw.u64()?)),
                    None => Ok(m),
                }
            }
            Peak::V2Reset(s) | Peak::V2Lifetime(s) => s.u64(),
            Peak::V2Sampled { current, max } => {
                let now = current.u64()?;
                Ok(max.fetch_max(now, Ordering::Relaxed).max(now))
            }
        }
    }

    /// Whether the kernel's OOM killer killed a process of the box since
    /// `begin_run` (v1: `memory.oom_control` `oom_kill` delta, or on
    /// kernels < 4.13 a `memory.failcnt` delta, which also counts limit hits
    /// that reclaim resolved; v2: `memory.events` `oom_kill` +
    /// `oom_group_kill` delta).
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        Ok(self.oom_events()? > 0)
    }

    /// The number of OOM events counted by [`RunMeter::oom_killed`].
    pub fn oom_events(&self) -> Result<u64, CgroupError> {
        Ok(self.oom.count()?.saturating_sub(self.oom.base))
    }

    /// How the memory peak is measured, for diagnostics/logs.
    pub fn peak_method(&self) -> &'static str {
        match self.peak {
            Peak::V1 { memsw: Some(_), .. } => "v1 memory.memsw.max_usage_in_bytes",
            Peak::V1 { memsw: None, .. } => "v1 memory.max_usage_in_bytes",
            Peak::V2Reset(_) => "v2 memory.peak (per-fd reset)",
            Peak::V2Lifetime(_) => "v2 memory.peak (fresh box)",
            Peak::V2Sampled { .. } => "v2 memory.current (sampled)",
        }
    }
}
