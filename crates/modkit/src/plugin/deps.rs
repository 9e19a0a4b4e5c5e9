//! A plugin's dependencies computed from its imports, as the kernel's depmod computes
//! modules.dep from each module's undefined symbols: a plugin depends on the plugin that
//! exports each name it imports (`import=` and `export=` entries of the `.modinfo`
//! sections the [`crate::plugin!`] macro writes), plus what it declares in `depends=`.

use std::collections::BTreeMap;

/// What the dependency computation needs from one plugin file.
pub(crate) struct Entry<'a> {
    /// Module name (normalized).
    pub name: &'a str,
    /// `export=` entries.
    pub exports: &'a [String],
    /// `import=` entries.
    pub imports: &'a [String],
    /// `depends=` entries (normalized).
    pub depends: &'a [String],
}

/// Each entry's dependencies: its declared `depends=` first, then the exporter of each
/// import in import order, each once. An import no plugin exports adds nothing (the link
/// step reports it by name); when two plugins export a name the first in `entries` (the
/// directory's sorted order) wins, as depmod keeps the first module found.
pub(crate) fn resolve(entries: &[Entry<'_>]) -> Vec<Vec<String>> {
    let mut exporter: BTreeMap<&str, &str> = BTreeMap::new();
    for e in entries {
        for s in e.exports {
            exporter.entry(s.as_str()).or_insert(e.name);
        }
    }
    entries
        .iter()
        .map(|e| {
            let mut deps: Vec<String> = Vec::new();
            let found = e.imports.iter().filter_map(|i| exporter.get(i.as_str()));
            for d in e.depends.iter().map(String::as_str).chain(found.copied()) {
                if d != e.name && !deps.iter().any(|x| x == d) {
                    deps.push(d.to_string());
                }
            }
            deps
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn imports_give_the_dependencies_and_declared_ones_are_kept() {
        let (core_x, stats_i, tick_i, tick_d) = (
            v(&["add", "scale"]),
            v(&["add", "scale", "nowhere"]),
            v(&["add"]),
            v(&["extra"]),
        );
        let none = Vec::new();
        let entries = [
            Entry {
                name: "mathcore",
                exports: &core_x,
                imports: &none,
                depends: &none,
            },
            Entry {
                name: "stats",
                exports: &none,
                imports: &stats_i,
                depends: &none,
            },
            Entry {
                name: "ticker",
                exports: &none,
                imports: &tick_i,
                depends: &tick_d,
            },
        ];
        let d = resolve(&entries);
        assert!(d[0].is_empty());
        assert_eq!(d[1], v(&["mathcore"]));
        assert_eq!(d[2], v(&["extra", "mathcore"]));
    }

    #[test]
    fn a_plugin_importing_its_own_export_does_not_depend_on_itself() {
        let x = v(&["f"]);
        let entries = [Entry {
            name: "p",
            exports: &x,
            imports: &x,
            depends: &[],
        }];
        assert!(resolve(&entries)[0].is_empty());
    }
}
