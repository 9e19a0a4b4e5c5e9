//! Module-name and alias normalisation helpers shared by kmod's tools.

/// Module file extensions that Debian's kmod 30 (`+ZSTD +XZ -ZLIB`) treats as modules.
/// `.ko.gz` files are still readable with [`crate::KoModule`], but depmod and modinfo
/// ignore them, exactly as kmod does.
pub const KMOD_EXTS: [&str; 3] = [".ko", ".ko.xz", ".ko.zst"];

/// Does this file name end in one of [`KMOD_EXTS`] (and has something before it)?
pub fn has_kmod_ext(name: &str) -> bool {
    KMOD_EXTS
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e))
}

/// [`has_kmod_ext`] on a file name's bytes (names need not be UTF-8).
pub fn has_kmod_ext_bytes(name: &[u8]) -> bool {
    KMOD_EXTS
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e.as_bytes()))
}

/// [`is_plugin_file`] on a file name's bytes.
pub fn is_plugin_file_bytes(name: &[u8]) -> bool {
    name.len() > 3 && name.ends_with(b".so")
}

/// [`path_to_modname`] on a path's bytes: kmod works on C strings, so a file named
/// `caf\xe9.ko` is the module `caf\xe9` (bytes kept as they are, not UTF-8).
pub fn path_to_modname_bytes(path: &[u8]) -> Option<Vec<u8>> {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    if base.is_empty() {
        return None;
    }
    let stem = base.split(|&b| b == b'.').next().unwrap_or(b"");
    Some(
        stem.iter()
            .map(|&b| if b == b'-' { b'_' } else { b })
            .collect(),
    )
}

/// Is this a modkit plugin's file name (`NAME.so`, issue 11)? depmod indexes plugins in
/// the same tree layout and files as `.ko` modules (a modkit extension; kmod ignores them).
pub fn is_plugin_file(name: &str) -> bool {
    name.len() > 3 && name.ends_with(".so")
}

/// The symbol name that stands for a plugin in depmod's symbol resolution: a plugin
/// "exports" `modkit_plugin:NAME` and "imports" that of each `depends=` entry, so that
/// modules.dep, modules.symbols and their .bin indexes come from the same code.
pub fn plugin_symbol(name: &str) -> String {
    format!("modkit_plugin:{}", modname_normalize(name))
}

/// The symbol name that stands for a function a plugin exports (`export=NAME` in its
/// `.modinfo`) or imports (`import=NAME`): plugins link only among themselves, so their
/// symbols live apart from kernel modules' (`modkit_plugin_sym:NAME`), and depmod computes
/// a plugin's dependencies from its imports as it does for a module's undefined symbols.
pub fn plugin_export_symbol(name: &str) -> String {
    format!("modkit_plugin_sym:{name}")
}

/// kmod's `modname_normalize`: up to the first `.`, with `-` replaced by `_`.
pub fn modname_normalize(name: &str) -> String {
    name.split('.').next().unwrap_or("").replace('-', "_")
}

/// kmod's `path_to_modname`: [`modname_normalize`] of the basename.
pub fn path_to_modname(path: &str) -> Option<String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    if base.is_empty() {
        return None;
    }
    Some(modname_normalize(base))
}

/// kmod's `alias_normalize`: `-` becomes `_` outside `[...]`; `None` on an unmatched
/// bracket.
pub fn alias_normalize(alias: &str) -> Option<String> {
    let b = alias.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' => out.push(b'_'),
            b']' => return None,
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    out.push(b[i]);
                    i += 1;
                }
                if i >= b.len() {
                    return None;
                }
                out.push(b']');
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// kmod's `underscores`: like [`alias_normalize`], but on a stray bracket the rest of the
/// string is left untouched (kmod stops converting there).
pub fn underscores(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' => out[i] = b'_',
            b']' => return String::from_utf8_lossy(&out).into_owned(),
            b'[' => {
                let close = b[i..].iter().position(|&c| c == b']');
                match close {
                    Some(n) => i += n,
                    None => return String::from_utf8_lossy(&out).into_owned(),
                }
            }
            _ => {}
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Running kernel release (`uname -r`).
pub fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The module directory libkmod would use: `ROOT/lib/modules/VERSION` made absolute, or
/// `/lib/modules/$(uname -r)`.
pub fn kmod_dirname(root: Option<&str>, version: Option<&str>) -> String {
    if root.is_none() && version.is_none() {
        return format!("/lib/modules/{}", uname_release());
    }
    let v = version.map(str::to_string).unwrap_or_else(uname_release);
    let d = format!("{}/lib/modules/{v}", root.unwrap_or(""));
    if d.starts_with('/') {
        d
    } else {
        let cwd = std::env::current_dir()
            .map(|c| c.display().to_string())
            .unwrap_or_default();
        format!("{cwd}/{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(modname_normalize("nvme-core.ko.xz"), "nvme_core");
        assert_eq!(path_to_modname("kernel/a-b/c-d.ko").unwrap(), "c_d");
        assert_eq!(alias_normalize("pci:v-[0-9]d-").unwrap(), "pci:v_[0-9]d_");
        assert_eq!(alias_normalize("a]"), None);
        assert_eq!(alias_normalize("a[1-"), None);
        assert_eq!(underscores("a-b[1-2]-c"), "a_b[1-2]_c");
        assert!(has_kmod_ext("x.ko.zst"));
        assert!(!has_kmod_ext(".ko"));
        assert!(!has_kmod_ext("x.ko.gz"));
        assert_eq!(
            path_to_modname_bytes(b"/m/k/caf\xe9-x.ko.xz").unwrap(),
            b"caf\xe9_x"
        );
        assert_eq!(path_to_modname_bytes(b"/m/"), None);
        assert!(has_kmod_ext_bytes(b"caf\xe9.ko") && !has_kmod_ext_bytes(b".ko"));
        assert!(is_plugin_file_bytes(b"p\xff.so"));
    }
}
