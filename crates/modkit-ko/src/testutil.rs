//! Builds small but genuine x86_64 module objects (with the `object` crate's writer) for
//! tests: `.modinfo`, 6.1-style `__ksymtab*` entries with relocations, `__crc_` symbols,
//! `__ksymtab_strings` with namespaces, undefined imports, `__versions` and
//! `.gnu.linkonce.this_module`.

use object::write::{
    Object, Relocation, SectionId, StandardSection, Symbol, SymbolId, SymbolSection,
};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationEncoding, RelocationFlags, RelocationKind,
    SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};

/// Description of a synthetic module.
#[derive(Debug, Default, Clone)]
pub struct FakeModule {
    /// `name=` and `.gnu.linkonce.this_module` name.
    pub name: String,
    /// Exported symbols (with CRCs).
    pub exports: Vec<(String, u32)>,
    /// Imported (undefined) symbols, in symbol-table order.
    pub imports: Vec<String>,
    /// Weak imports.
    pub weak_imports: Vec<String>,
    /// Extra `.modinfo` strings (`key=value`).
    pub modinfo: Vec<String>,
    /// Namespaces of exports (`EXPORT_SYMBOL_NS`), by symbol.
    pub namespaces: Vec<(String, String)>,
    /// Export with `EXPORT_SYMBOL_GPL` (`__ksymtab_gpl`).
    pub gpl: bool,
}

fn local(obj: &mut Object, name: String, value: u64, section: SectionId) -> SymbolId {
    obj.add_symbol(Symbol {
        name: name.into_bytes(),
        value,
        size: 0,
        kind: SymbolKind::Data,
        scope: SymbolScope::Compilation,
        weak: false,
        section: SymbolSection::Section(section),
        flags: SymbolFlags::None,
    })
}

impl FakeModule {
    /// A module named `name` importing `imports` and exporting `exports` (CRC 0x1234).
    pub fn new(name: &str, exports: &[&str], imports: &[&str]) -> Self {
        FakeModule {
            name: name.into(),
            exports: exports.iter().map(|e| (e.to_string(), 0x1234)).collect(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The ELF bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0xc3], 1);
        let mut mi = Vec::new();
        for s in &self.modinfo {
            mi.extend_from_slice(s.as_bytes());
            mi.push(0);
        }
        mi.extend_from_slice(format!("name={}\0", self.name).as_bytes());
        let modinfo = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        obj.append_section_data(modinfo, &mi, 1);
        let mut tm = vec![0u8; 24];
        tm.extend_from_slice(self.name.as_bytes());
        tm.resize(24 + 56 + 8, 0);
        let this = obj.add_section(
            Vec::new(),
            b".gnu.linkonce.this_module".to_vec(),
            SectionKind::Data,
        );
        obj.append_section_data(this, &tm, 8);
        if !self.exports.is_empty() {
            self.add_exports(&mut obj, text);
        }
        let mut versions = Vec::new();
        for (imports, weak) in [(&self.imports, false), (&self.weak_imports, true)] {
            for name in imports {
                obj.add_symbol(Symbol {
                    name: name.as_bytes().to_vec(),
                    value: 0,
                    size: 0,
                    kind: SymbolKind::Unknown,
                    scope: SymbolScope::Linkage,
                    weak,
                    section: SymbolSection::Undefined,
                    flags: SymbolFlags::None,
                });
                let mut e = 0x1234u64.to_le_bytes().to_vec();
                e.extend_from_slice(name.as_bytes());
                e.resize(64, 0);
                versions.extend_from_slice(&e);
            }
        }
        let mut e = 0x99u64.to_le_bytes().to_vec();
        e.extend_from_slice(b"module_layout");
        e.resize(64, 0);
        versions.extend_from_slice(&e);
        let v = obj.add_section(
            Vec::new(),
            b"__versions".to_vec(),
            SectionKind::ReadOnlyData,
        );
        obj.append_section_data(v, &versions, 32);
        obj.write().expect("writing a synthetic module")
    }

    fn add_exports(&self, obj: &mut Object, text: SectionId) {
        let strings = obj.add_section(
            Vec::new(),
            b"__ksymtab_strings".to_vec(),
            SectionKind::ReadOnlyData,
        );
        let (ksym_name, crc_name): (&[u8], &[u8]) = if self.gpl {
            (b"__ksymtab_gpl", b"__kcrctab_gpl")
        } else {
            (b"__ksymtab", b"__kcrctab")
        };
        let crcs = obj.add_section(Vec::new(), crc_name.to_vec(), SectionKind::ReadOnlyData);
        let ksymtab = obj.add_section(Vec::new(), ksym_name.to_vec(), SectionKind::ReadOnlyData);
        // modpost/ld sort the ksymtab by name.
        let mut sorted = self.exports.clone();
        sorted.sort();
        for (name, crc) in &sorted {
            let ns = self
                .namespaces
                .iter()
                .find(|(s, _)| s == name)
                .map_or("", |(_, n)| n.as_str());
            let name_off = obj.append_section_data(strings, format!("{name}\0").as_bytes(), 1);
            let ns_off = obj.append_section_data(strings, format!("{ns}\0").as_bytes(), 1);
            let kstr = local(obj, format!("__kstrtab_{name}"), name_off, strings);
            let kns = local(obj, format!("__kstrtabns_{name}"), ns_off, strings);
            let entry = obj.append_section_data(ksymtab, &[0u8; 12], 4);
            local(obj, format!("__ksymtab_{name}"), entry, ksymtab);
            let off = obj.append_section_data(crcs, &crc.to_le_bytes(), 4);
            local(obj, format!("__crc_{name}"), off, crcs);
            let target = obj.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size: 1,
                kind: SymbolKind::Text,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Section(text),
                flags: SymbolFlags::None,
            });
            for (k, sym) in [target, kstr, kns].into_iter().enumerate() {
                obj.add_relocation(
                    ksymtab,
                    Relocation {
                        offset: entry + 4 * k as u64,
                        symbol: sym,
                        addend: 0,
                        flags: RelocationFlags::Generic {
                            kind: RelocationKind::Relative,
                            encoding: RelocationEncoding::Generic,
                            size: 32,
                        },
                    },
                )
                .expect("adding a ksymtab relocation");
            }
        }
    }
}
