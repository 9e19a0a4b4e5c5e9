//! `modinfo`, printing exactly what kmod 30's modinfo prints.

use std::io::Write;
use std::path::Path;

use crate::compress::decompress;
use crate::elf::ElfView;
use crate::ko::{lossy, modinfo_raw};
use crate::modprobe::config::ModprobeConfig;
use crate::modprobe::context::{Context, ModId};
use crate::names::has_kmod_ext;
use crate::signature::{hex_to_str, signature_info, SignatureTrailer};

/// Options of a modinfo run.
#[derive(Debug, Clone, Default)]
pub struct ModinfoOptions {
    /// `-F FIELD` (and `-a`, `-d`, `-l`, `-p`, `-n`).
    pub field: Option<String>,
    /// `-0`: NUL separator.
    pub null: bool,
    /// `-m`: arguments are module names.
    pub modname: bool,
    /// The module directory.
    pub dirname: String,
}

/// A `.modinfo` entry as kmod lists it (value `None` prints as `(null)`).
type Info = (String, Option<String>);

/// The info list of `kmod_module_get_info` for a module file: `.modinfo`, then the
/// signature pseudo-keys.
pub fn file_info(path: &Path) -> Result<Vec<Info>, crate::Error> {
    // The file is mapped and only `.modinfo` and the signature trailer are read (a plain
    // module is never copied; a compressed one is decompressed once).
    crate::ko::with_file_bytes(path, |raw| {
        let perr = |source| crate::Error::Parse {
            path: path.to_path_buf(),
            source,
        };
        let (_, image) = decompress(raw).map_err(perr)?;
        let elf = ElfView::parse(&image).map_err(perr)?;
        // kmod 30: no `.modinfo` is `kmod_elf_get_section`'s ENOENT.
        let mut list: Vec<Info> = modinfo_raw(&elf)
            .ok_or(crate::ParseError::MissingSection(".modinfo"))
            .map_err(perr)?
            .into_iter()
            .map(|(k, v)| (lossy(k), Some(lossy(v))))
            .collect();
        if let Some(info) = SignatureTrailer::parse(&image).and_then(|t| signature_info(&image, &t))
        {
            let hex = |b: &[u8]| (!b.is_empty()).then(|| hex_to_str(b));
            list.push(("sig_id".into(), Some(info.id_type.into())));
            list.push((
                "signer".into(),
                Some(String::from_utf8_lossy(&info.signer).into_owned()),
            ));
            list.push(("sig_key".into(), hex(&info.key_id)));
            list.push(("sig_hashalgo".into(), info.hash_algo.map(str::to_string)));
            list.push(("signature".into(), hex(&info.signature)));
        }
        Ok(list)
    })?
}

/// `kmod_builtin_get_modinfo`: the entries of `modname` in `modules.builtin.modinfo`.
fn builtin_info(dirname: &str, modname: &str) -> Option<Vec<Info>> {
    let data = std::fs::read(format!("{dirname}/modules.builtin.modinfo")).ok()?;
    let mut group: Vec<&[u8]> = Vec::new();
    let mut current: Option<&[u8]> = None;
    for s in data.split(|&b| b == 0) {
        if s.is_empty() {
            continue;
        }
        let dot = s.iter().position(|&b| b == b'.')?;
        let m = &s[..dot];
        if current != Some(m) {
            if current == Some(modname.as_bytes()) {
                break;
            }
            current = Some(m);
            group.clear();
        }
        group.push(&s[dot + 1..]);
    }
    if current != Some(modname.as_bytes()) {
        return None;
    }
    Some(
        group
            .into_iter()
            .map(|s| {
                let s = String::from_utf8_lossy(s);
                match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s.to_string(), Some(String::new())),
                }
            })
            .collect(),
    )
}

struct Param {
    name: String,
    param: Option<String>,
    ptype: Option<String>,
}

/// `process_parm` over the list: newest parameter first, as kmod's prepend gives.
fn collect_params(list: &[Info], err: &mut dyn Write) -> Vec<Param> {
    let mut params: Vec<Param> = Vec::new();
    for (k, v) in list {
        if k != "parm" && k != "parmtype" {
            continue;
        }
        let v = v.as_deref().unwrap_or("");
        let Some((name, rest)) = v.split_once(':') else {
            let _ = writeln!(
                err,
                "modinfo: ERROR: Found invalid \"{k}={v}\": missing ':'"
            );
            continue;
        };
        let idx = match params.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                params.insert(
                    0,
                    Param {
                        name: name.to_string(),
                        param: None,
                        ptype: None,
                    },
                );
                0
            }
        };
        if k == "parm" {
            params[idx].param = Some(rest.to_string());
        } else {
            params[idx].ptype = Some(rest.to_string());
        }
    }
    params
}

fn show(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(null)")
}

/// `modinfo_do` for one module.
fn modinfo_do(
    opts: &ModinfoOptions,
    name: &str,
    filename: Option<&str>,
    list: Result<Vec<Info>, String>,
    out: &mut Vec<u8>,
    err: &mut dyn Write,
) -> i32 {
    let sep = if opts.null { '\0' } else { '\n' };
    let field = opts.field.as_deref();
    let is_builtin = filename.is_none();
    if is_builtin {
        match field {
            None => {
                let _ = write!(out, "{:<16}{name}{sep}", "name:");
            }
            Some("name") => {
                let _ = write!(out, "{name}{sep}");
            }
            _ => {}
        }
    }
    let filename = filename.unwrap_or("(builtin)");
    match field {
        Some("filename") => {
            let _ = write!(out, "{filename}{sep}");
            return 0;
        }
        None => {
            let _ = write!(out, "{:<16}{filename}{sep}", "filename:");
        }
        _ => {}
    }
    let list = match list {
        Ok(l) => l,
        Err(e) if is_builtin && e.is_empty() => return 0,
        Err(e) => {
            // kmod's text, then modkit's detail (see [`file_error`]) on a second line.
            let (text, detail) = e.split_once('\n').unwrap_or((&e, ""));
            let _ = writeln!(
                err,
                "modinfo: ERROR: could not get modinfo from '{name}': {text}"
            );
            if !detail.is_empty() {
                let _ = err.write_all(crate::error::detail_line("modinfo", detail).as_bytes());
            }
            return 1;
        }
    };
    if field == Some("parm") {
        for p in collect_params(&list, err) {
            let _ = match (&p.param, &p.ptype) {
                (None, t) => write!(out, "{}: ({}){sep}", p.name, show(t)),
                (Some(d), Some(t)) => write!(out, "{}:{d} ({t}){sep}", p.name),
                (Some(d), None) => write!(out, "{}:{d}{sep}", p.name),
            };
        }
        return 0;
    }
    for (k, v) in &list {
        if let Some(f) = field {
            if f == k {
                let _ = write!(out, "{}{sep}", show(v));
            }
            continue;
        }
        if k == "parm" || k == "parmtype" {
            continue;
        }
        if opts.null {
            let _ = write!(out, "{k}={}{sep}", show(v));
            continue;
        }
        let pad = 15usize.saturating_sub(k.len());
        let _ = write!(out, "{k}:{:pad$}{}{sep}", "", show(v));
    }
    if field.is_some() {
        return 0;
    }
    for p in collect_params(&list, err) {
        let _ = match (&p.param, &p.ptype) {
            (None, t) => write!(out, "{:<16}{}:{}{sep}", "parm:", p.name, show(t)),
            (Some(d), Some(t)) => write!(out, "{:<16}{}:{d} ({t}){sep}", "parm:", p.name),
            (Some(d), None) => write!(out, "{:<16}{}:{d}{sep}", "parm:", p.name),
        };
    }
    0
}

/// A module file's error as modinfo prints it: kmod's `strerror` text, and for a
/// malformed file modkit's description after a newline.
fn file_error(e: crate::Error) -> String {
    match e {
        crate::Error::Io { source, .. } => crate::depmod::strerror(&source),
        crate::Error::Parse { source, .. } => format!("{}\n{source}", source.kmod_text()),
        other => other.to_string(),
    }
}

fn info_for(ctx: &mut Context, id: ModId) -> (Option<String>, Result<Vec<Info>, String>) {
    let path = ctx.path(id);
    let name = ctx.get(id).name.clone();
    match &path {
        Some(p) => (
            path.clone(),
            file_info(&crate::bytestr::path(p)).map_err(file_error),
        ),
        None => {
            let r = if ctx.is_builtin(id) {
                builtin_info(&ctx.dirname, &name).ok_or_else(String::new)
            } else {
                Err("No such file or directory".to_string())
            };
            (None, r)
        }
    }
}

/// Runs modinfo for each argument; returns the exit status.
pub fn run(
    opts: &ModinfoOptions,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let mut ctx = Context::new(opts.dirname.clone(), ModprobeConfig::default());
    let mut status = 0;
    for a in args {
        let mut buf = Vec::new();
        // modkit extension: a modkit plugin (`.so`, issue 11) has the same .modinfo section.
        let is_file = !opts.modname
            && std::fs::metadata(crate::bytestr::path(a)).is_ok_and(|m| m.is_file())
            && (has_kmod_ext(a) || a.ends_with(".so"));
        let r = if opts.modname {
            match ctx.name_lookup(a) {
                Some(id) => {
                    let (p, l) = info_for(&mut ctx, id);
                    let name = ctx.get(id).name.clone();
                    modinfo_do(opts, &name, p.as_deref(), l, &mut buf, err)
                }
                None => {
                    let _ = writeln!(err, "modinfo: ERROR: Module name {a} not found.");
                    1
                }
            }
        } else if is_file {
            let abs = if a.starts_with('/') {
                a.clone()
            } else {
                format!(
                    "{}/{a}",
                    std::env::current_dir()
                        .map(|d| crate::bytestr::from_os(d.as_os_str()))
                        .unwrap_or_default()
                )
            };
            let name = crate::names::path_to_modname(&abs).unwrap_or_default();
            let l = file_info(&crate::bytestr::path(&abs)).map_err(file_error);
            modinfo_do(opts, &name, Some(&abs), l, &mut buf, err)
        } else {
            match ctx.lookup(a) {
                None => {
                    let _ = writeln!(err, "modinfo: ERROR: Module alias {a} not found.");
                    1
                }
                Some(ids) if ids.is_empty() => {
                    let _ = writeln!(err, "modinfo: ERROR: Module {a} not found.");
                    1
                }
                Some(ids) => {
                    let mut st = 0;
                    for id in ids {
                        let (p, l) = info_for(&mut ctx, id);
                        let name = ctx.get(id).name.clone();
                        st |= modinfo_do(opts, &name, p.as_deref(), l, &mut buf, err);
                    }
                    st
                }
            }
        };
        let _ = out.write_all(&buf);
        if r != 0 {
            status = 1;
        }
    }
    status
}
