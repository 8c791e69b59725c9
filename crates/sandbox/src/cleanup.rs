//! Removing what a run leaves on disk: a control directory the command may have made hard
//! to remove (directories without permissions, nested without end), and, once per scratch
//! root and process, the control directories of callers that died without removing theirs.
//! Nothing here follows a symbolic link.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FchmodatFlags, Mode, fchmod, fchmodat, fstat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// The prefix of every control directory's name: `opsloop-sandbox-<pid>-<n>-<nanos>`.
pub(crate) const CONTROL_PREFIX: &str = "opsloop-sandbox-";

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Removes a tree the command may have made hard to remove; true when it is gone.
pub(crate) fn remove_tree(path: &Path) -> bool {
    if fs::remove_dir_all(path).is_ok() || fs::symlink_metadata(path).is_err() {
        return true;
    }
    force_remove(path);
    fs::symlink_metadata(path).is_err()
}

/// A directory's identity, to check that `..` leads back where the walk came from.
fn identity(fd: &OwnedFd) -> Option<(u64, u64)> {
    fstat(fd).ok().map(|s| (s.st_dev, s.st_ino))
}

/// The first subdirectory of `dir` after every other entry was unlinked, if any; `None`
/// when `dir` cannot be listed. Listed through `/proc/self/fd`, so the listing is of the
/// directory the descriptor holds whatever happened to its path.
fn clear_files(dir: &OwnedFd) -> Option<Option<OsString>> {
    let listing = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    for entry in fs::read_dir(listing).ok()? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        // The entry's type as stored, or lstat: never a link's target.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            return Some(Some(name));
        }
        let _ = unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    Some(None)
}

/// Removes `path` depth first, however deep, giving the owner back the rights it needs on
/// each directory on the way. Holds one descriptor at a time: going back up opens `..`
/// and checks it is the directory the walk came from (a tree moved meanwhile ends the
/// walk), so no rename can lead it outside.
fn force_remove(path: &Path) {
    let (Some(parent), Some(top_name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let Ok(parent_fd) = nix::fcntl::open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    // On a symbolic link this fails (EOPNOTSUPP) rather than change its target.
    let _ = fchmodat(
        &parent_fd,
        top_name,
        Mode::S_IRWXU,
        FchmodatFlags::NoFollowSymlink,
    );
    let Ok(mut current) = openat(&parent_fd, top_name, DIR_FLAGS, Mode::empty()) else {
        return;
    };
    // The names of the directories walked into, each with its parent's identity.
    let mut ancestors: Vec<(OsString, (u64, u64))> = Vec::new();
    loop {
        let _ = fchmod(current.as_fd(), Mode::S_IRWXU);
        let Some(next) = clear_files(&current) else {
            return;
        };
        match next {
            Some(name) => {
                let Some(here) = identity(&current) else {
                    return;
                };
                let _ = fchmodat(
                    &current,
                    name.as_os_str(),
                    Mode::S_IRWXU,
                    FchmodatFlags::NoFollowSymlink,
                );
                let Ok(sub) = openat(&current, name.as_os_str(), DIR_FLAGS, Mode::empty()) else {
                    return;
                };
                ancestors.push((name, here));
                current = sub;
            }
            None => {
                let Some((name, parent_id)) = ancestors.pop() else {
                    drop(current);
                    let _ = unlinkat(&parent_fd, top_name, UnlinkatFlags::RemoveDir);
                    return;
                };
                let Ok(up) = openat(&current, "..", DIR_FLAGS, Mode::empty()) else {
                    return;
                };
                if identity(&up) != Some(parent_id) {
                    return;
                }
                drop(current);
                if unlinkat(&up, name.as_os_str(), UnlinkatFlags::RemoveDir).is_err() {
                    return;
                }
                current = up;
            }
        }
    }
}

/// The pid in a control directory's name, when the name has exactly the form this crate
/// gives it.
fn owner_pid(name: &OsStr) -> Option<i32> {
    let rest = name.to_str()?.strip_prefix(CONTROL_PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?;
    let counter = parts.next()?;
    let nanos = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.next().is_some() || !digits(pid) || !digits(counter) || !hex(nanos) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process `pid` exists (one this process may not signal exists too).
fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH)
}

/// Removes, once per `parent` and process, the control directories in `parent` whose
/// caller is gone (killed before it could remove its own): only directories (never a
/// link) named exactly as this crate names them, whose pid no longer runs, owned by this
/// process's user, or for a root caller by anyone (root hands its directories to the
/// command's user). Returns how many were removed.
pub(crate) fn sweep_once(parent: &Path) -> usize {
    static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    {
        let Ok(mut swept) = SWEPT.lock() else {
            return 0;
        };
        let swept = swept.get_or_insert_with(HashSet::new);
        // Bounded: a process uses a handful of scratch roots at most; past that, no cache.
        if swept.contains(parent) || (swept.len() < 64 && !swept.insert(parent.to_path_buf())) {
            return 0;
        }
    }
    sweep(parent)
}

/// [`sweep_once`] without the once.
pub(crate) fn sweep(parent: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid();
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = owner_pid(&entry.file_name()) else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        // DirEntry::metadata does not follow links.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || !(me.is_root() || meta.uid() == me.as_raw()) {
            continue;
        }
        if remove_tree(&entry.path()) {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mode, test_dir};
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn removal_never_follows_links() {
        let dir = test_dir("links");
        let outside = dir.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("locked/inner")).unwrap();
        symlink(&outside, tree.join("link")).unwrap();
        symlink(&outside, tree.join("locked/link")).unwrap();
        fs::set_permissions(tree.join("locked/inner"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(tree.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        // The top itself a link: its target is left alone.
        let top_link = dir.join("top-link");
        symlink(&outside, &top_link).unwrap();
        force_remove(&top_link);
        assert!(remove_tree(&tree));
        assert!(!tree.exists());
        assert_eq!(mode(&outside), 0o755);
        assert!(outside.join("keep").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_deep_tree_without_permissions_is_removed() {
        let dir = test_dir("deep");
        let tree = dir.join("tree");
        let mut path = tree.clone();
        let mut chain = Vec::new();
        for level in 0..300 {
            path.push(format!("d{level}"));
            chain.push(path.clone());
        }
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("file"), "x").unwrap();
        // Locked from the bottom up, as a command could leave it.
        for dir in chain.iter().rev() {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o000)).unwrap();
        }
        force_remove(&tree);
        assert!(!tree.exists(), "the tree is gone");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn control_names_are_recognised_exactly() {
        assert_eq!(
            owner_pid(OsStr::new("opsloop-sandbox-123-4-0abc00ff")),
            Some(123)
        );
        for other in [
            "opsloop-sandbox-unit-deep-1",
            "opsloop-sandbox-123-4",
            "opsloop-sandbox-123-4-0abc-x",
            "opsloop-sandbox--4-0a",
            "opsloop-it-sandbox-1",
        ] {
            assert_eq!(owner_pid(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn the_sweep_removes_only_dead_callers_directories() {
        let parent = test_dir("sweep");
        // A pid that cannot run: above the kernel's maximum.
        let dead = parent.join(format!("{CONTROL_PREFIX}2147483647-0-00000000"));
        fs::create_dir_all(dead.join("scratch/locked")).unwrap();
        fs::set_permissions(
            dead.join("scratch/locked"),
            fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        let living = parent.join(format!("{CONTROL_PREFIX}{}-0-00000000", std::process::id()));
        fs::create_dir(&living).unwrap();
        let other = parent.join("opsloop-sandbox-keep-me");
        fs::create_dir(&other).unwrap();
        let target = parent.join("target");
        fs::create_dir(&target).unwrap();
        let link = parent.join(format!("{CONTROL_PREFIX}2147483646-0-00000000"));
        symlink(&target, &link).unwrap();
        assert_eq!(sweep(&parent), 1);
        assert!(!dead.exists());
        assert!(living.exists() && other.exists() && target.exists());
        assert!(
            fs::symlink_metadata(&link).is_ok(),
            "a link is never removed"
        );
        assert_eq!(sweep_once(&parent), 0);
        fs::remove_dir_all(parent).unwrap();
    }
}
