//! The eleven files depmod writes (kmod 30's ten and kmod 33's `modules.weakdep`), in
//! depmod's order and formats.

use std::borrow::Cow;
use std::io::Write as _;

use super::symbols::SymbolTable;
use super::{strerror, Log, Mod};
use crate::index::IndexBuilder;
use crate::kmodhash::sort_in_hash_order;
use crate::names::{alias_normalize, path_to_modname_bytes};

/// Everything the writers need.
pub(crate) struct Ctx<'a> {
    pub mods: &'a [Mod],
    /// The module directory: inputs (`modules.builtin`, `modules.builtin.modinfo`).
    pub dirname: &'a str,
    /// Where the outputs go (`--outdir`, else the module directory).
    pub outdir: &'a str,
    pub warn_dups: bool,
    /// Each module's full dependency line (without the newline).
    pub dep_lines: Vec<Vec<u8>>,
    /// Owned symbols in the iteration order of depmod's 2048-bucket hash.
    pub sym_order: Vec<(&'a str, usize)>,
}

impl<'a> Ctx<'a> {
    /// Precomputes what several output files share, on all cores.
    pub fn new(
        mods: &'a [Mod],
        syms: &SymbolTable<'a>,
        dirname: &'a str,
        outdir: &'a str,
        warn_dups: bool,
    ) -> Self {
        use rayon::prelude::*;
        let dep_lines = (0..mods.len())
            .into_par_iter()
            .map_init(
                || vec![false; mods.len()],
                |seen, i| {
                    let mut line = Vec::new();
                    dep_line(mods, i, seen, &mut line);
                    line
                },
            )
            .collect();
        let mut sym_order: Vec<(&str, usize)> = syms.owned().collect();
        sort_in_hash_order(&mut sym_order, 2048, |(n, _)| n.as_bytes());
        Ctx {
            mods,
            dirname,
            outdir,
            warn_dups,
            dep_lines,
            sym_order,
        }
    }

    fn index(&self) -> IndexBuilder<'a> {
        if self.warn_dups {
            IndexBuilder::new()
        } else {
            IndexBuilder::without_duplicate_check()
        }
    }
}

/// `alias_normalize` without allocating when nothing changes.
fn normalize(alias: &str) -> Option<Cow<'_, str>> {
    if alias.bytes().any(|b| matches!(b, b'-' | b'[' | b']')) {
        alias_normalize(alias).map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(alias))
    }
}

/// Appends `parts` and a newline (module names and paths are bytes).
fn line(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
    out.push(b'\n');
}

/// An output file and its writer.
pub(crate) struct OutFile {
    pub name: &'static str,
    pub binary: bool,
    pub write: fn(&Ctx, &mut Vec<u8>, &mut Log),
}

/// depmod's output files, in the order it writes them.
pub(crate) const FILES: [OutFile; 11] = [
    OutFile {
        name: "modules.dep",
        binary: false,
        write: deps,
    },
    OutFile {
        name: "modules.dep.bin",
        binary: true,
        write: deps_bin,
    },
    OutFile {
        name: "modules.alias",
        binary: false,
        write: aliases,
    },
    OutFile {
        name: "modules.alias.bin",
        binary: true,
        write: aliases_bin,
    },
    OutFile {
        name: "modules.softdep",
        binary: false,
        write: softdeps,
    },
    OutFile {
        name: "modules.weakdep",
        binary: false,
        write: weakdeps,
    },
    OutFile {
        name: "modules.symbols",
        binary: false,
        write: symbols,
    },
    OutFile {
        name: "modules.symbols.bin",
        binary: true,
        write: symbols_bin,
    },
    OutFile {
        name: "modules.builtin.bin",
        binary: true,
        write: builtin_bin,
    },
    OutFile {
        name: "modules.builtin.alias.bin",
        binary: true,
        write: builtin_alias_bin,
    },
    OutFile {
        name: "modules.devname",
        binary: false,
        write: devname,
    },
];

/// Writes every file to a temporary name and renames it into place, like depmod.
pub(crate) fn write_all(ctx: &Ctx, log: &mut Log) -> bool {
    if ctx.outdir != ctx.dirname {
        // kmod 31+'s `mkdir_p(dname, 0755)` for `--outdir`.
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o755);
        if let Err(e) = b.recursive(true).create(crate::bytestr::path(ctx.outdir)) {
            log.msg(
                "FATAL",
                &format!(
                    "could not create directory {}: {}\n",
                    ctx.outdir,
                    strerror(&e)
                ),
            );
            return false;
        }
    }
    if let Err(e) = std::fs::read_dir(crate::bytestr::path(ctx.outdir)) {
        log.msg(
            "FATAL",
            &format!(
                "could not open directory {}: {}\n",
                ctx.outdir,
                strerror(&e)
            ),
        );
        return false;
    }
    // Build the contents on all cores, then write in depmod's order.
    let contents: Vec<(Vec<u8>, Vec<u8>)> = {
        use rayon::prelude::*;
        FILES
            .par_iter()
            .map(|f| {
                let mut buf = Vec::new();
                let mut msgs = Vec::new();
                let mut l = Log { err: &mut msgs };
                (f.write)(ctx, &mut buf, &mut l);
                (buf, msgs)
            })
            .collect()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for (f, (buf, msgs)) in FILES.iter().zip(contents) {
        let _ = log.err.write_all(&msgs);
        let tmp = format!(
            "{}/{}.{}.{}.{}",
            ctx.outdir,
            f.name,
            std::process::id(),
            now.subsec_micros(),
            now.as_secs()
        );
        let dest = format!("{}/{}", ctx.outdir, f.name);
        let res = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(crate::bytestr::path(&tmp))
            .and_then(|mut fh| fh.write_all(&buf));
        if let Err(e) = res {
            let _ = std::fs::remove_file(crate::bytestr::path(&tmp));
            log.msg(
                "ERROR",
                &format!("Could not write index '{}': {}\n", f.name, strerror(&e)),
            );
            return false;
        }
        if let Err(e) = std::fs::rename(crate::bytestr::path(&tmp), crate::bytestr::path(&dest)) {
            log.msg(
                "FATAL",
                &format!("renameat({}, {}): {}\n", ctx.outdir, f.name, strerror(&e)),
            );
            return false;
        }
    }
    true
}

/// The full, sorted dependency line of module `i` (without the trailing newline).
fn dep_line(mods: &[Mod], i: usize, seen: &mut [bool], out: &mut Vec<u8>) {
    let m = &mods[i];
    out.extend_from_slice(m.out_path());
    out.push(b':');
    if m.deps.is_empty() {
        return;
    }
    let mut all = Vec::new();
    let mut stack: Vec<usize> = m.deps.iter().rev().copied().collect();
    while let Some(d) = stack.pop() {
        if seen[d] {
            continue;
        }
        seen[d] = true;
        all.push(d);
        stack.extend(mods[d].deps.iter().rev().copied());
    }
    for &d in &all {
        seen[d] = false;
    }
    all.sort_by_key(|&d| mods[d].dep_sort_idx);
    for d in all {
        out.push(b' ');
        out.extend_from_slice(mods[d].out_path());
    }
}

fn deps(ctx: &Ctx, out: &mut Vec<u8>, _log: &mut Log) {
    for line in &ctx.dep_lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

fn deps_bin(ctx: &Ctx, out: &mut Vec<u8>, log: &mut Log) {
    let mut idx = ctx.index();
    for (i, m) in ctx.mods.iter().enumerate() {
        let line = ctx.dep_lines[i].as_slice();
        if idx.insert(m.modname.as_slice(), line, i as u32) && ctx.warn_dups {
            log.msg_bytes(
                "WARNING",
                &[&b"duplicate module deps:\n"[..], line, b"\n"].concat(),
            );
        }
    }
    out.extend_from_slice(&idx.write());
}

fn aliases(ctx: &Ctx, out: &mut Vec<u8>, _log: &mut Log) {
    out.extend_from_slice(b"# Aliases extracted from modules themselves.\n");
    for m in ctx.mods {
        for v in m.aliases.iter() {
            line(out, &[b"alias ", v.as_bytes(), b" ", &m.modname]);
        }
    }
}

fn aliases_bin(ctx: &Ctx, out: &mut Vec<u8>, log: &mut Log) {
    let mut idx = ctx.index();
    for (i, m) in ctx.mods.iter().enumerate() {
        for v in m.aliases.iter() {
            let Some(alias) = normalize(v) else {
                log.msg("WARNING", &format!("Unmatched bracket in {v}\n"));
                continue;
            };
            if idx.insert(alias.clone(), m.modname.as_slice(), i as u32) && ctx.warn_dups {
                let mut t = format!("duplicate module alias:\n{alias} ").into_bytes();
                line(&mut t, &[&m.modname]);
                log.msg_bytes("WARNING", &t);
            }
        }
    }
    out.extend_from_slice(&idx.write());
}

fn softdeps(ctx: &Ctx, out: &mut Vec<u8>, _log: &mut Log) {
    out.extend_from_slice(b"# Soft dependencies extracted from modules themselves.\n");
    for m in ctx.mods {
        for v in m.softdeps.iter() {
            line(out, &[b"softdep ", &m.modname, b" ", v.as_bytes()]);
        }
    }
}

/// kmod 33+'s `output_weakdeps`.
fn weakdeps(ctx: &Ctx, out: &mut Vec<u8>, _log: &mut Log) {
    out.extend_from_slice(b"# Weak dependencies extracted from modules themselves.\n");
    for m in ctx.mods {
        for v in m.weakdeps.iter() {
            line(out, &[b"weakdep ", &m.modname, b" ", v.as_bytes()]);
        }
    }
}

fn symbols(ctx: &Ctx, out: &mut Vec<u8>, _log: &mut Log) {
    out.extend_from_slice(b"# Aliases for symbols, used by symbol_request().\n");
    for &(name, owner) in &ctx.sym_order {
        line(
            out,
            &[
                b"alias symbol:",
                name.as_bytes(),
                b" ",
                &ctx.mods[owner].modname,
            ],
        );
    }
}

fn symbols_bin(ctx: &Ctx, out: &mut Vec<u8>, log: &mut Log) {
    let mut idx = ctx.index();
    for &(name, owner) in &ctx.sym_order {
        let key = format!("symbol:{name}");
        let m = &ctx.mods[owner];
        if idx.insert(key.clone(), m.modname.as_slice(), owner as u32) && ctx.warn_dups {
            let mut t = format!("duplicate module syms:\n{key} ").into_bytes();
            line(&mut t, &[&m.modname]);
            log.msg_bytes("WARNING", &t);
        }
    }
    out.extend_from_slice(&idx.write());
}

fn open_input(ctx: &Ctx, name: &str, log: &mut Log) -> Option<Vec<u8>> {
    match std::fs::read(crate::bytestr::path(&format!("{}/{name}", ctx.dirname))) {
        Ok(d) => Some(d),
        Err(e) => {
            log.msg(
                "WARNING",
                &format!(
                    "could not open {name} at {}: {}\n",
                    ctx.dirname,
                    strerror(&e)
                ),
            );
            None
        }
    }
}

fn builtin_bin(ctx: &Ctx, out: &mut Vec<u8>, log: &mut Log) {
    let Some(data) = open_input(ctx, "modules.builtin", log) else {
        return;
    };
    let mut idx = IndexBuilder::new();
    for line in super::discover::fgets_lines(&data) {
        if !line.first().is_some_and(u8::is_ascii_alphabetic) {
            log.msg_bytes(
                "ERROR",
                &[&b"Invalid modules.builtin line: "[..], line, b"\n"].concat(),
            );
            continue;
        }
        if let Some(modname) = path_to_modname_bytes(line) {
            idx.insert(modname, "", 0);
        }
    }
    out.extend_from_slice(&idx.write());
}

/// A byte stream with `fgetc` semantics, for `output_builtin_alias_bin`'s parser.
struct Stream<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Stream<'_> {
    fn getc(&mut self) -> Option<u8> {
        let c = self.data.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }
    fn eof(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// `flush_stream_to`: reads up to `end`, NUL or EOF; returns the text if `end` was hit.
    fn read_to(&mut self, end: u8) -> (Vec<u8>, bool) {
        let mut v = Vec::new();
        loop {
            match self.getc() {
                Some(c) if c == end => return (v, true),
                Some(0) | None => return (v, false),
                Some(c) => v.push(c),
            }
        }
    }
}

fn builtin_alias_bin(ctx: &Ctx, out: &mut Vec<u8>, log: &mut Log) {
    let Some(data) = open_input(ctx, "modules.builtin.modinfo", log) else {
        return;
    };
    let mut idx = IndexBuilder::new();
    let mut st = Stream {
        data: &data,
        pos: 0,
    };
    // Format: modname.key=value\0, parsed with kmod's exact (quirky) loop.
    while !st.eof() {
        let (modname, ok) = st.read_to(b'.');
        if !ok || modname.is_empty() {
            continue;
        }
        let (key, ok) = st.read_to(b'=');
        if !ok || key != b"alias" {
            let _ = st.read_to(0);
            continue;
        }
        let (value, ok) = st.read_to(0);
        if !ok || value.is_empty() {
            continue;
        }
        let value = String::from_utf8_lossy(&value);
        let Some(alias) = alias_normalize(&value) else {
            log.msg("WARNING", &format!("Unmatched bracket in {value}\n"));
            continue;
        };
        idx.insert(alias, modname, 0);
    }
    out.extend_from_slice(&idx.write());
}

/// `sscanf(value, "<prefix>%u-%u")`.
fn scan_major_minor(value: &str, prefix: &str) -> Option<(u32, u32)> {
    let rest = value.strip_prefix(prefix)?;
    let (maj, rest) = scan_u(rest)?;
    let rest = rest.strip_prefix('-')?;
    let (min, _) = scan_u(rest)?;
    Some((maj, min))
}

/// `%u`: optional whitespace and sign, then decimal digits (wrapping like glibc).
fn scan_u(s: &str) -> Option<(u32, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = t.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    let v = t[..n].bytes().fold(0u64, |a, d| {
        a.saturating_mul(10).saturating_add((d - b'0') as u64)
    });
    let v = if v > u32::MAX as u64 {
        u32::MAX
    } else {
        v as u32
    };
    Some((if neg { v.wrapping_neg() } else { v }, &t[n..]))
}

fn devname(ctx: &Ctx, out: &mut Vec<u8>, log: &mut Log) {
    let mut s: Vec<u8> = Vec::new();
    for m in ctx.mods {
        let mut devname: Option<&str> = None;
        let mut dev: Option<(char, u32, u32)> = None;
        for v in m.aliases.iter() {
            if let Some(d) = v.strip_prefix("devname:") {
                devname = Some(d);
            } else if let Some((a, b)) = scan_major_minor(v, "char-major-") {
                dev = Some(('c', a, b));
            } else if let Some((a, b)) = scan_major_minor(v, "block-major-") {
                dev = Some(('b', a, b));
            }
            if dev.is_some() && devname.is_some() {
                break;
            }
        }
        let Some(dn) = devname else { continue };
        match dev {
            Some((t, a, b)) => {
                if s.is_empty() {
                    s.extend_from_slice(b"# Device nodes to trigger on-demand module loading.\n");
                }
                line(
                    &mut s,
                    &[&m.modname, format!(" {dn} {t}{a}:{b}").as_bytes()],
                );
            }
            None => log.msg_bytes(
                "ERROR",
                &[
                    &b"Module '"[..],
                    &m.modname,
                    format!(
                        "' has devname ({dn}) but lacks major and minor information. Ignoring.\n"
                    )
                    .as_bytes(),
                ]
                .concat(),
            ),
        }
    }
    out.extend_from_slice(&s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_like_sscanf() {
        assert_eq!(
            scan_major_minor("char-major-10-229", "char-major-"),
            Some((10, 229))
        );
        assert_eq!(scan_major_minor("char-major-10-", "char-major-"), None);
        assert_eq!(
            scan_major_minor("char-major-10-5x", "char-major-"),
            Some((10, 5))
        );
        assert_eq!(scan_major_minor("block-major-8-*", "block-major-"), None);
    }
}
