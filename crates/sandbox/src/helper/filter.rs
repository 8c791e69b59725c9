//! The restrictions a process puts on itself before starting the command, which inherits
//! them: Landlock rules for the allow-lists (network rules and scopes too where the kernel
//! has them) and the seccomp filter.

use std::collections::BTreeMap;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{SetupError, setup_failure};
use crate::outcome::{Layer, LayerReport};
use crate::plan::{self, Plan};
use crate::policy::Network;

/// The newest Landlock ABI asked for; older kernels get what they have (best effort).
const LANDLOCK_ABI: ABI = ABI::V10;

fn fs_rights(rule: &plan::PathRule) -> BitFlags<AccessFs> {
    let rights = match rule.access {
        plan::Access::Read | plan::Access::Proc => AccessFs::from_read(LANDLOCK_ABI),
        plan::Access::Write => AccessFs::from_all(LANDLOCK_ABI),
        // `> /dev/null` opens with O_TRUNC.
        plan::Access::Device => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate,
    };
    if rule.dir {
        rights
    } else {
        rights & AccessFs::from_file(LANDLOCK_ABI)
    }
}

/// Applies Landlock to this process; reports the filesystem, network and scope layers.
pub(super) fn landlock(
    plan: &Plan,
    root_built: bool,
    proc_mounted: bool,
) -> Result<Vec<LayerReport>, SetupError> {
    let network_none = plan.network == Network::None;
    let status = (|| {
        let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(LANDLOCK_ABI))?;
        if network_none {
            ruleset = ruleset.handle_access(AccessNet::from_all(LANDLOCK_ABI))?;
        }
        let mut created = ruleset
            .scope(Scope::Signal | Scope::AbstractUnixSocket)?
            .create()?;
        let proc_rule = plan::PathRule {
            path: "/proc".into(),
            access: plan::Access::Proc,
            dir: true,
        };
        let proc_rule = proc_mounted.then_some(&proc_rule);
        if root_built {
            // The new root holds only allowed paths: listing its directories shows nothing
            // more (`ls /` works). On the host's root this rule would expose every name.
            if let Ok(fd) = PathFd::new("/") {
                created = created.add_rule(PathBeneath::new(fd, AccessFs::ReadDir))?;
            }
        }
        for rule in plan.rules.iter().chain(proc_rule) {
            // A path that vanished since the plan was made simply stays closed.
            if let Ok(fd) = PathFd::new(&rule.path) {
                created = created.add_rule(PathBeneath::new(fd, fs_rights(rule)))?;
            }
        }
        created.restrict_self()
    })()
    .map_err(|e: landlock::RulesetError| setup_failure("landlock", e.to_string()))?;

    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => 0,
    };
    let why_not = match status.landlock {
        LandlockStatus::NotEnabled => "Landlock is not enabled in this kernel",
        LandlockStatus::NotImplemented => "this kernel has no Landlock",
        _ => "not enforced",
    };
    let mut layers = Vec::new();
    layers.push(match status.ruleset {
        RulesetStatus::FullyEnforced => LayerReport::applied(Layer::Landlock, format!("ABI {abi}")),
        RulesetStatus::PartiallyEnforced => LayerReport::applied(
            Layer::Landlock,
            format!("ABI {abi}: the rights this kernel knows"),
        ),
        _ => LayerReport::unavailable(Layer::Landlock, why_not),
    });
    let enforced = status.ruleset != RulesetStatus::NotEnforced;
    layers.push(if !network_none {
        LayerReport::not_requested(Layer::LandlockNetwork, "network host")
    } else if enforced && abi >= 10 {
        LayerReport::applied(Layer::LandlockNetwork, "TCP and UDP denied")
    } else if enforced && abi >= 4 {
        LayerReport::applied(
            Layer::LandlockNetwork,
            format!("TCP denied (UDP rules need ABI 10, kernel has {abi})"),
        )
    } else {
        LayerReport::unavailable(
            Layer::LandlockNetwork,
            format!("needs Landlock ABI 4, kernel has {abi}"),
        )
    });
    layers.push(if enforced && abi >= 6 {
        LayerReport::applied(Layer::LandlockScope, "signals, abstract Unix sockets")
    } else {
        LayerReport::unavailable(
            Layer::LandlockScope,
            format!("needs Landlock ABI 6, kernel has {abi}"),
        )
    });
    Ok(layers)
}

/// System calls the command never needs and that reach the kernel's or other processes'
/// internals: tracing, mounting, namespaces, module and kexec loading, BPF, perf, keys,
/// swap, reboot, io_uring (which seccomp cannot see into), clock setting.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
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
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_open_by_handle_at,
    libc::SYS_vhangup,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// The x32 ABI's system-call bit on x86_64: the same calls under other numbers.
#[cfg(target_arch = "x86_64")]
const X32_BIT: i64 = 0x4000_0000;

/// Namespace flags `clone` may not carry (`CLONE_NEWTIME` shares its bit with the exit
/// signal in `clone`'s flags, and only `unshare`/`clone3` take it).
const CLONE_NAMESPACES: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn condition(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SetupError> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| setup_failure("seccomp", e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SetupError> {
    SeccompRule::new(conditions).map_err(|e| setup_failure("seccomp", e.to_string()))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, SetupError> {
    let errno = u32::try_from(errno).unwrap_or(1);
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .and_then(TryInto::try_into)
    .map_err(|e| setup_failure("seccomp", e.to_string()))
}

/// Builds and installs the filters (no_new_privs must be set): denied calls fail with
/// EPERM; `clone3` fails with ENOSYS so the C library falls back to `clone`, whose flags
/// the filter can see.
pub(super) fn seccomp(network: Network) -> Result<LayerReport, SetupError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| setup_failure("seccomp", e.to_string()))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &call in DENIED {
        rules.insert(call, Vec::new());
        #[cfg(target_arch = "x86_64")]
        rules.insert(call | X32_BIT, Vec::new());
    }
    let masked = |flag: u64| {
        condition(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .and_then(|c| rule(vec![c]))
    };
    let clone_rules = CLONE_NAMESPACES
        .iter()
        .map(|&flag| masked(flag))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // Typing into the caller's terminal through an inherited descriptor.
    let ioctl_rules = [libc::TIOCSTI, libc::TIOCLINUX]
        .iter()
        .map(|&request| {
            condition(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                ioctl_request(request),
            )
            .and_then(|c| rule(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    if network == Network::None {
        let socket_rules = [libc::AF_INET, libc::AF_INET6, libc::AF_PACKET]
            .iter()
            .map(|&domain| {
                condition(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, domain as u64)
                    .and_then(|c| rule(vec![c]))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_socket, socket_rules);
    }
    let deny = compile(rules, libc::EPERM, arch)?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
        arch,
    )?;
    for program in [&clone3, &deny] {
        seccompiler::apply_filter(program).map_err(|e| setup_failure("seccomp", e.to_string()))?;
    }
    Ok(LayerReport::applied(
        Layer::Seccomp,
        format!(
            "{} calls denied, namespace flags of clone, clone3{}",
            DENIED.len(),
            if network == Network::None {
                ", IPv4/IPv6/packet sockets"
            } else {
                ""
            }
        ),
    ))
}

/// An ioctl request number as the filter compares it (its C type differs between libcs).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn ioctl_request(request: libc::Ioctl) -> u64 {
    request as u64
}
