//! A byte-exact reimplementation of kmod 30's `depmod`.
//!
//! The pipeline follows `tools/depmod.c`: discover modules (with depmod.d priorities),
//! order them (hash order, then `modules.order`), read every module in parallel, build the
//! symbol table (vmlinux first, then modules; last writer wins), compute dependencies,
//! sort them topologically (reporting cycles like depmod) and write the ten output files.

mod cache;
pub mod config;
mod cycles;
mod discover;
mod extract;
mod output;
mod symbols;

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kmodhash::sort_in_hash_order;

pub use config::DepmodConfig;

/// Options of a depmod run (the command-line flags of kmod's depmod).
#[derive(Debug, Clone, Default)]
pub struct DepmodOptions {
    /// `-b BASEDIR`: root of the module tree (made absolute).
    pub basedir: Option<PathBuf>,
    /// The kernel version (`VERSION` argument, else `uname -r`), a [`crate::bytestr`]
    /// string (bytes that are not UTF-8 kept as escapes).
    pub kversion: String,
    /// `-e`: report unresolved symbols.
    pub print_unknown: bool,
    /// `-E Module.symvers`.
    pub symvers: Option<PathBuf>,
    /// `-F System.map`.
    pub system_map: Option<PathBuf>,
    /// `-C`: configuration files or directories instead of the defaults.
    pub config_paths: Option<Vec<PathBuf>>,
    /// `-n`: write the text files to stdout instead of the module directory.
    pub dry_run: bool,
    /// `-w`: warn about duplicate index entries.
    pub warn_dups: bool,
    /// `-P`: symbol prefix character (0 for none).
    pub sym_prefix: u8,
    /// `-A`: do nothing when no module is newer than `modules.dep`.
    pub quick: bool,
    /// Explicit module files (absolute paths); empty means "all modules" (`-a`).
    pub module_files: Vec<PathBuf>,
    /// `--no-cache`: neither read nor write `modules.modkit-cache` (see [`CACHE_FILE`]).
    pub no_cache: bool,
    /// `-o`/`--outdir DIR` (kmod 31+): write the outputs under `DIR/lib/modules/VERSION`
    /// instead of the module directory (created if missing); modules are still read from
    /// the base directory.
    pub outdir: Option<PathBuf>,
}

pub use cache::CACHE_FILE;

/// One module of the depmod array.
#[derive(Debug)]
pub(crate) struct Mod {
    /// Absolute path as found (bytes: file names need not be UTF-8).
    pub path: Vec<u8>,
    /// Path relative to the module directory, if inside it.
    pub relpath: Option<Vec<u8>>,
    /// `relpath` cut after `<modname>.ko` (to match `modules.order`).
    pub uncrelpath: Option<Vec<u8>>,
    /// Normalised module name.
    pub modname: Vec<u8>,
    /// `alias=` values.
    pub aliases: Vec<String>,
    /// `softdep=` values.
    pub softdeps: Vec<String>,
    /// `weakdep=` values.
    pub weakdeps: Vec<String>,
    /// Direct dependencies (array indices) in first-use order, later sorted.
    pub deps: Vec<usize>,
    /// How many modules depend on this one.
    pub users: u32,
    /// Topological index.
    pub dep_sort_idx: u32,
}

impl Mod {
    /// The path written to the outputs (relative when inside the module directory).
    pub fn out_path(&self) -> &[u8] {
        self.relpath.as_deref().unwrap_or(&self.path)
    }
}

/// Where diagnostics go, with kmod's `depmod: LEVEL: ` prefix.
pub(crate) struct Log<'a> {
    pub err: &'a mut dyn Write,
}

impl Log<'_> {
    /// `text` may hold [`crate::bytestr`] escapes (paths under a base directory that is
    /// not UTF-8): written as the bytes they stand for.
    pub fn msg(&mut self, level: &str, text: &str) {
        let _ = write!(self.err, "depmod: {level}: ");
        let _ = self.err.write_all(&crate::bytestr::to_bytes(text));
    }

    /// [`Log::msg`] with a text of bytes (paths and module names are not always UTF-8).
    pub fn msg_bytes(&mut self, level: &str, text: &[u8]) {
        let _ = write!(self.err, "depmod: {level}: ");
        let _ = self.err.write_all(text);
    }
}

/// `strerror`-style text of an I/O error (without Rust's " (os error N)" suffix).
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The module directory `<basedir>/lib/modules/<version>`, as a [`crate::bytestr`]
/// string: a base directory that is not UTF-8 keeps its bytes (`kversion` is one too).
pub fn module_dir(basedir: Option<&Path>, kversion: &str) -> String {
    let root = basedir
        .map(|b| crate::bytestr::from_os(b.as_os_str()))
        .unwrap_or_default();
    format!("{root}/lib/modules/{kversion}")
}

/// Runs depmod; diagnostics go to `err`, `-n` output to `out`. Returns the exit status.
pub fn run(opts: &DepmodOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let mut log = Log { err };
    let t0 = std::time::Instant::now();
    let basedir = match &opts.basedir {
        Some(b) if b.is_relative() => Some(
            std::env::current_dir()
                .map_err(|e| Error::io(".", e))?
                .join(b),
        ),
        other => other.clone(),
    };
    let dirname = module_dir(basedir.as_deref(), &opts.kversion);
    let outdirname = match &opts.outdir {
        Some(o) if o.is_relative() => module_dir(
            Some(
                &std::env::current_dir()
                    .map_err(|e| Error::io(".", e))?
                    .join(o),
            ),
            &opts.kversion,
        ),
        Some(o) => module_dir(Some(o), &opts.kversion),
        None => dirname.clone(),
    };
    let print_unknown = opts.print_unknown && (opts.symvers.is_some() || opts.system_map.is_some());

    if opts.quick && !opts.dry_run && discover::up_to_date(&dirname, &mut log) {
        return Ok(0);
    }

    // The vmlinux symbol source; the table borrows names from this text.
    let mut vmlinux_text = String::new();
    let vmlinux_src = opts.symvers.as_ref().or(opts.system_map.as_ref());
    if let Some(p) = vmlinux_src {
        match std::fs::read(p) {
            Ok(d) => vmlinux_text = String::from_utf8_lossy(&d).into_owned(),
            Err(e) => {
                log.msg(
                    "FATAL",
                    &format!("could not load {}: {}\n", p.display(), strerror(&e)),
                );
                return Ok(1);
            }
        }
    } else if opts.print_unknown {
        log.msg("WARNING", "-e needs -E or -F\n");
    }

    // Discovery.
    let found: Vec<discover::Found> = if opts.module_files.is_empty() {
        let cfg_paths: Vec<PathBuf> = match &opts.config_paths {
            Some(p) => p.clone(),
            None => config::DEFAULT_CONFIG_PATHS
                .iter()
                .map(PathBuf::from)
                .collect(),
        };
        let cfg = DepmodConfig::load(&cfg_paths, &opts.kversion, &mut |m| {
            let (level, text) = m.split_once(": ").unwrap_or(("ERROR", &m));
            log.msg(level, text)
        });
        match discover::search(&dirname, &cfg, &mut log) {
            Ok(f) => f,
            Err(e) => {
                log.msg(
                    "FATAL",
                    &format!("could not search modules: {}\n", strerror(&e)),
                );
                return Ok(1);
            }
        }
    } else {
        let mut v = Vec::new();
        for p in &opts.module_files {
            use std::os::unix::ffi::OsStrExt;
            let s = p.as_os_str().as_bytes().to_vec();
            if !s.starts_with(b"/") {
                log.msg_bytes("FATAL", &[&s[..], b": not absolute path.\n"].concat());
                return Ok(1);
            }
            // kmod_module_new_from_path: the file must exist.
            if let Err(e) = std::fs::metadata(p) {
                log.msg_bytes(
                    "FATAL",
                    &[
                        &b"could not create module "[..],
                        &s,
                        format!(": {}\n", strerror(&e)).as_bytes(),
                    ]
                    .concat(),
                );
                return Ok(1);
            }
            let Some(modname) = crate::names::path_to_modname_bytes(&s) else {
                log.msg_bytes(
                    "FATAL",
                    &[&b"could not add module "[..], &s, b"\n"].concat(),
                );
                return Ok(1);
            };
            v.push(discover::Found { path: s, modname });
        }
        v
    };

    // Array in hash order, then modules.order.
    let mut found = found;
    sort_in_hash_order(&mut found, 512, |f| &f.modname);
    let mut mods: Vec<Mod> = found
        .into_iter()
        .map(|f| {
            let (relpath, uncrelpath) = discover::relpaths(&f.path, &dirname, &f.modname);
            Mod {
                path: f.path,
                relpath,
                uncrelpath,
                modname: f.modname,
                aliases: Vec::new(),
                softdeps: Vec::new(),
                weakdeps: Vec::new(),
                deps: Vec::new(),
                users: 0,
                dep_sort_idx: u32::MAX,
            }
        })
        .collect();
    discover::sort_by_modules_order(&mut mods, &dirname, &mut log);
    tracing::debug!(
        "discovered and ordered {} modules in {:?}",
        mods.len(),
        t0.elapsed()
    );

    // Read every module, on all cores, through the cache of a previous run when there is
    // one (a whole-tree run that writes its outputs also writes the cache).
    // The new cache is written after the outputs, so that it describes a finished run (and
    // `--outdir`'s directory exists).
    let mut new_cache = None;
    let data: Vec<extract::ModData> = if opts.no_cache {
        mods.par_iter()
            .map(|m| extract::read_module(&m.path))
            .collect()
    } else {
        let cache = cache::Cache::open(&crate::bytestr::path(&outdirname));
        let read: Vec<_> = mods
            .par_iter()
            .map(|m| {
                cache.read(&m.path, extract::read_module_bytes, || {
                    extract::read_module(&m.path)
                })
            })
            .collect();
        let count = |h| read.iter().filter(|r| r.2 == h).count();
        tracing::debug!(
            "cache: {} by stat, {} by hash, {} extracted",
            count(cache::Hit::Stat),
            count(cache::Hit::Hash),
            count(cache::Hit::Miss)
        );
        let hits: Vec<cache::Hit> = read.iter().map(|r| r.2).collect();
        let store =
            !opts.dry_run && opts.module_files.is_empty() && !cache.unchanged(&hits, mods.len());
        let mut entries = Vec::new();
        let mut data = Vec::with_capacity(read.len());
        for (m, (d, entry, _)) in mods.iter().zip(read) {
            if let (true, Some(e)) = (store, entry) {
                entries.push((m.path.clone(), e, d.clone()));
            }
            data.push(d);
        }
        if store {
            new_cache = Some((cache, entries));
        }
        data
    };
    tracing::debug!("read all modules at {:?}", t0.elapsed());

    let mut syms = symbols::SymbolTable::new(opts.sym_prefix);
    if let Some(p) = &opts.symvers {
        syms.load_symvers(p, &vmlinux_text, &mut log);
    } else if let Some(p) = &opts.system_map {
        syms.load_system_map(p, &vmlinux_text, &mut log);
    }
    // Symbols: modules in array order, the last exporter wins.
    for (i, (m, d)) in mods.iter_mut().zip(&data).enumerate() {
        m.aliases = d.aliases.clone();
        m.softdeps = d.softdeps.clone();
        m.weakdeps = d.weakdeps.clone();
        if let Some(e) = &d.load_error {
            // kmod: the module stays in the outputs, without symbols or information.
            log.msg_bytes(
                "ERROR",
                &[
                    &b"failed to load symbols from "[..],
                    &m.path,
                    format!(": {e}\n").as_bytes(),
                ]
                .concat(),
            );
            if let Some(d) = &d.load_detail {
                let _ = log
                    .err
                    .write_all(crate::error::detail_line("depmod", d).as_bytes());
            }
            continue;
        }
        match &d.exports {
            Some(Ok(list)) => {
                for &(span, crc) in list {
                    syms.add(d.str(span), false, crc, Some(i));
                }
            }
            Some(Err(extract::ExportsError::MissingSection)) | None => {}
            Some(Err(extract::ExportsError::Other(e))) => {
                log.msg_bytes(
                    "ERROR",
                    &[
                        &b"failed to load symbols from "[..],
                        &m.path,
                        format!(": {e}\n").as_bytes(),
                    ]
                    .concat(),
                );
            }
        }
    }

    // Dependencies.
    let check_symvers = opts.symvers.is_some();
    let mut warn: Vec<u8> = Vec::new();
    for (i, d) in data.iter().enumerate() {
        let mut deps = std::mem::take(&mut mods[i].deps);
        for &(span, crc, weak) in &d.deps {
            let name = d.str(span);
            let Some(sym) = syms.find(name) else {
                if print_unknown && !weak {
                    warn.extend_from_slice(b"depmod: WARNING: ");
                    warn.extend_from_slice(&mods[i].path);
                    let _ = writeln!(warn, " needs unknown symbol {name}");
                }
                continue;
            };
            if check_symvers && sym.crc != crc && !weak && print_unknown {
                warn.extend_from_slice(b"depmod: WARNING: ");
                warn.extend_from_slice(&mods[i].path);
                let _ = writeln!(warn, " disagrees about version of symbol {name}");
            }
            if let Some(owner) = sym.owner {
                if !deps.contains(&owner) {
                    deps.push(owner);
                    mods[owner].users += 1;
                }
            }
        }
        mods[i].deps = deps;
    }
    let _ = log.err.write_all(&warn);

    tracing::debug!("dependencies computed at {:?}", t0.elapsed());
    if !cycles::topo_sort(&mut mods, &mut log) {
        return Ok(1);
    }
    for i in 0..mods.len() {
        let mut deps = std::mem::take(&mut mods[i].deps);
        deps.sort_by_key(|&d| mods[d].dep_sort_idx);
        mods[i].deps = deps;
    }

    let ctx = output::Ctx::new(&mods, &syms, &dirname, &outdirname, opts.warn_dups);
    if opts.dry_run {
        let mut text = Vec::new();
        for f in output::FILES {
            if !f.binary {
                (f.write)(&ctx, &mut text, &mut log);
            }
        }
        out.write_all(&text).map_err(|e| Error::io("<stdout>", e))?;
        return Ok(0);
    }
    let ok = output::write_all(&ctx, &mut log);
    tracing::debug!("outputs written at {:?}", t0.elapsed());
    if let (true, Some((cache, entries))) = (ok, new_cache) {
        cache.store(entries);
    }
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod vs_kmod_tests;
