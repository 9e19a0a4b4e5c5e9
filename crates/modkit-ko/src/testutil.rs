//! Builds small but genuine x86_64 module objects (with the `object` crate's writer) for
//! tests: `.modinfo`, `__crc_` exports with `__ksymtab_strings`, undefined imports,
//! `__versions` and `.gnu.linkonce.this_module`.

use object::write::{Object, StandardSection, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
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
            let strings = obj.add_section(
                Vec::new(),
                b"__ksymtab_strings".to_vec(),
                SectionKind::ReadOnlyData,
            );
            let crcs =
                obj.add_section(Vec::new(), b"__kcrctab".to_vec(), SectionKind::ReadOnlyData);
            for (name, crc) in &self.exports {
                let mut s = name.as_bytes().to_vec();
                s.extend_from_slice(b"\0\0");
                obj.append_section_data(strings, &s, 1);
                let off = obj.append_section_data(crcs, &crc.to_le_bytes(), 4);
                obj.add_symbol(Symbol {
                    name: format!("__crc_{name}").into_bytes(),
                    value: off,
                    size: 0,
                    kind: SymbolKind::Data,
                    scope: SymbolScope::Compilation,
                    weak: false,
                    section: SymbolSection::Section(crcs),
                    flags: SymbolFlags::None,
                });
                obj.add_symbol(Symbol {
                    name: name.as_bytes().to_vec(),
                    value: 0,
                    size: 1,
                    kind: SymbolKind::Text,
                    scope: SymbolScope::Linkage,
                    weak: false,
                    section: SymbolSection::Section(text),
                    flags: SymbolFlags::None,
                });
            }
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
}
