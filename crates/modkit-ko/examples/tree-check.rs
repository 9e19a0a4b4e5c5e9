//! Loads a whole module tree with `modkit_ko::tree::load_tree` and checks it:
//! every module export decoded from `__ksymtab*` relocations must match the kernel's
//! Module.symvers (name, CRC, GPL-ness, namespace), and every import must resolve
//! against vmlinux (from Module.symvers) or another module (as `depmod -e` checks).
//!
//! `cargo run --release -p modkit-ko --example tree-check -- TREE Module.symvers`

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tree, symvers] = args.as_slice() else {
        eprintln!("usage: tree-check LIB_MODULES_VERSION_DIR Module.symvers");
        return ExitCode::from(2);
    };
    let t0 = std::time::Instant::now();
    let mods = match modkit_ko::tree::load_tree(Path::new(tree)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tree-check: {e}");
            return ExitCode::FAILURE;
        }
    };
    let elapsed = t0.elapsed();
    let vmlinux = match modkit_ko::tree::vmlinux_exports(Path::new(symvers)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tree-check: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Module exports according to Module.symvers: symbol -> (crc, gpl, namespace, module).
    let text = std::fs::read_to_string(symvers).unwrap_or_default();
    let mut want: HashMap<&str, (u32, bool, Option<&str>, &str)> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 4 && f[2] != "vmlinux" {
            let crc = u32::from_str_radix(f[0].trim_start_matches("0x"), 16).unwrap_or(0);
            let ns = f.get(4).copied().filter(|s| !s.is_empty());
            want.insert(f[1], (crc, f[3].ends_with("_GPL"), ns, f[2]));
        }
    }
    let mut bad = 0usize;
    let mut n_exports = 0usize;
    for m in &mods {
        for e in &m.exports {
            n_exports += 1;
            match want.get(e.name.as_str()) {
                Some(&(crc, gpl, ns, _))
                    if e.crc == Some(crc) && e.gpl == gpl && e.namespace.as_deref() == ns => {}
                other => {
                    bad += 1;
                    eprintln!(
                        "export mismatch: {} {:?} vs Module.symvers {:?}",
                        m.name, e, other
                    );
                }
            }
        }
    }
    if n_exports != want.len() {
        bad += 1;
        eprintln!(
            "export count mismatch: {} decoded, {} module exports in Module.symvers",
            n_exports,
            want.len()
        );
    }
    let unresolved = modkit_ko::tree::unresolved(&mods, &vmlinux);
    for (m, s) in &unresolved {
        eprintln!("unresolved: {m} needs unknown symbol {s}");
    }
    let namespaced = mods
        .iter()
        .flat_map(|m| &m.exports)
        .filter(|e| e.namespace.is_some())
        .count();
    println!(
        "{} modules loaded in {:.0} ms: {} exports ({} namespaced) match Module.symvers{}; {} vmlinux exports; {} unresolved imports",
        mods.len(),
        elapsed.as_secs_f64() * 1000.0,
        n_exports,
        namespaced,
        if bad == 0 { "" } else { " NOT" },
        vmlinux.len(),
        unresolved.len()
    );
    if bad == 0 && unresolved.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
