//! Which of a few short words occur in a text, ASCII case-insensitively: the trigger scan that
//! decides whether a record needs the redaction patterns at all.
//!
//! Every record goes through it, and nearly none holds a trigger. An automaton spends a state
//! transition per byte and, with case-insensitive words starting on common letters, gets no help
//! from its prefilter. Here a byte pair is looked up in a table first (the first byte picks the
//! candidate words, a bitmap of their second bytes rules out most positions), and only the few
//! positions that pass compare whole words.

/// A set of words, each with an owner number reported when the word is found.
#[derive(Debug, Clone)]
pub struct WordScan {
    /// Per byte value: the range of `words` that start with it (either case of a letter).
    starts: Box<[(u32, u32); 256]>,
    /// The byte pairs (either case of each) that start a word, as a 65536-bit set indexed by
    /// `first << 8 | second`; a one-byte word sets every pair it starts.
    pairs: Box<[u64; 1024]>,
    /// The words, ordered by first byte.
    words: Vec<Word>,
}

/// One word, with its first bytes as a number for a one-instruction first comparison.
#[derive(Debug, Clone)]
struct Word {
    /// Lowercased.
    bytes: Box<[u8]>,
    owner: usize,
    /// The first (up to) four bytes, little-endian, each with bit 0x20 set: equal to the
    /// text's bytes with that bit set whenever the word is there (and sometimes when not,
    /// for punctuation: the whole word is compared next).
    head: u32,
    /// Which bytes of `head` the word has.
    head_mask: u32,
}

/// Bit 0x20 of each byte: the ASCII case bit of letters.
const CASE_BITS: u32 = 0x2020_2020;

/// The first four bytes of `bytes` as a little-endian number, zero where `bytes` is shorter.
#[inline]
fn head_of(bytes: &[u8]) -> u32 {
    match bytes.first_chunk::<4>() {
        Some(h) => u32::from_le_bytes(*h),
        None => {
            let mut h = [0u8; 4];
            h[..bytes.len()].copy_from_slice(bytes);
            u32::from_le_bytes(h)
        }
    }
}

impl WordScan {
    /// The scan for `words` (owner, word); empty words are ignored. `None` when no word is left.
    pub fn new<'a>(words: impl IntoIterator<Item = (usize, &'a [u8])>) -> Option<WordScan> {
        let mut list: Vec<Word> = words
            .into_iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(owner, w)| {
                let bytes = w.to_ascii_lowercase().into_boxed_slice();
                let head_mask = u32::MAX >> (8 * 4usize.saturating_sub(bytes.len()));
                Word {
                    head: (head_of(&bytes) | CASE_BITS) & head_mask,
                    head_mask,
                    bytes,
                    owner,
                }
            })
            .collect();
        if list.is_empty() {
            return None;
        }
        list.sort_by_key(|w| w.bytes[0]);
        let mut starts = Box::new([(0u32, 0u32); 256]);
        let mut pairs = Box::new([0u64; 1024]);
        let mut i = 0;
        while i < list.len() {
            let first = list[i].bytes[0];
            let end = i + list[i..].iter().take_while(|w| w.bytes[0] == first).count();
            // Word counts are small (the patterns' trigger literals), far below u32.
            let range = (i as u32, end as u32);
            for c in [first, first.to_ascii_uppercase()] {
                starts[usize::from(c)] = range;
                for w in &list[i..end] {
                    let seconds = match w.bytes.get(1) {
                        Some(&b) => vec![b, b.to_ascii_uppercase()],
                        None => (0..=255).collect(),
                    };
                    for d in seconds {
                        let pair = usize::from(c) << 8 | usize::from(d);
                        pairs[pair >> 6] |= 1 << (pair & 63);
                    }
                }
            }
            i = end;
        }
        Some(WordScan {
            starts,
            pairs,
            words: list,
        })
    }

    /// Calls `found` with the owner of every word occurrence in `text` (an owner may come more
    /// than once).
    #[inline]
    pub fn scan(&self, text: &[u8], mut found: impl FnMut(usize)) {
        let Some((&last, _)) = text.split_last() else {
            return;
        };
        // Positions whose byte pair starts no word are passed over with one bit test.
        let mut pair = 0usize;
        for (i, &b) in text.iter().enumerate() {
            pair = (pair << 8 | usize::from(b)) & 0xffff;
            if i > 0 && self.pairs[pair >> 6] & (1 << (pair & 63)) != 0 {
                self.verify(&text[i - 1..], &mut found);
            }
        }
        // The last byte starts only one-byte words.
        if self.starts[usize::from(last)].0 != self.starts[usize::from(last)].1 {
            self.verify(&text[text.len() - 1..], &mut found);
        }
    }

    /// Reports the words `rest` starts with. Out of line: it runs at few positions, and
    /// inlined it crowds the scan loop.
    #[inline(never)]
    fn verify(&self, rest: &[u8], found: &mut impl FnMut(usize)) {
        let Some(&first) = rest.first() else {
            return;
        };
        let (start, end) = self.starts[usize::from(first)];
        let head = head_of(rest) | CASE_BITS;
        for w in &self.words[start as usize..end as usize] {
            if head & w.head_mask == w.head
                && rest.len() >= w.bytes.len()
                && rest[..w.bytes.len()].eq_ignore_ascii_case(&w.bytes)
            {
                found(w.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(scan: &WordScan, text: &str) -> Vec<usize> {
        let mut v = Vec::new();
        scan.scan(text.as_bytes(), |o| v.push(o));
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn finds_words_in_any_case_and_overlapping() {
        let words: [(usize, &[u8]); 5] = [
            (0, b"pass"),
            (1, b"password"),
            (2, b"key"),
            (3, b"://"),
            (4, b"x"),
        ];
        let scan = WordScan::new(words).unwrap();
        assert_eq!(owners(&scan, "db_PassWord=1"), vec![0, 1]);
        assert_eq!(owners(&scan, "apiKey: 2"), vec![2]);
        assert_eq!(owners(&scan, "https://h"), vec![3]);
        // A one-byte word at the very end; a word cut by the end of the text is not there.
        assert_eq!(owners(&scan, "max"), vec![4]);
        assert_eq!(owners(&scan, "ke"), Vec::<usize>::new());
        assert_eq!(owners(&scan, "nothing here"), Vec::<usize>::new());
        assert_eq!(owners(&scan, ""), Vec::<usize>::new());
    }

    proptest::proptest! {
        /// The same owners as comparing every word at every position.
        #[test]
        fn agrees_with_comparing_everywhere(
            words in proptest::collection::vec("[a-cA-C:/]{1,5}", 1..8),
            text in "[a-dA-D:/ ]{0,40}",
        ) {
            let scan = WordScan::new(words.iter().enumerate().map(|(i, w)| (i, w.as_bytes())))
                .unwrap();
            let t = text.as_bytes();
            let mut want: Vec<usize> = words
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    t.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
                })
                .map(|(i, _)| i)
                .collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(owners(&scan, &text), want);
        }
    }

    #[test]
    fn empty_word_lists_have_no_scan() {
        assert!(WordScan::new(std::iter::empty()).is_none());
        assert!(WordScan::new([(0, &b""[..])]).is_none());
    }

    #[test]
    fn non_ascii_bytes_are_matched_exactly() {
        let scan = WordScan::new([(7, "clé".as_bytes())]).unwrap();
        assert_eq!(owners(&scan, "la CLé est"), vec![7]);
        assert_eq!(owners(&scan, "la CLÉ est"), Vec::<usize>::new());
    }
}
