//! Finding and reading the inputs of a run: files as given, directories searched
//! recursively for `*.yaml`, `*.yml` and `*.json`, and standard input (`-`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Extensions a directory search picks up.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Bytes one input may have: far above any manifest bundle, and bounded.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// One input of a run.
#[derive(Debug)]
pub struct Source {
    /// The path as the user gave it (joined with the relative path inside a directory);
    /// `-` for standard input.
    pub name: String,
    /// The bytes, or why they could not be read.
    pub bytes: Result<Vec<u8>, String>,
    /// The objects were read without their values (a cluster's ConfigMaps and Secrets,
    /// listed as metadata only): checks that look inside them (an env reference's key)
    /// must not take a missing value for a missing key.
    pub names_only: bool,
}

/// An input found but not read yet, or one already settled.
enum Slot {
    Ready(Source),
    File(String, PathBuf),
}

/// Reads every input named by `paths`; `stdin` is read for `-`. Unreadable paths become
/// sources with an error, so the rest is still audited. Files are read on all cores.
pub fn collect(paths: &[String], stdin: &mut dyn Read) -> Vec<Source> {
    let mut slots = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        if path == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            let mut bytes = Vec::new();
            let result = stdin
                .take(MAX_INPUT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading standard input: {e}"))
                .and_then(|_| within_limit(bytes));
            slots.push(Slot::Ready(Source {
                name: "-".to_string(),
                bytes: result,
                names_only: false,
            }));
            continue;
        }
        let as_path = Path::new(path);
        match std::fs::metadata(as_path) {
            Ok(meta) if meta.is_dir() => walk(as_path, path, &mut slots),
            Ok(_) => slots.push(Slot::File(path.clone(), as_path.to_path_buf())),
            Err(e) => slots.push(Slot::Ready(Source {
                name: path.clone(),
                bytes: Err(e.to_string()),
                names_only: false,
            })),
        }
    }
    read_all(slots)
}

/// Reads the pending files with one thread per core, keeping the order.
fn read_all(slots: Vec<Slot>) -> Vec<Source> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(slots.len().max(1));
    let slots: Vec<Mutex<Option<Slot>>> = slots.into_iter().map(|s| Mutex::new(Some(s))).collect();
    let next = AtomicUsize::new(0);
    let read: Vec<Mutex<Option<Source>>> = slots.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(slot), Some(target)) = (slots.get(index), read.get(index)) else {
                        break;
                    };
                    let slot = slot.lock().ok().and_then(|mut s| s.take());
                    let source = match slot {
                        Some(Slot::Ready(source)) => source,
                        Some(Slot::File(name, path)) => read_file(&path, name),
                        None => continue,
                    };
                    if let Ok(mut target) = target.lock() {
                        *target = Some(source);
                    }
                }
            });
        }
    });
    read.into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

fn within_limit(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        Err(format!("larger than {} MiB", MAX_INPUT_BYTES >> 20))
    } else {
        Ok(bytes)
    }
}

fn read_file(path: &Path, name: String) -> Source {
    let bytes = std::fs::File::open(path)
        .and_then(|file| {
            let mut bytes = Vec::new();
            file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        })
        .map_err(|e| e.to_string())
        .and_then(within_limit);
    Source {
        name,
        bytes,
        names_only: false,
    }
}

/// Adds the manifests under `dir` in name order (stable output). Hidden directories
/// (`.git`, …) are skipped, and symlinked directories are not followed (no loops).
fn walk(dir: &Path, name: &str, sources: &mut Vec<Slot>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            sources.push(Slot::Ready(Source {
                name: name.to_string(),
                bytes: Err(e.to_string()),
                names_only: false,
            }));
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let child_name = Path::new(name)
            .join(&*file_name)
            .to_string_lossy()
            .into_owned();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if file_type.is_dir() {
            if !file_name.starts_with('.') {
                walk(&path, &child_name, sources);
            }
        } else {
            let wanted = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            let is_file = file_type.is_file() || path.is_file();
            if wanted && is_file {
                sources.push(Slot::File(child_name, path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_searched_recursively_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("b/c/z.yml"), "kind: Pod").unwrap();
        std::fs::write(root.join("a.json"), "{}").unwrap();
        std::fs::write(root.join("notes.txt"), "x").unwrap();
        std::fs::write(root.join(".git/x.yaml"), "x").unwrap();
        let name = root.to_string_lossy().into_owned();
        let sources = collect(std::slice::from_ref(&name), &mut std::io::empty());
        let names: Vec<String> = sources
            .iter()
            .map(|s| s.name.trim_start_matches(&name).to_string())
            .collect();
        assert_eq!(names, vec!["/a.json", "/b/c/z.yml"]);
    }

    #[test]
    fn missing_path_is_an_error_source_and_stdin_is_read_once() {
        let mut stdin: &[u8] = b"kind: Pod";
        let sources = collect(
            &[
                "no-such-dir/x.yaml".to_string(),
                "-".to_string(),
                "-".to_string(),
            ],
            &mut stdin,
        );
        assert_eq!(sources.len(), 2);
        assert!(sources[0].bytes.is_err());
        assert_eq!(sources[1].name, "-");
        assert_eq!(sources[1].bytes.as_deref().unwrap(), b"kind: Pod");
    }
}
