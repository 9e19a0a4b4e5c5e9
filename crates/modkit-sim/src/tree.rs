//! Real module trees in scenarios: `tree = "PATH/lib/modules/VERSION"` imports every
//! module of the tree (exports with namespaces, CRCs and GPL flags, imports with CRCs,
//! aliases, softdeps, licence, imported namespaces), and vmlinux's exports from a
//! Module.symvers as a builtin `vmlinux` module.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use modkit_core::{ExportSpec, ImportSpec, ModuleSpec};
use modkit_ko::fnmatch::fnmatch;
use modkit_ko::ko::Export;
use modkit_ko::names::alias_normalize;
use modkit_ko::scenario::parse_softdep;
use modkit_ko::tree::{load_tree, unresolved, vmlinux_exports, ModuleInfo};

/// A tree imported as module specs.
#[derive(Debug, Clone)]
pub struct ImportedTree {
    /// `vmlinux` (builtin) first, then every module of the tree in path order.
    pub specs: Vec<ModuleSpec>,
    /// `(module, symbol)` pairs that nothing exports, as `depmod -e` reports them.
    pub unresolved: Vec<(String, String)>,
    /// The Module.symvers used.
    pub symvers: PathBuf,
}

/// Where Module.symvers is when not given: the tree's `build` link, as installed kernels
/// and Debian's headers packages lay it out.
fn find_symvers(root: &Path) -> Option<PathBuf> {
    [
        "build/Module.symvers",
        "source/Module.symvers",
        "Module.symvers",
    ]
    .iter()
    .map(|p| root.join(p))
    .find(|p| p.is_file())
}

/// vmlinux's or a module's export as the core sees it.
fn export_spec(e: &Export) -> ExportSpec {
    ExportSpec {
        name: e.name.clone(),
        namespace: e.namespace.clone(),
        gpl_only: e.gpl,
        crc: e.crc,
    }
}

fn spec_of(m: &ModuleInfo, resolvable: &dyn Fn(&str) -> bool) -> ModuleSpec {
    let mut s = ModuleSpec::new(&m.name);
    // The kernel takes the (single) MODULE_LICENSE string; no licence is not GPL.
    s.license = m.licenses.first().cloned().unwrap_or_default();
    s.aliases = m.aliases.clone();
    // modprobe uses the first softdep entry and skips names it cannot resolve.
    if let Some((pre, post)) = m.softdeps.first().map(|v| parse_softdep(v)) {
        s.softdeps_pre = pre
            .into_iter()
            .filter(|n| resolvable(n))
            .map(str::to_string)
            .collect();
        s.softdeps_post = post
            .into_iter()
            .filter(|n| resolvable(n))
            .map(str::to_string)
            .collect();
    }
    s.exports = m.exports.iter().map(export_spec).collect();
    // Weak references do not have to resolve.
    s.imports = m
        .imports
        .iter()
        .filter(|i| !i.weak)
        .map(|i| ImportSpec {
            name: i.name.clone(),
            crc: (i.crc != 0).then_some(i.crc as u32),
        })
        .collect();
    s.import_namespaces = m.import_ns.clone();
    s
}

/// Imports the tree at `root`, with vmlinux's exports from `symvers` (or the tree's
/// `build/Module.symvers`).
pub fn import_tree(root: &Path, symvers: Option<&Path>) -> Result<ImportedTree, String> {
    let symvers = match symvers {
        Some(p) => p.to_path_buf(),
        None => find_symvers(root).ok_or_else(|| {
            format!(
                "no Module.symvers under {} (looked in build/, source/ and the tree itself): set `symvers = \"PATH/Module.symvers\"` (Debian's linux-headers package has one)",
                root.display()
            )
        })?,
    };
    let modules = load_tree(root).map_err(|e| e.to_string())?;
    if modules.is_empty() {
        return Err(format!(
            "{} holds no .ko files: `tree` names a lib/modules/VERSION directory",
            root.display()
        ));
    }
    let vmlinux = vmlinux_exports(&symvers).map_err(|e| e.to_string())?;
    let names: HashSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let aliases: Vec<String> = modules
        .iter()
        .flat_map(|m| &m.aliases)
        .filter_map(|a| alias_normalize(a))
        .collect();
    let resolvable = |n: &str| {
        alias_normalize(n).is_some_and(|n| {
            names.contains(n.as_str())
                || aliases.iter().any(|a| fnmatch(a.as_bytes(), n.as_bytes()))
        })
    };
    let mut vm = ModuleSpec::new("vmlinux");
    vm.builtin = true;
    vm.exports = vmlinux.iter().map(export_spec).collect();
    let mut specs = vec![vm];
    specs.extend(modules.iter().map(|m| spec_of(m, &resolvable)));
    Ok(ImportedTree {
        specs,
        unresolved: unresolved(&modules, &vmlinux),
        symvers,
    })
}

/// The names of the modules of a tree, in path order (for generating events).
pub fn tree_module_names(root: &Path) -> Result<Vec<String>, String> {
    Ok(load_tree(root)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|m| m.name)
        .collect())
}
