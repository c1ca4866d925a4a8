//! Identity: item keys, canonical links, and which items tell the same story.
//!
//! Input: the fields of a parsed item. Output: strings and hashes that the store
//! compares. Pure; nothing here runs SQL (the store asks, this answers).
//!
//! - An item's **key** identifies it within its feed: the guid the feed gave, else its
//!   canonical link, else a hash of title and text. Never anything random: feed-rs
//!   invents a UUID for an entry with neither id nor link, which is why the parser
//!   installs an id generator that yields nothing and the key is derived here.
//! - A **canonical link** is the link with the parts that vary between copies of one
//!   URL removed: scheme and host lower-cased (the `url` crate does that), default port
//!   and fragment dropped, tracking parameters removed, remaining parameters sorted.
//!   Two items from different feeds with the same canonical link are one story.
//! - A **fingerprint** finds copies whose links differ: a MinHash signature of the word
//!   3-shingles of an item's text, after sentences that the feed repeats in many items
//!   (footers, cookie notices, "about us") are removed. Two signatures estimate the
//!   Jaccard similarity of the shingle sets; LSH band keys let the store find
//!   candidates with an index lookup instead of a scan. Two signatures are kept per
//!   item: the lead (first [`LEAD_WORDS`] words, where a summary and its full article,
//!   or a wire copy with a dateline, agree) and the whole text (where a re-headlined
//!   copy with a rewritten first paragraph still agrees).

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use url::Url;

use crate::model::Item;
pub use crate::model::{Fingerprint, Marks, SIG_LEN, Signature};

/// Query parameters that only track the reader, never select content.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid",
    "gclid",
    "dclid",
    "gclsrc",
    "msclkid",
    "yclid",
    "twclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "ref",
    "ref_src",
    "ref_url",
    "cmpid",
    "campaign_id",
    "ocid",
    "spm",
    "vero_id",
    "wt_mc",
    "wt.mc_id",
    "at_medium",
    "at_campaign",
];

/// Prefixes of tracking parameter families (`utm_source`, `utm_medium`, …).
const TRACKING_PREFIXES: &[&str] = &["utm_", "pk_", "mtm_", "hmb_", "oly_", "__hs", "_branch"];

fn is_tracking(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    TRACKING_PARAMS.contains(&lower.as_str()) || TRACKING_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// The canonical form of an absolute http(s) link; `None` for anything else.
pub fn canonical_link(link: &str) -> Option<String> {
    canonical_url(Url::parse(link.trim()).ok()?)
}

/// [`canonical_link`] of a link already parsed.
pub fn canonical_url(mut url: Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    // The url crate already drops a port that is the scheme's default.
    if let Some(host) =
        url.host_str().filter(|h| h.ends_with('.')).map(|h| h.trim_end_matches('.').to_owned())
    {
        let _ = url.set_host(Some(&host));
    }
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if params.is_empty() {
        url.set_query(None);
    } else {
        params.sort();
        url.query_pairs_mut().clear().extend_pairs(params);
    }
    Some(url.to_string())
}

/// The most of a guid kept verbatim as a key; longer ones are hashed.
const MAX_GUID_KEY: usize = 512;

/// The key of an item within its feed: `g:` guid, else `l:` canonical link, else `h:`
/// a hash of title and text.
pub fn item_key(guid: Option<&str>, canonical_link: Option<&str>, title: &str, text: &str) -> String {
    if let Some(g) = guid.map(str::trim).filter(|g| !g.is_empty()) {
        if g.len() <= MAX_GUID_KEY {
            return format!("g:{g}");
        }
        return format!("g#{}", hex(&digest(&[g])[..16]));
    }
    if let Some(l) = canonical_link {
        return format!("l:{l}");
    }
    format!("h:{}", hex(&digest(&[title.trim(), text.trim()])[..16]))
}

/// What tells an item's next version in its feed from a repeat: XXH3-128 over all it
/// says (see [`content_parts`]), each part followed by a NUL as in [`digest`]. Not a
/// cryptographic hash, and it needs none: it is only ever compared with the hash of
/// the same item (same feed, same key), whose text the feed controls anyway. SHA-256
/// over the same bytes was 7 % of all parsing.
pub fn content_hash(item: &Item) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    for part in content_parts(item) {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.digest128().to_le_bytes()
}

/// The content hash of items stored before schema version 7 (the store's
/// `legacy_hashes_below` watermark): the first half of [`digest`] of the same parts.
/// Checked only where the new hash differs, so such an item is not taken for changed.
pub fn legacy_content_hash(item: &Item) -> [u8; 16] {
    let parts = content_parts(item);
    let d = digest(&parts.each_ref().map(|p| p.as_ref()));
    std::array::from_fn(|i| d[i])
}

/// The parts of an item its content hash covers, in order.
fn content_parts(item: &Item) -> [std::borrow::Cow<'_, str>; 8] {
    let stamp = |d: Option<chrono::DateTime<chrono::Utc>>| {
        d.map(|d| d.timestamp().to_string()).unwrap_or_default().into()
    };
    [
        item.title.as_str().into(),
        item.link.as_deref().unwrap_or("").into(),
        item.summary.as_deref().unwrap_or("").into(),
        item.content.as_deref().unwrap_or("").into(),
        item.authors.join("\u{1}").into(),
        item.categories.join("\u{1}").into(),
        stamp(item.published),
        stamp(item.updated),
    ]
}

/// SHA-256 over the parts, each followed by a NUL so that ("ab","c") != ("a","bc").
pub fn digest(parts: &[&str]) -> [u8; 32] {
    digest_bytes(&parts.iter().map(|p| p.as_bytes()).collect::<Vec<_>>())
}

/// [`digest`] of byte strings: the same hash for the bytes of the same strings.
pub fn digest_bytes(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    h.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable entry id for a story in published feeds, derived from its representative
/// item's feed and key: the same story keeps it across regenerations and rebuilds.
pub fn entry_id(feed_id: &str, key: &str) -> String {
    let d = digest(&[feed_id, key]);
    let h = hex(&d[..16]);
    format!("urn:uuid:{}-{}-5{}-{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[16..20], &h[20..32])
}

/// LSH rows per band of the lead signature: 16 bands of 2 rows make a pair whose
/// leads are 0.5 alike a candidate with probability 0.99 (0.3 alike: 0.78), which is
/// what finds summaries of a full article and lightly edited wire copies.
const LEAD_ROWS: usize = 2;
const LEAD_BANDS: usize = SIG_LEN / LEAD_ROWS;
/// LSH rows per band of the whole-text signature, and bands (of the first 20 of its
/// 32 values): 10 bands of 2 rows make a pair 0.5 alike a candidate with probability
/// 0.94 (0.3 alike: 0.61), for re-headlined copies whose lead changed and copies
/// reworded or reordered throughout, whose whole texts are about half alike. (8 bands
/// of 4 rows, before, found a pair 0.5 alike with probability 0.4.) The candidates
/// are then held to [`resemblance`]. On the development half of the harder labelled
/// set, 12 bands gave recall 0.967 and 8 bands 0.955, against 0.964 for 10; each band
/// costs a key per item (time and room: see `bench/STORIES.md`).
const FULL_ROWS: usize = 2;
const FULL_BANDS: usize = 10;
/// LSH keys per fingerprint.
pub const BANDS: usize = LEAD_BANDS + FULL_BANDS;
/// Words in the lead signature.
pub const LEAD_WORDS: usize = 60;
/// Texts shorter than this (after boilerplate removal) get no fingerprint: too little
/// to tell a copy from a coincidence.
pub const MIN_WORDS: usize = 12;
/// Default similarity (estimated Jaccard of word 3-shingles) from which two items are
/// one story.
pub const DEFAULT_THRESHOLD: f64 = crate::model::StoryRule::DEFAULT.threshold;
/// A sentence repeated in this many items of one feed is that feed's boilerplate.
pub const BOILERPLATE_REPEATS: u32 = 3;

/// Numbers kept per fingerprint.
pub const MAX_NUMBERS: usize = 16;
/// Names kept per fingerprint.
pub const MAX_NAMES: usize = 16;
/// Two texts that both mention names or figures tell one story only if at least this
/// share of those of the text that mentions fewer are in the other too: a rewritten
/// copy keeps them, another event told from one template or a follow-up does not.
pub const MENTIONS_AGREE: f64 = 0.6;
/// When their names and figures agree, two texts count as alike as the share of the
/// shorter one's shingles found in the longer one, divided by this: with the default
/// threshold (0.5), 30 % of the shorter text. Rewording keeps few shingles, and an
/// excerpt or a copy wrapped in other text shares few of the longer one's, so the
/// Jaccard similarity of such copies is low.
pub const CONTAINMENT_SCALE: f64 = 0.6;
/// Names and figures that disagree tell two stories apart only if at least this many
/// of those of the text that mentions fewer are missing from the other; with fewer
/// missing, the text decides. A copy may carry another outlet's credit ("LONDON
/// (Example Wire) -": two names) and a heading run into its first sentence, which a
/// story with few names of its own cannot outweigh.
pub const MIN_MISSING_TO_DISAGREE: usize = 3;
/// [`CONTAINMENT_SCALE`] when only names agree, one text quoting figures and the
/// other none (as a follow-up about the same people may): 45 % of the shorter text.
pub const NAMES_ONLY_SCALE: f64 = 0.9;

/// 64-bit FNV-1a: a stable hash (fingerprints are stored, so the hash must never
/// change between versions, which rules out std's `DefaultHasher`).
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| fnv_byte(h, *b))
}

/// splitmix64's finaliser: spreads the bits of `x`.
const fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes of the lower-cased words (runs of letters and digits) of a text, without
/// allocating a string per word.
pub fn word_hashes(text: &str) -> Vec<u64> {
    struct Hashes(Vec<u64>);
    impl Found for Hashes {
        #[inline(always)]
        fn word(&mut self, w: Word) {
            self.0.push(w.hash);
        }
        fn sentence_end(&mut self, _: usize) {}
    }
    let mut out = Hashes(Vec::with_capacity(text.len() / 6));
    scan(text, &mut out);
    out.0
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_byte(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
}

/// What [`scan`] finds, told in text order. The methods are called in the loop over
/// the text's bytes: those called for every word are best inlined.
trait Found {
    fn word(&mut self, w: Word);
    /// The end of a sentence: after `.`, `!` or `?` followed by white space or the end
    /// of the text, at a line break, and at the end of the text; with the byte offset
    /// just past the mark (the text's length at its end).
    fn sentence_end(&mut self, at: usize);
}

/// A word (a run of letters and digits) that [`scan`] found.
#[derive(Debug, Clone, Copy)]
struct Word {
    /// FNV-1a of its lower-cased UTF-8.
    hash: u64,
    /// Its first byte in the text, and the byte after it.
    start: usize,
    end: usize,
    /// The first byte of its token: the run of anything but ASCII white space that it
    /// is part of (a name is a token of one word; see [`Names`]).
    token: usize,
}

/// Each ASCII byte lower-cased if it is a letter or a digit (a word's byte), else 0;
/// 0 for every byte of a multi-byte character, which [`scan`] decodes instead.
static WORD_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        if (b as u8).is_ascii_alphanumeric() {
            table[b] = (b as u8).to_ascii_lowercase();
        }
        b += 1;
    }
    table
};

/// A character's lower-cased UTF-8 in `buf` and its length, if it is alphanumeric
/// (part of a word); `None` if not.
fn lower_utf8(c: char, buf: &mut [u8; 12]) -> Option<usize> {
    if !c.is_alphanumeric() {
        return None;
    }
    let mut len = 0;
    for l in c.to_lowercase() {
        len += l.encode_utf8(&mut buf[len..]).len();
    }
    Some(len)
}

/// A word character lower-cased: its UTF-8 bytes and their number.
type Lowered = ([u8; 12], u8);

/// [`lower_utf8`] of every character of two UTF-8 bytes (U+0080 to U+07FF: Latin,
/// Greek, Cyrillic, Hebrew, Arabic …), the most common outside ASCII, computed once.
static TWO_BYTE_LOWER: std::sync::LazyLock<Vec<Option<Lowered>>> = std::sync::LazyLock::new(|| {
    (0x80..0x800u32)
        .map(|c| {
            let mut buf = [0u8; 12];
            let c = char::from_u32(c)?;
            let len = lower_utf8(c, &mut buf)?;
            Some((buf, len as u8))
        })
        .collect()
});

/// A character outside ASCII lower-cased, as words are hashed: its UTF-8 bytes, from
/// [`TWO_BYTE_LOWER`] for two-byte characters, else looked up in full (into `buf`);
/// `None` if it is not a letter or digit.
fn lowered(c: char, buf: &mut [u8; 12]) -> Option<&[u8]> {
    match TWO_BYTE_LOWER.get((c as usize).wrapping_sub(0x80)) {
        Some(l) => l.as_ref().map(|(bytes, len)| &bytes[..usize::from(*len)]),
        // Rarer characters: looked up in full each time.
        None => lower_utf8(c, buf).map(|len| &buf[..len]),
    }
}

/// One pass over a text for both [`word_hashes`] and [`sentences`]. ASCII, most of
/// any feed's text, is handled byte by byte, a word's bytes in a loop of their own;
/// other characters are decoded. The marks that end a sentence are not letters, so a
/// word never spans two sentences.
fn scan(text: &str, found: &mut impl Found) {
    let bytes = text.as_bytes();
    let mut word: Option<u64> = None;
    // Where the word being hashed starts, and the token it is in.
    let (mut start, mut token) = (0, 0);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if WORD_BYTE[usize::from(b)] != 0 {
            if word.is_none() {
                start = i;
            }
            let mut h = word.unwrap_or(FNV_OFFSET);
            while let Some(&l) = bytes.get(i).map(|b| &WORD_BYTE[usize::from(*b)]).filter(|l| **l != 0) {
                h = fnv_byte(h, l);
                i += 1;
            }
            word = Some(h);
            continue;
        }
        if b.is_ascii() {
            if let Some(hash) = word.take() {
                found.word(Word { hash, start, end: i, token });
            }
            i += 1;
            if b.is_ascii_whitespace() {
                token = i;
            }
            let ends = match b {
                b'\n' => true,
                b'.' | b'!' | b'?' => bytes.get(i).is_none_or(u8::is_ascii_whitespace),
                _ => false,
            };
            if ends {
                found.sentence_end(i);
            }
            continue;
        }
        // `i` is on a character boundary: only ASCII bytes were stepped over singly.
        let Some(c) = text[i..].chars().next() else { break };
        let at = i;
        i += c.len_utf8();
        let mut buf = [0u8; 12];
        if let Some(lower) = lowered(c, &mut buf) {
            if word.is_none() {
                start = at;
            }
            let mut acc = word.unwrap_or(FNV_OFFSET);
            lower.iter().for_each(|b| acc = fnv_byte(acc, *b));
            word = Some(acc);
        } else if let Some(hash) = word.take() {
            found.word(Word { hash, start, end: at, token });
        }
    }
    if let Some(hash) = word {
        found.word(Word { hash, start, end: bytes.len(), token });
    }
    found.sentence_end(bytes.len());
}

/// A text split by [`sentences`]: the hashes of its words, in order, and of each
/// sentence with the end of its words; the hashes of the names it mentions. Sentences
/// without words are not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sentences {
    words: Vec<u64>,
    /// The hashes of the names, in text order (see [`Names`]).
    names: Vec<u16>,
    /// Where each sentence ends, in text order. A sentence's bytes start where the one
    /// before ended.
    ends: Vec<SentenceEnd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SentenceEnd {
    hash: u64,
    /// The end of its words in `words`, of its bytes in the text, and of its names in
    /// `names`.
    words: usize,
    bytes: usize,
    names: usize,
}

impl Sentences {
    /// Each sentence's hash and its range of what `end` reads (words, bytes or
    /// names), which starts where the sentence before ended.
    fn ranges(
        &self,
        end: fn(&SentenceEnd) -> usize,
    ) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(end));
        self.ends.iter().zip(starts).map(move |(e, start)| (e.hash, start..end(e)))
    }

    /// Each sentence's hash and the hashes of its words.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u64])> {
        self.ranges(|e| e.words).map(|(h, r)| (h, &self.words[r]))
    }

    /// Each sentence's hash and its part of `text`, the text it was split from.
    fn spans<'t>(&self, text: &'t str) -> impl Iterator<Item = (u64, &'t str)> {
        self.ranges(|e| e.bytes).map(|(h, r)| (h, text.get(r).unwrap_or("")))
    }

    /// Each sentence's hash and the hashes of its names.
    fn names(&self) -> impl Iterator<Item = (u64, &[u16])> {
        self.ranges(|e| e.names).map(|(h, r)| (h, &self.names[r]))
    }

    /// Each sentence's hash.
    pub fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.ends.iter().map(|e| e.hash)
    }
}

/// The sentences of a text (split after `.`, `!`, `?` followed by white space, and at
/// line breaks) as the hashes of their words; a sentence's hash ignores case and
/// punctuation. Sentences without words are skipped.
pub fn sentences(text: &str) -> Sentences {
    struct Split<'t> {
        words: Vec<u64>,
        ends: Vec<SentenceEnd>,
        names: Names<'t>,
        /// The sentence's first word in `words`.
        start: usize,
        /// The sentence's hash so far, folded in as each word comes (not after the
        /// sentence), so that it is computed while the next word is hashed.
        sentence: u64,
    }
    impl Found for Split<'_> {
        #[inline(always)]
        fn word(&mut self, w: Word) {
            self.names.word(w, self.words.len() == self.start);
            self.words.push(w.hash);
            self.sentence = mix(self.sentence ^ w.hash);
        }
        fn sentence_end(&mut self, at: usize) {
            if self.words.len() > self.start {
                let names = self.names.sentence_end(at);
                let words = self.words.len();
                self.ends.push(SentenceEnd { hash: self.sentence, words, bytes: at, names });
                self.start = words;
                self.sentence = FNV_OFFSET;
            }
        }
    }
    let mut split = Split {
        words: Vec::with_capacity(text.len() / 6),
        ends: Vec::new(),
        names: Names::new(text),
        start: 0,
        sentence: FNV_OFFSET,
    };
    scan(text, &mut split);
    Sentences { words: split.words, names: split.names.found, ends: split.ends }
}

/// Finds the names of a text while [`sentences`] splits it. A name is a token (a run
/// of anything but ASCII white space) that is one word of at least three letters or
/// digits, punctuation around it aside, starting with a capital, and is not its
/// sentence's first token (which is capitalised anyway) nor follows a colon (after
/// which a capital opens a sentence too: "Police said: Officers ..."). Its hash is
/// [`name_hash`]'s.
struct Names<'t> {
    text: &'t str,
    found: Vec<u16>,
    /// The end of the word before, and the first byte of the sentence being split.
    last_end: Option<usize>,
    sentence: usize,
    /// A word that is a name if no other word follows in its token.
    pending: Option<Word>,
}

impl<'t> Names<'t> {
    fn new(text: &'t str) -> Names<'t> {
        Names { text, found: Vec::new(), last_end: None, sentence: 0, pending: None }
    }

    /// The next word; `first` if it is its sentence's first. Most words neither start
    /// with a capital (nor a character outside ASCII) nor follow one that may be a
    /// name: this much is done in the splitting loop, the rest is called.
    #[inline(always)]
    fn word(&mut self, w: Word, first: bool) {
        let b = self.text.as_bytes().get(w.start).copied().unwrap_or(0);
        if self.pending.is_some() || b.is_ascii_uppercase() || b >= 0xc0 {
            self.candidate(w, first);
        }
        self.last_end = Some(w.end);
    }

    #[inline(never)]
    fn candidate(&mut self, w: Word, first: bool) {
        let bytes = self.text.as_bytes();
        if let Some(p) = self.pending.take()
            && w.token > p.end
        {
            self.push(p);
        }
        let b = bytes.get(w.start).copied().unwrap_or(0);
        if !(b.is_ascii_uppercase() || b >= 0xc0) {
            return;
        }
        // Another word before it in its token.
        if self.last_end.is_some_and(|end| w.token <= end) {
            return;
        }
        // The sentence's first token: the first word, with only white space before it
        // in the sentence (a sentence's bytes may start with a run of punctuation, a
        // sentence without words that joined it).
        let before = bytes.get(self.sentence..w.token).unwrap_or_default();
        if first && before.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if before.iter().rfind(|b| !b.is_ascii_whitespace()) == Some(&b':') {
            return;
        }
        self.pending = Some(w);
    }

    /// The end of a sentence, at byte `at`; returns the number of names found so far.
    fn sentence_end(&mut self, at: usize) -> usize {
        if let Some(p) = self.pending.take() {
            self.push(p);
        }
        self.sentence = at;
        self.found.len()
    }

    fn push(&mut self, w: Word) {
        // Words that open sentences and are never names are known by their hash
        // first (FNV-1a of the lower-cased word, as `NOT_NAME_HASHES` are made).
        if NOT_NAME_HASHES.contains(&w.hash) && self.text.get(w.start..w.end).is_some_and(is_not_name) {
            return;
        }
        if let Some(h) = self.text.get(w.start..w.end).and_then(name_hash) {
            self.found.push(h);
        }
    }
}

/// Sentences that occur in at least [`BOILERPLATE_REPEATS`] of the given texts (each
/// text counted once per sentence): a feed's footers, notices and standard
/// paragraphs, when the texts are that feed's items.
pub fn repeated_sentences<'a>(texts: impl IntoIterator<Item = &'a str>) -> HashSet<u64> {
    let split: Vec<Sentences> = texts.into_iter().map(sentences).collect();
    repeated_among(&split)
}

/// [`repeated_sentences`] over texts already split by [`sentences`].
pub fn repeated_among<'a>(texts: impl IntoIterator<Item = &'a Sentences>) -> HashSet<u64> {
    // Sentence hashes come from third-party text: a keyed hasher, but a fast one.
    let mut counts: std::collections::HashMap<u64, u32, foldhash::fast::RandomState> = Default::default();
    let mut unique = Vec::new();
    for t in texts {
        unique.clear();
        unique.extend(t.hashes());
        unique.sort_unstable();
        unique.dedup();
        for h in &unique {
            *counts.entry(*h).or_default() += 1;
        }
    }
    counts.into_iter().filter(|(_, n)| *n >= BOILERPLATE_REPEATS).map(|(h, _)| h).collect()
}

/// Fingerprints an item's text, leaving out the sentences in `boilerplate`. `None`
/// when fewer than [`MIN_WORDS`] words remain.
pub fn fingerprint(text: &str, boilerplate: &HashSet<u64>) -> Option<Fingerprint> {
    fingerprint_split(text, &sentences(text), boilerplate)
}

/// [`fingerprint`] of a text already split by [`sentences`].
pub fn fingerprint_split(text: &str, split: &Sentences, boilerplate: &HashSet<u64>) -> Option<Fingerprint> {
    // Most texts hold no boilerplate: then no sentence is looked up again.
    let any_boilerplate = split.hashes().any(|h| boilerplate.contains(&h));
    let kept_sentence = |h: &u64| !any_boilerplate || !boilerplate.contains(h);
    let kept: std::borrow::Cow<'_, [u64]> = if any_boilerplate {
        split.iter().filter(|(h, _)| kept_sentence(h)).flat_map(|(_, w)| w.iter().copied()).collect()
    } else {
        (&split.words[..]).into()
    };
    if kept.len() < MIN_WORDS {
        return None;
    }
    let (lead, full) = minhashes(&kept, LEAD_WORDS);
    // The numbers and names of the sentences kept: those of the whole text, where
    // none is boilerplate. A number never spans two sentences, and the text after
    // the last sentence with words has no digits.
    let (mut numbers, mut names) = (Vec::new(), Vec::new());
    if any_boilerplate {
        let spans = split.spans(text).filter(|(h, _)| kept_sentence(h));
        spans.for_each(|(_, s)| push_numbers(s, &mut numbers));
        let kept_names = split.names().filter(|(h, _)| kept_sentence(h));
        kept_names.for_each(|(_, n)| names.extend_from_slice(n));
    } else {
        push_numbers(text, &mut numbers);
        names.extend_from_slice(&split.names);
    }
    let shingles = |words: usize| u16::try_from(words.saturating_sub(2)).unwrap_or(u16::MAX);
    let marks = Marks {
        lead_shingles: shingles(kept.len().min(LEAD_WORDS)),
        full_shingles: shingles(kept.len()),
        names: smallest(names, MAX_NAMES),
    };
    Some(Fingerprint { lead, full, numbers: smallest(numbers, MAX_NUMBERS), marks: Some(marks) })
}

/// Words that open sentences and are never names: where text extracted from markup
/// runs a heading or a paragraph into the next without a full stop, they would look
/// like names.
const NOT_NAMES: &[&str] = &[
    "the", "and", "but", "for", "this", "that", "these", "those", "its", "his", "her", "their", "our",
    "they", "she", "you", "there", "what", "when", "while", "after", "before", "from", "with", "some", "one",
    "all", "not", "yes",
];

/// [`fnv64`] of each of [`NOT_NAMES`] (lower case already).
static NOT_NAME_HASHES: [u64; NOT_NAMES.len()] = {
    let mut out = [0; NOT_NAMES.len()];
    let mut i = 0;
    while i < NOT_NAMES.len() {
        let (bytes, mut h, mut j) = (NOT_NAMES[i].as_bytes(), FNV_OFFSET, 0);
        while j < bytes.len() {
            h = (h ^ bytes[j] as u64).wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        out[i] = h;
        i += 1;
    }
    out
};

fn is_not_name(word: &str) -> bool {
    NOT_NAMES.iter().any(|n| word.eq_ignore_ascii_case(n))
}

/// What a name's hash starts from, so that no name hashes as a number does.
const NAME_SEED: u64 = 0xa409_3822_299f_31d0;

/// The hash of a word (letters and digits only) that is a name, if it has at least
/// three characters, the first a capital letter (whether it is one of [`NOT_NAMES`]
/// is asked before). FNV-1a of its lower-cased UTF-8 from [`NAME_SEED`], mixed. 16
/// bits: two texts' names are compared by the dozen, so a false agreement stays rare
/// (one in 65,536 per pair of names).
fn name_hash(word: &str) -> Option<u16> {
    if word.is_ascii() {
        // Most words: the same tests and hash byte by byte, without decoding
        // characters or looking up their lower case.
        let b = word.as_bytes();
        if b.len() < 3 || !b[0].is_ascii_uppercase() {
            return None;
        }
        return Some(mix(b.iter().fold(NAME_SEED, |h, c| fnv_byte(h, c.to_ascii_lowercase()))) as u16);
    }
    let mut chars = word.chars();
    if !chars.next().is_some_and(char::is_uppercase) || word.chars().nth(2).is_none() {
        return None;
    }
    // Each character lower-cased as `scan` does it.
    let mut h = NAME_SEED;
    let mut buf = [0u8; 12];
    for c in word.chars() {
        if c.is_ascii() {
            h = fnv_byte(h, c.to_ascii_lowercase() as u8);
        } else {
            lowered(c, &mut buf).unwrap_or_default().iter().for_each(|b| h = fnv_byte(h, *b));
        }
    }
    Some(mix(h) as u16)
}

/// The distinct values of `v`, the `max` smallest, in order.
fn smallest<T: Ord>(mut v: Vec<T>, max: usize) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v.truncate(max);
    v
}

/// Hashes of the distinct numbers written in a text (`2,280` and `2.5` are one number
/// each), smallest first, at most [`MAX_NUMBERS`].
pub fn number_hashes(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    push_numbers(text, &mut out);
    smallest(out, MAX_NUMBERS)
}

/// Adds the hash of each number written in `text` to `out`, in text order.
fn push_numbers(text: &str, out: &mut Vec<u32>) {
    // Digits and separators are ASCII, and no byte of a multi-byte character is. A
    // number's hash is FNV-1a of its digits alone.
    let bytes = text.as_bytes();
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = 0;
    while let Some(first) = next_digit(bytes, i) {
        let mut number = FNV_OFFSET;
        i = first;
        loop {
            while digit(i) {
                number = fnv_byte(number, bytes[i]);
                i += 1;
            }
            // A thousands or decimal separator inside a number.
            if matches!(bytes.get(i), Some(b',' | b'.')) && digit(i + 1) {
                i += 1;
            } else {
                break;
            }
        }
        out.push(number as u32);
    }
}

/// The first ASCII digit at or after `from`. Most text has few: it is looked for 16
/// bytes at a time, with a test the compiler makes one vector comparison.
fn next_digit(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 16) {
        if chunk.iter().fold(false, |any, b| any | b.is_ascii_digit()) {
            break;
        }
        at += 16;
    }
    bytes.get(at..)?.iter().position(u8::is_ascii_digit).map(|p| at + p)
}

/// Of two sets of hashes, each its `max` smallest in order: how many hashes both
/// have, and how many of each were compared. A set cut at `max` holds its smallest
/// hashes, so only the range both cover is compared; sets not cut, whole.
fn overlap<T: Ord + Copy>(a: &[T], b: &[T], max: usize) -> (usize, usize, usize) {
    let cut = a.len() >= max || b.len() >= max;
    let limit = match (a.last(), b.last()) {
        (Some(x), Some(y)) if cut => Some(*x.min(y)),
        _ => None,
    };
    let within = |x: &T| limit.is_none_or(|l| *x <= l);
    let a = &a[..a.partition_point(within)];
    let b = &b[..b.partition_point(within)];
    let common = a.iter().filter(|x| b.binary_search(x).is_ok()).count();
    (common, a.len(), b.len())
}

/// Whether two texts quote mostly different figures: each has at least two numbers
/// and fewer than half of the smaller set appear in the other.
fn numbers_disagree(a: &[u32], b: &[u32]) -> bool {
    if a.len() < 2 || b.len() < 2 {
        return false;
    }
    let (common, a, b) = overlap(a, b, MAX_NUMBERS);
    let smaller = a.min(b);
    smaller >= 2 && common * 2 < smaller
}

/// How far two texts' names and figures agree.
struct Agreement {
    /// The share of the names and figures of the text that mentions fewer that the
    /// other mentions too.
    share: f64,
    /// How many of that text's names and figures the other does not mention.
    missing: usize,
    /// One text quotes figures and the other none: only names were compared.
    names_only: bool,
}

/// How far the names and figures of two texts agree; `None` if either mentions none
/// (or has no [`Marks`]).
fn mentions_agree(a: &Fingerprint, b: &Fingerprint) -> Option<Agreement> {
    let (ma, mb) = (a.marks.as_ref()?, b.marks.as_ref()?);
    let (cn, an, bn) = overlap(&a.numbers, &b.numbers, MAX_NUMBERS);
    let (cm, am, bm) = overlap(&ma.names, &mb.names, MAX_NAMES);
    let smaller = (an + am).min(bn + bm);
    let names_only = a.numbers.is_empty() != b.numbers.is_empty();
    let common = cn + cm;
    (smaller > 0).then(|| Agreement {
        share: common as f64 / smaller as f64,
        missing: smaller.saturating_sub(common),
        names_only,
    })
}

/// Estimated share of the shingles of the smaller of two sets (of `na` and `nb`) that
/// are in the other, from the estimated Jaccard similarity of their signatures:
/// |A ∩ B| = J (|A| + |B|) / (1 + J).
fn containment(a: &Signature, b: &Signature, na: u16, nb: u16) -> f64 {
    let j = similarity(a, b);
    let (na, nb) = (f64::from(na.max(1)), f64::from(nb.max(1)));
    (j / (1.0 + j) * (na + nb) / na.min(nb)).min(1.0)
}

/// Per-permutation multipliers (odd, in `.0`) and offsets (in `.1`) of the universal
/// hashes `(a * x + b) >> 32`: successive splitmix64 outputs from a fixed seed, fixed
/// forever, as they are part of the stored fingerprints. Two arrays rather than one
/// of pairs: the compiler turns a loop over them into vector arithmetic over all
/// permutations at once.
const PERMS: ([u64; SIG_LEN], [u64; SIG_LEN]) = {
    let (mut a, mut b) = ([0u64; SIG_LEN], [0u64; SIG_LEN]);
    let mut state: u64 = 0x5eed_f00d_cafe_d00d;
    let mut i = 0;
    while i < SIG_LEN {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        a[i] = mix(state) | 1;
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        b[i] = mix(state);
        i += 1;
    }
    (a, b)
};
const PERM_A: [u64; SIG_LEN] = PERMS.0;
const PERM_B: [u64; SIG_LEN] = PERMS.1;

/// MinHash signatures of the word 3-shingles of the first `lead_words` words and of
/// all of them, in one pass: each shingle's permuted values are computed once.
///
/// The same code is compiled three times, and the widest the CPU runs is used: with
/// only SSE2 the 64-bit multiplies take two lanes at a time, with AVX2 four, with
/// AVX-512 DQ eight, natively (on the 600x20 bench corpus normalising went from
/// 275 ms to 235 ms with AVX2 and to 222 ms with AVX-512, and the shingles' hashes
/// computed the same way saved more). Integer arithmetic: every version gives the
/// same signatures.
fn minhashes(words: &[u64], lead_words: usize) -> (Signature, Signature) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the CPU has AVX-512 DQ.
        return unsafe { minhashes_avx512(words, lead_words) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { minhashes_avx2(words, lead_words) };
    }
    minhashes_any(words, lead_words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn minhashes_avx2(words: &[u64], lead_words: usize) -> (Signature, Signature) {
    minhashes_any(words, lead_words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn minhashes_avx512(words: &[u64], lead_words: usize) -> (Signature, Signature) {
    minhashes_any(words, lead_words)
}

#[inline(always)]
fn minhashes_any(words: &[u64], lead_words: usize) -> (Signature, Signature) {
    // Three offset views rather than `windows(3)`, so that the compiler hashes
    // several shingles at once.
    let (second, third) = (words.get(1..).unwrap_or_default(), words.get(2..).unwrap_or_default());
    // A loop over a zeroed vector, not `collect()`: that calls a generic function
    // compiled once, without this function's CPU features, and did not vectorise.
    let mut shingles = vec![0u64; third.len()];
    for (s, ((x, y), z)) in shingles.iter_mut().zip(words.iter().zip(second).zip(third)) {
        *s = mix(x ^ mix(y ^ mix(*z)));
    }
    let lead_shingles = lead_words.min(words.len()).saturating_sub(2);
    let mut lead = [u32::MAX; SIG_LEN];
    minhash_into_any(&mut lead, &shingles[..lead_shingles]);
    // The whole text's signature goes on from the lead's: the lead is a prefix.
    let mut full = lead;
    minhash_into_any(&mut full, &shingles[lead_shingles..]);
    (lead, full)
}

#[inline(always)]
fn minhash_into_any(sig: &mut Signature, shingles: &[u64]) {
    for &x in shingles {
        for j in 0..SIG_LEN {
            let v = (PERM_A[j].wrapping_mul(x).wrapping_add(PERM_B[j]) >> 32) as u32;
            sig[j] = sig[j].min(v);
        }
    }
}

/// Estimated Jaccard similarity of the shingle sets behind two signatures.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / SIG_LEN as f64
}

/// Whether two texts tell of different events whatever their words: they quote
/// mostly different figures, or both mention names or figures and too few of them
/// agree (the cases in which [`resemblance`] is 0 however alike the wording).
pub fn contradict(a: &Fingerprint, b: &Fingerprint) -> bool {
    numbers_disagree(&a.numbers, &b.numbers)
        || mentions_agree(a, b)
            .is_some_and(|m| m.share < MENTIONS_AGREE && m.missing >= MIN_MISSING_TO_DISAGREE)
}

/// How alike two fingerprints are, from 0 to 1:
/// - 0 when the texts quote mostly different figures, or when both mention names or
///   figures and too few of them agree ([`MENTIONS_AGREE`]; with fewer than
///   [`MIN_MISSING_TO_DISAGREE`] missing, the text decides instead);
/// - when they agree, the better of lead and whole-text similarity, or the estimated
///   share of the shorter text in the other over [`CONTAINMENT_SCALE`] if more
///   ([`NAMES_ONLY_SCALE`] if only names could be compared);
/// - otherwise (a text without names or figures, or a fingerprint stored before
///   [`Marks`]), the better of lead and whole-text similarity.
pub fn resemblance(a: &Fingerprint, b: &Fingerprint) -> f64 {
    if numbers_disagree(&a.numbers, &b.numbers) {
        return 0.0;
    }
    let text = similarity(&a.lead, &b.lead).max(similarity(&a.full, &b.full));
    let (Some(ma), Some(mb)) = (&a.marks, &b.marks) else { return text };
    match mentions_agree(a, b) {
        None => text,
        Some(agreed) if agreed.share >= MENTIONS_AGREE => {
            let lead = containment(&a.lead, &b.lead, ma.lead_shingles, mb.lead_shingles);
            let full = containment(&a.full, &b.full, ma.full_shingles, mb.full_shingles);
            let scale = if agreed.names_only { NAMES_ONLY_SCALE } else { CONTAINMENT_SCALE };
            let shared = (lead.max(full) / scale).min(1.0);
            if agreed.names_only { shared } else { text.max(shared) }
        }
        Some(agreed) if agreed.missing < MIN_MISSING_TO_DISAGREE => text,
        Some(_) => 0.0,
    }
}

/// LSH keys of a fingerprint: one per band of each signature, distinct between bands
/// and between the two signatures, as SQLite integers.
pub fn band_keys(f: &Fingerprint) -> Vec<i64> {
    let mut keys = Vec::with_capacity(BANDS);
    for (which, sig, rows_per_band, bands) in
        [(1u64, &f.lead, LEAD_ROWS, LEAD_BANDS), (2u64, &f.full, FULL_ROWS, FULL_BANDS)]
    {
        for (band, rows) in sig.chunks(rows_per_band).enumerate().take(bands) {
            let mut h = mix(which << 8 | band as u64);
            for r in rows {
                h = mix(h ^ u64::from(*r));
            }
            keys.push(h as i64);
        }
    }
    keys
}

/// The first byte of a fingerprint stored with [`Marks`]. Fingerprints stored before
/// are a multiple of 4 bytes long, these one more.
const FORMAT_2: u8 = 2;

/// A fingerprint as stored, each value as 4 little-endian bytes: the two signatures
/// then the number hashes; with [`Marks`], after a first byte [`FORMAT_2`], the two
/// signatures, the shingle counts (lead, whole: 16 bits each), the counts of numbers
/// and names (8 bits each), the numbers, and the names two to a value (the first in
/// the low half; an odd count's last value has 0 in its high half).
pub fn signature_bytes(f: &Fingerprint) -> Vec<u8> {
    let sigs = f.lead.iter().chain(f.full.iter());
    let Some(m) = &f.marks else {
        return sigs.chain(f.numbers.iter()).flat_map(|v| v.to_le_bytes()).collect();
    };
    let sizes = u32::from(m.lead_shingles) | u32::from(m.full_shingles) << 16;
    // Both lists are cut at their MAX, far below 256.
    let counts = (f.numbers.len() & 0xff) as u32 | ((m.names.len() & 0xff) as u32) << 8;
    let names: Vec<u32> = m
        .names
        .chunks(2)
        .map(|p| u32::from(p[0]) | u32::from(p.get(1).copied().unwrap_or(0)) << 16)
        .collect();
    let values = sigs.chain([&sizes, &counts]).chain(&f.numbers).chain(&names);
    std::iter::once(FORMAT_2).chain(values.flat_map(|v| v.to_le_bytes())).collect()
}

/// A stored fingerprint read back; `None` if the bytes are not one.
pub fn signature_from_bytes(b: &[u8]) -> Option<Fingerprint> {
    let (format_2, b) = match b.split_first() {
        Some((&FORMAT_2, rest)) if rest.len().is_multiple_of(4) => (true, rest),
        _ => (false, b),
    };
    if b.len() < SIG_LEN * 8 || !b.len().is_multiple_of(4) {
        return None;
    }
    let mut v = b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut lead = [0u32; SIG_LEN];
    let mut full = [0u32; SIG_LEN];
    for x in lead.iter_mut().chain(full.iter_mut()) {
        *x = v.next()?;
    }
    if !format_2 {
        let numbers: Vec<u32> = v.collect();
        return (numbers.len() <= MAX_NUMBERS).then_some(Fingerprint { lead, full, numbers, marks: None });
    }
    let (sizes, counts) = (v.next()?, v.next()?);
    let (numbers, names) = ((counts & 0xff) as usize, (counts >> 8) as usize);
    if numbers > MAX_NUMBERS || names > MAX_NAMES || v.len() != numbers + names.div_ceil(2) {
        return None;
    }
    let numbers: Vec<u32> = v.by_ref().take(numbers).collect();
    let names = v.flat_map(|p| [p as u16, (p >> 16) as u16]).take(names).collect();
    let marks = Marks { lead_shingles: sizes as u16, full_shingles: (sizes >> 16) as u16, names };
    Some(Fingerprint { lead, full, numbers, marks: Some(marks) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names found while splitting a text are those of the definition, sentence by
    /// sentence (stored fingerprints hold their hashes, so the definition never
    /// changes): on every labelled text, and on 20,000 texts made of the pieces that
    /// test its edges (punctuation around and inside words, colons, sentences that
    /// start with punctuation or have no words, white space and capitals outside
    /// ASCII, words that open sentences).
    #[test]
    fn names_found_while_splitting_are_those_of_the_definition() {
        let check = assert_names_as_defined;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut texts = 0;
        for file in ["dedup/pairs.jsonl", "stories/dev.jsonl", "stories/heldout.jsonl"] {
            for line in std::fs::read_to_string(root.join(file)).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                for side in ["a", "b"] {
                    check(v[side]["text"].as_str().unwrap());
                    texts += 1;
                }
            }
        }
        assert!(texts > 2000, "{texts} labelled texts");
        const PIECES: &[&str] = &[
            " ",
            " ",
            " ",
            "\n",
            "\t",
            ". ",
            "! ",
            "? ",
            ".",
            ":",
            ": ",
            " : ",
            "\u{a0}",
            "\u{2014}",
            "\u{ab}",
            "\u{bb}",
            "\"",
            "'",
            "-",
            "(",
            ")",
            "***",
            "2,280",
            "3.5",
            "Police",
            "police",
            "Tidewater",
            "The",
            "the",
            "THE",
            "Its",
            "Ab",
            "AB",
            "ABC",
            "A1b",
            "McDonald",
            "iPhone",
            "O'Brien",
            "U.S.",
            "Paris-based",
            "Zoë",
            "Éire",
            "École",
            "éCole",
            "\u{1c4}emal",
            "\u{1c5}x",
            "\u{130}st",
            "Straße",
            "ÜBER",
            "Ωmega",
            "Я́ков",
            "Cafe\u{301}",
            "\u{6f22}\u{5b57}",
            "x",
            "Yes",
            "When",
        ];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut text = String::new();
            let n = (rng % 24) as usize;
            for _ in 0..n {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                text.push_str(PIECES[(rng % PIECES.len() as u64) as usize]);
            }
            check(&text);
        }
    }

    /// The one-pass signatures are the ones each text gives on its own.
    #[test]
    fn one_pass_signatures_equal_separate_ones() {
        fn minhash(words: &[u64]) -> Signature {
            let mut sig = [u32::MAX; SIG_LEN];
            for win in words.windows(3) {
                let shingle = mix(win[0] ^ mix(win[1] ^ mix(win[2])));
                for (slot, (a, b)) in sig.iter_mut().zip(PERM_A.iter().zip(&PERM_B)) {
                    *slot = (*slot).min((a.wrapping_mul(shingle).wrapping_add(*b) >> 32) as u32);
                }
            }
            sig
        }
        let words = word_hashes(&STORY.repeat(3));
        for n in [0, 1, 2, 3, 10, 59, 60, 61, 62, 100, words.len()] {
            let w = &words[..n.min(words.len())];
            let (lead, full) = minhashes(w, LEAD_WORDS);
            assert_eq!(lead, minhash(&w[..w.len().min(LEAD_WORDS)]), "lead of {n} words");
            assert_eq!(full, minhash(w), "whole of {n} words");
            // The code for any CPU gives what the one for this CPU gave.
            let shingles: Vec<u64> = w.windows(3).map(|w| mix(w[0] ^ mix(w[1] ^ mix(w[2])))).collect();
            let mut any = [u32::MAX; SIG_LEN];
            minhash_into_any(&mut any, &shingles);
            assert_eq!(full, any, "whole of {n} words, without vector extensions");
        }
    }

    /// Topic ETags hash the rendered bytes: the same value as the text's digest, so
    /// ETags stay what they were.
    #[test]
    fn digests_of_bytes_and_of_text_agree() {
        assert_eq!(digest_bytes(&[b"<feed/>", b""]), digest(&["<feed/>", ""]));
        assert_ne!(digest_bytes(&[b"ab", b"c"]), digest_bytes(&[b"a", b"bc"]));
    }

    #[test]
    fn canonical_links() {
        let c = |s| canonical_link(s).unwrap();
        assert_eq!(
            c("HTTPS://Example.ORG:443/a/b?utm_source=x&id=3&utm_medium=rss#top"),
            "https://example.org/a/b?id=3"
        );
        assert_eq!(c("http://example.org:80/x?b=2&a=1&fbclid=zzz&gclid=1"), "http://example.org/x?a=1&b=2");
        assert_eq!(
            c("http://example.org:8080/x?mc_cid=1&mc_eid=2&ref=tw&_ga=3"),
            "http://example.org:8080/x"
        );
        assert_eq!(c("https://example.org./"), "https://example.org/");
        assert_eq!(canonical_link("javascript:alert(1)"), None);
        assert_eq!(canonical_link("/relative"), None);
    }

    #[test]
    fn keys_prefer_guid_then_link_then_hash() {
        assert_eq!(item_key(Some(" g1 "), Some("https://x/"), "t", "c"), "g:g1");
        assert_eq!(item_key(Some(""), Some("https://x/"), "t", "c"), "l:https://x/");
        let h = item_key(None, None, "t", "c");
        assert!(h.starts_with("h:"));
        assert_eq!(h, item_key(None, None, "t", "c"), "deterministic");
        assert_ne!(h, item_key(None, None, "t", "d"));
        let long = "x".repeat(600);
        assert!(item_key(Some(&long), None, "", "").starts_with("g#"));
    }

    const STORY: &str = "Police in 31 countries arrested 212 suspects during Operation Tidewater, a six-week \
        action against migrant smuggling networks operating along sea routes in the Mediterranean. Officers \
        identified 4,100 irregular migrants and seized 27 boats, forged visas and cash. The coordinator said \
        smugglers treat people as cargo and promised further action in the spring.";

    #[test]
    fn copies_are_alike_and_different_stories_are_not() {
        let none = HashSet::new();
        let a = fingerprint(STORY, &none).unwrap();
        let dateline = format!("LONDON (Harbour Wire) - {STORY} Reporting by A. Smith; Editing by B. Jones.");
        let edited = STORY.replace("six-week", "six week").replace("and cash", "and EUR 2.3 million in cash");
        assert_eq!(resemblance(&a, &a), 1.0);
        assert!(resemblance(&a, &fingerprint(&dateline, &none).unwrap()) >= 0.6);
        assert!(resemblance(&a, &fingerprint(&edited, &none).unwrap()) >= 0.6);
        let other = "Border guards in Lithuania found 37 helium balloons carrying contraband cigarettes that \
            drifted across from Belarus overnight, and the airport in Vilnius was closed for three hours as a \
            precaution while the government asked Minsk to stop the launches.";
        assert!(resemblance(&a, &fingerprint(other, &none).unwrap()) < 0.2);
        assert_eq!(fingerprint("Too short to judge.", &none), None);
    }

    #[test]
    fn stories_from_one_template_with_other_figures_differ() {
        let none = HashSet::new();
        let a = fingerprint(STORY, &none).unwrap();
        let other = STORY.replace("31", "12").replace("212", "48").replace("4,100", "900").replace("27", "5");
        assert_eq!(resemblance(&a, &fingerprint(&other, &none).unwrap()), 0.0);
        assert_eq!(number_hashes("2,280 or 2280, 1.5 and 15; 7"), {
            let mut v: Vec<u32> = ["2280", "15", "7"].iter().map(|n| fnv64(n.as_bytes()) as u32).collect();
            v.sort_unstable();
            v
        });
    }

    #[test]
    fn resemblance_is_the_same_either_way_round_and_other_figures_contradict() {
        let none = HashSet::new();
        let fp = fingerprint(STORY, &none).unwrap();
        let close = fingerprint(&format!("LYON (Wire) - {STORY}"), &none).unwrap();
        let other =
            fingerprint(&STORY.replace("31", "9").replace("212", "17").replace("27", "3"), &none).unwrap();
        // Which of two items came first cannot matter.
        assert_eq!(resemblance(&fp, &close), resemblance(&close, &fp));
        assert_eq!(resemblance(&fp, &other), resemblance(&other, &fp));
        assert!(!contradict(&fp, &close) && !contradict(&close, &fp));
        assert!(contradict(&fp, &other) && contradict(&other, &fp));
        assert_eq!(resemblance(&fp, &other), 0.0);
    }

    #[test]
    fn boilerplate_sentences_are_left_out() {
        let footer = "About the agency: we coordinate border management across member states and publish \
            reports, data and news every working day.";
        let s1 = format!("{STORY}\n{footer}");
        let bp: HashSet<u64> = sentences(footer).hashes().collect();
        assert_eq!(fingerprint(&s1, &bp), fingerprint(STORY, &HashSet::new()));
    }

    /// Fingerprints of both formats read back as written; the first format, as
    /// earlier versions stored it, reads without marks; damaged bytes read as none.
    #[test]
    fn both_formats_round_trip_and_damage_is_refused() {
        let f =
            fingerprint(&format!("{STORY} Officers from Zeebrugge and Lisbon took part."), &HashSet::new())
                .unwrap();
        let m = f.marks.as_ref().unwrap();
        assert!(m.names.len() >= 5 && m.names.len() % 2 == 1, "an odd count of names: {:?}", m.names);
        let bytes = signature_bytes(&f);
        assert_eq!(bytes[0], FORMAT_2);
        assert_eq!(signature_from_bytes(&bytes), Some(f.clone()));
        let first = Fingerprint { marks: None, ..f.clone() };
        let old = signature_bytes(&first);
        assert_eq!(old.len(), (SIG_LEN * 2 + f.numbers.len()) * 4);
        assert_eq!(signature_from_bytes(&old), Some(first));
        // (A format-2 fingerprint one byte short has the length of a first-format one:
        // stored values are written whole, so that is not damage the store meets.)
        for cut in [2, 3, 4, 8, bytes.len() - 1] {
            assert_eq!(signature_from_bytes(&bytes[..bytes.len() - cut]), None, "{cut} bytes short");
        }
        let mut too_many = bytes.clone();
        too_many[1 + SIG_LEN * 8 + 4] = (MAX_NUMBERS + 1) as u8;
        assert_eq!(signature_from_bytes(&too_many), None);
        assert_eq!(signature_from_bytes(&[]), None);
    }

    /// A copy reworded throughout keeps the story's names and figures: it is one story
    /// with the original, where the Jaccard similarity alone was far too low. The same
    /// wording about other places and bodies is another story (other figures: see
    /// `stories_from_one_template_with_other_figures_differ`).
    #[test]
    fn reworded_copies_join_and_other_names_or_figures_do_not() {
        let none = HashSet::new();
        let original = "Customs officers have seized 8.4 million smuggled cigarettes hidden in a \
            shipping container at Port Calden, the Revenue and Customs Service said on Thursday. The \
            container arrived on the cargo vessel Grey Heron from Estmark and was declared as holding \
            insulation panels. X-ray images showed irregular shapes behind the first rows of panels.";
        let reworded = "The Revenue and Customs Service announced on Thursday that customs officials \
            confiscated 8.4 million contraband cigarettes concealed in a shipping container at Port Calden. \
            The container arrived on the cargo vessel Grey Heron from Estmark and was declared as holding \
            insulation panels. Scans revealed odd shapes behind the first rows of panels.";
        let (a, b) = (fingerprint(original, &none).unwrap(), fingerprint(reworded, &none).unwrap());
        let text = similarity(&a.lead, &b.lead).max(similarity(&a.full, &b.full));
        assert!(text < DEFAULT_THRESHOLD, "the text alone ({text}) would not join them");
        assert!(resemblance(&a, &b) >= DEFAULT_THRESHOLD, "{}", resemblance(&a, &b));
        // Stored before names were kept: compared by the text alone.
        let old = Fingerprint { marks: None, ..a.clone() };
        assert_eq!(resemblance(&old, &b), text);

        let others = original
            .replace("Port Calden", "Port Vesk")
            .replace("Grey Heron", "Blue Falcon")
            .replace("Estmark", "Norland")
            .replace("Revenue and Customs Service", "Border Guard Agency");
        assert_eq!(resemblance(&a, &fingerprint(&others, &none).unwrap()), 0.0, "other names");
    }

    #[test]
    fn signatures_round_trip_and_band_keys_differ() {
        let f = fingerprint(STORY, &HashSet::new()).unwrap();
        assert_eq!(signature_from_bytes(&signature_bytes(&f)), Some(f.clone()));
        let keys = band_keys(&f);
        assert_eq!(keys.len(), BANDS);
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
        assert_eq!(sentences("One two. Three four!\nFive six").hashes().count(), 3);
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c, "stable across versions");
    }

    /// Fingerprints and sentence hashes are stored (items' signatures and band keys, a
    /// feed's boilerplate): the same text must give the same values in every version.
    /// (A change of the band layout needs a migration that writes every item's keys
    /// again: see the SQLite and PostgreSQL `BANDS_REKEYED`.)
    #[test]
    fn stored_hashes_never_change() {
        let f = fingerprint(STORY, &HashSet::new()).unwrap();
        // The signatures and numbers, as the first format stored them, are what they were.
        let first_format = Fingerprint { marks: None, ..f.clone() };
        assert_eq!(
            hex(&digest_bytes(&[&signature_bytes(&first_format)])),
            "0f8db93775e005b3b1307364f743068f5f8ec886f4f1b22c895f4165695669cd"
        );
        assert_eq!(
            hex(&digest_bytes(&[&signature_bytes(&f)])),
            "b97886f42b41439d07275be0e6146b29b60e47dccf03c0a1ec5bad807419bb75"
        );
        let keys: Vec<String> = band_keys(&f).iter().map(|k| format!("{k:x}")).collect();
        assert_eq!(
            hex(&digest(&[&keys.join(",")])),
            "272df1ffcdd5b735d234702902cfc728ef195a61012058c80c55420f2e079749"
        );
        // The lead's keys are those of the first layout.
        let lead: Vec<String> = keys[..16].to_vec();
        assert_eq!(
            hex(&digest(&[&lead.join(",")])),
            "ab3120d763b87583498323436a5255b67da516a558a83059450b8e4551ad6602"
        );
        let split = sentences("Straße 1.5 ÜBER alles! Ǆemal, 2,280 km\nNo words: .?\n  ");
        assert_eq!(
            split.hashes().collect::<Vec<_>>(),
            vec![85430642881459497, 1943692032071947194, 15463027285360722024]
        );
        assert_eq!(word_hashes("Ǆ İx"), vec![771610905230046336, 5756455505507861583]);
        assert_eq!(number_hashes("2,280 and 3.5, not 2280."), vec![1070547413, 3032485333]);
        let date = chrono::DateTime::from_timestamp(1_764_500_000, 0);
        let item = Item {
            key: "g:1".into(),
            guid: Some("1".into()),
            link: Some("https://example.org/a".into()),
            canonical_link: Some("https://example.org/a".into()),
            title: "Operation Tidewater".into(),
            summary: Some(STORY.into()),
            content: Some("<p>Ǆemal</p>".into()),
            base: None,
            authors: vec!["A. Writer".into(), "B. Writer".into()],
            categories: vec!["crime".into()],
            published: date,
            updated: None,
            content_hash: [0; 16],
        };
        assert_eq!(hex(&content_hash(&item)), "89986cf85ed1e79e638c12f4d3bbbc40");
        // As parse computed it before schema version 7.
        let parts = [
            "Operation Tidewater",
            "https://example.org/a",
            STORY,
            "<p>Ǆemal</p>",
            "A. Writer\u{1}B. Writer",
            "crime",
            "1764500000",
            "",
        ];
        assert_eq!(legacy_content_hash(&item)[..], digest(&parts)[..16]);
        assert_eq!(hex(&legacy_content_hash(&item)), "3dadce6ee00cfd722db9520485eddefc");
    }

    /// `sentences` as its documentation defines it, a character at a time: words are
    /// runs of alphanumeric characters, hashed lower-cased; a sentence ends at a line
    /// break, at `.`, `!` or `?` before ASCII white space or the end, and at the end.
    fn sentences_by_definition(text: &str) -> Vec<(u64, Vec<u64>)> {
        let (mut out, mut words, mut word) = (Vec::new(), Vec::new(), String::new());
        let mut end_sentence = |words: &mut Vec<u64>| {
            if !words.is_empty() {
                let h = words.iter().fold(FNV_OFFSET, |acc, x| mix(acc ^ x));
                out.push((h, std::mem::take(words)));
            }
        };
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if c.is_alphanumeric() {
                word.extend(c.to_lowercase());
                continue;
            }
            if !word.is_empty() {
                words.push(fnv64(std::mem::take(&mut word).as_bytes()));
            }
            let next_is_space = chars.get(i + 1).is_none_or(char::is_ascii_whitespace);
            if *c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
                end_sentence(&mut words);
            }
        }
        if !word.is_empty() {
            words.push(fnv64(word.as_bytes()));
        }
        end_sentence(&mut words);
        out
    }

    /// `number_hashes` as first written, a byte at a time: the definition the faster
    /// one must agree with.
    fn number_hashes_by_definition(text: &str) -> Vec<u32> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut number: Option<u64> = None;
        for (i, b) in bytes.iter().enumerate() {
            if b.is_ascii_digit() {
                number = Some(fnv_byte(number.unwrap_or(FNV_OFFSET), *b));
            } else if (*b == b',' || *b == b'.')
                && number.is_some()
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            {
            } else if let Some(h) = number.take() {
                out.push(h as u32);
            }
        }
        out.extend(number.map(|h| h as u32));
        out.sort_unstable();
        out.dedup();
        out.truncate(MAX_NUMBERS);
        out
    }

    /// The names of a sentence as [`Names`] defines them, token by token.
    fn names_by_definition(sentence: &str) -> Vec<u16> {
        let tokens: Vec<&str> = sentence.split_ascii_whitespace().collect();
        let after_colon = |i: usize| i > 0 && tokens[i - 1].ends_with(':');
        let name = |t: &str| {
            let word = t.trim_matches(|c: char| !c.is_alphanumeric());
            let one_word = word.chars().all(char::is_alphanumeric);
            (one_word && !is_not_name(word)).then(|| name_hash(word)).flatten()
        };
        (1..tokens.len()).filter(|i| !after_colon(*i)).filter_map(|i| name(tokens[i])).collect()
    }

    /// The names [`sentences`] finds in each sentence of `text` are those of
    /// [`names_by_definition`].
    fn assert_names_as_defined(text: &str) {
        let split = sentences(text);
        for ((_, span), (_, names)) in split.spans(text).zip(split.names()) {
            assert_eq!(names, names_by_definition(span), "{span:?} of {text:?}");
        }
    }

    #[test]
    fn names_are_found_as_defined() {
        let texts = [
            "",
            "Nikos Wagner, 34, was jailed in Piraeus.",
            "  (Reuters) - Police in ÉVORA and Évora met \"Müller\" and McDonald's CEO iPhone-maker Apple.",
            "he said Ǆemal İstanbul ΣΊΣΥΦΟΣ x Ab Abc 3Com",
            "One\u{a0}Two Three\tFour\nFive",
        ];
        let long = STORY.repeat(9);
        for t in texts.iter().copied().chain([long.as_str()]) {
            assert_names_as_defined(t);
        }
        let names = |t: &str| sentences(t).names;
        let got = names("The Harbour Wire said Nikos Wagner, Wagner and 3 others met in Piraeus.");
        let want: Vec<u16> = ["Harbour", "Wire", "Nikos", "Wagner", "Wagner", "Piraeus"]
            .iter()
            .filter_map(|w| name_hash(w))
            .collect();
        assert_eq!(got, want, "the sentence's first word is not a name");
        assert!(name_hash("Piraeus").is_some());
        assert_eq!(names("He met (Piraeus)."), names("He met Piraeus"), "punctuation trimmed");
        assert!(names("Nikos: Wagner O'Brien Paris-based").is_empty(), "after a colon, two words");
        assert_eq!(name_hash("Ab"), None, "too short");
        assert_eq!(name_hash("iPhone"), None, "not capitalised");
        assert!(names("He said The Its Police").len() == 1, "words that open sentences are not names");
        assert!(NOT_NAMES.iter().all(|n| NOT_NAME_HASHES.contains(&fnv64(n.as_bytes()))));
    }

    #[test]
    fn numbers_are_found_as_defined() {
        let mut long = STORY.repeat(5);
        long.push_str(" 1..2 3,,4 .5 6. 7,8,9.0 10a11 \u{e9}12\u{e9} 2026-11-30 1,234,567.89");
        for text in ["", "7", "no digits at all in this sentence of more than sixteen bytes", &long] {
            assert_eq!(number_hashes(text), number_hashes_by_definition(text), "{text:?}");
        }
    }

    #[test]
    fn sentences_split_and_hash_as_defined() {
        let texts = [
            "",
            "...",
            "One two. Three four!\nFive six",
            "Mr.Smith paid 2,280.5 EUR.Then left?  Yes!\tNo.\r\nÇA VA. Déjà-vu\u{a0}ok. 日本語のテキスト。 x",
            "trailing word",
            "ǅemal İstanbul ΣΊΣΥΦΟΣ straße\u{2028}next. end.",
        ];
        let mut long = String::new();
        for (i, w) in STORY.split(' ').cycle().take(2_000).enumerate() {
            long.push_str(w);
            long.push_str([" ", ". ", "\n", "! ", ", ", ".", " \u{e9}", "?"][i % 8]);
        }
        for text in texts.iter().copied().chain([long.as_str()]) {
            let split = sentences(text);
            let got: Vec<(u64, Vec<u64>)> = split.iter().map(|(h, w)| (h, w.to_vec())).collect();
            assert_eq!(got, sentences_by_definition(text), "{text:?}");
        }
    }

    #[test]
    fn entry_ids_are_stable_uuids() {
        let a = entry_id("feed", "g:1");
        assert_eq!(a, entry_id("feed", "g:1"));
        assert_ne!(a, entry_id("feed2", "g:1"));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
    }
}
