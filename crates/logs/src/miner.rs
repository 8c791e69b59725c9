//! Online template mining: [`TemplateMiner`] assigns every message to a [`Template`].
//!
//! The miner is of the Drain family, with two changes that remove Drain's per-dataset knobs:
//!
//! 1. **Shapes, not raw tokens.** Every token is first masked ([`crate::mask`]) so that variable
//!    parts are `<*>` *before* comparison. Two messages with the same sequence of shapes (the
//!    *skeleton*) always share a template, so the common case is one hash lookup: the skeleton
//!    cache. Only a new skeleton is scored against the templates of its length.
//! 2. **Scoring that knows what a wildcard is.** A position that is already `<*>` in a template
//!    matches anything; what decides a merge is how many *constant* words disagree, weighed by
//!    where they are (the first word names the event far more often than the last).
//!
//! Templates of different lengths are compared in one case only: a note some messages of
//! an event carry and others lack (`chrome.exe *64 - ...`, [`is_annotation`]) leaves two
//! templates one token apart, and those are folded into the shorter.
//!
//! Template ids are the hash of the first skeleton a template was created from, so reruns and
//! other hosts that see the same messages get the same ids, and a template keeps its id while it
//! generalises. Memory is bounded: at most `max_templates` live templates holding at most
//! `max_template_bytes` between them (past either, the least recently seen is evicted), each
//! with evidence for at most [`MAX_EVIDENCE_POSITIONS`] positions of [`MAX_SLOT_VALUES`]
//! values, a skeleton cache cleared when it outgrows its cap, an alias table that forgets its
//! oldest aliases first, and a two-generation set of words seen as parameters.
//!
//! A template holds at most [`MAX_TOKENS`] + 1 tokens, so a template's size does not grow with
//! its message: the first [`MAX_TOKENS`] tokens of a message form its template and whatever
//! follows them is one trailing `<*>`. Two messages that differ only after the first
//! [`MAX_TOKENS`] tokens therefore share a template (what tells events apart is at their start),
//! and a message of exactly [`MAX_TOKENS`] tokens is told from a longer one by that `<*>`.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

use crate::mask::{
    WILDCARD, WordClass, is_size_unit, is_unit_word, is_value_shape, mask_token, trim_wrappers,
    word_class,
};

/// Distinct values a lower-case word position must show before it counts as a variable. Two
/// alternatives are usually two events (`startup`/`shutdown`); parameters show many more.
pub const VARIANTS: usize = 4;

/// Distinct values a slot of quoted lower-case words (`user: 'app'`) needs: quoting marks a
/// value, so two, as for other quoted values, but only while the values are rare (a quoted
/// vocabulary that repeats, `"readiness"` / `"liveness"`, stays apart).
pub const QUOTED_WORD_VARIANTS: usize = 2;

/// Distinct rare values a slot of lower-case compounds of letters only needs
/// (`billing-consumers` / `search-indexer` / `fraud-check`): a vocabulary of two states
/// (`read-only` / `read-write`) stays apart.
pub const COMPOUND_VARIANTS: usize = 3;

/// Distinct values needed where the words are names by their spelling ([`WordClass::Name`]:
/// `RUNNING`/`DONE`, `GET`/`POST`, `Started`/`Paused`): such slots are closed vocabularies that
/// name different events, so only a vocabulary too large for one is a variable.
pub const NAME_VARIANTS: usize = 6;

/// Distinct values needed where the words are capitals ([`WordClass::Upper`]: `GET`/`POST`,
/// `QUEUED`/`RUNNING`), the spelling of enumeration constants; seen once each, too.
pub const UPPER_VARIANTS: usize = 12;

/// Distinct values remembered per position of a template: more than any threshold needs, so
/// a full list means "many" (and a check against it stays cheap).
const MAX_SLOT_VALUES: usize = 32;

/// Positions of a template with evidence kept at once (the oldest is dropped past this).
const MAX_EVIDENCE_POSITIONS: usize = 16;

/// Tokens of one run of values (`512 bytes (0.5 KB)`, `1m 3s`) that keep their shape in the
/// slot's text; the rest of a longer run is still part of the one variable.
const MAX_RUN: usize = 8;

/// Word values remembered as seen in variable slots, at most (the set is cleared when full).
const MAX_PARAMETER_WORDS: usize = 65_536;

/// Tokens of a message that form its template; the rest is one trailing `<*>`.
pub const MAX_TOKENS: usize = 256;

/// Leading positions indexed to find candidate templates: a template that disagrees with a
/// message at all of them differs in three places and is no candidate anyway.
const INDEXED: usize = 3;
/// The index's token hash of a variable slot.
const ANY_TOKEN: u64 = u64::MAX;
/// Templates a new message is compared with at most (the oldest first). It bounds the cost
/// of a message that starts a template (at most 512 × 256 slot comparisons), so input made
/// of new templates sharing their first words cannot make mining quadratic. The price: an
/// event whose template is younger than 512 templates of its length sharing its first words
/// is not found and starts another template; no system's log comes near that.
const MAX_CANDIDATES: usize = 512;

fn slot_key(n: usize, pos: usize, token_hash: u64) -> u64 {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&(n as u64).to_le_bytes());
    b[8..16].copy_from_slice(&(pos as u64).to_le_bytes());
    b[16..].copy_from_slice(&token_hash.to_le_bytes());
    xxh3_64(&b)
}

/// Appends the live members of an index list to `out`, dropping stale entries on the way.
fn collect_members(
    list: Option<&mut Vec<u32>>,
    templates: &[Template],
    valid: impl Fn(&Template) -> bool,
    out: &mut Vec<u32>,
) {
    if let Some(list) = list {
        list.retain(|&i| {
            templates
                .get(i as usize)
                .is_some_and(|t| t.live && valid(t))
        });
        out.extend_from_slice(list);
    }
}

/// One list of the candidate index: (creation order, template index), sorted by creation
/// order. Entries before `head` are dropped ones whose memory is reclaimed once they are half
/// the list, so dropping the oldest (what eviction does) costs no move of the rest.
#[derive(Clone, Debug, Default)]
struct IndexList {
    entries: Vec<(u64, u32)>,
    head: usize,
}

impl IndexList {
    fn entries(&self) -> &[(u64, u32)] {
        self.entries.get(self.head..).unwrap_or(&[])
    }

    /// Files an entry where its creation order puts it (new templates go last), once.
    fn insert(&mut self, entry: (u64, u32)) {
        match self.entries.last() {
            Some(&last) if last == entry => {}
            Some(&last) if last > entry => {
                let at = self.entries().partition_point(|&e| e < entry);
                if self.entries().get(at) != Some(&entry) {
                    self.entries.insert(self.head + at, entry);
                }
            }
            _ => self.entries.push(entry),
        }
    }

    fn drop_front(&mut self, k: usize) {
        self.head = (self.head + k).min(self.entries.len());
        if self.head * 2 > self.entries.len() {
            self.entries.drain(..self.head);
            self.head = 0;
        }
    }

    /// Keeps the entries `keep` accepts, in order.
    fn retain(&mut self, keep: impl FnMut(&(u64, u32)) -> bool) {
        self.entries.drain(..self.head);
        self.head = 0;
        self.entries.retain(keep);
        self.entries.dedup();
    }

    /// Moves the first `limit` live entries together at the front of the list, dropping the
    /// stale ones met on the way; returns (live entries at the front, entries dropped).
    fn live_prefix(&mut self, live: impl Fn(u64, u32) -> bool, limit: usize) -> (usize, usize) {
        let list = self.entries();
        let (mut read, mut found) = (0, 0);
        while let Some(&(seq, i)) = list.get(read)
            && found < limit
        {
            found += usize::from(live(seq, i));
            read += 1;
        }
        let stale = read - found;
        if stale > 0 {
            // Slide the live ones back over the stale ones, keeping their order, and drop the
            // stale ones now at the front.
            let window = &mut self.entries[self.head..self.head + read];
            let mut write = read;
            for r in (0..read).rev() {
                let (seq, i) = window[r];
                if live(seq, i) {
                    write -= 1;
                    window[write] = window[r];
                }
            }
            self.drop_front(stale);
        }
        (found, stale)
    }
}

/// Tokens a message needs before its first word may become a variable (`chrome.exe - host
/// open through proxy host HTTPS`), and how many values that takes.
pub const HEAD_CONTEXT: usize = 5;
/// Distinct values the first word must show.
pub const HEAD_VARIANTS: usize = 5;

/// Distinct values needed where the token is `key=word`: such fields are mostly enumerations
/// (`state=running`, `method=GET`, `tty=ssh`) whose values name different events.
pub const FIELD_VARIANTS: usize = 5;

/// The miner's decision constants, fields so that the benchmarks can vary them; leave them
/// alone. A leave-one-system-out selection on the benchmark sets (BENCHMARKS.md) picks the
/// same values up to ties, except where the sets cannot tell (a vocabulary of capitals seen
/// in one burst needs [`UPPER_VARIANTS`]; only the unit tests of that pattern decide it), and
/// the figure reported there is the held-out one, not the score of these defaults.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Distinct values that make a lower-case word slot a variable ([`VARIANTS`]).
    pub variants: usize,
    /// Distinct values that make a slot of names a variable ([`NAME_VARIANTS`]).
    pub name_variants: usize,
    /// Distinct values that make a slot of capitals a variable ([`UPPER_VARIANTS`]).
    pub upper_variants: usize,
    /// Distinct values that make a `key=word` slot a variable ([`FIELD_VARIANTS`]).
    pub field_variants: usize,
    /// Distinct values that make the first word a variable ([`HEAD_VARIANTS`]).
    pub head_variants: usize,
    /// Tokens a message needs before its first word may vary ([`HEAD_CONTEXT`]).
    pub head_context: usize,
    /// Distinct values that make a quoted or bracketed token (`"ci-runner"`) a variable.
    pub quoted_variants: usize,
    /// Consecutive values (and the units after them) form one slot: `512 bytes (0.5 KB)`.
    pub value_runs: bool,
    /// A word already seen in a variable slot of another template is a parameter on sight.
    pub seen_as_parameter: bool,
    /// Lower-case words and `key=word` fields, like names, become a variable only when most
    /// of their values are rare ([`RARE_COUNT`]).
    pub rare_words: bool,
    /// A message keeps at least one of its plain words constant: `[task <*>] Upload finished`
    /// and `[task <*>] Cache warmed` are different events, not `[task <*>] <*> <*>`.
    pub keep_prose: bool,
    /// Distinct values, each still a template of its own, that make a slot a variable even
    /// when they are not rare ([`MANY_VALUES`]).
    pub many_values: usize,
    /// One name numbered differently (`eth0`/`eth1`) needs only as many rare values as a
    /// lower-case word, not as many as a name.
    pub numbered_names: bool,
    /// A slot of lower-case words most of whose values are verb forms (`queued`, `running`,
    /// `failed`: [`is_verb_form`]) is a vocabulary of states, as capitals are: it needs
    /// `upper_variants` values, not `variants`.
    pub verb_forms: bool,
    /// A short message's first token may vary when it is an identifier rather than a word
    /// ([`is_identifier`]: `nginx.service: Deactivated successfully.`): a unit, file or host
    /// name is the subject of the event, not its name.
    pub head_identifiers: bool,
    /// Occurrences at most of a value that counts as rare ([`RARE_COUNT`]).
    pub rare_count: u64,
    /// Percent of a slot's distinct values that must be rare for its values to count as rare
    /// ([`RARE_SHARE`]).
    pub rare_share: u32,
    /// Messages per distinct value at most, on average, for `many_values` to count
    /// ([`MAX_REPEATS`]).
    pub max_repeats: u64,
    /// Two adjacent lower-case words that change together are another phrase, a vocabulary
    /// of messages: they need `upper_variants` values ([`is_lower_word`]).
    pub phrases: bool,
    /// A dotted or slashed name (`com.android.phone`, `nginx.service`), or two compound names
    /// one of which has a digit (`tbird-admin1`, `tbird-sm`), are a parameter on the second
    /// value, as quoted values are ([`is_dotted`], [`is_compound`]).
    pub dotted_names: bool,
    /// Distinct values that make a slot of quoted lower-case words (`'app'`, `'etl'`) a
    /// variable ([`QUOTED_WORD_VARIANTS`]).
    pub quoted_word_variants: usize,
    /// Distinct rare values that make a slot of compound words of letters only
    /// (`billing-consumers`, `read-only`) a variable ([`COMPOUND_VARIANTS`]).
    pub compound_variants: usize,
    /// A note some messages of an event carry after a token and others lack (`*64`, `(<*>)`,
    /// [`is_annotation`]) does not make another event: templates one token apart, the longer
    /// with a note where the shorter has none, are one.
    pub annotations: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            variants: VARIANTS,
            name_variants: NAME_VARIANTS,
            upper_variants: UPPER_VARIANTS,
            field_variants: FIELD_VARIANTS,
            head_variants: HEAD_VARIANTS,
            head_context: HEAD_CONTEXT,
            quoted_variants: 2,
            value_runs: true,
            seen_as_parameter: true,
            keep_prose: true,
            rare_words: true,
            many_values: MANY_VALUES,
            numbered_names: true,
            verb_forms: true,
            head_identifiers: true,
            rare_count: RARE_COUNT,
            rare_share: RARE_SHARE,
            max_repeats: MAX_REPEATS,
            phrases: true,
            dotted_names: true,
            quoted_word_variants: QUOTED_WORD_VARIANTS,
            compound_variants: COMPOUND_VARIANTS,
            annotations: true,
        }
    }
}

/// A template's stable identity: the hash of the skeleton it was created from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub u64);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for TemplateId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(TemplateId)
    }
}

/// Settings of the miner. The defaults are meant to be left alone.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    /// Live templates kept at most; the least recently seen is evicted past this.
    pub max_templates: usize,
    /// Skeleton-cache entries kept at most before the cache is cleared.
    pub max_skeletons: usize,
    /// Bytes the live templates may hold between them (their text, slots, hashes and
    /// evidence, as [`Template::footprint`] counts them); the least recently seen are evicted
    /// past this. One template larger than the budget is still kept, alone.
    pub max_template_bytes: usize,
    /// Aliases (ids of folded templates) kept at most; the oldest are forgotten first.
    pub max_aliases: usize,
    /// Tokens of a message that form its template; the rest become one `<*>`
    /// (default [`MAX_TOKENS`]).
    pub max_tokens: usize,
    /// The decision constants (leave at their defaults).
    pub tuning: Tuning,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            max_templates: 20_000,
            max_skeletons: 500_000,
            // A template of an ordinary line (20 tokens) counts about 1-2 KiB, so 20,000 of
            // them fit: the budget bites only on input of huge unique tokens, where the
            // count cap alone would let 20,000 templates of up to 1 MiB each hold gigabytes.
            max_template_bytes: 64 << 20,
            max_aliases: 500_000,
            max_tokens: MAX_TOKENS,
            tuning: Tuning::default(),
        }
    }
}

/// One position of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// A token shape that every member has here (it may itself contain `<*>`, as `uid=<*>`).
    Exact(Box<str>),
    /// Members differ here. It matches any token; the frame is what all members seen so far
    /// share around the value (`user=` in `user=<*>`, `,` in `<*>,`), for display only.
    Any(Frame),
}

/// The text around a variable that all its values shared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Frame {
    prefix: Box<str>,
    suffix: Box<str>,
}

/// Bytes after which a frame prefix may end (`key=`, `(`, `"`).
fn ends_prefix(b: u8) -> bool {
    matches!(
        b,
        b'=' | b':' | b'(' | b'[' | b'{' | b'"' | b'\'' | b',' | b';' | b'|' | b'/'
    )
}

/// Bytes a frame suffix may consist of (`,`, `)`, `].`).
fn in_suffix(b: u8) -> bool {
    b.is_ascii_punctuation() && !matches!(b, b'<' | b'>' | b'*')
}

impl Frame {
    /// The frame two token shapes share.
    fn of(a: &[u8], b: &[u8]) -> Frame {
        // A quoted value after a key (`err="unexpected EOF"`): the key stays, then as below.
        if let (Some(va), Some(vb)) = (field_value(a), field_value(b))
            && a.len() - va.len() == b.len() - vb.len()
            && a[..a.len() - va.len()] == b[..b.len() - vb.len()]
            && (va.contains(&b' ') || vb.contains(&b' '))
            && is_quoted(va)
            && is_quoted(vb)
        {
            let inner = Frame::of(va, vb);
            let key = String::from_utf8_lossy(&a[..a.len() - va.len()]);
            return Frame {
                prefix: format!("{key}{}", inner.prefix).into(),
                suffix: inner.suffix,
            };
        }
        if (a.contains(&b' ') || b.contains(&b' '))
            && is_quoted(a)
            && is_quoted(b)
            && a.first() == b.first()
        {
            // Quoted strings with spaces (`"John Smith"`): the quotes stay around the value.
            let end = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y && in_suffix(**x))
                .count()
                .min(a.len().saturating_sub(1));
            return Frame {
                prefix: String::from_utf8_lossy(&a[..1]).into(),
                suffix: String::from_utf8_lossy(&a[a.len() - end..]).into(),
            };
        }
        if a.contains(&b' ') || b.contains(&b' ') {
            // A run of values (`<*> (<*>)`) is one variable, shown as its first spelling.
            let shown = if a.windows(3).any(|w| w == WILDCARD) {
                a
            } else {
                b
            };
            let last = shown
                .windows(3)
                .rposition(|w| w == WILDCARD)
                .unwrap_or(shown.len());
            return Frame {
                prefix: String::from_utf8_lossy(&shown[..last]).into(),
                suffix: String::from_utf8_lossy(shown.get(last + 3..).unwrap_or_default()).into(),
            };
        }
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let mut p = a[..common]
            .iter()
            .rposition(|&c| ends_prefix(c))
            .map_or(0, |i| i + 1);
        if let Some(w) = a[..p].iter().position(|&c| c == b'<') {
            p = a[..w]
                .iter()
                .rposition(|&c| ends_prefix(c))
                .map_or(0, |i| i + 1);
        }
        let common_end = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        let tail = &a[a.len() - common_end..];
        let mut s = tail.iter().rev().take_while(|&&c| in_suffix(c)).count();
        let room = a.len().min(b.len()).saturating_sub(p);
        s = s.min(room);
        Frame {
            prefix: String::from_utf8_lossy(&a[..p]).into(),
            suffix: String::from_utf8_lossy(&a[a.len() - s..]).into(),
        }
    }

    /// The `key=` a frame's values all start with (`topActivity=`, `Surface(name=`), if any.
    fn key(&self) -> Option<&[u8]> {
        let p = self.prefix.as_bytes();
        p.iter().position(|&b| b == b'=').map(|eq| &p[..=eq])
    }

    /// Whether `token` may be a value of this slot: a slot of `key=` values takes only
    /// tokens with the same key (`num=20,flags=62` is no value of `topActivity=<*>`).
    fn admits(&self, token: &[u8]) -> bool {
        self.key().is_none_or(|k| token.starts_with(k))
    }

    /// This frame narrowed to what `token` shares with it.
    fn narrowed(&self, token: &[u8]) -> Frame {
        let mut framed = Vec::with_capacity(self.prefix.len() + 3 + self.suffix.len());
        framed.extend_from_slice(self.prefix.as_bytes());
        framed.extend_from_slice(b"<*>");
        framed.extend_from_slice(self.suffix.as_bytes());
        Frame::of(&framed, token)
    }

    fn render(&self, out: &mut String) {
        out.push_str(&self.prefix);
        out.push_str("<*>");
        out.push_str(&self.suffix);
    }
}

/// A message template and its statistics.
#[derive(Clone, Debug)]
pub struct Template {
    id: TemplateId,
    slots: Vec<Slot>,
    text: String,
    count: u64,
    last_used: u64,
    generation: u32,
    live: bool,
    /// Values seen at positions where near-identical messages differed, per position.
    variants: Vec<(u32, Vec<u64>)>,
    /// The candidate-index keys of the first [`INDEXED`] slots, as they stand.
    keys: [u64; INDEXED],
    /// Per slot, the hash of its constant token, or [`ANY_TOKEN`]: comparing a message with a
    /// template compares numbers, not strings.
    hashes: Vec<u64>,
    /// Used since the eviction hand last passed (CLOCK).
    referenced: bool,
    /// Constant slots, and constant slots that are words of running text ([`is_prose_word`]),
    /// with those of the first 64 slots as bits (so candidates are judged without reading
    /// their text).
    exact: u32,
    prose: u32,
    prose_bits: u64,
    /// Variable slots whose values all start with a `key=` ([`Frame::key`]).
    keyed: u32,
    /// A slot after the first holds a note ([`is_note_slot`]); set when the template is made
    /// or found so after it changed (never cleared while it lives: an over-estimate only
    /// costs a search), counted in [`TemplateMiner::annotated_by_len`] while it lives.
    annotated: bool,
    /// Creation order (saved with the state): of several templates a message fits, the
    /// oldest takes it, so the choice does not depend on where templates sit in memory and a
    /// restored miner chooses as the one that saved it.
    seq: u64,
    /// [`Template::footprint`] as last counted into the miner's total.
    bytes: usize,
}

impl Template {
    /// The stable id.
    pub fn id(&self) -> TemplateId {
        self.id
    }
    /// The template text, variables as `<*>`, tokens joined by one space.
    pub fn text(&self) -> &str {
        &self.text
    }
    /// Messages assigned to this template so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// Whether the template has no token (an empty message).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Bumped each time the template generalises, so cached renderings can be refreshed.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Bytes this template holds: its text, slots, hashes and evidence (allocated capacity,
    /// allocator overhead aside). What `max_template_bytes` bounds.
    pub fn footprint(&self) -> usize {
        use std::mem::size_of;
        let slots: usize = self
            .slots
            .iter()
            .map(|s| match s {
                Slot::Exact(s) => s.len(),
                Slot::Any(f) => f.prefix.len() + f.suffix.len(),
            })
            .sum();
        let variants: usize = self
            .variants
            .iter()
            .map(|(_, v)| v.capacity() * size_of::<u64>())
            .sum();
        size_of::<Template>()
            + self.text.capacity()
            + self.slots.capacity() * size_of::<Slot>()
            + slots
            + self.hashes.capacity() * size_of::<u64>()
            + self.variants.capacity() * size_of::<(u32, Vec<u64>)>()
            + variants
    }

    /// Narrows the frames of the variable slots to what `tokens` (one per slot) share with
    /// them; true when a frame changed.
    fn narrow_frames(&mut self, tokens: impl Iterator<Item = String>) -> bool {
        let mut changed = false;
        for (slot, token) in self.slots.iter_mut().zip(tokens) {
            if let Slot::Any(frame) = slot {
                let narrowed = frame.narrowed(token.as_bytes());
                if narrowed != *frame {
                    *frame = narrowed;
                    changed = true;
                }
            }
        }
        changed
    }

    /// Whether turning all of `positions` into wildcards is allowed.
    /// `columns`: which of `positions` (a bit per position below 64) hold the placeholder of
    /// an empty field (`-`) on one side: columns of a record, not words of a sentence.
    fn may_generalise_all(&self, positions: &[usize], tuning: &Tuning, columns: u64) -> bool {
        if positions.iter().any(|&p| {
            p == 0
                && self.slots.len() < tuning.head_context
                && !(tuning.head_identifiers
                    && matches!(self.slots.first(), Some(Slot::Exact(s)) if may_vary_first(s.as_bytes())))
        }) {
            return false;
        }
        // Only constant slots generalise, and at least half the slots stay constant (a value
        // joined from several tokens, `(run-parts /etc/cron.hourly)`, was one already).
        let mut changing = 0;
        let mut joined = 0;
        for &p in positions {
            let column = p < 64 && columns & (1 << p) != 0;
            match self.slots.get(p) {
                Some(Slot::Exact(s)) => {
                    changing += usize::from(if column {
                        false
                    } else if p < 64 {
                        self.prose_bits & (1 << p) != 0
                    } else {
                        is_prose_word(s.as_bytes())
                    });
                    joined += usize::from(s.contains(' '));
                }
                _ => return false,
            }
        }
        if (self.exact as usize).saturating_sub(positions.len() - joined) * 2 < self.slots.len() {
            return false;
        }
        if tuning.keep_prose {
            // The plain words that would stay: none left means the message was all variables
            // but for its prefix, and the words that differ are what tell the events apart.
            let had = self.prose > 0;
            let staying = (self.prose as usize).saturating_sub(changing);
            if had && staying == 0 {
                return false;
            }
            // Two or more words of running text changing at once (`worker <*>: upload
            // finished` / `cache warmed`) are another sentence, unless more text stays than
            // changes (`user John Smith logged in`).
            if changing >= 2 && staying < changing {
                return false;
            }
        }
        true
    }

    /// Records that a message differing only at `pos` had `value` there; returns the distinct
    /// values seen there so far (the template's own included; 0 for a variable slot).
    fn record_variant(&mut self, pos: usize, value: u64) -> usize {
        let own = match (self.slots.get(pos), self.hashes.get(pos)) {
            (Some(Slot::Exact(_)), Some(&h)) => h,
            _ => return 0,
        };
        let entry = match self.variants.iter().position(|(p, _)| *p as usize == pos) {
            Some(i) => &mut self.variants[i].1,
            None => {
                if self.variants.len() >= MAX_EVIDENCE_POSITIONS {
                    // The oldest evidence makes room: memory per template stays bounded.
                    self.variants.remove(0);
                }
                self.variants.push((pos as u32, vec![own]));
                let last = self.variants.len() - 1;
                &mut self.variants[last].1
            }
        };
        if entry.len() < MAX_SLOT_VALUES && !entry.contains(&value) {
            entry.push(value);
        }
        entry.len()
    }

    /// Renders the text and counts what [`Template::may_generalise_all`] asks of every
    /// candidate (called whenever the slots change).
    fn render(&mut self) {
        self.text.clear();
        self.exact = 0;
        self.prose = 0;
        self.prose_bits = 0;
        self.keyed = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if i > 0 {
                self.text.push(' ');
            }
            match slot {
                Slot::Exact(s) => {
                    self.text.push_str(s);
                    self.exact += 1;
                    let prose = is_prose_word(s.as_bytes());
                    self.prose += u32::from(prose);
                    if prose && i < 64 {
                        self.prose_bits |= 1 << i;
                    }
                }
                Slot::Any(frame) => {
                    frame.render(&mut self.text);
                    self.keyed += u32::from(frame.key().is_some());
                }
            }
        }
    }
}

/// What [`TemplateMiner::add`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Index of the template in the miner (valid until it is evicted; see [`Template`]).
    pub index: u32,
    /// The template's stable id.
    pub id: TemplateId,
    /// The message created a new template.
    pub created: bool,
    /// The message made an existing template more general.
    pub generalised: bool,
}

/// The online template miner. Start with [`TemplateMiner::new`] and feed [`TemplateMiner::add`].
pub struct TemplateMiner {
    config: MinerConfig,
    templates: Vec<Template>,
    free: Vec<u32>,
    live: usize,
    /// Templates by length (lazily cleaned: entries of retired templates are skipped).
    by_len: FxHashMap<usize, Vec<u32>>,
    /// Templates by (length, position, token) of their first slots, as (creation order,
    /// template index) sorted by creation order, so the oldest candidates are a prefix of
    /// each list (lazily cleaned too: an entry whose template moved on is dropped when met).
    index: FxHashMap<u64, IndexList>,
    index_entries: usize,
    /// The CLOCK eviction hand.
    hand: usize,
    by_id: FxHashMap<TemplateId, u32>,
    /// Folded id → the id it was folded into, with the alias's number in `alias_order`.
    aliases: FxHashMap<TemplateId, (TemplateId, u64)>,
    /// Aliases oldest first, as (folded id, number): the oldest are forgotten first when the
    /// table is full. An entry whose number no longer matches the table's is stale (the alias
    /// was replaced or dropped) and is skipped.
    alias_order: VecDeque<(TemplateId, u64)>,
    next_alias: u64,
    /// Sum of the live templates' [`Template::bytes`].
    template_bytes: usize,
    /// Skeleton hash → (template index, template id); the id detects a reused index.
    skeletons: FxHashMap<u64, (u32, TemplateId)>,
    clock: u64,
    evicted: u64,
    /// Hashes of plain words seen as values of variable slots (bounded).
    parameter_words: ParameterWords,
    /// The next template's [`Template::seq`].
    next_seq: u64,
    /// Live templates with [`Template::annotated`] set, by length: only lengths with some
    /// are searched for a template one token longer that is one event with another.
    annotated_by_len: FxHashMap<usize, u32>,
    fold_scratch: Vec<u32>,
    // Scratch, reused for every message.
    shapes: Vec<u8>,
    spans: Vec<(u32, u32)>,
    masked: Vec<bool>,
    token_hashes: Vec<u64>,
    /// Per token of the message in hand, whether it is a run of values ([`is_value_run`]).
    token_runs: Vec<bool>,
    /// Candidate templates of the message in hand, and where it differs from each.
    candidate_scratch: Vec<u32>,
    diff_positions: Vec<usize>,
    diff_ranges: Vec<Option<(u32, u32)>>,
}

impl Default for TemplateMiner {
    fn default() -> Self {
        Self::new(MinerConfig::default())
    }
}

impl TemplateMiner {
    /// A miner with no templates.
    pub fn new(config: MinerConfig) -> Self {
        Self {
            config,
            templates: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_len: FxHashMap::default(),
            index: FxHashMap::default(),
            index_entries: 0,
            hand: 0,
            by_id: FxHashMap::default(),
            aliases: FxHashMap::default(),
            alias_order: VecDeque::new(),
            next_alias: 0,
            template_bytes: 0,
            skeletons: FxHashMap::default(),
            clock: 0,
            evicted: 0,
            parameter_words: ParameterWords::default(),
            annotated_by_len: FxHashMap::default(),
            fold_scratch: Vec::new(),
            next_seq: 0,
            shapes: Vec::with_capacity(1024),
            spans: Vec::with_capacity(64),
            masked: Vec::with_capacity(64),
            token_hashes: Vec::with_capacity(64),
            token_runs: Vec::with_capacity(64),
            candidate_scratch: Vec::new(),
            diff_positions: Vec::new(),
            diff_ranges: Vec::new(),
        }
    }

    /// Assigns `message` to a template, creating or generalising one as needed.
    pub fn add(&mut self, message: &str) -> Assignment {
        self.clock += 1;
        let key = self.shape(message.as_bytes());
        if let Some(&(index, id)) = self.skeletons.get(&key) {
            // The skeleton's template, or the one it was folded into: templates only widen,
            // so a message that fitted once still fits.
            let index = match self.templates.get(index as usize) {
                Some(t) if t.live && t.id == id => Some(index),
                _ => self
                    .resolve(id)
                    .and_then(|t| self.by_id.get(&t.id).copied()),
            };
            if let Some(index) = index {
                let t = &mut self.templates[index as usize];
                t.count = t.count.saturating_add(1);
                t.last_used = self.clock;
                t.referenced = true;
                let id = t.id;
                if let Some(entry) = self.skeletons.get_mut(&key) {
                    *entry = (index, id);
                }
                return Assignment {
                    index,
                    id,
                    created: false,
                    generalised: false,
                };
            }
        }
        self.assign_slow(key)
    }

    /// The template at `index`.
    pub fn template(&self, index: u32) -> Option<&Template> {
        self.templates.get(index as usize).filter(|t| t.live)
    }

    /// The live template that `id` names now: its own, or the one it was folded into.
    pub fn resolve(&self, mut id: TemplateId) -> Option<&Template> {
        // A live template of this id wins over an alias left from an earlier one of the same
        // id (folded or evicted, then created again).
        for _ in 0..64 {
            if let Some(t) = self.by_id.get(&id).and_then(|&i| self.template(i)) {
                return Some(t);
            }
            match self.aliases.get(&id) {
                Some(&(next, _)) => id = next,
                None => break,
            }
        }
        self.by_id.get(&id).and_then(|&i| self.template(i))
    }

    /// Live templates, in no particular order.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.iter().filter(|t| t.live)
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no template exists yet.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Templates evicted so far to stay within `max_templates` and `max_template_bytes`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bytes the live templates hold between them ([`Template::footprint`] summed).
    pub fn template_bytes(&self) -> usize {
        self.template_bytes
    }

    /// Aliases kept (ids of folded templates that still resolve).
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// Recounts the footprint of the template at `index` into the total (after its slots,
    /// text or evidence changed: only on the slow path).
    fn recount(&mut self, index: u32) {
        let t = &mut self.templates[index as usize];
        let bytes = t.footprint();
        self.template_bytes = self.template_bytes - t.bytes + bytes;
        t.bytes = bytes;
    }

    /// Evicts the least recently seen templates, never `keep`, until the live templates fit
    /// `max_template_bytes` (or only `keep` is left).
    fn enforce_byte_budget(&mut self, keep: u32) {
        while self.template_bytes > self.config.max_template_bytes {
            if !self.evict_lru(Some(keep)) {
                break;
            }
        }
    }

    /// Records that `from` was folded into `to`; past `max_aliases` the oldest aliases are
    /// forgotten (amortised O(1): each recorded alias is dropped from the order once).
    fn add_alias(&mut self, from: TemplateId, to: TemplateId) {
        let number = self.next_alias;
        self.next_alias += 1;
        self.aliases.insert(from, (to, number));
        self.alias_order.push_back((from, number));
        let cap = self.config.max_aliases;
        // Stale entries are dropped too once they make up half the order, so it stays bounded.
        while self.aliases.len() > cap || self.alias_order.len() > 2 * cap.max(1) {
            let Some((old, number)) = self.alias_order.pop_front() else {
                break;
            };
            if self.aliases.get(&old).is_some_and(|&(_, n)| n == number) {
                self.aliases.remove(&old);
            }
        }
    }

    /// Splits `message` into tokens, masks them into `self.shapes` and returns the skeleton hash.
    fn shape(&mut self, message: &[u8]) -> u64 {
        self.shapes.clear();
        self.spans.clear();
        self.masked.clear();
        let cap = self.config.max_tokens.max(1);
        let runs = self.config.tuning.value_runs;
        // Tokens in the value run that the last slot holds (0: the last slot is no value).
        let mut run = 0usize;
        let mut overflow = false;
        let tokens = message
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty());
        // End (byte offset in `message`) of a quoted string with spaces that began in an
        // earlier token: the tokens up to it are one slot (`renamed to "John Smith"`).
        let mut quote_end = 0usize;
        // Whether the message has a quote at all: most have none, and their tokens need no
        // look for a quoted value after a key (`err="a b"`).
        let quotes = memchr::memchr2(b'"', b'\'', message).is_some();
        for token in tokens {
            let start = self.shapes.len();
            if quote_end > 0 {
                let offset = token.as_ptr() as usize - message.as_ptr() as usize;
                if offset < quote_end {
                    mask_token(token, &mut self.shapes);
                    self.shapes[start - 1] = b' ';
                    if let Some(last) = self.spans.last_mut() {
                        last.1 = self.shapes.len() as u32;
                    }
                    self.shapes.push(0x1f);
                    continue;
                }
                quote_end = 0;
            }
            if !self.spans.is_empty() && self.spans.len() < cap {
                let offset = token.as_ptr() as usize - message.as_ptr() as usize;
                if token.first().copied().and_then(closer).is_some() {
                    quote_end = quoted_string_end(message, offset, token.len());
                    // A quoted token or a joined span is no part of a run of values;
                    // `(0.5 KB)` still is.
                    if quote_end > 0 || matches!(token.first(), Some(b'"' | b'\'')) {
                        run = 0;
                    }
                } else if quotes
                    && let Some(eq) = memchr::memchr(b'=', token)
                    && matches!(token.get(eq + 1), Some(b'"' | b'\''))
                {
                    // `err="context deadline exceeded"`: the quoted value after a key.
                    quote_end = quoted_string_end(message, offset + eq + 1, token.len() - eq - 1);
                    run = 0;
                }
            }
            let masked = mask_token(token, &mut self.shapes);
            // Only a masked token can be a value (most tokens are plain words: no scan).
            // A number behind a sigil is not: that note may be missing from the next message,
            // the dash after it may not (`chrome.exe *64 - ...`).
            let value = runs
                && masked
                && is_value_shape(&self.shapes[start..])
                && !matches!(&self.shapes[start..], [b'*' | b'#', rest @ ..] if rest == WILDCARD);
            // An empty value (`()`) or a unit after a value is part of it:
            // `from 10.0.0.1 ()`, `3 ms`.
            // A lone `-` is not: in columns (an access log's user, a proxy's flags) it is a
            // field of its own that holds no value this time.
            let empty = is_empty_value(token) && token.first() != Some(&b'-');
            if run > 0 && (value || (!masked && (empty || is_unit_word(token)))) {
                // One value of varying spelling: `512 bytes (0.5 KB)`, `<1 sec`, `1m 3s`. It
                // extends the last slot; past MAX_RUN tokens its shape is not written out.
                if is_size_unit(token) {
                    // `12.3 KB`: the unit of a size is part of its value.
                    let (_, _, trail) = trim_wrappers(token);
                    self.shapes.truncate(start);
                    self.shapes.extend_from_slice(WILDCARD);
                    self.shapes.extend_from_slice(trail);
                }
                if run < MAX_RUN {
                    self.shapes[start - 1] = b' ';
                    if let Some(last) = self.spans.last_mut() {
                        last.1 = self.shapes.len() as u32;
                    }
                    self.shapes.push(0x1f);
                } else {
                    self.shapes.truncate(start);
                }
                if let Some(last) = self.masked.last_mut() {
                    *last = true;
                }
                run += 1;
                continue;
            }
            if self.spans.len() == cap {
                self.shapes.truncate(start);
                overflow = true;
                break;
            }
            self.spans.push((start as u32, self.shapes.len() as u32));
            self.masked.push(masked);
            // A separator that cannot occur in text keeps "a b" and "ab" apart.
            self.shapes.push(0x1f);
            run = usize::from(value);
        }
        if overflow {
            // Past the cap, the rest of the message (not even masked) is one variable.
            let start = self.shapes.len() as u32;
            self.shapes.extend_from_slice(WILDCARD);
            self.spans.push((start, self.shapes.len() as u32));
            self.masked.push(true);
            self.shapes.push(0x1f);
        }
        xxh3_64(&self.shapes)
    }

    fn token(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.shapes[s as usize..e as usize]
    }

    fn assign_slow(&mut self, key: u64) -> Assignment {
        let n = self.spans.len();
        self.token_hashes.clear();
        self.token_runs.clear();
        for &(a, b) in &self.spans {
            let token = &self.shapes[a as usize..b as usize];
            self.token_hashes.push(xxh3_64(token));
            self.token_runs.push(is_value_run(token));
        }
        let mut candidates = std::mem::take(&mut self.candidate_scratch);
        self.candidates(n, &mut candidates);
        // 1. A template whose constant positions all agree takes the message as it is (the
        //    check stops at the first disagreement: most candidates fail at once).
        let mut fit: Option<u32> = candidates
            .iter()
            .copied()
            .find(|&i| self.fits(&self.templates[i as usize]));
        // Where the message disagrees with each candidate (`None`: in more than two words),
        // as ranges of one buffer: no allocation per candidate.
        let mut positions = std::mem::take(&mut self.diff_positions);
        let mut diffs = std::mem::take(&mut self.diff_ranges);
        positions.clear();
        diffs.clear();
        if fit.is_none() {
            for &i in &candidates {
                let start = positions.len();
                let range = self
                    .differing(&self.templates[i as usize], 2, &mut positions)
                    .then_some((start as u32, positions.len() as u32));
                if range.is_none() {
                    positions.truncate(start);
                }
                diffs.push(range);
            }
        }
        // The evidence on each position where the message differs from templates in that one
        // position only: those templates and the message are one event but for the value
        // there, so how often each value occurs tells a parameter from a closed vocabulary.
        let siblings = if fit.is_none() {
            self.sibling_counts(
                &candidates,
                &diffs,
                &positions,
                self.config.tuning.rare_count,
            )
        } else {
            Vec::new()
        };
        // 2. Otherwise the message is evidence that a template varies where the two differ (at
        //    one or two positions). Once a position has shown enough different values, and
        //    those values are rare where their spelling says they may be names, it is a
        //    variable: the template generalises there, and the templates that now fit it are
        //    folded in; the message joins if it fits too.
        let mut generalised = false;
        if fit.is_none() {
            for (&index, diff) in candidates.iter().zip(&diffs) {
                // A candidate folded into another earlier in this loop is out of service.
                if !self.templates[index as usize].live {
                    continue;
                }
                let Some((a, b)) = *diff else {
                    continue;
                };
                let diff = &positions[a as usize..b as usize];
                let tuning = self.config.tuning;
                let columns = diff
                    .iter()
                    .filter(|&&p| p < 64 && self.is_empty_column(index, p))
                    .fold(0u64, |bits, &p| bits | 1 << p);
                if diff.is_empty()
                    || !self.templates[index as usize].may_generalise_all(diff, &tuning, columns)
                {
                    continue;
                }
                // Two adjacent lower-case words replaced by two others are another phrase
                // (`program interrupt: illegal instruction` / `imprecise exception`): a
                // vocabulary of messages, which needs as many values as capitals do.
                let phrase = tuning.phrases
                    && matches!(diff, &[p, q] if q == p + 1
                    && [p, q].iter().all(|&i| {
                        is_lower_word(self.token(i))
                            && matches!(self.templates[index as usize].slots.get(i),
                                Some(Slot::Exact(s)) if is_lower_word(s.as_bytes()))
                    }));
                let mut newly_variable = Vec::new();
                for &pos in diff {
                    let (a, b) = self.spans[pos];
                    let token = &self.shapes[a as usize..b as usize];
                    let value = self.token_hashes.get(pos).copied().unwrap_or(ANY_TOKEN);
                    let column = self.is_empty_column(index, pos);
                    let t = &mut self.templates[index as usize];
                    // A short message's first token varies only between identifiers.
                    let short_head = pos == 0 && t.slots.len() < tuning.head_context;
                    let (needed, names, words) = match &t.slots[pos] {
                        // A value or word against the placeholder of an empty column.
                        Slot::Exact(_) if column => (2, false, false),
                        Slot::Exact(_) if short_head && !may_vary_first(token) => {
                            (usize::MAX, false, false)
                        }
                        Slot::Exact(s) => variants_needed(
                            s.as_bytes(),
                            token,
                            pos,
                            t.slots.len(),
                            &tuning,
                            &self.parameter_words,
                        ),
                        Slot::Any(_) => (usize::MAX, false, false),
                    };
                    let seen = t.record_variant(pos, value);
                    // Lower-case words that are mostly verb forms name states: they need as
                    // many values as capitals do (the siblings' spelling is read only when
                    // the count of lower-case words is reached: no cost per candidate).
                    let enough = seen >= needed
                        && !(phrase && seen < tuning.upper_variants)
                        && !(words
                            && tuning.verb_forms
                            && seen < tuning.upper_variants
                            && self.mostly_verb_forms(&candidates, &diffs, &positions, pos));
                    // Words become a variable only when their values are rare: a closed
                    // vocabulary (`GET`, `POST`, ...) repeats its words, parameters do not.
                    if enough
                        && (!names
                            || values_are_rare(&siblings, pos, &tuning)
                            || many_values(&siblings, pos, &tuning))
                    {
                        newly_variable.push(pos);
                    }
                }
                // The evidence grew.
                self.recount(index);
                if newly_variable.is_empty() {
                    continue;
                }
                let t = &mut self.templates[index as usize];
                for &pos in &newly_variable {
                    let (a, b) = self.spans[pos];
                    let token = &self.shapes[a as usize..b as usize];
                    let frame = match &t.slots[pos] {
                        Slot::Exact(s) => {
                            if is_plain_word(s.as_bytes()) {
                                // The values of a word slot are parameters wherever they occur.
                                if let Some((_, seen)) =
                                    t.variants.iter().find(|(p, _)| *p as usize == pos)
                                {
                                    self.parameter_words.remember(seen);
                                }
                                // Without their quotes too: `"app"` here, `app` elsewhere
                                // (the two values at hand; later ones as they come).
                                self.parameter_words.remember(&[word_key(s.as_bytes())]);
                                if is_plain_word(token) {
                                    self.parameter_words.remember(&[word_key(token)]);
                                }
                            }
                            Frame::of(s.as_bytes(), token)
                        }
                        Slot::Any(f) => f.clone(),
                    };
                    t.slots[pos] = Slot::Any(frame);
                    if let Some(h) = t.hashes.get_mut(pos) {
                        *h = ANY_TOKEN;
                    }
                    t.variants.retain(|(p, _)| *p as usize != pos);
                }
                t.generation += 1;
                t.render();
                self.recount(index);
                for &pos in newly_variable.iter().filter(|&&p| p < INDEXED) {
                    self.reindex(index, pos);
                }
                self.absorb_fitting(index);
                // Templates a note apart are one event, now that this one varies more.
                let index = self.fold_across_lengths(index);
                generalised = true;
                if newly_variable.len() == diff.len() {
                    fit = Some(index);
                    break;
                }
            }
        }
        self.candidate_scratch = candidates;
        self.diff_positions = positions;
        self.diff_ranges = diffs;
        if fit.is_none() && self.config.tuning.annotations {
            fit = self.fit_without_annotation();
        }
        // The message lines up with its template slot by slot (a note taken out, or none);
        // not when its template was folded into one a note shorter just now.
        let aligned = |t: &Template, spans: &[(u32, u32)]| t.slots.len() == spans.len();
        let assignment = match fit {
            Some(index) if !aligned(&self.templates[index as usize], &self.spans) => {
                let t = &mut self.templates[index as usize];
                t.count = t.count.saturating_add(1);
                t.last_used = self.clock;
                t.referenced = true;
                Assignment {
                    index,
                    id: t.id,
                    created: false,
                    generalised,
                }
            }
            Some(index) => {
                let n = self.spans.len();
                let tokens: Vec<String> = (0..n)
                    .map(|i| String::from_utf8_lossy(self.token(i)).into_owned())
                    .collect();
                let words: Vec<u64> = self.templates[index as usize]
                    .slots
                    .iter()
                    .zip(&tokens)
                    .filter(|(s, tok)| matches!(s, Slot::Any(_)) && is_plain_word(tok.as_bytes()))
                    .map(|(_, tok)| word_key(tok.as_bytes()))
                    .collect();
                self.parameter_words.remember(&words);
                let t = &mut self.templates[index as usize];
                let narrowed = t.narrow_frames(tokens.into_iter());
                if narrowed {
                    t.generation += 1;
                    t.render();
                }
                t.count = t.count.saturating_add(1);
                t.last_used = self.clock;
                t.referenced = true;
                let id = t.id;
                if narrowed {
                    self.recount(index);
                }
                Assignment {
                    index,
                    id,
                    created: false,
                    generalised,
                }
            }
            None => {
                let created = self.create(key);
                match self.fold_across_lengths(created.index) {
                    index if index == created.index => created,
                    index => Assignment {
                        index,
                        id: self.templates[index as usize].id,
                        created: false,
                        generalised: true,
                    },
                }
            }
        };
        self.enforce_byte_budget(assignment.index);
        if self.skeletons.len() >= self.config.max_skeletons {
            self.skeletons.clear();
        }
        self.skeletons
            .insert(key, (assignment.index, assignment.id));
        assignment
    }

    /// Per position, (distinct values, rare values) over the candidates that differ from the
    /// current message at that position only, the message's own (new, so rare) included.
    fn sibling_counts(
        &self,
        candidates: &[u32],
        diffs: &[Option<(u32, u32)>],
        positions: &[usize],
        rare_count: u64,
    ) -> Vec<Siblings> {
        let mut counts = vec![
            Siblings {
                values: 1,
                rare: 1,
                occurrences: 1,
            };
            self.spans.len()
        ];
        for (&c, diff) in candidates.iter().zip(diffs) {
            let diff = diff.and_then(|(a, b)| positions.get(a as usize..b as usize));
            if let (Some(t), Some([pos])) = (self.templates.get(c as usize), diff)
                && t.live
                && let Some(entry) = counts.get_mut(*pos)
            {
                entry.values = entry.values.saturating_add(1);
                entry.rare = entry.rare.saturating_add(u32::from(t.count <= rare_count));
                entry.occurrences = entry.occurrences.saturating_add(t.count);
            }
        }
        counts
    }

    /// Whether most (more than half) of the distinct values at `pos` among the templates that
    /// differ from the current message only there, and the message's own, are verb forms
    /// ([`is_verb_form`]), one of them a past participle: the slot is a vocabulary of states
    /// (`queued`, `running`, `done`, `failed`) rather than of names, whose values are rarely
    /// verb forms. Names that are gerunds (`billing`, `shipping`, `pricing`) are common; a
    /// lifecycle without a single participle (`created`, `failed`) is not.
    fn mostly_verb_forms(
        &self,
        candidates: &[u32],
        diffs: &[Option<(u32, u32)>],
        positions: &[usize],
        pos: usize,
    ) -> bool {
        let mut values = 1u32;
        let mut verb_forms = u32::from(is_verb_form(self.token(pos)));
        let mut participle = is_participle(self.token(pos));
        for (&c, diff) in candidates.iter().zip(diffs) {
            let diff = diff.and_then(|(a, b)| positions.get(a as usize..b as usize));
            if let (Some(t), Some(&[p])) = (self.templates.get(c as usize), diff)
                && t.live
                && p == pos
                && let Some(Slot::Exact(value)) = t.slots.get(pos)
            {
                values = values.saturating_add(1);
                verb_forms = verb_forms.saturating_add(u32::from(is_verb_form(value.as_bytes())));
                participle |= is_participle(value.as_bytes());
            }
        }
        participle && verb_forms.saturating_mul(2) > values
    }

    /// Whether position `p` is a column of a record that holds nothing (`-`) in the current
    /// message or in the template at `index`, and a value or word in the other: its
    /// neighbours in the message are values or empty columns too (`10.0.0.1 - frank [<*>]`,
    /// `200 - 512`), not words (`step build: -`, `Backup - completed`), and the message is a
    /// record: [`MIN_RECORD`] tokens or more, over two thirds of them values or empty columns,
    /// the one at `p` counted as one (an access log line; not `job <*> QUEUED` against
    /// `job <*> -` or `task <*> - <*>ms`, where `-` is one more state).
    fn is_empty_column(&self, index: u32, p: usize) -> bool {
        let dash = |s: &[u8]| matches!(s, b"-" | b"-," | b"-;");
        let valued = |s: &[u8]| dash(s) || s.windows(3).any(|w| w == WILDCARD);
        let slot_dash = matches!(self.templates[index as usize].slots.get(p),
            Some(Slot::Exact(s)) if dash(s.as_bytes()));
        let n = self.spans.len();
        p > 0
            && p < n
            && (dash(self.token(p)) != slot_dash)
            && valued(self.token(p - 1))
            && (p + 1 == n || valued(self.token(p + 1)))
            && n >= MIN_RECORD
            && (0..n).filter(|&i| i == p || valued(self.token(i))).count() * 3 > n * 2
    }

    /// Whether the current message agrees with every constant slot of `t` as it is (two
    /// spellings of a value differ here: the template must generalise first).
    fn fits(&self, t: &Template) -> bool {
        t.hashes
            .iter()
            .zip(&self.token_hashes)
            .all(|(&h, &m)| h == ANY_TOKEN || h == m)
            && self.keys_admitted(t)
    }

    /// Whether every variable slot of `t` that holds `key=` values admits the current
    /// message's token there ([`Frame::admits`]).
    fn keys_admitted(&self, t: &Template) -> bool {
        t.keyed == 0 || (0..t.slots.len()).all(|i| self.admitted(t, i))
    }

    fn admitted(&self, t: &Template, i: usize) -> bool {
        match t.slots.get(i) {
            Some(Slot::Any(frame)) if i < self.spans.len() => frame.admits(self.token(i)),
            _ => true,
        }
    }

    /// Appends to `out` the positions where the current message disagrees with a constant
    /// slot of `t`; false when more than `max` of them are words (two spellings of a value
    /// do not count: they are one variable on sight).
    fn differing(&self, t: &Template, max: usize, out: &mut Vec<usize>) -> bool {
        let mut words = 0;
        if !self.keys_admitted(t) {
            return false;
        }
        for (i, (&h, &m)) in t.hashes.iter().zip(&self.token_hashes).enumerate() {
            if h == ANY_TOKEN || h == m {
                continue;
            }
            let Some(Slot::Exact(s)) = t.slots.get(i) else {
                continue;
            };
            let runs =
                self.token_runs.get(i).copied().unwrap_or(false) && is_value_run(s.as_bytes());
            // Two spellings of one kind of value (`WorkSource{<*>}` and `<*>`) are one
            // variable on sight, too (checked only where both hold a masked value).
            let token = self.token(i);
            let same_kind = !runs
                && token.contains(&b'<')
                && s.as_bytes().contains(&b'<')
                && same_kind_of_value(s.as_bytes(), token);
            if !runs && !same_kind {
                if words == max {
                    return false;
                }
                words += 1;
            }
            out.push(i);
        }
        true
    }

    /// Folds every other live template of the same length that now fits `into` into it; the
    /// folded ids become aliases of `into`'s id.
    fn absorb_fitting(&mut self, into: u32) {
        let n = self.templates[into as usize].slots.len();
        // Only templates with the same constant at one of its first constant slots can fit.
        let mut list = Vec::new();
        // Of its first constant slots, the one fewest templates share.
        let first_exact = (0..n.min(INDEXED))
            .filter(|&p| matches!(self.templates[into as usize].slots[p], Slot::Exact(_)))
            .min_by_key(|&p| {
                let key = self.templates[into as usize].keys[p];
                self.index.get(&key).map_or(0, |l| l.entries().len())
            });
        match first_exact {
            Some(p) => {
                let key = self.templates[into as usize].keys[p];
                if let Some(entries) = self.index.get(&key) {
                    list.extend(
                        entries
                            .entries()
                            .iter()
                            .filter(|&&(seq, i)| {
                                self.templates.get(i as usize).is_some_and(|t| {
                                    t.live && t.seq == seq && t.slots.len() == n && t.keys[p] == key
                                })
                            })
                            .map(|&(_, i)| i),
                    );
                }
            }
            None => collect_members(
                self.by_len.get_mut(&n),
                &self.templates,
                |t| t.slots.len() == n,
                &mut list,
            ),
        }
        list.sort_unstable();
        list.dedup();
        for other in list {
            if other == into {
                continue;
            }
            let fits = {
                let (a, b) = (
                    &self.templates[into as usize],
                    &self.templates[other as usize],
                );
                // The hashes rule most out; equal hashes are confirmed on the text.
                a.hashes
                    .iter()
                    .zip(&b.hashes)
                    .all(|(&x, &y)| x == ANY_TOKEN || (y != ANY_TOKEN && x == y))
                    && a.slots.iter().zip(&b.slots).all(|(x, y)| match (x, y) {
                        (Slot::Any(f), Slot::Exact(y)) => f.admits(y.as_bytes()),
                        (Slot::Any(f), Slot::Any(g)) => f.admits(g.prefix.as_bytes()),
                        (Slot::Exact(x), Slot::Exact(y)) => x == y,
                        (Slot::Exact(_), Slot::Any(_)) => false,
                    })
            };
            if !fits {
                continue;
            }
            let (count, last, id, their_slots) = {
                let o = &self.templates[other as usize];
                (o.count, o.last_used, o.id, o.slots.clone())
            };
            let t = &mut self.templates[into as usize];
            t.count = t.count.saturating_add(count);
            t.last_used = t.last_used.max(last);
            if t.narrow_frames(their_slots.iter().map(|s| match s {
                Slot::Exact(s) => s.to_string(),
                Slot::Any(f) => format!("{}<*>{}", f.prefix, f.suffix),
            })) {
                t.generation += 1;
                t.render();
            }
            let into_id = t.id;
            self.recount(into);
            self.add_alias(id, into_id);
            self.retire(other);
        }
    }

    /// A template one token shorter that the current message fits once one of its notes
    /// ([`is_annotation`], not the first token) is taken out: `chrome.exe *64 - ...` fits
    /// `<*> - ...`. When one does, the note stays out of the message in hand (its tokens then
    /// line up with the template's slots).
    fn fit_without_annotation(&mut self) -> Option<u32> {
        let n = self.spans.len();
        if n < 3 {
            return None;
        }
        let mut candidates = std::mem::take(&mut self.fold_scratch);
        let mut fit = None;
        let mut notes = [0usize; MAX_ANNOTATIONS];
        let mut count = 0;
        for d in (1..n).filter(|&d| is_annotation(self.token(d))) {
            notes[count] = d;
            count += 1;
            if count == MAX_ANNOTATIONS {
                break;
            }
        }
        for &d in &notes[..count] {
            let span = self.spans.remove(d);
            let hash = self.token_hashes.remove(d);
            let run = self.token_runs.remove(d);
            self.candidates(n - 1, &mut candidates);
            fit = candidates
                .iter()
                .copied()
                .find(|&i| self.fits(&self.templates[i as usize]));
            if fit.is_some() {
                break;
            }
            self.spans.insert(d, span);
            self.token_hashes.insert(d, hash);
            self.token_runs.insert(d, run);
        }
        self.fold_scratch = candidates;
        fit
    }

    /// Folds templates one token apart that are one event, the longer having a note
    /// ([`is_annotation`]) where the shorter has none, into the shorter: `index` into a
    /// shorter one, or longer ones into `index`. The shorter widens where the longer varies;
    /// the folded ids become aliases. Returns the template that now holds what `index` held.
    fn fold_across_lengths(&mut self, index: u32) -> u32 {
        if !self.config.tuning.annotations {
            return index;
        }
        let m = self.templates[index as usize].slots.len();
        // A variable may have become a note just now (`(<*>)` from `(~u@a/b)` and `(<*>)`).
        let t = &mut self.templates[index as usize];
        if !t.annotated && annotations(&t.slots).next().is_some() {
            t.annotated = true;
            *self.annotated_by_len.entry(m).or_default() += 1;
        }
        let mut found = std::mem::take(&mut self.fold_scratch);
        // `index` is the longer: a shorter template lacks one of its notes.
        if self.templates[index as usize].annotated && m >= 3 {
            let notes: Vec<usize> = annotations(&self.templates[index as usize].slots).collect();
            for d in notes {
                // The shorter template's first slots, as `index` would have them.
                let keys = self.keys_across(index, m - 1, |q| Some(if q < d { q } else { q + 1 }));
                self.indexed(m - 1, &keys, &mut found);
                if let Some(&short) = found
                    .iter()
                    .find(|&&s| s != index && self.fits_across(index, d, s))
                {
                    self.fold_scratch = found;
                    self.fold_annotated(index, d, short);
                    return short;
                }
            }
        }
        // `index` is the shorter: longer templates carry a note it lacks (before or after
        // its first constant slot).
        if self.annotated_by_len.get(&(m + 1)).is_some_and(|&c| c > 0) {
            let mut keys = self.keys_across(index, m + 1, Some);
            keys.extend(self.keys_across(index, m + 1, |q| q.checked_sub(1)));
            self.indexed(m + 1, &keys, &mut found);
            for &long in &found {
                if long == index || !self.templates[long as usize].annotated {
                    continue;
                }
                let notes: Vec<usize> = annotations(&self.templates[long as usize].slots).collect();
                if let Some(d) = notes
                    .into_iter()
                    .find(|&d| self.fits_across(long, d, index))
                {
                    self.fold_annotated(long, d, index);
                }
            }
        }
        self.fold_scratch = found;
        index
    }

    /// Index keys under which a template of length `len` that is one event with the template
    /// at `index` is filed: its slot `q` is the one `index` has at `at(q)` (none: no slot
    /// there), for the first `q` where that is constant (that very token, or a variable).
    fn keys_across(
        &self,
        index: u32,
        len: usize,
        at: impl Fn(usize) -> Option<usize>,
    ) -> Vec<(u64, usize)> {
        let t = &self.templates[index as usize];
        (0..len.min(INDEXED))
            .find_map(|q| match at(q).map(|p| (p, t.slots.get(p))) {
                Some((p, Some(Slot::Exact(_)))) => Some((q, t.hashes.get(p).copied()?)),
                _ => None,
            })
            .map(|(q, hash)| {
                vec![
                    (slot_key(len, q, hash), q),
                    (slot_key(len, q, ANY_TOKEN), q),
                ]
            })
            .unwrap_or_default()
    }

    /// Whether the template at `long`, its note at `d` taken out, and the one at `short` are
    /// one event: each constant slot of either is the other's constant or a value of its
    /// variable, and `short` keeps at least half its slots constant where `long` varies.
    fn fits_across(&self, long: u32, d: usize, short: u32) -> bool {
        let (l, s) = (
            &self.templates[long as usize],
            &self.templates[short as usize],
        );
        if !l.live || !s.live || l.slots.len() != s.slots.len() + 1 {
            return false;
        }
        let mut widened = 0;
        for (i, b) in s.slots.iter().enumerate() {
            let Some(a) = l.slots.get(if i < d { i } else { i + 1 }) else {
                return false;
            };
            let one = match (a, b) {
                (Slot::Exact(x), Slot::Exact(y)) => x == y,
                (Slot::Any(f), Slot::Exact(y)) => {
                    widened += 1;
                    f.admits(y.as_bytes())
                }
                (Slot::Exact(x), Slot::Any(g)) => g.admits(x.as_bytes()),
                (Slot::Any(f), Slot::Any(g)) => f.key() == g.key(),
            };
            if !one {
                return false;
            }
        }
        (s.exact as usize).saturating_sub(widened) * 2 >= s.slots.len()
    }

    /// Folds the template at `long` into the one at `short` ([`TemplateMiner::fits_across`]).
    fn fold_annotated(&mut self, long: u32, d: usize, short: u32) {
        let widen: Vec<(usize, Frame)> = {
            let (l, s) = (
                &self.templates[long as usize],
                &self.templates[short as usize],
            );
            s.slots
                .iter()
                .enumerate()
                .filter_map(
                    |(i, b)| match (l.slots.get(if i < d { i } else { i + 1 }), b) {
                        (Some(Slot::Any(f)), Slot::Exact(y)) => Some((i, f.narrowed(y.as_bytes()))),
                        _ => None,
                    },
                )
                .collect()
        };
        let (count, last, id) = {
            let l = &self.templates[long as usize];
            (l.count, l.last_used, l.id)
        };
        let t = &mut self.templates[short as usize];
        t.count = t.count.saturating_add(count);
        t.last_used = t.last_used.max(last);
        t.referenced = true;
        for (i, frame) in &widen {
            t.slots[*i] = Slot::Any(frame.clone());
            if let Some(h) = t.hashes.get_mut(*i) {
                *h = ANY_TOKEN;
            }
            t.variants.retain(|(p, _)| *p as usize != *i);
        }
        if !widen.is_empty() {
            t.generation += 1;
            t.render();
        }
        let into = t.id;
        self.add_alias(id, into);
        self.retire(long);
        self.recount(short);
        for &(i, _) in widen.iter().filter(|(i, _)| *i < INDEXED) {
            self.reindex(short, i);
        }
        if !widen.is_empty() {
            self.absorb_fitting(short);
        }
    }

    fn create(&mut self, key: u64) -> Assignment {
        if self.live >= self.config.max_templates {
            self.evict_lru(None);
        }
        let slots: Vec<Slot> = (0..self.spans.len())
            .map(|i| Slot::Exact(String::from_utf8_lossy(self.token(i)).into()))
            .collect();
        let mut t = Template {
            id: TemplateId(key),
            slots,
            text: String::new(),
            count: 1,
            last_used: self.clock,
            generation: 0,
            live: true,
            variants: Vec::new(),
            keys: [0; INDEXED],
            hashes: Vec::new(),
            referenced: true,
            seq: self.next_seq,
            exact: 0,
            prose: 0,
            prose_bits: 0,
            keyed: 0,
            annotated: false,
            bytes: 0,
        };
        self.next_seq = self.next_seq.saturating_add(1);
        t.hashes = slot_hashes(&t.slots);
        t.render();
        t.bytes = t.footprint();
        self.template_bytes += t.bytes;
        let n = t.slots.len();
        t.annotated = annotations(&t.slots).next().is_some();
        if t.annotated {
            *self.annotated_by_len.entry(n).or_default() += 1;
        }
        let index = match self.free.pop() {
            Some(i) => {
                // Keep the slot's generation moving so stale cache entries never match.
                t.generation = self.templates[i as usize].generation.wrapping_add(1);
                self.templates[i as usize] = t;
                i
            }
            None => {
                self.templates.push(t);
                (self.templates.len() - 1) as u32
            }
        };
        self.by_len.entry(n).or_default().push(index);
        self.index_template(index);
        self.by_id.insert(TemplateId(key), index);
        // The id names this template again, not the one an older template of it was folded in.
        self.aliases.remove(&TemplateId(key));
        self.live += 1;
        Assignment {
            index,
            id: TemplateId(key),
            created: true,
            generalised: false,
        }
    }

    /// Evicts one template other than `keep` not used since the hand last passed it (CLOCK,
    /// an LRU approximation with O(1) amortised cost); false when there was none to evict.
    fn evict_lru(&mut self, keep: Option<u32>) -> bool {
        let len = self.templates.len();
        for _ in 0..=2 * len {
            let i = self.hand % len.max(1);
            self.hand = (i + 1) % len.max(1);
            let Some(t) = self.templates.get_mut(i) else {
                return false;
            };
            if !t.live || keep == Some(i as u32) {
                continue;
            }
            if t.referenced {
                t.referenced = false;
                continue;
            }
            self.retire(i as u32);
            self.evicted += 1;
            return true;
        }
        false
    }

    /// Adds a template's first slots to the candidate index.
    fn index_template(&mut self, index: u32) {
        let n = self.templates[index as usize].slots.len();
        for p in 0..n.min(INDEXED) {
            self.reindex(index, p);
        }
    }

    /// (Re)files slot `p` of a template under its current key; the old entry goes stale.
    fn reindex(&mut self, index: u32, p: usize) {
        let t = &mut self.templates[index as usize];
        let n = t.slots.len();
        let hash = match &t.slots[p] {
            Slot::Exact(s) => xxh3_64(s.as_bytes()),
            Slot::Any(_) => ANY_TOKEN,
        };
        let key = slot_key(n, p, hash);
        t.keys[p] = key;
        self.index.entry(key).or_default().insert((t.seq, index));
        self.index_entries += 1;
        if self.index_entries > 8 * self.live + 65_536 {
            self.compact_index();
        }
    }

    /// Drops stale entries from every index list (amortised over many insertions).
    fn compact_index(&mut self) {
        let templates = &self.templates;
        let mut entries = 0;
        self.index.retain(|&key, list| {
            list.retain(|&(seq, i)| {
                templates
                    .get(i as usize)
                    .is_some_and(|t| t.live && t.seq == seq && t.keys.contains(&key))
            });
            entries += list.entries().len();
            !list.entries().is_empty()
        });
        self.by_len.retain(|&n, list| {
            list.retain(|&i| {
                templates
                    .get(i as usize)
                    .is_some_and(|t| t.live && t.slots.len() == n)
            });
            list.sort_unstable();
            list.dedup();
            !list.is_empty()
        });
        self.index_entries = entries;
    }

    /// Templates the current message may fit or be evidence for: those that agree with it at
    /// one of its first positions (or have a variable there), oldest first, at most
    /// [`MAX_CANDIDATES`], into `out`.
    ///
    /// Each index list is sorted by creation order, so the oldest are the first live entries
    /// of each list, merged: the cost per message is bounded by the limit, not by how many
    /// templates share its first words.
    fn candidates(&mut self, n: usize, out: &mut Vec<u32>) {
        out.clear();
        if n == 0 {
            collect_members(
                self.by_len.get_mut(&0),
                &self.templates,
                |t| t.slots.is_empty(),
                out,
            );
            return;
        }
        let mut keys = [(0u64, 0usize); 2 * INDEXED];
        let mut lists = 0;
        for p in 0..n.min(INDEXED) {
            // The message's token hashes were taken once for the whole slow path.
            let Some(&hash) = self.token_hashes.get(p) else {
                break;
            };
            for key in [slot_key(n, p, hash), slot_key(n, p, ANY_TOKEN)] {
                if !keys[..lists].iter().any(|&(k, _)| k == key) {
                    keys[lists] = (key, p);
                    lists += 1;
                }
            }
        }
        self.indexed(n, &keys[..lists], out);
    }

    /// The oldest live templates of length `n` filed under any of `wanted` (index keys, each
    /// with the position it is a key of), at most [`MAX_CANDIDATES`], into `out`.
    fn indexed(&mut self, n: usize, wanted: &[(u64, usize)], out: &mut Vec<u32>) {
        out.clear();
        let limit = MAX_CANDIDATES;
        let mut keys = [(0u64, 0usize); 2 * INDEXED];
        let mut lists = 0;
        for &(key, p) in wanted.iter().take(2 * INDEXED) {
            let Some(list) = self.index.get_mut(&key) else {
                continue;
            };
            let templates = &self.templates;
            let live = list.live_prefix(
                |seq, i| {
                    templates.get(i as usize).is_some_and(|t| {
                        t.live && t.seq == seq && t.slots.len() == n && t.keys.get(p) == Some(&key)
                    })
                },
                limit,
            );
            self.index_entries = self.index_entries.saturating_sub(live.1);
            keys[lists] = (key, live.0);
            lists += 1;
        }
        // Merge the sorted prefixes, oldest first; a template listed under two keys comes
        // up twice in a row and is taken once.
        let mut prefixes: [&[(u64, u32)]; 2 * INDEXED] = [&[]; 2 * INDEXED];
        for (prefix, &(key, len)) in prefixes.iter_mut().zip(&keys[..lists]) {
            if let Some(list) = self.index.get(&key) {
                let entries = list.entries();
                *prefix = entries.get(..len).unwrap_or(entries);
            }
        }
        let mut last = None;
        while out.len() < limit {
            let mut best: Option<(usize, u64, u32)> = None;
            for (j, prefix) in prefixes[..lists].iter().enumerate() {
                if let Some(&(seq, i)) = prefix.first()
                    && best.is_none_or(|(_, s, b)| (seq, i) < (s, b))
                {
                    best = Some((j, seq, i));
                }
            }
            let Some((j, seq, i)) = best else {
                break;
            };
            prefixes[j] = prefixes[j].get(1..).unwrap_or(&[]);
            if last != Some((seq, i)) {
                out.push(i);
                last = Some((seq, i));
            }
        }
    }

    /// Takes a template out of service (evicted or folded into another) and frees its slot.
    fn retire(&mut self, index: u32) {
        let t = &mut self.templates[index as usize];
        if std::mem::take(&mut t.annotated)
            && let Some(count) = self.annotated_by_len.get_mut(&t.slots.len())
        {
            *count = count.saturating_sub(1);
        }
        t.live = false;
        t.generation = t.generation.wrapping_add(1);
        // A retired slot holds nothing until it is reused: what the budget counted is freed.
        t.variants = Vec::new();
        t.slots = Vec::new();
        t.hashes = Vec::new();
        t.text = String::new();
        self.template_bytes -= std::mem::take(&mut t.bytes);
        let id = t.id;
        if self.by_id.get(&id) == Some(&index) {
            self.by_id.remove(&id);
        }
        self.free.push(index);
        self.live -= 1;
    }

    /// Saves the templates so that a later run continues with the same ids.
    pub fn snapshot(&self) -> MinerState {
        let mut templates: Vec<SavedTemplate> = self
            .templates()
            .map(|t| SavedTemplate {
                id: t.id.to_string(),
                seq: Some(t.seq),
                count: t.count,
                slots: t
                    .slots
                    .iter()
                    .map(|s| match s {
                        Slot::Exact(s) => SavedSlot::Exact(s.to_string()),
                        Slot::Any(f) => SavedSlot::Variable {
                            prefix: f.prefix.to_string(),
                            suffix: f.suffix.to_string(),
                        },
                    })
                    .collect(),
                variants: t
                    .variants
                    .iter()
                    .map(|(position, values)| SavedVariants {
                        position: *position,
                        values: values.clone(),
                    })
                    .collect(),
            })
            .collect();
        templates.sort_by(|a, b| a.id.cmp(&b.id));
        MinerState {
            version: MINER_STATE_VERSION,
            templates,
            aliases: self
                .aliases
                .iter()
                .map(|(from, (to, _))| (from.to_string(), to.to_string()))
                .collect(),
            parameter_words: {
                let mut words: Vec<u64> = self.parameter_words.iter().collect();
                words.sort_unstable();
                words
            },
        }
    }

    /// Restores templates saved by [`TemplateMiner::snapshot`]. The state is input: what
    /// exceeds this miner's bounds (templates, bytes, tokens, evidence, aliases) is left out
    /// (a template that would take the total past `max_template_bytes` is skipped), a repeated id
    /// keeps its first template, and an alias whose id is a saved template is dropped.
    pub fn restore(&mut self, state: MinerState) -> Result<(), MinerStateError> {
        if !(1..=MINER_STATE_VERSION).contains(&state.version) {
            return Err(MinerStateError::Version(state.version));
        }
        let parse = |s: &String| {
            s.parse::<TemplateId>()
                .map_err(|_| MinerStateError::BadId(s.clone()))
        };
        let words: Vec<u64> = state
            .parameter_words
            .iter()
            .copied()
            .take(MAX_PARAMETER_WORDS)
            .collect();
        self.parameter_words.remember(&words);
        let room = self.config.max_templates.saturating_sub(self.live);
        let max_slots = self.config.max_tokens.max(1) + 1;
        // Templates keep their saved creation order; older states (none saved) take the
        // file's order. Either way after the templates this miner already has.
        let base = self.next_seq;
        let mut saved_templates = state.templates;
        saved_templates.truncate(room);
        // A saved order past any real one (hostile input) would leave no room for the
        // templates created after: such states keep the file's order.
        // A repeated id keeps its first template in the file.
        let mut ids = FxHashSet::default();
        let mut saved_templates: Vec<(u64, SavedTemplate)> = saved_templates
            .into_iter()
            .enumerate()
            .filter(|(_, saved)| ids.insert(saved.id.clone()))
            .map(|(i, saved)| {
                let seq = saved.seq.filter(|&q| q < MAX_SAVED_SEQ).unwrap_or(i as u64);
                (base.saturating_add(seq), saved)
            })
            .collect();
        // Oldest first, so each goes to the end of its index lists.
        saved_templates.sort_by_key(|&(seq, _)| seq);
        for (seq, saved) in saved_templates {
            let id = parse(&saved.id)?;
            if saved.slots.len() > max_slots
                || self
                    .by_id
                    .get(&id)
                    .is_some_and(|&i| self.template(i).is_some())
            {
                continue;
            }
            let slots = saved
                .slots
                .into_iter()
                .map(|s| match s {
                    SavedSlot::Exact(s) => Slot::Exact(s.into()),
                    SavedSlot::Variable { prefix, suffix } => Slot::Any(Frame {
                        prefix: prefix.into(),
                        suffix: suffix.into(),
                    }),
                })
                .collect();
            let mut t = Template {
                id,
                slots,
                text: String::new(),
                count: saved.count,
                last_used: 0,
                generation: 0,
                live: true,
                variants: Vec::new(),
                keys: [0; INDEXED],
                hashes: Vec::new(),
                referenced: false,
                seq,
                exact: 0,
                prose: 0,
                prose_bits: 0,
                keyed: 0,
                annotated: false,
                bytes: 0,
            };
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            t.hashes = slot_hashes(&t.slots);
            // The evidence gathered so far, for constant positions only, bounded as the miner
            // bounds it.
            for v in saved.variants {
                if t.variants.len() >= MAX_EVIDENCE_POSITIONS {
                    break;
                }
                if matches!(t.slots.get(v.position as usize), Some(Slot::Exact(_)))
                    && !t.variants.iter().any(|(p, _)| *p == v.position)
                {
                    let mut values = Vec::with_capacity(v.values.len().min(MAX_SLOT_VALUES));
                    for value in v.values {
                        if values.len() == MAX_SLOT_VALUES {
                            break;
                        }
                        if !values.contains(&value) {
                            values.push(value);
                        }
                    }
                    t.variants.push((v.position, values));
                }
            }
            t.render();
            t.bytes = t.footprint();
            if self.template_bytes.saturating_add(t.bytes) > self.config.max_template_bytes {
                continue;
            }
            self.template_bytes += t.bytes;
            t.annotated = annotations(&t.slots).next().is_some();
            if t.annotated {
                *self.annotated_by_len.entry(t.slots.len()).or_default() += 1;
            }
            let index = self.templates.len() as u32;
            self.by_id.insert(id, index);
            self.by_len.entry(t.slots.len()).or_default().push(index);
            self.templates.push(t);
            self.index_template(index);
            self.live += 1;
        }
        for (from, to) in state.aliases.iter().take(self.config.max_aliases) {
            let (from, to) = (parse(from)?, parse(to)?);
            if from != to && !self.by_id.contains_key(&from) {
                self.add_alias(from, to);
            }
        }
        Ok(())
    }
}

/// Distinct values a slot of constant shape `own` needs before it is a variable, now that a
/// message otherwise like its template has `other` there: the evidence is the spelling of the
/// values, where the slot is, and whether the words were seen as parameters elsewhere. Also
/// whether the values must be rare, and whether the count is that of lower-case words (plain
/// or `key=word`), which [`TemplateMiner::mostly_verb_forms`] may raise.
fn variants_needed(
    own: &[u8],
    other: &[u8],
    pos: usize,
    len: usize,
    tuning: &Tuning,
    parameter_words: &ParameterWords,
) -> (usize, bool, bool) {
    // Two spellings of one kind of value (`rdd_<*>`, `<*>:<*>`, `<1 sec`) need no further
    // evidence.
    if same_kind_of_value(own, other) || (is_value_run(own) && is_value_run(other)) {
        return (2, false, false);
    }
    // Two masked values one mark apart, the mark in brackets after the value
    // (`<*>:<*>[C]` / `<*>:<*>[D]`, a PCI pin): one kind of value. Not a key (`rx=<*>` /
    // `tx=<*>` are two fields).
    if own.len() == other.len() && own.windows(3).any(|w| w == WILDCARD) {
        let mut apart = (1..own.len().saturating_sub(1)).filter(|&i| own[i] != other[i]);
        if let (Some(i), None) = (apart.next(), apart.next())
            && own[i].is_ascii_alphanumeric()
            && other[i].is_ascii_alphanumeric()
            && matches!((own[i - 1], own[i + 1]), (b'[', b']') | (b'(', b')'))
            && own[..i].windows(3).any(|w| w == WILDCARD)
        {
            return (2, false, false);
        }
    }
    // A value masked whole against an identifier (`<*>` and `default/web-gkqmj`: the masking
    // saw digits in one pod's name, none in the other's) is one kind of value, too.
    let masked = is_masked_whole;
    if (masked(own) && is_identifier(other)) || (masked(other) && is_identifier(own)) {
        return (2, false, false);
    }
    // A host or node name the masking cut (`tbird-<*>`) against one it left whole (`bn1`):
    // a name with a number against a name with a masked number.
    let numbered = |s: &[u8]| {
        let (_, core, _) = trim_wrappers(s);
        core.first().is_some_and(u8::is_ascii_alphabetic)
            && core.iter().any(u8::is_ascii_digit)
            && core.iter().all(u8::is_ascii_alphanumeric)
    };
    let cut = |s: &[u8]| value_like(s) && s.first().is_some_and(u8::is_ascii_alphabetic);
    if pos > 0 && ((cut(own) && numbered(other)) || (cut(other) && numbered(own))) {
        return (2, false, false);
    }
    // A command or path in parentheses, joined into one slot (`(run-parts <*>)`), against
    // another or a masked value (`(<*>)`).
    let joined = |s: &[u8]| s.starts_with(b"(") && s.ends_with(b")") && s.contains(&b' ');
    if (joined(own) && (joined(other) || masked(other))) || (joined(other) && masked(own)) {
        return (2, false, false);
    }
    // One name numbered differently (`eth0`/`eth1`, `node1`/`node12`) is one kind of value
    // when its values are rare; different names that happen to end in a digit (`alt0`,
    // `ee0`) are not.
    if tuning.numbered_names && same_name_numbered(own, other) {
        // As many values as lower-case words need, and rare ones: `ipv4`/`ipv6`, `ext3`/`ext4`
        // are two and repeat; interfaces and nodes are more, each seen a few times.
        return (tuning.variants, true, false);
    }
    // Names in brackets leading a short message (`(root) CMD ...`, `(nobody) CMD ...`): as
    // quoted words are, two rare ones, in the same brackets.
    if pos == 0
        && len < tuning.head_context
        && tuning.head_identifiers
        && is_bracketed_name(own)
        && is_bracketed_name(other)
    {
        return (tuning.quoted_word_variants, true, false);
    }
    // A quoted word (`"Liveness"`, `"readiness"`, `'tier'`) is a word: the word rules below
    // decide. What else is quoted (`"build-7f3a.local"`, `"John Smith"`, `[alpha, beta]`)
    // is a parameter.
    let quoted_value = |a: &[u8], b: &[u8]| {
        is_quoted(a) && is_quoted(b) && !(is_quoted_word(a) && is_quoted_word(b))
    };
    // Two quoted sentences in lower case (`msg="user logged in"`, `msg="cache warmed"`) are
    // messages: a vocabulary, as another phrase is.
    if tuning.phrases && is_quoted_prose(own) && is_quoted_prose(other) {
        return (tuning.upper_variants, false, true);
    }
    if quoted_value(own, other) {
        return (tuning.quoted_variants, false, false);
    }
    // A dotted or slashed name (`com.android.phone`, `nginx.service`, `team/app`) is a
    // package, unit, file or path name: a parameter, whichever event it appears in. Leading
    // a message, two file names are one only given the context a long message has
    // (`chrome.exe - ... open through proxy ...`); a short one's first token names it
    // (`rpc.idmapd startup succeeded`), as a class does (`java.io.IOException: ...`).
    // Two compound names with a digit (`tbird-admin1`, `etl_2`) are two names of things,
    // too. Compounds of letters only may be states (`read-only` / `read-write`) as well as
    // names (`billing-consumers` / `search-indexer`): they need `compound_variants` rare
    // values, fewer than plain words, more than two.
    let digits = |s: &[u8]| s.iter().any(u8::is_ascii_digit);
    let dotted = |a: &[u8], b: &[u8]| {
        let (a, b) = after_common_prefix(a, b);
        tuning.dotted_names
            && (pos > 0 || (len >= tuning.head_context && is_file_name(a) && is_file_name(b)))
            && (is_dotted(a)
                || is_dotted(b)
                || (is_compound(a) && is_compound(b) && (digits(a) || digits(b))))
    };
    let compounds = |a: &[u8], b: &[u8]| {
        let (a, b) = after_common_prefix(a, b);
        tuning.dotted_names && pos > 0 && is_compound(a) && is_compound(b)
    };
    let fields = field_value(own).zip(field_value(other));
    // Fields of one key; fields of different keys (`topActivity=...`, `num=...`) are
    // structure, which only the rules for plain tokens below may turn into a variable.
    let same_key =
        fields.is_some_and(|(a, b)| own[..own.len() - a.len()] == other[..other.len() - b.len()]);
    if let (Some((a, b)), true) = (fields, same_key) {
        // `pod="default/web-1"`: a quoted value is a parameter as it is without its key.
        if quoted_value(a, b) || dotted(a, b) {
            return (tuning.quoted_variants, false, false);
        }
        if compounds(a, b) {
            return (tuning.compound_variants, true, false);
        }
        return (tuning.field_variants, tuning.rare_words, true);
    }
    if fields.is_none() && dotted(own, other) {
        return (tuning.quoted_variants, false, false);
    }
    if fields.is_none() && compounds(own, other) {
        return (tuning.compound_variants, true, false);
    }
    if tuning.seen_as_parameter
        && is_plain_word(own)
        && is_plain_word(other)
        && [own, other]
            .iter()
            .any(|w| parameter_words.contains(xxh3_64(w)) || parameter_words.contains(word_key(w)))
    {
        // Not the first word, though: a word seen as a parameter elsewhere may still name the
        // event where it leads the message.
        return (
            if pos == 0 { tuning.head_variants } else { 2 },
            false,
            false,
        );
    }
    let (mut a, mut b) = (word_class(own), word_class(other));
    // A placeholder of no value (`-`) counts as the word it stands against: `QUEUED` / `-`
    // needs as many values as capitals do.
    if is_empty_value(own) {
        a = b;
    } else if is_empty_value(other) {
        b = a;
    }
    let names = matches!(a, WordClass::Name | WordClass::Upper)
        && matches!(b, WordClass::Name | WordClass::Upper);
    let by_spelling = if a == WordClass::Upper && b == WordClass::Upper {
        tuning.upper_variants
    } else if names {
        tuning.name_variants
    } else if is_quoted_word(own) && is_quoted_word(other) {
        // Quotes mark a value (`user: 'app'`, `region 'prices'`): fewer values than a bare
        // word needs, rare ones still.
        tuning.quoted_word_variants
    } else {
        tuning.variants
    };
    // Names need rare values; lower-case words too unless that evidence is switched off, but
    // not the first word, which its own rule ([`HEAD_VARIANTS`], [`HEAD_CONTEXT`]) governs.
    let rarity = names || (tuning.rare_words && pos > 0);
    if pos == 0 {
        (by_spelling.max(tuning.head_variants), rarity, !names)
    } else {
        (by_spelling, rarity, !names)
    }
}

/// Whether `shape` (or its value, for `key=word`) is a lower-case verb form: a past
/// participle or gerund by its ending, `-ed` or `-ing` after a stem of three letters or more
/// that has a vowel (the condition of Porter's step 1b: `queued`, `running`, `cancelled`, not
/// `need`, `king` or `string`). Such words name what happened (`failed`, `retrying`);
/// parameters (user, host and table names) rarely end that way.
fn is_verb_form(shape: &[u8]) -> bool {
    let (_, word, _) = trim_wrappers(field_value(shape).unwrap_or(shape));
    if !word.iter().all(u8::is_ascii_lowercase) {
        return false;
    }
    let stem = word
        .strip_suffix(b"ing")
        .or_else(|| word.strip_suffix(b"ed"))
        .unwrap_or_default();
    stem.len() >= 3
        && stem
            .iter()
            .any(|b| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y'))
}

/// Whether `shape` is a note on the token before it rather than a word of the message: a
/// number behind a sigil (`*64`, `#3`) or one value wrapped whole in brackets, not a field
/// (`(<*>)`, `[<*>]`, `(~u@example.org)`, `(host.example.org)`; not `(uid=<*>)`). Some
/// messages of an event carry such a note and others do not (`chrome.exe *64 - ...` beside
/// `chrome.exe - ...`: a 64-bit process). A word in brackets is no note while it is one word:
/// `[OK]` / `[FAILED]`, `(failed)`, `[preauth]`, `(read-only)` say what happened (a slot of
/// them that turned variable is: [`is_note_slot`]).
fn is_annotation(shape: &[u8]) -> bool {
    match shape {
        [b'*' | b'#', rest @ ..] => rest == WILDCARD,
        // A value: masked, or spelt with what names and addresses hold.
        _ => bracketed(shape).is_some_and(|inner| {
            inner.windows(3).any(|w| w == WILDCARD)
                || inner
                    .iter()
                    .any(|b| matches!(b, b'@' | b'/' | b'.' | b':' | b'~'))
        }),
    }
}

/// What one token wrapped whole in brackets holds, if it is one and no field: `(Alarm)`,
/// `[OK]`, `(<*>)`; not `(uid=<*>)`, `(a)(b)`.
fn bracketed(shape: &[u8]) -> Option<&[u8]> {
    match shape {
        [b'(', inner @ .., b')'] | [b'[', inner @ .., b']']
            if !inner.is_empty()
                && !inner.iter().any(|&b| {
                    b.is_ascii_whitespace() || matches!(b, b'=' | b'(' | b')' | b'[' | b']')
                }) =>
        {
            Some(inner)
        }
        _ => None,
    }
}

/// Whether a template's slot holds a note ([`is_annotation`]): a constant one, or a variable
/// whose values all were one token in brackets (`(<*>)` from `(~u@a/b)` and `(<*>)`).
fn is_note_slot(slot: &Slot) -> bool {
    match slot {
        Slot::Exact(s) => is_annotation(s.as_bytes()),
        Slot::Any(f) => matches!((&*f.prefix, &*f.suffix), ("(", ")") | ("[", "]")),
    }
}

/// Positions of the slots after the first that hold a note ([`is_note_slot`]), at most
/// [`MAX_ANNOTATIONS`].
fn annotations(slots: &[Slot]) -> impl Iterator<Item = usize> + '_ {
    slots
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, s)| is_note_slot(s))
        .map(|(d, _)| d)
        .take(MAX_ANNOTATIONS)
}

/// The fewest tokens of a record whose columns may hold `-`
/// ([`TemplateMiner::is_empty_column`]): a short message is words about a value or two, and a
/// `-` in it is one more word.
const MIN_RECORD: usize = 5;

/// Notes per message or template tried as absent ([`is_annotation`]): each try is a
/// candidate search, so a message of many notes costs no more than one of two.
const MAX_ANNOTATIONS: usize = 2;

/// A token that the masking replaced whole (`<*>`, `(<*>)`), punctuation around it aside.
fn is_masked_whole(s: &[u8]) -> bool {
    s == WILDCARD || trim_wrappers(s).1 == b"*"
}

/// Whether `shape` is a verb form ending in `-ed` ([`is_verb_form`]): a past participle.
fn is_participle(shape: &[u8]) -> bool {
    let (_, word, _) = trim_wrappers(field_value(shape).unwrap_or(shape));
    word.ends_with(b"ed") && is_verb_form(shape)
}

/// Whether `a` and `b` are one name with different numbers: the same letters (at least two),
/// then digits that differ, or a masked number (`eth0`/`eth1`, `node1`/`node12`, which
/// masks to `<*>`; not `sda1`/`sdb1`: the letters differ).
fn same_name_numbered(a: &[u8], b: &[u8]) -> bool {
    fn split(s: &[u8]) -> Option<(&[u8], &[u8])> {
        let (_, core, _) = trim_wrappers(s);
        let letters = core.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let (name, digits) = core.split_at(letters);
        // Longer numbers are masked already (`node<*>`).
        let number = digits == b"<*>" || digits.iter().all(u8::is_ascii_digit);
        (letters >= 2 && !digits.is_empty() && number).then_some((name, digits))
    }
    // A number too long to stay a name is masked whole (`node12` is `<*>`).
    match (split(a), split(b)) {
        (Some((la, da)), Some((lb, db))) => la == lb && da != db,
        (Some(_), None) => is_masked_whole(b),
        (None, Some(_)) => is_masked_whole(a),
        _ => false,
    }
}

/// Occurrences at most of a value that counts as rare (seen up to three times: a user who
/// logged in, ran a command and logged out; a host that connected, failed and disconnected).
pub const RARE_COUNT: u64 = 3;

/// Whether the values seen at `pos` are rare: at least [`RARE_SHARE`] percent (half) of the
/// distinct values occurred at most [`RARE_COUNT`] times among the messages that differ only
/// there (both are [`Tuning`] fields). Parameters (user
/// names, hosts) keep bringing new values, so most of theirs are rare even beside one
/// frequent value (`root`); a closed vocabulary (`GET`, `POST`) repeats its few. A vocabulary
/// whose members all appear for the first time in one burst cannot be told from parameters
/// by their counts at that moment; only its spelling can (capitals, names, lower-case verb
/// forms: [`TemplateMiner::mostly_verb_forms`]), and otherwise it merges.
fn values_are_rare(siblings: &[Siblings], pos: usize, tuning: &Tuning) -> bool {
    siblings.get(pos).is_some_and(|s| {
        u64::from(s.rare) * 100 >= u64::from(s.values) * u64::from(tuning.rare_share)
    })
}

/// Percent of the distinct values that must be rare ([`values_are_rare`]): half.
pub const RARE_SHARE: u32 = 50;

/// The evidence at one position, over the templates that differ from the message only there
/// (the message included).
#[derive(Clone, Copy, Debug)]
struct Siblings {
    /// Distinct values.
    values: u32,
    /// Values seen at most [`RARE_COUNT`] times.
    rare: u32,
    /// Messages with any of them.
    occurrences: u64,
}

/// Distinct values that make a slot a variable though its values are not rare, provided
/// they keep coming ([`MAX_REPEATS`]): parameters that repeat (each user logs in five times in
/// a row) bring new values well past the size of a vocabulary of states, methods or levels.
pub const MANY_VALUES: usize = 16;

/// Messages per distinct value at most, on average, for [`MANY_VALUES`] to count: cardinality
/// relative to occurrences. A vocabulary seen long enough repeats its members far more often
/// (sixteen event reasons, twenty times each, stay apart).
pub const MAX_REPEATS: u64 = 8;

/// Whether the messages that differ from the current one only at `pos` (the current one
/// included) show at least `many` distinct values there, each repeated few times.
fn many_values(siblings: &[Siblings], pos: usize, tuning: &Tuning) -> bool {
    siblings.get(pos).is_some_and(|s| {
        s.values as usize >= tuning.many_values
            && s.occurrences <= u64::from(s.values).saturating_mul(tuning.max_repeats)
    })
}

/// Bytes a quoted string with spaces may span to count as one value (a browser's user agent
/// fits).
const MAX_QUOTED: usize = 256;

/// The closing character of a token that opens a quoted string or a list: `"`, `'` or `[`.
fn closer(open: u8) -> Option<u8> {
    match open {
        b'"' => Some(b'"'),
        b'\'' => Some(b'\''),
        b'[' => Some(b']'),
        b'(' => Some(b')'),
        _ => None,
    }
}

/// Where a quoted string or list that `message[offset..offset + len]` opens and does not
/// close ends (one past its closing character), or 0. It must close within [`MAX_QUOTED`]
/// bytes, at the end of a word. A quoted string may hold anything (`"Mozilla/5.0 (X11;
/// Linux x86_64)"`, `'feature/new login'`) but a request line (`"GET /v1/a HTTP/1.1"`: a
/// method in capitals first), which is structure whose parts are compared one by one; a list
/// is items separated by commas (`[alpha, beta]`), not a bracketed prefix (`[task 12]`); a
/// parenthesised span is one value when it holds a path (`(run-parts /etc/cron.hourly)`).
fn quoted_string_end(message: &[u8], offset: usize, len: usize) -> usize {
    let token = &message[offset..offset + len];
    let Some((&open, inner)) = token.split_first() else {
        return 0;
    };
    let Some(close) = closer(open) else {
        return 0;
    };
    // A list's first item ends with a comma (checked first: `[task` and `[INFO]` are common).
    if (open == b'[' && !inner.ends_with(b",")) || inner.contains(&close) || inner.contains(&open) {
        return 0; // not a list, or closed (or odd) within the token itself
    }
    let rest_start = offset + len;
    // A token as long as the window itself opens no quoted string.
    let Some(window) = message.get(rest_start..message.len().min(offset + MAX_QUOTED)) else {
        return 0;
    };
    let Some(q) = memchr::memchr(close, window) else {
        return 0;
    };
    let body = &window[..q];
    if open == b'[' {
        // Items, no nested list.
        if body.contains(&b'[') {
            return 0;
        }
    } else if open == b'(' {
        // A command or path in parentheses (`(run-parts /etc/cron.hourly)`), not a remark
        // (`(Lifecycle Event)`, `(Got timeout reading communication packets)`).
        if body.contains(&b'(') || !(inner.contains(&b'/') || body.contains(&b'/')) {
            return 0;
        }
    } else {
        // A method in capitals, then a path or URL.
        let path = body.trim_ascii_start();
        let method = inner.len() >= 2
            && inner.iter().all(u8::is_ascii_uppercase)
            && (path.starts_with(b"/") || path.starts_with(b"http") || path.starts_with(b"*"));
        if method || body.contains(&open) {
            return 0;
        }
    }
    let end = rest_start + q + 1;
    // The closing character ends a word: `"John Smith",` yes, `"John Smi"th` no.
    match message.get(end) {
        None => end,
        Some(b)
            if b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'.' | b':' | b')' | b']') =>
        {
            end
        }
        Some(_) => 0,
    }
}

/// The per-slot hashes of [`Template::hashes`].
fn slot_hashes(slots: &[Slot]) -> Vec<u64> {
    slots
        .iter()
        .map(|s| match s {
            Slot::Exact(s) => xxh3_64(s.as_bytes()),
            Slot::Any(_) => ANY_TOKEN,
        })
        .collect()
}

/// The value of a `key=value` token, when it is one.
fn field_value(shape: &[u8]) -> Option<&[u8]> {
    let eq = shape.iter().position(|&b| b == b'=')?;
    (eq > 0).then(|| &shape[eq + 1..])
}

/// The spellings of no value: `-`, `()`, `[]`, `{}`, `""`, `''` (a trailing `,` or `;` aside).
fn is_empty_value(token: &[u8]) -> bool {
    let token = token
        .strip_suffix(b",")
        .or_else(|| token.strip_suffix(b";"))
        .unwrap_or(token);
    matches!(token, b"-" | b"()" | b"[]" | b"{}" | b"\"\"" | b"''")
}

/// Hashes of words seen as parameters, bounded: two generations of at most half the cap
/// each; when the newer fills up it becomes the older and the older is dropped, so the words
/// seen recently are always kept (clearing everything at once would forget them all).
#[derive(Default)]
struct ParameterWords {
    current: rustc_hash::FxHashSet<u64>,
    previous: rustc_hash::FxHashSet<u64>,
}

impl ParameterWords {
    fn remember(&mut self, words: &[u64]) {
        for &w in words {
            if self.current.contains(&w) {
                continue;
            }
            if self.current.len() >= MAX_PARAMETER_WORDS / 2 {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(w);
        }
    }

    fn contains(&self, word: u64) -> bool {
        self.current.contains(&word) || self.previous.contains(&word)
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.previous
            .iter()
            .filter(|w| !self.current.contains(w))
            .chain(&self.current)
            .copied()
    }
}

/// The key of a word in [`ParameterWords`]: the hash of the word without the punctuation or
/// quotes around it (`"app"`, `app,` and `app` are one word).
fn word_key(shape: &[u8]) -> u64 {
    xxh3_64(trim_wrappers(shape).1)
}

/// A token of letters only, perhaps with punctuation around it (`root`, `Started,`).
fn is_plain_word(shape: &[u8]) -> bool {
    let (_, core, _) = trim_wrappers(shape);
    !core.is_empty() && core.iter().all(u8::is_ascii_alphabetic)
}

/// A word of running text: letters, perhaps ending in punctuation (`finished`, `later.`),
/// not a prefix such as `[task` and not a level or constant in capitals (`INFO`).
fn is_prose_word(shape: &[u8]) -> bool {
    let letters = shape.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    letters > 0
        && shape[..letters].iter().any(u8::is_ascii_lowercase)
        && shape[letters..]
            .iter()
            .all(|b| matches!(b, b'.' | b',' | b';' | b':' | b'!' | b'?'))
}

/// Whether a short message's first token may vary ([`Tuning::head_identifiers`]): it names
/// a thing ([`is_identifier`]) or is a name in brackets ([`is_bracketed_name`]: the user of
/// `(root) CMD (run-parts /etc/cron.hourly)`).
fn may_vary_first(shape: &[u8]) -> bool {
    is_identifier(shape) || is_bracketed_name(shape)
}

/// A lower-case name wrapped whole in parentheses (`(root)`, `(nobody):`): a user or worker
/// the message is about, not what it says.
fn is_bracketed_name(shape: &[u8]) -> bool {
    let s = shape.strip_suffix(b":").unwrap_or(shape);
    // Parentheses: square brackets lead with what a step did (`[done]`, `[skip]`, `[pass]`).
    let [b'(', inner @ .., b')'] = s else {
        return false;
    };
    // Not a level (`(error)`, `(info)`) nor an outcome (`(failed)`, `(ok)`): those say what
    // happened.
    inner.len() >= 3
        && inner.first().is_some_and(u8::is_ascii_lowercase)
        && inner
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
        && !is_verb_form(inner)
        && std::str::from_utf8(inner).map_or(true, |w| opsloop_core::Level::parse(w).is_none())
}

/// A token that names a thing rather than saying something: letters joined by `.`, `_`, `@`,
/// `-` or `/` with other letters or digits (`nginx.service:`, `user@1000.service`,
/// `default/web-gkqmj`), wrapping punctuation aside; not a plain word (`Started`) and not a bare
/// value.
fn is_identifier(shape: &[u8]) -> bool {
    let (_, core, _) = trim_wrappers(shape);
    core.first().is_some_and(u8::is_ascii_alphabetic)
        && core
            .iter()
            .any(|b| matches!(b, b'.' | b'_' | b'@' | b'-' | b'/'))
        && core.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b'@' | b'-' | b'/' | b'<' | b'*' | b'>')
        })
}

/// A token that starts with a lower-case word of two letters or more and has no other
/// letters (`instruction`, `exception,`, `instruction......<*>`): a word of running text.
fn is_lower_word(shape: &[u8]) -> bool {
    let letters = shape.iter().take_while(|b| b.is_ascii_lowercase()).count();
    letters >= 2 && !shape[letters..].iter().any(u8::is_ascii_alphabetic)
}

/// A token (wrapping punctuation aside) with a `.` or `/` between two letters or digits and
/// nothing but letters, digits, masked parts and `._-/${}:@` (`com.android.phone`,
/// `nginx.service`, `team/app`, `ComponentInfo{com.example/.Main}`, `ghcr.io/acme/api:<*>`),
/// after a sigil or
/// escaped quote (`*core.Pod`): a package, unit, image, file or path name. Not a sentence's
/// last word (`done.`) nor a masked value alone.
fn is_dotted(shape: &[u8]) -> bool {
    let (_, core, _) = trim_wrappers(shape);
    // A pointer or reference sigil, an escaped quote (`*core.Pod`, `\"ghcr.io/acme/api\"`).
    let sigils = core
        .iter()
        .take_while(|b| matches!(b, b'*' | b'&' | b'\\' | b'"'))
        .count();
    let core = &core[sigils..];
    let core = core.strip_suffix(b"\\").unwrap_or(core);
    core.iter().any(u8::is_ascii_alphabetic)
        && core.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'_'
                        | b'-'
                        | b'/'
                        | b'$'
                        | b'{'
                        | b'}'
                        | b':'
                        | b'@'
                        | b'<'
                        | b'*'
                        | b'>'
                )
        })
        && core.windows(3).any(|w| {
            matches!(w[1], b'.' | b'/')
                && w[0].is_ascii_alphanumeric()
                && w[2].is_ascii_alphanumeric()
        })
}

/// A dotted name ([`is_dotted`]) ending in a lower-case extension, a label colon aside: a
/// program, unit or file (`chrome.exe`, `OneDrive.exe`, `nginx.service:`), not a class
/// (`java.io.IOException:`).
fn is_file_name(shape: &[u8]) -> bool {
    let name = shape.strip_suffix(b":").unwrap_or(shape);
    let extension = name.rsplit(|&b| b == b'.').next().unwrap_or_default();
    is_dotted(shape)
        && !extension.is_empty()
        && extension
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A token (wrapping punctuation aside) of letters and digits joined by `-` or `_`, with at
/// least one lower-case letter (`billing-consumers`, `etl_nightly`, `tbird-admin1`; not
/// `FAIL_CONTAINER_CLEANUP`).
fn is_compound(shape: &[u8]) -> bool {
    let (_, core, _) = trim_wrappers(shape);
    // Capitals joined by `_` are enumeration constants (`SUCCESS_CONTAINER_CLEANUP`).
    core.iter().any(u8::is_ascii_lowercase)
        && core
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && core.windows(3).any(|w| {
            matches!(w[1], b'-' | b'_')
                && w[0].is_ascii_alphanumeric()
                && w[2].is_ascii_alphanumeric()
        })
}

/// A quoted string of two or more lower-case words (a field's key aside), punctuation after a
/// word allowed: `"user logged in"`, `msg="etcdserver: request timed out"`.
fn is_quoted_prose(shape: &[u8]) -> bool {
    let value = field_value(shape).unwrap_or(shape);
    if !is_quoted(value) || !value.contains(&b' ') {
        return false;
    }
    let (_, core, _) = trim_wrappers(value);
    core.split(|&b| b == b' ').all(|w| {
        let letters = w.iter().take_while(|b| b.is_ascii_lowercase()).count();
        letters > 0
            && w[letters..]
                .iter()
                .all(|b| matches!(b, b'.' | b',' | b':' | b';' | b'!' | b'?'))
    })
}

/// A token that is one word in quotes or brackets: letters and inner hyphens only
/// (`"readiness"`, `'half-open'`, `[worker]`), trailing `,;.:` aside.
fn is_quoted_word(shape: &[u8]) -> bool {
    let (_, core, _) = trim_wrappers(shape);
    is_quoted(shape)
        && core.first().is_some_and(u8::is_ascii_alphabetic)
        && core.last().is_some_and(u8::is_ascii_alphabetic)
        && core.iter().all(|&b| b.is_ascii_alphabetic() || b == b'-')
}

/// A token wholly inside quotes or brackets (`"ci-runner"`, `'x'`, `[worker]`), trailing
/// `,;.:` aside.
fn is_quoted(shape: &[u8]) -> bool {
    let end = shape.len()
        - shape
            .iter()
            .rev()
            .take_while(|b| matches!(b, b',' | b';' | b'.' | b':'))
            .count();
    let s = &shape[..end];
    s.len() >= 3
        && matches!(
            (s[0], s[s.len() - 1]),
            (b'"', b'"') | (b'\'', b'\'') | (b'[', b']') | (b'<', b'>') | (b'`', b'`')
        )
        && !(s[0] == b'<' && is_value_run(s))
}

/// A slot holding a run of values, units included (`<*> bytes (<*> KB)`, `<<*> sec`).
fn is_value_run(shape: &[u8]) -> bool {
    // Every run starts with a value: most shapes (words) are out without splitting.
    if !shape.contains(&b'<') {
        return false;
    }
    let mut pieces = shape.split(|&b| b == b' ');
    pieces.next().is_some_and(is_value_shape)
        && pieces.all(|p| is_value_shape(p) || is_unit_word(p) || is_empty_value(p))
}

/// `a` and `b` without the prefix they share up to its last delimiter (`action:` of
/// `action:android.intent.action.SCREEN_ON` and `action:android.intent.action.TIME_TICK`).
fn after_common_prefix<'a, 'b>(a: &'a [u8], b: &'b [u8]) -> (&'a [u8], &'b [u8]) {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let cut = a[..common]
        .iter()
        .rposition(|&c| matches!(c, b'=' | b':' | b'(' | b'[' | b'"' | b'\'' | b','))
        .map_or(0, |i| i + 1);
    (&a[cut..], &b[cut..])
}

/// Whether two masked shapes are two spellings of one kind of value: both value-like after
/// their common `key=`/`key:` prefix (`rhost=<*>` and `rhost=ip-<*>`, `rdd_<*>` and `<*>`).
fn same_kind_of_value(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = after_common_prefix(a, b);
    if value_like(a) && value_like(b) {
        return true;
    }
    // A value against no value: `()` and `(<*>)`, `rhost=` and `rhost=<*>`.
    let without = |s: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if s[i..].starts_with(b"<*>") {
                i += 3;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    };
    let punct_only = |s: &[u8]| s.iter().all(u8::is_ascii_punctuation);
    (value_like(a) && punct_only(b) && without(a) == b)
        || (value_like(b) && punct_only(a) && without(b) == a)
}

/// A masked shape that is one value, perhaps with a name prefix and punctuation (`<*>`,
/// `rdd_<*>`, `<*>:<*>`), as opposed to structure such as `uid=<*>` or `Info{<*>}`.
fn value_like(shape: &[u8]) -> bool {
    if !shape.windows(3).any(|w| w == b"<*>") {
        return false;
    }
    let mut rest = Vec::with_capacity(shape.len());
    let mut i = 0;
    while i < shape.len() {
        if shape[i..].starts_with(b"<*>") {
            i += 3;
        } else {
            rest.push(shape[i]);
            i += 1;
        }
    }
    let name = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    !rest.contains(&b'=') && rest[name..].iter().all(u8::is_ascii_punctuation)
}

/// Creation orders a state may hold (beyond, the file's order is used instead).
const MAX_SAVED_SEQ: u64 = 1 << 48;

/// The version of [`MinerState`] written. Version 1 (no evidence, aliases or parameter words)
/// is still read; its templates keep their ids, but messages whose values now form one slot
/// (`512 bytes (0.5 KB)`) are shaped differently and start templates of their own.
pub const MINER_STATE_VERSION: u32 = 3;

/// The miner's saved state (`--state FILE`), a JSON document.
#[derive(Debug, Serialize, Deserialize)]
pub struct MinerState {
    /// Format version.
    pub version: u32,
    /// The templates, each with its id, count and slots (`null` for a wildcard position).
    pub templates: Vec<SavedTemplate>,
    /// Ids of templates folded into others, and the id each now resolves to: events already
    /// emitted with the old id stay resolvable after a restart.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub aliases: std::collections::BTreeMap<String, String>,
    /// Hashes (XXH3-64) of words seen in variable slots: parameters wherever they appear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_words: Vec<u64>,
}

/// One saved template.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedTemplate {
    /// The id as printed.
    pub id: String,
    /// Creation order among the saved templates (version 3; older states use file order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Messages seen.
    pub count: u64,
    /// Token shapes, or the frame of a variable.
    pub slots: Vec<SavedSlot>,
    /// Hashes of the values seen at constant positions where otherwise equal messages
    /// differed: the evidence towards making them variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<SavedVariants>,
}

/// The values seen at one constant position of a saved template.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedVariants {
    /// The position (0-based token slot).
    pub position: u32,
    /// Hashes (XXH3-64) of the distinct values.
    pub values: Vec<u64>,
}

/// One saved template position.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SavedSlot {
    /// A constant token shape.
    Exact(String),
    /// A variable, with the text its values shared around it.
    Variable {
        /// Text before the value (`user=`).
        prefix: String,
        /// Punctuation after the value.
        suffix: String,
    },
}

/// Why a saved state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum MinerStateError {
    /// Written by an incompatible version.
    #[error("unsupported miner state version {0}")]
    Version(u32),
    /// A template id that is not 16 hex digits.
    #[error("invalid template id {0:?}")]
    BadId(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(lines: &[&str]) -> (TemplateMiner, Vec<Assignment>) {
        let mut m = TemplateMiner::default();
        let a = lines.iter().map(|l| m.add(l)).collect();
        (m, a)
    }

    #[test]
    fn same_shape_same_template() {
        let (m, a) = mine(&["took 12ms to read 4 blocks", "took 7ms to read 19 blocks"]);
        assert_eq!(a[0].id, a[1].id);
        assert_eq!(
            m.template(a[0].index).map(Template::text),
            Some("took <*> to read <*> blocks")
        );
    }

    #[test]
    fn word_variable_generalises_and_keeps_id() {
        let (m, a) = mine(&[
            "session opened for user root by (uid=0)",
            "session opened for user alice by (uid=1000)",
            "session opened for user bob by (uid=1001)",
            "session opened for user carol by (uid=1002)",
        ]);
        assert_ne!(a[0].id, a[1].id, "two values are not yet a variable");
        assert_ne!(
            a[0].id, a[2].id,
            "nor three: a vocabulary of three states is common"
        );
        assert_eq!(a[0].id, a[3].id);
        assert!(a[3].generalised);
        assert_eq!(m.resolve(a[1].id).map(Template::id), Some(a[0].id));
        let t = m.template(a[3].index).map(Template::text);
        assert_eq!(t, Some("session opened for user <*> by (uid=<*>)"));
    }

    #[test]
    fn different_first_words_stay_apart() {
        let (_, a) = mine(&[
            "normal",
            "warning",
            "Starting installer",
            "Ending installer",
        ]);
        assert_ne!(a[0].id, a[1].id);
        assert_ne!(a[2].id, a[3].id);
    }

    #[test]
    fn first_word_generalises_only_with_context() {
        let programs = [
            "chrome.exe",
            "Dropbox.exe",
            "QQ.exe",
            "svchost.exe",
            "git.exe",
        ];
        let long: Vec<String> = programs
            .iter()
            .map(|p| {
                format!(
                    "{p} - proxy.example.com:5070 open through proxy proxy.example.com:5070 HTTPS"
                )
            })
            .collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let (m, a) = mine(&long);
        assert!(same_template(&m, &a[0], &a[4]));
        let short = [
            "boot (command 1)",
            "wait (command 2)",
            "halt (command 3)",
            "risBoot (command 4)",
        ];
        let (_, a) = mine(&short);
        assert_ne!(a[0].id, a[3].id, "three tokens are too little context");
    }

    /// Whether all of `lines` end in one template.
    /// Whether two assignments resolve to one template now.
    fn same_template(m: &TemplateMiner, x: &Assignment, y: &Assignment) -> bool {
        let x = m.resolve(x.id).map(Template::id);
        x.is_some() && x == m.resolve(y.id).map(Template::id)
    }

    fn one_template(lines: &[&str]) -> bool {
        let (m, a) = mine(lines);
        let ids: Vec<_> = a
            .iter()
            .map(|a| m.resolve(a.id).map(Template::id))
            .collect();
        ids[0].is_some() && ids.iter().all(|id| *id == ids[0])
    }

    /// How many templates `lines` end in.
    fn distinct_templates(lines: &[&str]) -> usize {
        let (m, a) = mine(lines);
        let mut ids: Vec<_> = a
            .iter()
            .map(|a| m.resolve(a.id).map(Template::id))
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    /// Whether every line of `lines` ends in a template of its own.
    fn all_apart(lines: &[&str]) -> bool {
        distinct_templates(lines) == lines.len()
    }

    #[test]
    fn closed_vocabularies_stay_apart() {
        assert!(all_apart(&[
            "job 12 entered QUEUED",
            "job 13 entered RUNNING",
            "job 14 entered DONE",
            "job 15 entered FAILED",
            "job 16 entered CANCELLED",
            "job 17 entered RETRYING",
        ]));
        assert!(all_apart(&[
            "job 12 entered queued state",
            "job 13 entered running state",
        ]));
        // A lifecycle in lower case, each state seen once, in one burst.
        assert!(all_apart(&[
            "job 12 entered queued",
            "job 13 entered running",
            "job 14 entered done",
            "job 15 entered failed",
            "job 16 entered cancelled",
            "job 17 entered retrying",
        ]));
        assert!(all_apart(&[
            "\"PUT /v1/a\" 200",
            "\"HEAD /v1/a\" 200",
            "\"PATCH /v1/a\" 200",
            "\"GET /v1/a\" 200",
        ]));
        assert!(all_apart(&[
            "task_1 Task Transitioned from NEW to SCHEDULED",
            "task_2 Task Transitioned from SCHEDULED to RUNNING",
            "task_3 Task Transitioned from RUNNING to SUCCEEDED",
            "task_4 Task Transitioned from RUNNING to FAILED",
        ]));
        assert!(all_apart(&[
            "[instance: 9f0c] VM Started (Lifecycle Event)",
            "[instance: 9f0d] VM Stopped (Lifecycle Event)",
            "[instance: 9f0e] VM Paused (Lifecycle Event)",
            "[instance: 9f0f] VM Resumed (Lifecycle Event)",
        ]));
        // Component names with a digit (`alt0`, `ee0`) are names too.
        assert!(all_apart(&[
            "Component State Change: Component alt0 is in the unavailable state",
            "Component State Change: Component ee0 is in the unavailable state",
            "Component State Change: Component scip0 is in the unavailable state",
            "Component State Change: Component psu1 is in the unavailable state",
        ]));
    }

    #[test]
    fn a_closed_vocabulary_repeats_its_words() {
        // Many methods, each seen often: still a closed vocabulary.
        let methods = [
            "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE",
        ];
        let mut lines = Vec::new();
        for round in 0..5 {
            for m in methods {
                lines.push(format!("10.0.0.{round} \"{m} /api/{round} HTTP/1.1\" 200"));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), methods.len());
    }

    #[test]
    fn rare_names_are_parameters() {
        // Capitalised names, each seen once and many of them: an open vocabulary.
        let hosts = [
            "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel",
        ];
        let lines: Vec<String> = hosts
            .iter()
            .map(|h| format!("backup finished on host {h} without errors"))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let last = m.resolve(a[7].id).map(Template::text);
        assert_eq!(last, Some("backup finished on host <*> without errors"));
    }

    #[test]
    fn lower_case_parameters_merge() {
        assert!(one_template(&[
            "session opened for user alice by (uid=0)",
            "session opened for user bob by (uid=0)",
            "session opened for user carol by (uid=0)",
            "session opened for user dave by (uid=0)",
        ]));
    }

    /// 40 lower-case user names (a few end like verb forms: `alfred`, `sterling`).
    const USERS: [&str; 40] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
        "yolanda", "zoe", "quentin", "xavier", "oscar", "uma", "alfred", "sterling", "wendy",
        "bruno", "chen", "dmitri", "elena", "farid", "gustav", "hana", "igor", "jamal", "kenji",
        "lucia", "mateo",
    ];

    #[test]
    fn many_lower_case_users_interleaved_merge() {
        // 40 users, each logging in one to three times, their sessions interleaved with each
        // other and with other traffic.
        let mut lines = Vec::new();
        for round in 0..3 {
            for (i, user) in USERS.iter().enumerate() {
                if i % 3 >= round {
                    lines.push(format!("session opened for user {user} by (uid=0)"));
                    lines.push(format!("connection from 10.0.{round}.{i} closed by peer"));
                }
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let sessions: Vec<_> = a
            .iter()
            .step_by(2)
            .map(|a| m.resolve(a.id).map(Template::id))
            .collect();
        assert!(sessions.iter().all(|id| *id == sessions[0]));
        assert_eq!(
            sessions[0].and_then(|id| m.resolve(id)).map(Template::text),
            Some("session opened for user <*> by (uid=<*>)")
        );
        assert_eq!(distinct_templates(&lines), 2);
    }

    /// Six states of a job scheduler, in lower case (past participles, gerunds, and `done`).
    const LIFECYCLE: [&str; 6] = [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
        "retrying",
    ];

    #[test]
    fn a_lower_case_lifecycle_stays_apart_over_rounds() {
        // Every job walks through the states: each state first appears in one burst (as
        // rarely as a parameter would), then all of them repeat with new job ids.
        let mut lines = Vec::new();
        for round in 0..10 {
            for (i, state) in LIFECYCLE.iter().enumerate() {
                lines.push(format!("job {} entered {state}", 12 + round * 6 + i));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(all_apart(&lines[..6]));
        assert_eq!(distinct_templates(&lines), LIFECYCLE.len());
    }

    #[test]
    fn a_lower_case_lifecycle_in_fields_stays_apart() {
        let lines: Vec<String> = LIFECYCLE
            .iter()
            .enumerate()
            .map(|(i, state)| format!("reconciled job={} state={state} attempt=1", 12 + i))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(all_apart(&lines));
    }

    #[test]
    fn verb_forms_are_told_by_their_ending() {
        for word in [
            "queued",
            "running",
            "failed",
            "cancelled",
            "retrying",
            "state=pending",
            "(stopped)",
        ] {
            assert!(is_verb_form(word.as_bytes()), "{word}");
        }
        // Short stems, stems without a vowel, other spellings.
        for word in [
            "done", "need", "king", "string", "alice", "Started", "RUNNING", "ed",
        ] {
            assert!(!is_verb_form(word.as_bytes()), "{word}");
        }
    }

    #[test]
    fn a_lower_case_lifecycle_stays_apart_amid_other_traffic() {
        // The same lifecycle interleaved with sessions of many users, whose names merge.
        let mut lines = Vec::new();
        let mut users = USERS.iter().cycle();
        for round in 0..10 {
            for (i, state) in LIFECYCLE.iter().enumerate() {
                lines.push(format!("job {} entered {state}", 12 + round * 6 + i));
                if let Some(user) = users.next() {
                    lines.push(format!("session opened for user {user} by (uid=0)"));
                }
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let resolved: Vec<_> = a
            .iter()
            .map(|a| m.resolve(a.id).map(Template::id))
            .collect();
        let states: FxHashSet<_> = resolved.iter().step_by(2).collect();
        let sessions: FxHashSet<_> = resolved.iter().skip(1).step_by(2).collect();
        assert_eq!(states.len(), LIFECYCLE.len(), "one template per state");
        assert_eq!(sessions.len(), 1, "one template for all sessions");
        assert!(states.is_disjoint(&sessions));
    }

    #[test]
    fn words_seen_as_parameters_are_parameters_elsewhere() {
        let (m, a) = mine(&[
            "Accepted publickey for alice from 10.0.0.1",
            "Accepted publickey for bob from 10.0.0.1",
            "Accepted publickey for carol from 10.0.0.1",
            "Accepted publickey for dave from 10.0.0.1",
            // `alice` and `bob` were values of a variable: two are enough here.
            "disconnected user alice",
            "disconnected user bob",
        ]);
        assert!(same_template(&m, &a[4], &a[5]));
    }

    #[test]
    fn short_messages_behind_a_prefix_stay_apart() {
        assert!(all_apart(&[
            "[task 1] Upload finished",
            "[task 2] Cache warmed",
            "[task 3] Retrying later",
            "[task 4] lease renewed",
            "[task 5] queue drained",
            "[task 6] checkpoint written",
        ]));
    }

    #[test]
    fn values_of_varying_length_are_one_variable() {
        assert!(one_template(&[
            "copied 512 bytes (0.5 KB) in 3 ms",
            "copied 12 bytes in 1 ms",
            "copied 2048 bytes (2.00 KB) in 9 ms",
        ]));
        assert!(one_template(&[
            "request done, elapsed <1 sec",
            "request done, elapsed 00:01:02",
            "request done, elapsed 00:07",
        ]));
        assert!(one_template(&[
            "compaction took 1.2s",
            "compaction took 1m 3s",
            "compaction took 45s",
        ]));
        assert!(one_template(&[
            "listening on ports [8080, 8443, 9090]",
            "listening on ports [8080]",
            "listening on ports [80, 443]",
        ]));
        assert!(one_template(&[
            "chrome.exe - example.com:443 close, 1170 bytes (1.14 KB) sent, 8218 bytes (8.02 KB) received, lifetime 00:01",
            "chrome.exe - example.com:443 close, 0 bytes sent, 0 bytes received, lifetime <1 sec",
            "chrome.exe - example.com:443 close, 403 bytes sent, 12 bytes received, lifetime 02:12:43",
        ]));
        // A template keeps its first spelling on display, and its units.
        let (m, a) = mine(&["backup took 3 ms", "backup took 12 ms"]);
        assert_eq!(
            m.resolve(a[1].id).map(Template::text),
            Some("backup took <*> ms")
        );
    }

    #[test]
    fn quoted_values_are_parameters() {
        assert!(one_template(&[
            "node renamed to \"build-7f3a.local\"",
            "node renamed to \"ci-runner\"",
        ]));
        // Quoted strings of any characters but a request line are one value.
        assert!(one_template(&[
            "checked out branch 'feature/new login' at 3f2a9c1",
            "checked out branch 'main' at 77b01de",
            "checked out branch 'fix/typo in docs' at 0c4d2e8",
        ]));
        let agent =
            |a: &str| format!("10.0.0.7 - - \"GET /v1/cart HTTP/1.1\" 200 512 \"-\" \"{a}\"");
        let lines = [
            agent("curl/8.4.0"),
            agent(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            ),
            agent("kube-probe/1.28"),
            agent(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            ),
        ];
        assert!(one_template(&lines.each_ref().map(String::as_str)));
        // Lists of words of any length are one value; a bracketed prefix is no list.
        assert!(one_template(&[
            "enabled features [alpha, beta]",
            "enabled features [canary]",
            "enabled features [alpha, beta, darkmode]",
        ]));
        assert!(all_apart(&[
            "[task 1] Upload finished",
            "[task 2] Cache warmed"
        ]));
        // A quoted word is a word: label keys merge as lower-case parameters do, once four
        // rare ones were seen.
        assert!(one_template(&[
            "applying label 'tier'",
            "applying label 'team'",
            "applying label 'zone'",
            "applying label 'env'",
        ]));
    }

    #[test]
    fn a_quoted_vocabulary_that_repeats_stays_apart() {
        // Probe kinds and results in lower case, each pair seen many times over many pods.
        let lines: Vec<String> = (0..40)
            .map(|i| {
                let probe = ["readiness", "liveness"][i % 2];
                let status = ["ready", "unhealthy"][(i / 2) % 2];
                format!(
                    "Probe result probe=\"{probe}\" pod=\"default/web-{i:05x}\" status=\"{status}\""
                )
            })
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 4);
    }

    #[test]
    fn a_vocabulary_of_three_states_stays_apart() {
        // The usual state often, the others once each, as a health checker logs them: at three
        // values the counts cannot tell states from users, so three are not enough.
        let mut lines: Vec<String> = (0..20)
            .map(|i| format!("backend 10.0.0.{i}:8080 marked healthy after 3 checks"))
            .collect();
        lines.push("backend 10.0.0.3:8080 marked degraded after 1 checks".into());
        lines.push("backend 10.0.0.4:8080 marked unhealthy after 2 checks".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 3);
        // Two lower-case slots: the breaker's name is a parameter, its state is not.
        let mut lines = Vec::new();
        for (i, name) in [
            "payments",
            "inventory",
            "search",
            "accounts",
            "pricing",
            "orders",
        ]
        .iter()
        .enumerate()
        {
            for state in ["open", "half-open", "closed"]
                .iter()
                .cycle()
                .skip(i)
                .take(3)
            {
                lines.push(format!("circuit breaker {name} changed state to {state}"));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let texts: std::collections::BTreeSet<_> = a
            .iter()
            .filter_map(|a| m.resolve(a.id).map(|t| t.text().to_string()))
            .collect();
        assert_eq!(
            texts.into_iter().collect::<Vec<_>>(),
            [
                "circuit breaker <*> changed state to closed",
                "circuit breaker <*> changed state to half-open",
                "circuit breaker <*> changed state to open",
            ]
        );
    }

    #[test]
    fn another_phrase_is_another_event() {
        // Two lower-case words replaced together, each phrase first seen once in one burst.
        let lines = [
            "scrub of disk 3: bad sector found",
            "scrub of disk 4: checksum mismatch found",
            "scrub of disk 5: unreadable block found",
            "scrub of disk 6: media error found",
            "scrub of disk 7: stale mapping found",
        ];
        assert!(all_apart(&lines));
        // Without the rule they would merge at the fourth phrase.
        let mut m = TemplateMiner::new(MinerConfig {
            tuning: Tuning {
                phrases: false,
                ..Tuning::default()
            },
            ..MinerConfig::default()
        });
        let ids: Vec<_> = lines.iter().map(|l| m.add(l).id).collect();
        assert_eq!(m.resolve(ids[0]).map(Template::id), Some(ids[3]));
        // One word still merges as a parameter does.
        assert!(one_template(&[
            "scrub of disk 3 by alice: bad sector found",
            "scrub of disk 4 by bob: bad sector found",
            "scrub of disk 5 by carol: bad sector found",
            "scrub of disk 6 by dave: bad sector found",
        ]));
    }

    #[test]
    fn dotted_names_are_parameters() {
        // Package and unit names repeat (a few apps hold most wake locks), yet they are
        // parameters: their shape says so.
        let mut lines = Vec::new();
        for round in 0..6 {
            for (tag, name) in [
                ("\"ViewLock\"", "com.example.systemui"),
                ("\"AudioMix\"", "audioserver"),
                ("\"*alarm*\"", "com.example.phone"),
            ] {
                lines.push(format!(
                    "acquire lock={}, flags=0x1, tag={tag}, name={name}, uid=10{round}",
                    233 + round
                ));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(one_template(&lines));
        assert!(one_template(&[
            "Reloaded nginx.service after config change",
            "Reloaded sshd.service after config change",
        ]));
    }

    #[test]
    fn a_variable_of_key_values_keeps_its_key() {
        // `topActivity=` values merge; a message with another key there is another event.
        let (m, a) = mine(&[
            "recent tasks: topActivity=ComponentInfo{com.example.mail/.Inbox}",
            "recent tasks: topActivity=ComponentInfo{com.example.maps/.Main}",
            "recent tasks: num=20,flags=62,total=46",
            "recent tasks: num=12,flags=62,total=40",
        ]);
        assert_eq!(a[0].id, a[1].id);
        assert_ne!(a[0].id, a[2].id);
        assert_eq!(
            m.resolve(a[0].id).map(Template::text),
            Some("recent tasks: topActivity=ComponentInfo{<*>}")
        );
    }

    #[test]
    fn quoted_values_after_a_key_are_one_value() {
        // logfmt: a quoted value with spaces is one slot, and a parameter.
        assert!(one_template(&[
            "level=info msg=\"user logged in\" user=\"Ana Maria de Souza\" took=7ms",
            "level=info msg=\"user logged in\" user=\"Jean-Luc Picard\" took=12ms",
            "level=info msg=\"user logged in\" user=\"Eve\" took=3ms",
        ]));
        let (m, a) = mine(&[
            "\"Failed to update lease\" err=\"context deadline exceeded\" lease=\"node-6\"",
            "\"Failed to update lease\" err=\"unexpected EOF\" lease=\"node-2\"",
            // Capitals first are no request line without a path after them.
            "\"Failed to update lease\" err=\"TLS handshake timeout\" lease=\"node-3\"",
        ]);
        assert!(a.iter().all(|x| x.id == a[0].id), "{a:?}");
        assert_eq!(
            m.resolve(a[0].id).map(Template::text),
            Some("\"Failed to update lease\" err=\"<*>\" lease=\"node-<*>\"")
        );
        // The messages themselves, quoted sentences in lower case, stay apart.
        assert!(all_apart(&[
            "level=info msg=\"user logged in\" user=ana",
            "level=info msg=\"user logged out\" user=ana",
            "level=info msg=\"session expired\" user=ana",
            "level=info msg=\"password changed\" user=ana",
        ]));
    }

    #[test]
    fn constants_in_capitals_joined_by_underscores_stay_apart() {
        assert!(all_apart(&[
            "container_7 transitioned from RUNNING to SUCCESS_CONTAINER_CLEANUP",
            "container_8 transitioned from RUNNING to FAIL_CONTAINER_CLEANUP",
            "container_9 transitioned from RUNNING to EXITED_WITH_FAILURE",
        ]));
        // Lower-case compounds of letters only must be rare to merge: states that repeat
        // (`read-only`, `read-write`) stay apart once they have repeated.
        let lines: Vec<String> = (0..12)
            .map(|i| format!("volume {i} mounted {}", ["read-only", "read-write"][i / 6]))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 2);
        // Three such states, each repeated before the next appears: enough values, but not
        // rare ones.
        let lines: Vec<String> = (0..30)
            .map(|i| {
                let mode = ["read-only", "read-write", "no-access"][i / 10];
                format!("volume {i} mounted {mode}")
            })
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 3);
    }

    #[test]
    fn names_behind_a_sigil_are_dotted_names() {
        assert!(one_template(&[
            "watch of *core.Pod closed",
            "watch of *core.Secret closed",
        ]));
        // Image references with a tag, and names inside escaped quotes.
        assert!(one_template(&[
            "pulling image ghcr.io/acme/api:v2 for pod",
            "pulling image docker.io/library/nginx:1.27 for pod",
        ]));
        assert!(one_template(&[
            r#"msg="pulled image \"ghcr.io/acme/api\" in 3s""#,
            r#"msg="pulled image \"quay.io/org/web\" in 3s""#,
        ]));
    }

    #[test]
    fn a_quoted_parameter_is_a_parameter_unquoted_too() {
        let (m, a) = mine(&[
            "granted role to user \"app\" on db",
            "granted role to user \"etl\" on db",
            "revoked role from app",
            "revoked role from etl",
        ]);
        assert!(same_template(&m, &a[2], &a[3]));
    }

    #[test]
    fn a_run_of_values_is_no_quoted_string() {
        let (m, a) = mine(&[
            "retry after 120 ms: 503 Service Unavailable",
            "retry after 3 s: 502 Service Unavailable",
        ]);
        let text = m.resolve(a[1].id).map(Template::text).unwrap_or_default();
        assert!(!text.contains("<<*>"), "{text}");
        assert_eq!(a[0].id, a[1].id);
    }

    #[test]
    fn a_command_in_parentheses_is_one_value() {
        assert!(one_template(&[
            "(root) CMD (run-parts /etc/cron.hourly)",
            "(root) CMD (/usr/lib/sa/sa1 1 1)",
            "(root) CMD (run-parts /etc/cron.daily)",
        ]));
        // A remark in parentheses is not joined, nor is a size's unit taken from its run.
        let (m, a) = mine(&[
            "VM Started (Lifecycle Event)",
            "VM Paused (Lifecycle Event)",
        ]);
        assert_eq!(m.template(a[0].index).map(Template::len), Some(4));
        assert!(one_template(&[
            "copied 512 bytes (0.5 KB) in 3 ms",
            "copied 12 bytes in 1 ms",
        ]));
    }

    #[test]
    fn a_name_the_masking_cut_is_one_kind_with_a_numbered_name() {
        // `tbird-admin1` masks to `tbird-<*>`, `bn1` stays whole: both are server names.
        assert!(one_template(&[
            "nfs: server tbird-admin1 not responding, still trying",
            "nfs: server bn1 not responding, still trying",
        ]));
        // Different names that end in a digit, with no masked one among them, stay apart.
        assert!(all_apart(&[
            "component alt0 state changed",
            "component ee0 state changed",
        ]));
    }

    #[test]
    fn a_note_some_messages_lack_is_one_event() {
        let short = "chrome.exe - a.example.com:443 open through proxy gw.example.edu:5070 HTTPS";
        let long =
            "chrome.exe *64 - b.example.com:443 open through proxy gw.example.edu:5070 HTTPS";
        // Either comes first.
        assert!(one_template(&[short, long]));
        assert!(one_template(&[long, short]));
        let (m, a) = mine(&[long, short, long]);
        assert!(same_template(&m, &a[0], &a[1]) && same_template(&m, &a[1], &a[2]));
        assert_eq!(m.len(), 1);
        assert_eq!(
            m.resolve(a[0].id).map(Template::count),
            Some(3),
            "the folded template's messages are counted"
        );
        // A template that varies where the other is constant: the shorter widens there,
        // whichever generalised first.
        let mut lines = vec![
            "svchost.exe *64 - a.example.com:443 error : Could not connect to proxy gw.example.edu:5070".to_string(),
        ];
        for p in [
            "chrome.exe",
            "Teams.exe",
            "firefox.exe",
            "slack.exe",
            "git.exe",
        ] {
            lines.push(format!(
                "{p} - b.example.com:443 error : Could not connect to proxy gw.example.edu:5070"
            ));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(one_template(&lines));
        let mut reversed = lines.clone();
        reversed.reverse();
        assert!(one_template(&reversed));
        // A value in brackets is a note too.
        assert!(one_template(&[
            "Wake reason: RTC (0x1f) after sleep of 5 min",
            "Wake reason: RTC after sleep of 7 min",
        ]));
        // A word in brackets is not: it says what happened.
        assert!(all_apart(&[
            "Checking filesystem /dev/sda1 [OK]",
            "Checking filesystem /dev/sdb1 [FAILED]",
            "Checking filesystem /dev/sdc1",
        ]));
        assert!(all_apart(&[
            "Connection closed by 10.0.0.1 port 40000 [preauth]",
            "Connection closed by 192.168.1.4 port 50022",
        ]));
        assert!(all_apart(&[
            "backup job nightly-4 finished (failed) after 5 min",
            "backup job nightly-5 finished after 3 min",
        ]));
        // Once such words have shown they are values (a slot of many), the slot is a note
        // and the message without it joins. (Not the other way round: the words that come
        // after a fold have no slot to show it in, and stay apart until they do again.)
        let reasons = [
            "Alarm", "Timer", "Network", "User", "Lid", "Power", "Button",
        ];
        let mut lines: Vec<String> = reasons
            .iter()
            .enumerate()
            .map(|(i, r)| format!("Wake reason: RTC ({r}) after sleep of {i} min"))
            .collect();
        lines.push("Wake reason: RTC after sleep of 4 min".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(one_template(&lines));
        // A token in brackets of any spelling is a note too, also once its slot varies: a
        // masked nick joins its `(user@host)` into one value, a plain nick does not.
        assert!(one_template(&[
            "Client exiting: moonwalker (bob@ip-51-15-4-9.eu) [Ping timeout: 240 seconds]",
            "Client exiting: ChanServ (~alice@ip-51-15-4-9.eu) [Ping timeout: 240 seconds]",
            "Client exiting: n00b1337 (~alice@gateway/web/irccloud.com/x-abcdefgh) [Ping timeout: 240 seconds]",
            "Client exiting: Bob (~alice@user/alice) [Ping timeout: 240 seconds]",
            "Client exiting: Bob (~alice@ip-51-15-4-9.eu) [Ping timeout: 240 seconds]",
            "Client exiting: kx (kx@pool-71-1-2-3.nycmny.fios.verizon.net) [Ping timeout: 240 seconds]",
            "Client exiting: rustacean42 (~alice@pool-71-1-2-3.nycmny.fios.verizon.net) [Ping timeout: 240 seconds]",
            "Client exiting: moonwalker (~u@unaffiliated/kx) [Ping timeout: 240 seconds]",
            "Client exiting: moonwalker (bob@gateway/web/irccloud.com/x-abcdefgh) [Ping timeout: 240 seconds]",
            "Client exiting: kx (kx@pool-71-1-2-3.nycmny.fios.verizon.net) [Ping timeout: 240 seconds]",
            "Client exiting: kx (bob@user/alice) [Ping timeout: 240 seconds]",
            "Client exiting: [afk]dave (kx@ip-51-15-4-9.eu) [Ping timeout: 240 seconds]",
        ]));
        // Not any extra token: a bare value, a field or a word is another event.
        assert!(all_apart(&[
            "authentication failure; logname= uid=0 euid=0 tty=ssh rhost=10.0.0.1",
            "authentication failure; logname= uid=0 euid=0 tty=ssh rhost=10.0.0.1 user=root",
        ]));
        assert!(all_apart(&[
            "worker 3 finished the nightly task",
            "worker 3 finished the nightly task 7",
            "worker 3 finished the nightly task again",
        ]));
        // Nor the first token.
        assert!(all_apart(&[
            "#3 worker finished task",
            "worker finished task"
        ]));
    }

    #[test]
    fn a_note_is_restored_and_stays_resolvable() {
        let long =
            "chrome.exe *64 - b.example.com:443 open through proxy gw.example.edu:5070 HTTPS";
        let short = "chrome.exe - a.example.com:443 open through proxy gw.example.edu:5070 HTTPS";
        let (m, a) = mine(&[long, short]);
        let mut restored = TemplateMiner::default();
        assert!(restored.restore(m.snapshot()).is_ok());
        let id = restored.resolve(a[0].id).map(Template::id);
        assert!(id.is_some());
        assert_eq!(id, restored.resolve(a[1].id).map(Template::id));
        let again = restored.add(long);
        assert_eq!(Some(again.id), id);
        assert_eq!(restored.len(), 1);
    }

    #[test]
    fn a_program_name_leading_a_long_message_is_a_parameter() {
        // A file name leads the message: two of them are a variable, given context.
        assert!(one_template(&[
            "OneDrive.exe - a.example.com:443 error : A connection request was canceled",
            "firefox.exe - b.example.com:443 error : A connection request was canceled",
        ]));
        // So does a unit's name, labelled with a colon.
        assert!(one_template(&[
            "cron.service: Killing process 4121 (python3) with signal SIGKILL.",
            "nginx.service: Killing process 32139 (python3) with signal SIGKILL.",
        ]));
        // An exception's class is what the message says.
        assert!(all_apart(&[
            "java.io.IOException: Connection reset by peer while reading",
            "java.net.SocketException: Connection reset by peer while reading",
        ]));
        // A short message's dotted first token is still its name.
        assert!(all_apart(&[
            "rpc.idmapd startup succeeded",
            "rpc.statd startup succeeded",
        ]));
    }

    #[test]
    fn a_name_in_brackets_may_lead_a_short_message() {
        assert!(one_template(&[
            "(root) CMD (run-parts /etc/cron.hourly)",
            "(root) CMD (run-parts /etc/cron.daily)",
            "(nobody) CMD (run-parts /etc/cron.hourly)",
        ]));
        // Both the user and the command vary: the command was one value already, so the
        // message keeps enough constant to be one event.
        assert!(one_template(&[
            "(root) CMD (run-parts /etc/cron.daily)",
            "(root) CMD (run-parts /etc/cron.hourly)",
            "(backup) CMD (run-parts /etc/cron.hourly)",
            "(root) CMD (/usr/lib/sa/sa1 1 1)",
            "(root) CMD (/usr/local/bin/backup.sh --quick)",
        ]));
        // Levels and outcomes, in capitals or not, and plain words still name the message.
        assert!(all_apart(&[
            "[INFO] CMD (run-parts /etc/cron.hourly)",
            "[WARN] CMD (run-parts /etc/cron.hourly)",
        ]));
        assert!(all_apart(&[
            "[error] upstream timed out",
            "[warn] upstream timed out",
            "[notice] upstream timed out",
            "[failed] upstream timed out",
        ]));
        assert!(all_apart(&[
            "(root) CMD (run-parts /etc/cron.hourly)",
            "[error] CMD (run-parts /etc/cron.hourly)",
        ]));
        assert!(all_apart(&["[done] backup", "[skip] backup"]));
        // Only a short message's first token: a long one's needs as many values as any.
        assert!(all_apart(&[
            "(root) started the nightly backup job now",
            "(nobody) started the nightly backup job now",
        ]));
        assert!(all_apart(&[
            "started CMD (run-parts /etc/cron.hourly)",
            "(root) CMD (run-parts /etc/cron.hourly)"
        ]));
    }

    #[test]
    fn masked_values_one_mark_apart_are_one_kind() {
        assert!(one_template(&[
            "ACPI: PCI interrupt 0000:02:20.3[D] -> GSI 38 (level, low) -> IRQ 187",
            "ACPI: PCI interrupt 0000:03:10.1[C] -> GSI 21 (level, low) -> IRQ 90",
        ]));
        // A mark not in brackets is no such mark.
        assert!(all_apart(&[
            "lease id=5:xa renewed for client",
            "lease id=5:ya renewed for client",
        ]));
        // Keys one letter apart are two fields; two marks apart are two values.
        assert!(all_apart(&[
            "eth0 rx=5 packets dropped since reset",
            "eth0 tx=5 packets dropped since reset",
        ]));
        assert!(all_apart(&[
            "ACPI: PCI interrupt 0000:02:20.3[AB] -> GSI 38 (level, low) -> IRQ 187",
            "ACPI: PCI interrupt 0000:03:10.1[CD] -> GSI 21 (level, low) -> IRQ 90",
        ]));
    }

    #[test]
    fn compounds_of_letters_need_three_rare_values() {
        // Compounds of letters may be states, with `_` as with `-`: two are not a variable.
        assert!(all_apart(&[
            "Marking task extract_orders in dag etl as up_for_retry",
            "Marking task extract_orders in dag etl as upstream_failed",
        ]));
        assert!(all_apart(&[
            "volume vol-1 mounted read-only on node 4",
            "volume vol-2 mounted read-write on node 4",
        ]));
        // Names of things of that spelling need three, then (two proxies stay apart).
        assert!(one_template(&[
            "frontend api_fe accepted a connection from 10.0.0.1 on port 443",
            "frontend http-in accepted a connection from 10.0.0.2 on port 443",
            "frontend stats_fe accepted a connection from 10.0.0.3 on port 443",
        ]));
    }

    #[test]
    fn a_lone_dash_after_a_value_is_a_field_of_its_own() {
        // `-` in a column (no user, no response flags) is not part of the value before it,
        // so a message with a value in that column has as many tokens, and is one event with
        // it, whichever comes first.
        let (m, a) = mine(&["[10:00] \"GET /a HTTP/1.1\" 200 - 512 \"curl/8.4.0\""]);
        assert_eq!(m.template(a[0].index).map(Template::len), Some(6));
        // Users in the column of an access log, and its placeholder: one event.
        let mut lines = Vec::new();
        for user in ["frank", "alice", "bob", "carol", "dave", "erin"] {
            lines.push(format!(
                "10.0.0.1 - {user} [10/Oct/2000:13:55:36] \"GET /a.gif HTTP/1.0\" 200 2326"
            ));
        }
        lines.push("10.0.0.1 - - [10/Oct/2000:13:55:36] \"GET /a.gif HTTP/1.0\" 200 2326".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(one_template(&lines));
        let mut reversed = lines.clone();
        reversed.reverse();
        assert!(one_template(&reversed));
        // A word in a record's column (response flags) is a value of that column.
        assert!(one_template(&[
            "[10:00] \"GET /a HTTP/1.1\" 200 - 512 \"curl/8.4.0\"",
            "[10:01] \"GET /b HTTP/1.1\" 503 UF 512 \"curl/8.4.0\"",
        ]));
        // Not in a message of words: states with a placeholder among them stay apart,
        // between values or last.
        for shape in [
            "job {} {}",
            "task {} {} 658ms",
            "req id={} {} 314",
            "health check {} {}",
        ] {
            let words = if shape.starts_with("health") {
                ["passed", "failed", "skipped", "-"]
            } else if shape.starts_with("req") {
                ["GET", "POST", "DELETE", "-"]
            } else {
                ["QUEUED", "RUNNING", "FAILED", "-"]
            };
            // Each state twice, the placeholder first or last.
            let lines: Vec<String> = (0..8)
                .map(|i| {
                    let w = words[i % 4];
                    shape
                        .replacen("{}", &(100 + i).to_string(), 1)
                        .replacen("{}", w, 1)
                })
                .collect();
            let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_eq!(distinct_templates(&lines), 4, "{lines:?}");
            lines.reverse();
            assert_eq!(distinct_templates(&lines), 4, "{lines:?}");
        }
        // A `-` between words is a dash in a sentence, or a state that says nothing: not an
        // empty column.
        assert!(all_apart(&[
            "job 12 entered QUEUED state on node a1",
            "job 13 entered RUNNING state on node a1",
            "job 14 entered DONE state on node a1",
            "job 15 entered FAILED state on node a1",
            "job 16 entered - state on node a1",
        ]));
        assert!(all_apart(&[
            "Backup - completed successfully",
            "Backup not completed successfully",
        ]));
        // A unit still is.
        let (m, a) = mine(&["copied 12 bytes in 3 ms"]);
        assert_eq!(m.template(a[0].index).map(Template::len), Some(4));
    }

    #[test]
    fn names_that_are_gerunds_merge() {
        // `billing` and `shipping` end like `running`, but no value is a participle.
        assert!(one_template(&[
            "deployment billing scaled to 3 replicas",
            "deployment shipping scaled to 2 replicas",
            "deployment pricing scaled to 5 replicas",
            "deployment ranking scaled to 1 replicas",
        ]));
    }

    #[test]
    fn a_short_message_after_an_identifier_is_one_event() {
        assert!(one_template(&[
            "nginx.service: Deactivated successfully.",
            "sshd.service: Deactivated successfully.",
            "session-4.scope: Deactivated successfully.",
            "user@1000.service: Deactivated successfully.",
            "docker.service: Deactivated successfully.",
        ]));
        // A short message's first word still names its event.
        assert!(all_apart(&[
            "Started nginx.service.",
            "Stopped nginx.service.",
            "Reloaded nginx.service.",
            "Starting nginx.service.",
            "Stopping nginx.service.",
            "Restarting nginx.service.",
        ]));
    }

    #[test]
    fn long_value_runs_are_bounded() {
        let numbers: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        let mut m = TemplateMiner::default();
        let a = m.add(&format!("values {}", numbers.join(" ")));
        let b = m.add(&format!("values {}", numbers[..5000].join(" ")));
        assert_eq!(a.id, b.id, "a long list is one variable");
        assert!(m.shapes.len() < 64, "{}", m.shapes.len());
        assert_eq!(m.template(a.index).map(Template::len), Some(2));
    }

    #[test]
    fn ids_are_reproducible() {
        let lines = ["a 1", "b 2 x", "a 3"];
        let (_, a) = mine(&lines);
        let (_, b) = mine(&lines);
        assert_eq!(a, b);
    }

    #[test]
    fn new_templates_sharing_a_prefix_keep_the_index_bounded_and_ordered() {
        // Every line a new template behind one prefix, with eviction: the case that made each
        // message cost a pass over every template sharing its first words.
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 1_500,
            ..MinerConfig::default()
        });
        let mut x: u64 = 7;
        let mut word = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (0..6)
                .map(|k| (b'a' + ((x >> (8 * k + 20)) % 26) as u8) as char)
                .collect::<String>()
        };
        for i in 0..4_000 {
            let line = format!("[task {i}] {} {}", word(), word());
            m.add(&line);
        }
        assert!(m.evicted() > 0);
        assert!(m.len() <= 1_500);
        for list in m.index.values() {
            let entries = list.entries();
            assert!(
                entries.windows(2).all(|w| w[0] < w[1]),
                "sorted, no repeats"
            );
        }
        // The candidates of one more message: bounded, oldest first, live, each once.
        m.add("[task 1] zzzzzz yyyyyy");
        let n = m.spans.len();
        let mut out = Vec::new();
        m.candidates(n, &mut out);
        assert!(!out.is_empty() && out.len() <= MAX_CANDIDATES);
        let seqs: Vec<u64> = out.iter().map(|&i| m.templates[i as usize].seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "oldest first, each once"
        );
        assert!(out.iter().all(|&i| m.templates[i as usize].live));
        let oldest = m.templates().map(|t| t.seq).min();
        assert_eq!(seqs.first().copied(), oldest);
    }

    #[test]
    fn bounded_templates() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 10,
            max_skeletons: 5,
            ..MinerConfig::default()
        });
        for i in 0..100 {
            let word: String = (0..6)
                .map(|k| (b'a' + ((i / (k + 1)) % 26) as u8) as char)
                .collect();
            m.add(&format!("{word} only"));
        }
        assert!(m.len() <= 10);
        assert!(m.evicted() > 0);
    }

    #[test]
    fn the_token_cap_is_configurable() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_tokens: 3,
            ..MinerConfig::default()
        });
        let a = m.add("job runner started with arguments x y z");
        let b = m.add("job runner started with other arguments entirely");
        assert_eq!(a.id, b.id, "the first three tokens decide");
        assert_eq!(m.template(a.index).map(Template::len), Some(4));
    }

    #[test]
    fn long_messages_are_capped_at_max_tokens() {
        let words = |n: usize, seed: usize| -> String {
            (0..n)
                .map(|i| ((b'a' + ((i * 7 + seed * 13 + i / 26) % 26) as u8) as char).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let head = words(MAX_TOKENS, 0);
        let mut m = TemplateMiner::default();
        let a = m.add(&format!("{head} {}", words(900, 1)));
        let b = m.add(&format!("{head} {}", words(1100, 2)));
        assert_eq!(
            a.id, b.id,
            "messages differing only after the cap share a template"
        );
        let t = m.template(a.index).unwrap_or_else(|| panic!("template"));
        assert_eq!(t.len(), MAX_TOKENS + 1);
        assert!(t.text().ends_with(" <*>"));
        assert!(t.text().len() <= 2 * MAX_TOKENS + 3);
        // At the cap exactly: no trailing wildcard, a template of its own.
        let c = m.add(&head);
        assert_ne!(c.id, a.id);
        assert_eq!(m.template(c.index).map(Template::len), Some(MAX_TOKENS));
        // Scratch buffers stay bounded by the cap too, however long the message.
        m.add(&words(100_000, 3));
        assert_eq!(m.spans.len(), MAX_TOKENS + 1);
        assert!(m.shapes.len() <= (MAX_TOKENS + 1) * 4, "{}", m.shapes.len());
    }

    #[test]
    fn names_seen_twice_each_are_parameters() {
        // Each user logs in twice: the values repeat, but most are rare, so the slot is a
        // parameter. Thousands of siblings also must not make the miner slow (the evidence is
        // gathered once per message, not once per candidate).
        let names: Vec<String> = (0..3000)
            .map(|i| {
                let mut n = String::from("User");
                let mut k = i;
                loop {
                    n.push((b'a' + (k % 26) as u8) as char);
                    k /= 26;
                    if k == 0 {
                        break;
                    }
                }
                n
            })
            .collect();
        let lines: Vec<String> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                let line = format!(
                    "Accepted password for {n} from 10.0.{}.{} port 22",
                    i / 250,
                    i % 250
                );
                [line.clone(), line]
            })
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let last = a.last().and_then(|a| m.resolve(a.id)).map(Template::text);
        assert_eq!(last, Some("Accepted password for <*> from <*> port <*>"));
        assert!(m.len() <= 3, "{} templates", m.len());
    }

    #[test]
    fn evidence_per_template_is_bounded() {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("Worker{i} stopped on SHARD{i} after {i} tries"))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, _) = mine(&lines);
        for t in m.templates() {
            assert!(t.variants.len() <= MAX_EVIDENCE_POSITIONS);
            assert!(t.variants.iter().all(|(_, v)| v.len() <= MAX_SLOT_VALUES));
        }
    }

    #[test]
    fn repeated_lower_case_vocabularies_stay_apart() {
        // Many jobs in each of the same few states, state after state: every state repeats
        // before the next appears (interleaved first appearances merge: BENCHMARKS.md).
        let states = ["queued", "running", "done", "failed", "cancelled"];
        let mut lines = Vec::new();
        for state in states {
            for job in 0..20 {
                lines.push(format!("job {job} entered {state} state"));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), states.len());
        // `key=word` fields the same way: once the vocabulary has repeated, a newcomer is one more
        // member, not the sign of a parameter.
        let mut lines: Vec<String> = (0..20)
            .flat_map(|i| {
                ["get", "post", "put", "delete"]
                    .map(|m| format!("request served method={m} path=/v1/items/{i}"))
            })
            .collect();
        for round in 0..10 {
            for method in ["get", "post", "put", "delete", "patch", "head"] {
                lines.push(format!(
                    "request served method={method} path=/v1/items/{round}"
                ));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 6);
        // An access-log line: the method is one word among many.
        let mut lines = Vec::new();
        for round in 0..10 {
            for method in ["GET", "PUT", "HEAD", "PATCH", "POST", "DELETE", "OPTIONS"] {
                lines.push(format!(
                    "10.0.0.{round} - - \"{method} /v1/a HTTP/1.1\" 200 {}",
                    100 + round
                ));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 7);
    }

    #[test]
    fn parameters_that_repeat_still_merge() {
        // Each user logs in five times in a row: no value is rare, but new ones keep coming.
        let users = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
            "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
            "yolanda", "zoe", "quentin",
        ];
        let mut lines = Vec::new();
        for user in users {
            for _ in 0..5 {
                lines.push(format!("session opened for user {user} by sshd"));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let last = a.last().map(|x| x.id).unwrap();
        assert_eq!(
            m.resolve(last).map(Template::text),
            Some("session opened for user <*> by sshd")
        );
        assert!(one_template(&lines), "every line in one template");
        // The same with names in capitals.
        let mut lines = Vec::new();
        for i in 0..22 {
            for _ in 0..4 {
                lines.push(format!(
                    "Accepted key for Host{} from Gateway",
                    (b'A' + i) as char
                ));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, a) = mine(&lines);
        let last = a.last().map(|x| x.id).unwrap();
        assert!(m.resolve(last).unwrap().text().contains("<*>"));
    }

    #[test]
    fn a_large_vocabulary_that_repeats_stays_apart() {
        // Sixteen event reasons, each seen twenty times: many values, but not new ones.
        let reasons = [
            "Scheduled",
            "Pulling",
            "Pulled",
            "Created",
            "Started",
            "Killing",
            "BackOff",
            "Unhealthy",
            "FailedMount",
            "FailedScheduling",
            "SuccessfulCreate",
            "SuccessfulDelete",
            "ScalingReplicaSet",
            "Evicted",
            "Preempted",
            "NodeReady",
        ];
        let mut lines = Vec::new();
        for reason in reasons {
            for i in 0..20 {
                lines.push(format!("event for pod web-{i} reason {reason} count 1"));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), reasons.len());
    }

    #[test]
    fn numbered_names_that_repeat_stay_apart() {
        let mut lines = Vec::new();
        for _ in 0..50 {
            lines.push("dhcp: ipv4 lease acquired on eth0".to_string());
            lines.push("dhcp: ipv6 lease acquired on eth0".to_string());
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 2);
    }

    #[test]
    fn long_messages_find_their_template_among_many() {
        // A hundred long lines of other events first, then one event whose last word varies.
        let word = |i: usize, j: usize| format!("w{}x{}", (i * 7919 + j * 104_729) % 1_000_003, j);
        let mut lines: Vec<String> = (0..100)
            .map(|i| {
                let rest: Vec<String> = (0..247).map(|j| word(i, j)).collect();
                format!("svc audit record {}", rest.join(" "))
            })
            .collect();
        let fields: Vec<String> = (0..246).map(|j| format!("field{j}")).collect();
        let users = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ];
        for user in users {
            lines.push(format!("svc audit record {} {user}", fields.join(" ")));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(one_template(&lines[100..]));
    }

    #[test]
    fn a_hostile_creation_order_is_ignored() {
        let (m, _) = mine(&["disk sda full", "link eth0 down"]);
        let mut state = m.snapshot();
        state.templates[0].seq = Some(u64::MAX);
        let mut restored = TemplateMiner::default();
        restored.restore(state).unwrap();
        // New templates keep being created (no overflow) and stay younger than the restored.
        let a = restored.add("cpu 3 throttled for a while");
        let b = restored.add("fan 2 stopped spinning now");
        assert!(a.created && b.created);
        let seq = |id: TemplateId| restored.resolve(id).map(|t| t.seq).unwrap();
        assert!(seq(a.id) < seq(b.id));
        assert!(
            restored
                .templates()
                .filter(|t| t.id != a.id && t.id != b.id)
                .all(|t| t.seq < seq(a.id))
        );
    }

    #[test]
    fn one_name_numbered_differently_is_a_value() {
        assert!(one_template(&[
            "link up on eth0 speed fast",
            "link up on eth1 speed fast",
            "link up on eth2 speed fast",
            "link up on eth3 speed fast",
        ]));
        assert!(one_template(&[
            "drained node1 for maintenance",
            "drained node12 for maintenance",
            "drained node7 for maintenance",
            "drained node31 for maintenance",
            "drained node3 for maintenance",
        ]));
        // Different names that end in a digit stay apart (HPC's `alt0`, `ee0`, `scip0`).
        assert!(all_apart(&[
            "component alt0 state changed",
            "component ee0 state changed",
            "component scip0 state changed",
        ]));
    }

    #[test]
    fn sentences_after_a_label_stay_apart() {
        // A label and a number, then different sentences: different events.
        let mut lines = Vec::new();
        for worker in 0..6 {
            lines.push(format!("worker {worker}: upload finished"));
            lines.push(format!("worker {worker}: cache warmed"));
            lines.push(format!("worker {worker}: retrying later"));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 3);
        let mut lines = Vec::new();
        for worker in 0..6 {
            lines.push(format!("INFO Pod web-{worker}: container started"));
            lines.push(format!("INFO Pod web-{worker}: image pulled"));
            lines.push(format!("INFO Pod web-{worker}: volume mounted"));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 3);
        // A two-word parameter amid more text still merges.
        assert!(one_template(&[
            "profile of John Smith was updated by admin",
            "profile of Mary Jones was updated by admin",
            "profile of Ada Lovelace was updated by admin",
            "profile of Alan Turing was updated by admin",
            "profile of Grace Hopper was updated by admin",
            "profile of Linus Torvalds was updated by admin",
            "profile of Ken Thompson was updated by admin",
        ]));
    }

    #[test]
    fn a_lifecycle_in_capitals_stays_apart() {
        // Every job walks through the same states in order: each state first appears in one
        // burst, then repeats.
        let mut lines = Vec::new();
        for job in 0..10 {
            for state in ["QUEUED", "RUNNING", "DONE", "FAILED"] {
                lines.push(format!("job {job} entered {state}"));
            }
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(distinct_templates(&lines), 4);
    }

    #[test]
    fn quoted_strings_with_spaces_are_one_value() {
        let (m, a) = mine(&[
            "profile of user \"John Smith\" updated",
            "profile of user \"Ada Lovelace\" updated",
            "profile of user \"Grace Brewster Hopper\" updated",
            "profile of user \"Linus\" updated",
        ]);
        let texts: Vec<_> = a
            .iter()
            .map(|a| m.resolve(a.id).map(Template::text))
            .collect();
        assert!(
            texts
                .iter()
                .all(|t| *t == Some("profile of user \"<*>\" updated")),
            "{texts:?}"
        );
        // An unclosed quote is not joined: its words stay words, compared one by one.
        let (m, a) = mine(&["said \"hello there", "said \"goodbye there"]);
        assert_eq!(m.template(a[0].index).map(Template::len), Some(3));
        // Nor is a request line: the method stays a word of its own.
        let (m, a) = mine(&[
            "said \"GET /a HTTP/1.1\" twice",
            "said \"PUT /a HTTP/1.1\" twice",
        ]);
        // (three slots if it were joined: `said`, the quoted string, `twice`)
        assert!(m.template(a[0].index).map(Template::len) > Some(3));
        assert_ne!(a[0].id, a[1].id);
    }

    #[test]
    fn an_unclosed_quote_on_a_long_token_is_no_value() {
        // A quote opening a token longer than the window of a quoted string (MAX_QUOTED):
        // no panic, and nothing joined past the window.
        let long = format!("say \"{} and \"", "a".repeat(MAX_QUOTED + 10));
        let short = format!("say \"{} and \"", "b".repeat(20));
        let (m, a) = mine(&[&long, &short, "say \"", "\"", "x \"é"]);
        assert_eq!(a.len(), 5);
        assert_eq!(m.template(a[0].index).map(Template::len), Some(4));
        assert_eq!(m.template(a[1].index).map(Template::len), Some(2));
    }

    #[test]
    fn counts_saturate() {
        let (m, _) = mine(&["connect to db 1 failed"]);
        let mut state = m.snapshot();
        state.templates[0].count = u64::MAX;
        let mut restored = TemplateMiner::default();
        assert!(restored.restore(state).is_ok());
        let a = restored.add("connect to db 1 failed");
        assert_eq!(
            restored.template(a.index).map(Template::count),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_live_template_wins_over_an_old_alias() {
        let (m, a) = mine(&["connect to db 1 failed", "connect to db 2 failed"]);
        let mut state = m.snapshot();
        let id = a[0].id.to_string();
        // An alias from the live template's id to some other id must not hide it.
        state.aliases.insert(id.clone(), "00000000000000ff".into());
        let mut restored = TemplateMiner::default();
        assert!(restored.restore(state).is_ok());
        assert_eq!(restored.resolve(a[0].id).map(Template::id), Some(a[0].id));
    }

    #[test]
    fn restore_keeps_within_bounds() {
        let lines: Vec<String> = (0..50).map(|i| format!("event{i} happened")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (m, _) = mine(&lines);
        let mut state = m.snapshot();
        // A repeated id keeps its first template (the duplicate comes early, within bounds).
        let first = state.templates[0].id.clone();
        let first_text = {
            let id: TemplateId = first.parse().unwrap();
            m.resolve(id).unwrap().text().to_string()
        };
        state.templates.insert(
            1,
            SavedTemplate {
                id: first.clone(),
                seq: None,
                count: 1,
                slots: vec![SavedSlot::Exact("other".into())],
                variants: Vec::new(),
            },
        );
        let mut small = TemplateMiner::new(MinerConfig {
            max_templates: 10,
            ..MinerConfig::default()
        });
        assert!(small.restore(state).is_ok());
        let id: TemplateId = first.parse().unwrap();
        assert_eq!(small.resolve(id).unwrap().text(), first_text);
        assert!(small.templates().all(|t| t.text() != "other"));
        assert!(small.len() <= 10);
        let mut state = m.snapshot();
        state.version = MINER_STATE_VERSION + 1;
        assert!(TemplateMiner::default().restore(state).is_err());
    }

    /// Two saved templates that both fit a message: the older one takes it, whatever the
    /// order of the file or of the ids.
    #[test]
    fn the_oldest_fitting_template_takes_a_message() {
        let exact = |s: &str| SavedSlot::Exact(s.into());
        let any = || SavedSlot::Variable {
            prefix: String::new(),
            suffix: String::new(),
        };
        let older = SavedTemplate {
            id: "00000000000000ff".into(),
            seq: Some(0),
            count: 5,
            slots: vec![exact("disk"), any(), exact("full")],
            variants: Vec::new(),
        };
        let newer = SavedTemplate {
            id: "0000000000000001".into(),
            seq: Some(1),
            count: 5,
            slots: vec![any(), exact("sda"), exact("full")],
            variants: Vec::new(),
        };
        for order in [[0, 1], [1, 0]] {
            let both = [&older, &newer];
            let state = MinerState {
                version: MINER_STATE_VERSION,
                templates: order
                    .iter()
                    .map(|&i| SavedTemplate {
                        id: both[i].id.clone(),
                        seq: both[i].seq,
                        count: both[i].count,
                        slots: both[i]
                            .slots
                            .iter()
                            .map(|s| match s {
                                SavedSlot::Exact(s) => SavedSlot::Exact(s.clone()),
                                SavedSlot::Variable { .. } => any(),
                            })
                            .collect(),
                        variants: Vec::new(),
                    })
                    .collect(),
                aliases: Default::default(),
                parameter_words: Vec::new(),
            };
            let mut m = TemplateMiner::default();
            m.restore(state).unwrap();
            assert_eq!(m.add("disk sda full").id.to_string(), "00000000000000ff");
            // Saved again and restored, the choice is the same.
            let mut again = TemplateMiner::default();
            again.restore(m.snapshot()).unwrap();
            assert_eq!(
                again.add("disk sda full").id.to_string(),
                "00000000000000ff"
            );
        }
    }

    /// A token of `len` pseudo-random lower-case letters, distinct for each (line, position).
    fn random_word(line: usize, pos: usize, len: usize) -> String {
        let mut state = xxh3_64(format!("{line}/{pos}").as_bytes());
        (0..len)
            .map(|_| {
                // xorshift: cheap, deterministic letters.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    }

    /// A line of `tokens` unique words of `len` letters each (the reviewer's shape, scaled).
    fn huge_line(line: usize, tokens: usize, len: usize) -> String {
        (0..tokens)
            .map(|pos| random_word(line, pos, len))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn recounted(m: &TemplateMiner) -> usize {
        m.templates().map(Template::footprint).sum()
    }

    #[test]
    fn huge_unique_tokens_stay_within_the_byte_budget() {
        let budget = 1 << 20;
        let mut m = TemplateMiner::new(MinerConfig {
            max_template_bytes: budget,
            ..MinerConfig::default()
        });
        // 100 lines of 50 unique 2,000-byte tokens: about 20 MB of templates unbounded.
        let mut last = None;
        for line in 0..100 {
            let a = m.add(&huge_line(line, 50, 2_000));
            assert!(a.created);
            assert!(
                m.template_bytes() <= budget,
                "line {line}: {} bytes held",
                m.template_bytes()
            );
            assert_eq!(m.template_bytes(), recounted(&m), "the count is exact");
            last = Some(a);
        }
        assert!(m.evicted() > 80, "evicted {}", m.evicted());
        assert!(m.len() >= 2, "the budget holds several such templates");
        // The miner keeps working: the latest template is still there and takes its line,
        // and ordinary messages still generalise.
        let last = last.unwrap();
        let again = m.add(&huge_line(99, 50, 2_000));
        assert_eq!((again.id, again.created), (last.id, false));
        let a = m.add("took 12ms to read 4 blocks");
        let b = m.add("took 7ms to read 19 blocks");
        assert_eq!(a.id, b.id);
        assert!(m.template_bytes() <= budget);
        assert_eq!(m.template_bytes(), recounted(&m));
    }

    #[test]
    fn one_template_over_the_budget_is_kept_alone() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_template_bytes: 10_000,
            ..MinerConfig::default()
        });
        m.add("a small event happened");
        let big = m.add(&huge_line(0, 10, 2_000));
        assert_eq!(m.len(), 1, "the small template made room");
        assert_eq!(m.template(big.index).map(Template::id), Some(big.id));
        // The next template evicts the big one: the budget is met again.
        m.add("another small event happened");
        assert!(m.template_bytes() <= 10_000);
        assert_eq!(m.template_bytes(), recounted(&m));
    }

    #[test]
    fn byte_count_follows_generalisation_and_folding() {
        let mut m = TemplateMiner::default();
        for i in 0..300 {
            let user = random_word(i, 0, 6);
            m.add(&format!("session opened for user {user} by (uid={i})"));
            m.add(&format!(
                "job {} finished in {i} ms",
                ["build", "test", "lint"][i % 3]
            ));
            m.add(&format!(
                "worker {user} state {}",
                ["RUNNING", "DONE"][i % 2]
            ));
            assert_eq!(m.template_bytes(), recounted(&m));
        }
        assert!(
            m.template_bytes() < 64 << 10,
            "{} bytes",
            m.template_bytes()
        );
    }

    #[test]
    fn restore_keeps_within_the_byte_budget() {
        let mut big = TemplateMiner::default();
        for line in 0..20 {
            big.add(&huge_line(line, 20, 1_000));
        }
        assert!(big.template_bytes() > 300_000);
        // Each template holds about 50 kB (its text and its slots).
        let budget = 150_000;
        let mut small = TemplateMiner::new(MinerConfig {
            max_template_bytes: budget,
            ..MinerConfig::default()
        });
        assert!(small.restore(big.snapshot()).is_ok());
        assert!(small.template_bytes() <= budget);
        assert!(small.len() >= 2, "as many as fit are restored");
        assert_eq!(small.template_bytes(), recounted(&small));
    }

    /// Ten groups (told apart by their length), each folding two templates into a third.
    fn folding_groups(m: &mut TemplateMiner) -> Vec<(TemplateId, TemplateId)> {
        (0..10)
            .map(|g| {
                let tail = " and more".repeat(g);
                let line = |name: &str, uid: u32| {
                    format!("session opened for user {name} by (uid={uid}){tail}")
                };
                // Names of each group's own, so none was seen as a parameter before.
                let root = m.add(&line(&random_word(g, 0, 6), 0));
                let alice = m.add(&line(&random_word(g, 1, 6), 1000));
                let bob = m.add(&line(&random_word(g, 2, 6), 1001));
                let carol = m.add(&line(&random_word(g, 3, 6), 1002));
                assert_ne!(
                    bob.id, root.id,
                    "group {g}: three values are not yet a variable"
                );
                assert_eq!(carol.id, root.id, "group {g} generalised");
                assert_ne!(alice.id, root.id, "group {g}: alice's template was folded");
                (alice.id, root.id)
            })
            .collect()
    }

    #[test]
    fn aliases_are_forgotten_oldest_first() {
        let mut all = TemplateMiner::default();
        let groups = folding_groups(&mut all);
        for &(folded, into) in &groups {
            assert_eq!(all.resolve(folded).map(Template::id), Some(into));
        }
        let mut m = TemplateMiner::new(MinerConfig {
            max_aliases: 4,
            ..MinerConfig::default()
        });
        let groups = folding_groups(&mut m);
        assert_eq!(m.alias_count(), 4);
        // The four most recent aliases (of the last two groups: each folds two templates)
        // still resolve; the older ones are forgotten.
        for (g, &(folded, into)) in groups.iter().enumerate() {
            let want = (g >= 8).then_some(into);
            assert_eq!(m.resolve(folded).map(Template::id), want, "group {g}");
            // The templates themselves are untouched.
            assert_eq!(m.resolve(into).map(Template::id), Some(into));
        }
        // A snapshot carries the aliases kept, and a restore into a smaller table keeps it
        // within bounds.
        let mut restored = TemplateMiner::new(MinerConfig {
            max_aliases: 2,
            ..MinerConfig::default()
        });
        assert!(restored.restore(m.snapshot()).is_ok());
        assert_eq!(restored.alias_count(), 2);
    }

    #[test]
    fn state_round_trip_keeps_ids() {
        let (m, a) = mine(&["connect to db 1 failed", "connect to db 2 failed"]);
        let json = serde_json::to_string(&m.snapshot()).unwrap_or_default();
        let state: MinerState = serde_json::from_str(&json).unwrap();
        let mut restored = TemplateMiner::default();
        assert!(restored.restore(state).is_ok());
        assert_eq!(restored.add("connect to db 3 failed").id, a[0].id);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_input_is_assigned_consistently(lines in prop::collection::vec("\\PC{0,160}", 1..40)) {
                let mut a = TemplateMiner::default();
                let mut b = TemplateMiner::default();
                for line in &lines {
                    let x = a.add(line);
                    let y = b.add(line);
                    prop_assert_eq!(x.id, y.id, "same input, same ids");
                    let t = a.template(x.index).map(|t| t.len()).unwrap_or(usize::MAX);
                    let tokens = line.split_ascii_whitespace().count();
                    // Runs of values share a slot, so a template may be shorter.
                    prop_assert!(t <= tokens.min(MAX_TOKENS + 1));
                    prop_assert_eq!(t == 0, tokens == 0);
                }
                // A message seen again lands where its first assignment resolves to now.
                let firsts: Vec<TemplateId> = lines.iter().map(|l| b.add(l).id).collect();
                for (line, first) in lines.iter().zip(firsts) {
                    let then = b.resolve(first).map(Template::id);
                    let id = b.add(line).id;
                    let now = b.resolve(id).map(Template::id);
                    prop_assert_eq!(then, now, "{:?}", line);
                }
            }

            #[test]
            fn merges_keep_assignments_consistent(
                lines in prop::collection::vec(
                    prop::collection::vec(
                        prop::sample::select(vec![
                            "user", "root", "alice", "bob", "carol", "dave", "failed", "from",
                            "port", "10.0.0.1", "22", "ok", "state=up", "state=down", "x=1",
                        ]),
                        3..7,
                    ),
                    1..80,
                ),
            ) {
                let lines: Vec<String> = lines.iter().map(|w| w.join(" ")).collect();
                let mut m = TemplateMiner::default();
                let firsts: Vec<TemplateId> = lines.iter().map(|l| m.add(l).id).collect();
                for (line, first) in lines.iter().zip(firsts) {
                    let then = m.resolve(first).map(Template::id);
                    let id = m.add(line).id;
                    prop_assert_eq!(then, m.resolve(id).map(Template::id), "{:?}", line);
                }
            }

            #[test]
            fn masking_never_panics(token in prop::collection::vec(any::<u8>(), 0..64)) {
                let mut out = Vec::new();
                let _ = crate::mask::mask_token(&token, &mut out);
            }
        }
    }
}
