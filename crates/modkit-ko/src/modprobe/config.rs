//! modprobe.d configuration, the module directory's `modules.softdep` and the kernel
//! command line, parsed like libkmod 30 (`libkmod-config.c`).

use std::path::{Path, PathBuf};

use crate::depmod::config::logical_lines;
use crate::names::underscores;

/// Default configuration directories (host paths, not relative to `-d`).
pub const DEFAULT_CONFIG_PATHS: [&str; 4] = [
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// A `softdep` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Softdep {
    /// Module name or glob.
    pub name: String,
    /// Modules to load before.
    pub pre: Vec<String>,
    /// Modules to load after.
    pub post: Vec<String>,
}

/// The merged modprobe configuration, each list in file order.
#[derive(Debug, Clone, Default)]
pub struct ModprobeConfig {
    /// `alias GLOB MODNAME`.
    pub aliases: Vec<(String, String)>,
    /// `blacklist MODNAME` (and `modprobe.blacklist=` on the kernel command line).
    pub blacklists: Vec<String>,
    /// `options MODNAME REST` (REST verbatim).
    pub options: Vec<(String, String)>,
    /// `install MODNAME CMD`.
    pub install_commands: Vec<(String, String)>,
    /// `remove MODNAME CMD`.
    pub remove_commands: Vec<(String, String)>,
    /// `softdep MODNAME pre: ... post: ...`.
    pub softdeps: Vec<Softdep>,
    /// `weakdep MODNAME MOD...` (kmod 33+; kmod 30 rejects the line): the module and its
    /// weak dependencies as written.
    pub weakdeps: Vec<(String, Vec<String>)>,
}

/// A libkmod error message as Debian's kmod 30 (built with `--enable-debug`) prints it
/// while the configuration is loaded, before the tool installs its own logger:
/// `libkmod: ERROR <source file>:<line> <function>: <message>`. The source positions are
/// kmod 30's, so the text is byte-identical.
fn libkmod_err(line: u32, func: &str, msg: &str) -> String {
    format!("libkmod: ERROR ../libkmod/libkmod-config.c:{line} {func}: {msg}")
}

/// Splits like `strtok_r(s, "\t ")` once: (token, rest after one delimiter).
fn strtok(s: &str) -> Option<(&str, Option<&str>)> {
    let s = s.trim_start_matches([' ', '\t']);
    if s.is_empty() {
        return None;
    }
    match s.find([' ', '\t']) {
        Some(i) => {
            let rest = &s[i + 1..];
            Some((&s[..i], Some(rest)))
        }
        None => Some((s, None)),
    }
}

/// `strtok_r(NULL, "\0")`: the rest of the line, `None` when empty.
fn rest_verbatim(rest: Option<&str>) -> Option<&str> {
    rest.filter(|r| !r.is_empty())
}

/// kmod's `underscores` that fails on a stray bracket.
fn underscores_checked(s: &str) -> Option<String> {
    crate::names::alias_normalize(s).map(|_| underscores(s))
}

impl ModprobeConfig {
    /// Loads configuration from `paths` (or the defaults) plus `<dirname>/modules.softdep`,
    /// merged by basename (first occurrence wins), then the kernel command line `cmdline`.
    /// Problems are passed to `log` as complete lines in libkmod's format.
    pub fn load(
        paths: Option<&[PathBuf]>,
        dirname: &str,
        cmdline: Option<&str>,
        log: &mut dyn FnMut(String),
    ) -> ModprobeConfig {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        insert_sorted(
            &mut files,
            "modules.softdep".into(),
            Path::new(dirname).join("modules.softdep"),
        );
        // kmod 33+ (libkmod-config.c, kmod_config_new) reads modules.weakdep as well.
        insert_sorted(
            &mut files,
            "modules.weakdep".into(),
            Path::new(dirname).join("modules.weakdep"),
        );
        let defaults: Vec<PathBuf> = DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from).collect();
        for p in paths.unwrap_or(&defaults) {
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
                continue;
            };
            for de in rd.flatten() {
                let name = de.file_name().to_string_lossy().into_owned();
                if name.starts_with('.')
                    || name.len() < 6
                    || !(name.ends_with(".conf") || name.ends_with(".alias"))
                {
                    continue;
                }
                if de.path().is_dir() {
                    log(libkmod_err(
                        772,
                        "conf_files_filter_out",
                        &format!(
                            "Directories inside directories are not supported: {}/{}\n",
                            p.display(),
                            name
                        ),
                    ));
                    continue;
                }
                insert_sorted(&mut files, name, de.path());
            }
        }
        let mut cfg = ModprobeConfig::default();
        for (_, path) in &files {
            if let Ok(data) = std::fs::read(path) {
                cfg.parse(
                    &String::from_utf8_lossy(&data),
                    &path.display().to_string(),
                    log,
                );
            }
        }
        if let Some(c) = cmdline {
            cfg.parse_kcmdline(c, log);
        }
        cfg
    }

    /// Parses one configuration file's text.
    pub fn parse(&mut self, text: &str, filename: &str, log: &mut dyn FnMut(String)) {
        for (linenum, line) in logical_lines(text) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((cmd, rest)) = strtok(&line) else {
                continue;
            };
            let ok = match cmd {
                "alias" => (|| {
                    let (alias, rest) = strtok(rest?)?;
                    let (modname, _) = strtok(rest?)?;
                    self.aliases
                        .push((underscores_checked(alias)?, underscores_checked(modname)?));
                    Some(())
                })(),
                "blacklist" => (|| {
                    let (m, _) = strtok(rest?)?;
                    self.blacklists.push(underscores_checked(m)?);
                    Some(())
                })(),
                "options" | "install" | "remove" | "softdep" => (|| {
                    let (m, r) = strtok(rest?)?;
                    let m = underscores_checked(m)?;
                    let r = rest_verbatim(r)?.to_string();
                    match cmd {
                        "options" => self.options.push((m, r)),
                        "install" => self.install_commands.push((m, r)),
                        "remove" => self.remove_commands.push((m, r)),
                        _ => self.softdeps.push(parse_softdep(m, &r)),
                    }
                    Some(())
                })(),
                // kmod 34: `weakdep MODNAME` needs something after the name (even blanks).
                "weakdep" => (|| {
                    let (m, r) = strtok(rest?)?;
                    let m = underscores_checked(m)?;
                    let weak = r?.split_ascii_whitespace().map(String::from).collect();
                    self.weakdeps.push((m, weak));
                    Some(())
                })(),
                "include" | "config" => {
                    log(libkmod_err(
                        708,
                        "kmod_config_parse",
                        &format!(
                            "{filename}: command {cmd} is deprecated and not parsed anymore\n"
                        ),
                    ));
                    Some(())
                }
                _ => None,
            };
            if ok.is_none() {
                log(libkmod_err(
                    712,
                    "kmod_config_parse",
                    &format!(
                        "{filename} line {linenum}: ignoring bad line starting with '{cmd}'\n"
                    ),
                ));
            }
        }
    }

    /// `kmod_config_parse_kcmdline`: `mod.param=value` options and
    /// `modprobe.blacklist=a,b`.
    pub fn parse_kcmdline(&mut self, cmdline: &str, log: &mut dyn FnMut(String)) {
        #[derive(PartialEq, Clone, Copy)]
        enum St {
            Ignore,
            Modname,
            Param,
            Value,
        }
        let mut buf: Vec<u8> = cmdline.as_bytes().to_vec();
        buf.push(0);
        let mut state = St::Modname;
        let mut quoted = false;
        let mut quote_start: Option<usize> = None;
        let (mut modname, mut param, mut value) = (0usize, None::<usize>, None::<usize>);
        let mut p = 0usize;
        let cstr = |b: &[u8], i: usize| {
            let e = b[i..]
                .iter()
                .position(|&c| c == 0)
                .map_or(b.len(), |n| i + n);
            String::from_utf8_lossy(&b[i..e]).into_owned()
        };
        while p < buf.len() {
            let c = buf[p];
            let mut complete = false;
            match c {
                b'"' => {
                    quoted = !quoted;
                    if quoted && state == St::Modname && p == modname {
                        quote_start = Some(p);
                        modname = p + 1;
                    } else if state != St::Value {
                        state = St::Ignore;
                    }
                }
                0 | b' ' | b'\n' | b'\t' | 0x0b | 0x0c | b'\r' => {
                    if quoted && state == St::Value {
                    } else if quoted {
                        state = St::Ignore;
                    } else if state == St::Value || state == St::Param {
                        buf[p] = 0;
                        complete = true;
                    } else {
                        modname = p + 1;
                        state = St::Modname;
                        quote_start = None;
                    }
                }
                b'.' => {
                    if state == St::Modname {
                        buf[p] = 0;
                        param = Some(p + 1);
                        state = St::Param;
                    } else if state == St::Param {
                        state = St::Ignore;
                    }
                }
                b'=' => {
                    if state == St::Param {
                        value = Some(p + 1);
                        state = St::Value;
                    } else if state == St::Modname {
                        state = St::Ignore;
                    }
                }
                _ => {}
            }
            if complete {
                let (mut m, mut pa) = (modname, param.unwrap_or(p));
                let mut va = value;
                if let (Some(qs), Some(v)) = (quote_start, value) {
                    if qs < m {
                        buf.copy_within(m..v, qs);
                        m -= 1;
                        pa -= 1;
                        let v = v - 1;
                        buf[v] = b'"';
                        va = Some(v);
                    }
                }
                let mname = cstr(&buf, m);
                let pstr = cstr(&buf, pa);
                if mname == "modprobe" && pstr.starts_with("blacklist=") {
                    let v = va.map(|v| cstr(&buf, v)).unwrap_or_default();
                    for t in v.split(',') {
                        self.blacklists.push(t.to_string());
                    }
                } else {
                    match underscores_checked(&mname) {
                        Some(n) => self.options.push((n, pstr)),
                        None => log(libkmod_err(
                            489,
                            "kcmdline_parse_result",
                            &format!(
                                "Ignoring bad option on kernel command line while parsing module name: '{mname}'\n"
                            ),
                        )),
                    }
                }
                modname = p + 1;
                state = St::Modname;
                quote_start = None;
                param = None;
                value = None;
            }
            if c == 0 {
                break;
            }
            p += 1;
        }
    }
}

fn parse_softdep(name: String, line: &str) -> Softdep {
    let mut sd = Softdep {
        name,
        pre: Vec::new(),
        post: Vec::new(),
    };
    let mut mode = 0;
    for tok in line.split(|c: char| c.is_ascii_whitespace() || c == '\x0b') {
        match tok {
            "" => {}
            "pre:" => mode = 1,
            "post:" => mode = 2,
            t if mode == 1 => sd.pre.push(t.to_string()),
            t if mode == 2 => sd.post.push(t.to_string()),
            _ => {}
        }
    }
    sd
}

fn insert_sorted(files: &mut Vec<(String, PathBuf)>, name: String, path: PathBuf) {
    if let Err(i) = files.binary_search_by(|(n, _)| n.as_str().cmp(name.as_str())) {
        files.insert(i, (name, path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_verbatim() {
        let mut c = ModprobeConfig::default();
        let mut logs = Vec::new();
        c.parse(
            "alias my-alias fuse\noptions fuse max_user_bgreq=5   max_user_congthresh=7 \ninstall dummy /bin/echo hello $CMDLINE_OPTS\nsoftdep btrfs pre: a b post: c\nblacklist evil-mod\nbogus x\nalias only\n",
            "t.conf",
            &mut |m| logs.push(m),
        );
        assert_eq!(
            c.aliases,
            vec![("my_alias".to_string(), "fuse".to_string())]
        );
        assert_eq!(c.options[0].1, "max_user_bgreq=5   max_user_congthresh=7 ");
        assert_eq!(c.install_commands[0].1, "/bin/echo hello $CMDLINE_OPTS");
        assert_eq!(c.softdeps[0].pre, vec!["a", "b"]);
        assert_eq!(c.softdeps[0].post, vec!["c"]);
        assert_eq!(c.blacklists, vec!["evil_mod"]);
        assert_eq!(logs.len(), 2);
        let sd = parse_softdep("cifs".into(), "gcm");
        assert!(sd.pre.is_empty() && sd.post.is_empty());
    }

    #[test]
    fn weakdep_lines_as_kmod_34() {
        let mut c = ModprobeConfig::default();
        let mut logs = Vec::new();
        c.parse(
            "weakdep mod-a \t\nweakdep mod-b mod-a  mod-c\nweakdep mod-d\n",
            "w.conf",
            &mut |m| logs.push(m),
        );
        assert_eq!(
            c.weakdeps,
            vec![
                ("mod_a".to_string(), vec![]),
                (
                    "mod_b".to_string(),
                    vec!["mod-a".to_string(), "mod-c".to_string()]
                ),
            ]
        );
        // nothing after the name: a bad line, as in kmod 34
        assert_eq!(logs.len(), 1);
        assert!(logs[0].contains("line 3: ignoring bad line starting with 'weakdep'"));
    }

    #[test]
    fn kernel_command_line() {
        let mut c = ModprobeConfig::default();
        c.parse_kcmdline(
            "quiet mitigations=auto random.trust_cpu=1 cpuidle_haltpoll.force=1 modprobe.blacklist=a,b x.y.z=1 \"parport.dyndbg=file a +p\" my-mod.p",
            &mut |_| {},
        );
        assert_eq!(c.blacklists, vec!["a", "b"]);
        let o: Vec<(&str, &str)> = c
            .options
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            o,
            vec![
                ("random", "trust_cpu=1"),
                ("cpuidle_haltpoll", "force=1"),
                ("parport", "dyndbg=\"file a +p\""),
                ("my_mod", "p"),
            ]
        );
    }
}
