//! `modprobe --show-depends` (and `-R`), reproducing libkmod 30's probe list: module
//! dependencies, modprobe.d softdeps (first matching entry only), blacklist, options and
//! install commands, with kmod's output format.

pub mod config;
pub mod context;

use std::io::Write;

use context::{Context, ModId};

use crate::ops::modprobe::concat_options;

/// What to do with the resolved modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--show-depends` / `-D`: print `insmod`/`install`/`builtin` lines.
    ShowDepends,
    /// `--resolve-alias` / `-R`: print the module names.
    ResolveAlias,
}

/// Options of a modprobe run.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Print mode.
    pub mode: Mode,
    /// `-b`: apply the blacklist to module names too.
    pub use_blacklist: bool,
    /// `-i`: ignore install commands.
    pub ignore_commands: bool,
}

/// `options_from_array`: joins command-line `key=value` arguments, quoting values with
/// spaces.
pub fn options_from_args(args: &[String]) -> Option<String> {
    let mut out: Option<String> = None;
    for a in args {
        let quoted = match a.find('=') {
            Some(i) => {
                let v = &a[i + 1..];
                if !v.starts_with('"') && !v.starts_with('\'') && v.contains(' ') {
                    format!("{}\"{}\"", &a[..=i], v)
                } else {
                    a.clone()
                }
            }
            None => a.clone(),
        };
        match &mut out {
            Some(o) => {
                o.push(' ');
                o.push_str(&quoted);
            }
            None => out = Some(quoted),
        }
    }
    out
}

/// Probes `name` like `modprobe` (dry run); writes what kmod prints to `out`.
/// Returns the exit status (1 when nothing matches).
pub fn probe(
    ctx: &mut Context,
    name: &str,
    extra_options: Option<&str>,
    opts: &ProbeOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let list = ctx.lookup(name).unwrap_or_default();
    if list.is_empty() {
        let _ = writeln!(
            err,
            "modprobe: FATAL: Module {name} not found in directory {}",
            ctx.dirname
        );
        return 1;
    }
    for id in list {
        if opts.mode == Mode::ResolveAlias {
            let _ = writeln!(out, "{}", ctx.get(id).name);
            continue;
        }
        let m = ctx.get(id);
        if (m.alias.is_some() || opts.use_blacklist) && ctx.is_blacklisted(id) {
            continue;
        }
        ctx.reset_visited();
        let mut plist = Vec::new();
        get_probe_list(ctx, id, opts.ignore_commands, &mut plist);
        for m in plist {
            let moptions = ctx.options(m);
            let options = concat_options(
                moptions.as_deref(),
                if m == id { extra_options } else { None },
            );
            let options = options.unwrap_or_default();
            let cmd = ctx.install_command(m);
            match cmd {
                Some(cmd) if !ctx.get(m).ignorecmd => {
                    let _ = writeln!(out, "install {cmd} {options}");
                }
                _ => match ctx.path(m) {
                    Some(p) => {
                        let _ = writeln!(out, "insmod {p} {options}");
                    }
                    None => {
                        if ctx.is_builtin(m) {
                            let _ = writeln!(out, "builtin {}", ctx.get(m).name);
                        }
                    }
                },
            }
        }
    }
    0
}

/// `__kmod_module_get_probe_list`.
fn get_probe_list(ctx: &mut Context, id: ModId, ignorecmd: bool, list: &mut Vec<ModId>) {
    if ctx.get(id).visited {
        return;
    }
    ctx.get_mut(id).visited = true;
    let deps = ctx.dependencies(id);
    for d in deps {
        fill_softdep(ctx, d, list);
    }
    if ignorecmd {
        list.push(id);
        ctx.get_mut(id).ignorecmd = true;
    } else {
        fill_softdep(ctx, id, list);
    }
}

/// Resolves softdep names (lookup failures are ignored, as kmod does).
fn lookup_softdeps(ctx: &mut Context, names: &[String]) -> Vec<ModId> {
    let mut v = Vec::new();
    for n in names {
        match ctx.lookup(n) {
            Some(ids) => v.extend(ids),
            None => {
                // libkmod's message through modprobe's logger, as Debian's kmod 30 (built
                // with --enable-debug) prints it, source position included.
                eprintln!(
                    "modprobe: ERROR: ../libkmod/libkmod-module.c:1567 lookup_softdep() failed to lookup soft dependency '{n}', continuing anyway."
                )
            }
        }
    }
    v
}

/// `__kmod_module_fill_softdep`: pre-softdeps, the module (no visited check), post.
fn fill_softdep(ctx: &mut Context, id: ModId, list: &mut Vec<ModId>) {
    let name = ctx.get(id).name.clone();
    let sd = ctx
        .config
        .softdeps
        .iter()
        .find(|s| crate::fnmatch::fnmatch(s.name.as_bytes(), name.as_bytes()))
        .cloned();
    let (pre, post) = match sd {
        Some(sd) => (
            lookup_softdeps(ctx, &sd.pre),
            lookup_softdeps(ctx, &sd.post),
        ),
        None => (Vec::new(), Vec::new()),
    };
    for &m in &pre {
        get_probe_list(ctx, m, false, list);
    }
    list.push(id);
    ctx.get_mut(id).ignorecmd = !pre.is_empty() || !post.is_empty();
    for &m in &post {
        get_probe_list(ctx, m, false, list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_quoting() {
        let a = vec![
            "a=1".to_string(),
            "b=x y".into(),
            "c='p q'".into(),
            "flag".into(),
        ];
        assert_eq!(options_from_args(&a).unwrap(), "a=1 b=\"x y\" c='p q' flag");
        assert_eq!(concat_options(Some("x"), None).unwrap(), "x ");
        assert_eq!(concat_options(None, Some("y")).unwrap(), "y");
        assert_eq!(concat_options(Some(""), None), None);
    }
}
