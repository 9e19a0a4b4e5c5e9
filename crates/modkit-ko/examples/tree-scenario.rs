//! Writes a real module tree as a modkit scenario (every module of the tree, vmlinux's
//! exports from Module.symvers, one modprobe per module, expecting all live):
//!
//! `cargo run --release -p modkit-ko --example tree-scenario -- TREE Module.symvers > tree.toml`
//! then `modkit check tree.toml`.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tree, symvers] = args.as_slice() else {
        eprintln!("usage: tree-scenario LIB_MODULES_VERSION_DIR Module.symvers > scenario.toml");
        return ExitCode::from(2);
    };
    let run = || -> modkit_ko::Result<String> {
        let mods = modkit_ko::tree::load_tree(Path::new(tree))?;
        let vmlinux = modkit_ko::tree::vmlinux_exports(Path::new(symvers))?;
        let name = format!("every module of {tree}");
        Ok(modkit_ko::scenario::tree_scenario(&name, &mods, &vmlinux))
    };
    match run() {
        Ok(s) => {
            print!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tree-scenario: {e}");
            ExitCode::FAILURE
        }
    }
}
