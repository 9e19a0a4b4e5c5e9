//! Importing a whole module tree (`/lib/modules/VERSION`) as plain data, for the
//! simulator: every module with its exports (namespace, CRC, GPL), imports (CRC), aliases,
//! softdeps, licences, imported namespaces and dependencies.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ko::{Export, KoModule};
use crate::names::{has_kmod_ext, modname_normalize};

/// An imported symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Symbol name.
    pub name: String,
    /// CRC from `__versions` (0 when the module has none for this symbol).
    pub crc: u64,
    /// A weak reference (loading succeeds without it).
    pub weak: bool,
}

/// One module of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Module name (file name up to the first `.`, `-` replaced by `_`).
    pub name: String,
    /// Path relative to the tree root.
    pub relpath: String,
    /// Exported symbols.
    pub exports: Vec<Export>,
    /// Imported symbols (undefined symbols, then `__versions`-only entries such as
    /// `module_layout`).
    pub imports: Vec<Import>,
    /// `alias=` values.
    pub aliases: Vec<String>,
    /// `softdep=` values, verbatim (`pre: a b post: c`).
    pub softdeps: Vec<String>,
    /// `license=` values.
    pub licenses: Vec<String>,
    /// `import_ns=` values.
    pub import_ns: Vec<String>,
    /// `depends=` (module names from modpost, comma-separated in the file).
    pub depends: Vec<String>,
}

/// A tree read with [`load_tree_lenient`]: the modules that could be read, and one warning
/// for each file or directory that could not.
#[derive(Debug, Clone, Default)]
pub struct TreeLoad {
    /// The modules read, sorted by relative path.
    pub modules: Vec<ModuleInfo>,
    /// What was skipped and why, one line each (path first), in path order.
    pub warnings: Vec<String>,
}

/// Reads a tree as depmod does: a module that cannot be read or parsed, an unreadable
/// directory and a symlink loop (a directory reached again: same device and inode) are each
/// one warning, and the rest of the tree is read. Only a root that is missing or no
/// directory is an error.
pub fn load_tree_lenient(root: &Path) -> Result<TreeLoad> {
    let md = std::fs::metadata(root).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Message(format!(
                "{}: no such directory: a tree is a lib/modules/VERSION directory",
                root.display()
            ))
        } else {
            Error::io(root, e)
        }
    })?;
    if !md.is_dir() {
        return Err(Error::Message(format!(
            "{}: not a directory: a tree is a lib/modules/VERSION directory",
            root.display()
        )));
    }
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let mut seen = std::collections::HashMap::new();
    collect_lenient(root, &mut files, &mut warnings, &mut seen);
    files.sort();
    let read: Vec<std::result::Result<ModuleInfo, String>> = files
        .par_iter()
        .map(|p| read_module(root, p).map_err(|e| format!("{e}; skipped")))
        .collect();
    let mut modules = Vec::new();
    for r in read {
        match r {
            Ok(m) => modules.push(m),
            Err(w) => warnings.push(w),
        }
    }
    warnings.sort();
    Ok(TreeLoad { modules, warnings })
}

/// [`collect`] that warns and goes on: directories are identified by (device, inode), so a
/// symlink loop is reported once, where it closes.
fn collect_lenient(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
    seen: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(md) => {
            if let Some(first) = seen.get(&(md.dev(), md.ino())) {
                warnings.push(format!(
                    "{}: the same directory as {} (a symlink loop or a second link): not read again",
                    dir.display(),
                    first.display()
                ));
                return;
            }
            seen.insert((md.dev(), md.ino()), dir.to_path_buf());
        }
        Err(e) => {
            warnings.push(format!("{}: {e}; skipped", dir.display()));
            return;
        }
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            warnings.push(format!("{}: {e}; skipped", dir.display()));
            return;
        }
    };
    let mut entries: Vec<_> = rd.filter_map(|d| d.ok()).collect();
    entries.sort_by_key(|d| d.file_name());
    for de in entries {
        let name = de.file_name().to_string_lossy().into_owned();
        if name == "build" || name == "source" {
            continue;
        }
        let p = de.path();
        match std::fs::metadata(&p) {
            Ok(md) if md.is_dir() => collect_lenient(&p, out, warnings, seen),
            Ok(md) if md.is_file() && (has_kmod_ext(&name) || name.ends_with(".ko.gz")) => {
                out.push(p)
            }
            Ok(_) => {}
            Err(e) => warnings.push(format!("{}: {e}; skipped", p.display())),
        }
    }
}

/// Reads every `.ko`, `.ko.xz`, `.ko.zst` and `.ko.gz` under `root` (a
/// `lib/modules/VERSION` directory), on all cores, sorted by relative path.
/// Any unreadable or malformed module is an error naming the file (see
/// [`load_tree_lenient`] for depmod's way: warn and go on).
pub fn load_tree(root: &Path) -> Result<Vec<ModuleInfo>> {
    let mut files = Vec::new();
    collect(root, &mut files, &mut Vec::new())?;
    files.sort();
    files.par_iter().map(|p| read_module(root, p)).collect()
}

/// One module of the tree at `p`.
fn read_module(root: &Path, p: &Path) -> Result<ModuleInfo> {
    let ko = KoModule::from_path(p)?;
    let rel = p
        .strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned();
    let base = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let vals = |k: &str| ko.modinfo_values(k).map(str::to_string).collect::<Vec<_>>();
    let imports = ko
        .dependency_symbols
        .clone()
        .map_err(|source| Error::Parse {
            path: p.to_path_buf(),
            source,
        })?
        .into_iter()
        .map(|d| Import {
            name: d.name,
            crc: d.crc,
            weak: d.weak,
        })
        .collect();
    Ok(ModuleInfo {
        name: modname_normalize(&base),
        relpath: rel,
        exports: ko.exports.clone(),
        imports,
        aliases: vals("alias"),
        softdeps: vals("softdep"),
        licenses: vals("license"),
        import_ns: vals("import_ns"),
        depends: ko
            .modinfo_values("depends")
            .flat_map(|d| d.split(','))
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// `up`: (device, inode) of the directories being walked, to stop at a symlink loop.
fn collect(dir: &Path, out: &mut Vec<PathBuf>, up: &mut Vec<(u64, u64)>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if up.contains(&(md.dev(), md.ino())) {
        return Err(Error::Message(format!(
            "{}: a directory loop (the same device and inode as a directory above it): remove the symlink or read the tree with the lenient reader",
            dir.display()
        )));
    }
    up.push((md.dev(), md.ino()));
    let r = collect_in(dir, out, up);
    up.pop();
    r
}

fn collect_in(dir: &Path, out: &mut Vec<PathBuf>, up: &mut Vec<(u64, u64)>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for de in rd {
        let de = de.map_err(|e| Error::io(dir, e))?;
        let name = de.file_name().to_string_lossy().into_owned();
        if name == "build" || name == "source" {
            continue;
        }
        let p = de.path();
        let md = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
        if md.is_dir() {
            collect(&p, out, up)?;
        } else if md.is_file() && (has_kmod_ext(&name) || name.ends_with(".ko.gz")) {
            out.push(p);
        }
    }
    Ok(())
}

/// vmlinux exports from a `Module.symvers`: (symbol, crc, namespace, gpl) for lines whose
/// module column is `vmlinux`.
pub fn vmlinux_exports(symvers: &Path) -> Result<Vec<Export>> {
    let text = std::fs::read_to_string(symvers).map_err(|e| Error::io(symvers, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            return Err(Error::Message(format!(
                "{}:{}: expected 'crc<TAB>symbol<TAB>module<TAB>export-type[<TAB>namespace]'",
                symvers.display(),
                n + 1
            )));
        }
        if f[2] != "vmlinux" {
            continue;
        }
        let crc = u32::from_str_radix(f[0].trim_start_matches("0x"), 16).map_err(|e| {
            Error::Message(format!(
                "{}:{}: bad CRC {}: {e}",
                symvers.display(),
                n + 1,
                f[0]
            ))
        })?;
        out.push(Export {
            name: f[1].to_string(),
            namespace: f.get(4).filter(|s| !s.is_empty()).map(|s| s.to_string()),
            crc: Some(crc),
            gpl: f[3].ends_with("_GPL"),
        });
    }
    Ok(out)
}

/// Imports of `modules` that neither another module nor `vmlinux` exports (weak ones
/// excluded), as (module relpath, symbol) in module then import order — the same set
/// `depmod -e` warns about.
pub fn unresolved(modules: &[ModuleInfo], vmlinux: &[Export]) -> Vec<(String, String)> {
    let mut known: std::collections::HashSet<&str> =
        vmlinux.iter().map(|e| e.name.as_str()).collect();
    for m in modules {
        known.extend(m.exports.iter().map(|e| e.name.as_str()));
    }
    for fake in ["__this_module", "_GLOBAL_OFFSET_TABLE_", "TOC."] {
        known.insert(fake);
    }
    let mut out = Vec::new();
    for m in modules {
        for i in &m.imports {
            if !i.weak && !known.contains(i.name.as_str()) {
                out.push((m.relpath.clone(), i.name.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeModule;

    #[test]
    fn loads_a_tree_and_finds_unresolved() {
        let base = crate::depmod::tests::temp_tree("tree");
        let mut a = FakeModule::new("a-mod", &["a_sym"], &["missing", "b_sym"]);
        a.modinfo = vec![
            "license=GPL".into(),
            "depends=b".into(),
            "import_ns=NS".into(),
        ];
        crate::depmod::tests::put(&base, "kernel/a-mod.ko", &a);
        crate::depmod::tests::put(&base, "kernel/b.ko", &FakeModule::new("b", &["b_sym"], &[]));
        let root = base.join("lib/modules/4.4.4");
        let mods = load_tree(&root).unwrap();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].name, "a_mod");
        assert_eq!(mods[0].licenses, vec!["GPL"]);
        assert_eq!(mods[0].depends, vec!["b"]);
        assert_eq!(mods[0].import_ns, vec!["NS"]);
        let un = unresolved(&mods, &[]);
        assert_eq!(
            un,
            vec![
                ("kernel/a-mod.ko".to_string(), "missing".to_string()),
                ("kernel/a-mod.ko".to_string(), "module_layout".to_string()),
                ("kernel/b.ko".to_string(), "module_layout".to_string()),
            ]
        );
        std::fs::write(root.join("kernel/bad.ko"), b"nope").unwrap();
        let e = load_tree(&root).unwrap_err().to_string();
        assert!(e.contains("bad.ko"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_symlink_loop_is_one_clear_error() {
        let base = crate::depmod::tests::temp_tree("tree-loop");
        crate::depmod::tests::put(&base, "kernel/b.ko", &FakeModule::new("b", &[], &[]));
        let root = base.join("lib/modules/4.4.4");
        std::os::unix::fs::symlink("..", root.join("kernel/up")).unwrap();
        let e = load_tree(&root).unwrap_err().to_string();
        assert!(e.contains("kernel/up: a directory loop"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn lenient_reading_warns_for_a_corrupt_module_and_a_symlink_loop() {
        let base = crate::depmod::tests::temp_tree("tree-lenient");
        crate::depmod::tests::put(&base, "kernel/b.ko", &FakeModule::new("b", &["b_sym"], &[]));
        let root = base.join("lib/modules/4.4.4");
        std::fs::write(root.join("kernel/bad.ko"), b"nope").unwrap();
        std::os::unix::fs::symlink("..", root.join("kernel/up")).unwrap();
        let t = load_tree_lenient(&root).unwrap();
        assert_eq!(t.modules.len(), 1, "{:?}", t.warnings);
        assert_eq!(t.modules[0].name, "b");
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("bad.ko") && t.warnings[0].ends_with("skipped"));
        assert!(t.warnings[1].contains("kernel/up: the same directory as"));
        let e = load_tree_lenient(&base.join("nowhere"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
