//! Required literals of a regex: a set of strings such that every match contains at least one
//! of them. The rule engine feeds them to one Aho-Corasick automaton, so a rule's regex runs
//! only on messages that contain one of its literals.
//!
//! The extraction walks the regex's syntax tree: a concatenation contributes its longest run
//! of literal characters, an alternation the union of its branches, a group or a repetition of
//! at least one its inner expression. Literals are lowercased and matched ASCII
//! case-insensitively, so `(?i)` patterns work. A regex whose literals would be shorter than
//! three bytes, or that has none (`\d+ errors?` has " error"), runs on every message instead.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Shortest literal worth prefiltering on.
const MIN_LEN: usize = 3;

/// The required literals of `pattern`, lowercased, or `None` when it has no useful set.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let set = required(&hir)?;
    (set.iter().all(|l| l.len() >= MIN_LEN) && set.len() <= 500).then_some(set)
}

/// The single ASCII-lowercased byte a case-folded class stands for (`[kK]` → `k`).
///
/// Unicode folding adds look-alikes (the Kelvin sign for `k`, long s for `s`); a message that
/// spells a keyword with those is not prefiltered in. That is the one deliberate blind spot.
fn class_letter(class: &Class) -> Option<u8> {
    let mut letter = None;
    let mut consider = |c: u32| -> bool {
        let Some(ch) = char::from_u32(c) else {
            return false;
        };
        if !ch.is_ascii() {
            return true;
        }
        let lower = (ch as u8).to_ascii_lowercase();
        match letter {
            None => {
                letter = Some(lower);
                true
            }
            Some(l) => l == lower,
        }
    };
    match class {
        Class::Unicode(u) => {
            for r in u.iter() {
                if u32::from(r.end()) - u32::from(r.start()) > 2 {
                    return None;
                }
                for c in u32::from(r.start())..=u32::from(r.end()) {
                    if !consider(c) {
                        return None;
                    }
                }
            }
        }
        Class::Bytes(b) => {
            for r in b.iter() {
                for c in r.start()..=r.end() {
                    if !consider(u32::from(c)) {
                        return None;
                    }
                }
            }
        }
    }
    letter
}

/// A piece of literal text the node always matches exactly, if it is one.
fn as_text(h: &Hir) -> Option<Vec<u8>> {
    match h.kind() {
        HirKind::Literal(l) => Some(l.0.iter().map(u8::to_ascii_lowercase).collect()),
        HirKind::Class(c) => class_letter(c).map(|b| vec![b]),
        HirKind::Capture(c) => as_text(&c.sub),
        HirKind::Concat(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(as_text(i)?);
            }
            Some(out)
        }
        _ => None,
    }
}

fn required(h: &Hir) -> Option<Vec<Vec<u8>>> {
    if let Some(text) = as_text(h) {
        return (!text.is_empty()).then(|| vec![text]);
    }
    match h.kind() {
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(required(a)?);
            }
            Some(all)
        }
        HirKind::Concat(items) => {
            // Candidates: each run of consecutive literal text, and each item's own set.
            let mut best: Option<Vec<Vec<u8>>> = None;
            let mut consider = |set: Vec<Vec<u8>>| {
                let score = set.iter().map(Vec::len).min().unwrap_or(0);
                let current = best
                    .as_ref()
                    .map_or(0, |b| b.iter().map(Vec::len).min().unwrap_or(0));
                if score > current {
                    best = Some(set);
                }
            };
            let mut run: Vec<u8> = Vec::new();
            for item in items {
                match as_text(item) {
                    Some(t) => run.extend(t),
                    None => {
                        if !run.is_empty() {
                            consider(vec![std::mem::take(&mut run)]);
                        }
                        if let Some(set) = required(item) {
                            consider(set);
                        }
                    }
                }
            }
            if !run.is_empty() {
                consider(vec![run]);
            }
            best
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|v| {
            v.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn extracts() {
        assert_eq!(
            lits("connection refused"),
            Some(vec!["connection refused".into()])
        );
        assert_eq!(
            lits("(?i)connection refused|ECONNREFUSED"),
            Some(vec!["connection refused".into(), "econnrefused".into()])
        );
        assert_eq!(
            lits(r"(?i)killed process \d+"),
            Some(vec!["killed process ".into()])
        );
        assert_eq!(lits(r"(?i)disk (is )?full"), Some(vec!["disk ".into()]));
        assert_eq!(lits(r"\d+"), None);
        assert_eq!(lits(r"ab|\w+"), None);
        assert_eq!(lits(r"x|yz"), None, "too short to help");
    }

    #[test]
    fn never_misses_a_match() {
        let cases = [
            (
                r"(?i)\btimed? ?out\b|\btimeout\b",
                "Request TIMED OUT after 3s",
            ),
            (
                r"(?i)(liveness|readiness) probe failed",
                "Readiness probe failed: 503",
            ),
            (
                r"Back-off restarting|CrashLoopBackOff",
                "pod is in CrashLoopBackOff",
            ),
        ];
        for (p, text) in cases {
            let set = required_literals(p).unwrap_or_default();
            let lower = text.to_ascii_lowercase();
            assert!(
                set.is_empty()
                    || set
                        .iter()
                        .any(|l| lower.contains(&*String::from_utf8_lossy(l))),
                "{p} on {text}: {set:?}"
            );
        }
    }
}
