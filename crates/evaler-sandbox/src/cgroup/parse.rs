//! Parsers for `/proc/<pid>/mountinfo`, `/proc/<pid>/cgroup` and the small
//! key/value control files, all pure so they can be fed test texts.

/// One line of `/proc/self/mountinfo` (only the fields we need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// Field 4: the path inside the filesystem that is mounted here
    /// (for cgroupfs: the cgroup that is the mount's root).
    pub root: String,
    /// Field 5: where it is mounted, unescaped.
    pub mount_point: String,
    /// The filesystem type after the ` - ` separator (`cgroup`, `cgroup2`...).
    pub fstype: String,
    /// The per-superblock options (for cgroup v1: the controllers,
    /// e.g. `rw,cpu,cpuacct` or `rw,name=systemd`).
    pub super_options: Vec<String>,
}

/// Parses mountinfo text (see proc(5)). Malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        // id parent maj:min root mount_point options [optional...] - fstype source super_options
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 3 {
            continue;
        }
        out.push(MountEntry {
            root: unescape_octal(fields[3]),
            mount_point: unescape_octal(fields[4]),
            fstype: fields[sep + 1].to_string(),
            super_options: fields
                .get(sep + 3)
                .map(|o| o.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        });
    }
    out
}

/// Undoes the kernel's `\ooo` escaping of spaces, tabs, newlines and
/// backslashes in mountinfo paths.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// Hierarchy id; 0 is the cgroup v2 (unified) hierarchy.
    pub hierarchy_id: u32,
    /// The controllers bound to the hierarchy (v1), e.g. `["cpu", "cpuacct"]`
    /// or `["name=systemd"]`; empty for v2.
    pub controllers: Vec<String>,
    /// The cgroup path, relative to the root of the hierarchy as seen from
    /// the reader's cgroup namespace (always starts with `/` unless the
    /// cgroup is outside the namespace).
    pub path: String,
}

impl ProcCgroup {
    /// True for the unified (v2) line `0::/path`.
    pub fn is_v2(&self) -> bool {
        self.hierarchy_id == 0 && self.controllers.is_empty()
    }
}

/// Parses `/proc/<pid>/cgroup`. Each line is `id:controllers:path`; the path
/// may itself contain `:` (cgroup names may), so only the first two colons
/// separate fields. Malformed lines are skipped.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let id = it.next()?.parse().ok()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(ProcCgroup {
                hierarchy_id: id,
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// Strips `prefix` (a cgroup path like `/a/b`) from `path` component-wise.
/// Returns the remainder without a leading `/` (empty when equal), or
/// `None` when `path` is not inside `prefix`.
pub(crate) fn strip_cgroup_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return path.strip_prefix('/').filter(|p| !p.starts_with(".."));
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// Joins a cgroup path (`/` or `/a/b`) and a child name.
pub(crate) fn join_cgroup_path(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Parses a decimal `u64` from ASCII bytes, ignoring surrounding whitespace.
/// Allocation-free (used on the metering hot path).
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let s = trim_ascii(bytes);
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Finds `key value` in a flat-keyed file (`memory.events`, `cpu.stat`,
/// `memory.oom_control`...). Allocation-free.
pub(crate) fn find_key(content: &[u8], key: &[u8]) -> Option<u64> {
    content.split(|&c| c == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key)?;
        let rest = rest.strip_prefix(b" ")?;
        parse_u64(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_hybrid_line() {
        let text = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 master:2 - cgroup2 cgroup2 rw,nsdelegate\n\
                    99 1 0:50 / /weird\\040dir rw - tmpfs none rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, "/sys/fs/cgroup/memory");
        assert_eq!(m[0].fstype, "cgroup");
        assert_eq!(m[0].super_options, vec!["rw", "memory"]);
        assert_eq!(m[1].fstype, "cgroup2");
        assert_eq!(m[1].super_options, vec!["rw", "nsdelegate"]);
        assert_eq!(m[2].mount_point, "/weird dir");
    }

    #[test]
    fn proc_cgroup_colons_in_path() {
        let text = "4:memory:/a:b:c\n2:cpu,cpuacct:/\n0::/user.slice/x:y\nbad line\n";
        let c = parse_proc_cgroup(text);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].path, "/a:b:c");
        assert_eq!(c[0].controllers, vec!["memory"]);
        assert_eq!(c[1].controllers, vec!["cpu", "cpuacct"]);
        assert!(c[2].is_v2());
        assert_eq!(c[2].path, "/user.slice/x:y");
    }

    #[test]
    fn prefix_stripping() {
        assert_eq!(strip_cgroup_prefix("/a/b", "/"), Some("a/b"));
        assert_eq!(strip_cgroup_prefix("/", "/"), Some(""));
        assert_eq!(strip_cgroup_prefix("/a/b", "/a"), Some("b"));
        assert_eq!(strip_cgroup_prefix("/a", "/a"), Some(""));
        assert_eq!(strip_cgroup_prefix("/ab", "/a"), None);
        assert_eq!(strip_cgroup_prefix("/../x", "/"), None);
        assert_eq!(join_cgroup_path("/", "x"), "/x");
        assert_eq!(join_cgroup_path("/a", "x"), "/a/x");
    }

    #[test]
    fn numbers_and_keys() {
        assert_eq!(parse_u64(b" 123\n"), Some(123));
        assert_eq!(parse_u64(b"max\n"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        let events = b"low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(find_key(events, b"oom_kill"), Some(2));
        assert_eq!(find_key(events, b"oom"), Some(1));
        assert_eq!(find_key(events, b"oom_group_kill"), Some(1));
        assert_eq!(find_key(events, b"missing"), None);
    }
}
