//! depmod.d configuration (`search`, `override`, `external`, `exclude`), parsed like kmod 30.

use std::path::{Path, PathBuf};

/// Default configuration directories (host paths; `-b` does not apply to them).
pub const DEFAULT_CONFIG_PATHS: [&str; 4] = [
    "/etc/depmod.d",
    "/run/depmod.d",
    "/usr/local/lib/depmod.d",
    "/lib/depmod.d",
];

/// One `search` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// A subdirectory of the module directory.
    Path(String),
    /// The `built-in` keyword.
    Builtin,
    /// The `external` keyword.
    External,
}

/// The merged depmod configuration.
#[derive(Debug, Clone, Default)]
pub struct DepmodConfig {
    /// `search` entries, most recently added first (kmod prepends).
    pub searches: Vec<Search>,
    /// `override` paths (`subdir/modname`), most recent first.
    pub overrides: Vec<String>,
    /// `external` directories, most recent first.
    pub externals: Vec<String>,
    /// `exclude` directory names.
    pub excludes: Vec<String>,
}

impl DepmodConfig {
    /// Loads the configuration from `paths` (files or directories), as `cfg_load` does:
    /// `.conf` files sorted by basename, the first occurrence of a basename winning.
    pub fn load(paths: &[PathBuf], kversion: &str, log: &mut dyn FnMut(String)) -> DepmodConfig {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for p in paths {
            let Ok(md) = std::fs::metadata(p) else {
                continue;
            };
            if !md.is_dir() {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                insert_sorted(&mut files, name, p.clone());
                continue;
            }
            let Ok(rd) = std::fs::read_dir(p) else {
                log(format!(
                    "ERROR: files list {}: cannot read directory\n",
                    p.display()
                ));
                continue;
            };
            for de in rd.flatten() {
                let name = de.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.len() < 6 || !name.ends_with(".conf") {
                    continue;
                }
                if de.path().is_dir() {
                    log(format!(
                        "ERROR: Directories inside directories are not supported: {}/{}\n",
                        p.display(),
                        name
                    ));
                    continue;
                }
                insert_sorted(&mut files, name, de.path());
            }
        }
        let mut cfg = DepmodConfig::default();
        for (_, path) in files {
            cfg.parse_file(&path, kversion, log);
        }
        if cfg.searches.is_empty() {
            cfg.searches.insert(0, Search::Path("updates".into()));
        }
        cfg
    }

    fn parse_file(&mut self, path: &Path, kversion: &str, log: &mut dyn FnMut(String)) {
        let text = match std::fs::read(path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => {
                log(format!("ERROR: file parse {}: {e}\n", path.display()));
                return;
            }
        };
        for (linenum, line) in logical_lines(&text) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut toks = line.split([' ', '\t']).filter(|t| !t.is_empty());
            let Some(cmd) = toks.next() else { continue };
            let bad = |log: &mut dyn FnMut(String)| {
                log(format!(
                    "ERROR: {}:{}: ignoring bad line starting with '{}'\n",
                    path.display(),
                    linenum,
                    cmd
                ))
            };
            match cmd {
                "search" => {
                    for t in toks {
                        let s = match t {
                            "built-in" => Search::Builtin,
                            "external" => Search::External,
                            p => Search::Path(p.to_string()),
                        };
                        self.searches.insert(0, s);
                    }
                }
                "override" => {
                    let (Some(m), Some(v), Some(d)) = (toks.next(), toks.next(), toks.next())
                    else {
                        bad(log);
                        continue;
                    };
                    if kernel_matches(v, kversion) {
                        self.overrides.insert(0, format!("{d}/{m}"));
                    }
                }
                "external" => {
                    let (Some(v), Some(d)) = (toks.next(), toks.next()) else {
                        bad(log);
                        continue;
                    };
                    if kernel_matches(v, kversion) {
                        self.externals.insert(0, d.to_string());
                    }
                }
                "exclude" => self.excludes.extend(toks.map(str::to_string)),
                "include" | "make_map_files" => {}
                _ => bad(log),
            }
        }
    }
}

fn insert_sorted(files: &mut Vec<(String, PathBuf)>, name: String, path: PathBuf) {
    match files.binary_search_by(|(n, _)| n.as_str().cmp(name.as_str())) {
        Ok(_) => {}
        Err(i) => files.insert(i, (name, path)),
    }
}

/// kmod's `freadline_wrapped`: joins lines ending in `\` and yields (first line number,
/// joined text).
pub fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if cur.is_empty() {
            start = i + 1;
        }
        if let Some(l) = line.strip_suffix('\\') {
            cur.push_str(l);
            continue;
        }
        cur.push_str(line);
        out.push((start, std::mem::take(&mut cur)));
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

/// kmod's `cfg_kernel_matches`: `*`, or an extended regex matched anywhere in the version
/// (an invalid regex matches nothing).
fn kernel_matches(pattern: &str, kversion: &str) -> bool {
    pattern == "*" || regex_lite::Regex::new(pattern).is_ok_and(|re| re.is_match(kversion))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_config() {
        let dir = std::env::temp_dir().join(format!("modkit-depmod-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.conf"),
            "# c\nsearch extra built-in\noverride foo 6.* updates\nexternal 5.* /x\nexclude tmp\nbogus\n",
        )
        .unwrap();
        std::fs::write(dir.join("ignored.txt"), "search nope\n").unwrap();
        let mut logs = Vec::new();
        let cfg = DepmodConfig::load(std::slice::from_ref(&dir), "6.1.0", &mut |m| logs.push(m));
        assert_eq!(
            cfg.searches,
            vec![Search::Builtin, Search::Path("extra".into())]
        );
        assert_eq!(cfg.overrides, vec!["updates/foo".to_string()]);
        assert!(cfg.externals.is_empty());
        assert_eq!(cfg.excludes, vec!["tmp".to_string()]);
        assert_eq!(logs.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
        let none = DepmodConfig::load(&[], "6.1.0", &mut |_| {});
        assert_eq!(none.searches, vec![Search::Path("updates".into())]);
    }
}
