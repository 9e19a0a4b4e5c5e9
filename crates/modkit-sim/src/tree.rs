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
use modkit_ko::tree::{load_tree_lenient, unresolved, vmlinux_exports, ModuleInfo};

/// A tree imported as module specs.
#[derive(Debug, Clone)]
pub struct ImportedTree {
    /// `vmlinux` (builtin) first, then every module of the tree in path order.
    pub specs: Vec<ModuleSpec>,
    /// `(module, symbol)` pairs that nothing exports, as `depmod -e` reports them.
    pub unresolved: Vec<(String, String)>,
    /// The Module.symvers used.
    pub symvers: PathBuf,
    /// Files and directories of the tree that could not be read (a corrupt `.ko`, a
    /// symlink loop), one line each, as depmod warns and goes on.
    pub warnings: Vec<String>,
}

/// Where Module.symvers is when not given: the tree's `build` link, as installed kernels
/// and Debian's headers packages lay it out.
pub fn find_symvers(root: &Path) -> Option<PathBuf> {
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
    let loaded = load_tree_lenient(root).map_err(|e| e.to_string())?;
    let (modules, warnings) = (loaded.modules, loaded.warnings);
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
        warnings,
    })
}

/// The names of the modules of a tree, in path order (for generating events).
pub fn tree_module_names(root: &Path) -> Result<Vec<String>, String> {
    Ok(load_tree_lenient(root)
        .map_err(|e| e.to_string())?
        .modules
        .into_iter()
        .map(|m| m.name)
        .collect())
}

/// Completes a scenario's `[[module]]` entry for a module the tree already has: the file's
/// contents (licence, aliases, softdeps, exports, imports in the `.ko`'s symbol-table
/// order, imported namespaces) come from the tree; the entry adds what happens when it
/// runs (`init`, `has_exit`, a stale `depends`, and any other key about the run). An entry
/// that restates the file's contents is refused, naming the keys.
pub(crate) fn overlay_tree_module(
    tree: &ModuleSpec,
    spec: &mut ModuleSpec,
    rm: &crate::raw::RawModule,
) -> Result<(), String> {
    let mut given = Vec::new();
    if rm.license.is_some() {
        given.push("license");
    }
    if !rm.aliases.is_empty() {
        given.push("aliases");
    }
    if rm.softdeps.is_some() {
        given.push("softdeps");
    }
    if !rm.exports.is_empty() {
        given.push("exports");
    }
    if !rm.imports.is_empty() {
        given.push("imports");
    }
    if !rm.import_namespaces.is_empty() {
        given.push("import_namespaces");
    }
    if rm.builtin.is_some() {
        given.push("builtin");
    }
    if !given.is_empty() {
        return Err(format!(
            "`{}` is a module of the tree: its {} come from its .ko; give only what happens when it runs (init, has_exit, depends, …)",
            tree.name,
            given.join(", ")
        ));
    }
    spec.license = tree.license.clone();
    spec.aliases = tree.aliases.clone();
    spec.softdeps_pre = tree.softdeps_pre.clone();
    spec.softdeps_post = tree.softdeps_post.clone();
    spec.exports = tree.exports.clone();
    spec.imports = tree.imports.clone();
    spec.import_namespaces = tree.import_namespaces.clone();
    spec.builtin = tree.builtin;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawModule;

    fn raw(text: &str) -> RawModule {
        toml::from_str(text).expect("raw module")
    }

    fn tree_module() -> ModuleSpec {
        let mut t = ModuleSpec::new("cyc_b");
        t.license = "GPL v2".into();
        // The .ko's symbol-table order (not alphabetical): cyc_a_sym2 before cyc_a_sym1.
        t.imports = ["cyc_a_sym2", "cyc_a_sym1"]
            .iter()
            .map(|n| ImportSpec {
                name: n.to_string(),
                crc: None,
            })
            .collect();
        t.exports = vec![ExportSpec {
            name: "cyc_b_sym".into(),
            namespace: None,
            gpl_only: false,
            crc: None,
        }];
        t
    }

    #[test]
    fn an_entry_adds_what_happens_when_a_tree_module_runs() {
        let t = tree_module();
        let mut spec = ModuleSpec::new("cyc_b");
        spec.has_exit = false;
        let rm = raw("name = \"cyc-b\"\nhas_exit = false\n");
        overlay_tree_module(&t, &mut spec, &rm).unwrap();
        assert!(!spec.has_exit);
        assert_eq!(spec.license, "GPL v2");
        let names: Vec<&str> = spec.imports.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["cyc_a_sym2", "cyc_a_sym1"], "ELF order kept");
        assert_eq!(spec.exports, t.exports);
    }

    #[test]
    fn an_entry_that_restates_the_file_is_refused() {
        let t = tree_module();
        let mut spec = ModuleSpec::new("cyc_b");
        let rm = raw("name = \"cyc_b\"\nimports = [\"x\"]\nlicense = \"GPL\"\n");
        let e = overlay_tree_module(&t, &mut spec, &rm).unwrap_err();
        assert!(e.contains("license, imports come from its .ko"), "{e}");
    }
}
