//! depmod's symbol table: vmlinux symbols (owner `None`) from Module.symvers or System.map,
//! then module exports; adding an existing name replaces it (last writer wins).

use std::path::Path;

use rustc_hash::FxHashMap;

use super::discover::fgets_lines;
use super::Log;

/// One symbol of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sym {
    /// Index of the exporting module, `None` for vmlinux and the fake symbols.
    pub owner: Option<usize>,
    /// CRC (from Module.symvers or the module's `__crc_` symbol).
    pub crc: u64,
}

/// The symbol table of a depmod run; names are borrowed from the module data and the
/// Module.symvers / System.map text.
#[derive(Debug, Default)]
pub struct SymbolTable<'a> {
    map: FxHashMap<&'a str, Sym>,
    prefix: u8,
}

impl<'a> SymbolTable<'a> {
    /// An empty table with the `-P` prefix character (0 for none).
    pub fn new(prefix: u8) -> Self {
        let mut map = FxHashMap::default();
        map.reserve(32 * 1024);
        SymbolTable { map, prefix }
    }

    /// `depmod_symbol_add`.
    pub fn add(&mut self, name: &'a str, prefix_skipped: bool, crc: u64, owner: Option<usize>) {
        let name =
            if !prefix_skipped && self.prefix != 0 && name.as_bytes().first() == Some(&self.prefix)
            {
                &name[1..]
            } else {
                name
            };
        self.map.insert(name, Sym { owner, crc });
    }

    /// `depmod_symbol_find`: strips one leading `.` and then the prefix character.
    pub fn find(&self, name: &str) -> Option<Sym> {
        let mut n = name.strip_prefix('.').unwrap_or(name);
        if self.prefix != 0 && n.as_bytes().first() == Some(&self.prefix) {
            n = &n[1..];
        }
        self.map.get(n).copied()
    }

    /// Symbols that have a module owner: (name, owner index).
    pub fn owned(&self) -> impl Iterator<Item = (&'a str, usize)> + '_ {
        self.map
            .iter()
            .filter_map(|(k, s)| s.owner.map(|o| (*k, o)))
    }

    fn add_fake_syms(&mut self) {
        self.add("__this_module", true, 0, None);
        self.add("_GLOBAL_OFFSET_TABLE_", true, 0, None);
        if self.find("TOC.").is_none() {
            self.add("TOC.", true, 0, None);
        }
    }

    /// `depmod_load_symvers`: the `vmlinux` lines of a Module.symvers.
    pub fn load_symvers(&mut self, path: &Path, text: &'a str, log: &mut Log) {
        for (n, line) in fgets_lines(text.as_bytes()).into_iter().enumerate() {
            let line = std::str::from_utf8(line).unwrap_or_default();
            let mut toks = line.split([' ', '\t']).filter(|t| !t.is_empty());
            let (Some(ver), Some(sym), Some(whr)) = (toks.next(), toks.next(), toks.next()) else {
                continue;
            };
            if whr != "vmlinux" {
                continue;
            }
            match parse_strtoull_hex(ver) {
                Some(crc) => self.add(sym, false, crc, None),
                None => log.msg(
                    "ERROR",
                    &format!(
                        "{}:{} Invalid symbol version {ver}: Success\n",
                        path.display(),
                        n + 1
                    ),
                ),
            }
        }
        self.add_fake_syms();
    }

    /// `depmod_load_system_map`: the `__ksymtab_` lines of a System.map.
    pub fn load_system_map(&mut self, path: &Path, text: &'a str, log: &mut Log) {
        for (n, line) in fgets_lines(text.as_bytes()).into_iter().enumerate() {
            let line = std::str::from_utf8(line).unwrap_or_default();
            let Some(p) = line
                .split_once(' ')
                .and_then(|(_, r)| r.split_once(' '))
                .map(|(_, r)| r)
            else {
                log.msg(
                    "ERROR",
                    &format!("{}:{}: invalid line: {line}", path.display(), n + 1),
                );
                continue;
            };
            let p = if self.prefix != 0 && p.as_bytes().first() == Some(&self.prefix) {
                &p[1..]
            } else {
                p
            };
            let Some(name) = p.strip_prefix("__ksymtab_") else {
                continue;
            };
            let name = name.split('\n').next().unwrap_or(name);
            self.add(name, true, 0, None);
        }
        self.add_fake_syms();
    }
}

/// `strtoull(s, &end, 16)` that must consume the whole token.
fn parse_strtoull_hex(s: &str) -> Option<u64> {
    let t = s.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .filter(|d| !d.is_empty())
        .unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(u64::from_str_radix(digits, 16).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_writer_wins_and_prefixes() {
        let mut t = SymbolTable::new(0);
        t.add("foo", false, 1, None);
        t.add("foo", false, 2, Some(3));
        assert_eq!(
            t.find("foo"),
            Some(Sym {
                owner: Some(3),
                crc: 2
            })
        );
        assert_eq!(
            t.find(".foo"),
            Some(Sym {
                owner: Some(3),
                crc: 2
            })
        );
        let mut t = SymbolTable::new(b'_');
        t.add("_bar", false, 0, Some(1));
        assert!(t.find("bar").is_some());
        assert!(t.find("_bar").is_some());
    }

    #[test]
    fn hex() {
        assert_eq!(parse_strtoull_hex("0x0000abcd"), Some(0xabcd));
        assert_eq!(parse_strtoull_hex("zz"), None);
        assert_eq!(parse_strtoull_hex("0x"), None);
    }
}
