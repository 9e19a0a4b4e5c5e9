//! `rmmod [-f] [-s] [-v] MODULE...`, as kmod 30's `tools/rmmod.c`. kmod 30 lists `-w` in
//! its option string without handling it ("unexpected getopt_long() value 'w'."); modkit
//! does the same, and offers waiting through `modprobe -r -w MSEC`.

use super::getopt::{getopt_long, HasArg, LongOpt};
use super::log::{Log, LOG_ERR};
use super::state;
use super::{print_version, sys, Builtins};
use crate::names::{modname_normalize, path_to_modname};

const LONGS: &[LongOpt] = &[
    LongOpt {
        name: "force",
        has_arg: HasArg::No,
        val: 'f' as u32,
    },
    LongOpt {
        name: "syslog",
        has_arg: HasArg::No,
        val: 's' as u32,
    },
    LongOpt {
        name: "verbose",
        has_arg: HasArg::No,
        val: 'v' as u32,
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

/// rmmod's `check_module_inuse`: `Err(errno)` when the module must not be removed.
fn check_inuse(log: &mut Log, builtins: &Builtins, name: &str) -> Result<(), i32> {
    if builtins.contains(name) {
        log.err(&format!("Module {name} is builtin.\n"));
        return Err(libc::ENOENT);
    }
    if state::initstate(name).is_err() {
        log.err(&format!("Module {name} is not currently loaded\n"));
        return Err(libc::ENOENT);
    }
    match state::holders(name) {
        Ok(h) if !h.is_empty() => {
            let mut line = format!("Module {name} is in use by:");
            for m in &h {
                line.push(' ');
                line.push_str(m);
            }
            log.err(&line);
            log.raw("\n");
            return Err(libc::EBUSY);
        }
        Ok(_) => {}
        Err(e) => log.kmod(
            LOG_ERR,
            "libkmod-module.c",
            1998,
            "kmod_module_get_holders",
            &format!(
                "could not open '/sys/module/{name}/holders': {}\n",
                sys::strerror(e)
            ),
        ),
    }
    match state::refcnt(name) {
        Ok(n) if n > 0 => {
            log.err(&format!("Module {name} is in use\n"));
            Err(libc::EBUSY)
        }
        Err(libc::ENOENT) => {
            log.err("Module unloading is not supported\n");
            Err(libc::ENOENT)
        }
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Runs rmmod. Returns the exit status.
pub fn run(argv: &[String]) -> i32 {
    let prog = super::short_name(&argv[0]);
    let mut log = Log::stderr(&prog);
    log.priority = LOG_ERR;
    let parsed = match getopt_long(&argv[0], &argv[1..], "fsvVwh", LONGS) {
        Ok(p) => p,
        Err((_, msg)) => {
            log.raw(&msg);
            return 1;
        }
    };
    let mut force = false;
    let mut verbose = LOG_ERR;
    for o in &parsed.opts {
        match char::from_u32(o.val) {
            Some('f') => force = true,
            Some('s') => {}
            Some('v') => verbose += 1,
            Some('h') => {
                print!(
                    "Usage:\n\t{prog} [options] modulename ...\nOptions:\n\t-f, --force       forces a module unload and may crash your\n\t                  machine. This requires Forced Module Removal\n\t                  option in your kernel. DANGEROUS\n\t-s, --syslog      print to syslog, not stderr\n\t-v, --verbose     enables more messages\n\t-V, --version     show version\n\t-h, --help        show this help\n"
                );
                return 0;
            }
            Some('V') => {
                print_version();
                return 0;
            }
            Some(c) => {
                log.err(&format!("unexpected getopt_long() value '{c}'.\n"));
                return 1;
            }
            None => return 1,
        }
    }
    if parsed.operands.is_empty() {
        log.err("missing module name.\n");
        return 1;
    }
    log.setup_kmod(verbose);
    let builtins = Builtins::open(&format!("/lib/modules/{}", sys::uname_release()));
    let mut r = 0;
    for arg in &parsed.operands {
        let name = if std::fs::metadata(arg).is_ok() {
            path_to_modname(arg).unwrap_or_default()
        } else {
            modname_normalize(arg)
        };
        if !force && check_inuse(&mut log, &builtins, &name).is_err() {
            r += 1;
            continue;
        }
        let mut flags = sys::DELETE_NONBLOCK;
        if force {
            flags |= sys::DELETE_FORCE;
        }
        if let Err(e) = sys::delete_module(&name, flags) {
            log.kmod(
                LOG_ERR,
                "libkmod-module.c",
                856,
                "kmod_module_remove_module",
                &format!("could not remove '{name}': {}\n", sys::strerror(e)),
            );
            log.err(&format!(
                "could not remove module {arg}: {}\n",
                sys::strerror(e)
            ));
            r += 1;
        }
    }
    if r == 0 {
        0
    } else {
        1
    }
}
