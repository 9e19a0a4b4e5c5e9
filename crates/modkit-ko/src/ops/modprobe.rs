//! `modprobe`, as kmod 30's `tools/modprobe.c` over libkmod's
//! `kmod_module_probe_insert_module`: loading with dependencies, softdeps, modprobe.d
//! options/install/remove/blacklist and kernel command-line options; `-r` removing the
//! dependencies left unused; `-a`, `-n`, `-q`, `-v`, `-f`/`--force-*`, `--first-time`,
//! `-c`, `-D`, `-R`, `-i`, `-b`, `-w`, `--remove-holders`, `--show-modversions`,
//! `--show-exports`, `-C`, `-d`, `-S`, `-V`; `MODPROBE_OPTIONS` is read as kmod reads it.
//! Messages, stdout and exit statuses are kmod's. One addition: insertions take a
//! per-module lock ([`super::lock`]) so a storm of identical requests makes one
//! `finit_module` call and every caller gets its true result.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use super::getopt::{getopt_long, HasArg, LongOpt};
use super::insert::insert_file;
use super::lock::{Acquired, ModuleLock};
use super::log::{Log, LOG_CRIT, LOG_EMERG, LOG_ERR, LOG_INFO, LOG_WARNING};
use super::state::{self, InitState};
use super::{phase, print_version, sys};
use crate::modprobe::config::ModprobeConfig;
use crate::modprobe::context::{Context, ModId};

const fn lo(name: &'static str, has_arg: HasArg, val: u32) -> LongOpt {
    LongOpt { name, has_arg, val }
}

const LONGS: &[LongOpt] = &[
    lo("all", HasArg::No, 'a' as u32),
    lo("remove", HasArg::No, 'r' as u32),
    lo("remove-dependencies", HasArg::No, 5),
    lo("remove-holders", HasArg::No, 5),
    lo("wait", HasArg::Required, 'w' as u32),
    lo("resolve-alias", HasArg::No, 'R' as u32),
    lo("first-time", HasArg::No, 3),
    lo("ignore-install", HasArg::No, 'i' as u32),
    lo("ignore-remove", HasArg::No, 'i' as u32),
    lo("use-blacklist", HasArg::No, 'b' as u32),
    lo("force", HasArg::No, 'f' as u32),
    lo("force-modversion", HasArg::No, 2),
    lo("force-vermagic", HasArg::No, 1),
    lo("show-depends", HasArg::No, 'D' as u32),
    lo("showconfig", HasArg::No, 'c' as u32),
    lo("show-config", HasArg::No, 'c' as u32),
    lo("show-modversions", HasArg::No, 4),
    lo("dump-modversions", HasArg::No, 4),
    lo("show-exports", HasArg::No, 6),
    lo("dry-run", HasArg::No, 'n' as u32),
    lo("show", HasArg::No, 'n' as u32),
    lo("config", HasArg::Required, 'C' as u32),
    lo("dirname", HasArg::Required, 'd' as u32),
    lo("set-version", HasArg::Required, 'S' as u32),
    lo("syslog", HasArg::No, 's' as u32),
    lo("quiet", HasArg::No, 'q' as u32),
    lo("verbose", HasArg::No, 'v' as u32),
    lo("version", HasArg::No, 'V' as u32),
    lo("help", HasArg::No, 'h' as u32),
];

const SHORTS: &str = "arw:RibfDcnC:d:S:sqvVh";

/// The settings of one modprobe run (kmod's file-level statics).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `verbose` (`LOG_WARNING` by default; `-q`: `LOG_EMERG`; each `-v` adds one).
    pub verbose: i32,
    /// `log_priority` of `LOG(...)`: `LOG_CRIT` (fatal), `LOG_WARNING` with `-a`.
    pub log_priority: i32,
    /// `-D`: print actions.
    pub do_show: bool,
    /// `-n`/`-D`: do nothing.
    pub dry_run: bool,
    /// `-D`: do not look at what is loaded.
    pub ignore_loaded: bool,
    /// `-R`.
    pub lookup_only: bool,
    /// `--first-time`.
    pub first_time: bool,
    /// `-i`.
    pub ignore_commands: bool,
    /// `-b`.
    pub use_blacklist: bool,
    /// `-f`.
    pub force: bool,
    /// `--force-modversion`.
    pub strip_modversion: bool,
    /// `--force-vermagic`.
    pub strip_vermagic: bool,
    /// `--remove-holders`.
    pub remove_holders: bool,
    /// `-w MSEC`.
    pub wait_msec: u64,
    /// Extra environment for install/remove commands (`MODPROBE_OPTIONS`).
    pub env_options: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            verbose: LOG_WARNING,
            log_priority: LOG_CRIT,
            do_show: false,
            dry_run: false,
            ignore_loaded: false,
            lookup_only: false,
            first_time: false,
            ignore_commands: false,
            use_blacklist: false,
            force: false,
            strip_modversion: false,
            strip_vermagic: false,
            remove_holders: false,
            wait_msec: 0,
            env_options: None,
        }
    }
}

/// A modprobe run: settings, libkmod context, logger.
pub struct Modprobe {
    /// Settings.
    pub s: Settings,
    /// The module directory's indexes and configuration.
    pub ctx: Context,
    /// Loggers.
    pub log: Log,
    /// `->required` of the current probe.
    required: HashSet<ModId>,
    /// `->ignorecmd`.
    ignorecmd: HashSet<ModId>,
    /// `->visited`.
    visited: HashSet<ModId>,
    /// The request's outcome as (module name, errno), when a run of the same request can
    /// print it alone: one module, nothing printed before its result, no command run.
    replay: Option<(String, i32)>,
    /// An install command ran (its output is not the tool's own).
    ran_command: bool,
}

impl std::fmt::Debug for Modprobe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modprobe").field("s", &self.s).finish()
    }
}

/// modprobe's stdout: names and paths are [`crate::bytestr`] strings, written as the bytes
/// they stand for.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = write!(crate::bytestr::Raw(std::io::stdout().lock()), $($t)*);
    }};
}

fn flush_stdout() {
    let _ = std::io::stdout().flush();
}

/// `prepend_options_from_env`: `MODPROBE_OPTIONS`' words (quotes group) before the
/// command line's.
pub fn prepend_env(env: Option<&str>, argv: &[String]) -> Vec<String> {
    let Some(env) = env else {
        return argv.to_vec();
    };
    let mut words = Vec::new();
    let b = env.as_bytes();
    let mut cur = Vec::new();
    let mut quote: Option<u8> = None;
    let mut started = false;
    for &c in b {
        match quote {
            None if c == b' ' => {
                words.push(String::from_utf8_lossy(&cur).into_owned());
                cur.clear();
                started = false;
            }
            None if c == b'"' || c == b'\'' => {
                quote = Some(c);
                started = true;
            }
            Some(q) if c == q => quote = None,
            _ => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started || !cur.is_empty() {
        words.push(String::from_utf8_lossy(&cur).into_owned());
    }
    let mut out = vec![argv[0].clone()];
    out.extend(words);
    out.extend(argv[1..].iter().cloned());
    out
}

/// `module_options_concat`.
pub(crate) fn concat_options(opt: Option<&str>, xopt: Option<&str>) -> Option<String> {
    let ol = opt.map_or(0, str::len);
    let xl = xopt.map_or(0, str::len);
    if ol == 0 && xl == 0 {
        return None;
    }
    let mut r = String::new();
    if let Some(o) = opt {
        r.push_str(o);
        r.push(' ');
    }
    if let Some(x) = xopt {
        r.push_str(x);
    }
    Some(r)
}

/// modprobe.c's message for a module that could not be inserted (`errno` > 0).
fn insert_error_text(name: &str, errno: i32) -> String {
    match errno {
        libc::EEXIST => format!("could not insert '{name}': Module already in kernel\n"),
        libc::ENOENT => format!(
            "could not insert '{name}': Unknown symbol in module, or unknown parameter (see dmesg)\n"
        ),
        e => format!("could not insert '{name}': {}\n", sys::strerror(e)),
    }
}

/// Storms, request level (issue 12): concurrent runs of the same plain request
/// (`modprobe [-q] [-b] [-s] [-d DIR] [-S VERSION] [-C CONFIG] NAME [PARAMS]`: what udev
/// and systemd's modprobe@ run; the key is the whole argument list) take
/// the lock of the request itself ([`ModuleLock::open_request`]) before reading any
/// configuration or index. The first does the work; the others wait, and when the run
/// they waited for ended with a result that one line states (loaded, or "could not insert
/// 'NAME': ERROR"), print that line and exit as it did, without reading anything: each of
/// a storm's processes then costs little more than its start-up. Any other ending (several
/// modules, messages before the result, an install command, a run that died) makes the
/// waiters run in full, where the module's own lock still applies. Runs that start after
/// the attempt ended run in full too (a failure's record under the module's lock is keyed
/// by the options modprobe.d gives, which this level does not read). Not inside an install
/// or remove command (`MODPROBE_MODULE` set): a command running the same request would
/// wait for itself.
fn request_lock_applies(opts: &[super::getopt::Opt], operands: &[String]) -> bool {
    !operands.is_empty()
        && opts.iter().all(|o| {
            ['q', 'b', 's', 'd', 'S', 'C']
                .iter()
                .any(|&c| o.val == c as u32)
        })
        && std::env::var_os("MODPROBE_MODULE").is_none()
}

/// Hex of the bytes a [`crate::bytestr`] name stands for (a record token).
fn hex_name(name: &str) -> String {
    crate::bytestr::to_bytes(name)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [`hex_name`] back.
fn unhex_name(h: &str) -> Option<String> {
    if h.is_empty() || h.len() % 2 != 0 {
        return None;
    }
    let b: Option<Vec<u8>> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect();
    Some(crate::bytestr::from_bytes(&b?))
}

/// `$CMDLINE_OPTS` substitution of install/remove commands.
fn substitute(cmd: &str, opts: &str) -> String {
    cmd.replace("$CMDLINE_OPTS", opts)
}

/// Runs `cmd` with `/bin/sh -c` as `system(3)` does; the exit status, or `None` when the
/// shell could not be started.
fn system(cmd: &str, modname: &str, env_options: Option<&str>) -> Option<i32> {
    flush_stdout();
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c").arg(cmd).env("MODPROBE_MODULE", modname);
    if let Some(o) = env_options {
        c.env("MODPROBE_OPTIONS", o);
    }
    let st = c.status().ok()?;
    use std::os::unix::process::ExitStatusExt;
    Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
}

impl Modprobe {
    /// A run over `ctx` with settings `s`.
    pub fn new(s: Settings, ctx: Context, log: Log) -> Modprobe {
        Modprobe {
            s,
            ctx,
            log,
            required: HashSet::new(),
            ignorecmd: HashSet::new(),
            visited: HashSet::new(),
            replay: None,
            ran_command: false,
        }
    }

    fn show(&self, text: &str) {
        if !self.s.do_show && self.s.verbose <= LOG_WARNING {
            return;
        }
        out!("{text}");
        flush_stdout();
    }

    /// `LOG(...)` of modprobe.c.
    fn log_(&mut self, msg: &str) {
        flush_stdout();
        let p = self.s.log_priority;
        self.log.printf(p, msg);
    }

    fn err(&mut self, msg: &str) {
        flush_stdout();
        self.log.err(msg);
    }

    /// `kmod_module_get_initstate`.
    fn initstate(&mut self, id: ModId) -> Result<InitState, i32> {
        if self.ctx.is_builtin(id) {
            return Ok(InitState::Builtin);
        }
        state::initstate(&self.ctx.get(id).name.clone())
    }

    /// `module_is_inkernel`.
    fn is_inkernel(&mut self, id: ModId) -> bool {
        matches!(self.initstate(id), Ok(InitState::Live | InitState::Builtin))
    }

    fn is_blacklisted(&self, id: ModId) -> bool {
        self.ctx.is_blacklisted(id)
    }

    /// `lookup_softdep`: unresolvable names are reported and skipped.
    fn lookup_softdep(&mut self, names: &[String]) -> Vec<ModId> {
        let mut v = Vec::new();
        for n in names {
            match self.ctx.lookup(n) {
                Some(ids) => v.extend(ids),
                None => self.log.kmod(
                    LOG_ERR,
                    "libkmod-module.c",
                    1567,
                    "lookup_softdep",
                    &format!("failed to lookup soft dependency '{n}', continuing anyway.\n"),
                ),
            }
        }
        v
    }

    /// `kmod_module_get_softdeps`: the first matching softdep line.
    fn softdeps(&mut self, id: ModId) -> (Vec<ModId>, Vec<ModId>) {
        let name = self.ctx.get(id).name.clone();
        let sd = self
            .ctx
            .config
            .softdeps
            .iter()
            .find(|s| crate::fnmatch::fnmatch(s.name.as_bytes(), name.as_bytes()))
            .cloned();
        match sd {
            Some(sd) => {
                let pre = self.lookup_softdep(&sd.pre);
                let post = self.lookup_softdep(&sd.post);
                (pre, post)
            }
            None => (Vec::new(), Vec::new()),
        }
    }

    fn remove_command(&self, id: ModId) -> Option<String> {
        let name = &self.ctx.get(id).name;
        self.ctx
            .config
            .remove_commands
            .iter()
            .find(|(m, _)| crate::fnmatch::fnmatch(m.as_bytes(), name.as_bytes()))
            .map(|(_, c)| c.clone())
    }

    fn fill_softdep(&mut self, id: ModId, list: &mut Vec<ModId>) {
        let (pre, post) = self.softdeps(id);
        for &m in &pre {
            self.probe_list(m, false, false, list);
        }
        list.push(id);
        if !pre.is_empty() || !post.is_empty() {
            self.ignorecmd.insert(id);
        } else {
            self.ignorecmd.remove(&id);
        }
        for &m in &post {
            self.probe_list(m, false, false, list);
        }
    }

    fn probe_list(&mut self, id: ModId, required: bool, ignorecmd: bool, list: &mut Vec<ModId>) {
        if !self.visited.insert(id) {
            return;
        }
        let deps = self.ctx.dependencies(id);
        if required {
            self.required.insert(id);
            self.required.extend(deps.iter().copied());
        }
        for d in deps {
            self.fill_softdep(d, list);
        }
        if ignorecmd {
            list.push(id);
            self.ignorecmd.insert(id);
        } else {
            self.fill_softdep(id, list);
        }
    }

    fn print_action(&mut self, m: ModId, install: bool, options: &str) {
        if install {
            let cmd = self.ctx.install_command(m).unwrap_or_default();
            out!("install {cmd} {options}\n");
        } else {
            match self.ctx.path(m) {
                Some(p) => out!("insmod {p} {options}\n"),
                None => {
                    if self.initstate(m) == Ok(InitState::Builtin) {
                        out!("builtin {}\n", self.ctx.get(m).name);
                    }
                }
            }
        }
        flush_stdout();
    }

    /// libkmod's `command_do` for install commands: 0 or `-EINVAL`.
    fn install_command_do(&mut self, m: ModId, options: &str) -> i32 {
        self.ran_command = true;
        let cmd = substitute(&self.ctx.install_command(m).unwrap_or_default(), options);
        let name = self.ctx.get(m).name.clone();
        match system(&cmd, &name, self.s.env_options.as_deref()) {
            None => {
                self.log.kmod(
                    LOG_ERR,
                    "libkmod-module.c",
                    1041,
                    "command_do",
                    &format!(
                        "Could not run install command '{cmd}' for module {name}: {}\n",
                        sys::strerror(libc::ENOENT)
                    ),
                );
                -libc::EINVAL
            }
            Some(0) => 0,
            Some(code) => {
                self.log.kmod(
                    LOG_ERR,
                    "libkmod-module.c",
                    1047,
                    "command_do",
                    &format!(
                        "Error running install command '{cmd}' for module {name}: retcode {}\n",
                        code & 0xff
                    ),
                );
                -libc::EINVAL
            }
        }
    }

    /// `kmod_module_insert_module` under the module's storm lock.
    fn insert_module(&mut self, m: ModId, options: &str, lock: Option<ModuleLock>) -> i32 {
        let name = self.ctx.get(m).name.clone();
        let Some(path) = self.ctx.path(m) else {
            self.log.kmod(
                LOG_ERR,
                "libkmod-module.c",
                895,
                "kmod_module_insert_module",
                &format!("could not find module by name='{name}'\n"),
            );
            return -libc::ENOENT;
        };
        let mut flags = 0;
        if self.s.strip_modversion || self.s.force {
            flags |= sys::MODULE_INIT_IGNORE_MODVERSIONS;
        }
        if self.s.strip_vermagic || self.s.force {
            flags |= sys::MODULE_INIT_IGNORE_VERMAGIC;
        }
        let key = super::lock::attempt_key(&path, options, flags);
        phase::mark("acquire");
        let acquired = lock.map(|l| l.acquire(key));
        phase::mark("acquired");
        let held = match acquired {
            Some(Acquired::Adopt(0)) => return -libc::EEXIST,
            Some(Acquired::Adopt(e)) => {
                tracing::debug!("{name}: adopting the concurrent attempt's errno {e}");
                return self.insert_failed(&path, e);
            }
            Some(Acquired::Held(h)) => Some(h),
            None => None,
        };
        let r = insert_file(&path, options, flags);
        phase::mark("inserted");
        let errno = r.err().unwrap_or(0);
        if let Some(h) = held {
            h.finish(errno);
        }
        if errno != 0 {
            return self.insert_failed(&path, errno);
        }
        0
    }

    fn insert_failed(&mut self, path: &str, errno: i32) -> i32 {
        self.log.kmod(
            LOG_INFO,
            "libkmod-module.c",
            949,
            "kmod_module_insert_module",
            &format!(
                "Failed to insert module '{path}': {}\n",
                sys::strerror(errno)
            ),
        );
        -errno
    }

    /// `kmod_module_probe_insert_module`: 0, a positive "stopped by blacklist" value, or
    /// `-errno`.
    pub fn probe_insert(&mut self, id: ModId, extra: Option<&str>) -> i32 {
        // The requested module's lock record is noted first of all, before its state is
        // read: an attempt that finishes after this point is one this run overlapped.
        phase::mark("lookup");
        let mut target_lock = if self.s.dry_run {
            None
        } else {
            ModuleLock::open(&self.ctx.get(id).name.clone())
        };
        phase::mark("lock_open");
        if !self.s.ignore_loaded && self.is_inkernel(id) {
            return if self.s.first_time { -libc::EEXIST } else { 0 };
        }
        if (self.ctx.get(id).alias.is_some() || self.s.use_blacklist) && self.is_blacklisted(id) {
            return 1;
        }
        self.visited.clear();
        self.required.clear();
        let mut list = Vec::new();
        let ic = self.s.ignore_commands;
        self.probe_list(id, true, ic, &mut list);
        phase::mark("deps");
        let mut err = 0;
        let show = self.s.do_show || self.s.verbose > LOG_WARNING;
        for m in list {
            let lock = if self.s.dry_run {
                None
            } else if m == id {
                target_lock.take()
            } else {
                ModuleLock::open(&self.ctx.get(m).name.clone())
            };
            if !self.s.ignore_loaded && self.is_inkernel(m) {
                err = -libc::EEXIST;
            } else {
                let moptions = self.ctx.options(m);
                let options =
                    concat_options(moptions.as_deref(), if m == id { extra } else { None })
                        .unwrap_or_default();
                let cmd = self.ctx.install_command(m);
                if cmd.is_some() && !self.ignorecmd.contains(&m) {
                    if show {
                        self.print_action(m, true, &options);
                    }
                    if !self.s.dry_run {
                        err = self.install_command_do(m, &options);
                    }
                } else {
                    if show {
                        self.print_action(m, false, &options);
                    }
                    if !self.s.dry_run {
                        err = self.insert_module(m, &options, lock);
                    }
                }
            }
            if err == -libc::EEXIST && m == id && self.s.first_time {
                break;
            }
            if err == -libc::EEXIST || !self.required.contains(&m) {
                err = 0;
            } else if err < 0 {
                break;
            }
        }
        err
    }

    /// modprobe.c's `insmod`.
    pub fn insmod(&mut self, alias: &str, extra: Option<&str>) -> i32 {
        let list = self.ctx.lookup(alias).unwrap_or_default();
        if list.is_empty() {
            let d = self.ctx.dirname.clone();
            self.log_(&format!("Module {alias} not found in directory {d}\n"));
            return -libc::ENOENT;
        }
        let mut err = 0;
        let single = list.len() == 1;
        for id in list {
            if self.s.lookup_only {
                out!("{}\n", self.ctx.get(id).name);
                flush_stdout();
            } else {
                err = self.probe_insert(id, extra);
            }
            if err >= 0 {
                err = 0;
            }
            if single && !self.s.lookup_only && !self.ran_command && self.log.written() == 0 {
                self.replay = Some((self.ctx.get(id).name.clone(), -err));
            }
            if err < 0 {
                let name = self.ctx.get(id).name.clone();
                self.err(&insert_error_text(&name, -err));
            }
        }
        err
    }

    /// `rmmod_do_remove_module`.
    fn remove_module(&mut self, m: ModId) -> i32 {
        let name = self.ctx.get(m).name.clone();
        self.show(&format!("rmmod {name}\n"));
        if self.s.dry_run {
            return 0;
        }
        let mut flags = sys::DELETE_NONBLOCK;
        if self.s.force {
            flags |= sys::DELETE_FORCE;
        }
        let start = std::time::Instant::now();
        let mut interval = std::time::Duration::from_millis(1);
        let end = std::time::Duration::from_millis(self.s.wait_msec);
        let mut err;
        loop {
            err = match sys::delete_module(&name, flags) {
                Ok(()) => 0,
                Err(e) => {
                    if self.s.wait_msec == 0 {
                        self.log.kmod(
                            LOG_ERR,
                            "libkmod-module.c",
                            856,
                            "kmod_module_remove_module",
                            &format!("could not remove '{name}': {}\n", sys::strerror(e)),
                        );
                    }
                    -e
                }
            };
            if err == -libc::EEXIST {
                if !self.s.first_time {
                    err = 0;
                } else {
                    self.log_(&format!("Module {name} is not in kernel.\n"));
                }
                break;
            }
            if err == -libc::EAGAIN && self.s.wait_msec > 0 {
                let elapsed = start.elapsed();
                if elapsed >= end {
                    break;
                }
                let left = end - elapsed;
                std::thread::sleep(interval.min(left));
                interval = (interval * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
            break;
        }
        if err < 0 && self.s.wait_msec > 0 {
            self.err(&format!(
                "could not remove '{name}': {}\n",
                sys::strerror(-err)
            ));
        }
        err
    }

    fn rmmod_list(&mut self, list: &[ModId], stop_on_errors: bool) -> i32 {
        for &m in list.iter().rev() {
            let r = self.rmmod_module(m, false, true);
            if r < 0 && stop_on_errors {
                return r;
            }
        }
        0
    }

    /// `rmmod_do_module`.
    fn rmmod_module(&mut self, id: ModId, remove_holders: bool, ignore_builtin: bool) -> i32 {
        let name = self.ctx.get(id).name.clone();
        let (pre, post, cmd) = if self.s.ignore_commands {
            (Vec::new(), Vec::new(), None)
        } else {
            let (pre, post) = self.softdeps(id);
            (pre, post, self.remove_command(id))
        };
        if cmd.is_none() && !self.s.ignore_loaded {
            match self.initstate(id) {
                Err(_) => {
                    if self.s.first_time {
                        self.log_(&format!("Module {name} is not in kernel.\n"));
                        return -libc::ENOENT;
                    }
                    return 0;
                }
                Ok(InitState::Builtin) => {
                    if ignore_builtin {
                        return 0;
                    }
                    self.log_(&format!("Module {name} is builtin.\n"));
                    return -libc::ENOENT;
                }
                Ok(_) => {}
            }
        }
        self.rmmod_list(&post, false);
        if remove_holders {
            let holders: Vec<ModId> = state::holders(&name)
                .unwrap_or_default()
                .iter()
                .map(|h| self.ctx.module_from_name(h))
                .collect();
            let e = self.rmmod_list(&holders, true);
            if e < 0 {
                return e;
            }
        }
        if cmd.is_none() && !self.s.ignore_loaded && self.s.wait_msec == 0 {
            if let Ok(n) = state::refcnt(&name) {
                if n > 0 {
                    self.log_(&format!("Module {name} is in use.\n"));
                    return -libc::EBUSY;
                }
            }
        }
        let err = match &cmd {
            None => self.remove_module(id),
            Some(c) => self.remove_command_do(&name, c),
        };
        if err < 0 {
            return err;
        }
        if cmd.is_none() {
            for dep in self.ctx.dependencies(id) {
                let dn = self.ctx.get(dep).name.clone();
                if state::refcnt(&dn) == Ok(0) {
                    self.remove_module(dep);
                }
            }
        }
        self.rmmod_list(&pre, false);
        err
    }

    /// modprobe.c's `command_do` (remove commands).
    fn remove_command_do(&mut self, name: &str, command: &str) -> i32 {
        let cmd = substitute(command, "");
        self.show(&format!("remove {cmd}\n"));
        if self.s.dry_run {
            return 0;
        }
        match system(&cmd, name, self.s.env_options.as_deref()) {
            Some(0) => 0,
            other => {
                self.log_(&format!("Error running remove command for {name}\n"));
                match other {
                    Some(c) => -(c & 0xff),
                    None => -1,
                }
            }
        }
    }

    /// modprobe.c's `rmmod`.
    pub fn rmmod(&mut self, alias: &str) -> i32 {
        let Some(list) = self.ctx.lookup(alias) else {
            return -libc::EINVAL;
        };
        let mut err = 0;
        if list.is_empty() {
            self.log_(&format!("Module {alias} not found.\n"));
            err = -libc::ENOENT;
        }
        for id in list {
            let rh = self.s.remove_holders;
            err = self.rmmod_module(id, rh, false);
            if err < 0 {
                break;
            }
        }
        err
    }

    /// `show_config`.
    pub fn show_config(&mut self, out: &mut dyn Write) -> i32 {
        let c = &self.ctx.config;
        let mut s = String::new();
        for b in &c.blacklists {
            s.push_str(&format!("blacklist {b}\n"));
        }
        for (m, cmd) in &c.install_commands {
            s.push_str(&format!("install {m} {cmd}\n"));
        }
        for (m, cmd) in &c.remove_commands {
            s.push_str(&format!("remove {m} {cmd}\n"));
        }
        for (a, m) in &c.aliases {
            s.push_str(&format!("alias {a} {m}\n"));
        }
        for (m, o) in &c.options {
            s.push_str(&format!("options {m} {o}\n"));
        }
        for sd in &c.softdeps {
            // softdep_to_char: "pre: a b" immediately followed by "post: c" (no space).
            let mut v = String::new();
            if !sd.pre.is_empty() {
                v.push_str("pre: ");
                v.push_str(&sd.pre.join(" "));
            }
            if !sd.post.is_empty() {
                v.push_str("post: ");
                v.push_str(&sd.post.join(" "));
            }
            s.push_str(&format!("softdep {} {v}\n", sd.name));
        }
        for (m, weak) in &c.weakdeps {
            // kmod 34's weakdep_to_char: the names joined by one space.
            s.push_str(&format!("weakdep {m} {}\n", weak.join(" ")));
        }
        s.push_str("\n# End of configuration files. Dumping indexes now:\n\n");
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
        let mut idx = Vec::new();
        self.ctx.dump_index("modules.alias", "alias ", &mut idx);
        self.ctx.dump_index("modules.symbols", "alias ", &mut idx);
        let _ = out.write_all(&idx);
        let _ = out.flush();
        0
    }

    fn show_ko_list(&mut self, filename: &str, exports: bool) -> i32 {
        let ko = match crate::KoModule::from_path(&crate::bytestr::path(filename)) {
            Ok(k) => k,
            // kmod_module_new_from_path only needs the file; the ELF is read after it.
            Err(crate::Error::Parse { source, .. }) => {
                let what = if exports { "symbols" } else { "modversions" };
                flush_stdout();
                let p = self.s.log_priority;
                self.log.printf_detail(
                    p,
                    &format!(
                        "could not get {what} of {filename}: {}\n",
                        source.kmod_text()
                    ),
                    &source.to_string(),
                );
                return -source.errno();
            }
            Err(_) => {
                self.log_(&format!("Module {filename} not found.\n"));
                return -libc::ENOENT;
            }
        };
        let mut s = String::new();
        if exports {
            match &ko.crc_symbols {
                Ok(list) => {
                    for c in list {
                        s.push_str(&format!("0x{:08x}\t{}\n", c.crc, c.name));
                    }
                }
                Err(e) => {
                    flush_stdout();
                    let p = self.s.log_priority;
                    self.log.printf_detail(
                        p,
                        &format!("could not get symbols of {filename}: {}\n", e.kmod_text()),
                        &e.to_string(),
                    );
                    return -e.errno();
                }
            }
        } else {
            if !ko.has_versions_section {
                // kmod_elf_get_modversions: kmod_elf_get_section's ENOENT.
                flush_stdout();
                let p = self.s.log_priority;
                self.log.printf_detail(
                    p,
                    &format!(
                        "could not get modversions of {filename}: {}\n",
                        sys::strerror(libc::ENOENT)
                    ),
                    "missing section __versions",
                );
                return -libc::ENOENT;
            }
            for (sym, crc) in &ko.versions {
                s.push_str(&format!("0x{crc:08x}\t{sym}\n"));
            }
        }
        out!("{s}");
        flush_stdout();
        0
    }
}

/// modprobe's `help`.
fn help(prog: &str) {
    let p = prog;
    print!(
        "Usage:\n\t{p} [options] [-i] [-b] modulename\n\t{p} [options] -a [-i] [-b] modulename [modulename...]\n\t{p} [options] -r [-i] modulename\n\t{p} [options] -r -a [-i] modulename [modulename...]\n\t{p} [options] -c\n\t{p} [options] --dump-modversions filename\nManagement Options:\n\t-a, --all                   Consider every non-argument to\n\t                            be a module name to be inserted\n\t                            or removed (-r)\n\t-r, --remove                Remove modules instead of inserting\n\t    --remove-dependencies   Deprecated: use --remove-holders\n\t    --remove-holders        Also remove module holders (use together with -r)\n\t-w, --wait <MSEC>           When removing a module, wait up to MSEC for\n\t                            module's refcount to become 0 so it can be\n\t                            removed (use together with -r)\n\t    --first-time            Fail if module already inserted or removed\n\t-i, --ignore-install        Ignore install commands\n\t-i, --ignore-remove         Ignore remove commands\n\t-b, --use-blacklist         Apply blacklist to resolved alias.\n\t-f, --force                 Force module insertion or removal.\n\t                            implies --force-modversions and\n\t                            --force-vermagic\n\t    --force-modversion      Ignore module's version\n\t    --force-vermagic        Ignore module's version magic\n\nQuery Options:\n\t-R, --resolve-alias         Only lookup and print alias and exit\n\t-D, --show-depends          Only print module dependencies and exit\n\t-c, --showconfig            Print out known configuration and exit\n\t-c, --show-config           Same as --showconfig\n\t    --show-modversions      Dump module symbol version and exit\n\t    --dump-modversions      Same as --show-modversions\n\t    --show-exports          Only print module exported symbol versions and exit\n\nGeneral Options:\n\t-n, --dry-run               Do not execute operations, just print out\n\t-n, --show                  Same as --dry-run\n\t-C, --config=FILE           Use FILE instead of default search paths\n\t-d, --dirname=DIR           Use DIR as filesystem root for /lib/modules\n\t-S, --set-version=VERSION   Use VERSION instead of `uname -r`\n\t-s, --syslog                print to syslog, not stderr\n\t-q, --quiet                 disable messages\n\t-v, --verbose               enables more messages\n\t-V, --version               show version\n\t-h, --help                  show this help\n"
    );
}

/// Runs modprobe with `argv` (argv\[0\] is the program name). Returns the exit status.
pub fn run(argv: &[String]) -> i32 {
    phase::mark("start");
    let code = run_inner(argv);
    phase::mark("end");
    phase::flush();
    code
}

fn run_inner(argv: &[String]) -> i32 {
    let prog = super::short_name(&argv[0]);
    let mut log = Log::stderr(&prog);
    let env = std::env::var("MODPROBE_OPTIONS").ok();
    let argv = prepend_env(env.as_deref(), argv);
    let parsed = match getopt_long(&argv[0], &argv[1..], SHORTS, LONGS) {
        Ok(p) => p,
        Err((_, msg)) => {
            log.raw(&msg);
            return 1;
        }
    };
    let mut s = Settings::default();
    let mut env_opts: Vec<String> = env.iter().cloned().collect();
    let mut config_paths: Vec<PathBuf> = Vec::new();
    let (mut root, mut kversion) = (None::<String>, None::<String>);
    let (mut use_all, mut do_remove, mut show_config, mut show_mv, mut show_ex) =
        (false, false, false, false, false);
    for o in &parsed.opts {
        let arg = o.arg.clone().unwrap_or_default();
        match o.val {
            5 => s.remove_holders = true,
            3 => s.first_time = true,
            2 => s.strip_modversion = true,
            1 => s.strip_vermagic = true,
            4 => show_mv = true,
            6 => show_ex = true,
            v => match char::from_u32(v).unwrap_or('?') {
                'a' => {
                    s.log_priority = LOG_WARNING;
                    use_all = true;
                }
                'r' => do_remove = true,
                'w' => {
                    let parsed = parse_c_ulong(&arg);
                    match parsed {
                        Some(n) if !arg.is_empty() => s.wait_msec = n,
                        _ => {
                            log.err(&format!("unexpected wait value '{arg}'.\n"));
                            return 1;
                        }
                    }
                }
                'i' => s.ignore_commands = true,
                'b' => s.use_blacklist = true,
                'f' => s.force = true,
                'D' => {
                    s.ignore_loaded = true;
                    s.dry_run = true;
                    s.do_show = true;
                }
                'R' => s.lookup_only = true,
                'c' => show_config = true,
                'n' => s.dry_run = true,
                'C' => {
                    config_paths.push(PathBuf::from(&arg));
                    env_opts.push("-C".into());
                    env_opts.push(arg);
                }
                'd' => root = Some(arg),
                'S' => kversion = Some(arg),
                's' => env_opts.push("-s".into()),
                'q' => {
                    env_opts.push("-q".into());
                    s.verbose = LOG_EMERG;
                }
                'v' => {
                    env_opts.push("-v".into());
                    s.verbose += 1;
                }
                'V' => {
                    print_version();
                    return 0;
                }
                'h' => {
                    help(&prog);
                    return 0;
                }
                c => {
                    log.err(&format!("unexpected getopt_long() value '{c}'.\n"));
                    return 1;
                }
            },
        }
    }
    s.env_options = (!env_opts.is_empty()).then(|| env_opts.join(" "));
    let args = parsed.operands;
    if !show_config && args.is_empty() {
        log.err("missing parameters. See -h.\n");
        return 1;
    }
    let mut request = None;
    if request_lock_applies(&parsed.opts, &args) {
        let key = super::lock::attempt_key(&argv.join("\u{0}"), "modprobe request", 0);
        if let Some(l) = ModuleLock::open_request(key) {
            phase::mark("request_lock");
            match l.acquire_payload(key, std::time::Duration::ZERO) {
                (Acquired::Held(h), _) => request = Some(h),
                (Acquired::Adopt(errno), Some(p)) => {
                    if let Some(name) = unhex_name(&p) {
                        phase::mark("replay");
                        log.setup_kmod(s.verbose);
                        if errno != 0 {
                            log.err(&insert_error_text(&name, errno));
                            return 1;
                        }
                        return 0;
                    }
                }
                // Not stated by one line: run in full.
                (Acquired::Adopt(_), None) => {}
            }
        }
    }
    let dirname = crate::names::kmod_dirname(root.as_deref(), kversion.as_deref());
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok();
    let cfg_paths = (!config_paths.is_empty()).then_some(config_paths.as_slice());
    phase::mark("args");
    let mut config_messages = 0;
    let config = ModprobeConfig::load(cfg_paths, &dirname, cmdline.as_deref(), &mut |m| {
        config_messages += 1;
        let _ = write!(std::io::stderr(), "{m}");
    });
    phase::mark("config");
    let ctx = Context::new(dirname, config);
    phase::mark("context");
    log.setup_kmod(s.verbose);
    let mut mp = Modprobe::new(s, ctx, log);
    let err = if show_config {
        let out = std::io::stdout();
        let mut out = out.lock();
        mp.show_config(&mut out)
    } else if show_mv {
        mp.show_ko_list(&args[0], false)
    } else if show_ex {
        mp.show_ko_list(&args[0], true)
    } else if do_remove {
        let mut err = 0;
        for a in &args {
            let r = mp.rmmod(a);
            if r < 0 {
                err = r;
            }
        }
        err
    } else if use_all {
        let mut err = 0;
        for a in &args {
            let r = mp.insmod(a, None);
            if r < 0 {
                err = r;
            }
        }
        err
    } else {
        let extra = crate::modprobe::options_from_args(&args[1..]);
        mp.insmod(&args[0], extra.as_deref())
    };
    flush_stdout();
    if let Some(h) = request {
        match mp.replay.take() {
            Some((name, errno)) if config_messages == 0 => {
                h.finish_with(errno, Some(&hex_name(&name)))
            }
            _ => h.finish_with(-err.min(0), None),
        }
    }
    // The process ends here: freeing the indexes and configuration would only run more
    // code (each run of a storm pays for every instruction it runs for the first time
    // under emulation; issue 12).
    std::mem::forget(mp);
    if err >= 0 {
        0
    } else {
        1
    }
}

/// `strtoul(s, &end, 0)` accepting the whole string: decimal, `0x` hex or `0` octal.
fn parse_c_ulong(s: &str) -> Option<u64> {
    let t = s.trim_start();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_options_prepend() {
        let a = vec!["modprobe".to_string(), "fuse".to_string()];
        assert_eq!(
            prepend_env(Some("-q -C '/a b'"), &a),
            vec!["modprobe", "-q", "-C", "/a b", "fuse"]
        );
        assert_eq!(prepend_env(None, &a), a);
    }

    #[test]
    fn request_outcomes() {
        let name = crate::bytestr::from_bytes(b"caf\xe9_x");
        assert_eq!(unhex_name(&hex_name(&name)), Some(name));
        assert_eq!(unhex_name("6d7"), None);
        assert_eq!(unhex_name("zz"), None);
        assert_eq!(
            insert_error_text("mt_a", libc::ENODEV),
            "could not insert 'mt_a': No such device\n"
        );
        let opt = |c: char| super::super::getopt::Opt {
            val: c as u32,
            arg: None,
        };
        let ops = vec!["mt_a".to_string()];
        assert!(request_lock_applies(&[opt('q'), opt('b')], &ops));
        assert!(!request_lock_applies(&[opt('q')], &[]));
        for c in ['r', 'n', 'v', 'a', 'f', 'i', 'D', 'R'] {
            assert!(!request_lock_applies(&[opt(c)], &ops), "-{c}");
        }
    }

    #[test]
    fn options_and_commands() {
        assert_eq!(concat_options(Some("a=1"), Some("b=2")).unwrap(), "a=1 b=2");
        assert_eq!(concat_options(None, None), None);
        assert_eq!(substitute("echo $CMDLINE_OPTS!", "x=1"), "echo x=1!");
        assert_eq!(parse_c_ulong("0x10"), Some(16));
        assert_eq!(parse_c_ulong("010"), Some(8));
        assert_eq!(parse_c_ulong("12ms"), None);
    }
}
