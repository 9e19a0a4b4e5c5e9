//! Computes modkit's plugin vermagic: the modkit plugin ABI version, the rustc version and
//! commit, the target and the panic strategy. A plugin and its host must agree on all of
//! them (crate::plugin::VERMAGIC).

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().replace(' ', "_"))
        .unwrap_or_else(|| "rustc_unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let panic = std::env::var("CARGO_CFG_PANIC").unwrap_or_else(|_| "unwind".into());
    println!("cargo:rustc-env=MODKIT_VERMAGIC=modkit-abi-1 {version} {target} panic={panic}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
