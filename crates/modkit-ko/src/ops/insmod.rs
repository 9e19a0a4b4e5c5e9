//! `insmod FILE [ARGS]`, as kmod 30's `tools/insmod.c`.

use std::io::Write;

use super::getopt::{getopt_long, HasArg, LongOpt};
use super::insert::insert_file;
use super::log::Log;
use super::{print_version, sys};

const LONGS: &[LongOpt] = &[
    LongOpt {
        name: "psm",
        has_arg: HasArg::No,
        val: 'p' as u32,
    },
    LongOpt {
        name: "syslog",
        has_arg: HasArg::No,
        val: 's' as u32,
    },
    LongOpt {
        name: "force",
        has_arg: HasArg::No,
        val: 'f' as u32,
    },
    LongOpt {
        name: "version",
        has_arg: HasArg::No,
        val: 'V' as u32,
    },
    LongOpt {
        name: "help",
        has_arg: HasArg::No,
        val: 'h' as u32,
    },
];

/// insmod's `mod_strerror`.
pub fn mod_strerror(errno: i32) -> String {
    match errno {
        libc::ENOEXEC => "Invalid module format".into(),
        libc::ENOENT => "Unknown symbol in module".into(),
        libc::ESRCH => "Module has wrong symbol version".into(),
        libc::EINVAL => "Invalid parameters".into(),
        e => sys::strerror(e),
    }
}

/// Runs insmod; `argv[0]` is the program name. Returns the exit status.
pub fn run(argv: &[String]) -> i32 {
    let prog = super::short_name(&argv[0]);
    let mut log = Log::stderr(&prog);
    let parsed = match getopt_long(&argv[0], &argv[1..], "psfVh", LONGS) {
        Ok(p) => p,
        Err((_, msg)) => {
            log.raw(&msg);
            return 1;
        }
    };
    let mut flags = 0;
    for o in &parsed.opts {
        match char::from_u32(o.val) {
            Some('p' | 's') => {}
            Some('f') => {
                flags |= sys::MODULE_INIT_IGNORE_MODVERSIONS | sys::MODULE_INIT_IGNORE_VERMAGIC
            }
            Some('h') => {
                print!(
                    "Usage:\n\t{prog} [options] filename [args]\nOptions:\n\t-V, --version     show version\n\t-h, --help        show this help\n"
                );
                return 0;
            }
            Some('V') => {
                print_version();
                return 0;
            }
            _ => {}
        }
    }
    let Some(filename) = parsed.operands.first() else {
        log.err("missing filename.\n");
        return 1;
    };
    if filename == "-" {
        log.err("this tool does not support loading from stdin!\n");
        return 1;
    }
    let opts = parsed.operands[1..].join(" ");
    if let Err(e) = std::fs::metadata(filename) {
        log.err(&format!(
            "could not load module {filename}: {}\n",
            sys::strerror(e.raw_os_error().unwrap_or(libc::ENOENT))
        ));
        return 1;
    }
    match insert_file(filename, &opts, flags) {
        Ok(_) => 0,
        Err(e) => {
            log.err(&format!(
                "could not insert module {filename}: {}\n",
                mod_strerror(e)
            ));
            let _ = std::io::stdout().flush();
            1
        }
    }
}
