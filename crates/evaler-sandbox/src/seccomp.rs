//! The seccomp filter: system calls a judged program or a notebook cell never
//! needs, denied with a clear `EPERM` (never a hang, never a silent kill).
//!
//! The list is a deny-list on purpose: compilers, JVMs, Go and Node use a wide
//! and changing set of calls, and an allow-list breaks them in ways that look
//! like the user's bug. What the list keeps out is what could reach past the
//! box: other processes' memory, the kernel's module/keyring/BPF/perf
//! surfaces, new namespaces and mounts, io_uring, and the terminal.
//!
//! Built with `seccompiler` (Firecracker's compiler) rather than hand-written
//! BPF. Its filters check the architecture first and kill a process that
//! makes a system call of another ABI (`int 0x80` on x86_64), which closes
//! the classic 32-bit bypass.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::SandboxError;

/// The programs of the filter, loaded one after the other: the kernel
/// applies the strictest answer of all loaded filters.
///
/// Loading is the expensive part (the kernel compiles each program and, to
/// build its per-syscall cache, runs it for every system call number), so a
/// box keeper loads them once and every run it forks inherits them.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Calls denied with EPERM.
    pub deny: BpfProgram,
    /// Calls answered ENOSYS, so that libc falls back to an older call we can
    /// inspect (`clone3` hides its flags in memory a filter cannot read).
    pub nosys: BpfProgram,
    /// Every call of a second ABI that shares the native architecture tag
    /// (x32 on x86_64: the native numbers with bit 30 set), answered ENOSYS:
    /// the other two programs list native numbers only, so without this a
    /// kernel with x32 enabled would let `unshare | 0x40000000` through.
    /// Empty where there is no such ABI.
    pub foreign_abi: BpfProgram,
}

impl Filter {
    /// The programs in the order they are loaded.
    pub fn programs(&self) -> impl Iterator<Item = &BpfProgram> {
        [&self.foreign_abi, &self.nosys, &self.deny]
            .into_iter()
            .filter(|p| !p.is_empty())
    }
}

const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fanotify_init,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_personality,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lookup_dcookie,
];

const NOSYS: &[libc::c_long] = &[
    libc::SYS_clone3,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Namespace flags a program may not pass to `clone`.
const CLONE_NS_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWCGROUP,
];

fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// Builds the filter once per sandbox; loading it in each run is a single
/// system call.
pub fn build() -> Result<Filter, SandboxError> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        rules.insert(nr, Vec::new());
    }
    // clone with any namespace flag.
    let clone_rules = CLONE_NS_FLAGS
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            rule(vec![cond(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // unshare, except of exactly the IPC namespace: the box keeper, which
    // carries this filter, gives each run a fresh one. For the program the
    // kernel refuses it anyway (it takes CAP_SYS_ADMIN, which no run has).
    rules.insert(
        libc::SYS_unshare,
        vec![rule(vec![cond(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Ne,
            libc::CLONE_NEWIPC as u64,
        )?])?],
    );
    // Typing into the terminal of someone else (TIOCSTI) and console tricks.
    // The request is compared as 32 bits: the kernel ignores the upper half,
    // so a 64-bit compare could be dodged by setting it.
    let ioctl_rules = [libc::TIOCSTI, libc::TIOCLINUX]
        .iter()
        .map(|&req| {
            rule(vec![cond(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                req,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    // An exclusive flock on a shared read-only system file would stall every
    // other box that takes a shared lock on it; shared locks cannot conflict.
    rules.insert(
        libc::SYS_flock,
        vec![rule(vec![cond(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::LOCK_EX as u64),
            libc::LOCK_EX as u64,
        )?])?],
    );
    let nosys_rules = NOSYS.iter().map(|&nr| (nr, Vec::new())).collect();
    Ok(Filter {
        deny: compile(rules, libc::EPERM, arch)?,
        nosys: compile(nosys_rules, libc::ENOSYS, arch)?,
        foreign_abi: foreign_abi(),
    })
}

/// See [`Filter::foreign_abi`]. Hand-written: seccompiler matches syscall
/// numbers one by one and cannot say "every number from here on".
#[cfg(target_arch = "x86_64")]
fn foreign_abi() -> BpfProgram {
    use seccompiler::sock_filter;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // Offsets in struct seccomp_data.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let op = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        op(load, 0, 0, ARCH),
        // Another architecture (i386): seccompiler's programs deal with it.
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            3,
            AUDIT_ARCH_X86_64,
        ),
        op(load, 0, 0, NR),
        op(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            0,
            1,
            X32_SYSCALL_BIT,
        ),
        op(ret, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn foreign_abi() -> BpfProgram {
    Vec::new()
}

/// A program that allows everything but the calls `rules` match, which fail
/// with `errno`.
fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, SandboxError> {
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| SandboxError::Seccomp(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_builds_and_fits_the_kernel_limit() {
        let f = build().expect("filter builds");
        // BPF programs are limited to 4096 instructions.
        assert!(
            !f.deny.is_empty() && f.deny.len() < 4096,
            "{}",
            f.deny.len()
        );
        assert!(!f.nosys.is_empty() && f.nosys.len() < 4096);
    }
}
