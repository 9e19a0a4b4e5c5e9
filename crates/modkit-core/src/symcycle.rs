//! Symbol import cycles: `a` imports a symbol of `b` and `b` (directly or through other
//! modules) imports one of `a`'s, or a module imports its own export. No load order
//! satisfies such modules, so "load b first" would be a false hint; depmod reports them as
//! `depmod: ERROR: Cycle detected: a -> b -> a` (kmod `tools/depmod.c`,
//! `depmod_report_cycles()`), and modkit names the chain the same way.

use std::collections::VecDeque;

use crate::spec::ModuleDb;

/// If module `m` importing a symbol exported by `exporter` closes a cycle, the module names
/// of that cycle in depmod's order, starting and ending with `m` (`[a, b, a]`, or `[c, c]`
/// for a module importing its own export). `None` when some load order works.
pub fn import_cycle(db: &ModuleDb, m: usize, exporter: usize) -> Option<Vec<String>> {
    let name = |i: usize| db.spec(i).name.clone();
    if exporter == m {
        return Some(vec![name(m), name(m)]);
    }
    // Shortest path exporter → … → m along dependencies (breadth first).
    let mut prev = vec![usize::MAX; db.len()];
    prev[exporter] = exporter;
    let mut queue = VecDeque::from([exporter]);
    while let Some(x) = queue.pop_front() {
        if x == m {
            let mut path = vec![m];
            let mut at = m;
            while at != exporter {
                at = prev[at];
                path.push(at);
            }
            path.push(m);
            path.reverse();
            return Some(path.into_iter().map(name).collect());
        }
        for &d in db.deps(x) {
            if prev[d] == usize::MAX {
                prev[d] = x;
                queue.push_back(d);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::m as module;

    #[test]
    fn a_two_module_cycle_and_a_self_import_are_named() {
        let db = ModuleDb::new(vec![
            module("a", &["a_sym"], &["b_sym"]),
            module("b", &["b_sym"], &["x_sym"]),
            module("x", &["x_sym"], &["a_sym"]),
            module("c", &["c_sym"], &["c_sym"]),
            module("d", &[], &["a_sym"]),
        ])
        .unwrap();
        let id = |n| db.id(n).unwrap();
        assert_eq!(
            import_cycle(&db, id("a"), id("b")).unwrap(),
            ["a", "b", "x", "a"]
        );
        assert_eq!(import_cycle(&db, id("c"), id("c")).unwrap(), ["c", "c"]);
        // d only needs a, which does not need d: no cycle.
        assert_eq!(import_cycle(&db, id("d"), id("a")), None);
    }
}
