//! Everything modkit reads from one kernel module file, with kmod's extraction rules.

use rustc_hash::FxHashMap;
use std::path::Path;

use crate::compress::{decompress, Compression};
use crate::elf::{cstr_at, ElfView, Symbol, SHN_ABS, SHN_UNDEF};
use crate::error::{Error, ParseError};
use crate::signature::SignatureTrailer;

/// One `key=value` string of `.modinfo` (a string without `=` has the whole string as key
/// and an empty value, as in kmod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModinfoEntry {
    /// The part before the first `=`.
    pub key: String,
    /// The part after the first `=`.
    pub value: String,
}

/// A symbol as kmod's `kmod_elf_get_symbols` reports it: what depmod treats as an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrcSymbol {
    /// Symbol name.
    pub name: String,
    /// CRC (`u64::MAX` when the `__crc_` symbol points outside its section, as in kmod).
    pub crc: u64,
}

/// A symbol the module needs (`kmod_elf_get_dependency_symbols`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencySymbol {
    /// Symbol name.
    pub name: String,
    /// CRC from `__versions`, 0 when absent.
    pub crc: u64,
    /// Weak undefined symbol (no warning when unresolved).
    pub weak: bool,
}

/// An export decoded from `__ksymtab`/`__ksymtab_gpl` (with its namespace and CRC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Symbol name.
    pub name: String,
    /// Namespace (`EXPORT_SYMBOL_NS`), `None` when empty.
    pub namespace: Option<String>,
    /// CRC from `__kcrctab*` (via `__crc_NAME`), when the kernel has modversions.
    pub crc: Option<u32>,
    /// Exported with `EXPORT_SYMBOL_GPL`.
    pub gpl: bool,
}

/// The parsed contents of a `.ko` file.
#[derive(Debug, Clone)]
pub struct KoModule {
    /// How the file was compressed.
    pub compression: Compression,
    /// Size of the uncompressed image in bytes.
    pub image_len: usize,
    /// The signature trailer, when the module is signed.
    pub signature: Option<SignatureTrailer>,
    /// `.modinfo` entries in section order; `None` when there is no `.modinfo` section.
    pub modinfo: Option<Vec<ModinfoEntry>>,
    /// kmod's export list (the `__crc_*` symbols, or `__ksymtab_strings` as fallback).
    pub crc_symbols: Result<Vec<CrcSymbol>, ParseError>,
    /// Symbols the module needs, in kmod's order.
    pub dependency_symbols: Result<Vec<DependencySymbol>, ParseError>,
    /// `__versions` entries (name, crc) in section order.
    pub versions: Vec<(String, u64)>,
    /// Whether the module has a `__versions` section at all (kmod 30's
    /// `--show-modversions` fails with `ENOENT` without one).
    pub has_versions_section: bool,
    /// Exports decoded from the ksymtab sections, in section then entry order.
    pub exports: Vec<Export>,
    /// The name in `.gnu.linkonce.this_module` (offset 24 on 64-bit, 12 on 32-bit).
    pub this_module_name: Option<String>,
}

/// Runs `f` on the bytes of the file at `path`, memory-mapped when possible.
pub(crate) fn with_file_bytes<R>(path: &Path, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the mapping is private and read-only, and is dropped before this function
    // returns. Like kmod (which also maps module files), we assume nobody truncates or
    // rewrites a module file while it is being read; every access into the mapping is
    // bounds-checked against the length taken at map time.
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => Ok(f(&map)),
        // Empty files and special files cannot be mapped: read them instead.
        Err(_) => {
            let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Ok(f(&raw))
        }
    }
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl KoModule {
    /// Reads and parses a module file (memory-mapped, so only the parts that are read
    /// are paged in).
    pub fn from_path(path: &Path) -> Result<KoModule, Error> {
        with_file_bytes(path, |bytes| {
            KoModule::from_bytes(bytes).map_err(|source| Error::Parse {
                path: path.to_path_buf(),
                source,
            })
        })?
    }

    /// Parses the bytes of a module file (compressed or not).
    pub fn from_bytes(raw: &[u8]) -> Result<KoModule, ParseError> {
        let (compression, image) = decompress(raw)?;
        KoModule::from_image(compression, &image)
    }

    /// Parses an uncompressed module image.
    pub fn from_image(compression: Compression, image: &[u8]) -> Result<KoModule, ParseError> {
        let elf = ElfView::parse(image)?;
        Ok(KoModule {
            compression,
            image_len: image.len(),
            signature: SignatureTrailer::parse(image),
            modinfo: modinfo(&elf),
            crc_symbols: crc_symbols(&elf),
            dependency_symbols: dependency_symbols(&elf),
            versions: versions(&elf).unwrap_or_default(),
            has_versions_section: elf.section_data("__versions").is_some(),
            exports: exports(&elf),
            this_module_name: this_module_name(&elf),
        })
    }

    /// Values of every `.modinfo` entry with this key, in order.
    pub fn modinfo_values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.modinfo
            .iter()
            .flatten()
            .filter(move |e| e.key == key)
            .map(|e| e.value.as_str())
    }
}

/// Splits a string section like `kmod_elf_get_strings` (drops empty strings, and returns
/// nothing when at most one byte follows the leading NULs).
pub fn split_strings(mut s: &[u8]) -> Vec<&[u8]> {
    while s.len() > 1 && s[0] == 0 {
        s = &s[1..];
    }
    if s.len() <= 1 {
        return Vec::new();
    }
    s.split(|&b| b == 0).filter(|x| !x.is_empty()).collect()
}

/// `.modinfo` as borrowed (key, value) pairs, kmod's splitting rules.
pub(crate) fn modinfo_raw<'d>(elf: &ElfView<'d>) -> Option<Vec<(&'d [u8], &'d [u8])>> {
    let data = elf.section_data(".modinfo")?;
    Some(
        split_strings(data)
            .into_iter()
            .map(|s| match s.iter().position(|&b| b == b'=') {
                Some(i) => (&s[..i], &s[i + 1..]),
                None => (s, &s[s.len()..]),
            })
            .collect(),
    )
}

fn modinfo(elf: &ElfView) -> Option<Vec<ModinfoEntry>> {
    Some(
        modinfo_raw(elf)?
            .into_iter()
            .map(|(k, v)| ModinfoEntry {
                key: lossy(k),
                value: lossy(v),
            })
            .collect(),
    )
}

/// kmod's `kmod_elf_resolve_crc`.
fn resolve_crc(elf: &ElfView, value: u64, shndx: u16) -> u64 {
    if shndx == SHN_ABS || shndx == SHN_UNDEF {
        return value;
    }
    let Some(sec) = elf.sections.get(shndx as usize) else {
        return u64::MAX;
    };
    let Some(data) = sec.data else {
        return u64::MAX;
    };
    // kmod checks `value > size - 4` (which wraps for sections shorter than 4 bytes);
    // here any CRC word not wholly inside the section is unresolvable.
    match value.checked_add(4) {
        Some(end) if end <= sec.size => {}
        _ => return u64::MAX,
    }
    usize::try_from(value)
        .ok()
        .and_then(|v| data.get(v..))
        .and_then(|b| elf.read_uint(b, 4))
        .unwrap_or(u64::MAX)
}

/// kmod's `kmod_elf_get_symbols`, borrowed: `__crc_` symbols, else `__ksymtab_strings`.
pub(crate) fn crc_symbols_raw<'d>(elf: &ElfView<'d>) -> Result<Vec<(&'d [u8], u64)>, ParseError> {
    if let Ok(syms) = &elf.symbols {
        if syms.iter_raw().all(|(n, ..)| syms.name_in_bounds(n)) {
            let out: Vec<(&[u8], u64)> = syms
                .iter_raw()
                .filter(|&(n, ..)| syms.name_starts_with(n, b"__crc_"))
                .filter_map(|(n, value, shndx, _)| {
                    let name = syms.name(n)?.strip_prefix(b"__crc_")?;
                    Some((name, resolve_crc(elf, value, shndx)))
                })
                .collect();
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
    let strings = elf
        .section_data("__ksymtab_strings")
        .ok_or(ParseError::MissingSection("__ksymtab_strings"))?;
    Ok(split_strings(strings).into_iter().map(|s| (s, 0)).collect())
}

fn crc_symbols(elf: &ElfView) -> Result<Vec<CrcSymbol>, ParseError> {
    Ok(crc_symbols_raw(elf)?
        .into_iter()
        .map(|(n, crc)| CrcSymbol {
            name: lossy(n),
            crc,
        })
        .collect())
}

/// Size of one `__versions` entry (`struct modversion_info`), on 32- and 64-bit alike.
const VERSION_ENTRY_SIZE: usize = 64;

fn versions_raw<'d>(elf: &ElfView<'d>) -> Option<Vec<(&'d [u8], u64)>> {
    let data = elf.section_data("__versions")?;
    let esz = VERSION_ENTRY_SIZE;
    if data.is_empty() || data.len() % esz != 0 {
        return None;
    }
    let crclen = if elf.is_64 { 8 } else { 4 };
    Some(
        data.chunks_exact(esz)
            .map(|e| {
                let name = cstr_at(&e[crclen..], 0).unwrap_or_default();
                (name, elf.read_uint(e, crclen).unwrap_or(0))
            })
            .collect(),
    )
}

fn versions(elf: &ElfView) -> Option<Vec<(String, u64)>> {
    Some(
        versions_raw(elf)?
            .into_iter()
            .map(|(n, c)| (lossy(n.strip_prefix(b".").unwrap_or(n)), c))
            .collect(),
    )
}

/// A borrowed dependency symbol: (name, crc, weak).
pub(crate) type RawDepSym<'d> = (&'d [u8], u64, bool);

/// kmod's `kmod_elf_get_dependency_symbols`, borrowed.
pub(crate) fn dependency_symbols_raw<'d>(
    elf: &ElfView<'d>,
) -> Result<Vec<RawDepSym<'d>>, ParseError> {
    const STB_WEAK: u8 = 2;
    const STT_REGISTER: u8 = 13;
    let versions = versions_raw(elf).unwrap_or_default();
    let mut visited = vec![false; versions.len()];
    let mut first_version: FxHashMap<&[u8], usize> = FxHashMap::default();
    first_version.reserve(versions.len());
    for (i, (n, _)) in versions.iter().enumerate() {
        first_version.entry(n).or_insert(i);
    }
    let syms = elf.symbols.as_ref().map_err(Clone::clone)?;
    let sparc = matches!(elf.machine, 2 | 43);
    let mut out = Vec::new();
    for (name_off, _, shndx, info) in syms.iter_raw() {
        if shndx != SHN_UNDEF || (sparc && info & 0xf == STT_REGISTER) {
            continue;
        }
        let name = syms.name(name_off).ok_or_else(|| ParseError::Section {
            section: ".symtab".into(),
            message: format!(
                "an undefined symbol's name lies outside .strtab ({} bytes)",
                elf.strtab_len
            ),
        })?;
        if name.is_empty() {
            continue;
        }
        let mut crc = 0;
        if let Some(&i) = first_version.get(name) {
            visited[i] = true;
            crc = versions[i].1;
        }
        out.push((name, crc, info >> 4 == STB_WEAK));
    }
    for (i, (name, crc)) in versions.iter().enumerate() {
        if !visited[i] {
            out.push((*name, *crc, false));
        }
    }
    Ok(out)
}

fn dependency_symbols(elf: &ElfView) -> Result<Vec<DependencySymbol>, ParseError> {
    Ok(dependency_symbols_raw(elf)?
        .into_iter()
        .map(|(n, crc, weak)| DependencySymbol {
            name: lossy(n),
            crc,
            weak,
        })
        .collect())
}

fn this_module_name(elf: &ElfView) -> Option<String> {
    let data = elf.section_data(".gnu.linkonce.this_module")?;
    let off = if elf.is_64 { 24 } else { 12 };
    let field = data.get(off..(off + 56).min(data.len()))?;
    let name = cstr_at(field, 0)?;
    (!name.is_empty()).then(|| lossy(name))
}

/// Reads the string that a ksymtab field points at (symbol + addend inside its section).
fn string_at(elf: &ElfView, sym_index: u32, addend: i64) -> Option<String> {
    let syms = elf.symbols.as_ref().ok()?;
    if sym_index == 0 {
        return None;
    }
    let sym = syms.get(sym_index as usize)?;
    let sec = elf.sections.get(sym.shndx as usize)?;
    let data = sec.data?;
    const STT_SECTION: u8 = 3;
    let base = if sym.kind() == STT_SECTION {
        0
    } else {
        sym.value
    };
    let off = base.checked_add_signed(addend)?;
    cstr_at(data, usize::try_from(off).ok()?).map(lossy)
}

fn exports(elf: &ElfView) -> Vec<Export> {
    if elf.section("__ksymtab").is_none() && elf.section("__ksymtab_gpl").is_none() {
        return Vec::new();
    }
    let syms: Vec<Symbol> = match &elf.symbols {
        Ok(t) => t.iter().collect(),
        Err(_) => Vec::new(),
    };
    let mut crcs: FxHashMap<&[u8], u32> = FxHashMap::default();
    let mut nslabels: FxHashMap<&[u8], (u64, u16)> = FxHashMap::default();
    for s in &syms {
        let Some(n) = s.name else { continue };
        if let Some(n) = n.strip_prefix(b"__crc_") {
            crcs.entry(n)
                .or_insert_with(|| resolve_crc(elf, s.value, s.shndx) as u32);
        } else if let Some(n) = n.strip_prefix(b"__kstrtabns_") {
            nslabels.entry(n).or_insert((s.value, s.shndx));
        }
    }
    let crc_of = |name: &str| crcs.get(name.as_bytes()).copied();
    let mut out = Vec::new();
    for (secname, gpl) in [("__ksymtab", false), ("__ksymtab_gpl", true)] {
        let Some(sec) = elf.section(secname) else {
            continue;
        };
        let relocs = &elf.relocations(sec.index);
        // 6.1 layout: 12-byte entries of three PC-relative 32-bit fields
        // (value, name, namespace), each with a relocation.
        let mut entries: Vec<(Option<String>, Option<String>)> = Vec::new();
        if sec.size % 12 == 0 && !relocs.is_empty() {
            entries.resize((sec.size / 12) as usize, (None, None));
            for r in relocs {
                let (entry, field) = ((r.offset / 12) as usize, r.offset % 12);
                let Some(slot) = entries.get_mut(entry) else {
                    continue;
                };
                match field {
                    4 => slot.0 = string_at(elf, r.sym, r.addend),
                    8 => slot.1 = string_at(elf, r.sym, r.addend),
                    _ => {}
                }
            }
        }
        if !entries.is_empty() && entries.iter().all(|e| e.0.is_some()) {
            for (name, ns) in entries {
                let name = name.unwrap_or_default();
                out.push(Export {
                    crc: crc_of(&name),
                    namespace: ns.filter(|n| !n.is_empty()),
                    name,
                    gpl,
                });
            }
            continue;
        }
        // Fallback (other layouts): the `__ksymtab_NAME` labels in this section.
        let mut labelled: Vec<(u64, String)> = syms
            .iter()
            .filter(|s| s.shndx as usize == sec.index)
            .filter_map(|s| {
                let n = s.name?.strip_prefix(b"__ksymtab_")?;
                Some((s.value, lossy(n)))
            })
            .collect();
        labelled.sort();
        let strings = elf.section("__ksymtab_strings");
        for (_, name) in labelled {
            let namespace = nslabels
                .get(name.as_bytes())
                .and_then(|&(value, shndx)| {
                    let sec = strings.filter(|t| t.index == shndx as usize)?;
                    cstr_at(sec.data?, usize::try_from(value).ok()?).map(lossy)
                })
                .filter(|n| !n.is_empty());
            out.push(Export {
                crc: crc_of(&name),
                namespace,
                name,
                gpl,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_strings_like_kmod() {
        assert_eq!(split_strings(b"\0\0a=1\0\0b\0"), vec![&b"a=1"[..], b"b"]);
        assert!(split_strings(b"\0\0x").is_empty());
        assert!(split_strings(b"").is_empty());
        assert_eq!(split_strings(b"ab\0cd"), vec![&b"ab"[..], b"cd"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [
            &b""[..],
            b"\x7fELF",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x01\0",
            b"hello world, not a module",
        ] {
            assert!(KoModule::from_bytes(data).is_err());
        }
    }
}

#[cfg(test)]
mod fake_tests {
    use super::*;
    use crate::testutil::FakeModule;

    #[test]
    fn reads_a_synthetic_module() {
        let mut f = FakeModule::new("foo", &["foo_a", "foo_b"], &["bar_x", "printk"]);
        f.weak_imports.push("maybe".into());
        f.modinfo = vec!["alias=fs-foo".into(), "license=GPL".into(), "flag".into()];
        let bytes = f.build();
        let m = KoModule::from_bytes(&bytes).unwrap();
        let info = m.modinfo.as_ref().unwrap();
        assert_eq!(
            info[0],
            ModinfoEntry {
                key: "alias".into(),
                value: "fs-foo".into()
            }
        );
        assert_eq!(
            info[2],
            ModinfoEntry {
                key: "flag".into(),
                value: String::new()
            }
        );
        assert_eq!(m.modinfo_values("name").collect::<Vec<_>>(), ["foo"]);
        let crcs = m.crc_symbols.as_ref().unwrap();
        assert_eq!(crcs.len(), 2);
        assert_eq!(
            crcs[0],
            CrcSymbol {
                name: "foo_a".into(),
                crc: 0x1234
            }
        );
        let deps = m.dependency_symbols.as_ref().unwrap();
        let names: Vec<_> = deps.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["bar_x", "printk", "maybe", "module_layout"]);
        assert!(deps[2].weak && !deps[0].weak);
        assert_eq!(deps[0].crc, 0x1234);
        assert_eq!(deps[3].crc, 0x99);
        assert_eq!(m.this_module_name.as_deref(), Some("foo"));
        let names: Vec<_> = m.exports.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["foo_a", "foo_b"]);
        assert_eq!(m.exports[0].crc, Some(0x1234));
        assert!(!m.exports[0].gpl && m.exports[0].namespace.is_none());
        assert_eq!(m.versions.len(), 4);
        assert!(m.signature.is_none());
    }

    #[test]
    fn exports_with_namespaces_and_gpl() {
        let mut f = FakeModule::new("ns", &["zeta", "alpha"], &[]);
        f.gpl = true;
        f.namespaces = vec![("zeta".into(), "MY_NS".into())];
        let m = KoModule::from_bytes(&f.build()).unwrap();
        assert_eq!(
            m.exports,
            vec![
                Export {
                    name: "alpha".into(),
                    namespace: None,
                    crc: Some(0x1234),
                    gpl: true
                },
                Export {
                    name: "zeta".into(),
                    namespace: Some("MY_NS".into()),
                    crc: Some(0x1234),
                    gpl: true
                },
            ]
        );
    }

    /// Regression (found by the `ko_reader` fuzz target): a `__crc_` symbol whose value
    /// lies far outside its section must not panic.
    #[test]
    fn crc_symbol_outside_its_section() {
        let mut bytes = FakeModule::new("c", &["x"], &[]).build();
        let (off, count, strtab) = {
            let elf = ElfView::parse(&bytes).unwrap();
            let sym = elf.section(".symtab").unwrap();
            let strtab = elf.section_data(".strtab").unwrap().to_vec();
            (sym.offset as usize, sym.size as usize / 24, strtab)
        };
        for i in 1..count {
            let e = off + 24 * i;
            let name_off = u32::from_le_bytes(bytes[e..e + 4].try_into().unwrap()) as usize;
            if cstr_at(&strtab, name_off) == Some(&b"__crc_x"[..]) {
                bytes[e + 8..e + 16].copy_from_slice(&0xAB00_0000_0000_0000u64.to_le_bytes());
            }
        }
        let m = KoModule::from_bytes(&bytes).unwrap();
        assert_eq!(m.crc_symbols.unwrap()[0].crc, u64::MAX);
        assert_eq!(m.exports[0].crc, Some(u32::MAX));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_module() {
        let bytes = FakeModule::new("t", &["e"], &["i"]).build();
        for n in 0..bytes.len() {
            let _ = KoModule::from_bytes(&bytes[..n]);
        }
        // Flip bytes one at a time in the headers: never a panic.
        for i in 0..bytes.len().min(2048) {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = KoModule::from_bytes(&b);
        }
    }

    #[test]
    fn compressed_modules_parse_the_same() {
        use std::io::Write;
        let bytes = FakeModule::new("c", &["x"], &[]).build();
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&bytes).unwrap();
        let xz = e.finish().unwrap();
        let m = KoModule::from_bytes(&xz).unwrap();
        assert_eq!(m.compression, Compression::Xz);
        assert_eq!(m.crc_symbols.unwrap()[0].name, "x");
    }
}
