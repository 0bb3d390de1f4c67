//! Per-run metering: CPU time, memory peak and OOM kills since `begin_run`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

    /// The larger of this and its v1 `memsw` twin, if that exists.
    fn max_with(&self, memsw: Option<&Source>) -> Result<u64, CgroupError> {
        let m = self.u64()?;
        match memsw {
            Some(sw) => Ok(m.max(sw.u64()?)),
            None => Ok(m),
        }
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

/// Where a box's memory peak comes from (the files, opened once).
#[derive(Debug)]
enum PeakFiles {
    /// v1 `memory.max_usage_in_bytes` and, with swap accounting,
    /// `memory.memsw.max_usage_in_bytes`, opened read-write: writing `0`
    /// resets each to the current usage.
    V1 { mem: Source, memsw: Option<Source> },
    /// v2 `memory.peak` opened read-write and reset through this very fd
    /// (Linux >= 6.12): reads report the peak since our reset only.
    V2Reset(Source),
    /// v2 without a resettable `memory.peak`: its lifetime value (if the
    /// file exists at all) and `memory.current` to sample.
    V2Unresettable {
        peak: Option<Source>,
        current: Source,
    },
}

/// How this run's peak is read.
#[derive(Debug)]
enum PeakMode {
    /// The file was reset at `begin_run` (v1, or v2 `V2Reset`).
    Reset,
    /// v2 `memory.peak` of a box that never ran anything before: the
    /// lifetime peak *is* the run's peak.
    Lifetime,
    /// v2 without a resettable peak: the maximum of `memory.current` over
    /// the calls to `memory_peak_bytes`.
    Sampled(AtomicU64),
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

/// A box's counter files, opened at its first run and kept for the next:
/// opening half a dozen cgroupfs paths cost more than the rest of the
/// metering of a trivial run. Every reading and reset is a `pread` or
/// `pwrite` at offset 0 (cgroupfs regenerates the content each time).
#[derive(Debug)]
pub(crate) struct Counters {
    cpu: Cpu,
    peak: PeakFiles,
    oom: Oom,
    usage: Usage,
    /// The smallest start-of-run usage seen in this box: what its keeper
    /// holds with no page cache left over from earlier runs.
    floor: AtomicU64,
}

/// What the box holds now, and how many times it reached its limit; read
/// at `begin_run` and at the end to tell the run's own memory from what
/// earlier runs left charged to the box (see [`RunMeter::memory_peak_bytes`]).
#[derive(Debug)]
enum Usage {
    /// v1 `memory.usage_in_bytes` and `memory.failcnt`, with their `memsw`
    /// twins when swap accounting exists (the peak is the larger of the two).
    V1 {
        mem: Source,
        memsw: Option<Source>,
        failcnt: Source,
        memsw_failcnt: Option<Source>,
    },
    /// v2 `memory.current`, and `memory.events` `max`.
    V2 { current: Source, events: Source },
}

impl Usage {
    fn bytes(&self) -> Result<u64, CgroupError> {
        match self {
            Usage::V1 { mem, memsw, .. } => mem.max_with(memsw.as_ref()),
            Usage::V2 { current, .. } => current.u64(),
        }
    }

    fn limit_hits(&self) -> Result<u64, CgroupError> {
        match self {
            Usage::V1 {
                failcnt,
                memsw_failcnt,
                ..
            } => {
                let sw = match memsw_failcnt {
                    Some(f) => f.u64()?,
                    None => 0,
                };
                Ok(failcnt.u64()?.saturating_add(sw))
            }
            Usage::V2 { events, .. } => Ok(pread_key(&events.file, &events.path, "max")?),
        }
    }
}

fn open_rw(path: PathBuf) -> Result<Option<Source>, CgroupError> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(file) => Ok(Some(Source { file, path })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::io("open for reading and writing", &path, e)),
    }
}

impl Counters {
    /// The files of a cgroup v1 box.
    pub(crate) fn open_v1(mem_dir: &Path, cpu_dir: &Path) -> Result<Self, CgroupError> {
        let mem_max = mem_dir.join("memory.max_usage_in_bytes");
        let mem = open_rw(mem_max.clone())?.ok_or_else(|| {
            CgroupError::io(
                "open for reading and writing",
                &mem_max,
                std::io::ErrorKind::NotFound.into(),
            )
        })?;
        let memsw = open_rw(mem_dir.join("memory.memsw.max_usage_in_bytes"))?;
        let cpu = Cpu::V1Usage(Source::open(cpu_dir.join("cpuacct.usage"))?);
        let oom_control = Source::open(mem_dir.join("memory.oom_control"))?;
        let mut buf = [0u8; 256];
        let content = pread_all(&oom_control.file, &oom_control.path, &mut buf)?;
        let oom = if find_key(content, b"oom_kill").is_some() {
            Oom {
                src: oom_control,
                kind: OomKind::V1OomControl,
            }
        } else {
            Oom {
                src: Source::open(mem_dir.join("memory.failcnt"))?,
                kind: OomKind::V1Failcnt,
            }
        };
        let usage = Usage::V1 {
            mem: Source::open(mem_dir.join("memory.usage_in_bytes"))?,
            memsw: Source::open_optional(mem_dir.join("memory.memsw.usage_in_bytes"))?,
            failcnt: Source::open(mem_dir.join("memory.failcnt"))?,
            memsw_failcnt: Source::open_optional(mem_dir.join("memory.memsw.failcnt"))?,
        };
        Ok(Counters {
            cpu,
            peak: PeakFiles::V1 { mem, memsw },
            oom,
            usage,
            floor: AtomicU64::new(u64::MAX),
        })
    }

    /// The files of a cgroup v2 box.
    pub(crate) fn open_v2(dir: &Path) -> Result<Self, CgroupError> {
        let path = dir.join("memory.peak");
        let peak = match open_rw(path.clone())? {
            Some(src) => match src.file.write_at(b"reset\n", 0) {
                Ok(_) => PeakFiles::V2Reset(src),
                Err(e) => {
                    tracing::debug!(
                        path = %path.display(), error = %e,
                        "cgroup: memory.peak is not resettable (Linux < 6.12), falling back"
                    );
                    PeakFiles::V2Unresettable {
                        peak: Source::open_optional(path)?,
                        current: Source::open(dir.join("memory.current"))?,
                    }
                }
            },
            None => PeakFiles::V2Unresettable {
                peak: None,
                current: Source::open(dir.join("memory.current"))?,
            },
        };
        Ok(Counters {
            cpu: Cpu::V2Stat(Source::open(dir.join("cpu.stat"))?),
            peak,
            oom: Oom {
                src: Source::open(dir.join("memory.events"))?,
                kind: OomKind::V2Events,
            },
            usage: Usage::V2 {
                current: Source::open(dir.join("memory.current"))?,
                events: Source::open(dir.join("memory.events"))?,
            },
            floor: AtomicU64::new(u64::MAX),
        })
    }

    /// Resets the peaks and takes the baselines of a run. `fresh`: nothing
    /// ever ran in this box (its lifetime `memory.peak` is the run's).
    pub(crate) fn begin(self: &Arc<Self>, fresh: bool) -> Result<RunMeter, CgroupError> {
        let peak = match &self.peak {
            PeakFiles::V1 { mem, memsw } => {
                // Writing 0 resets the watermark to the *current* usage.
                fsops::rewrite(&mem.file, &mem.path, "0")?;
                if let Some(sw) = memsw {
                    fsops::rewrite(&sw.file, &sw.path, "0")?;
                }
                PeakMode::Reset
            }
            PeakFiles::V2Reset(src) => {
                fsops::rewrite(&src.file, &src.path, "reset\n")?;
                PeakMode::Reset
            }
            PeakFiles::V2Unresettable { peak: Some(_), .. } if fresh => PeakMode::Lifetime,
            PeakFiles::V2Unresettable { .. } => PeakMode::Sampled(AtomicU64::new(0)),
        };
        let mem_base = self.usage.bytes()?;
        self.floor.fetch_min(mem_base, Ordering::Relaxed);
        Ok(RunMeter {
            cpu_base_ns: self.cpu.nanos()?,
            oom_base: self.oom.count()?,
            mem_base,
            hits_base: self.usage.limit_hits()?,
            counters: Arc::clone(self),
            peak,
        })
    }
}

/// The meter of one run in a box, returned by
/// [`BoxCgroup::begin_run`](super::BoxCgroup::begin_run).
///
/// Reads the box's counters through descriptors opened once per box; every
/// reading is a `pread(2)` into a stack buffer (no allocation), cheap enough
/// to call every few milliseconds while the run is in progress. It stays
/// valid after the run's processes have exited, until the next `begin_run`
/// resets the peak.
#[derive(Debug)]
pub struct RunMeter {
    counters: Arc<Counters>,
    cpu_base_ns: u64,
    oom_base: u64,
    /// The box's usage at `begin_run`.
    mem_base: u64,
    /// Its limit-hit count then.
    hits_base: u64,
    peak: PeakMode,
}

impl RunMeter {
    /// CPU time (user + system) consumed by all processes of the box since
    /// `begin_run`, including processes that have already exited.
    /// v1: `cpuacct.usage` (ns); v2: `cpu.stat` `usage_usec`.
    pub fn cpu_time(&self) -> Result<Duration, CgroupError> {
        let now = self.counters.cpu.nanos()?;
        Ok(Duration::from_nanos(now.saturating_sub(self.cpu_base_ns)))
    }

    /// Peak memory of this run, in bytes: the box's peak usage less the
    /// page cache that earlier runs left charged to it (see the module
    /// documentation for what is charged).
    ///
    /// Page cache a run brings in first (a compiler's files, an
    /// interpreter's modules) stays charged to the box for as long as it
    /// stays cached: after a compilation an a+b run would show 50 MiB. That
    /// leftover is the box's usage at `begin_run` above its floor, the
    /// smallest start-of-run usage it has had (its keeper alone, which stays
    /// counted as before). If the box reached its limit during the run, the
    /// kernel may have reclaimed some of the leftover to make room: then the
    /// whole peak is the run's (it is at most the limit).
    ///
    /// In the v2 sampling fallback (kernel without resettable
    /// `memory.peak`, on a reused box) each call samples `memory.current`
    /// and returns the maximum seen so far: call it periodically.
    pub fn memory_peak_bytes(&self) -> Result<u64, CgroupError> {
        let peak = self.box_peak_bytes()?;
        if self.counters.usage.limit_hits()? > self.hits_base {
            return Ok(peak);
        }
        let floor = self.counters.floor.load(Ordering::Relaxed);
        Ok(peak.saturating_sub(self.mem_base.saturating_sub(floor)))
    }

    /// The box's own peak usage since `begin_run`, baseline included.
    fn box_peak_bytes(&self) -> Result<u64, CgroupError> {
        match (&self.counters.peak, &self.peak) {
            (PeakFiles::V1 { mem, memsw }, _) => mem.max_with(memsw.as_ref()),
            (PeakFiles::V2Reset(s), _) => s.u64(),
            (PeakFiles::V2Unresettable { peak: Some(s), .. }, PeakMode::Lifetime) => s.u64(),
            (PeakFiles::V2Unresettable { current, .. }, PeakMode::Sampled(max)) => {
                let now = current.u64()?;
                Ok(max.fetch_max(now, Ordering::Relaxed).max(now))
            }
            (PeakFiles::V2Unresettable { current, .. }, _) => current.u64(),
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
        Ok(self.counters.oom.count()?.saturating_sub(self.oom_base))
    }

    /// How the memory peak is measured, for diagnostics/logs.
    pub fn peak_method(&self) -> &'static str {
        match (&self.counters.peak, &self.peak) {
            (PeakFiles::V1 { memsw: Some(_), .. }, _) => "v1 memory.memsw.max_usage_in_bytes",
            (PeakFiles::V1 { memsw: None, .. }, _) => "v1 memory.max_usage_in_bytes",
            (PeakFiles::V2Reset(_), _) => "v2 memory.peak (per-fd reset)",
            (_, PeakMode::Lifetime) => "v2 memory.peak (fresh box)",
            _ => "v2 memory.current (sampled)",
        }
    }
}
