//! A thin, bounds-checked view of an ELF relocatable object (a `.ko`), built on the
//! `object` crate's ELF definitions. It keeps kmod's lookup rules: a section is found by
//! name (first match from index 1), the symbol table is the section named `.symtab` and its
//! names come from the section named `.strtab`.

use object::elf::{FileHeader32, FileHeader64, SHT_RELA};
use object::read::elf::{FileHeader, Rela as _, SectionHeader, Sym as _};
use object::{Endianness, FileKind};

use crate::error::ParseError;

/// Special section index: undefined symbol.
pub const SHN_UNDEF: u16 = 0;
/// Special section index: absolute symbol.
pub const SHN_ABS: u16 = 0xfff1;

/// One section header, with its bytes when they lie inside the file.
#[derive(Debug, Clone)]
pub struct Section<'d> {
    /// Index in the section header table.
    pub index: usize,
    /// Name from the section-name string table (`None` when its offset is out of bounds).
    pub name: Option<&'d [u8]>,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_info`.
    pub info: u32,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// The section's bytes; `None` when `offset + size` lies beyond the end of the file
    /// (kmod skips such sections).
    pub data: Option<&'d [u8]>,
}

/// One `.symtab` entry in a class- and endian-neutral form.
#[derive(Debug, Clone, Copy)]
pub struct Symbol<'d> {
    /// The NUL-terminated name, `None` when `st_name` lies outside `.strtab`.
    pub name: Option<&'d [u8]>,
    /// `st_value`.
    pub value: u64,
    /// `st_shndx`.
    pub shndx: u16,
    /// `st_info`.
    pub info: u8,
}

impl Symbol<'_> {
    /// `ELF_ST_BIND`.
    pub fn bind(&self) -> u8 {
        self.info >> 4
    }
    /// `ELF_ST_TYPE`.
    pub fn kind(&self) -> u8 {
        self.info & 0xf
    }
}

/// One `SHT_RELA` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloc {
    /// `r_offset` inside the target section.
    pub offset: u64,
    /// Symbol index.
    pub sym: u32,
    /// Relocation type.
    pub r_type: u32,
    /// `r_addend`.
    pub addend: i64,
}

/// A parsed ELF file.
#[derive(Debug)]
pub struct ElfView<'d> {
    /// The whole file.
    pub data: &'d [u8],
    /// ELFCLASS64?
    pub is_64: bool,
    /// Byte order.
    pub endian: Endianness,
    /// `e_machine`.
    pub machine: u16,
    /// All section headers (index 0 included).
    pub sections: Vec<Section<'d>>,
    /// The `.symtab` table, or why it is unusable.
    pub symbols: Result<SymTab<'d>, ParseError>,
    /// Size of `.strtab` (kmod checks `st_name` against it).
    pub strtab_len: u64,
    /// Raw `SHT_RELA` sections as (target section index `sh_info`, bytes); decoded on
    /// demand by [`ElfView::relocations`].
    pub relas: Vec<(usize, &'d [u8])>,
    decode_relas: fn(Endianness, &[u8]) -> Vec<Reloc>,
}

fn elf_err(e: object::read::Error) -> ParseError {
    ParseError::Elf(e.to_string())
}

impl<'d> ElfView<'d> {
    /// Parses the ELF headers, sections, symbol table and relocations of `data`.
    pub fn parse(data: &'d [u8]) -> Result<ElfView<'d>, ParseError> {
        if !data.starts_with(b"\x7fELF") {
            return Err(ParseError::Elf(crate::error::BAD_ELF_MAGIC.into()));
        }
        if data.len() <= 16 {
            return Err(ParseError::TooShort { len: data.len() });
        }
        match FileKind::parse(data).map_err(elf_err)? {
            FileKind::Elf32 => parse_generic::<FileHeader32<Endianness>>(data, false),
            FileKind::Elf64 => parse_generic::<FileHeader64<Endianness>>(data, true),
            other => Err(ParseError::Elf(format!("unsupported file kind {other:?}"))),
        }
    }

    /// The first section (from index 1) with this name whose bytes are in the file.
    pub fn section(&self, name: &str) -> Option<&Section<'d>> {
        self.sections
            .iter()
            .skip(1)
            .filter(|s| s.data.is_some())
            .find(|s| s.name == Some(name.as_bytes()))
    }

    /// Relocations applying to section `target` (from the first `SHT_RELA` section whose
    /// `sh_info` names it); empty when there is none or it is malformed.
    pub fn relocations(&self, target: usize) -> Vec<Reloc> {
        self.relas
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, bytes)| (self.decode_relas)(self.endian, bytes))
            .unwrap_or_default()
    }

    /// The bytes of the first section with this name.
    pub fn section_data(&self, name: &str) -> Option<&'d [u8]> {
        self.section(name).and_then(|s| s.data)
    }

    /// Reads an unsigned integer of `size` bytes (4 or 8) in the file's byte order.
    pub fn read_uint(&self, bytes: &[u8], size: usize) -> Option<u64> {
        let b = bytes.get(..size)?;
        let little = self.endian == Endianness::Little;
        Some(match (size, little) {
            (4, true) => u32::from_le_bytes(b.try_into().ok()?) as u64,
            (4, false) => u32::from_be_bytes(b.try_into().ok()?) as u64,
            (8, true) => u64::from_le_bytes(b.try_into().ok()?),
            (8, false) => u64::from_be_bytes(b.try_into().ok()?),
            _ => return None,
        })
    }
}

/// The NUL-terminated string at `off` in `table` (to the end of the table when unterminated).
pub fn cstr_at(table: &[u8], off: usize) -> Option<&[u8]> {
    let rest = table.get(off..)?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn parse_generic<'d, Elf: FileHeader<Endian = Endianness>>(
    data: &'d [u8],
    is_64: bool,
) -> Result<ElfView<'d>, ParseError> {
    let header = Elf::parse(data).map_err(elf_err)?;
    let endian = header.endian().map_err(elf_err)?;
    let shdrs = header.section_headers(endian, data).map_err(elf_err)?;
    if shdrs.is_empty() {
        return Err(ParseError::Elf("no section headers".into()));
    }
    let shstrndx = header.shstrndx(endian, data).map_err(elf_err)? as usize;
    let in_file = |off: u64, size: u64| -> Option<&'d [u8]> {
        let end = off.checked_add(size)?;
        if end > data.len() as u64 {
            return None;
        }
        data.get(off as usize..end as usize)
    };
    let names = shdrs
        .get(shstrndx)
        .and_then(|s| in_file(s.sh_offset(endian).into(), s.sh_size(endian).into()))
        .ok_or_else(|| ParseError::Elf("section name table is missing or out of bounds".into()))?;
    if names.last() != Some(&0) {
        return Err(ParseError::Elf(
            "section name table does not end with NUL".into(),
        ));
    }
    let mut sections = Vec::with_capacity(shdrs.len());
    for (index, s) in shdrs.iter().enumerate() {
        let offset: u64 = s.sh_offset(endian).into();
        let size: u64 = s.sh_size(endian).into();
        let name_off = s.sh_name(endian) as usize;
        let name = if name_off < names.len() {
            cstr_at(names, name_off)
        } else {
            None
        };
        sections.push(Section {
            index,
            name,
            sh_type: s.sh_type(endian),
            info: s.sh_info(endian),
            offset,
            size,
            data: in_file(offset, size),
        });
    }
    let mut view = ElfView {
        data,
        is_64,
        endian,
        machine: header.e_machine(endian),
        sections,
        symbols: Err(ParseError::MissingSection(".symtab")),
        strtab_len: 0,
        relas: Vec::new(),
        decode_relas: decode_relas::<Elf>,
    };
    let strtab = view.section_data(".strtab");
    let symtab = view.section_data(".symtab");
    view.strtab_len = strtab.map_or(0, |s| s.len() as u64);
    view.symbols = match (strtab, symtab) {
        (None, _) => Err(ParseError::MissingSection(".strtab")),
        (_, None) => Err(ParseError::MissingSection(".symtab")),
        (Some(strtab), Some(symtab)) => read_symbols::<Elf>(endian, strtab, symtab),
    };
    view.relas = view
        .sections
        .iter()
        .filter(|s| s.sh_type == SHT_RELA)
        .filter_map(|s| Some((s.info as usize, s.data?)))
        .collect();
    Ok(view)
}

fn decode_relas<Elf: FileHeader<Endian = Endianness>>(
    endian: Endianness,
    bytes: &[u8],
) -> Vec<Reloc> {
    let Ok(relas) = object::pod::slice_from_all_bytes::<Elf::Rela>(bytes) else {
        return Vec::new();
    };
    relas
        .iter()
        .map(|r| Reloc {
            offset: r.r_offset(endian).into(),
            sym: r.r_sym(endian, false),
            r_type: r.r_type(endian, false),
            addend: r.r_addend(endian).into(),
        })
        .collect()
}

fn read_symbols<'d, Elf: FileHeader<Endian = Endianness>>(
    endian: Endianness,
    strtab: &'d [u8],
    symtab: &'d [u8],
) -> Result<SymTab<'d>, ParseError> {
    let size = std::mem::size_of::<Elf::Sym>();
    if symtab.len() % size != 0 {
        return Err(ParseError::Section {
            section: ".symtab".into(),
            message: format!(
                "size {} is not a multiple of the symbol size {size}",
                symtab.len()
            ),
        });
    }
    Ok(SymTab {
        data: symtab,
        strtab,
        entsize: size,
        endian,
        decode: decode_sym::<Elf>,
    })
}

/// A symbol-table entry without its name: (`st_name`, `st_value`, `st_shndx`, `st_info`).
pub type RawSym = (u32, u64, u16, u8);

fn decode_sym<Elf: FileHeader<Endian = Endianness>>(
    endian: Endianness,
    entry: &[u8],
) -> Option<RawSym> {
    let (s, _) = object::pod::from_bytes::<Elf::Sym>(entry).ok()?;
    Some((
        s.st_name(endian),
        s.st_value(endian).into(),
        s.st_shndx(endian),
        s.st_info(),
    ))
}

/// A symbol table decoded on access (entries from index 1; index 0 is the null symbol).
#[derive(Debug, Clone, Copy)]
pub struct SymTab<'d> {
    data: &'d [u8],
    strtab: &'d [u8],
    entsize: usize,
    endian: Endianness,
    decode: fn(Endianness, &[u8]) -> Option<RawSym>,
}

impl<'d> SymTab<'d> {
    /// Number of entries including the null symbol.
    pub fn count(&self) -> usize {
        self.data.len() / self.entsize
    }

    /// Entry `index` (0 is the null symbol).
    pub fn get(&self, index: usize) -> Option<Symbol<'d>> {
        let e = self
            .data
            .get(index * self.entsize..(index + 1) * self.entsize)?;
        let (name_off, value, shndx, info) = (self.decode)(self.endian, e)?;
        let off = name_off as usize;
        Some(Symbol {
            name: if off < self.strtab.len() {
                cstr_at(self.strtab, off)
            } else {
                None
            },
            value,
            shndx,
            info,
        })
    }

    /// Entries from index 1, in table order.
    pub fn iter(&self) -> impl Iterator<Item = Symbol<'d>> + '_ {
        (1..self.count()).filter_map(move |i| self.get(i))
    }

    /// Entries from index 1 without their names: (`st_name`, value, shndx, info).
    /// Cheaper than [`SymTab::iter`] when most names are not needed.
    pub fn iter_raw(&self) -> impl Iterator<Item = RawSym> + '_ {
        self.data
            .chunks_exact(self.entsize)
            .skip(1)
            .filter_map(move |e| (self.decode)(self.endian, e))
    }

    /// Is `st_name` inside the string table?
    pub fn name_in_bounds(&self, name_off: u32) -> bool {
        (name_off as usize) < self.strtab.len()
    }

    /// Does the name at `st_name` start with `prefix`? (No scan for the terminator.)
    pub fn name_starts_with(&self, name_off: u32, prefix: &[u8]) -> bool {
        self.strtab
            .get(name_off as usize..)
            .is_some_and(|s| s.starts_with(prefix))
    }

    /// The name at `st_name`, `None` when out of bounds.
    pub fn name(&self, name_off: u32) -> Option<&'d [u8]> {
        let off = name_off as usize;
        if off < self.strtab.len() {
            cstr_at(self.strtab, off)
        } else {
            None
        }
    }
}
