//! The per-module data depmod needs, read in parallel into one string arena per module
//! (few allocations: depmod's time is dominated by reading 1,000s of modules).

use crate::compress::decompress;
use crate::elf::ElfView;
use crate::error::{Error, ParseError};
use crate::ko::{crc_symbols_raw, dependency_symbols_raw, lossy, modinfo_raw, with_file_bytes};

/// A string stored in a [`ModData`] arena: (start, length).
pub(crate) type Span = (u32, u32);

/// Why a module's export list could not be read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum ExportsError {
    /// The module has no export section (silent in kmod).
    MissingSection,
    /// Any other parse error, as kmod would print it.
    Other(String),
}

/// What depmod uses from one module file (also what [`super::cache`] stores).
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ModData {
    arena: String,
    /// kmod's export list: (name, crc), or why it could not be read.
    pub exports: Option<Result<Vec<(Span, u64)>, ExportsError>>,
    /// Dependency symbols: (name, crc, weak).
    pub deps: Vec<(Span, u64, bool)>,
    /// `alias=` values in order.
    pub aliases: Vec<String>,
    /// `softdep=` values in order.
    pub softdeps: Vec<String>,
    /// `weakdep=` values in order (`MODULE_WEAKDEP`, kmod 33+'s `modules.weakdep`).
    pub weakdeps: Vec<String>,
    /// The file could not be read or is not ELF: kmod's text (`strerror` of its errno).
    pub load_error: Option<String>,
    /// modkit's own description of a malformed file (printed on a second line).
    pub load_detail: Option<String>,
}

impl ModData {
    /// The string behind a span.
    pub fn str(&self, (start, len): Span) -> &str {
        &self.arena[start as usize..(start + len) as usize]
    }

    fn push(&mut self, bytes: &[u8]) -> Span {
        let start = self.arena.len() as u32;
        match std::str::from_utf8(bytes) {
            Ok(s) => self.arena.push_str(s),
            Err(_) => self.arena.push_str(&lossy(bytes)),
        }
        (start, self.arena.len() as u32 - start)
    }
}

/// Reads one module for depmod; never fails (errors are recorded in the result, and the
/// module stays in the outputs without symbols, as in kmod).
pub(crate) fn read_module(path: &[u8]) -> ModData {
    let r = with_file_bytes(super::discover::bpath(path), parse_module);
    match r {
        Ok(r) => from_parse(r),
        Err(Error::Io { source, .. }) => ModData {
            load_error: Some(super::strerror(&source)),
            ..Default::default()
        },
        Err(Error::Parse { source, .. }) => from_parse(Err(source)),
        Err(e) => ModData {
            load_error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// [`read_module`] of a file's bytes already in memory.
pub(crate) fn read_module_bytes(raw: &[u8]) -> ModData {
    from_parse(parse_module(raw))
}

fn from_parse(r: Result<ModData, ParseError>) -> ModData {
    match r {
        Ok(d) => d,
        Err(e) => ModData {
            load_error: Some(e.kmod_text()),
            load_detail: Some(e.to_string()),
            ..Default::default()
        },
    }
}

fn parse_module(raw: &[u8]) -> Result<ModData, ParseError> {
    {
        let (_, image) = decompress(raw)?;
        let elf = ElfView::parse(&image)?;
        let mut d = ModData::default();
        let (mut is_plugin, mut name, mut depends) = (false, String::new(), Vec::new());
        let (mut p_exports, mut p_imports) = (Vec::new(), Vec::new());
        for (k, v) in modinfo_raw(&elf).unwrap_or_default() {
            match k {
                b"alias" => d.aliases.push(lossy(v)),
                b"softdep" => d.softdeps.push(lossy(v)),
                b"weakdep" => d.weakdeps.push(lossy(v)),
                b"name" => name = lossy(v),
                b"vermagic" => is_plugin = v.starts_with(b"modkit-abi-"),
                b"export" => p_exports.push(lossy(v)),
                b"import" => p_imports.push(lossy(v)),
                b"depends" => depends.extend(
                    lossy(v)
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
        if is_plugin {
            // A modkit plugin (issue 11): one pseudo-symbol per plugin and one per
            // export=; its dependencies from its import= entries (as a module's undefined
            // symbols) and from depends=, through the same resolution as kernel modules.
            let sym = crate::names::plugin_symbol(&name);
            let mut exports = vec![(d.push(sym.as_bytes()), 0)];
            for e in p_exports {
                let s = crate::names::plugin_export_symbol(&e);
                exports.push((d.push(s.as_bytes()), 0));
            }
            d.exports = Some(Ok(exports));
            for i in p_imports {
                let s = crate::names::plugin_export_symbol(&i);
                let span = d.push(s.as_bytes());
                d.deps.push((span, 0, false));
            }
            for dep in depends {
                let s = crate::names::plugin_symbol(&dep);
                let span = d.push(s.as_bytes());
                d.deps.push((span, 0, false));
            }
            return Ok(d);
        }
        let exports = crc_symbols_raw(&elf)
            .map(|list| list.into_iter().map(|(n, crc)| (d.push(n), crc)).collect())
            .map_err(|e| match e {
                ParseError::MissingSection(_) => ExportsError::MissingSection,
                e => ExportsError::Other(e.to_string()),
            });
        d.exports = Some(exports);
        if let Ok(deps) = dependency_symbols_raw(&elf) {
            let deps = deps
                .into_iter()
                .map(|(n, crc, weak)| (d.push(n), crc, weak))
                .collect();
            d.deps = deps;
        }
        Ok(d)
    }
}
