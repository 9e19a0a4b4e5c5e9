//! Command-line front ends (clap) for `modkit depmod`, `modkit modinfo` and
//! `modkit modprobe`, mirroring kmod's options. Each `run_*` returns the exit status.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use modkit_ko::depmod::{self, DepmodOptions};

/// `modkit depmod [-b BASEDIR] [-e] [-E Module.symvers | -F System.map] [VERSION [FILES]]`
#[derive(Debug, Clone, Args)]
pub struct DepmodArgs {
    /// Probe all modules (the default when no files are given).
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Only do the work if a module is newer than modules.dep.
    #[arg(short = 'A', long = "quick")]
    pub quick: bool,
    /// Use an image of a module tree rooted at DIR.
    #[arg(short = 'b', long = "basedir", value_name = "DIR")]
    pub basedir: Option<PathBuf>,
    /// Output root path (default: same as the base directory), as kmod 31+.
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: Option<PathBuf>,
    /// Read configuration from PATH instead of the depmod.d directories (repeatable).
    #[arg(short = 'C', long = "config", value_name = "PATH")]
    pub config: Vec<PathBuf>,
    /// Module.symvers of the kernel (vmlinux exports with CRCs).
    #[arg(short = 'E', long = "symvers", value_name = "FILE")]
    pub symvers: Option<PathBuf>,
    /// System.map of the kernel (vmlinux exports).
    #[arg(short = 'F', long = "filesyms", value_name = "FILE")]
    pub filesyms: Option<PathBuf>,
    /// Report symbols that no module or the kernel provides.
    #[arg(short = 'e', long = "errsyms")]
    pub errsyms: bool,
    /// Write the dependency files to stdout only.
    #[arg(short = 'n', long = "show", visible_alias = "dry-run")]
    pub show: bool,
    /// Architecture symbol prefix (one character).
    #[arg(short = 'P', long = "symbol-prefix", value_name = "C")]
    pub symbol_prefix: Option<String>,
    /// Warn on duplicate index entries.
    #[arg(short = 'w', long = "warn")]
    pub warn: bool,
    /// Verbose (accepted for compatibility).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Neither read nor write modkit's extraction cache (modules.modkit-cache), which
    /// lets a rerun skip decompressing the modules that did not change.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Deprecated options kmod accepts and ignores.
    #[arg(short = 'u', hide = true)]
    pub deprecated_u: bool,
    /// Deprecated.
    #[arg(short = 'q', hide = true)]
    pub deprecated_q: bool,
    /// Deprecated.
    #[arg(short = 'r', hide = true)]
    pub deprecated_r: bool,
    /// Deprecated.
    #[arg(short = 'm', hide = true)]
    pub deprecated_m: bool,
    /// Kernel version (default: the running kernel), then optional module files.
    #[arg(value_name = "VERSION")]
    pub args: Vec<String>,
}

pub use modkit_ko::names::uname_release;

/// `is_version_number`: `sscanf("%u.%u") == 2`.
fn is_version_number(v: &str) -> bool {
    let t = v.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    let n = t.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return false;
    }
    let rest = &t[n..];
    let Some(rest) = rest.strip_prefix('.') else {
        return false;
    };
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('+').unwrap_or(rest);
    rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// The path a command-line argument names: the multicall entry hands arguments over as
/// [`modkit_ko::bytestr`] strings (bytes that are not UTF-8 kept as escapes), turned back
/// into the bytes here; a path that is not UTF-8 already is kept as it is.
fn os_path(p: &Path) -> PathBuf {
    match p.to_str() {
        Some(s) => modkit_ko::bytestr::path(s).into_owned(),
        None => p.to_path_buf(),
    }
}

/// Runs `modkit depmod`.
pub fn run_depmod(args: &DepmodArgs) -> i32 {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for (set, c) in [
        (args.deprecated_u, 'u'),
        (args.deprecated_q, 'q'),
        (args.deprecated_r, 'r'),
        (args.deprecated_m, 'm'),
    ] {
        if set {
            let _ = writeln!(err, "depmod: WARNING: Ignored deprecated option -{c}");
        }
    }
    let sym_prefix = match args.symbol_prefix.as_deref() {
        None => 0,
        Some(p) if p.len() == 1 => p.as_bytes()[0],
        Some(_) => {
            let _ = writeln!(err, "depmod: FATAL: -P only takes a single char");
            return 1;
        }
    };
    let mut positional = args.args.iter();
    let kversion = match positional.next() {
        Some(v) if !is_version_number(v) => {
            let _ = writeln!(err, "depmod: ERROR: Bad version passed {v}");
            return 1;
        }
        Some(v) => v.clone(),
        None => uname_release(),
    };
    let files: Vec<PathBuf> = positional.map(|f| os_path(Path::new(f))).collect();
    let opts = DepmodOptions {
        basedir: args.basedir.as_deref().map(os_path),
        kversion,
        print_unknown: args.errsyms,
        symvers: args.symvers.as_deref().map(os_path),
        system_map: args.filesyms.as_deref().map(os_path),
        config_paths: (!args.config.is_empty())
            .then(|| args.config.iter().map(|c| os_path(c)).collect()),
        dry_run: args.show,
        warn_dups: args.warn,
        sym_prefix,
        quick: args.quick,
        module_files: if args.all { Vec::new() } else { files },
        no_cache: args.no_cache,
        outdir: args.outdir.as_deref().map(os_path),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match depmod::run(&opts, &mut out, &mut err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "depmod: ERROR: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_field_option_wins() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            field_from_argv(&v("modkit modinfo -l -a -d fuse")),
            Some(Some("description".into()))
        );
        assert_eq!(
            field_from_argv(&v("modkit modinfo -lF alias -b /x fuse")),
            Some(Some("alias".into()))
        );
        assert_eq!(field_from_argv(&v("modkit modinfo -b /x fuse")), None);
        assert_eq!(
            field_from_argv(&v("modkit modinfo --field=x -p fuse")),
            Some(Some("parm".into()))
        );
    }

    #[test]
    fn version_numbers() {
        assert!(is_version_number("6.1.0-56-cloud-amd64"));
        assert!(is_version_number("4.4"));
        assert!(!is_version_number("abc"));
        assert!(!is_version_number("6"));
        assert!(!is_version_number("6.x"));
    }
}

/// `modkit modinfo [-F FIELD] [-0] [-m] [-k VERSION] [-b BASEDIR] MODULE...`
#[derive(Debug, Clone, Args)]
pub struct ModinfoArgs {
    /// Print only 'author'.
    #[arg(short = 'a', long = "author")]
    pub author: bool,
    /// Print only 'description'.
    #[arg(short = 'd', long = "description")]
    pub description: bool,
    /// Print only 'license'.
    #[arg(short = 'l', long = "license")]
    pub license: bool,
    /// Print only 'parm'.
    #[arg(short = 'p', long = "parameters")]
    pub parameters: bool,
    /// Print only 'filename'.
    #[arg(short = 'n', long = "filename")]
    pub filename: bool,
    /// Use \0 instead of \n.
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Handle arguments as module names instead of aliases or file names.
    #[arg(short = 'm', long = "modname")]
    pub modname: bool,
    /// Print only the given field.
    #[arg(short = 'F', long = "field", value_name = "FIELD")]
    pub field: Option<String>,
    /// Use VERSION instead of `uname -r`.
    #[arg(short = 'k', long = "set-version", value_name = "VERSION")]
    pub set_version: Option<String>,
    /// Use DIR as filesystem root for /lib/modules.
    #[arg(short = 'b', long = "basedir", value_name = "DIR")]
    pub basedir: Option<String>,
    /// Module names, aliases or files.
    #[arg(value_name = "MODULE", required = true)]
    pub modules: Vec<String>,
}

pub(crate) use modkit_ko::names::kmod_dirname;

/// kmod's modinfo keeps the *last* of `-a -d -l -p -n -F`; clap's derive loses their
/// order, so it is recovered from the command line (after the `modinfo` word).
/// `None` when no such option is present.
fn field_from_argv(argv: &[String]) -> Option<Option<String>> {
    let start = argv
        .iter()
        .position(|a| a == "modinfo" || a.ends_with("/modinfo"))?
        + 1;
    let mut field: Option<Option<String>> = None;
    let mut i = start;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if a == "--" {
            break;
        }
        let short = |c: char| match c {
            'a' => Some("author"),
            'd' => Some("description"),
            'l' => Some("license"),
            'p' => Some("parm"),
            'n' => Some("filename"),
            _ => None,
        };
        if let Some(long) = a.strip_prefix("--") {
            let (name, val) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match name {
                "author" | "description" | "license" | "filename" => {
                    field = Some(Some(name.to_string()))
                }
                "parameters" => field = Some(Some("parm".into())),
                "field" => {
                    let v = val.or_else(|| argv.get(i).cloned());
                    if !long.contains('=') {
                        i += 1;
                    }
                    field = Some(v);
                }
                "set-version" | "basedir" if !long.contains('=') => i += 1,
                _ => {}
            }
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (k, c) in cluster.char_indices() {
                if let Some(f) = short(c) {
                    field = Some(Some(f.to_string()));
                } else if matches!(c, 'F' | 'k' | 'b') {
                    let rest = &cluster[k + 1..];
                    let v = if rest.is_empty() {
                        i += 1;
                        argv.get(i - 1).cloned()
                    } else {
                        Some(rest.to_string())
                    };
                    if c == 'F' {
                        field = Some(v);
                    }
                    break;
                }
            }
        }
    }
    field
}

/// Runs `modkit modinfo` (the command line read from the process).
pub fn run_modinfo(args: &ModinfoArgs) -> i32 {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| modkit_ko::bytestr::from_os(&a))
        .collect();
    let start = argv
        .iter()
        .position(|a| a == "modinfo" || a.ends_with("/modinfo"))
        .map_or(argv.len(), |i| i + 1);
    run_modinfo_argv(args, &argv[start..])
}

/// Runs modinfo with `args` parsed from `rest` (the arguments after the tool's name).
/// Names and paths are [`modkit_ko::bytestr`] strings, printed as the bytes they stand for.
pub fn run_modinfo_argv(args: &ModinfoArgs, rest: &[String]) -> i32 {
    let mut argv = vec!["modinfo".to_string()];
    argv.extend(rest.iter().cloned());
    let field = field_from_argv(&argv).unwrap_or_else(|| {
        [
            (args.author, "author"),
            (args.description, "description"),
            (args.license, "license"),
            (args.parameters, "parm"),
            (args.filename, "filename"),
        ]
        .iter()
        .rev()
        .find(|(set, _)| *set)
        .map(|(_, f)| f.to_string())
        .or_else(|| args.field.clone())
    });
    let opts = modkit_ko::modinfo::ModinfoOptions {
        field,
        null: args.null,
        modname: args.modname,
        dirname: kmod_dirname(args.basedir.as_deref(), args.set_version.as_deref()),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = modkit_ko::bytestr::Raw(stdout.lock());
    let mut err = modkit_ko::bytestr::Raw(stderr.lock());
    modkit_ko::modinfo::run(&opts, &args.modules, &mut out, &mut err)
}
