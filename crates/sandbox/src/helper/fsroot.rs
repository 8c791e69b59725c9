//! The sandbox's root filesystem: an empty tmpfs holding only the allow-listed paths (bind
//! mounts, read-only unless writable), a few device nodes, a `/proc` of the new pid
//! namespace, the links that lead to them, and the scratch directory; then `pivot_root`,
//! so the host's tree is gone from this mount namespace.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, pivot_root};

use super::{SetupError, setup_error, setup_io_error};
use crate::plan::{Access, PathRule, Plan, ROOT_DIR};

const NONE: Option<&str> = None;

/// Where a host path appears under the new root.
fn under(new_root: &Path, path: &Path) -> PathBuf {
    new_root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The flags a remount must keep: a user namespace may not clear what the host locked.
fn kept_flags(target: &Path) -> MsFlags {
    let Ok(stat) = statvfs(target) else {
        return MsFlags::empty();
    };
    let flags = stat.flags();
    [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| flags.contains(*st))
    .fold(MsFlags::empty(), |all, (_, ms)| all | ms)
}

/// Creates the mount point for `rule` and binds the host path onto it. `host_mounts`: the
/// host's mount points, parents first.
fn bind(new_root: &Path, rule: &PathRule, host_mounts: &[PathBuf]) -> Result<(), SetupError> {
    let target = under(new_root, &rule.path);
    let shown = rule.path.display().to_string();
    if rule.dir {
        fs::create_dir_all(&target).map_err(setup_io_error(format!("mount point for {shown}")))?;
    } else {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(setup_io_error(format!("mount point for {shown}")))?;
        }
        if fs::symlink_metadata(&target).is_err() {
            fs::File::create(&target)
                .map_err(setup_io_error(format!("mount point for {shown}")))?;
        }
    }
    mount(
        Some(&rule.path),
        &target,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(setup_error(format!("bind mount {shown}")))?;
    let mut wanted = MsFlags::MS_NOSUID;
    match rule.access {
        Access::Read => wanted |= MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
        Access::Write => wanted |= MsFlags::MS_NODEV,
        Access::Device => wanted |= MsFlags::MS_NOEXEC,
        Access::Proc => {}
    }
    let remount = |at: &Path| {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | wanted | kept_flags(at);
        mount(NONE, at, NONE, flags, NONE)
    };
    remount(&target).map_err(setup_error(format!("remount {shown}")))?;
    if rule.dir {
        // A bind remount changes one mount: the ones below it (the recursive bind brought
        // them along) get the same flags one by one, so none stays writable.
        for sub in host_mounts
            .iter()
            .filter(|point| *point != &rule.path && point.starts_with(&rule.path))
        {
            let sub = under(new_root, sub);
            remount(&sub).map_err(setup_error(format!("remount {}", sub.display())))?;
        }
    }
    Ok(())
}

/// Undoes the octal escapes of a `/proc/self/mountinfo` path (`\040` is a space).
fn unescape_mount_path(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&b) = bytes.get(index) {
        let octal = bytes
            .get(index + 1..index + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(value) => {
                out.push(value);
                index += 4;
            }
            None => {
                out.push(b);
                index += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points of this mount namespace, parents first (read once: a recursive bind
/// brings along exactly the mounts below its source, so the new root's submounts follow
/// from this list without reading it again after each bind).
fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_mount_points(&text)
}

fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .collect();
    points.sort_by(|a, b| {
        (a.components().count(), a.as_path()).cmp(&(b.components().count(), b.as_path()))
    });
    points.dedup();
    points
}

/// Builds the new root and moves into it; returns whether `/proc` could be mounted.
pub(super) fn build(plan: &Plan, pid_ns: bool) -> Result<bool, SetupError> {
    // Nothing done here may propagate back to the host.
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)
        .map_err(setup_error("making / private"))?;
    let host_mounts = mount_points();
    let new_root = plan.control.join(ROOT_DIR);
    mount(
        Some("tmpfs"),
        &new_root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m,nr_inodes=4096"),
    )
    .map_err(setup_error("tmpfs for the new root"))?;

    let dev = new_root.join("dev");
    let has_devices = plan.rules.iter().any(|r| r.access == Access::Device);
    if has_devices {
        fs::create_dir_all(&dev).map_err(setup_io_error("creating /dev"))?;
        mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=64k,nr_inodes=64"),
        )
        .map_err(setup_error("tmpfs for /dev"))?;
    }
    for rule in &plan.rules {
        if rule.access != Access::Proc {
            bind(&new_root, rule, &host_mounts)?;
        }
    }
    if has_devices {
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            symlink(target, dev.join(name)).map_err(setup_io_error(format!("/dev/{name}")))?;
        }
        mount(
            NONE,
            &dev,
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            NONE,
        )
        .map_err(setup_error("remount /dev read-only"))?;
    }

    let mut proc_mounted = false;
    if pid_ns {
        let proc_dir = new_root.join("proc");
        fs::create_dir_all(&proc_dir).map_err(setup_io_error("creating /proc"))?;
        // Fails where the host's /proc is partly hidden (some containers): then there is
        // no /proc at all, rather than the host's.
        proc_mounted = mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            NONE,
        )
        .is_ok();
    }

    for (link, target) in &plan.links {
        let at = under(&new_root, link);
        if fs::symlink_metadata(&at).is_ok() {
            continue;
        }
        // A link inside a read-only tree already exists there; others are best effort:
        // a missing one only breaks the path it leads to.
        if let Some(parent) = at.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = symlink(target, &at);
    }

    chdir(&new_root).map_err(setup_error("chdir to the new root"))?;
    pivot_root(".", ".").map_err(setup_error("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(setup_error("detaching the old root"))?;
    chdir("/").map_err(setup_error("chdir /"))?;
    mount(
        NONE,
        "/",
        NONE,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        NONE,
    )
    .map_err(setup_error("remount / read-only"))?;
    Ok(proc_mounted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submounts_are_found_below_the_bind_only() {
        let mountinfo = "\
22 1 8:1 / / rw - ext4 /dev/root rw
30 22 0:5 / /new/root/data rw - ext4 /dev/sdb rw
31 30 0:6 / /new/root/data/sub\\040dir rw - tmpfs tmpfs rw
32 30 0:7 / /new/root/data/a/b rw - tmpfs tmpfs rw
33 22 0:8 / /new/root/database rw - tmpfs tmpfs rw
";
        let top = Path::new("/new/root/data");
        let found: Vec<PathBuf> = parse_mount_points(mountinfo)
            .into_iter()
            .filter(|point| point != top && point.starts_with(top))
            .collect();
        assert_eq!(
            found,
            [
                PathBuf::from("/new/root/data/sub dir"),
                PathBuf::from("/new/root/data/a/b")
            ]
        );
    }
}
