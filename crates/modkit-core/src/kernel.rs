//! The kernel's module state: registry, symbol table, references, registrations, pins,
//! the request_module limiter, the log and the diagnostics. No I/O, no clock: the driver
//! sets the time before each step.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::diag::{DiagKind, Diagnostic};
use crate::errno::{Errno, Outcome};
use crate::policy::Policy;
use crate::spec::ModuleDb;
use crate::waits::{TaskId, WaitGraph, WaitKey};

/// Index of a module in the [`ModuleDb`].
pub type ModId = usize;
/// Virtual time in nanoseconds.
pub type Time = u64;

/// One second of virtual time.
pub const SEC: Time = 1_000_000_000;

/// The state of a module present in the module list (`enum module_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModState {
    /// Still being set up; invisible to `find_module` and `find_symbol`.
    Unformed,
    /// Fully formed, running its init.
    Coming,
    /// Normal state.
    Live,
    /// Going away.
    Going,
}

impl ModState {
    /// The word scenario files and reports use.
    pub fn name(self) -> &'static str {
        match self {
            ModState::Unformed => "unformed",
            ModState::Coming => "coming",
            ModState::Live => "live",
            ModState::Going => "going",
        }
    }
}

/// A module present in the module list.
#[derive(Debug, Clone)]
pub struct Instance {
    /// State.
    pub state: ModState,
    /// `module_refcount()`: what lsmod shows (1 during init for the initial reference).
    pub refcount: i64,
    /// Modules using this one (`source_list`, lsmod's "used by").
    pub holders: BTreeSet<ModId>,
    /// Modules this one uses (`target_list`).
    pub targets: BTreeSet<ModId>,
    /// Init steps completed (`init_progress`).
    pub progress: usize,
    /// The task running this module's init or exit.
    pub owner_task: Option<TaskId>,
    /// modkit `rmmod --wait`: new pins are refused while the unload waits.
    pub draining: bool,
}

/// A reference taken with try_module_get (a pin), and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The pinned module.
    pub module: ModId,
    /// Who holds it: an open file, a lookup, an actor.
    pub holder: String,
}

/// An exported symbol in the kernel's symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymEntry {
    /// Owner module.
    pub owner: ModId,
    /// Namespace.
    pub namespace: Option<String>,
    /// GPL-only.
    pub gpl_only: bool,
    /// CRC.
    pub crc: Option<u32>,
}

/// One kernel log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Virtual time (ns).
    pub time: Time,
    /// Text, in the kernel's words under `linux-X.Y`.
    pub text: String,
}

/// The request_module limiter's state.
#[derive(Debug, Clone, Default)]
pub struct KmodLimit {
    /// Slots in use.
    pub in_use: usize,
    /// FIFO of tasks waiting for a slot (semaphore era).
    pub queue: VecDeque<TaskId>,
    /// Tasks handed a slot by `up()` while they slept.
    pub granted: BTreeSet<TaskId>,
    /// "runaway loop" messages printed so far (at most 5).
    pub runaway_msgs: u32,
    /// Per call site: start of the ratelimit window, messages printed in it, and
    /// messages suppressed since the last report.
    pub ratelimit: BTreeMap<&'static str, (Time, u32, u32)>,
    /// Highest number of slots in use at once.
    pub peak: usize,
}

/// A load or request in flight that others merge onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The task doing the work.
    pub task: TaskId,
    /// Generation: the key of its result.
    pub gen: u64,
}

/// The whole module system state.
#[derive(Debug)]
pub struct Kernel {
    /// The module files known (modules.dep, modules.alias); shared, never copied per run.
    pub db: std::sync::Arc<ModuleDb>,
    /// The semantics in force.
    pub policy: Policy,
    /// Present modules.
    pub instances: Vec<Option<Instance>>,
    /// Exported symbols of formed modules and of builtin modules.
    pub symtab: HashMap<String, SymEntry>,
    /// Registrations (`kind:name` → owner).
    pub registrations: BTreeMap<String, ModId>,
    /// Pins by id.
    pub pins: BTreeMap<u64, Pin>,
    /// Pins whose module was freed under them (a use after free waiting to happen).
    pub dangling: BTreeMap<u64, Pin>,
    next_pin: u64,
    /// `/proc/sys/kernel/modprobe`.
    pub modprobe_path: String,
    /// Virtual time a modprobe process takes before its first insertion (exec, reading
    /// modules.dep): 0 for in-process hosts, 1 ms by default in scenarios.
    pub modprobe_exec: Time,
    /// The request_module limiter.
    pub kmod: KmodLimit,
    /// Times each module's init table started.
    pub init_calls: Vec<u32>,
    /// Loads in flight by module, for merging (modkit) and idempotent finit (6.5+).
    pub inflight_loads: HashMap<ModId, InFlight>,
    /// Identical request_module calls in flight (modkit).
    pub inflight_requests: HashMap<String, InFlight>,
    /// Shared results by generation.
    pub results: HashMap<u64, Outcome>,
    next_gen: u64,
    /// Exit outcomes of finished tasks that someone waits for (request_module's wait on
    /// modprobe), until read.
    pub task_exits: HashMap<TaskId, Outcome>,
    /// Tasks whose exit outcome someone will read.
    watched: BTreeSet<TaskId>,
    /// Who waits on what.
    pub waits: WaitGraph,
    /// The kernel log.
    pub log: Vec<LogLine>,
    /// Diagnostics raised.
    pub diagnostics: Vec<Diagnostic>,
    /// Wakeups to deliver (drained by the driver).
    pub wakes: Vec<WaitKey>,
    /// The current virtual time.
    pub now: Time,
    /// Call sites of `pr_warn_once` that have printed (one flag per site).
    pub(crate) warned_once: BTreeSet<String>,
    /// Completed-but-not-undone init steps with an undo, per (module, step).
    step_balance: HashMap<(ModId, usize), i32>,
    /// Broken invariants seen so far (must stay empty; property tests check it).
    pub violations: Vec<String>,
    /// State changes over time, `(time, module, new state)` (`None`: freed), kept when
    /// `record_history` is set (for timelines).
    pub history: Vec<(Time, ModId, Option<ModState>)>,
    /// Keep [`Kernel::history`].
    pub record_history: bool,
    /// Told of every change ([`crate::events`]); `None`: nobody listens.
    pub observer: Option<crate::events::Observer>,
    /// A forced unload is under way for this module (it may be freed while pinned).
    forced: BTreeSet<ModId>,
    /// Tasks sent SIGKILL ([`crate::signal`]).
    pub signals: crate::signal::Signals,
    /// Which task took each pin; waits refused to break a pin cycle ([`crate::pinwait`]).
    pub pinwait: crate::pinwait::PinWaits,
    /// Build options and boot parameters of the loader (`module.sig_enforce`, …).
    pub config: crate::taint::LoaderConfig,
    /// Taints: kernel-wide and per module.
    pub taint: crate::taint::TaintState,
}

/// Paths at which a modprobe binary exists in the simulated root file system.
pub const MODPROBE_PATHS: [&str; 4] = [
    "/sbin/modprobe",
    "/usr/sbin/modprobe",
    "/bin/modprobe",
    "/usr/bin/modprobe",
];

impl Kernel {
    /// A kernel with the given modules; builtin modules are live from the start.
    pub fn new(db: impl Into<std::sync::Arc<ModuleDb>>, policy: Policy) -> Self {
        let db: std::sync::Arc<ModuleDb> = db.into();
        let n = db.len();
        let mut k = Kernel {
            db,
            policy,
            instances: vec![None; n],
            symtab: HashMap::new(),
            registrations: BTreeMap::new(),
            pins: BTreeMap::new(),
            dangling: BTreeMap::new(),
            next_pin: 1,
            modprobe_path: "/sbin/modprobe".into(),
            modprobe_exec: 0,
            kmod: KmodLimit::default(),
            init_calls: vec![0; n],
            inflight_loads: HashMap::new(),
            inflight_requests: HashMap::new(),
            results: HashMap::new(),
            next_gen: 1,
            task_exits: HashMap::new(),
            watched: BTreeSet::new(),
            waits: WaitGraph::default(),
            log: Vec::new(),
            diagnostics: Vec::new(),
            wakes: Vec::new(),
            now: 0,
            warned_once: BTreeSet::new(),
            step_balance: HashMap::new(),
            violations: Vec::new(),
            history: Vec::new(),
            record_history: false,
            observer: None,
            forced: BTreeSet::new(),
            signals: Default::default(),
            pinwait: Default::default(),
            config: crate::taint::LoaderConfig::default(),
            taint: crate::taint::TaintState::default(),
        };
        for id in 0..n {
            k.install_builtin(id);
        }
        k
    }

    /// Makes a builtin module live with its exports in the symbol table.
    fn install_builtin(&mut self, id: ModId) {
        if !self.db.spec(id).builtin {
            return;
        }
        let exports = self.db.spec(id).exports.clone();
        for e in exports {
            self.symtab.insert(
                e.name.clone(),
                SymEntry {
                    owner: id,
                    namespace: e.namespace,
                    gpl_only: e.gpl_only,
                    crc: e.crc,
                },
            );
        }
        self.instances[id] = Some(Instance {
            state: ModState::Live,
            refcount: 0,
            holders: BTreeSet::new(),
            targets: BTreeSet::new(),
            progress: 0,
            owner_task: None,
            draining: false,
        });
    }

    /// Adds a module file (as copying a .ko in and rerunning depmod would). Checks it
    /// against the others; on error nothing changes.
    pub fn add_module(
        &mut self,
        spec: crate::spec::ModuleSpec,
    ) -> Result<ModId, crate::spec::SpecError> {
        let mut specs = self.db.specs().to_vec();
        specs.push(spec);
        let db = ModuleDb::new(specs)?;
        let id = db.len() - 1;
        self.db = std::sync::Arc::new(db);
        self.instances.push(None);
        self.init_calls.push(0);
        self.install_builtin(id);
        Ok(id)
    }

    /// The name of module `id`.
    pub fn name(&self, id: ModId) -> &str {
        &self.db.spec(id).name
    }

    /// The state of module `id`, `None` when absent.
    pub fn state(&self, id: ModId) -> Option<ModState> {
        self.instances[id].as_ref().map(|i| i.state)
    }

    /// `find_module()`: the module if present and not UNFORMED.
    pub fn find_module(&self, name: &str) -> Option<ModId> {
        let id = self.db.id(name)?;
        match self.state(id) {
            Some(ModState::Unformed) | None => None,
            Some(_) => Some(id),
        }
    }

    /// Appends a kernel log line at the current time.
    pub fn printk(&mut self, text: impl Into<String>) {
        self.log.push(LogLine {
            time: self.now,
            text: text.into(),
        });
    }

    /// `pr_warn_ratelimited` with the kernel's default burst (10 messages per 5 s), with
    /// one ratelimit state per call site, as each `pr_warn_ratelimited` has its own. As
    /// `___ratelimit()` (lib/ratelimit.c) does, the first call of a new window first reports
    /// the messages the last one suppressed: "`func`: N callbacks suppressed", where `func`
    /// is the function holding the call site.
    pub fn printk_ratelimited(&mut self, site: &'static str, func: &str, text: String) {
        let now = self.now;
        let (start, n, missed) = self.kmod.ratelimit.entry(site).or_insert((now, 0, 0));
        let mut suppressed = 0;
        if now >= *start + 5 * SEC {
            suppressed = std::mem::take(missed);
            *start = now;
            *n = 0;
        }
        let print = if *n < 10 {
            *n += 1;
            true
        } else {
            *missed += 1;
            false
        };
        if suppressed > 0 {
            self.printk(format!("{func}: {suppressed} callbacks suppressed"));
        }
        if print {
            self.printk(text);
        }
    }

    /// Raises a diagnostic.
    pub fn diagnose(
        &mut self,
        kind: DiagKind,
        module: Option<ModId>,
        message: String,
        chain: Vec<String>,
        hint: Option<String>,
    ) {
        let module = module.map(|m| self.name(m).to_string());
        self.diagnostics.push(Diagnostic {
            time: self.now,
            kind,
            module,
            message,
            chain,
            hint,
        });
    }

    /// `wake_up_all(&module_wq)`.
    pub fn wake_module_wq(&mut self) {
        self.wakes.push(WaitKey::ModuleWq);
    }

    /// A fresh generation number for a shared result.
    pub fn new_gen(&mut self) -> u64 {
        let g = self.next_gen;
        self.next_gen += 1;
        g
    }

    /// `try_module_get()` by a named holder: succeeds for COMING and LIVE modules that are
    /// not being drained by a waiting rmmod. Returns the pin id.
    pub fn try_module_get(&mut self, id: ModId, holder: &str) -> Result<u64, Errno> {
        let inst = self.instances[id].as_mut().ok_or(Errno::ENOENT)?;
        match inst.state {
            ModState::Coming | ModState::Live if !inst.draining => {}
            _ => return Err(Errno::ENOENT),
        }
        if !self.db.spec(id).builtin {
            inst.refcount += 1;
        }
        let pin = self.next_pin;
        self.next_pin += 1;
        self.pins.insert(
            pin,
            Pin {
                module: id,
                holder: holder.to_string(),
            },
        );
        self.emit(crate::events::Event::PinTaken { module: id, pin });
        Ok(pin)
    }

    /// `module_put()` of a pin taken by [`Kernel::try_module_get`].
    pub fn module_put(&mut self, pin: u64) -> Result<(), Errno> {
        if let Some(p) = self.dangling.remove(&pin) {
            let name = self.name(p.module).to_string();
            let msg = format!(
                "{} put a reference on {name} after {name} was freed",
                p.holder
            );
            self.diagnose(
                DiagKind::FreedWhilePinned,
                Some(p.module),
                msg,
                Vec::new(),
                None,
            );
            return Ok(());
        }
        let p = self.pins.remove(&pin).ok_or(Errno::EINVAL)?;
        self.forget_pin_task(pin);
        self.emit(crate::events::Event::PinDropped {
            module: p.module,
            pin,
        });
        let builtin = self.db.spec(p.module).builtin;
        if let Some(inst) = self.instances[p.module].as_mut() {
            if !builtin {
                inst.refcount -= 1;
            }
            if inst.refcount < 0 {
                let v = format!("{}: refcount went negative", self.db.spec(p.module).name);
                self.violations.push(v);
            }
            if inst.refcount == 0 {
                self.wakes.push(WaitKey::Pins(p.module));
            }
        }
        Ok(())
    }

    /// Finds a pin on `id` held by `holder` (for put_module by name).
    pub fn find_pin(&self, id: ModId, holder: &str) -> Option<u64> {
        self.pins
            .iter()
            .find(|(_, p)| p.module == id && p.holder == holder)
            .or_else(|| self.pins.iter().find(|(_, p)| p.module == id))
            .or_else(|| self.dangling.iter().find(|(_, p)| p.module == id))
            .map(|(k, _)| *k)
    }

    /// Registers `key` (`kind:name`) for `owner`; EEXIST when already registered.
    pub fn register(&mut self, owner: ModId, key: &str) -> Result<(), Errno> {
        if let Some(&prev) = self.registrations.get(key) {
            let gone = self.instances[prev].is_none();
            let leaked = if gone {
                format!(" (left behind by {}, which is gone)", self.name(prev))
            } else {
                String::new()
            };
            match key.split_once(':') {
                Some(("debugfs", name)) => {
                    if let Some(line) = crate::debugfs::dir_exists_line(self.policy, name) {
                        self.printk(line);
                    }
                }
                // No kernel prints this (register_filesystem() and misc_register() fail
                // without a line of their own): a remark of the model.
                _ => {
                    let line = format!(
                        "{}: cannot register {key}: already registered by {}{leaked}",
                        self.name(owner),
                        self.name(prev)
                    );
                    self.remark(Some(owner), line);
                }
            }
            return Err(Errno::EEXIST);
        }
        self.registrations.insert(key.to_string(), owner);
        Ok(())
    }

    /// Removes `key`; ENOENT when absent.
    pub fn unregister(&mut self, key: &str) -> Result<(), Errno> {
        self.registrations
            .remove(key)
            .map(|_| ())
            .ok_or(Errno::ENOENT)
    }

    /// Finds the owner of `key`; with `get`, pins it (get_fs_type, misc open).
    pub fn lookup(&mut self, key: &str, get: bool, holder: &str) -> Result<Option<u64>, Errno> {
        let owner = *self.registrations.get(key).ok_or(Errno::ENOENT)?;
        if !get {
            return Ok(None);
        }
        self.try_module_get(owner, holder).map(Some)
    }

    /// Checks, when module `id` is freed, that it left no registrations behind.
    pub(crate) fn check_leaks(&mut self, id: ModId) {
        let left: Vec<String> = self
            .registrations
            .iter()
            .filter(|(_, &o)| o == id)
            .map(|(k, _)| k.clone())
            .collect();
        if !left.is_empty() {
            let name = self.name(id).to_string();
            self.diagnose(
                DiagKind::Leak,
                Some(id),
                format!(
                    "{name} went away with registrations still present: {}",
                    left.join(", ")
                ),
                Vec::new(),
                Some(format!(
                    "undo each registration in {name}'s exit (or in the init step's undo) so the next load can register it again"
                )),
            );
        }
    }

    /// Records module `m`'s current state in the history (when kept).
    pub(crate) fn note_state(&mut self, m: ModId) {
        if self.record_history {
            let st = self.state(m);
            self.history.push((self.now, m, st));
        }
        if self.observer.is_some() {
            let state = self.state(m);
            self.emit(crate::events::Event::State { module: m, state });
        }
    }

    /// Records that init step `step` of `m` completed.
    pub(crate) fn step_done(&mut self, m: ModId, step: usize) {
        if !self.db.spec(m).init[step].has_undo {
            return;
        }
        let b = self.step_balance.entry((m, step)).or_insert(0);
        *b += 1;
        if *b != 1 {
            let v = format!(
                "{}: init step {step} completed twice without its undo",
                self.name(m)
            );
            self.violations.push(v);
        }
    }

    /// Records that the undo of step `step` of `m` runs.
    pub(crate) fn step_undone(&mut self, m: ModId, step: usize) {
        let b = self.step_balance.entry((m, step)).or_insert(0);
        *b -= 1;
        if *b != 0 {
            let v = format!(
                "{}: undo of init step {step} ran without the step having completed",
                self.name(m)
            );
            self.violations.push(v);
        }
    }

    /// Walks `step` down to the next completed step that has an undo, recording it as
    /// undone; `None` when every completed step has been undone. `init_progress` follows.
    pub(crate) fn next_undo(&mut self, m: ModId, step: &mut usize) -> Option<crate::proc::Body> {
        while *step > 0 {
            *step -= 1;
            if let Some(i) = self.instances[m].as_mut() {
                i.progress = *step;
            }
            if self.db.spec(m).init[*step].has_undo {
                self.step_undone(m, *step);
                self.emit(crate::events::Event::UndoRun {
                    module: m,
                    step: *step,
                });
                return Some(crate::proc::Body::Undo {
                    module: m,
                    step: *step,
                });
            }
        }
        None
    }

    /// Marks the unload of `m` as forced (rmmod -f): it may free a pinned module.
    pub(crate) fn set_forced(&mut self, m: ModId) {
        self.forced.insert(m);
    }

    /// `free_module()`: drops the module's symbols and its references on other modules,
    /// checks for leaks and unlinks it; wakes module_wq.
    pub(crate) fn free_module(&mut self, id: ModId) {
        self.free_module_and_wake(id, true);
    }

    /// `delete_module()`'s `free_module()`: wakes module_wq only where the kernel did
    /// (5d603311615f, 5.5 and its backports).
    pub(crate) fn free_unloaded_module(&mut self, id: ModId) {
        let wake = self.policy.unload_wakes_module_wq();
        self.free_module_and_wake(id, wake);
    }

    fn free_module_and_wake(&mut self, id: ModId, wake_module_wq: bool) {
        let inst = match self.instances[id].take() {
            Some(i) => i,
            None => return,
        };
        self.note_state(id);
        let forced = self.forced.remove(&id);
        let pinned: Vec<u64> = self
            .pins
            .iter()
            .filter(|(_, p)| p.module == id)
            .map(|(k, _)| *k)
            .collect();
        if !pinned.is_empty() {
            let holders = self.pins_of(id);
            if self.policy.is_modkit() && !forced {
                let v = format!("{} freed while pinned by {holders:?}", self.name(id));
                self.violations.push(v);
            }
            let name = self.name(id).to_string();
            let msg = format!(
                "{name} was freed while pinned by {}: their module_put will touch freed memory",
                holders.join(", ")
            );
            let hint = Some(format!(
                "a reference taken while {name} is COMING must not outlive a failed init; modkit waits for such pins before freeing"
            ));
            self.diagnose(DiagKind::FreedWhilePinned, Some(id), msg, Vec::new(), hint);
            for k in pinned {
                if let Some(p) = self.pins.remove(&k) {
                    self.dangling.insert(k, p);
                }
            }
        }
        if !inst.holders.is_empty() {
            let v = format!("{} freed while used by {:?}", self.name(id), inst.holders);
            self.violations.push(v);
        }
        if inst.refcount < 0 {
            let v = format!(
                "{} had a negative refcount {}",
                self.name(id),
                inst.refcount
            );
            self.violations.push(v);
        }
        let left: Vec<usize> = self
            .step_balance
            .iter()
            .filter(|((m, _), b)| *m == id && **b != 0)
            .map(|((_, s), _)| *s)
            .collect();
        if !left.is_empty() && (!forced || self.db.spec(id).has_exit) {
            let v = format!(
                "{} freed with init steps {left:?} not undone",
                self.name(id)
            );
            self.violations.push(v);
        }
        self.step_balance.retain(|(m, _), _| *m != id);
        self.symtab.retain(|_, e| e.owner != id);
        for t in inst.targets {
            let mut removed = false;
            if let Some(ti) = self.instances[t].as_mut() {
                removed = ti.holders.remove(&id);
                if !self.db.spec(t).builtin {
                    ti.refcount -= 1;
                }
                if ti.refcount == 0 {
                    self.wakes.push(WaitKey::Pins(t));
                }
            }
            if removed {
                self.emit(crate::events::Event::HolderRemoved { user: id, used: t });
            }
        }
        self.check_leaks(id);
        if wake_module_wq {
            self.wake_module_wq();
        }
    }

    /// Holders ("used by") of module `id`, by name.
    pub fn holders(&self, id: ModId) -> Vec<String> {
        self.instances[id]
            .as_ref()
            .map(|i| {
                i.holders
                    .iter()
                    .map(|&h| self.name(h).to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pins on module `id`, by holder.
    pub fn pins_of(&self, id: ModId) -> Vec<String> {
        self.pins
            .values()
            .filter(|p| p.module == id)
            .map(|p| p.holder.clone())
            .collect()
    }

    /// Asks for `task`'s exit outcome to be kept (in [`Kernel::task_exits`]) until read.
    pub fn watch_task(&mut self, task: TaskId) {
        self.watched.insert(task);
    }

    /// Forgets that someone will read `task`'s exit (request_module's caller was killed).
    pub fn unwatch_task(&mut self, task: TaskId) {
        self.watched.remove(&task);
    }

    /// Records the exit of a task, waking those waiting for it.
    pub fn task_exit(&mut self, task: TaskId, outcome: Outcome) {
        if self.watched.remove(&task) {
            self.task_exits.insert(task, outcome);
        }
        self.waits.forget(task);
        self.wakes.push(WaitKey::Task(task));
    }
}
