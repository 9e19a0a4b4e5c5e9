//! depmod's extraction cache: what [`read_module`](super::extract::read_module) took from
//! each module file, kept beside the outputs (`modules.modkit-cache`) so that rerunning
//! depmod after one module was added or changed (what DKMS and every kernel package do)
//! does not decompress the others again.
//!
//! Each entry is keyed by the file's path and its `stat` (device, inode, size, mtime and
//! ctime, to the nanosecond) and carries a 128-bit XXH3 hash of the file's bytes:
//!
//! - same `stat`, and the file's last change was at least [`RACY_MARGIN`] before the run
//!   that stored the entry: the entry is used without opening the file;
//! - otherwise (another `stat`, or a *racy* entry: one stored while the file might still
//!   change within the same timestamp tick, as git's index calls it) the file is read and
//!   hashed; an equal hash reuses the entry (a `touch`, a `cp -a` or a fresh unpack), any
//!   other hash extracts the module again.
//!
//! So any change to a module's bytes is noticed, whatever the timestamps say. The cache is
//! an optimisation only: a missing, unreadable, truncated, foreign or corrupt cache file
//! is ignored (and replaced), never an error, and the outputs are byte-identical with or
//! without it. It is written to a temporary file and renamed into place, so a crash or a
//! concurrent depmod leaves either the old or the new cache, never half of one.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::extract::ModData;

/// The cache's file name in the module directory.
pub const CACHE_FILE: &str = "modules.modkit-cache";

/// First bytes of a cache file; a change of layout changes the version.
const MAGIC: &[u8; 24] = b"modkit depmod cache v3\n\0";

/// A file whose last change is this close to the run that stored its entry is re-hashed
/// before the entry is used: a change within the same timestamp tick (coarse kernel
/// clock, 2 s on FAT) would otherwise leave its `stat` unchanged.
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// Largest cache file read (a hostile or broken one is ignored beyond it).
const MAX_CACHE_BYTES: u64 = 1 << 30;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of a file's metadata.
    pub fn of(md: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    /// Whether the file changed within [`RACY_MARGIN`] of `run_start` (or after it).
    fn racy(&self, run_start: SystemTime) -> bool {
        let secs = run_start
            .checked_sub(RACY_MARGIN)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let last = self.mtime.max(self.ctime);
        last.0 >= secs
    }
}

/// One module's entry.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: FileKey,
    /// The key may not show a change made right after it was taken: check the hash.
    racy: bool,
    hash: u128,
    data: ModData,
}

/// The file's layout after [`MAGIC`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// modkit's version that wrote it: another version's cache is not trusted.
    writer: String,
    entries: HashMap<Vec<u8>, Entry>,
}

/// How the cache served one module (counted for `tracing` and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// Used on its `stat` alone.
    Stat,
    /// The `stat` differed or was racy, the hash matched.
    Hash,
    /// Extracted from the file.
    Miss,
}

/// The cache of one depmod run: entries read from the old file, entries for the new one.
#[derive(Debug)]
pub(crate) struct Cache {
    path: PathBuf,
    old: HashMap<Vec<u8>, Entry>,
    run_start: SystemTime,
}

fn writer() -> String {
    format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
}

impl Cache {
    /// Opens the cache of the module directory `dir` (an empty one if it cannot be read).
    pub fn open(dir: &Path) -> Cache {
        let path = dir.join(CACHE_FILE);
        let run_start = SystemTime::now();
        let old = match read_stored(&path) {
            Ok(s) if s.writer == writer() => s.entries,
            Ok(_) => {
                tracing::debug!("{}: written by another version, ignored", path.display());
                HashMap::new()
            }
            Err(why) => {
                tracing::debug!("{}: not used: {why}", path.display());
                HashMap::new()
            }
        };
        Cache {
            path,
            old,
            run_start,
        }
    }

    /// Reads one module through the cache: `extract` runs only when no entry fits.
    /// Returns the module's data, the entry to store for it (when the file could be
    /// read) and how the cache served it.
    pub fn read(
        &self,
        path: &[u8],
        extract: impl FnOnce(&[u8]) -> ModData,
        fallback: impl FnOnce() -> ModData,
    ) -> (ModData, Option<NewEntry>, Hit) {
        let md = match std::fs::metadata(super::discover::bpath(path)) {
            Ok(md) => md,
            Err(_) => return (fallback(), None, Hit::Miss),
        };
        let key = FileKey::of(&md);
        let old = self.old.get(path);
        if let Some(e) = old {
            if e.key == key && !e.racy {
                let entry = NewEntry {
                    key,
                    racy: false,
                    hash: e.hash,
                };
                return (e.data.clone(), Some(entry), Hit::Stat);
            }
        }
        // Read the file once: for the hash and, if needed, the extraction.
        let bytes = match read_mapped(path) {
            Some(b) => b,
            None => return (fallback(), None, Hit::Miss),
        };
        let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
        // The key taken before reading: a change during the read makes it racy.
        let racy = key.racy(self.run_start);
        let entry = NewEntry { key, racy, hash };
        if let Some(e) = old {
            if e.hash == hash {
                return (e.data.clone(), Some(entry), Hit::Hash);
            }
        }
        (extract(&bytes), Some(entry), Hit::Miss)
    }

    /// Whether storing `entries` would write what the cache file already holds (every
    /// module served by its `stat`, and no module gone): the file is then left alone.
    pub fn unchanged(&self, hits: &[Hit], paths: usize) -> bool {
        paths == self.old.len() && hits.iter().all(|h| *h == Hit::Stat)
    }

    /// Writes the new cache (atomically; failures are only logged at debug level).
    pub fn store(&self, entries: Vec<(Vec<u8>, NewEntry, ModData)>) {
        let stored = Stored {
            writer: writer(),
            entries: entries
                .into_iter()
                .map(|(p, n, data)| {
                    (
                        p,
                        Entry {
                            key: n.key,
                            racy: n.racy,
                            hash: n.hash,
                            data,
                        },
                    )
                })
                .collect(),
        };
        if let Err(why) = write_stored(&self.path, &stored) {
            tracing::debug!("{}: not written: {why}", self.path.display());
        }
    }
}

/// The key and hash of a module's file, to store beside its data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEntry {
    key: FileKey,
    racy: bool,
    hash: u128,
}

/// The file's bytes, mapped (or read when it cannot be mapped).
fn read_mapped(path: &[u8]) -> Option<Bytes> {
    let path = super::discover::bpath(path);
    let f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len == 0 {
        return Some(Bytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only and private; a module file truncated by someone else
    // while mapped could raise SIGBUS, the same exposure kmod's own mmap of modules has.
    // (The extraction path, `with_file_bytes`, maps files the same way.)
    match unsafe { memmap2::Mmap::map(&f) } {
        Ok(m) => Some(Bytes::Mapped(m)),
        Err(_) => std::fs::read(path).ok().map(Bytes::Owned),
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

fn read_stored(path: &Path) -> Result<Stored, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_CACHE_BYTES {
        return Err(format!(
            "{len} bytes, above the {MAX_CACHE_BYTES}-byte limit"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| "not a modkit depmod cache (or an older layout)".to_string())?;
    postcard::from_bytes(body).map_err(|e| format!("corrupt: {e}"))
}

fn write_stored(path: &Path, stored: &Stored) -> Result<(), String> {
    let mut bytes = MAGIC.to_vec();
    bytes = postcard::to_extend(stored, bytes).map_err(|e| e.to_string())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // Mode 0666 less the umask, like depmod's other outputs.
    let mut tmp = tempfile::Builder::new()
        .prefix(".modules.modkit-cache.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(alias: &str) -> ModData {
        let mut d = ModData::default();
        d.aliases = vec![alias.to_string()];
        d
    }

    #[test]
    fn entries_are_reused_by_stat_then_by_hash_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("a.ko");
        std::fs::write(&m, b"version one").unwrap();
        let p = m.to_string_lossy().into_owned().into_bytes();
        let mut extracted = 0;
        let mut run = |expect: Hit| {
            let c = Cache::open(dir.path());
            let (d, n, hit) = c.read(
                &p,
                |b| {
                    extracted += 1;
                    data(std::str::from_utf8(b).unwrap())
                },
                || unreachable!("the file exists"),
            );
            assert_eq!(hit, expect);
            c.store(vec![(p.clone(), n.unwrap(), d.clone())]);
            d.aliases[0].clone()
        };
        assert_eq!(run(Hit::Miss), "version one");
        // Just written: racy, so the hash is checked, and it matches.
        assert_eq!(run(Hit::Hash), "version one");
        // Same size, new bytes: the hash differs, the module is read again.
        std::fs::write(&m, b"version two").unwrap();
        assert_eq!(run(Hit::Miss), "version two");
        assert_eq!(extracted, 2);
    }

    #[test]
    fn an_old_enough_file_is_trusted_on_its_stat() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("a.ko");
        std::fs::write(&m, b"x").unwrap();
        let p = m.to_string_lossy().into_owned().into_bytes();
        let mut c = Cache::open(dir.path());
        // Pretend the run happened long after the file's last change.
        c.run_start = SystemTime::now() + Duration::from_secs(60);
        let (d, n, _) = c.read(&p, |_| data("x"), || unreachable!());
        assert!(!n.unwrap().racy);
        c.store(vec![(p.clone(), n.unwrap(), d)]);
        let c = Cache::open(dir.path());
        let (_, _, hit) = c.read(&p, |_| panic!("must not extract"), || unreachable!());
        assert_eq!(hit, Hit::Stat);
    }

    #[test]
    fn a_corrupt_or_foreign_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for junk in [
            &b""[..],
            b"garbage",
            &[MAGIC.as_slice(), &[0xff; 64]].concat(),
            &MAGIC[..10],
        ] {
            std::fs::write(dir.path().join(CACHE_FILE), junk).unwrap();
            assert!(Cache::open(dir.path()).old.is_empty());
        }
        let stored = Stored {
            writer: "modkit 0.0.0-other".into(),
            entries: HashMap::new(),
        };
        write_stored(&dir.path().join(CACHE_FILE), &stored).unwrap();
        assert!(Cache::open(dir.path()).old.is_empty());
    }
}
