//! The Linux sandbox every untrusted program of evaler runs in.

pub mod cgroup;
