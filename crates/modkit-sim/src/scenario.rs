//! A checked scenario: modules, events and expectations, compiled from the file format
//! with every name, duration and code validated. Errors name the file, the line and the
//! key, with the nearest known key or name for a typo.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use modkit_core::policy::MODULE_NAME_LEN;
use modkit_core::spec::{normalize_name, strsim_distance};
use modkit_core::{
    DiagKind, Errno, ExportSpec, ImportSpec, InitStepSpec, ModState, ModuleDb, ModuleSpec, Outcome,
    Policy, SpecError, Time,
};

use crate::duration::parse_duration;
use crate::raw::*;
use toml::Spanned;

/// The largest scenario file [`load`] reads (16 MiB).
pub const MAX_SCENARIO_BYTES: u64 = 16 << 20;

/// The most threads one event may ask for.
pub const MAX_THREADS_PER_EVENT: u32 = 100_000;

/// The most threads all the events of a scenario may ask for together.
pub const MAX_THREADS_TOTAL: u32 = 100_000;

/// A scenario file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// One action of an init step, an undo, an event or a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Takes virtual time.
    Sleep(Time),
    /// Fails with that error.
    Fail(Errno),
    /// Early success of the init table.
    Stop,
    /// The init returns this positive value (`ret = N`): early success, with the kernel's
    /// "suspiciously returned" warning (`crate::scenario` docs, docs/scenario-format.md).
    Ret(u32),
    /// request_module (`wait = false`: nowait; `required`: non-zero fails the step).
    RequestModule {
        /// Name or alias.
        name: String,
        /// Wait for modprobe.
        wait: bool,
        /// A non-zero result fails the step.
        required: bool,
    },
    /// try_module_get.
    GetModule(String),
    /// module_put.
    PutModule(String),
    /// Calls a symbol.
    UseSymbol(String),
    /// `symbol_get()`: looks a symbol up without importing it and pins its owner
    /// (ENOENT where the kernel returns NULL).
    SymbolGet(String),
    /// `symbol_put()`: drops the pin of a [`Action::SymbolGet`].
    SymbolPut(String),
    /// Registers `kind:name`.
    Register(String),
    /// Unregisters `kind:name`.
    Unregister(String),
    /// Finds a registration, optionally pinning its owner.
    Lookup {
        /// `kind:name`.
        key: String,
        /// Pin the owner.
        get: bool,
    },
    /// Opens `kind:name` as a file that pins its owner.
    Open {
        /// `kind:name`.
        key: String,
        /// File name for a later close.
        fd: String,
    },
    /// Closes a file.
    Close(String),
    /// Queues the actions as a work item.
    Spawn(Vec<Action>),
    /// complete_all on a completion.
    Complete(String),
    /// Waits for a completion.
    WaitFor {
        /// The completion.
        name: String,
        /// Bound.
        timeout: Option<Time>,
    },
    /// A device action (crate::devices).
    Device(crate::devices::DeviceAction),
}

/// One init step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Name.
    pub name: String,
    /// Its actions.
    pub run: Vec<Action>,
    /// Its undo, if it has one.
    pub undo: Option<Vec<Action>>,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// modprobe NAME-OR-ALIAS.
    Modprobe(String),
    /// insmod NAME.
    Insmod(String),
    /// rmmod NAME.
    Rmmod {
        /// Name.
        name: String,
        /// rmmod -f.
        force: bool,
        /// Wait for pins (modkit).
        wait: bool,
        /// Bound of that wait.
        timeout: Option<Time>,
    },
    /// A kernel-internal request_module.
    RequestModule {
        /// Name or alias.
        name: String,
        /// false: request_module_nowait.
        wait: bool,
    },
    /// Any actions.
    Run(Vec<Action>),
    /// Change /proc/sys/kernel/modprobe.
    SetModprobe(String),
    /// SIGKILL every thread of the event with this id that is still running (in the
    /// kernel driver: the process in the system call, for modprobe events the modprobe).
    /// Result: ok if at least one was signalled, ESRCH if none.
    Kill(String),
    /// SIGKILL every `modprobe -q -- NAME` that request_module(NAME) started and that is
    /// still running. Result: ok or ESRCH, as [`EventKind::Kill`].
    KillModprobe(String),
    /// A device event (crate::devices).
    Device(crate::devices::DeviceEvent),
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Id used in expectations (`event3` when not given: 1-based position).
    pub id: String,
    /// When.
    pub at: Time,
    /// Copies run at once.
    pub threads: u32,
    /// What.
    pub kind: EventKind,
    /// insmod with `init_module(2)` of the file's bytes instead of `finit_module(2)`
    /// (`syscall = "init_module"`): 6.5+ deduplicates only the latter.
    pub init_module: bool,
}

/// An expected code: matches one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub Outcome);

impl Code {
    /// True when `o` is this code (EWOULDBLOCK and EAGAIN are one).
    pub fn matches(self, o: Outcome) -> bool {
        self.0.raw() == o.raw()
    }
}

/// One `[[expect]]` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// 1-based index in the file.
    pub index: usize,
    /// Line of the block.
    pub line: usize,
    /// Its policy.
    pub policy: Policy,
    /// A note for the report.
    pub note: Option<String>,
    /// Why a real kernel cannot check this block (`kernel_skip = "…"`): the kernel driver
    /// reports it as skipped with this reason instead of checking it.
    pub kernel_skip: Option<String>,
    /// Final states (`None` = absent).
    pub final_: BTreeMap<String, Option<ModState>>,
    /// Every thread got one of these.
    pub results: BTreeMap<String, Vec<Code>>,
    /// Each code was got by at least one thread.
    pub results_any: BTreeMap<String, Vec<Code>>,
    /// Init table starts per module.
    pub init_calls: BTreeMap<String, u32>,
    /// lsmod refcounts.
    pub refcount: BTreeMap<String, i64>,
    /// lsmod "used by".
    pub holders: BTreeMap<String, Vec<String>>,
    /// Virtual end time at most.
    pub time_max: Option<Time>,
    /// Virtual end time at least.
    pub time_min: Option<Time>,
    /// Each is contained in some log line.
    pub log: Vec<String>,
    /// None is contained in any log line.
    pub log_absent: Vec<String>,
    /// Kinds that must be reported.
    pub diagnostics: Vec<DiagKind>,
    /// Kinds that must not be reported.
    pub diagnostics_absent: Vec<DiagKind>,
    /// Each is contained in the message or the hint of some diagnostic (`hints`).
    pub hints: Vec<String>,
    /// Per-module taint flags as `/proc/modules` shows them (`"POE"`, `""` for none).
    pub taints: BTreeMap<String, String>,
    /// Device states by device name (`bound:DRIVER`, `deferred`, `unbound`, `absent`).
    pub devices: BTreeMap<String, String>,
}

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it came from.
    pub file: String,
    /// Its name.
    pub name: Option<String>,
    /// Default policy.
    pub policy: Policy,
    /// Tie-break seed.
    pub seed: u64,
    /// Initial /proc/sys/kernel/modprobe.
    pub modprobe: String,
    /// Virtual time each modprobe process takes before inserting anything.
    pub modprobe_time: Time,
    /// The simulator's step budget ([`crate::sim::DEFAULT_MAX_STEPS`] when not given).
    pub max_steps: Option<u64>,
    /// Why a real kernel's run of this scenario varies from boot to boot (`kernel_races =
    /// "…"`): `modkit compare` lists the differences as explained by this reason instead of
    /// failing.
    pub kernel_races: Option<String>,
    /// `(module, symbol)` imports of the imported tree that nothing exports.
    pub tree_unresolved: Vec<(String, String)>,
    /// Files of the imported tree that could not be read (skipped with a warning).
    pub tree_warnings: Vec<String>,
    /// The modules.
    pub db: std::sync::Arc<ModuleDb>,
    /// Init steps' actions per module id.
    pub steps: Vec<Vec<Step>>,
    /// Events in file order.
    pub events: Vec<Event>,
    /// Expectation blocks.
    pub expects: Vec<Expect>,
    /// The loader's build options and boot parameters (`sig_enforce`, `module_blacklist`,
    /// `force_unload`, `modversions`, `force_load`).
    pub config: modkit_core::taint::LoaderConfig,
    /// Buses, drivers, devices, udev (docs/scenario-format.md, "Devices").
    pub devices: crate::devices::DeviceSetup,
}

impl Scenario {
    /// Every action of the file: init steps and their undos, probe and remove bodies, and
    /// the action lists of events, nested `spawn` bodies included (each before its `spawn`).
    pub fn all_actions(&self) -> Vec<&Action> {
        fn walk<'a>(list: &'a [Action], out: &mut Vec<&'a Action>) {
            for a in list {
                if let Action::Spawn(l) = a {
                    walk(l, out);
                }
                out.push(a);
            }
        }
        let mut all = Vec::new();
        for steps in &self.steps {
            for s in steps {
                walk(&s.run, &mut all);
                walk(s.undo.as_deref().unwrap_or(&[]), &mut all);
            }
        }
        for d in &self.devices.drivers {
            walk(&d.probe, &mut all);
            walk(&d.remove, &mut all);
        }
        for e in &self.events {
            if let EventKind::Run(l) = &e.kind {
                walk(l, &mut all);
            }
        }
        all
    }

    /// Whether the file uses the device model (drivers, devices, udev, device events).
    pub fn uses_devices(&self) -> bool {
        self.devices.used
            || self
                .events
                .iter()
                .any(|e| matches!(e.kind, EventKind::Device(_)))
    }
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> ScenarioError {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ScenarioError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }
}

fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match nearest(word, candidates) {
        Some(c) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

/// Adds "did you mean" to serde's unknown-field messages.
fn improve_serde_message(msg: &str) -> String {
    let msg = msg.trim_end();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            let field = &rest[..end];
            let known: Vec<&str> = rest[end..].split('`').skip(2).step_by(2).collect();
            return format!("{msg}{}", did_you_mean(field, known.iter().copied()));
        }
    }
    msg.to_string()
}

fn code(c: &RawCode) -> Result<Code, String> {
    match c {
        RawCode::Number(0) => Ok(Code(Outcome::Ok)),
        RawCode::Number(n) if *n < 0 => Errno::from_code(-*n as i32)
            .map(|e| Code(Outcome::Err(e)))
            .ok_or_else(|| format!("unknown errno number {n}")),
        RawCode::Number(n) => Ok(Code(Outcome::Status(*n as i32))),
        RawCode::Name(s) if s == "ok" => Ok(Code(Outcome::Ok)),
        RawCode::Name(s) if s == "killed" => Ok(Code(Outcome::Killed)),
        RawCode::Name(s) => Errno::from_name(s).map(|e| Code(Outcome::Err(e))).ok_or_else(|| {
            format!(
                "unknown error code `{s}`{}: use \"ok\", \"killed\", an errno name such as \"ENOENT\", or a number",
                did_you_mean(s, Errno::ALL.iter().map(|e| e.name()))
            )
        }),
    }
}

fn errno_of(c: &RawCode) -> Result<Errno, String> {
    match code(c)?.0 {
        Outcome::Err(e) => Ok(e),
        other => Err(format!(
            "`fail` needs an errno name such as \"ENOMEM\", not {other}"
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    Init,
    Undo,
    Event,
    /// A driver's probe or remove body.
    Probe,
}

/// An error found in an action, at the offset of the key it is about when known.
struct Located {
    at: Option<usize>,
    msg: String,
}

impl From<String> for Located {
    fn from(msg: String) -> Self {
        Located { at: None, msg }
    }
}

impl From<&str> for Located {
    fn from(msg: &str) -> Self {
        Located {
            at: None,
            msg: msg.into(),
        }
    }
}

/// Attaches a key and the offset of its value to an error about it.
fn at_key<T>(key: &str, v: &Spanned<T>, r: Result<Action, String>) -> Result<Action, Located> {
    r.map_err(|e| Located {
        at: Some(v.span().start),
        msg: format!("key `{key}`: {e}"),
    })
}

fn action(a: &RawAction, wh: Where) -> Result<Action, Located> {
    let mut verbs = Vec::new();
    macro_rules! verb {
        ($field:ident, $name:literal) => {
            if a.$field.is_some() {
                verbs.push($name);
            }
        };
    }
    verb!(sleep, "sleep");
    verb!(fail, "fail");
    verb!(stop, "stop");
    verb!(ret, "ret");
    verb!(request_module, "request_module");
    verb!(get_module, "get_module");
    verb!(put_module, "put_module");
    verb!(use_symbol, "use_symbol");
    verb!(symbol_get, "symbol_get");
    verb!(symbol_put, "symbol_put");
    verb!(register, "register");
    verb!(unregister, "unregister");
    verb!(lookup, "lookup");
    verb!(open, "open");
    verb!(close, "close");
    verb!(spawn, "spawn");
    verb!(complete, "complete");
    verb!(wait_for, "wait_for");
    verb!(add_device, "add_device");
    verb!(remove_device, "remove_device");
    verb!(need, "need");
    verb!(devm, "devm");
    verb!(use_devres, "use_devres");
    if verbs.len() != 1 {
        return Err(if verbs.is_empty() {
            "an action needs one verb key (sleep, fail, stop, ret, request_module, get_module, put_module, use_symbol, symbol_get, symbol_put, register, unregister, lookup, open, close, spawn, complete, wait_for, add_device, remove_device, need, devm, use_devres)".into()
        } else {
            format!(
                "an action has one verb, this one has {}: split it into one action per verb",
                verbs.join(" and ")
            )
            .into()
        });
    }
    let verb = verbs[0];
    let extra = |allowed: &[&str]| -> Result<(), String> {
        let present = [
            ("wait", a.wait.is_some()),
            ("required", a.required.is_some()),
            ("get", a.get.is_some()),
            ("as", a.as_.is_some()),
            ("timeout", a.timeout.is_some()),
            ("bus", a.bus.is_some()),
            ("modalias", a.modalias.is_some()),
            ("optional", a.optional.is_some()),
            ("reason", a.reason.is_some()),
            ("for", a.for_.is_some()),
        ];
        for (k, p) in present {
            if p && !allowed.contains(&k) {
                return Err(format!("`{k}` does not go with `{verb}`"));
            }
        }
        Ok(())
    };
    let key_ok = |k: &str| -> Result<(), String> {
        match k.split_once(':') {
            Some((kind, _)) if !kind.is_empty() => Ok(()),
            _ => Err(format!(
                "`{k}` is not `kind:name` (for example \"fs:xfs\", \"misc:test_kmod0\")"
            )),
        }
    };
    Ok(match verb {
        "add_device" | "remove_device" | "need" | "devm" | "use_devres" => {
            extra(match verb {
                "add_device" => &["bus", "modalias"],
                "need" => &["optional", "reason"],
                "use_devres" => &["for"],
                _ => &[],
            })?;
            crate::devices::action(a, verb, wh == Where::Probe)?
        }
        "sleep" => {
            extra(&[])?;
            let v = a.sleep.as_ref().expect("verb");
            return at_key("sleep", v, parse_duration(v.get_ref()).map(Action::Sleep));
        }
        "fail" => {
            extra(&[])?;
            let v = a.fail.as_ref().expect("verb");
            return at_key("fail", v, errno_of(v.get_ref()).map(Action::Fail));
        }
        "stop" => {
            extra(&[])?;
            if wh != Where::Init {
                return Err(
                    "`stop` ends an init table early; it belongs only in an init step's `run`"
                        .into(),
                );
            }
            if a.stop != Some(true) {
                return Err("write `stop = true`".into());
            }
            Action::Stop
        }
        "ret" => {
            extra(&[])?;
            if wh != Where::Init {
                return Err(
                    "`ret` is what an init returns; it belongs only in an init step's `run`".into(),
                );
            }
            let v = a.ret.as_ref().expect("verb");
            let n = *v.get_ref();
            if !(1..=i64::from(i32::MAX)).contains(&n) {
                return Err(Located {
                    at: Some(v.span().start),
                    msg: format!(
                        "key `ret`: {n} is not a positive init return value (1 to {}): write `fail = \"ENAME\"` for an error, `stop = true` for 0",
                        i32::MAX
                    ),
                });
            }
            Action::Ret(n as u32)
        }
        "request_module" => {
            extra(&["wait", "required"])?;
            Action::RequestModule {
                name: a.request_module.clone().expect("verb"),
                wait: a.wait.unwrap_or(true),
                required: a.required.unwrap_or(false),
            }
        }
        "get_module" => {
            extra(&[])?;
            Action::GetModule(normalize_name(a.get_module.as_deref().expect("verb")))
        }
        "put_module" => {
            extra(&[])?;
            Action::PutModule(normalize_name(a.put_module.as_deref().expect("verb")))
        }
        "use_symbol" => {
            extra(&[])?;
            Action::UseSymbol(a.use_symbol.clone().expect("verb"))
        }
        "symbol_get" => {
            extra(&[])?;
            Action::SymbolGet(a.symbol_get.clone().expect("verb"))
        }
        "symbol_put" => {
            extra(&[])?;
            Action::SymbolPut(a.symbol_put.clone().expect("verb"))
        }
        "register" => {
            extra(&[])?;
            let k = a.register.clone().expect("verb");
            key_ok(&k)?;
            Action::Register(k)
        }
        "unregister" => {
            extra(&[])?;
            let k = a.unregister.clone().expect("verb");
            key_ok(&k)?;
            Action::Unregister(k)
        }
        "lookup" => {
            extra(&["get"])?;
            let k = a.lookup.clone().expect("verb");
            key_ok(&k)?;
            Action::Lookup {
                key: k,
                get: a.get.unwrap_or(false),
            }
        }
        "open" => {
            extra(&["as"])?;
            let k = a.open.clone().expect("verb");
            key_ok(&k)?;
            let fd = a
                .as_
                .clone()
                .ok_or("`open` needs `as = \"NAME\"` so that a later `close` can name the file")?;
            Action::Open { key: k, fd }
        }
        "close" => {
            extra(&[])?;
            Action::Close(a.close.clone().expect("verb"))
        }
        "spawn" => {
            extra(&[])?;
            let inner = a.spawn.as_ref().expect("verb");
            Action::Spawn(actions(inner, Where::Event).map_err(|e| Located {
                at: e.at,
                msg: format!("in `spawn`: {}", e.msg),
            })?)
        }
        "complete" => {
            extra(&[])?;
            Action::Complete(a.complete.clone().expect("verb"))
        }
        "wait_for" => {
            extra(&["timeout"])?;
            let name = a.wait_for.clone().expect("verb");
            match &a.timeout {
                Some(t) => {
                    return at_key(
                        "timeout",
                        t,
                        parse_duration(t.get_ref()).map(|d| Action::WaitFor {
                            name,
                            timeout: Some(d),
                        }),
                    )
                }
                None => Action::WaitFor {
                    name,
                    timeout: None,
                },
            }
        }
        _ => unreachable!("verbs listed above"),
    })
}

/// Checks a list of actions; an error carries the offset of the key it is about, or of
/// the action.
fn actions(list: &[Spanned<RawAction>], wh: Where) -> Result<Vec<Action>, Located> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            action(a.get_ref(), wh).map_err(|e| Located {
                at: Some(e.at.unwrap_or(a.span().start)),
                msg: format!("action {}: {}", i + 1, e.msg),
            })
        })
        .collect()
}

/// Reads and checks a scenario file. Files larger than [`MAX_SCENARIO_BYTES`] are
/// refused without being read to the end (`/dev/zero` is not read for ever), and text
/// that is not UTF-8 is reported with the offset of its first bad byte.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    use std::io::Read as _;
    let file = path.display().to_string();
    let fail = |line: usize, col: usize, message: String| ScenarioError {
        file: file.clone(),
        line,
        col,
        message,
    };
    let f =
        std::fs::File::open(path).map_err(|e| fail(0, 0, format!("cannot read the file: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_SCENARIO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(0, 0, format!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(fail(
            0,
            0,
            format!(
                "the file is larger than {} MiB, the limit for a scenario file: split it into several scenarios, or import a module tree with `tree = PATH`",
                MAX_SCENARIO_BYTES >> 20
            ),
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let off = e.utf8_error().valid_up_to();
            let good = std::str::from_utf8(&e.as_bytes()[..off]).unwrap_or_default();
            let cx = Ctx {
                file: &file,
                text: good,
            };
            let byte = e.as_bytes()[off];
            return Err(cx.at(
                off,
                format!(
                    "the file is not UTF-8: byte {off} (0x{byte:02x}) starts no valid character; save the file as UTF-8"
                ),
            ));
        }
    };
    parse(&file, &text)
}

/// Parses and checks scenario text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let cx = Ctx { file, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let off = e.span().map(|s| s.start).unwrap_or(0);
        cx.at(off, improve_serde_message(e.message()))
    })?;
    let policy = match &raw.policy {
        Some(p) => p
            .get_ref()
            .parse::<Policy>()
            .map_err(|e| cx.at(p.span().start, format!("key `policy`: {e}")))?,
        None => Policy::Modkit,
    };

    let modprobe_time = match &raw.modprobe_time {
        Some(t) => parse_duration(t.get_ref())
            .map_err(|e| cx.at(t.span().start, format!("key `modprobe_time`: {e}")))?,
        None => 1_000_000,
    };

    let max_steps = match &raw.max_steps {
        Some(n) if *n.get_ref() == 0 => {
            return Err(cx.at(n.span().start, "key `max_steps` must be at least 1"))
        }
        Some(n) => Some(*n.get_ref()),
        None => None,
    };

    let mut config = modkit_core::taint::LoaderConfig::default();
    if let Some(b) = raw.sig_enforce {
        config.sig_enforce = b;
    }
    if let Some(l) = &raw.module_blacklist {
        config.module_blacklist = l.iter().map(|n| normalize_name(n)).collect();
    }
    if let Some(b) = raw.force_unload {
        config.force_unload = b;
    }
    if let Some(b) = raw.modversions {
        config.modversions = b;
    }
    if let Some(b) = raw.force_load {
        config.force_load = b;
    }

    // Modules: a real tree first, when the file names one.
    let mut specs = Vec::new();
    let mut steps = Vec::new();
    let mut tree_unresolved = Vec::new();
    let mut tree_warnings = Vec::new();
    // Tree modules by name; a [[module]] of one of these names completes it.
    let mut tree_index: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(t) = &raw.tree {
        let base = Path::new(file).parent().unwrap_or(Path::new("."));
        let root = base.join(t.get_ref());
        let symvers = raw.symvers.as_ref().map(|p| base.join(p.get_ref()));
        let imported = crate::tree::import_tree(&root, symvers.as_deref())
            .map_err(|e| cx.at(t.span().start, format!("key `tree`: {e}")))?;
        for s in imported.specs {
            tree_index.insert(s.name.clone(), specs.len());
            specs.push(s);
            steps.push(Vec::new());
        }
        tree_unresolved = imported.unresolved;
        tree_warnings = imported.warnings;
    } else if let Some(s) = &raw.symvers {
        return Err(cx.at(s.span().start, "key `symvers` goes with `tree`"));
    }
    let mut module_lines: BTreeMap<String, usize> = BTreeMap::new();
    let mut drivers = Vec::new();
    for m in &raw.module {
        let off = m.span().start;
        let rm = m.get_ref();
        let name = normalize_name(rm.name.get_ref());
        if name.len() >= MODULE_NAME_LEN {
            return Err(cx.at(
                rm.name.span().start,
                format!(
                    "[[module]] key `name`: `{}` is {} bytes long; the kernel's limit is {} bytes (MODULE_NAME_LEN is {} with the NUL): shorten it",
                    crate::width::truncate(rm.name.get_ref(), 40),
                    name.len(),
                    MODULE_NAME_LEN - 1,
                    MODULE_NAME_LEN
                ),
            ));
        }
        let err = |msg: String| cx.at(off, format!("[[module]] `{}`: {msg}", rm.name.get_ref()));
        let err_at = |at: Option<usize>, msg: String| {
            cx.at(
                at.unwrap_or(off),
                format!("[[module]] `{}`: {msg}", rm.name.get_ref()),
            )
        };
        let mut spec = ModuleSpec::new(&name);
        if let Some(l) = &rm.license {
            spec.license = l.clone();
        }
        spec.aliases = rm.aliases.clone();
        if let Some(sd) = &rm.softdeps {
            spec.softdeps_pre = sd.pre.clone();
            spec.softdeps_post = sd.post.clone();
        }
        for e in &rm.exports {
            spec.exports.push(match e {
                NameOr::Name(n) => ExportSpec {
                    name: n.clone(),
                    namespace: None,
                    gpl_only: false,
                    crc: None,
                },
                NameOr::Table(t) => ExportSpec {
                    name: t.name.clone(),
                    namespace: t.namespace.clone().filter(|s| !s.is_empty()),
                    gpl_only: t.gpl_only,
                    crc: t.crc,
                },
            });
        }
        let mut seen_imports = BTreeSet::new();
        for i in &rm.imports {
            let imp = match i {
                NameOr::Name(n) => ImportSpec {
                    name: n.clone(),
                    crc: None,
                },
                NameOr::Table(t) => ImportSpec {
                    name: t.name.clone(),
                    crc: t.crc,
                },
            };
            if !seen_imports.insert(imp.name.clone()) {
                return Err(err(format!(
                    "imports `{}` twice; list each symbol once",
                    imp.name
                )));
            }
            spec.imports.push(imp);
        }
        spec.import_namespaces = rm.import_namespaces.clone();
        spec.has_exit = rm.has_exit.unwrap_or(true);
        spec.builtin = rm.builtin.unwrap_or(false);
        spec.depends_override = rm.depends.clone();
        spec.provenance = modkit_core::taint::Provenance {
            out_of_tree: rm.out_of_tree.unwrap_or(false),
            signed: rm.signed.unwrap_or(true),
            staging: rm.staging.unwrap_or(false),
            versions: rm.versions.unwrap_or(true),
        };
        let mut msteps = Vec::new();
        for (i, s) in rm.init.iter().enumerate() {
            let run = actions(&s.run, Where::Init).map_err(|e| {
                err_at(e.at, format!("init step {} `{}`: {}", i + 1, s.step, e.msg))
            })?;
            let undo = match &s.undo {
                None | Some(RawUndo::Flag(false)) => None,
                Some(RawUndo::Flag(true)) => Some(Vec::new()),
                Some(RawUndo::Actions(a)) => Some(actions(a, Where::Undo).map_err(|e| {
                    err_at(
                        e.at,
                        format!("init step {} `{}` undo: {}", i + 1, s.step, e.msg),
                    )
                })?),
            };
            spec.init.push(InitStepSpec {
                name: s.step.clone(),
                has_undo: undo.is_some(),
            });
            msteps.push(Step {
                name: s.step.clone(),
                run,
                undo,
            });
        }
        if spec.builtin && !msteps.is_empty() {
            return Err(err(
                "a builtin module has no init table to run; drop `init` or `builtin`".into(),
            ));
        }
        let parse_probe =
            |l: &[Spanned<RawAction>]| actions(l, Where::Probe).map_err(|e| (e.at, e.msg));
        for (m, d) in crate::devices::module_drivers(
            &name,
            &rm.driver,
            &mut spec.aliases,
            &mut msteps,
            &mut spec.init,
            spec.builtin,
            &parse_probe,
        )
        .map_err(|(at, msg)| err_at(at, msg))?
        {
            let at = rm.driver.first().map(|d| d.span().start).unwrap_or(off);
            drivers.push((m, d, at));
        }
        if let Some(ti) = tree_index.remove(&name) {
            crate::tree::overlay_tree_module(&specs[ti], &mut spec, rm).map_err(err)?;
            module_lines.insert(name, off);
            specs[ti] = spec;
            steps[ti] = msteps;
            continue;
        }
        module_lines.entry(name).or_insert(off);
        specs.push(spec);
        steps.push(msteps);
    }
    let db = ModuleDb::new(specs).map_err(|e| {
        let name = match &e {
            SpecError::DuplicateModule(n) => Some(n.clone()),
            SpecError::DuplicateExport { module, .. }
            | SpecError::UnknownReference { module, .. }
            | SpecError::BadAlias { module, .. } => Some(module.clone()),
            SpecError::DuplicateBuiltinExport { second, .. } => Some(second.clone()),
            SpecError::EmptyName => None,
        };
        let off = name
            .and_then(|n| {
                if matches!(e, SpecError::DuplicateModule(_)) {
                    raw.module
                        .iter()
                        .filter(|m| normalize_name(m.get_ref().name.get_ref()) == n)
                        .nth(1)
                        .map(|m| m.span().start)
                } else {
                    module_lines.get(&n).copied()
                }
            })
            .unwrap_or(0);
        cx.at(off, e.to_string())
    })?;
    let device_setup = crate::devices::finish(
        &raw.bus,
        &raw.device,
        &raw.udev,
        &raw.deferred_probe_timeout,
        drivers,
        &db,
    )
    .map_err(|(at, msg)| cx.at(at, msg))?;
    let module_names: Vec<String> = db.specs().iter().map(|s| s.name.clone()).collect();
    let unknown_module = |n: &str| {
        format!(
            "no module is named `{n}`{}",
            did_you_mean(n, module_names.iter().map(|s| s.as_str()))
        )
    };

    // Events.
    let mut events = Vec::new();
    let mut ids = BTreeSet::new();
    let mut total_threads: u32 = 0;
    let mut kills: Vec<(Spanned<String>, String)> = Vec::new();
    for (i, ev) in raw.event.iter().enumerate() {
        let off = ev.span().start;
        let re = ev.get_ref();
        let id = re.id.clone().unwrap_or_else(|| format!("event{}", i + 1));
        let err = |msg: String| cx.at(off, format!("[[event]] `{id}`: {msg}"));
        if !ids.insert(id.clone()) {
            return Err(err(
                "this id is used by an earlier event; ids must be unique".into(),
            ));
        }
        let err_at = |at: usize, msg: String| cx.at(at, format!("[[event]] `{id}`: {msg}"));
        let at = match &re.at {
            Some(t) => parse_duration(t.get_ref())
                .map_err(|e| err_at(t.span().start, format!("key `at`: {e}")))?,
            None => 0,
        };
        let threads = re.threads.as_ref().map(|t| *t.get_ref()).unwrap_or(1);
        let threads_at = re.threads.as_ref().map(|t| t.span().start).unwrap_or(off);
        if threads == 0 {
            return Err(err_at(threads_at, "`threads` must be at least 1".into()));
        }
        if threads > MAX_THREADS_PER_EVENT {
            return Err(err_at(
                threads_at,
                format!(
                    "`threads = {threads}` is more than the limit of {MAX_THREADS_PER_EVENT} threads per event: use fewer threads"
                ),
            ));
        }
        total_threads += threads;
        if total_threads > MAX_THREADS_TOTAL {
            return Err(err_at(
                threads_at,
                format!(
                    "the events so far have {total_threads} threads in all, more than the limit of {MAX_THREADS_TOTAL} for a scenario: use fewer threads"
                ),
            ));
        }
        let mut kinds = Vec::new();
        if let Some(m) = &re.modprobe {
            kinds.push(EventKind::Modprobe(m.clone()));
        }
        if let Some(m) = &re.insmod {
            // A name no module has fails at run time with ENOENT, as `rmmod` of one does
            // (and as insmod of a missing file does).
            kinds.push(EventKind::Insmod(normalize_name(m)));
        }
        let timeout = match &re.timeout {
            Some(t) => Some(
                parse_duration(t.get_ref())
                    .map_err(|e| err_at(t.span().start, format!("key `timeout`: {e}")))?,
            ),
            None => None,
        };
        if let Some(m) = &re.rmmod {
            kinds.push(EventKind::Rmmod {
                name: normalize_name(m),
                force: re.force.unwrap_or(false),
                wait: re.wait.unwrap_or(false),
                timeout,
            });
        } else if re.force.is_some() || re.timeout.is_some() {
            return Err(err("`force` and `timeout` go with `rmmod`".into()));
        }
        if let Some(m) = &re.request_module {
            kinds.push(EventKind::RequestModule {
                name: m.clone(),
                wait: re.wait.unwrap_or(true),
            });
        }
        if re.wait.is_some() && re.rmmod.is_none() && re.request_module.is_none() {
            return Err(err("`wait` goes with `rmmod` or `request_module`".into()));
        }
        if let Some(r) = &re.run {
            kinds.push(EventKind::Run(actions(r, Where::Event).map_err(|e| {
                err_at(e.at.unwrap_or(off), format!("key `run`: {}", e.msg))
            })?));
        }
        if let Some(s) = &re.set {
            match &s.modprobe {
                Some(p) => kinds.push(EventKind::SetModprobe(p.clone())),
                None => {
                    return Err(err(
                        "`set` needs a setting, e.g. set = { modprobe = \"\" }".into()
                    ))
                }
            }
        }
        if let Some(target) = &re.kill {
            kills.push((target.clone(), id.clone()));
            kinds.push(EventKind::Kill(target.get_ref().clone()));
        }
        for d in crate::devices::event(re).map_err(err)? {
            kinds.push(EventKind::Device(d));
        }
        if let Some(name) = &re.kill_modprobe {
            if name.is_empty() {
                return Err(err(
                    "`kill_modprobe` needs the name request_module was given".into(),
                ));
            }
            kinds.push(EventKind::KillModprobe(name.clone()));
        }
        if kinds.len() != 1 {
            return Err(err(format!(
                "an event does exactly one of modprobe, insmod, rmmod, request_module, run, set, kill, kill_modprobe, add_device, remove_device, bind, unbind; this one has {}",
                kinds.len()
            )));
        }
        let kind = kinds.pop().expect("one");
        if matches!(kind, EventKind::Kill(_) | EventKind::KillModprobe(_)) && threads != 1 {
            return Err(err_at(
                threads_at,
                "a kill event signals every matching task at once: leave `threads` at 1".into(),
            ));
        }
        let init_module = match &re.syscall {
            None => false,
            Some(sys) => {
                if !matches!(kind, EventKind::Insmod(_)) {
                    return Err(err_at(
                        sys.span().start,
                        "`syscall` goes with `insmod` (modprobe always uses finit_module)".into(),
                    ));
                }
                match sys.get_ref().as_str() {
                    "finit_module" => false,
                    "init_module" => true,
                    other => {
                        return Err(err_at(
                            sys.span().start,
                            format!(
                                "key `syscall`: unknown system call `{other}`: use \"finit_module\" or \"init_module\"{}",
                                did_you_mean(other, ["finit_module", "init_module"])
                            ),
                        ))
                    }
                }
            }
        };
        events.push(Event {
            id,
            at,
            threads,
            kind,
            init_module,
        });
    }
    // A kill names an event of the file (any, earlier or later), not itself.
    for (target, by) in &kills {
        let t = target.get_ref();
        if t == by {
            return Err(cx.at(
                target.span().start,
                format!("[[event]] `{by}`: key `kill`: an event cannot kill itself"),
            ));
        }
        if !ids.contains(t) {
            return Err(cx.at(
                target.span().start,
                format!(
                    "[[event]] `{by}`: key `kill`: no event has id `{t}`{}",
                    did_you_mean(t, ids.iter().map(|s| s.as_str()))
                ),
            ));
        }
    }

    // Expectations.
    let mut expects = Vec::new();
    for (i, ex) in raw.expect.iter().enumerate() {
        let off = ex.span().start;
        let re = ex.get_ref();
        let err = |msg: String| cx.at(off, format!("[[expect]] #{}: {msg}", i + 1));
        let pol = match &re.policy {
            Some(p) => p
                .parse::<Policy>()
                .map_err(|e| err(format!("key `policy`: {e}")))?,
            None => policy,
        };
        let check_module = |key: &str, n: &str| -> Result<String, ScenarioError> {
            let nn = normalize_name(n);
            if db.id(&nn).is_none() {
                return Err(err(format!("key `{key}`: {}", unknown_module(n))));
            }
            Ok(nn)
        };
        let check_event = |key: &str, id: &str| -> Result<(), ScenarioError> {
            if !ids.contains(id) {
                return Err(err(format!(
                    "key `{key}`: no event has id `{id}`{}",
                    did_you_mean(id, ids.iter().map(|s| s.as_str()))
                )));
            }
            Ok(())
        };
        let mut final_ = BTreeMap::new();
        for (m, s) in &re.final_ {
            let m = check_module("final", m)?;
            let st = match s.as_str() {
                "absent" => None,
                "unformed" => Some(ModState::Unformed),
                "coming" => Some(ModState::Coming),
                "live" => Some(ModState::Live),
                "going" => Some(ModState::Going),
                other => {
                    return Err(err(format!(
                    "key `final`: `{other}` is not a state{}; use absent, coming, live or going",
                    did_you_mean(other, ["absent", "coming", "live", "going"])
                )))
                }
            };
            final_.insert(m, st);
        }
        let mut results = BTreeMap::new();
        for (id, c) in &re.results {
            check_event("results", id)?;
            let list = match c {
                RawCodes::One(c) => vec![c.clone()],
                RawCodes::Many(v) => v.clone(),
            };
            let codes = list
                .iter()
                .map(code)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(format!("key `results.{id}`: {e}")))?;
            results.insert(id.clone(), codes);
        }
        let mut results_any = BTreeMap::new();
        for (id, list) in &re.results_any {
            check_event("results_any", id)?;
            let codes = list
                .iter()
                .map(code)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(format!("key `results_any.{id}`: {e}")))?;
            results_any.insert(id.clone(), codes);
        }
        let mut init_calls = BTreeMap::new();
        for (m, n) in &re.init_calls {
            init_calls.insert(check_module("init_calls", m)?, *n);
        }
        let mut refcount = BTreeMap::new();
        for (m, n) in &re.refcount {
            refcount.insert(check_module("refcount", m)?, *n);
        }
        let mut holders = BTreeMap::new();
        for (m, hs) in &re.holders {
            let m = check_module("holders", m)?;
            let mut v = Vec::new();
            for h in hs {
                v.push(check_module("holders", h)?);
            }
            v.sort();
            holders.insert(m, v);
        }
        let diag = |key: &str, list: &[String]| -> Result<Vec<DiagKind>, ScenarioError> {
            list.iter()
                .map(|d| {
                    DiagKind::from_name(d).ok_or_else(|| {
                        err(format!(
                            "key `{key}`: `{d}` is not a diagnostic kind{}",
                            did_you_mean(d, DiagKind::ALL.iter().map(|k| k.name()))
                        ))
                    })
                })
                .collect()
        };
        let dur = |key: &str, v: &Option<Spanned<String>>| -> Result<Option<Time>, ScenarioError> {
            match v {
                Some(t) => parse_duration(t.get_ref()).map(Some).map_err(|e| {
                    cx.at(
                        t.span().start,
                        format!("[[expect]] #{}: key `{key}`: {e}", i + 1),
                    )
                }),
                None => Ok(None),
            }
        };
        expects.push(Expect {
            index: i + 1,
            line: cx.at(off, "").line,
            policy: pol,
            note: re.note.clone(),
            kernel_skip: re.kernel_skip.clone(),
            final_,
            results,
            results_any,
            init_calls,
            refcount,
            holders,
            time_max: dur("time_max", &re.time_max)?,
            time_min: dur("time_min", &re.time_min)?,
            log: re.log.clone(),
            log_absent: re.log_absent.clone(),
            diagnostics: diag("diagnostics", &re.diagnostics)?,
            diagnostics_absent: diag("diagnostics_absent", &re.diagnostics_absent)?,
            hints: re.hints.clone(),
            devices: {
                let mut d = BTreeMap::new();
                for (dev, w) in &re.devices {
                    crate::devices::state_word(w, &device_setup)
                        .map_err(|e| err(format!("key `devices.{dev}`: {e}")))?;
                    d.insert(dev.clone(), w.clone());
                }
                d
            },
            taints: {
                let mut t = BTreeMap::new();
                for (m, flags) in &re.taints {
                    let m = check_module("taints", m)?;
                    t.insert(
                        m,
                        taint_flags(flags).map_err(|e| err(format!("key `taints`: {e}")))?,
                    );
                }
                t
            },
        });
    }

    Ok(Scenario {
        file: file.to_string(),
        name: raw.name.clone(),
        policy,
        seed: raw.seed.unwrap_or(0),
        modprobe: raw
            .modprobe
            .clone()
            .unwrap_or_else(|| "/sbin/modprobe".into()),
        modprobe_time,
        max_steps,
        kernel_races: raw.kernel_races.clone(),
        tree_unresolved,
        tree_warnings,
        db: std::sync::Arc::new(db),
        steps,
        events,
        expects,
        config,
        devices: device_setup,
    })
}

/// Checks a taint-flag string (`"POE"`) and writes it in the kernel's order.
fn taint_flags(flags: &str) -> Result<String, String> {
    use modkit_core::taint::Taint;
    for c in flags.chars() {
        if !Taint::MODULE_FLAGS.iter().any(|t| t.letter() == c) {
            return Err(format!(
                "`{flags}`: `{c}` is not a module taint flag (P proprietary, F forced, C staging, O out of tree, E unsigned)"
            ));
        }
    }
    Ok(Taint::MODULE_FLAGS
        .iter()
        .map(|t| t.letter())
        .filter(|l| flags.contains(*l))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ScenarioError {
        parse("t.toml", text).expect_err("should fail")
    }

    #[test]
    fn typo_gets_line_and_suggestion() {
        let e = err("[[module]]\nnmae = \"x\"\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("did you mean `name`"), "{e}");
        let e = err(
            "[[module]]\nname = \"x\"\n[[module.init]]\nstep = \"a\"\nrun = [{ slep = \"1s\" }]\n",
        );
        assert!(e.message.contains("did you mean `sleep`"), "{e}");
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn semantic_errors_name_the_place() {
        let e = err("[[module]]\nname = \"a\"\n\n[[event]]\nid = \"x\"\nmodprobe = \"a\"\n[[expect]]\nfinal = { b = \"live\" }\n");
        assert_eq!(e.line, 7);
        assert!(e.message.contains("no module is named `b`"), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[event]]\nid = \"x\"\nmodprobe = \"a\"\n[[expect]]\nresults = { y = \"ok\" }\n");
        assert!(e.message.contains("no event has id `y`"), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[expect]]\nfinal = { a = \"lvie\" }\n");
        assert!(e.message.contains("did you mean `live`"), "{e}");
        let e = err("policy = \"linux-x\"\n");
        assert!(e.message.contains("unknown policy"), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[module]]\nname = \"a\"\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[event]]\nmodprobe = \"a\"\ninsmod = \"a\"\n");
        assert!(e.message.contains("exactly one"), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ sleep = \"1s\", fail = \"EIO\" }]\n");
        assert!(e.message.contains("one verb"), "{e}");
    }

    #[test]
    fn module_names_follow_the_kernels_limit() {
        let ok = "m".repeat(MODULE_NAME_LEN - 1);
        parse("t.toml", &format!("[[module]]\nname = \"{ok}\"\n")).unwrap();
        let long = "m".repeat(MODULE_NAME_LEN);
        let e = err(&format!("\n[[module]]\nname = \"{long}\"\n"));
        assert_eq!((e.line, e.col), (3, 8), "{e}");
        assert!(e.message.contains("limit is 55 bytes"), "{e}");
        // 65,536 characters once panicked in the report; now the parser stops them.
        let huge = "x".repeat(65_536);
        let e = err(&format!("[[module]]\nname = \"{huge}\"\n"));
        assert!(e.message.contains("65536 bytes long"), "{e}");
        assert!(
            e.to_string().len() < 400,
            "the error does not repeat the name"
        );
        // Bytes, not characters: 19 CJK characters are 57 bytes.
        let e = err(&format!("[[module]]\nname = \"{}\"\n", "模".repeat(19)));
        assert!(e.message.contains("57 bytes"), "{e}");
    }

    #[test]
    fn unknown_names_for_insmod_and_rmmod_are_alike() {
        let s = parse(
            "t.toml",
            "[[module]]\nname = \"a\"\n[[event]]\nid = \"i\"\ninsmod = \"ghost\"\n[[event]]\nid = \"r\"\nrmmod = \"ghost\"\n",
        )
        .unwrap();
        let run = crate::Sim::new(&s, Policy::Modkit, 0).run().unwrap();
        assert_eq!(run.results["i"], vec![Outcome::Err(Errno::ENOENT)]);
        assert_eq!(run.results["r"], vec![Outcome::Err(Errno::ENOENT)]);
    }

    #[test]
    fn errors_in_actions_point_at_the_action_and_its_key() {
        let e = err("[[module]]\nname = \"a\"\n\n[[module.init]]\nstep = \"s\"\nrun = [{ sleep = \"1ms\" },\n       { sleep = \"10 parsecs\" }]\n");
        assert_eq!((e.line, e.col), (7, 18), "{e}");
        assert!(e.message.contains("action 2: key `sleep`: duration"), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [\n  { fail = \"ENOMME\" },\n]\n");
        assert_eq!((e.line, e.col), (6, 12), "{e}");
        assert!(e.message.contains("key `fail`"), "{e}");
        assert!(e.message.contains("did you mean `ENOMEM`"), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nundo = [\n  { fail = 0 },\n]\n");
        assert_eq!((e.line, e.col), (6, 12), "{e}");
        let e = err("[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ spawn = [\n  { wait_for = \"c\", timeout = \"soon\" }] }]\n");
        assert_eq!(e.line, 6, "{e}");
        assert!(
            e.message.contains("in `spawn`: action 1: key `timeout`"),
            "{e}"
        );
        // A mistake without a key of its own points at the action.
        let e = err("[[event]]\nrun = [\n  { sleep = \"1s\" },\n  { bogus = 1 } ]\n");
        assert_eq!(e.line, 4, "{e}");
        let e = err(
            "[[event]]\nrun = [\n  { sleep = \"1s\" },\n  { sleep = \"1s\", fail = \"EIO\" } ]\n",
        );
        assert_eq!((e.line, e.col), (4, 3), "{e}");
        let e = err("[[event]]\nmodprobe = \"a\"\nat = \"99999999999s\"\n");
        assert_eq!((e.line, e.col), (3, 6), "{e}");
        assert!(e.message.contains("the most is 1000000000s"), "{e}");
        let e = err("modprobe_time = \"x\"\n");
        assert_eq!((e.line, e.col), (1, 17), "{e}");
        let e = err("[[expect]]\n\ntime_max = \"1 fortnight\"\n");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn thread_counts_are_bounded() {
        let e = err("[[module]]\nname = \"a\"\n[[event]]\nmodprobe = \"a\"\nthreads = 10000000\n");
        assert_eq!((e.line, e.col), (5, 11), "{e}");
        assert!(
            e.message.contains("limit of 100000 threads per event"),
            "{e}"
        );
        parse(
            "t.toml",
            "[[module]]\nname = \"a\"\n[[event]]\nmodprobe = \"a\"\nthreads = 100000\n",
        )
        .unwrap();
        let e = err("[[module]]\nname = \"a\"\n[[event]]\nmodprobe = \"a\"\nthreads = 60000\n[[event]]\nmodprobe = \"a\"\nthreads = 60000\n");
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.contains("120000 threads in all"), "{e}");
        assert!(e.message.contains("limit of 100000"), "{e}");
    }

    #[test]
    fn load_reads_a_bounded_amount_of_utf8() {
        let dir = std::env::temp_dir().join(format!("modkit-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, b"name = \"ok\"\nseed = 1 # caf\xe9\n").unwrap();
        let e = load(&bad).unwrap_err();
        assert_eq!((e.line, e.col), (2, 15), "{e}");
        assert!(e.message.contains("byte 26 (0xe9)"), "{e}");
        let big = dir.join("big.toml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_SCENARIO_BYTES + 1).unwrap();
        let e = load(&big).unwrap_err();
        assert!(e.message.contains("larger than 16 MiB"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        #[cfg(target_os = "linux")]
        {
            let t = std::time::Instant::now();
            let e = load(Path::new("/dev/zero")).unwrap_err();
            assert!(e.message.contains("larger than 16 MiB"), "{e}");
            assert!(t.elapsed().as_secs() < 5);
        }
    }

    #[test]
    fn a_missing_tree_is_a_clear_error() {
        let e = err("tree = \"/nonexistent/lib/modules/6.1.0\"\nsymvers = \"/nonexistent/Module.symvers\"\n");
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.starts_with("key `tree`:"), "{e}");
        let e = err("tree = \"/nonexistent/lib/modules/6.1.0\"\n");
        assert!(e.message.contains("no Module.symvers"), "{e}");
        let e = err("symvers = \"x\"\n");
        assert!(e.message.contains("goes with `tree`"), "{e}");
    }

    #[test]
    fn full_example_parses() {
        let s = parse(
            "t.toml",
            r#"
policy = "linux-5.15"
[[module]]
name = "i915"
exports = ["a", { name = "b", namespace = "NS", gpl_only = true, crc = 0x1c2b3a4d }]
[[module.init]]
step = "globals"
undo = true
[[module.init]]
step = "req"
run = [{ request_module = "kvmgt", wait = false }]
undo = [{ sleep = "1ms" }]
[[module]]
name = "kvm-gt"
imports = ["a", { name = "b", crc = 0x1c2b3a4d }]
import_namespaces = ["NS"]
[[event]]
id = "boot"
modprobe = "i915"
[[expect]]
final = { i915 = "live", kvm_gt = "absent" }
results = { boot = ["ok", 0] }
time_max = "1s"
diagnostics = ["dependency_cycle"]
"#,
        )
        .unwrap();
        assert_eq!(s.db.len(), 2);
        assert_eq!(s.steps[0].len(), 2);
        assert_eq!(s.expects[0].policy.to_string(), "linux-5.15");
        assert!(s.db.id("kvm_gt").is_some());
    }
}
