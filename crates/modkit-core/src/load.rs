//! `finit_module()`: duplicate-load handling by era, symbol resolution with its waits,
//! `complete_formation()`, and `do_init_module()` with the init table and its unwinding.

use std::collections::BTreeSet;

use crate::diag::DiagKind;
use crate::errno::{Errno, Outcome};
use crate::kernel::{InFlight, Instance, Kernel, ModId, ModState, SymEntry, SEC};
use crate::policy::{DupEra, Policy, SYMBOL_WAIT_SECS};
use crate::proc::{wait, Body, BodyResult, Resume, Step};
use crate::spec::ImportSpec;
use crate::waits::{TaskId, WaitKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    MergeWait(u64),
    GoingWait,
    DupCheck,
    DupWait,
    Resolve,
    SymWait,
    InitStep,
    Unwind,
}

/// The load of one module.
#[derive(Debug, Clone)]
pub struct Load {
    /// The module.
    pub module: ModId,
    /// The module that needs this one (for wait reasons: "kvmgt needs i915").
    pub needed_by: Option<ModId>,
    phase: Phase,
    winner_gen: Option<u64>,
    err: Option<Errno>,
    sym_idx: usize,
    sym_deadline: Option<u64>,
    /// Owners given up on (modkit waits once per owner) or found in a cycle.
    given_up: BTreeSet<ModId>,
    step: usize,
    awaiting_body: bool,
    going: bool,
    /// `finit_module()` (true, what modprobe and insmod use) or `init_module()` of a
    /// buffer (false): only the former is deduplicated by 6.5's idempotent_init_module(),
    /// which keys on the file's inode.
    pub idempotent: bool,
    /// The symbol wait was ended by SIGKILL, not by its timeout.
    interrupted: bool,
    /// The taint flags the pre-listing checks gave (`None`: not run yet).
    checked: Option<u32>,
    /// This load ran the module's init to the end and made it LIVE.
    pub went_live: bool,
}

/// What resolving one import gave.
enum Resolved {
    Ok,
    /// `resolve_symbol()` returned NULL (not found, or hidden from a non-GPL module): the
    /// load fails with ENOENT; before 4.18 the line printed `PTR_ERR(NULL)`, "(err 0)".
    Null,
    /// Owner still COMING (`-EBUSY` from `strong_try_module_get`).
    Busy(ModId),
    Fail(Errno),
}

impl Load {
    /// The module this load waits for in `add_unformed_module` (the duplicate-load wait on
    /// `module_wq`), if that is where it is parked. Such a waiter re-checks only
    /// [`Load::dup_wait_settled`] when woken and waits again without any other effect, so a
    /// driver may leave it parked while that is false (the simulator does, so that storms of
    /// any era cost O(T log T) instead of waking every waiter on every state change).
    pub fn dup_wait_on(&self) -> Option<ModId> {
        (self.phase == Phase::DupWait).then_some(self.module)
    }

    /// Whether a load waiting in `add_unformed_module` for `m` stops waiting now: under
    /// era B (5.3 to 6.1.8) when `m` is gone or LIVE, else also when it is GOING.
    pub fn dup_wait_settled(k: &Kernel, m: ModId) -> bool {
        let s = k.state(m);
        match k.policy.dup_era() {
            DupEra::B => matches!(s, None | Some(ModState::Live)),
            _ => matches!(s, None | Some(ModState::Live) | Some(ModState::Going)),
        }
    }

    /// A load of `module`, needed by `needed_by` (None for the module asked for).
    pub fn new(module: ModId, needed_by: Option<ModId>) -> Self {
        Load {
            module,
            needed_by,
            phase: Phase::Start,
            winner_gen: None,
            err: None,
            sym_idx: 0,
            sym_deadline: None,
            given_up: BTreeSet::new(),
            step: 0,
            awaiting_body: false,
            going: false,
            idempotent: true,
            interrupted: false,
            checked: None,
            went_live: false,
        }
    }

    /// The load as `init_module(2)` of a buffer makes it: no file, so 6.5+ does not
    /// deduplicate it; a concurrent load of the same module meets the older name check
    /// (`module_patient_check_exists()`: wait for COMING, then EEXIST or EBUSY).
    pub fn init_module(mut self) -> Self {
        self.idempotent = false;
        self
    }

    /// Whether the wait the load is parked in ends on SIGKILL (crate::signal).
    pub fn killable_wait(&self, k: &Kernel) -> bool {
        match self.phase {
            // 6.5 – 6.10: wait_for_completion(); 6.11+: interruptible (2124d84db293).
            Phase::MergeWait(_) => k.policy.is_modkit() || k.policy.idempotent_wait_killable(),
            // wait_event_interruptible(module_wq, finished_loading()) in every era;
            // resolve_symbol_wait()'s wait_event_interruptible_timeout(); modkit's wait
            // for an unload.
            Phase::DupWait | Phase::SymWait | Phase::GoingWait => true,
            // modkit's failed load waiting for pins before it frees the module.
            _ => false,
        }
    }

    fn why(&self, k: &Kernel) -> String {
        match self.needed_by {
            Some(n) if n != self.module => format!("{} needs {}", k.name(n), k.name(self.module)),
            _ => format!("load of {}", k.name(self.module)),
        }
    }

    fn finish(&mut self, k: &mut Kernel, o: Outcome) -> Step {
        if let Some(gen) = self.winner_gen.take() {
            k.results.insert(gen, o);
            k.inflight_loads.remove(&self.module);
            k.wakes.push(WaitKey::LoadDone(self.module));
        }
        Step::Done(o)
    }

    fn owner_task(k: &Kernel, m: ModId) -> Option<TaskId> {
        k.instances[m].as_ref().and_then(|i| i.owner_task)
    }

    /// Advances the load.
    pub fn poll(&mut self, k: &mut Kernel, task: TaskId, mut r: Resume) -> Step {
        let m = self.module;
        if r == Resume::Killed {
            match self.phase {
                // idempotent_wait_for_completion() returns idem.ret, initialised to
                // -EINTR (2124d84db293); modkit's merged waits end the same way.
                Phase::MergeWait(_) | Phase::GoingWait => {
                    return Step::Done(Outcome::Err(Errno::EINTR))
                }
                // add_unformed_module / module_patient_check_exists: return err.
                Phase::DupWait => return self.finish(k, Outcome::Err(Errno::ERESTARTSYS)),
                // resolve_symbol_wait(): the wait ends <= 0, as a timeout does.
                Phase::SymWait => {
                    self.interrupted = true;
                    r = Resume::TimedOut;
                }
                _ => debug_assert!(false, "killed in {:?}", self.phase),
            }
        }
        loop {
            match self.phase {
                Phase::Start => {
                    if k.db.spec(m).builtin {
                        return Step::Done(Outcome::Err(Errno::EEXIST));
                    }
                    match k.policy {
                        Policy::Modkit => match k.state(m) {
                            Some(ModState::Live) => {
                                return self.finish(k, Outcome::Err(Errno::EEXIST))
                            }
                            Some(ModState::Going) => {
                                let reason =
                                    format!("{}: {} is going away", self.why(k), k.name(m));
                                let target = Self::owner_task(k, m);
                                // The task taking it away may wait for us (a failed load
                                // waiting for a pin we hold: crate::pinwait).
                                if k.refuse_cycle(task, target, &reason) {
                                    return Step::Done(Outcome::Err(Errno::EDEADLK));
                                }
                                self.phase = Phase::GoingWait;
                                return wait(WaitKey::ModuleWq, reason, target, None);
                            }
                            Some(_) => {
                                let f = k.inflight_loads.get(&m).copied();
                                let target = f.map(|f| f.task).or_else(|| Self::owner_task(k, m));
                                let reason = self.why(k);
                                if k.refuse_cycle(task, target, &reason) {
                                    return Step::Done(Outcome::Err(Errno::EDEADLK));
                                }
                                match f {
                                    Some(f) => {
                                        self.phase = Phase::MergeWait(f.gen);
                                        return wait(WaitKey::LoadDone(m), reason, target, None);
                                    }
                                    None => {
                                        self.phase = Phase::GoingWait;
                                        return wait(WaitKey::ModuleWq, reason, target, None);
                                    }
                                }
                            }
                            None => {
                                let gen = k.new_gen();
                                k.inflight_loads.insert(m, InFlight { task, gen });
                                self.winner_gen = Some(gen);
                                self.phase = Phase::DupCheck;
                            }
                        },
                        Policy::Linux(_)
                            if self.idempotent
                                && matches!(k.policy.dup_era(), DupEra::E | DupEra::F) =>
                        {
                            if let Some(f) = k.inflight_loads.get(&m).copied() {
                                self.phase = Phase::MergeWait(f.gen);
                                let reason = format!(
                                    "{}: finit_module of the same file in flight",
                                    self.why(k)
                                );
                                return wait(WaitKey::LoadDone(m), reason, Some(f.task), None);
                            }
                            let gen = k.new_gen();
                            k.inflight_loads.insert(m, InFlight { task, gen });
                            self.winner_gen = Some(gen);
                            self.phase = Phase::DupCheck;
                        }
                        Policy::Linux(_) => self.phase = Phase::DupCheck,
                    }
                }
                Phase::MergeWait(gen) => {
                    if let Some(&o) = k.results.get(&gen) {
                        return Step::Done(o);
                    }
                    let reason = format!("{}: waiting for the load in flight", self.why(k));
                    let target = k.inflight_loads.get(&m).map(|f| f.task);
                    return wait(WaitKey::LoadDone(m), reason, target, None);
                }
                Phase::GoingWait => {
                    if matches!(
                        k.state(m),
                        None | Some(ModState::Unformed) | Some(ModState::Coming)
                    ) {
                        // Gone, or a new load began meanwhile: start over, so that a wait
                        // on that load is merged (and checked for a cycle) like any other,
                        // whichever task the wakeup reached first.
                        self.phase = Phase::Start;
                        continue;
                    }
                    if matches!(k.state(m), Some(ModState::Live)) {
                        return Step::Done(Outcome::Err(Errno::EEXIST));
                    }
                    let reason = format!("{}: {} is going away", self.why(k), k.name(m));
                    return wait(WaitKey::ModuleWq, reason, Self::owner_task(k, m), None);
                }
                Phase::DupCheck => {
                    if self.checked.is_none() {
                        match crate::taint::pre_list_checks(k, m) {
                            Ok(bits) => self.checked = Some(bits),
                            Err(e) => return self.finish(k, Outcome::Err(e)),
                        }
                    }
                    let era = k.policy.dup_era();
                    match k.state(m) {
                        None => {
                            k.instances[m] = Some(Instance {
                                state: ModState::Unformed,
                                refcount: 1,
                                holders: BTreeSet::new(),
                                targets: BTreeSet::new(),
                                progress: 0,
                                owner_task: Some(task),
                                draining: false,
                            });
                            k.note_state(m);
                            crate::taint::listed(k, m, self.checked.unwrap_or(0));
                            if let Some(e) = crate::namespace::refuse_module_ns_import(k, m) {
                                k.free_module(m);
                                return self.finish(k, Outcome::Err(e));
                            }
                            self.phase = Phase::Resolve;
                        }
                        Some(s) => {
                            let busy = matches!(s, ModState::Coming | ModState::Unformed);
                            let must_wait = match era {
                                DupEra::A => busy,
                                DupEra::B => s != ModState::Live,
                                _ => busy,
                            };
                            if must_wait {
                                self.phase = Phase::DupWait;
                                r = Resume::Start;
                                continue;
                            }
                            let o = if s == ModState::Live || era == DupEra::A {
                                Errno::EEXIST
                            } else {
                                Errno::EBUSY
                            };
                            return self.finish(k, Outcome::Err(o));
                        }
                    }
                }
                Phase::DupWait => {
                    let era = k.policy.dup_era();
                    let s = k.state(m);
                    let done = Self::dup_wait_settled(k, m);
                    if r == Resume::Start || !done {
                        let reason = format!(
                            "{}: finit_module({}) waits in add_unformed_module for {} to finish loading",
                            self.why(k),
                            k.name(m),
                            k.name(m)
                        );
                        return wait(WaitKey::ModuleWq, reason, Self::owner_task(k, m), None);
                    }
                    match era {
                        DupEra::A | DupEra::B => self.phase = Phase::DupCheck,
                        _ => {
                            let o = if s == Some(ModState::Live) {
                                Errno::EEXIST
                            } else {
                                Errno::EBUSY
                            };
                            return self.finish(k, Outcome::Err(o));
                        }
                    }
                }
                Phase::Resolve => {
                    let imports = &k.db.spec(m).imports;
                    if self.sym_idx >= imports.len() {
                        if let Some(e) = self.err {
                            k.free_module(m);
                            return self.finish(k, Outcome::Err(e));
                        }
                        if let Some(step) = self.complete_formation(k, task) {
                            return step;
                        }
                        continue;
                    }
                    let imp = imports[self.sym_idx].clone();
                    match resolve_symbol(k, m, &imp) {
                        Resolved::Ok => {
                            self.sym_idx += 1;
                            self.sym_deadline = None;
                        }
                        Resolved::Null => {
                            unknown_symbol_null(k, m, &imp.name);
                            self.err = Some(Errno::ENOENT);
                            self.sym_idx += 1;
                            self.sym_deadline = None;
                        }
                        Resolved::Fail(e) => {
                            unknown_symbol(k, m, &imp.name, e);
                            self.err = Some(e);
                            self.sym_idx += 1;
                            self.sym_deadline = None;
                        }
                        Resolved::Busy(owner) => {
                            let reason = format!(
                                "{} needs {} (symbol {})",
                                k.name(m),
                                k.name(owner),
                                imp.name
                            );
                            let target = Self::owner_task(k, owner);
                            if k.policy.is_modkit() {
                                let refused = self.given_up.contains(&owner) || {
                                    let cyc = k.refuse_cycle(task, target, &reason);
                                    if cyc {
                                        self.given_up.insert(owner);
                                    }
                                    cyc
                                };
                                if refused {
                                    let e = if k.diagnostics.last().map(|d| d.kind)
                                        == Some(DiagKind::DependencyCycle)
                                    {
                                        Errno::EDEADLK
                                    } else {
                                        Errno::EBUSY
                                    };
                                    unknown_symbol(k, m, &imp.name, e);
                                    self.err = Some(e);
                                    self.sym_idx += 1;
                                    continue;
                                }
                            }
                            let deadline = *self
                                .sym_deadline
                                .get_or_insert(k.now + SYMBOL_WAIT_SECS * SEC);
                            self.phase = Phase::SymWait;
                            return wait(WaitKey::ModuleWq, reason, target, Some(deadline));
                        }
                    }
                }
                Phase::SymWait => match r {
                    Resume::TimedOut => {
                        let imp = k.db.spec(m).imports[self.sym_idx].clone();
                        let owner = k.symtab.get(&imp.name).map(|e| e.owner);
                        // The wait ends with a last look, as wait_event_timeout does.
                        match resolve_symbol(k, m, &imp) {
                            Resolved::Ok => {}
                            Resolved::Null => {
                                unknown_symbol_null(k, m, &imp.name);
                                self.err = Some(Errno::ENOENT);
                            }
                            Resolved::Fail(e) => {
                                unknown_symbol(k, m, &imp.name, e);
                                self.err = Some(e);
                            }
                            Resolved::Busy(o) => {
                                k.printk(format!(
                                    "{}: gave up waiting for init of module {}.",
                                    k.name(m),
                                    k.name(o)
                                ));
                                k.printk(format!(
                                    "{}: Unknown symbol {} (err -16)",
                                    k.name(m),
                                    imp.name
                                ));
                                let msg = if self.interrupted {
                                    format!(
                                        "{} was killed while waiting for {} (still initialising) to provide {}",
                                        k.name(m),
                                        k.name(o),
                                        imp.name
                                    )
                                } else {
                                    format!(
                                        "{} gave up after {} s waiting for {} (still initialising) to provide {}",
                                        k.name(m),
                                        SYMBOL_WAIT_SECS,
                                        k.name(o),
                                        imp.name
                                    )
                                };
                                k.diagnose(DiagKind::Timeout, Some(m), msg, Vec::new(), None);
                                self.err = Some(Errno::EBUSY);
                                if let Some(o) = owner {
                                    self.given_up.insert(o);
                                }
                            }
                        }
                        self.sym_idx += 1;
                        self.sym_deadline = None;
                        self.phase = Phase::Resolve;
                        r = Resume::Start;
                    }
                    _ => {
                        self.phase = Phase::Resolve;
                        r = Resume::Start;
                    }
                },
                Phase::InitStep => {
                    let n = k.db.spec(m).init.len();
                    if self.awaiting_body {
                        self.awaiting_body = false;
                        match r {
                            Resume::Body(BodyResult::Ok) => {
                                k.step_done(m, self.step);
                                self.step += 1;
                                if let Some(i) = k.instances[m].as_mut() {
                                    i.progress = self.step;
                                }
                            }
                            Resume::Body(BodyResult::Stop) => {
                                if k.db.spec(m).init[self.step].has_undo {
                                    let line = format!(
                                        "{}: init step {} stopped early but has an undo; it will not be undone",
                                        k.name(m),
                                        k.db.spec(m).init[self.step].name
                                    );
                                    k.remark(Some(m), line);
                                }
                                return self.init_done(k, task);
                            }
                            Resume::Body(BodyResult::Returned(n)) => {
                                crate::initret::warn_positive(k, m, n);
                                return self.init_done(k, task);
                            }
                            Resume::Body(BodyResult::Fail(e)) => {
                                k.emit(crate::events::Event::InitFailed {
                                    module: m,
                                    step: self.step,
                                    errno: e,
                                });
                                self.err = Some(e);
                                self.phase = Phase::Unwind;
                                continue;
                            }
                            other => unreachable_resume(other),
                        }
                    }
                    if self.step >= n {
                        return self.init_done(k, task);
                    }
                    self.awaiting_body = true;
                    return Step::Run(Body::Init {
                        module: m,
                        step: self.step,
                    });
                }
                Phase::Unwind => {
                    self.awaiting_body = false;
                    if let Some(body) = k.next_undo(m, &mut self.step) {
                        return Step::Run(body);
                    }
                    // do_init_module() failure: GOING, drop the initial reference, free.
                    if !self.going {
                        self.going = true;
                        if let Some(i) = k.instances[m].as_mut() {
                            i.state = ModState::Going;
                            i.refcount -= 1;
                        }
                        k.note_state(m);
                    }
                    let refs = k.instances[m].as_ref().map(|i| i.refcount).unwrap_or(0);
                    if refs > 0 && k.policy.is_modkit() {
                        // modkit never frees code someone holds: wait for the pins taken
                        // while the module was COMING (new ones are refused: it is GOING).
                        let reason = format!(
                            "failed load of {} waits for its pins to drop ({})",
                            k.name(m),
                            k.pins_of(m).join(", ")
                        );
                        let target = k.pin_wait_target(task, m, &reason);
                        return wait(WaitKey::Pins(m), reason, target, None);
                    }
                    k.waits.leave_module(task, m);
                    k.free_module(m);
                    let e = crate::initret::init_error(k, m, self.err.unwrap_or(Errno::EINVAL));
                    return self.finish(k, Outcome::Err(e));
                }
            }
        }
    }

    /// `complete_formation()`: refuses duplicate exports, publishes the symbols and
    /// moves to COMING. Returns a step when the load ends here.
    fn complete_formation(&mut self, k: &mut Kernel, task: TaskId) -> Option<Step> {
        let m = self.module;
        let exports = k.db.spec(m).exports.clone();
        for e in &exports {
            if let Some(prev) = k.symtab.get(&e.name) {
                if prev.owner != m {
                    let owner = k.name(prev.owner).to_string();
                    k.printk(format!(
                        "{}: exports duplicate symbol {} (owned by {})",
                        k.name(m),
                        e.name,
                        owner
                    ));
                    let msg = format!(
                        "{} exports {}, already exported by {owner}",
                        k.name(m),
                        e.name
                    );
                    k.diagnose(DiagKind::DuplicateExport, Some(m), msg, Vec::new(), None);
                    k.free_module(m);
                    return Some(self.finish(k, Outcome::Err(Errno::ENOEXEC)));
                }
            }
        }
        for e in exports {
            k.symtab.insert(
                e.name,
                SymEntry {
                    owner: m,
                    namespace: e.namespace,
                    gpl_only: e.gpl_only,
                    crc: e.crc,
                },
            );
        }
        if let Some(i) = k.instances[m].as_mut() {
            i.state = ModState::Coming;
        }
        k.note_state(m);
        k.init_calls[m] += 1;
        k.waits.enter_module(task, m);
        self.phase = Phase::InitStep;
        self.step = 0;
        None
    }

    /// Whether the wait the load is parked in can be refused (ended with EDEADLK)
    /// cleanly: a merged load, a wait for a module going away, the duplicate-load wait.
    pub(crate) fn refusable_wait(&self) -> bool {
        matches!(
            self.phase,
            Phase::MergeWait(_) | Phase::GoingWait | Phase::DupWait
        )
    }

    /// The wait this load is parked in was refused to break a pin cycle
    /// (crate::pinwait): it ends with EDEADLK.
    pub(crate) fn refused(&mut self, k: &mut Kernel) -> Step {
        match self.phase {
            Phase::DupWait => self.finish(k, Outcome::Err(Errno::EDEADLK)),
            _ => Step::Done(Outcome::Err(Errno::EDEADLK)),
        }
    }

    fn init_done(&mut self, k: &mut Kernel, task: TaskId) -> Step {
        let m = self.module;
        if let Some(i) = k.instances[m].as_mut() {
            i.state = ModState::Live;
            i.refcount -= 1;
            i.owner_task = None;
        }
        k.note_state(m);
        k.waits.leave_module(task, m);
        k.wake_module_wq();
        self.went_live = true;
        self.finish(k, Outcome::Ok)
    }
}

fn unreachable_resume(r: Resume) {
    debug_assert!(false, "unexpected resume {r:?} while awaiting module code");
}

/// `resolve_symbol()`: find, licence, version, namespace, then `ref_module()`.
fn resolve_symbol(k: &mut Kernel, m: ModId, imp: &ImportSpec) -> Resolved {
    let Some(e) = k.symtab.get(&imp.name) else {
        let msg = format!(
            "{} imports {}, which no loaded module exports",
            k.name(m),
            imp.name
        );
        let cycle =
            k.db.exporter(&imp.name)
                .and_then(|o| crate::symcycle::import_cycle(&k.db, m, o));
        if let Some(chain) = cycle {
            // No load order satisfies it, so "load the exporter first" would be false.
            let what = if chain.len() == 2 {
                format!("its own export {}", imp.name)
            } else {
                format!("{} from a module that needs {} itself", imp.name, k.name(m))
            };
            let msg = format!(
                "{} imports {what}: dependency cycle {}",
                k.name(m),
                chain.join(" -> ")
            );
            let hint = "break the cycle (depmod: \"Cycle detected\"): move the symbols both sides need into a module of their own, or drop the import";
            k.diagnose(
                DiagKind::DependencyCycle,
                Some(m),
                msg,
                chain,
                Some(hint.into()),
            );
            return Resolved::Null;
        }
        let hint = exporter_hint(k, &imp.name);
        k.diagnose(DiagKind::UnknownSymbol, Some(m), msg, Vec::new(), hint);
        return Resolved::Null;
    };
    let e = e.clone();
    if e.owner == m {
        return Resolved::Ok;
    }
    let spec = k.db.spec(m);
    // find_symbol()'s gplok is !(mod->taints & P): the licence, or a taint inherited.
    let gpl_ok =
        spec.is_gpl_compatible() && !k.taint.module_has(m, crate::taint::Taint::Proprietary);
    let has_versions = spec.imports.iter().any(|i| i.crc.is_some());
    let ns_imported = e
        .namespace
        .as_ref()
        .is_none_or(|ns| spec.import_namespaces.iter().any(|i| i == ns));
    if e.gpl_only && !gpl_ok {
        let msg = format!(
            "{} (licence \"{}\") cannot use GPL-only symbol {} exported by {}",
            spec.name,
            spec.license,
            imp.name,
            k.name(e.owner)
        );
        k.diagnose(DiagKind::GplOnly, Some(m), msg, Vec::new(), None);
        return Resolved::Null;
    }
    if !crate::taint::inherit_taint(k, m, e.owner, &imp.name, e.gpl_only) {
        let msg = format!(
            "{} uses GPL-only symbols and {} of proprietary module {}",
            k.name(m),
            imp.name,
            k.name(e.owner)
        );
        k.diagnose(DiagKind::GplOnly, Some(m), msg, Vec::new(), None);
        return Resolved::Fail(Errno::ENOENT);
    }
    if let (Some(want), Some(have)) = (imp.crc, e.crc) {
        if want != have {
            let name = k.name(m).to_string();
            k.printk(format!(
                "{name}: disagrees about version of symbol {}",
                imp.name
            ));
            let msg = format!(
                "{name} was built against {} with CRC {want:#010x}, but {} exports it with CRC {have:#010x}",
                imp.name,
                k.name(e.owner)
            );
            let hint = Some("rebuild the module against the running exporter".to_string());
            k.diagnose(DiagKind::VersionMismatch, Some(m), msg, Vec::new(), hint);
            return Resolved::Fail(Errno::EINVAL);
        }
    } else if e.crc.is_some() && imp.crc.is_none() && has_versions {
        let line = format!("{}: no symbol version for {}", k.name(m), imp.name);
        k.printk_once("check_version: no symbol version", line);
    }
    if let Some(ns) = &e.namespace {
        if k.policy.enforces_namespaces() && !ns_imported {
            if let Some(e) = crate::namespace::refuse_namespaced_use(k, m, &imp.name, ns) {
                return Resolved::Fail(e);
            }
        }
    }
    // ref_module(): one reference per (user, owner) pair; vmlinux needs none.
    if k.db.spec(e.owner).builtin {
        return Resolved::Ok;
    }
    if k.instances[m]
        .as_ref()
        .is_some_and(|i| i.targets.contains(&e.owner))
    {
        return Resolved::Ok;
    }
    let Some(owner) = k.instances[e.owner].as_mut() else {
        return Resolved::Fail(Errno::ENOENT);
    };
    match owner.state {
        ModState::Coming => Resolved::Busy(e.owner),
        ModState::Live if !owner.draining => {
            owner.refcount += 1;
            owner.holders.insert(m);
            if let Some(me) = k.instances[m].as_mut() {
                me.targets.insert(e.owner);
            }
            k.emit(crate::events::Event::HolderAdded {
                user: m,
                used: e.owner,
            });
            Resolved::Ok
        }
        _ => Resolved::Fail(Errno::ENOENT),
    }
}

/// `"%s: Unknown symbol %s (err %d)"`.
fn unknown_symbol(k: &mut Kernel, m: ModId, sym: &str, e: Errno) {
    let line = format!("{}: Unknown symbol {sym} (err -{})", k.name(m), e.code());
    k.printk(line);
}

/// The line for a NULL lookup: "(err -2)" since the message prints the load's error
/// (`ret = PTR_ERR(ksym) ?: -ENOENT` before the `pr_warn`), "(err 0)" before, when it
/// printed `PTR_ERR(ksym)` of the NULL itself (see [`Policy::unknown_symbol_prints_ret`]).
fn unknown_symbol_null(k: &mut Kernel, m: ModId, sym: &str) {
    if k.policy.unknown_symbol_prints_ret() {
        unknown_symbol(k, m, sym, Errno::ENOENT);
    } else {
        let line = format!("{}: Unknown symbol {sym} (err 0)", k.name(m));
        k.printk(line);
    }
}

fn exporter_hint(k: &Kernel, sym: &str) -> Option<String> {
    k.db.exporter(sym).map(|o| {
        format!(
            "{} exports it: load {} first (or let modprobe do it)",
            k.name(o),
            k.name(o)
        )
    })
}
