//! Finding modules under the module directory (and `external` directories) with kmod's
//! duplicate-resolution rules, and ordering them by `modules.order`.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::config::{DepmodConfig, Search};
use super::{strerror, Log, Mod};
use crate::names::{has_kmod_ext_bytes, is_plugin_file_bytes, path_to_modname_bytes};

/// A module file kept by discovery. Paths and names are bytes, as kmod's C strings are: a
/// file named `caf\xe9.ko` is found and indexed as it is, whatever the locale.
#[derive(Debug, Clone)]
pub struct Found {
    /// Absolute path.
    pub path: Vec<u8>,
    /// Normalised module name.
    pub modname: Vec<u8>,
}

/// A path given as bytes.
pub(crate) fn bpath(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// Walks `dirname` then every external directory, keeping one file per module name.
pub fn search(dirname: &str, cfg: &DepmodConfig, log: &mut Log) -> std::io::Result<Vec<Found>> {
    let mut st = State {
        found: Vec::new(),
        by_name: std::collections::HashMap::new(),
        dirname,
        cfg,
        ancestors: Vec::new(),
        base_fd: 3,
    };
    if let Err(e) = std::fs::read_dir(crate::bytestr::path(dirname)) {
        log.msg(
            "ERROR",
            &format!("could not open directory {dirname}: {}\n", strerror(&e)),
        );
        return Err(e);
    }
    st.base_fd = first_free_fd(dirname);
    walk(&mut st, &crate::bytestr::to_bytes(dirname), 0, log);
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
        walk(&mut st, ext.as_bytes(), 0, log);
    }
    Ok(st.found.into_iter().flatten().collect())
}

/// The descriptor `opendir(dir)` gets: kmod names a directory by its descriptor in its
/// messages (`fstatat(5, name): ...`), and its walk holds one per level, so the directory
/// at depth `d` is `first + d`.
fn first_free_fd(dir: &str) -> i32 {
    use std::os::fd::AsRawFd;
    std::fs::File::open(crate::bytestr::path(dir)).map_or(3, |f| f.as_raw_fd())
}

struct State<'a> {
    found: Vec<Option<Found>>,
    by_name: std::collections::HashMap<Vec<u8>, usize>,
    dirname: &'a str,
    cfg: &'a DepmodConfig,
    /// (device, inode, path) of the directories being walked, outermost first.
    ancestors: Vec<(u64, u64, Vec<u8>)>,
    /// [`first_free_fd`] of the module directory.
    base_fd: i32,
}

/// `should_exclude_dir` (it applies to files too).
fn excluded(cfg: &DepmodConfig, name: &[u8]) -> bool {
    name == b"."
        || name == b".."
        || name == b"build"
        || name == b"source"
        || cfg.excludes.iter().any(|e| e.as_bytes() == name)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `depmod_modules_search_dir`: entries in `readdir` order; a symlink (or any entry whose
/// type `readdir` does not give as a file or directory) is followed with `fstatat`, as
/// kmod does, so symlinked module files and directories are indexed under the link's
/// path. kmod has no loop check (a `dir -> ..` link makes it descend until it runs out of
/// descriptors, then index modules under paths like `kernel/up/kernel/up/...`); modkit
/// stops at a directory whose (device, inode) is one of the directories being walked and
/// says so once. A directory reached twice without a loop (two links to it) is walked
/// twice, as kmod does.
fn walk(st: &mut State, dir: &[u8], depth: usize, log: &mut Log) {
    let md = match std::fs::metadata(bpath(dir)) {
        Ok(md) => md,
        Err(e) => {
            log.msg_bytes(
                "ERROR",
                &cat(&[b"stat(", dir, b"): ", strerror(&e).as_bytes(), b"\n"]),
            );
            return;
        }
    };
    if let Some((_, _, first)) = st
        .ancestors
        .iter()
        .find(|(d, i, _)| *d == md.dev() && *i == md.ino())
    {
        log.msg_bytes(
            "ERROR",
            &cat(&[
                dir,
                b": a directory loop: the same directory (device and inode) as ",
                first,
                b", not descending\n",
            ]),
        );
        return;
    }
    let dfd = st.base_fd + depth as i32;
    let rd = match std::fs::read_dir(bpath(dir)) {
        Ok(rd) => rd,
        Err(e) => {
            // Reported by the parent as kmod's `openat` failure; here only for a root.
            log.msg_bytes(
                "ERROR",
                &cat(&[
                    b"could not open directory ",
                    dir,
                    b": ",
                    strerror(&e).as_bytes(),
                    b"\n",
                ]),
            );
            return;
        }
    };
    st.ancestors.push((md.dev(), md.ino(), dir.to_vec()));
    for de in rd {
        let Ok(de) = de else { continue };
        let name = de.file_name();
        let name = name.as_bytes();
        if excluded(st.cfg, name) {
            continue;
        }
        let path = cat(&[dir, b"/", name]);
        let is_dir = match de.file_type() {
            Ok(ft) if ft.is_file() => false,
            Ok(ft) if ft.is_dir() => true,
            _ => match std::fs::metadata(bpath(&path)) {
                Ok(md) if md.is_file() => false,
                Ok(md) if md.is_dir() => true,
                Ok(md) => {
                    log.msg_bytes(
                        "ERROR",
                        &cat(&[
                            b"unsupported file type ",
                            &path,
                            format!(": {:o}\n", md.mode() & 0o170000).as_bytes(),
                        ]),
                    );
                    continue;
                }
                Err(e) => {
                    log.msg_bytes(
                        "ERROR",
                        &cat(&[
                            format!("fstatat({dfd}, ").as_bytes(),
                            name,
                            b"): ",
                            strerror(&e).as_bytes(),
                            b"\n",
                        ]),
                    );
                    continue;
                }
            },
        };
        if is_dir {
            if let Err(e) = std::fs::File::open(bpath(&path)) {
                log.msg_bytes(
                    "ERROR",
                    &cat(&[
                        format!("openat({dfd}, ").as_bytes(),
                        name,
                        b", O_RDONLY): ",
                        strerror(&e).as_bytes(),
                        b"\n",
                    ]),
                );
                continue;
            }
            walk(st, &path, depth + 1, log);
        } else {
            consider_file(st, path, name);
        }
    }
    st.ancestors.pop();
}

fn consider_file(st: &mut State, path: Vec<u8>, name: &[u8]) {
    if !has_kmod_ext_bytes(name) && !is_plugin_file_bytes(name) {
        return;
    }
    let Some(modname) = path_to_modname_bytes(&path) else {
        return;
    };
    if let Some(&old) = st.by_name.get(&modname) {
        let oldf = st.found[old]
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_default();
        if existing_is_higher_priority(st, &oldf, &path, &modname) {
            tracing::debug!(
                "Ignored lower priority: {}, higher: {}",
                String::from_utf8_lossy(&path),
                String::from_utf8_lossy(&oldf)
            );
            return;
        }
        st.found[old] = None;
    }
    st.by_name.insert(modname.clone(), st.found.len());
    st.found.push(Some(Found { path, modname }));
}

/// `depmod_module_is_higher_priority`: is the already-found `oldpath` preferred over
/// `newpath`?
fn existing_is_higher_priority(st: &State, oldpath: &[u8], newpath: &[u8], modname: &[u8]) -> bool {
    let cfg = st.cfg;
    let dn = crate::bytestr::to_bytes(st.dirname);
    let dn: &[u8] = &dn;
    // Path lengths up to the end of the module name inside the basename.
    let cut = |p: &[u8]| p.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1) + modname.len();
    let (newlen, oldlen) = (cut(newpath), cut(oldpath));
    let rel = |p: &[u8], len: usize| -> Option<Vec<u8>> {
        if p.starts_with(dn) && len > dn.len() {
            p.get(dn.len() + 1..len).map(<[u8]>::to_vec)
        } else {
            None
        }
    };
    let relnew = rel(newpath, newlen);
    let relold = rel(oldpath, oldlen);
    for ov in &cfg.overrides {
        if relnew.as_deref() == Some(ov.as_bytes()) {
            return false;
        }
        if relold.as_deref() == Some(ov.as_bytes()) {
            return true;
        }
    }
    let under = |rel: &Option<Vec<u8>>, dir: &str| {
        let dir = dir.as_bytes();
        rel.as_deref()
            .is_some_and(|r| r.len() > dir.len() && r.starts_with(dir) && r[dir.len()] == b'/')
    };
    let starts = |p: &[u8], len: usize, dir: &str| {
        let dir = dir.as_bytes();
        len > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/'
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

/// A relative path and its `uncrelpath` (cut after `<modname>.ko`), as bytes.
pub type RelPaths = (Option<Vec<u8>>, Option<Vec<u8>>);

/// (relpath, uncrelpath) of a module path, as `depmod_module_add` computes them.
pub fn relpaths(path: &[u8], dirname: &str, modname: &[u8]) -> RelPaths {
    let dn = crate::bytestr::to_bytes(dirname);
    let dn: &[u8] = &dn;
    if !(path.starts_with(dn) && path.get(dn.len()) == Some(&b'/')) {
        return (None, None);
    }
    let rel_start = dn.len() + 1;
    let relpath = path[rel_start..].to_vec();
    let lastslash = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let end = (lastslash + 1 + modname.len() + 3).min(path.len());
    let unc = path.get(rel_start..end).map(<[u8]>::to_vec);
    (Some(relpath), unc)
}

/// `depmod_modules_sort`: listed modules first in `modules.order` order (last listing
/// wins), the rest after them in their current order.
pub(crate) fn sort_by_modules_order(mods: &mut Vec<Mod>, dirname: &str, log: &mut Log) {
    let path = format!("{dirname}/modules.order");
    let data = match std::fs::read(crate::bytestr::path(&path)) {
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
    let by_unc: std::collections::HashMap<&[u8], usize> = mods
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.uncrelpath.as_deref().map(|u| (u, i)))
        .collect();
    let mut sort_idx = vec![1i64; mods.len()];
    for (k, l) in lines.iter().enumerate() {
        if let Some(&i) = by_unc.get(&l[..l.len() - 1]) {
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
    let dep = match std::fs::metadata(crate::bytestr::path(&format!("{dirname}/modules.dep"))) {
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
    // `up` holds the (device, inode) of the directories being walked: a symlink loop is
    // not followed (kmod's walk would descend until it runs out of descriptors).
    fn newer(
        dir: &[u8],
        up: &mut Vec<(u64, u64)>,
        mtime: u64,
        secs: &dyn Fn(std::time::SystemTime) -> u64,
    ) -> bool {
        let Ok(md) = std::fs::metadata(bpath(dir)) else {
            return false;
        };
        if up.contains(&(md.dev(), md.ino())) {
            return false;
        }
        let Ok(rd) = std::fs::read_dir(bpath(dir)) else {
            return false;
        };
        up.push((md.dev(), md.ino()));
        let found = newer_in(rd, dir, up, mtime, secs);
        up.pop();
        found
    }
    fn newer_in(
        rd: std::fs::ReadDir,
        dir: &[u8],
        up: &mut Vec<(u64, u64)>,
        mtime: u64,
        secs: &dyn Fn(std::time::SystemTime) -> u64,
    ) -> bool {
        for de in rd.flatten() {
            let name = de.file_name();
            let name = name.as_bytes();
            if name == b"build" || name == b"source" {
                continue;
            }
            let p = cat(&[dir, b"/", name]);
            let Ok(md) = std::fs::metadata(bpath(&p)) else {
                continue;
            };
            if md.is_dir() {
                if newer(&p, up, mtime, secs) {
                    return true;
                }
            } else if md.is_file()
                && (has_kmod_ext_bytes(name) || is_plugin_file_bytes(name))
                && md.modified().map(secs).unwrap_or(0) > mtime
            {
                return true;
            }
        }
        false
    }
    !newer(
        &crate::bytestr::to_bytes(dirname),
        &mut Vec::new(),
        secs(mtime),
        &secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpaths_like_kmod() {
        let (r, u) = relpaths(b"/m/kernel/fs/xfs.ko.xz", "/m", b"xfs");
        assert_eq!(r.as_deref(), Some(&b"kernel/fs/xfs.ko.xz"[..]));
        assert_eq!(u.as_deref(), Some(&b"kernel/fs/xfs.ko"[..]));
        let (r, u) = relpaths(b"/m/top.ko", "/m", b"top");
        assert_eq!(
            (r.as_deref(), u.as_deref()),
            (Some(&b"top.ko"[..]), Some(&b"top.ko"[..]))
        );
        let (r, _) = relpaths(b"/m/caf\xe9.ko", "/m", b"caf\xe9");
        assert_eq!(r.as_deref(), Some(&b"caf\xe9.ko"[..]));
        assert_eq!(relpaths(b"/other/x.ko", "/m", b"x"), (None, None));
        assert_eq!(relpaths(b"/mm/x.ko", "/m", b"x"), (None, None));
    }

    #[test]
    fn fgets_split() {
        assert_eq!(fgets_lines(b"a\nb\nc"), vec![&b"a\n"[..], b"b\n", b"c"]);
        assert!(fgets_lines(b"").is_empty());
    }
}
