//! Finding modules under the module directory (and `external` directories) with kmod's
//! duplicate-resolution rules, and ordering them by `modules.order`.

use std::io::ErrorKind;

use super::config::{DepmodConfig, Search};
use super::{strerror, Log, Mod};
use crate::names::{has_kmod_ext, is_plugin_file, path_to_modname};

/// A module file kept by discovery.
#[derive(Debug, Clone)]
pub struct Found {
    /// Absolute path.
    pub path: String,
    /// Normalised module name.
    pub modname: String,
}

/// Walks `dirname` then every external directory, keeping one file per module name.
pub fn search(dirname: &str, cfg: &DepmodConfig, log: &mut Log) -> std::io::Result<Vec<Found>> {
    let mut st = State {
        found: Vec::new(),
        by_name: std::collections::HashMap::new(),
        dirname,
        cfg,
    };
    if let Err(e) = std::fs::read_dir(dirname) {
        log.msg(
            "ERROR",
            &format!("could not open directory {dirname}: {}\n", strerror(&e)),
        );
        return Err(e);
    }
    walk(&mut st, dirname, 0, log);
    for ext in &cfg.externals {
        if std::fs::read_dir(ext).is_err() {
            log.msg(
                "ERROR",
                &format!(
                    "could not open directory {ext}: {}\n",
                    strerror(&std::io::Error::from(ErrorKind::NotFound))
                ),
            );
            continue;
        }
        walk(&mut st, ext, 0, log);
    }
    Ok(st.found.into_iter().flatten().collect())
}

struct State<'a> {
    found: Vec<Option<Found>>,
    by_name: std::collections::HashMap<String, usize>,
    dirname: &'a str,
    cfg: &'a DepmodConfig,
}

/// Deepest directory nesting followed (guards against symlink loops).
const MAX_DEPTH: usize = 64;

fn walk(st: &mut State, dir: &str, depth: usize, log: &mut Log) {
    if depth > MAX_DEPTH {
        log.msg(
            "ERROR",
            &format!("{dir}: directories nested more than {MAX_DEPTH} deep (a symlink loop?), not descending\n"),
        );
        return;
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            log.msg("ERROR", &format!("openat({dir}): {}\n", strerror(&e)));
            return;
        }
    };
    for de in rd {
        let Ok(de) = de else { continue };
        let name = de.file_name().to_string_lossy().into_owned();
        if name == "build" || name == "source" || st.cfg.excludes.contains(&name) {
            continue;
        }
        let path = format!("{dir}/{name}");
        let ft = match de.file_type() {
            Ok(ft) if ft.is_symlink() => match std::fs::metadata(&path) {
                Ok(md) => md.file_type(),
                Err(e) => {
                    log.msg("ERROR", &format!("fstatat({name}): {}\n", strerror(&e)));
                    continue;
                }
            },
            Ok(ft) => ft,
            Err(_) => continue,
        };
        if ft.is_dir() {
            walk(st, &path, depth + 1, log);
        } else if ft.is_file() {
            consider_file(st, path, &name);
        } else {
            log.msg("ERROR", &format!("unsupported file type {path}\n"));
        }
    }
}

fn consider_file(st: &mut State, path: String, name: &str) {
    if !has_kmod_ext(name) && !is_plugin_file(name) {
        return;
    }
    let Some(modname) = path_to_modname(&path) else {
        return;
    };
    if let Some(&old) = st.by_name.get(&modname) {
        let oldf = st.found[old]
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_default();
        if existing_is_higher_priority(st, &oldf, &path, &modname) {
            tracing::debug!("Ignored lower priority: {path}, higher: {oldf}");
            return;
        }
        st.found[old] = None;
    }
    st.by_name.insert(modname.clone(), st.found.len());
    st.found.push(Some(Found { path, modname }));
}

/// `depmod_module_is_higher_priority`: is the already-found `oldpath` preferred over
/// `newpath`?
fn existing_is_higher_priority(st: &State, oldpath: &str, newpath: &str, modname: &str) -> bool {
    let cfg = st.cfg;
    let dn = st.dirname;
    // Path lengths up to the end of the module name inside the basename.
    let cut = |p: &str| p.rfind('/').map_or(0, |i| i + 1) + modname.len();
    let (newlen, oldlen) = (cut(newpath), cut(oldpath));
    let rel = |p: &str, len: usize| -> Option<String> {
        if p.starts_with(dn) && len > dn.len() {
            p.get(dn.len() + 1..len).map(str::to_string)
        } else {
            None
        }
    };
    let relnew = rel(newpath, newlen);
    let relold = rel(oldpath, oldlen);
    for ov in &cfg.overrides {
        if relnew.as_deref() == Some(ov.as_str()) {
            return false;
        }
        if relold.as_deref() == Some(ov.as_str()) {
            return true;
        }
    }
    let under = |rel: &Option<String>, dir: &str| {
        rel.as_deref().is_some_and(|r| {
            r.len() > dir.len() && r.starts_with(dir) && r.as_bytes()[dir.len()] == b'/'
        })
    };
    let starts = |p: &str, len: usize, dir: &str| {
        len > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
    };
    let (mut bprio, mut oldprio, mut newprio) = (-1i64, -1i64, -1i64);
    let mut i = 0i64;
    for se in &cfg.searches {
        match se {
            Search::Builtin => bprio = i,
            Search::External => {
                for ext in &cfg.externals {
                    if starts(newpath, newlen, ext) {
                        newprio = i;
                    }
                    if starts(oldpath, oldlen, ext) {
                        oldprio = i;
                    }
                    i += 1;
                }
            }
            Search::Path(dir) => {
                if under(&relnew, dir) {
                    newprio = i;
                } else if under(&relold, dir) {
                    oldprio = i;
                }
            }
        }
        i += 1;
    }
    if newprio < 0 {
        newprio = bprio;
    }
    if oldprio < 0 {
        oldprio = bprio;
    }
    newprio <= oldprio
}

/// (relpath, uncrelpath) of a module path, as `depmod_module_add` computes them.
pub fn relpaths(path: &str, dirname: &str, modname: &str) -> (Option<String>, Option<String>) {
    if !(path.starts_with(dirname) && path.as_bytes().get(dirname.len()) == Some(&b'/')) {
        return (None, None);
    }
    let rel_start = dirname.len() + 1;
    let relpath = path[rel_start..].to_string();
    let lastslash = path.rfind('/').unwrap_or(0);
    let end = (lastslash + 1 + modname.len() + 3).min(path.len());
    let unc = path.get(rel_start..end).map(str::to_string);
    (Some(relpath), unc)
}

/// `depmod_modules_sort`: listed modules first in `modules.order` order (last listing
/// wins), the rest after them in their current order.
pub(crate) fn sort_by_modules_order(mods: &mut Vec<Mod>, dirname: &str, log: &mut Log) {
    let path = format!("{dirname}/modules.order");
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            log.msg(
                "WARNING",
                &format!(
                    "could not open modules.order at {dirname}: {}\n",
                    strerror(&e)
                ),
            );
            return;
        }
    };
    let lines = fgets_lines(&data);
    for (k, l) in lines.iter().enumerate() {
        if l.last() != Some(&b'\n') {
            log.msg(
                "ERROR",
                &format!(
                    "{dirname}/modules.order:{} corrupted line misses '\\n'\n",
                    k + 1
                ),
            );
            return;
        }
    }
    let total = lines.len() as i64 + 1;
    let by_unc: std::collections::HashMap<&str, usize> = mods
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.uncrelpath.as_deref().map(|u| (u, i)))
        .collect();
    let mut sort_idx = vec![1i64; mods.len()];
    for (k, l) in lines.iter().enumerate() {
        let line = String::from_utf8_lossy(&l[..l.len() - 1]);
        if let Some(&i) = by_unc.get(line.as_ref()) {
            sort_idx[i] = (k as i64 + 1) - total;
        }
    }
    let mut order: Vec<usize> = (0..mods.len()).collect();
    order.sort_by_key(|&i| sort_idx[i]);
    let mut slots: Vec<Option<Mod>> = std::mem::take(mods).into_iter().map(Some).collect();
    *mods = order.into_iter().filter_map(|i| slots[i].take()).collect();
}

/// Splits like repeated `fgets` with a `PATH_MAX` (4096) buffer.
pub fn fgets_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').map(|i| i + 1);
        let take = nl.unwrap_or(rest.len()).min(4095);
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// `depfile_up_to_date`: is `modules.dep` newer than every module file?
pub(crate) fn up_to_date(dirname: &str, log: &mut Log) -> bool {
    let dep = match std::fs::metadata(format!("{dirname}/modules.dep")) {
        Ok(m) => m,
        Err(e) => {
            log.msg(
                "ERROR",
                &format!(
                    "could not fstatat({dirname}, modules.dep): {}\n",
                    strerror(&e)
                ),
            );
            return false;
        }
    };
    let Ok(mtime) = dep.modified() else {
        return false;
    };
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    fn newer(dir: &str, mtime: u64, secs: &dyn Fn(std::time::SystemTime) -> u64) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        for de in rd.flatten() {
            let name = de.file_name().to_string_lossy().into_owned();
            if name == "build" || name == "source" {
                continue;
            }
            let p = format!("{dir}/{name}");
            let Ok(md) = std::fs::metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                if newer(&p, mtime, secs) {
                    return true;
                }
            } else if md.is_file()
                && (has_kmod_ext(&name) || is_plugin_file(&name))
                && md.modified().map(secs).unwrap_or(0) > mtime
            {
                return true;
            }
        }
        false
    }
    !newer(dirname, secs(mtime), &secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpaths_like_kmod() {
        let (r, u) = relpaths("/m/kernel/fs/xfs.ko.xz", "/m", "xfs");
        assert_eq!(r.as_deref(), Some("kernel/fs/xfs.ko.xz"));
        assert_eq!(u.as_deref(), Some("kernel/fs/xfs.ko"));
        let (r, u) = relpaths("/m/top.ko", "/m", "top");
        assert_eq!(
            (r.as_deref(), u.as_deref()),
            (Some("top.ko"), Some("top.ko"))
        );
        assert_eq!(relpaths("/other/x.ko", "/m", "x"), (None, None));
        assert_eq!(relpaths("/mm/x.ko", "/m", "x"), (None, None));
    }

    #[test]
    fn fgets_split() {
        assert_eq!(fgets_lines(b"a\nb\nc"), vec![&b"a\n"[..], b"b\n", b"c"]);
        assert!(fgets_lines(b"").is_empty());
    }
}
