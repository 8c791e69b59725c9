//! Token masking: turns one whitespace-delimited token into its *shape*, the token with every
//! variable part replaced by `<*>`.
//!
//! The masker needs no per-dataset parameters: it recognises what varies in logs everywhere
//! (numbers, hex, IPv4/IPv6 with ports, UUIDs, dates and times, durations and sizes, paths and
//! URLs, e-mail addresses, Kubernetes pod-name suffixes). Two tokens with the same shape are the
//! same token to the [`crate::miner::TemplateMiner`], so `took 12ms` and `took 7ms` meet on the
//! fast path without any similarity scoring.
//!
//! It works on bytes and writes into a caller-owned buffer: no allocation per token.

/// The placeholder written for a variable part of a token.
pub const WILDCARD: &[u8] = b"<*>";

/// Bytes that split a token into segments that are masked separately (`uid=0` → `uid=<*>`).
#[inline]
const fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'=' | b':'
            | b','
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b';'
            | b'<'
            | b'>'
            | b'|'
    )
}

/// Punctuation that may wrap a token without being part of what it names.
#[inline]
fn is_wrapper(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b','
            | b';'
            | b'<'
            | b'>'
            | b'.'
            | b':'
            | b'!'
            | b'?'
    )
}

const MONTHS: [&[u8]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];
const WEEKDAYS: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];

const DIGIT: u8 = 1;
const SLASH: u8 = 2;
const AT: u8 = 4;
const COLON: u8 = 8;
const NON_ALPHA: u8 = 16;
const DASH: u8 = 32;
const DOT: u8 = 64;
const DELIM: u8 = 128;

/// What each byte says about a token, OR-ed over the token in one pass.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [NON_ALPHA; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() {
            0
        } else if c.is_ascii_digit() {
            DIGIT | NON_ALPHA
        } else if c == b'/' || c == b'\\' {
            SLASH | NON_ALPHA
        } else if c == b'@' {
            AT | NON_ALPHA
        } else if c == b':' {
            COLON | DELIM | NON_ALPHA
        } else if c == b'-' {
            DASH | NON_ALPHA
        } else if c == b'.' {
            DOT | NON_ALPHA
        } else if is_delimiter(c) {
            DELIM | NON_ALPHA
        } else {
            NON_ALPHA
        };
        b += 1;
    }
    t
};

/// Writes the shape of `token` into `out` and returns whether any part of it was masked.
pub fn mask_token(token: &[u8], out: &mut Vec<u8>) -> bool {
    let mut flags = 0u8;
    for &b in token {
        flags |= BYTE_CLASS[b as usize];
    }
    let has_digit = flags & DIGIT != 0;
    let has_slash = flags & SLASH != 0;
    let has_at = flags & AT != 0;
    let has_colon = flags & COLON != 0;
    let all_alpha = flags & NON_ALPHA == 0;
    // Most tokens are plain words: settle them without trimming or segmenting.
    if all_alpha {
        // Letters only: no pod-name suffix (that needs a dash), so only the short checks.
        let variable = match token.len() {
            0..=2 => false,
            3..=5 => is_word_variable(token),
            _ => is_hex_blob(token),
        };
        out.extend_from_slice(if variable { WILDCARD } else { token });
        return variable;
    }
    let (lead, core, trail) = trim_wrappers(token);
    let plain = !has_digit && !has_slash && !has_at;
    // Whole-token forms that the delimiter split would cut into pieces, masked whole with
    // their wrapping punctuation kept.
    let whole = if plain && (is_word_variable(core) || (flags & DOT != 0 && is_hostname(core))) {
        true
    } else if plain && flags & DELIM == 0 {
        out.extend_from_slice(token);
        return false;
    } else {
        // `cdn-7f.akamaiedge.net`, `ip-10-0-0-1.example.com`: one host, not `cdn-<*>` (a
        // host ends in letters: most dotted numbers are out on their last byte).
        (has_digit
            && flags & DOT != 0
            && !has_slash
            && !has_at
            && core.last().is_some_and(u8::is_ascii_lowercase)
            && is_hostname(core))
            || (has_slash && (is_url(core) || is_path(core)))
            || (has_at && is_email(core))
            || (flags & (COLON | DASH) != 0 && is_mac(core))
            || (has_colon && is_ipv6(core))
    };
    if whole {
        out.extend_from_slice(lead);
        out.extend_from_slice(WILDCARD);
        out.extend_from_slice(trail);
        return true;
    }
    if has_colon && is_ipv6(token) {
        out.extend_from_slice(WILDCARD);
        return true;
    }
    mask_segments(token, out)
}

/// A size unit written apart from its number (`12.3 KB`): part of the value, not of the text.
pub fn is_size_unit(token: &[u8]) -> bool {
    let (_, core, _) = trim_wrappers(token);
    match core {
        [b'B'] => true,
        [p, b'B'] | [p, b'i', b'B'] => b"kKMGTP".contains(p),
        _ => false,
    }
}

/// A unit of size or duration (`KB`, `bytes`, `ms`, `sec`, `hours`), wrapping punctuation
/// allowed (`KB)`, `sec,`). After a number it is part of the value: `3 ms`, `<1 sec`,
/// `512 bytes (0.5 KB)`.
pub fn is_unit_word(token: &[u8]) -> bool {
    // Units are short and start with one of few letters (or are `%`): most words are out
    // after two comparisons.
    if token.len() > 10
        || !matches!(
            token.iter().find(|b| !is_wrapper(**b)),
            Some(
                b'b' | b'B'
                    | b'k'
                    | b'K'
                    | b'm'
                    | b'M'
                    | b'g'
                    | b'G'
                    | b't'
                    | b'T'
                    | b'p'
                    | b'P'
                    | b'n'
                    | b'u'
                    | b's'
                    | b'S'
                    | b'h'
                    | b'H'
                    | b'd'
                    | b'D'
                    | b'%'
            )
        )
    {
        return false;
    }
    let (_, core, _) = trim_wrappers(token);
    if is_size_unit(core) {
        return true;
    }
    const UNITS: [&[u8]; 27] = [
        b"kb", b"byte", b"bytes", b"ns", b"us", b"ms", b"s", b"sec", b"secs", b"second",
        b"seconds", b"m", b"min", b"mins", b"minute", b"minutes", b"h", b"hr", b"hrs", b"hour",
        b"hours", b"d", b"day", b"days", b"%", b"msec", b"msecs",
    ];
    core.len() <= 7 && UNITS.iter().any(|u| core.eq_ignore_ascii_case(u))
}

/// A token shape that is nothing but values and punctuation (`<*>`, `<*>:<*>`, `(<*>`,
/// `[<*>,`): consecutive ones are one value of varying spelling.
pub fn is_value_shape(shape: &[u8]) -> bool {
    // A name may lead the value (`node-<*>`, `(dsl-<*>)`, `HTTP/<*>`): still one value.
    let lead = shape
        .iter()
        .take_while(|b| b.is_ascii_punctuation() && !matches!(b, b'<' | b'='))
        .count();
    let name = shape[lead..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    let shape = if name > 0 {
        &shape[lead + name..]
    } else {
        shape
    };
    let mut any = false;
    let mut i = 0;
    while i < shape.len() {
        if shape[i..].starts_with(WILDCARD) {
            any = true;
            i += WILDCARD.len();
        } else if shape[i].is_ascii_punctuation() && shape[i] != b'=' {
            i += 1;
        } else {
            return false;
        }
    }
    any
}

/// How a word that varies between otherwise equal messages is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordClass {
    /// Lower-case letters only (`root`, `cyrus`, `started`): as often a parameter as not.
    Lower,
    /// Capitals only (`RUNNING`, `GET`, `LEADING`): the spelling of enumeration constants.
    Upper,
    /// A name by its spelling: capitals in it or a trailing digit (`Started`,
    /// `onStandStepChanged`, `eth0`). Such words name states, methods and components, so
    /// they tell events apart.
    Name,
    /// Anything else (`chrome.exe`, `ci-runner`, `a_b`): file and host names, identifiers.
    Other,
}

/// The [`WordClass`] of a token shape (wrapping punctuation ignored).
pub fn word_class(shape: &[u8]) -> WordClass {
    let (_, core, _) = trim_wrappers(shape);
    if core.is_empty() {
        return WordClass::Other;
    }
    if core.iter().all(u8::is_ascii_lowercase) {
        return WordClass::Lower;
    }
    let letters = core.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let name_like = core.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && letters > 0
        && core[0].is_ascii_alphabetic();
    if name_like && letters >= 2 && !core.iter().any(u8::is_ascii_lowercase) {
        return WordClass::Upper;
    }
    if name_like
        && (core.iter().any(u8::is_ascii_uppercase) || core[core.len() - 1].is_ascii_digit())
    {
        WordClass::Name
    } else {
        WordClass::Other
    }
}

/// Masks each delimiter-separated segment of `token` on its own.
fn mask_segments(token: &[u8], out: &mut Vec<u8>) -> bool {
    let mut masked = false;
    let mut start = 0;
    let mut i = 0;
    while i <= token.len() {
        let at_end = i == token.len();
        if at_end || is_delimiter(token[i]) {
            let seg = &token[start..i];
            if !seg.is_empty() {
                masked |= mask_segment(seg, out);
            }
            if !at_end {
                out.push(token[i]);
            }
            start = i + 1;
        }
        i += 1;
    }
    masked
}

/// Masks one segment: a run of bytes with no delimiter in it.
fn mask_segment(seg: &[u8], out: &mut Vec<u8>) -> bool {
    let has_digit = seg.iter().any(u8::is_ascii_digit);
    if !has_digit {
        if is_hex_blob(seg)
            || is_word_variable(seg)
            || is_path(seg)
            || (seg.contains(&b'.') && is_hostname(seg))
        {
            out.extend_from_slice(WILDCARD);
            return true;
        }
        out.extend_from_slice(seg);
        return false;
    }
    // A number behind a sigil keeps the sigil (`*64`, `#3`): a note or an ordinal, not any
    // number.
    if let [sigil @ (b'*' | b'#'), digits @ ..] = seg
        && !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
    {
        out.push(*sigil);
        out.extend_from_slice(WILDCARD);
        return true;
    }
    // An identifier with digits inside it (`jk2_init`, `EXT4-fs`, `log4j`) is a name: it starts
    // and ends with a letter and holds no hash-like run of hex.
    if seg.len() >= 4
        && seg[0].is_ascii_alphabetic()
        && seg[seg.len() - 1].is_ascii_alphabetic()
        && seg
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && !has_hash_run(seg)
        && !is_pod_name(seg)
    {
        out.extend_from_slice(seg);
        return false;
    }
    // A name with a one-digit suffix is a name (`ssh2`, `eth0`, `md5`), not a value.
    if seg.len() >= 3
        && seg[seg.len() - 1].is_ascii_digit()
        && seg[..seg.len() - 1].iter().all(u8::is_ascii_alphabetic)
    {
        out.extend_from_slice(seg);
        return false;
    }
    // Keep a purely alphabetic name before a separator: `core.1234` → `core.<*>`,
    // `node-17` → `node-<*>`, `blk_-42` → `blk_<*>`.
    let name_len = seg.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    if name_len >= 2
        && name_len + 1 < seg.len()
        && matches!(seg[name_len], b'.' | b'-')
        && !seg[..name_len].iter().all(u8::is_ascii_hexdigit)
    {
        out.extend_from_slice(&seg[..=name_len]);
        out.extend_from_slice(WILDCARD);
        return true;
    }
    out.extend_from_slice(WILDCARD);
    true
}

pub(crate) fn trim_wrappers(token: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let start = token.iter().take_while(|&&b| is_wrapper(b)).count();
    let rest = &token[start..];
    let end = rest.len() - rest.iter().rev().take_while(|&&b| is_wrapper(b)).count();
    (&token[..start], &rest[..end], &rest[end..])
}

/// Top-level domains common enough in logs to call `name.tld` a host.
const TLDS: [&[u8]; 27] = [
    b"com",
    b"net",
    b"org",
    b"edu",
    b"gov",
    b"mil",
    b"int",
    b"io",
    b"us",
    b"uk",
    b"de",
    b"fr",
    b"jp",
    b"cn",
    b"ru",
    b"nl",
    b"br",
    b"au",
    b"ca",
    b"es",
    b"se",
    b"ch",
    b"local",
    b"internal",
    b"lan",
    b"arpa",
    b"info",
];

/// First labels of dotted names that are code, not hosts (`com.android.phone`, `java.util`).
const CODE_ROOTS: [&[u8]; 12] = [
    b"com", b"org", b"net", b"io", b"edu", b"gov", b"android", b"java", b"javax", b"sun", b"jdk",
    b"kotlin",
];

/// A lowercase dotted host name: `db1.prod.example.com`, `csnsu.nsuok.edu`, `proxy.cuhk.edu.hk`.
/// Two labels need a well-known top-level domain (`example.com`, not `settings.py`); reversed
/// names (`com.android.phone`) and names with capitals (`java.lang.String`) are code.
fn is_hostname(seg: &[u8]) -> bool {
    if !seg
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_'))
    {
        return false;
    }
    let labels = seg.split(|&b| b == b'.');
    let mut count = 0;
    let mut first: &[u8] = &[];
    let mut last: &[u8] = &[];
    for label in labels {
        // A service label may start with `_` (`_ldap._tcp.example.org`), no other may hold it.
        if label.is_empty() || label.iter().skip(1).any(|&b| b == b'_') {
            return false;
        }
        if count == 0 {
            first = label;
        }
        last = label;
        count += 1;
    }
    if count < 2 || !(2..=6).contains(&last.len()) || !last.iter().all(u8::is_ascii_lowercase) {
        return false;
    }
    if count == 2 {
        return TLDS.contains(&last);
    }
    !CODE_ROOTS.contains(&first)
}

/// Six or more hex characters in a row, digits among them: a hash or id (`7d9f8c6b5`).
fn has_hash_run(seg: &[u8]) -> bool {
    let (mut run, mut digit) = (0, false);
    for &b in seg {
        if b.is_ascii_hexdigit() {
            run += 1;
            digit |= b.is_ascii_digit();
            if run >= 6 && digit {
                return true;
            }
        } else {
            run = 0;
            digit = false;
        }
    }
    false
}

/// A long run of hex digits without a digit in it (`ffffffff`); shorter ones are English words.
fn is_hex_blob(seg: &[u8]) -> bool {
    let s = seg.strip_prefix(b"0x").unwrap_or(seg);
    s.len() >= 8 && s.iter().all(u8::is_ascii_hexdigit)
}

/// Words that are values although they carry no digit: booleans and null, month and weekday
/// names, and the random suffixes Kubernetes gives to pod names.
fn is_word_variable(core: &[u8]) -> bool {
    match core.len() {
        4 if core.eq_ignore_ascii_case(b"true") || core.eq_ignore_ascii_case(b"null") => true,
        5 if core.eq_ignore_ascii_case(b"false") => true,
        3 => {
            let lower = [
                core[0].to_ascii_lowercase(),
                core[1].to_ascii_lowercase(),
                core[2].to_ascii_lowercase(),
            ];
            // Only capitalised forms: "may", "sat" and "sun" are ordinary words in lower case.
            core[0].is_ascii_uppercase()
                && (MONTHS.contains(&&lower[..]) || WEEKDAYS.contains(&&lower[..]))
        }
        0..=2 => false,
        _ => is_hex_blob(core) || is_pod_name(core),
    }
}

/// Kubernetes names generated from a workload: `api-7d9f8c6b5-x2kq9` (Deployment) or
/// `web-x2kq9` (DaemonSet, Job). The suffix alphabet has no vowels, so plain words rarely match.
fn is_pod_name(core: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let Some(dash) = core.iter().rposition(|&b| b == b'-') else {
        return false;
    };
    let suffix = &core[dash + 1..];
    if suffix.len() != 5 || dash == 0 || !suffix.iter().all(|b| ALPHABET.contains(b)) {
        return false;
    }
    // A suffix of consonants only can still be a word ("-https"); ask for a digit there or a
    // ReplicaSet hash before it.
    if suffix.iter().any(u8::is_ascii_digit) {
        return true;
    }
    let head = &core[..dash];
    match head.iter().rposition(|&b| b == b'-') {
        Some(d) => {
            let hash = &head[d + 1..];
            (6..=10).contains(&hash.len())
                && hash.iter().all(|b| ALPHABET.contains(b))
                && hash.iter().any(u8::is_ascii_digit)
        }
        None => false,
    }
}

fn is_url(core: &[u8]) -> bool {
    // Tokens are short: a plain scan beats building a substring searcher per call.
    core.windows(3).position(|w| w == b"://").is_some_and(|i| {
        i > 0
            && core[..i]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'-')
    })
}

/// Absolute, relative (`./x`, `~/x`) and Windows (`C:\x`) paths; `I/O` and `n/a` are not paths.
fn is_path(core: &[u8]) -> bool {
    match core {
        [b'/'] => true,
        // `/10.0.0.1:8080` is an address written by Java's InetSocketAddress, not a path.
        [b'/', rest @ ..] => {
            rest[0] != b'/'
                && !rest
                    .iter()
                    .all(|b| b.is_ascii_digit() || *b == b'.' || *b == b':')
        }
        [b'.', b'/', ..] | [b'.', b'.', b'/', ..] | [b'~', b'/', ..] => true,
        [d, b':', b'\\', ..] => d.is_ascii_alphabetic(),
        [b'\\', b'\\', ..] => true,
        _ => false,
    }
}

fn is_email(core: &[u8]) -> bool {
    let Some(at) = core.iter().position(|&b| b == b'@') else {
        return false;
    };
    let (user, domain) = (&core[..at], &core[at + 1..]);
    !user.is_empty()
        && user
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(b))
        && domain.contains(&b'.')
        && domain
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(b))
}

/// MAC addresses and other byte strings (`5c:50:15:4c:18:13`, `AB-CD-EF-01-02-03`, key
/// fingerprints): five or more two-digit hex groups.
fn is_mac(core: &[u8]) -> bool {
    let sep = match core.get(2) {
        Some(&c @ (b':' | b'-')) => c,
        _ => return false,
    };
    let groups = core.split(|&b| b == sep);
    let mut n = 0;
    for g in groups {
        if g.len() != 2 || !g.iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        n += 1;
    }
    n >= 5
}

/// IPv6, optionally bracketed with a port (`[fe80::1]:8080`); needs two colons and hex only.
fn is_ipv6(core: &[u8]) -> bool {
    let addr = match core.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => &rest[..end],
            None => rest,
        },
        None => core,
    };
    // Cheapest test first: most tokens with a colon have other characters in them.
    if addr.len() < 3
        || !addr
            .iter()
            .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
    {
        return false;
    }
    let colons = addr.iter().filter(|&&b| b == b':').count();
    // `::` or a full eight-group form; `10.0.0.1:80:` and `03:04:05` are not IPv6.
    (addr.windows(2).any(|w| w == b"::") || colons >= 7) && addr.iter().any(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(token: &str) -> String {
        let mut out = Vec::new();
        mask_token(token.as_bytes(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn words_stay() {
        for w in [
            "error",
            "Connection",
            "I/O",
            "n/a",
            "[preauth]",
            "may",
            "added",
            "logname=",
        ] {
            assert_eq!(shape(w), w, "{w}");
        }
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(shape("42"), "<*>");
        assert_eq!(shape("-3.5"), "<*>");
        assert_eq!(shape("12ms"), "<*>");
        assert_eq!(shape("1.5GiB,"), "<*>,");
        assert_eq!(shape("uid=0"), "uid=<*>");
        assert_eq!(shape("(uid=0)"), "(uid=<*>)");
        assert_eq!(shape("core.1234"), "core.<*>");
        assert_eq!(shape("node-17"), "node-<*>");
        // A number behind a sigil keeps it: a note (`*64`, a 64-bit process) or an ordinal.
        assert_eq!(shape("*64"), "*<*>");
        assert_eq!(shape("#3"), "#<*>");
        assert_eq!(shape("#3:"), "#<*>:");
    }

    #[test]
    fn host_names_with_digits_and_service_labels() {
        // One host, not a name and a cut value.
        assert_eq!(shape("cdn-7f.akamaiedge.net"), "<*>");
        assert_eq!(shape("(ip-10-0-0-1.example.com):"), "(<*>):");
        assert_eq!(shape("_ldap._tcp.dc._msdcs.corp.example.org"), "<*>");
        // Still not hosts: a file with a version, an identifier with underscores inside.
        assert_ne!(shape("libc.so.6"), "<*>");
        assert_ne!(shape("pam_unix.so"), "<*>");
    }

    #[test]
    fn addresses() {
        assert_eq!(shape("10.0.0.1"), "<*>");
        assert_eq!(shape("10.0.0.1:8080"), "<*>:<*>");
        assert_eq!(shape("/10.0.0.1:8080"), "<*>:<*>");
        assert_eq!(shape("jk2_init()"), "jk2_init()");
        assert_eq!(shape("EXT4-fs"), "EXT4-fs");
        assert_eq!(shape("web-7d9f8c6b5-qwxzk"), "web-<*>");
        assert_eq!(shape("a3f9c2b1e"), "<*>");
        assert_eq!(shape("rhost=218.188.2.4"), "rhost=<*>");
        assert_eq!(shape("fe80::1ff:fe23:4567:890a"), "<*>");
        assert_eq!(shape("[2001:db8::1]:443"), "<*>");
        assert_eq!(shape("ops@example.com"), "<*>");
        assert_eq!(shape("5c:50:15:4c:18:13"), "<*>");
        assert_eq!(shape("ab:cd:ef:ab:cd:ef,"), "<*>,");
    }

    #[test]
    fn ids_hex_and_uuids() {
        assert_eq!(shape("0x7f3a"), "<*>");
        assert_eq!(shape("ffffffff"), "<*>");
        assert_eq!(shape("mask=ffffffff"), "mask=<*>");
        assert_eq!(shape("123e4567-e89b-12d3-a456-426614174000"), "<*>");
        assert_eq!(shape("blk_-1608999687919862906"), "<*>");
    }

    #[test]
    fn dates_times_paths_urls() {
        assert_eq!(shape("2024-01-02T03:04:05Z"), "<*>:<*>:<*>");
        assert_eq!(shape("Jul"), "<*>");
        assert_eq!(shape("Sun"), "<*>");
        assert_eq!(shape("/var/log/syslog"), "<*>");
        assert_eq!(shape("'/etc/x.conf'"), "'<*>'");
        assert_eq!(shape("https://example.com/a?b=c"), "<*>");
        assert_eq!(shape("hdfs://host:9000/x"), "<*>");
        assert_eq!(shape("C:\\Windows\\x.dll"), "<*>");
    }

    #[test]
    fn host_names() {
        assert_eq!(shape("csnsu.nsuok.edu"), "<*>");
        assert_eq!(shape("(host.example.com)"), "(<*>)");
        assert_eq!(shape("rhost=troi.bluesky-technologies.com"), "rhost=<*>");
        assert_eq!(shape("com.android.phone"), "com.android.phone");
        assert_eq!(shape("settings.py"), "settings.py");
        assert_eq!(shape("proxy.cse.cuhk.edu.hk:5070"), "<*>:<*>");
        assert_eq!(
            shape("java.lang.IllegalStateException:"),
            "java.lang.IllegalStateException:"
        );
        assert_eq!(shape("kube-dns.kube-system.svc.cluster.local"), "<*>");
    }

    #[test]
    fn booleans_and_units() {
        assert_eq!(shape("overlap:false"), "overlap:<*>");
        assert_eq!(shape("ws=null,"), "ws=<*>,");
        assert!(is_size_unit(b"KB,"));
        assert!(is_size_unit(b"MiB"));
        assert!(!is_size_unit(b"BB"));
    }

    #[test]
    fn pod_names() {
        assert_eq!(shape("api-7d9f8c6b5-x2kq9"), "api-<*>");
        assert_eq!(shape("web-x2kq9"), "web-<*>");
        assert_eq!(shape("web-bcdfg"), "web-bcdfg");
        assert_eq!(shape("api-bcd7fgh2k-bcdfg"), "api-<*>");
        assert_eq!(shape("pre-https"), "pre-https");
        assert_eq!(shape("kube-proxy"), "kube-proxy");
    }
}
