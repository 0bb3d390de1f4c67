//! A tiny fake "kernel" for unit tests on cgroupfs trees in temp dirs.
//!
//! Real cgroupfs creates control files on `mkdir` and lets `rmdir` remove a
//! directory that still holds them. A plain directory does neither, so in
//! `cfg(test)` builds `fsops::mkdir` calls [`after_mkdir`] and
//! `fsops::rmdir` calls [`before_rmdir`]. Both only ever touch paths under
//! the system temp dir.

use std::fs;
use std::path::Path;

fn in_temp_dir(path: &Path) -> bool {
    path.starts_with(std::env::temp_dir())
}

/// Creates the child's control files like the kernel would: v1 copies the
/// parent's files (minus root-only ones); v2 creates the core `cgroup.*`
/// files, `cpu.stat`, and the files of the controllers the parent enabled
/// in its `cgroup.subtree_control`.
pub(crate) fn after_mkdir(path: &Path) {
    if !in_temp_dir(path) {
        return;
    }
    let Some(parent) = path.parent() else {
        return;
    };
    let v2 = parent.join("cgroup.controllers").exists();
    let enabled: Vec<String> = if v2 {
        fs::read_to_string(parent.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|c| c.trim_start_matches('+').to_string())
            .collect()
    } else {
        Vec::new()
    };
    let Ok(rd) = fs::read_dir(parent) else {
        return;
    };
    for entry in rd.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = if v2 {
            let ctrl = name.split('.').next().unwrap_or("");
            ctrl == "cgroup" || name == "cpu.stat" || enabled.iter().any(|c| c == ctrl)
        } else {
            !matches!(name.as_str(), "cgroup.sane_behavior" | "release_agent")
        };
        if keep {
            let _ = fs::write(path.join(&name), default_content(&name, &enabled));
        }
    }
}

fn default_content(name: &str, enabled: &[String]) -> String {
    match name {
        "cgroup.controllers" => enabled.join(" "),
        "cgroup.subtree_control" | "cgroup.procs" | "tasks" | "cgroup.kill" => String::new(),
        "cgroup.events" => "populated 0\nfrozen 0\n".into(),
        "memory.events" => "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n".into(),
        "memory.oom_control" => "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n".into(),
        "cpu.stat" => "usage_usec 0\nuser_usec 0\nsystem_usec 0\n".into(),
        "memory.use_hierarchy" => "1\n".into(),
        n if n.ends_with(".max") => "max\n".into(),
        n if n.ends_with("limit_in_bytes") => "9223372036854771712\n".into(),
        _ => "0\n".into(),
    }
}

/// Deletes the control files of a leaf so `rmdir` can succeed. Leaves
/// directories with children alone (rmdir then fails, as on cgroupfs).
pub(crate) fn before_rmdir(path: &Path) {
    if !in_temp_dir(path) {
        return;
    }
    let Ok(rd) = fs::read_dir(path) else {
        return;
    };
    let entries: Vec<_> = rd.flatten().collect();
    if entries
        .iter()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        return;
    }
    for e in entries {
        let _ = fs::remove_file(e.path());
    }
}
