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

/// Accumulates `(key, value, priority)` insertions and writes a kmod index.
#[derive(Debug)]
pub struct IndexBuilder<'a> {
    /// (key, priority, insertion sequence, value).
    entries: Vec<(Cow<'a, str>, u32, u32, Cow<'a, str>)>,
    /// (key, value) pairs seen so far, when duplicates are reported.
    seen: Option<FxHashSet<(Cow<'a, str>, Cow<'a, str>)>>,
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
    /// value (a duplicate), `false` otherwise. Keys or values with non-ASCII bytes are
    /// rejected (kmod only supports 7-bit ASCII) and return `false` without inserting.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
        priority: u32,
    ) -> bool {
        let (key, value) = (key.into(), value.into());
        if !key.is_ascii() || !value.is_ascii() {
            // kmod logs this (and then misbehaves); modkit skips the entry.
            tracing::warn!("Module index: bad character - only 7-bit ASCII is supported: {key}");
            return false;
        }
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
        self.entries.sort_unstable_by(|a, b| {
            a.0.as_bytes()
                .cmp(b.0.as_bytes())
                .then(a.1.cmp(&b.1))
                .then(b.2.cmp(&a.2))
        });
        let mut groups: Vec<Entry> = Vec::new();
        let mut i = 0;
        while i < self.entries.len() {
            let key = self.entries[i].0.as_bytes();
            let j = i + self.entries[i..]
                .iter()
                .take_while(|e| e.0.as_bytes() == key)
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
type Entry<'e, 'a> = (&'e [u8], &'e [(Cow<'a, str>, u32, u32, Cow<'a, str>)]);

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
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        offset |= F_VALUES;
    }
    offset
}

/// A kmod index file loaded in memory, searched like libkmod's `index_mm_*`.
#[derive(Debug, Clone)]
pub struct IndexReader {
    data: Vec<u8>,
    root: u32,
}

struct Node<'a> {
    off: u32,
    prefix: &'a [u8],
    first: u8,
    last: u8,
    children: &'a [u8],
    values: Vec<IndexValue>,
}

/// An index file that does not have kmod's layout.
#[derive(Debug, thiserror::Error)]
#[error("not a kmod index: {0}")]
pub struct IndexError(String);

impl IndexReader {
    /// Checks the header of an index file held in `data`.
    pub fn new(data: Vec<u8>) -> Result<Self, IndexError> {
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
        let mut values = Vec::new();
        if off & F_VALUES != 0 {
            let n = self.u32_at(p)?;
            p += 4;
            for _ in 0..n {
                let priority = self.u32_at(p)?;
                p += 4;
                let rest = self.data.get(p..)?;
                let end = rest.iter().position(|&b| b == 0)?;
                values.push(IndexValue {
                    priority,
                    value: String::from_utf8_lossy(&rest[..end]).into_owned(),
                });
                p += end + 1;
            }
        }
        Some(Node {
            off: off & OFFSET_MASK,
            prefix,
            first,
            last,
            children,
            values,
        })
    }

    fn child(&self, n: &Node, c: u8) -> Option<Node<'_>> {
        if c < n.first || c > n.last || n.children.is_empty() {
            return None;
        }
        let i = (c - n.first) as usize * 4;
        let off = u32::from_be_bytes(n.children.get(i..i + 4)?.try_into().ok()?);
        // depmod writes children before their parent, so a child always lies at a lower
        // offset; anything else is a corrupt (possibly cyclic) index.
        if off == 0 || off & OFFSET_MASK >= n.off {
            return None;
        }
        self.node(off)
    }

    /// `index_mm_search`: the first (lowest-priority) value of exactly `key`.
    pub fn search(&self, key: &str) -> Option<String> {
        let key = key.as_bytes();
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
                return node.values.first().map(|v| v.value.clone());
            }
            node = self.child(&node, key[i])?;
            i += 1;
        }
    }

    /// `index_mm_searchwild`: values of every key (possibly a glob) matching `key`,
    /// sorted by priority as libkmod merges them.
    pub fn search_wild(&self, key: &str) -> Vec<IndexValue> {
        let key = key.as_bytes();
        let mut out = Vec::new();
        let Some(mut node) = self.node(self.root) else {
            return out;
        };
        let mut i = 0;
        loop {
            for (j, &c) in node.prefix.iter().enumerate() {
                if c == b'*' || c == b'?' || c == b'[' {
                    let mut buf = Vec::new();
                    self.wild_all(&node, j, &mut buf, &key[(i + j).min(key.len())..], &mut out);
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
                    self.wild_all(&child, 0, &mut buf, &key[i..], &mut out);
                }
            }
            if i == key.len() {
                for v in node.values {
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

    /// `index_mm_dump`: every key (after `prefix`) and value, one `KEY VALUE` line each,
    /// in the trie's order, as `modprobe -c` prints the alias and symbol indexes.
    pub fn dump(&self, prefix: &str, out: &mut Vec<u8>) {
        let Some(root) = self.node(self.root) else {
            return;
        };
        let mut buf = prefix.as_bytes().to_vec();
        self.dump_node(&root, &mut buf, out);
    }

    fn dump_node(&self, node: &Node, buf: &mut Vec<u8>, out: &mut Vec<u8>) {
        if buf.len() > MAX_KEY_LEN {
            return;
        }
        let base = buf.len();
        buf.extend_from_slice(node.prefix);
        for v in &node.values {
            out.extend_from_slice(buf);
            out.push(b' ');
            out.extend_from_slice(v.value.as_bytes());
            out.push(b'\n');
        }
        if node.last >= node.first && !node.children.is_empty() {
            for c in node.first..=node.last {
                if let Some(child) = self.child(node, c) {
                    buf.push(c);
                    self.dump_node(&child, buf, out);
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
    ) {
        // Keys are at most PATH_MAX long in kmod's indexes; a deeper tree is corrupt, and
        // stopping keeps a hostile file from exhausting the stack.
        if buf.len() > MAX_KEY_LEN {
            return;
        }
        let base = buf.len();
        buf.extend_from_slice(&node.prefix[j..]);
        if node.last >= node.first && !node.children.is_empty() {
            for c in node.first..=node.last {
                if let Some(child) = self.child(node, c) {
                    buf.push(c);
                    self.wild_all(&child, 0, buf, subkey, out);
                    buf.pop();
                }
            }
        }
        if !node.values.is_empty() && fnmatch(buf, subkey) {
            for v in &node.values {
                add_value(out, v.clone());
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
}
