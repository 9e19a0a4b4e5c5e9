//! kmod's binary index format (`modules.*.bin`): a writer producing byte-identical files
//! to depmod 30, and a reader with libkmod's exact and wildcard searches.

use std::borrow::Cow;

use rustc_hash::FxHashSet;

use crate::fnmatch::fnmatch;

const MAGIC: u32 = 0xB007_F457;
const VERSION: u32 = 0x0002_0001;
const F_PREFIX: u32 = 0x8000_0000;
const F_VALUES: u32 = 0x4000_0000;
const F_CHILDS: u32 = 0x2000_0000;
const OFFSET_MASK: u32 = 0x0FFF_FFFF;
/// Longest key the reader follows (kmod's `PATH_MAX`).
const MAX_KEY_LEN: usize = 4096;

/// One value stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexValue {
    /// Priority (depmod: the module's array index; 0 for built-ins).
    pub priority: u32,
    /// The value string.
    pub value: String,
}

/// A key or value for [`IndexBuilder::insert`]: text or bytes (module names and paths
/// are file names, which need not be UTF-8).
pub trait IndexText<'a> {
    /// The bytes, borrowed where possible.
    fn into_bytes(self) -> Cow<'a, [u8]>;
}

impl<'a> IndexText<'a> for &'a str {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl<'a> IndexText<'a> for String {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Owned(self.into_bytes())
    }
}

impl<'a> IndexText<'a> for Cow<'a, str> {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        match self {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }
    }
}

impl<'a> IndexText<'a> for &'a [u8] {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<'a> IndexText<'a> for Vec<u8> {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Owned(self)
    }
}

/// Key or value bytes of an index entry.
type Text<'a> = Cow<'a, [u8]>;
/// (key, priority, insertion sequence, value).
type Inserted<'a> = (Text<'a>, u32, u32, Text<'a>);

/// Accumulates `(key, value, priority)` insertions and writes a kmod index.
#[derive(Debug)]
pub struct IndexBuilder<'a> {
    /// (key, priority, insertion sequence, value).
    entries: Vec<Inserted<'a>>,
    /// (key, value) pairs seen so far, when duplicates are reported.
    seen: Option<FxHashSet<(Text<'a>, Text<'a>)>>,
}

impl Default for IndexBuilder<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> IndexBuilder<'a> {
    /// An empty index that reports duplicate (key, value) insertions.
    pub fn new() -> Self {
        IndexBuilder {
            entries: Vec::new(),
            seen: Some(FxHashSet::default()),
        }
    }

    /// An empty index that does not track duplicates ([`IndexBuilder::insert`] then
    /// always returns `false`); faster for large indexes.
    pub fn without_duplicate_check() -> Self {
        IndexBuilder {
            entries: Vec::new(),
            seen: None,
        }
    }

    /// Inserts like kmod's `index_insert`. Returns `true` if the key already held this
    /// value (a duplicate), `false` otherwise.
    ///
    /// Bytes of 0x80 and above are kept as they are, as kmod 30 writes them: its
    /// `index__checkstring` compares a signed `char` with 128, so it never objects, and a
    /// name such as `caf\xe9` lands in a node's prefix byte for byte. (Where such a byte
    /// would have to become a child index, kmod 30 writes through a negative array index,
    /// undefined behaviour; modkit stores the byte as an unsigned child index, which
    /// modkit's reader finds and kmod's reader, comparing a signed `char`, does not.)
    pub fn insert(
        &mut self,
        key: impl IndexText<'a>,
        value: impl IndexText<'a>,
        priority: u32,
    ) -> bool {
        let (key, value) = (key.into_bytes(), value.into_bytes());
        let dup = match &mut self.seen {
            Some(seen) => !seen.insert((key.clone(), value.clone())),
            None => false,
        };
        let seq = self.entries.len() as u32;
        self.entries.push((key, priority, seq, value));
        dup
    }

    /// Serialises the index exactly as depmod's `index_write` does.
    pub fn write(mut self) -> Vec<u8> {
        // By key; values by ascending priority, equal priorities newest first (kmod
        // inserts a value before existing ones of the same priority).
        self.entries
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)));
        let mut groups: Vec<Entry> = Vec::new();
        let mut i = 0;
        while i < self.entries.len() {
            let key: &[u8] = &self.entries[i].0;
            let j = i + self.entries[i..]
                .iter()
                .take_while(|e| *e.0 == *key)
                .count();
            groups.push((key, &self.entries[i..j]));
            i = j;
        }
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let root = write_node(&mut out, &groups, 0, true);
        out[8..12].copy_from_slice(&root.to_be_bytes());
        out
    }
}

/// A key and its values, sorted.
type Entry<'e, 'a> = (&'e [u8], &'e [Inserted<'a>]);

fn write_node(out: &mut Vec<u8>, keys: &[Entry], depth: usize, root: bool) -> u32 {
    let prefix_len = if root || keys.is_empty() {
        0
    } else {
        let first = &keys[0].0[depth..];
        let last = &keys[keys.len() - 1].0[depth..];
        // Keys are sorted, so the common prefix of all is that of the first and last.
        first
            .iter()
            .zip(last.iter())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let d = depth + prefix_len;
    let (values, rest) = match keys.first() {
        Some(k) if k.0.len() == d => (Some(&k.1), &keys[1..]),
        _ => (None, keys),
    };
    let mut children: Vec<(u8, u32)> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i].0[d];
        let j = i + rest[i..].iter().take_while(|k| k.0[d] == c).count();
        let off = write_node(out, &rest[i..j], d + 1, false);
        children.push((c, off));
        i = j;
    }
    let mut offset = out.len() as u32;
    if prefix_len > 0 {
        out.extend_from_slice(&keys[0].0[depth..d]);
        out.push(0);
        offset |= F_PREFIX;
    }
    if let (Some(first), Some(last)) = (children.first(), children.last()) {
        let (first, last) = (first.0, last.0);
        out.push(first);
        out.push(last);
        let mut it = children.iter().peekable();
        for c in first..=last {
            let off = match it.peek() {
                Some((cc, off)) if *cc == c => {
                    it.next();
                    *off
                }
                _ => 0,
            };
            out.extend_from_slice(&off.to_be_bytes());
        }
        offset |= F_CHILDS;
    }
    if let Some(values) = values {
        out.extend_from_slice(&(values.len() as u32).to_be_bytes());
        for (_, prio, _, v) in values.iter() {
            out.extend_from_slice(&prio.to_be_bytes());
            out.extend_from_slice(v);
            out.push(0);
        }
        offset |= F_VALUES;
    }
    offset
}

/// A kmod index file, mapped (or held in memory), searched like libkmod's `index_mm_*`:
/// a search touches only the nodes on its path, and a node's values are decoded only
/// when it matches.
#[derive(Debug, Clone)]
pub struct IndexReader {
    data: IndexBytes,
    root: u32,
}

/// The bytes of an index: owned, or a read-only map of the file shared by clones.
#[derive(Debug, Clone)]
enum IndexBytes {
    Owned(Vec<u8>),
    Mapped(std::sync::Arc<memmap2::Mmap>),
}

impl std::ops::Deref for IndexBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            IndexBytes::Owned(v) => v,
            IndexBytes::Mapped(m) => m,
        }
    }
}

struct Node<'a> {
    off: u32,
    prefix: &'a [u8],
    first: u8,
    last: u8,
    children: &'a [u8],
    /// Where the value count is (the node has values), decoded on demand.
    values_at: Option<usize>,
}

impl Node<'_> {
    fn has_values(&self) -> bool {
        self.values_at.is_some()
    }
}

/// An index file that does not have kmod's layout.
#[derive(Debug, thiserror::Error)]
#[error("not a kmod index: {0}")]
pub struct IndexError(String);

impl IndexReader {
    /// Maps the index file at `path` (reads it when it cannot be mapped) and checks its
    /// header. The outer error is the file's; the inner, the layout's.
    pub fn open(path: &std::path::Path) -> std::io::Result<Result<Self, IndexError>> {
        let f = std::fs::File::open(path)?;
        // SAFETY: a private read-only map; every access goes through bounds-checked `get`
        // on the length taken at map time. A file truncated by another process while
        // mapped could raise SIGBUS, the exposure libkmod's own `index_mm_open` has.
        let data = match unsafe { memmap2::Mmap::map(&f) } {
            Ok(m) => IndexBytes::Mapped(std::sync::Arc::new(m)),
            Err(_) => IndexBytes::Owned(std::fs::read(path)?),
        };
        Ok(Self::from_bytes(data))
    }

    /// Checks the header of an index file held in `data`.
    pub fn new(data: Vec<u8>) -> Result<Self, IndexError> {
        Self::from_bytes(IndexBytes::Owned(data))
    }

    fn from_bytes(data: IndexBytes) -> Result<Self, IndexError> {
        if data.len() < 12 {
            return Err(IndexError("file is shorter than the 12-byte header".into()));
        }
        let be = |o: usize| u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        if be(0) != MAGIC {
            return Err(IndexError(format!("bad magic 0x{:08x}", be(0))));
        }
        if be(4) >> 16 != VERSION >> 16 {
            return Err(IndexError(format!("unsupported version 0x{:08x}", be(4))));
        }
        let root = be(8);
        Ok(IndexReader { data, root })
    }

    fn u32_at(&self, o: usize) -> Option<u32> {
        let b = self.data.get(o..o + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn node(&self, off: u32) -> Option<Node<'_>> {
        let mut p = (off & OFFSET_MASK) as usize;
        let mut prefix: &[u8] = &[];
        if off & F_PREFIX != 0 {
            let rest = self.data.get(p..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            prefix = &rest[..end];
            p += end + 1;
        }
        let (mut first, mut last, mut children): (u8, u8, &[u8]) = (128, 0, &[]);
        if off & F_CHILDS != 0 {
            first = *self.data.get(p)?;
            last = *self.data.get(p + 1)?;
            p += 2;
            if last >= first {
                let n = (last - first) as usize + 1;
                children = self.data.get(p..p + 4 * n)?;
                p += 4 * n;
            }
        }
        let values_at = (off & F_VALUES != 0).then_some(p);
        Some(Node {
            off: off & OFFSET_MASK,
            prefix,
            first,
            last,
            children,
            values_at,
        })
    }

    /// The values of a node (empty when it has none or they are corrupt).
    fn values(&self, n: &Node) -> Vec<IndexValue> {
        let Some(mut p) = n.values_at else {
            return Vec::new();
        };
        let mut values = Vec::new();
        let Some(count) = self.u32_at(p) else {
            return values;
        };
        p += 4;
        for _ in 0..count {
            let Some(priority) = self.u32_at(p) else {
                break;
            };
            p += 4;
            let Some(rest) = self.data.get(p..) else {
                break;
            };
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                break;
            };
            values.push(IndexValue {
                priority,
                value: crate::bytestr::from_bytes(&rest[..end]),
            });
            p += end + 1;
        }
        values
    }

    fn child(&self, n: &Node, c: u8) -> Option<Node<'_>> {
        if c < n.first || c > n.last || n.children.is_empty() {
            return None;
        }
        let i = (c - n.first) as usize * 4;
        let off = u32::from_be_bytes(n.children.get(i..i + 4)?.try_into().ok()?);
        // kmod 30's depmod writes children before their parent, kmod 34's (top-down, sizes
        // computed first) after it: both are valid. A child pointing at its own node is
        // corrupt; longer cycles and shared subtrees are cut by the callers' bounds (each
        // step of a search consumes a key byte; a wildcard walk has a visit budget).
        if off == 0 || off & OFFSET_MASK == n.off {
            return None;
        }
        self.node(off)
    }

    /// `index_mm_search`: the first (lowest-priority) value of exactly `key`.
    pub fn search(&self, key: &str) -> Option<String> {
        let key = crate::bytestr::to_bytes(key);
        let key: &[u8] = &key;
        let mut node = self.node(self.root)?;
        let mut i = 0;
        loop {
            for (j, &c) in node.prefix.iter().enumerate() {
                if key.get(i + j) != Some(&c) {
                    return None;
                }
            }
            i += node.prefix.len();
            if i == key.len() {
                return self.values(&node).into_iter().next().map(|v| v.value);
            }
            node = self.child(&node, key[i])?;
            i += 1;
        }
    }

    /// `index_mm_searchwild`: values of every key (possibly a glob) matching `key`,
    /// sorted by priority as libkmod merges them.
    pub fn search_wild(&self, key: &str) -> Vec<IndexValue> {
        let key = crate::bytestr::to_bytes(key);
        let key: &[u8] = &key;
        let mut out = Vec::new();
        let Some(mut node) = self.node(self.root) else {
            return out;
        };
        let mut i = 0;
        loop {
            for (j, &c) in node.prefix.iter().enumerate() {
                if c == b'*' || c == b'?' || c == b'[' {
                    let mut buf = Vec::new();
                    let mut budget = self.visit_budget();
                    let sub = &key[(i + j).min(key.len())..];
                    self.wild_all(&node, j, &mut buf, sub, &mut out, &mut budget);
                    return out;
                }
                if key.get(i + j) != Some(&c) {
                    return out;
                }
            }
            i += node.prefix.len();
            for w in [b'*', b'?', b'['] {
                if let Some(child) = self.child(&node, w) {
                    let mut buf = vec![w];
                    let mut budget = self.visit_budget();
                    self.wild_all(&child, 0, &mut buf, &key[i..], &mut out, &mut budget);
                }
            }
            if i == key.len() {
                for v in self.values(&node) {
                    add_value(&mut out, v);
                }
                return out;
            }
            match self.child(&node, key[i]) {
                Some(c) => node = c,
                None => return out,
            }
            i += 1;
        }
    }

    /// How many nodes a wildcard walk may visit: a well-formed trie visits each node once,
    /// and every node takes at least one byte of the file. A corrupt index whose children
    /// form cycles or share subtrees (exponential walks) is cut off there.
    fn visit_budget(&self) -> usize {
        self.data.len()
    }

    /// `index_mm_dump`: every key (after `prefix`) and value, one `KEY VALUE` line each,
    /// in the trie's order, as `modprobe -c` prints the alias and symbol indexes.
    pub fn dump(&self, prefix: &str, out: &mut Vec<u8>) {
        let Some(root) = self.node(self.root) else {
            return;
        };
        let mut buf = prefix.as_bytes().to_vec();
        let mut budget = self.visit_budget();
        self.dump_node(&root, &mut buf, out, &mut budget);
    }

    fn dump_node(&self, node: &Node, buf: &mut Vec<u8>, out: &mut Vec<u8>, budget: &mut usize) {
        if buf.len() > MAX_KEY_LEN || *budget == 0 {
            return;
        }
        *budget -= 1;
        let base = buf.len();
        buf.extend_from_slice(node.prefix);
        for v in self.values(node) {
            out.extend_from_slice(buf);
            out.push(b' ');
            out.extend_from_slice(v.value.as_bytes());
            out.push(b'\n');
        }
        if node.last >= node.first && !node.children.is_empty() {
            for c in node.first..=node.last {
                if let Some(child) = self.child(node, c) {
                    buf.push(c);
                    self.dump_node(&child, buf, out, budget);
                    buf.pop();
                }
            }
        }
        buf.truncate(base);
    }

    fn wild_all(
        &self,
        node: &Node,
        j: usize,
        buf: &mut Vec<u8>,
        subkey: &[u8],
        out: &mut Vec<IndexValue>,
        budget: &mut usize,
    ) {
        // Keys are at most PATH_MAX long in kmod's indexes; a deeper tree is corrupt, and
        // stopping keeps a hostile file from exhausting the stack.
        if buf.len() > MAX_KEY_LEN || *budget == 0 {
            return;
        }
        *budget -= 1;
        let base = buf.len();
        buf.extend_from_slice(&node.prefix[j..]);
        if node.last >= node.first && !node.children.is_empty() {
            for c in node.first..=node.last {
                if let Some(child) = self.child(node, c) {
                    buf.push(c);
                    self.wild_all(&child, 0, buf, subkey, out, budget);
                    buf.pop();
                }
            }
        }
        if node.has_values() && fnmatch(buf, subkey) {
            for v in self.values(node) {
                add_value(out, v);
            }
        }
        buf.truncate(base);
    }
}

/// libkmod's `add_value`: insert before the first value of greater or equal priority.
fn add_value(out: &mut Vec<IndexValue>, v: IndexValue) {
    let pos = out
        .iter()
        .position(|x| x.priority >= v.priority)
        .unwrap_or(out.len());
    out.insert(pos, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_wildcards() {
        let mut b = IndexBuilder::new();
        b.insert("abc", "m1", 3);
        b.insert("abd", "m2", 1);
        b.insert("a", "m3", 0);
        b.insert("pci:v*d00001234*", "m4", 2);
        assert!(!b.insert("abc", "m5", 3));
        assert!(b.insert("abc", "m1", 4));
        let r = IndexReader::new(b.write()).unwrap();
        assert_eq!(r.search("abc").as_deref(), Some("m5"));
        assert_eq!(r.search("abd").as_deref(), Some("m2"));
        assert_eq!(r.search("a").as_deref(), Some("m3"));
        assert_eq!(r.search("ab"), None);
        assert_eq!(r.search("zzz"), None);
        let w = r.search_wild("pci:v00008086d00001234sv0");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].value, "m4");
        assert!(r.search_wild("pci:v00008086d00009999").is_empty());
    }

    #[test]
    fn layout_is_kmods() {
        // One key under the root: root (no prefix) has child 'k' with prefix "ey" + value.
        let mut b = IndexBuilder::new();
        b.insert("key", "v", 7);
        let bytes = b.write();
        let mut want = vec![0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1];
        let root_off = 12 + 3 + 4 + 4 + 2;
        want.extend_from_slice(&((root_off as u32) | F_CHILDS).to_be_bytes());
        want.extend_from_slice(b"ey\0");
        want.extend_from_slice(&1u32.to_be_bytes());
        want.extend_from_slice(&7u32.to_be_bytes());
        want.extend_from_slice(b"v\0");
        want.extend_from_slice(b"kk");
        want.extend_from_slice(&(12u32 | F_PREFIX | F_VALUES).to_be_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn corrupt_index_does_not_panic() {
        assert!(IndexReader::new(vec![1, 2, 3]).is_err());
        let mut b = IndexBuilder::new();
        b.insert("key", "v", 7);
        let mut bytes = b.write();
        bytes.truncate(20);
        let r = IndexReader::new(bytes).unwrap();
        assert_eq!(r.search("key"), None);
        assert!(r.search_wild("key").is_empty());
    }

    /// kmod 34's depmod writes the trie top-down (parent before its children). Keys "ab"
    /// → m1 and "a*" → m2, laid out by hand the way kmod 34's `index_write__node` does.
    #[test]
    fn reads_kmod_34_top_down_layout() {
        let be = |v: u32| v.to_be_bytes();
        let mut f = Vec::new();
        f.extend(be(MAGIC));
        f.extend(be(VERSION));
        // Root at 12: prefix "a", children '*'..'b'.
        f.extend(be(12 | F_PREFIX | F_CHILDS));
        f.extend(b"a\0");
        let (first, last) = (b'*', b'b');
        f.extend([first, last]);
        let slots = (last - first + 1) as usize;
        let children_at = f.len();
        f.extend(vec![0u8; 4 * slots]);
        let leaf = |f: &mut Vec<u8>, value: &str| -> u32 {
            let off = f.len() as u32;
            f.extend(be(1));
            f.extend(be(0));
            f.extend(value.as_bytes());
            f.push(0);
            off | F_VALUES
        };
        let star = leaf(&mut f, "m2");
        let b = leaf(&mut f, "m1");
        let put = |f: &mut Vec<u8>, c: u8, off: u32| {
            let at = children_at + 4 * (c - first) as usize;
            f[at..at + 4].copy_from_slice(&off.to_be_bytes());
        };
        put(&mut f, b'*', star);
        put(&mut f, b'b', b);
        let r = IndexReader::new(f).unwrap();
        assert_eq!(r.search("ab").as_deref(), Some("m1"));
        let w: Vec<String> = r.search_wild("ab").into_iter().map(|v| v.value).collect();
        assert_eq!(
            w,
            ["m1", "m2"],
            "equal priorities: the later value first, as add_value"
        );
        assert_eq!(r.search_wild("ax")[0].value, "m2");
    }

    /// A hostile index whose nodes all point their 128 children at one shared node (each
    /// level doubling the walk) must be cut off, not walked for ever.
    #[test]
    fn shared_subtrees_and_cycles_are_bounded() {
        let be = |v: u32| v.to_be_bytes();
        let mut f = Vec::new();
        f.extend(be(MAGIC));
        f.extend(be(VERSION));
        f.extend(be(0));
        // 40 levels of nodes, each with children 'a'..'h' all pointing at the previous
        // level's node (a DAG of 8^40 paths), plus a value and a wildcard prefix.
        let mut prev = {
            let off = f.len() as u32;
            f.extend(be(1));
            f.extend(be(0));
            f.extend(b"v\0");
            off | F_VALUES
        };
        for _ in 0..40 {
            let off = f.len() as u32;
            f.extend([b'a', b'h']);
            for _ in 0..8 {
                f.extend(be(prev));
            }
            prev = off | F_CHILDS;
        }
        // The root points at itself too (a cycle).
        let root = f.len() as u32;
        f.extend(b"*\0");
        f.extend([b'a', b'b']);
        f.extend(be(prev));
        f.extend(be(root | F_PREFIX | F_CHILDS));
        f[8..12].copy_from_slice(&be(root | F_PREFIX | F_CHILDS));
        let r = IndexReader::new(f).unwrap();
        let t = std::time::Instant::now();
        let _ = r.search_wild("anything");
        assert_eq!(r.search("*b*b*b"), None);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
