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

/// The x32 ABI's system-call bit on x86_64: the same calls under other numbers, which a
/// filter keyed on x86_64 numbers would let through.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_X86_64`, as `seccomp_data.arch` holds it.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// Address families the command may open sockets of with network `host`: Unix, IPv4,
/// IPv6, and netlink (route protocol only, which `ip` and the resolver use). VSOCK,
/// packet, Bluetooth, ALG, XDP, TIPC, ... reach hosts, devices or kernel code the
/// command has no business with.
const HOST_FAMILIES: &[i32] = &[
    libc::AF_UNIX,
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_NETLINK,
];

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

/// Builds and installs the filters (no_new_privs must be set): denied calls and every x32
/// call fail with EPERM; sockets of families outside the allow-list with EAFNOSUPPORT (so
/// programs fall back as on a host without them); `clone3` with ENOSYS so the C library
/// falls back to `clone`, whose flags the filter can see.
pub(super) fn seccomp(network: Network) -> Result<LayerReport, SetupError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| setup_failure("seccomp", e.to_string()))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &call in DENIED {
        rules.insert(call, Vec::new());
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
    let deny = compile(rules, libc::EPERM, arch)?;
    let sockets = compile(socket_rules(network)?, libc::EAFNOSUPPORT, arch)?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
        arch,
    )?;
    let mut programs = vec![clone3, sockets, deny];
    #[cfg(target_arch = "x86_64")]
    programs.push(x32_filter());
    for program in &programs {
        seccompiler::apply_filter(program).map_err(|e| setup_failure("seccomp", e.to_string()))?;
    }
    Ok(LayerReport::applied(
        Layer::Seccomp,
        format!(
            "{} calls denied, namespace flags of clone, clone3, x32 calls; sockets: {}",
            DENIED.len(),
            match network {
                Network::None => "Unix only",
                Network::Host => "Unix, IPv4, IPv6, netlink route only",
            }
        ),
    ))
}

/// The socket families allowed, as rules that match (and so deny) every other one:
/// `socket` and `socketpair` with any family but Unix under network `none`; under
/// `host`, `socket` outside [`HOST_FAMILIES`] and netlink with any protocol but route.
fn socket_rules(network: Network) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SetupError> {
    let family = |op: SeccompCmpOp, value: i32| {
        condition(
            0,
            SeccompCmpArgLen::Dword,
            op,
            u64::from(value.unsigned_abs()),
        )
    };
    let not_unix = || rule(vec![family(SeccompCmpOp::Ne, libc::AF_UNIX)?]);
    let socket = match network {
        Network::None => vec![not_unix()?],
        Network::Host => {
            let outside = HOST_FAMILIES
                .iter()
                .map(|&f| family(SeccompCmpOp::Ne, f))
                .collect::<Result<Vec<_>, _>>()?;
            let netlink_not_route = vec![
                family(SeccompCmpOp::Eq, libc::AF_NETLINK)?,
                condition(
                    2,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Ne,
                    u64::from(libc::NETLINK_ROUTE.unsigned_abs()),
                )?,
            ];
            vec![rule(outside)?, rule(netlink_not_route)?]
        }
    };
    Ok(BTreeMap::from([
        (libc::SYS_socket, socket),
        (libc::SYS_socketpair, vec![not_unix()?]),
    ]))
}

/// One classic-BPF instruction.
#[cfg(target_arch = "x86_64")]
fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

/// Denies every x32 call (`nr >= 0x40000000` under the x86_64 audit arch) with EPERM:
/// seccompiler matches exact numbers only, so this small program is written by hand.
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JEQ | BPF_K, BPF_JMP | BPF_JGE | BPF_K,
    // BPF_RET | BPF_K.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    // Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM.unsigned_abs();
    vec![
        bpf(LD_W_ABS, 0, 0, ARCH),
        // Other architectures: the other filters kill the process.
        bpf(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        bpf(LD_W_ABS, 0, 0, NR),
        bpf(JGE_K, 0, 1, X32_BIT),
        bpf(RET_K, 0, 0, errno),
        bpf(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// An ioctl request number as the filter compares it (its C type differs between libcs).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn ioctl_request(request: libc::Ioctl) -> u64 {
    request as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// Installs the filter on a fresh thread only (seccomp and no_new_privs are per
    /// thread), then runs `probe` there.
    fn under_filter<T: Send + 'static>(network: Network, probe: fn() -> T) -> T {
        std::thread::spawn(move || {
            nix::sys::prctl::set_no_new_privs().unwrap();
            seccomp(network).unwrap();
            probe()
        })
        .join()
        .unwrap()
    }

    fn udp_error() -> Option<i32> {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .err()
            .and_then(|e| e.raw_os_error())
    }

    #[test]
    fn network_none_allows_unix_sockets_only() {
        let (udp, unix) = under_filter(Network::None, || {
            (udp_error(), UnixDatagram::pair().is_ok())
        });
        assert_eq!(udp, Some(libc::EAFNOSUPPORT));
        assert!(unix, "socketpair(AF_UNIX) must work");
    }

    #[test]
    fn network_host_allows_inet_sockets() {
        let (udp, unix) = under_filter(Network::Host, || {
            (udp_error(), UnixDatagram::pair().is_ok())
        });
        assert_eq!(udp, None);
        assert!(unix);
    }

    #[test]
    fn both_networks_compile_their_socket_rules() {
        for network in [Network::None, Network::Host] {
            let rules = socket_rules(network).unwrap();
            assert!(rules.contains_key(&libc::SYS_socket));
            assert!(rules.contains_key(&libc::SYS_socketpair));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_x32_filter_checks_the_arch_then_the_number() {
        let program = x32_filter();
        assert_eq!(program.len(), 6);
        assert_eq!(program[1].k, AUDIT_ARCH_X86_64);
        assert_eq!(program[3].k, X32_BIT);
        assert_eq!(program[4].k, libc::SECCOMP_RET_ERRNO | 1);
    }
}
