//! Writes a real module tree as a modkit scenario file (format 1, see
//! `docs/scenario-format.md`), so the simulator can load every module of a real kernel:
//! a built-in `vmlinux` module exports the kernel's symbols (from Module.symvers), each
//! module carries its real exports, imports (with CRCs), aliases, first softdep,
//! licence and imported namespaces, one event modprobes each module, and the
//! expectation is that every load succeeds and every module ends up live.

use std::fmt::Write as _;

use crate::fnmatch::fnmatch;
use crate::ko::Export;
use crate::names::alias_normalize;
use crate::tree::ModuleInfo;

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn export_item(e: &Export) -> String {
    if e.namespace.is_none() && !e.gpl && e.crc.is_none() {
        return q(&e.name);
    }
    let mut s = format!("{{ name = {}", q(&e.name));
    if let Some(ns) = &e.namespace {
        let _ = write!(s, ", namespace = {}", q(ns));
    }
    if e.gpl {
        s.push_str(", gpl_only = true");
    }
    if let Some(crc) = e.crc {
        let _ = write!(s, ", crc = 0x{crc:08x}");
    }
    s.push_str(" }");
    s
}

/// Parses a `softdep=` value (`pre: a b post: c`) like modprobe.d; tokens before the
/// first `pre:`/`post:` are ignored.
pub fn parse_softdep(v: &str) -> (Vec<&str>, Vec<&str>) {
    let (mut pre, mut post, mut mode) = (Vec::new(), Vec::new(), 0);
    for t in v.split_ascii_whitespace() {
        match t {
            "pre:" => mode = 1,
            "post:" => mode = 2,
            t if mode == 1 => pre.push(t),
            t if mode == 2 => post.push(t),
            _ => {}
        }
    }
    (pre, post)
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    format!("[{}]", v.join(", "))
}

/// The scenario text for `modules` on a kernel exporting `vmlinux`.
pub fn tree_scenario(name: &str, modules: &[ModuleInfo], vmlinux: &[Export]) -> String {
    let names: std::collections::HashSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let aliases: Vec<String> = modules
        .iter()
        .flat_map(|m| &m.aliases)
        .filter_map(|a| alias_normalize(a))
        .collect();
    let resolvable = |n: &str| {
        let Some(n) = alias_normalize(n) else {
            return false;
        };
        names.contains(n.as_str()) || aliases.iter().any(|a| fnmatch(a.as_bytes(), n.as_bytes()))
    };
    let mut s = String::with_capacity(16 << 20);
    let _ = writeln!(s, "name = {}", q(name));
    let _ = writeln!(s, "policy = \"modkit\"\n");
    let _ = writeln!(s, "[[module]]\nname = \"vmlinux\"\nbuiltin = true");
    let _ = writeln!(s, "exports = {}\n", list(vmlinux.iter().map(export_item)));
    for m in modules {
        let _ = writeln!(s, "[[module]]\nname = {}", q(&m.name));
        // The kernel takes the first licence string (`MODULE_LICENSE` appears once).
        if let Some(l) = m.licenses.first() {
            let _ = writeln!(s, "license = {}", q(l));
        }
        if !m.aliases.is_empty() {
            let _ = writeln!(s, "aliases = {}", list(m.aliases.iter().map(|a| q(a))));
        }
        // modprobe uses only the first matching softdep entry, and skips names it cannot
        // resolve ("failed to lookup soft dependency ..., continuing anyway").
        if let Some((pre, post)) = m.softdeps.first().map(|v| parse_softdep(v)) {
            let pre: Vec<&str> = pre.into_iter().filter(|n| resolvable(n)).collect();
            let post: Vec<&str> = post.into_iter().filter(|n| resolvable(n)).collect();
            if !pre.is_empty() || !post.is_empty() {
                let _ = writeln!(
                    s,
                    "softdeps = {{ pre = {}, post = {} }}",
                    list(pre.iter().map(|p| q(p))),
                    list(post.iter().map(|p| q(p)))
                );
            }
        }
        if !m.exports.is_empty() {
            let _ = writeln!(s, "exports = {}", list(m.exports.iter().map(export_item)));
        }
        let imports = m.imports.iter().filter(|i| !i.weak).map(|i| {
            if i.crc == 0 {
                q(&i.name)
            } else {
                format!("{{ name = {}, crc = 0x{:08x} }}", q(&i.name), i.crc)
            }
        });
        let _ = writeln!(s, "imports = {}", list(imports));
        if !m.import_ns.is_empty() {
            let _ = writeln!(
                s,
                "import_namespaces = {}",
                list(m.import_ns.iter().map(|n| q(n)))
            );
        }
        s.push('\n');
    }
    for m in modules {
        let _ = writeln!(
            s,
            "[[event]]\nid = {}\nmodprobe = {}\n",
            q(&format!("load-{}", m.name)),
            q(&m.name)
        );
    }
    s.push_str("[[expect]]\n");
    let _ = writeln!(
        s,
        "results = {{ {} }}",
        modules
            .iter()
            .map(|m| format!("{} = \"ok\"", q(&format!("load-{}", m.name))))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "final = {{ {} }}",
        modules
            .iter()
            .map(|m| format!("{} = \"live\"", q(&m.name)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Import;

    #[test]
    fn writes_modules_events_and_expectations() {
        let m = ModuleInfo {
            name: "a".into(),
            relpath: "kernel/a.ko".into(),
            exports: vec![Export {
                name: "a_sym".into(),
                namespace: Some("NS".into()),
                crc: Some(0x12),
                gpl: true,
            }],
            imports: vec![Import {
                name: "printk".into(),
                crc: 0xabc,
                weak: false,
            }],
            aliases: vec!["pci:v*d\"x".into()],
            softdeps: vec!["pre: b missing post: c d".into(), "pre: ignored".into()],
            licenses: vec!["GPL".into()],
            import_ns: vec!["NS2".into()],
            depends: vec![],
        };
        let vm = vec![Export {
            name: "printk".into(),
            namespace: None,
            crc: Some(0xabc),
            gpl: false,
        }];
        let mods: Vec<ModuleInfo> = ["b", "c"]
            .iter()
            .map(|n| ModuleInfo {
                name: n.to_string(),
                relpath: format!("kernel/{n}.ko"),
                exports: vec![],
                imports: vec![],
                aliases: if *n == "c" {
                    vec!["x-d".into()]
                } else {
                    vec![]
                },
                softdeps: vec![],
                licenses: vec![],
                import_ns: vec![],
                depends: vec![],
            })
            .chain(std::iter::once(m))
            .collect();
        let mut m2 = mods[2].clone();
        m2.softdeps = vec!["pre: b missing post: c x_d".into()];
        let mods = vec![mods[0].clone(), mods[1].clone(), m2];
        let s = tree_scenario("t", &mods, &vm);
        assert!(s.contains("name = \"vmlinux\"\nbuiltin = true"));
        assert!(s.contains("{ name = \"printk\", crc = 0x00000abc }"));
        assert!(s.contains(
            "{ name = \"a_sym\", namespace = \"NS\", gpl_only = true, crc = 0x00000012 }"
        ));
        assert!(s.contains("aliases = [\"pci:v*d\\\"x\"]"));
        assert!(s.contains("softdeps = { pre = [\"b\"], post = [\"c\", \"x_d\"] }"));
        assert!(s.contains("import_namespaces = [\"NS2\"]"));
        assert!(s.contains("[[event]]\nid = \"load-a\"\nmodprobe = \"a\""));
        assert!(s.contains("\"load-a\" = \"ok\" }"));
        assert!(s.contains("\"a\" = \"live\" }"));
    }
}
