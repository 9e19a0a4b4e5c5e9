//! A scenario's modules with their imports in another order: the order in which a real
//! kernel resolves them, which is the built `.ko`'s symbol table (`simplify_symbols()`
//! walks it), and which the final `ld -r` decides, not the order of the file. `modkit
//! compare` runs the simulator with the order the kernel driver read from the modules it
//! built, so that several failing imports of one module are reported in the same order.

use std::collections::BTreeMap;

use modkit_core::{ModuleDb, SpecError};

use crate::scenario::Scenario;

impl Scenario {
    /// This scenario with each named module's imports reordered to follow `order` (names
    /// `order` does not list keep their relative order, after the listed ones); `None` when
    /// no module's order changes.
    pub fn with_import_order(
        &self,
        order: &BTreeMap<String, Vec<String>>,
    ) -> Result<Option<Scenario>, SpecError> {
        let mut specs = self.db.specs().to_vec();
        let mut changed = false;
        for spec in specs.iter_mut() {
            let Some(want) = order.get(&spec.name) else {
                continue;
            };
            let rank = |n: &str| want.iter().position(|w| w == n).unwrap_or(usize::MAX);
            let mut imports = spec.imports.clone();
            imports.sort_by_key(|i| rank(&i.name));
            if imports != spec.imports {
                spec.imports = imports;
                changed = true;
            }
        }
        if !changed {
            return Ok(None);
        }
        let mut sc = self.clone();
        sc.db = std::sync::Arc::new(ModuleDb::new(specs)?);
        Ok(Some(sc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_follow_the_given_order() {
        let text = "[[module]]\nname = \"a\"\nexports = [\"s1\", \"s2\"]\n[[module]]\nname = \"b\"\nimports = [\"s1\", \"x\", \"s2\"]\n";
        let sc = crate::parse("t.toml", text).unwrap();
        let mut order = BTreeMap::new();
        order.insert("b".to_string(), vec!["s2".to_string(), "s1".to_string()]);
        let re = sc.with_import_order(&order).unwrap().expect("changed");
        let b = re.db.id("b").unwrap();
        let names: Vec<&str> = re
            .db
            .spec(b)
            .imports
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["s2", "s1", "x"]);
        order.insert("b".to_string(), vec!["s1".to_string(), "x".to_string()]);
        assert!(sc.with_import_order(&order).unwrap().is_none());
    }
}
