//! Real module operations on the running kernel, as kmod 30's tools perform them:
//! [`insmod`], [`rmmod`], [`lsmod`] and [`modprobe`] (loading and removal, not only the
//! dry-run modes), over a small system-call layer ([`sys`]) and the kernel's own view of
//! its modules ([`state`]). [`run_tool`] is the multicall entry point: like kmod, the
//! `modkit` binary acts as the tool its `argv[0]` names.

pub mod getopt;
pub mod insert;
pub mod insmod;
pub mod lock;
pub mod log;
pub mod lsmod;
pub mod modprobe;
pub mod phase;
pub mod rmmod;
pub mod state;
pub mod sys;

use crate::index::IndexReader;

/// The tools [`run_tool`] runs by name.
pub const TOOLS: [&str; 4] = ["insmod", "rmmod", "lsmod", "modprobe"];

/// `program_invocation_short_name`: the basename of `argv[0]`.
pub fn short_name(argv0: &str) -> String {
    argv0.rsplit('/').next().unwrap_or(argv0).to_string()
}

/// `-V`: the kmod version whose behaviour and output these tools reproduce (Debian's
/// kmod 30 build), so scripts that test the version keep working; `modkit --version`
/// gives modkit's own.
pub fn print_version() {
    println!("kmod version 30");
    println!("+ZSTD +XZ -ZLIB +LIBCRYPTO -EXPERIMENTAL");
}

/// Runs the tool `name` with `argv` (`argv[0]` is the program name used in messages).
/// `None` when `name` is not one of [`TOOLS`].
pub fn run_tool(name: &str, argv: &[String]) -> Option<i32> {
    let code = match name {
        "insmod" => insmod::run(argv),
        "rmmod" => rmmod::run(argv),
        "lsmod" => lsmod::run(argv),
        "modprobe" => modprobe::run(argv),
        _ => return None,
    };
    Some(code)
}

/// The kernel's `modules.builtin.bin` (libkmod's `kmod_module_is_builtin`).
#[derive(Debug)]
pub struct Builtins(Option<IndexReader>);

impl Builtins {
    /// Opens `DIRNAME/modules.builtin.bin` (missing: nothing is built in).
    pub fn open(dirname: &str) -> Builtins {
        let r = std::fs::read(format!("{dirname}/modules.builtin.bin"))
            .ok()
            .and_then(|d| IndexReader::new(d).ok());
        Builtins(r)
    }

    /// Is `name` built in?
    pub fn contains(&self, name: &str) -> bool {
        self.0.as_ref().is_some_and(|r| r.search(name).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(short_name("/sbin/modprobe"), "modprobe");
        assert_eq!(short_name("lsmod"), "lsmod");
        assert_eq!(run_tool("depmod", &["depmod".into()]), None);
    }
}
