//! Module specifications: what a module file declares (modinfo, exports, imports, init table).

use std::collections::{BTreeSet, HashMap};

/// Normalises a module name as modprobe does: `-` becomes `_`.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// An exported symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    /// Symbol name.
    pub name: String,
    /// Namespace (`EXPORT_SYMBOL_NS`), if any.
    pub namespace: Option<String>,
    /// `EXPORT_SYMBOL_GPL`: hidden from modules whose licence is not GPL-compatible.
    pub gpl_only: bool,
    /// modversions CRC, if the exporter was built with CONFIG_MODVERSIONS.
    pub crc: Option<u32>,
}

/// An imported (undefined) symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    /// Symbol name.
    pub name: String,
    /// The CRC recorded in the importer's `__versions`, if any.
    pub crc: Option<u32>,
}

/// One step of a module's init table (`i915_init`'s table in seed 003).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitStepSpec {
    /// The step's name, for logs and diagnostics.
    pub name: String,
    /// True when the step has an undo (its exit counterpart).
    pub has_undo: bool,
}

/// Everything the loader knows about one module file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// Normalised module name.
    pub name: String,
    /// `MODULE_LICENSE`.
    pub license: String,
    /// modalias patterns (fnmatch globs).
    pub aliases: Vec<String>,
    /// Soft dependencies loaded before.
    pub softdeps_pre: Vec<String>,
    /// Soft dependencies loaded after.
    pub softdeps_post: Vec<String>,
    /// Exported symbols.
    pub exports: Vec<ExportSpec>,
    /// Imported symbols, in symbol-table order.
    pub imports: Vec<ImportSpec>,
    /// `MODULE_IMPORT_NS` entries.
    pub import_namespaces: Vec<String>,
    /// The module has an exit function (can be unloaded without force).
    pub has_exit: bool,
    /// Part of the base image: always live, never unloaded, no refcount.
    pub builtin: bool,
    /// The init table; empty means an init that succeeds at once.
    pub init: Vec<InitStepSpec>,
    /// What modules.dep says, when it is out of date; `None` means computed from imports.
    pub depends_override: Option<Vec<String>>,
    /// Out of tree, signed, staging, `__versions` (what taints the kernel at load).
    pub provenance: crate::taint::Provenance,
}

impl ModuleSpec {
    /// A GPL module with no symbols and an empty init, named `name`.
    pub fn new(name: &str) -> Self {
        ModuleSpec {
            name: normalize_name(name),
            license: "GPL".into(),
            aliases: Vec::new(),
            softdeps_pre: Vec::new(),
            softdeps_post: Vec::new(),
            exports: Vec::new(),
            imports: Vec::new(),
            import_namespaces: Vec::new(),
            has_exit: true,
            builtin: false,
            init: Vec::new(),
            depends_override: None,
            provenance: crate::taint::Provenance::default(),
        }
    }

    /// Licences the kernel treats as GPL-compatible (`license_is_gpl_compatible()`).
    pub fn is_gpl_compatible(&self) -> bool {
        matches!(
            self.license.as_str(),
            "GPL"
                | "GPL v2"
                | "GPL and additional rights"
                | "Dual BSD/GPL"
                | "Dual MIT/GPL"
                | "Dual MPL/GPL"
        )
    }
}

/// A problem with a set of module specs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Two modules with one (normalised) name.
    #[error(
        "module `{0}` is defined twice; module names must be unique after '-' → '_' normalisation"
    )]
    DuplicateModule(String),
    /// An empty module name.
    #[error("a module has an empty name")]
    EmptyName,
    /// A module exports the same symbol twice.
    #[error("module `{module}` exports `{symbol}` twice; remove one of the entries")]
    DuplicateExport {
        /// Module.
        module: String,
        /// Symbol.
        symbol: String,
    },
    /// Two builtin modules export one symbol (vmlinux cannot).
    #[error("builtin modules `{first}` and `{second}` both export `{symbol}`; the base image exports each symbol once")]
    DuplicateBuiltinExport {
        /// Symbol.
        symbol: String,
        /// First exporter.
        first: String,
        /// Second exporter.
        second: String,
    },
    /// A softdep or depends entry names no module.
    #[error(
        "module `{module}` {what} `{target}`, which no module provides (known modules: {known})"
    )]
    UnknownReference {
        /// Module.
        module: String,
        /// "softdep names" / "depends on".
        what: &'static str,
        /// The missing name.
        target: String,
        /// Nearby names.
        known: String,
    },
    /// A bad alias pattern.
    #[error("module `{module}`: alias `{alias}` is not a valid glob pattern: {reason}")]
    BadAlias {
        /// Module.
        module: String,
        /// Pattern.
        alias: String,
        /// Why.
        reason: String,
    },
}

/// Index of module specs by name, with computed dependencies (as depmod computes them).
#[derive(Debug, Clone, Default)]
pub struct ModuleDb {
    specs: Vec<ModuleSpec>,
    by_name: HashMap<String, usize>,
    /// `deps[i]`: direct dependencies of module i (ids), from imports or the override.
    deps: Vec<Vec<usize>>,
    aliases: Vec<(glob::Pattern, usize)>,
    /// Exporter of each symbol among loadable (non-builtin) modules, first definition wins,
    /// as depmod picks (used only for modules.dep).
    exporter: HashMap<String, usize>,
    /// `closed[i]`: see [`ModuleDb::closed`].
    closed: Vec<bool>,
}

/// Alias strings are normalised as kmod's `alias_normalize()` does: '-' → '_' outside
/// bracket expressions.
pub fn normalize_alias(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_bracket = false;
    for c in s.chars() {
        match c {
            '[' => {
                in_bracket = true;
                out.push(c)
            }
            ']' => {
                in_bracket = false;
                out.push(c)
            }
            '-' if !in_bracket => out.push('_'),
            _ => out.push(c),
        }
    }
    out
}

impl ModuleDb {
    /// Builds the index, validating names, exports, references and aliases.
    pub fn new(specs: Vec<ModuleSpec>) -> Result<Self, SpecError> {
        let mut by_name = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            if s.name.is_empty() {
                return Err(SpecError::EmptyName);
            }
            if by_name.insert(s.name.clone(), i).is_some() {
                return Err(SpecError::DuplicateModule(s.name.clone()));
            }
            let mut seen = BTreeSet::new();
            for e in &s.exports {
                if !seen.insert(e.name.as_str()) {
                    return Err(SpecError::DuplicateExport {
                        module: s.name.clone(),
                        symbol: e.name.clone(),
                    });
                }
            }
        }
        let mut exporter: HashMap<String, usize> = HashMap::new();
        let mut builtin_exporter: HashMap<&str, usize> = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            for e in &s.exports {
                if s.builtin {
                    if let Some(&j) = builtin_exporter.get(e.name.as_str()) {
                        return Err(SpecError::DuplicateBuiltinExport {
                            symbol: e.name.clone(),
                            first: specs[j].name.clone(),
                            second: s.name.clone(),
                        });
                    }
                    builtin_exporter.insert(&e.name, i);
                } else {
                    exporter.entry(e.name.clone()).or_insert(i);
                }
            }
        }
        let known = |name: &str| -> String {
            let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            names.sort_by_key(|n| strsim_distance(n, name));
            names.truncate(5);
            names.join(", ")
        };
        let mut aliases = Vec::new();
        let mut deps = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            for a in &s.aliases {
                let pat =
                    glob::Pattern::new(&normalize_alias(a)).map_err(|e| SpecError::BadAlias {
                        module: s.name.clone(),
                        alias: a.clone(),
                        reason: e.to_string(),
                    })?;
                aliases.push((pat, i));
            }
            for sd in s.softdeps_pre.iter().chain(&s.softdeps_post) {
                let n = normalize_name(sd);
                if !by_name.contains_key(&n) && !aliases_mention(&specs, sd) {
                    return Err(SpecError::UnknownReference {
                        module: s.name.clone(),
                        what: "softdep names",
                        target: sd.clone(),
                        known: known(sd),
                    });
                }
            }
            let mut d: Vec<usize> = Vec::new();
            if let Some(over) = &s.depends_override {
                for dep in over {
                    let n = normalize_name(dep);
                    match by_name.get(&n) {
                        Some(&j) => d.push(j),
                        None => {
                            return Err(SpecError::UnknownReference {
                                module: s.name.clone(),
                                what: "depends on",
                                target: dep.clone(),
                                known: known(dep),
                            })
                        }
                    }
                }
            } else if !s.builtin {
                for imp in &s.imports {
                    if builtin_exporter.contains_key(imp.name.as_str()) {
                        continue;
                    }
                    if let Some(&j) = exporter.get(&imp.name) {
                        if j != i && !d.contains(&j) {
                            d.push(j);
                        }
                    }
                }
            }
            deps.push(d);
        }
        let closed = closed_closures(&specs, &deps);
        Ok(ModuleDb {
            specs,
            by_name,
            deps,
            aliases,
            exporter,
            closed,
        })
    }

    /// True when module `id`'s dependency closure is exactly what its loads link: no
    /// `depends` override, no softdeps and only symbols with a single exporter, in it and in
    /// every module it depends on. A LIVE module with a closed closure holds every module of
    /// that closure LIVE (each is a target it references, and a module with holders cannot
    /// be unloaded), so modprobe can skip the whole closure at once.
    pub fn closed(&self, id: usize) -> bool {
        self.closed[id]
    }

    /// All specs, indexed by module id.
    pub fn specs(&self) -> &[ModuleSpec] {
        &self.specs
    }

    /// The spec of module `id`.
    pub fn spec(&self, id: usize) -> &ModuleSpec {
        &self.specs[id]
    }

    /// Changes what module `id`'s file says about its origin (a plugin host re-checking the
    /// signature of a rebuilt file); the other fields, which the indexes depend on, stay.
    pub fn set_provenance(&mut self, id: usize, p: crate::taint::Provenance) {
        self.specs[id].provenance = p;
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when there are no modules.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The id of the module with this name (normalised).
    pub fn id(&self, name: &str) -> Option<usize> {
        self.by_name.get(&normalize_name(name)).copied()
    }

    /// Direct dependencies of a module, as modules.dep lists them.
    pub fn deps(&self, id: usize) -> &[usize] {
        &self.deps[id]
    }

    /// The loadable module depmod would name as the exporter of `symbol`.
    pub fn exporter(&self, symbol: &str) -> Option<usize> {
        self.exporter.get(symbol).copied()
    }

    /// What modprobe finds for a name or alias: the module of that name, else every module
    /// with a matching alias (in file order, without repeats).
    pub fn lookup(&self, name_or_alias: &str) -> Vec<usize> {
        if let Some(id) = self.id(name_or_alias) {
            return vec![id];
        }
        let wanted = normalize_alias(name_or_alias);
        let mut out = Vec::new();
        for (pat, id) in &self.aliases {
            if pat.matches(&wanted) && !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// Dependencies of `id` in the order modprobe inserts them (deepest first, each once),
    /// not including `id` itself. Cycles are cut (depmod refuses them; the loader reports them).
    pub fn dep_order(&self, id: usize) -> Vec<usize> {
        // Iterative post-order DFS, so that deep chains cannot exhaust the stack.
        let mut out = Vec::new();
        let mut state = vec![0u8; self.specs.len()]; // 0 new, 1 on the stack, 2 done
        let mut stack = vec![(id, 0usize)];
        state[id] = 1;
        while let Some(&mut (m, ref mut next)) = stack.last_mut() {
            if let Some(&d) = self.deps[m].get(*next) {
                *next += 1;
                if state[d] == 0 {
                    state[d] = 1;
                    stack.push((d, 0));
                }
            } else {
                state[m] = 2;
                stack.pop();
                if m != id {
                    out.push(m);
                }
            }
        }
        out
    }
}

/// [`ModuleDb::closed`] for every module, in O(modules + dependencies) (iterative, so deep
/// dependency chains do not exhaust the stack; a module on a dependency cycle is not closed).
fn closed_closures(specs: &[ModuleSpec], deps: &[Vec<usize>]) -> Vec<bool> {
    let mut exporters: HashMap<&str, u32> = HashMap::new();
    for s in specs {
        for e in &s.exports {
            *exporters.entry(e.name.as_str()).or_default() += 1;
        }
    }
    let own = |s: &ModuleSpec| {
        s.depends_override.is_none()
            && s.softdeps_pre.is_empty()
            && s.softdeps_post.is_empty()
            && s.imports
                .iter()
                .all(|i| exporters.get(i.name.as_str()).copied().unwrap_or(0) <= 1)
    };
    // 0: not visited, 1: on the DFS stack, 2: done.
    let mut mark = vec![0u8; specs.len()];
    let mut closed: Vec<bool> = specs.iter().map(own).collect();
    for root in 0..specs.len() {
        if mark[root] != 0 {
            continue;
        }
        mark[root] = 1;
        let mut stack = vec![(root, 0usize)];
        while let Some(&mut (m, ref mut next)) = stack.last_mut() {
            if let Some(&d) = deps[m].get(*next) {
                *next += 1;
                match mark[d] {
                    0 => {
                        mark[d] = 1;
                        stack.push((d, 0));
                    }
                    1 => closed[m] = false,
                    _ => closed[m] &= closed[d],
                }
            } else {
                mark[m] = 2;
                stack.pop();
                if let Some(&(parent, _)) = stack.last() {
                    closed[parent] &= closed[m];
                }
            }
        }
    }
    closed
}

fn aliases_mention(specs: &[ModuleSpec], name: &str) -> bool {
    let wanted = normalize_alias(name);
    specs.iter().any(|s| {
        s.aliases.iter().any(|a| {
            glob::Pattern::new(&normalize_alias(a))
                .map(|p| p.matches(&wanted))
                .unwrap_or(false)
        })
    })
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A module exporting and importing plain symbols (no namespace, GPL or CRC).
    pub(crate) fn m(name: &str, exports: &[&str], imports: &[&str]) -> ModuleSpec {
        let mut s = ModuleSpec::new(name);
        s.exports = exports
            .iter()
            .map(|e| ExportSpec {
                name: e.to_string(),
                namespace: None,
                gpl_only: false,
                crc: None,
            })
            .collect();
        s.imports = imports
            .iter()
            .map(|i| ImportSpec {
                name: i.to_string(),
                crc: None,
            })
            .collect();
        s
    }

    #[test]
    fn deps_follow_imports_deepest_first() {
        let db = ModuleDb::new(vec![
            m("c", &["cs"], &["bs", "as"]),
            m("b", &["bs"], &["as"]),
            m("a", &["as"], &[]),
        ])
        .unwrap();
        let c = db.id("c").unwrap();
        let names: Vec<&str> = db
            .dep_order(c)
            .iter()
            .map(|&i| db.spec(i).name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn names_and_aliases_normalise() {
        let mut x = m("snd-hda", &[], &[]);
        x.aliases = vec!["pci:v00008086d*".into(), "fs-xfs".into()];
        let db = ModuleDb::new(vec![x]).unwrap();
        assert_eq!(db.lookup("snd_hda"), vec![0]);
        assert_eq!(db.lookup("snd-hda"), vec![0]);
        assert_eq!(db.lookup("pci:v00008086d00001234"), vec![0]);
        assert_eq!(db.lookup("fs-xfs"), vec![0]);
        assert!(db.lookup("pci:v000010DEd0001").is_empty());
    }

    #[test]
    fn duplicates_and_unknown_references_are_errors() {
        assert!(matches!(
            ModuleDb::new(vec![m("a", &[], &[]), m("a", &[], &[])]),
            Err(SpecError::DuplicateModule(_))
        ));
        assert!(matches!(
            ModuleDb::new(vec![m("a", &["s", "s"], &[])]),
            Err(SpecError::DuplicateExport { .. })
        ));
        let mut a = m("a", &[], &[]);
        a.softdeps_pre = vec!["nope".into()];
        assert!(matches!(
            ModuleDb::new(vec![a]),
            Err(SpecError::UnknownReference { .. })
        ));
    }

    #[test]
    fn distance() {
        assert_eq!(strsim_distance("nmae", "name"), 2);
        assert_eq!(strsim_distance("", "abc"), 3);
    }
}
