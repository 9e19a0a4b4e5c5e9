//! modkit's probe wait on the host (the rules and the words are
//! `modkit_core::probewait`'s; the simulator's twin is `modkit-sim`'s `sim/probewait.rs`).
//!
//! Under the `modkit` policy, a probe's [`crate::ProbeCtx::need`] on something (`kind:name`,
//! `device:NAME`) that is not there but that a module in flight provides waits for that
//! module's load to end (its init returned, or the load failed), then asks again: the probe
//! goes on if the thing is there, else it defers as under Linux. A module is in flight when
//! its init runs (COMING), or when some task runs a load of it: a `modprobe` whose name or
//! alias gives it, an `insmod`/`finit_module()` not yet at COMING, or a load an engine
//! announced ([`crate::driver::Driver::plan_loads`]: a udev worker's list). The modules that
//! provide a key are those that declared it ([`crate::Module::provides`]) and, for
//! `device:NAME`, the modules whose drivers match that device; an engine may replace this
//! ([`crate::driver::Driver::set_need_providers`]).
//!
//! A wait that would close a cycle is not made (the probe runs on the task running the
//! provider's own init, or that task waits, directly or through others, for this one): the
//! probe defers, and each time a module goes LIVE (`module_wq` is woken) the pending devices
//! whose need is there are retried at once by the deferred-probe worker. The
//! deferred-probe worker itself never waits (it serves every pending device). Under
//! `linux-X.Y` nothing of this happens: the probe defers as the kernel's does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use modkit_core::device::{DevId, DeviceModel, DrvId};
use modkit_core::probewait::{decide, NeedWait};
use modkit_core::{ModId, ModState, Proc, TaskId, WaitInfo, WaitKey};

use crate::host::{HostHandle, State};

/// An engine's answer to "which modules provide this key", in the order a wait looks at
/// them ([`crate::driver::Driver::set_need_providers`]).
pub(crate) type Providers = Arc<dyn Fn(&DeviceModel, &str) -> Vec<ModId> + Send + Sync>;

/// The state of modkit's probe wait, in the host's device state.
#[derive(Default)]
pub(crate) struct ProbeWaits {
    /// The procedures each task is driving, outermost first: the modules each one loads.
    stacks: BTreeMap<TaskId, Vec<Vec<ModId>>>,
    /// Loads a task will run next ([`crate::driver::Driver::plan_loads`]).
    planned: BTreeMap<TaskId, Vec<ModId>>,
    /// What each module declared it provides ([`crate::Module::provides`]).
    provides: BTreeMap<ModId, Vec<String>>,
    /// An engine's providers, replacing the declared ones.
    pub(crate) providers: Option<Providers>,
    /// The deferred-probe worker's task, while it runs (it never waits).
    pub(crate) deferwq: Option<TaskId>,
    /// Probes waiting now.
    waiting: usize,
    /// The probes (by task) whose wait was broken ([`break_for`]).
    broken: BTreeSet<TaskId>,
    /// An engine's hook when a deferring bus match leaves a device pending without a
    /// probe ([`crate::driver::Driver::on_match_deferred`]; crate::matchdefer).
    pub(crate) match_hook: Option<crate::probe::AddedHook>,
}

/// The key waiting probes park on, woken with `module_wq` and when a task ends.
fn probe_wait_key() -> WaitKey {
    WaitKey::Completion("modkit: probe waits for a module's load".into())
}

/// The modules a procedure loads.
fn loads_of(st: &State, proc: &Proc) -> Vec<ModId> {
    match proc {
        Proc::Load(l) => vec![l.module],
        Proc::Modprobe(mp) => st.k.db.lookup(&mp.target),
        _ => Vec::new(),
    }
}

/// `task` starts driving `proc` (on top of what it drives).
pub(crate) fn proc_pushed(st: &mut State, task: TaskId, proc: &Proc) {
    let loads = loads_of(st, proc);
    st.devs.waits.stacks.entry(task).or_default().push(loads);
}

/// `task`'s innermost procedure ended.
pub(crate) fn proc_popped(st: &mut State, task: TaskId) {
    if let Some(s) = st.devs.waits.stacks.get_mut(&task) {
        s.pop();
        if s.is_empty() {
            st.devs.waits.stacks.remove(&task);
        }
    }
}

/// `task` ended: it loads nothing more, and a waiting probe asks again (a load that failed
/// before COMING ends its wait).
pub(crate) fn task_ended(st: &mut State, task: TaskId) {
    st.devs.waits.stacks.remove(&task);
    st.devs.waits.planned.remove(&task);
    if st.devs.waits.waiting > 0 {
        st.k.wakes.push(probe_wait_key());
    }
}

/// `waiter` starts waiting for a device lock `holder` holds: if `holder` is a probe waiting
/// for a module's load and that load waits, directly or through others, for `waiter`, the
/// probe's wait is broken (`modkit_core::probewait::breaks_wait`: a cycle formed after the
/// wait began); it defers, which frees the lock. Returns whether it broke one (the caller
/// delivers the wake).
pub(crate) fn break_for(st: &mut State, waiter: TaskId, holder: TaskId) -> bool {
    if st.devs.waits.waiting == 0 || st.devs.waits.broken.contains(&holder) {
        return false;
    }
    let target = match st.k.waits.get(holder) {
        Some(w) if w.key == probe_wait_key() => w.target,
        _ => return false,
    };
    let cycle = target.is_some_and(|t| st.k.waits.cycle_through(waiter, t).is_some());
    if !modkit_core::probewait::breaks_wait(st.k.policy, cycle) {
        return false;
    }
    st.devs.waits.broken.insert(holder);
    st.k.wakes.push(probe_wait_key());
    true
}

/// Declares the keys module `m` provides.
pub(crate) fn declare(st: &mut State, m: ModId, keys: Vec<String>) {
    if !keys.is_empty() {
        st.devs.waits.provides.insert(m, keys);
    }
}

/// Sets the loads `task` will run next (replacing what it announced before).
pub(crate) fn plan(st: &mut State, task: TaskId, mods: Vec<ModId>) {
    if mods.is_empty() {
        st.devs.waits.planned.remove(&task);
    } else {
        st.devs.waits.planned.insert(task, mods);
    }
}

/// The modules that provide `key`.
fn providers_of(st: &State, key: &str) -> Vec<ModId> {
    let dm = &st.devs.dm;
    if let Some(f) = &st.devs.waits.providers {
        return f(dm, key);
    }
    let mut out: Vec<ModId> = st
        .devs
        .waits
        .provides
        .iter()
        .filter(|(_, keys)| keys.iter().any(|k| k == key))
        .map(|(&m, _)| m)
        .collect();
    if let Some(dev) = key.strip_prefix("device:").and_then(|n| dm.find_device(n)) {
        for (i, d) in dm.drivers.iter().enumerate() {
            if dm.matches(i, dev) && !out.contains(&d.module) {
                out.push(d.module);
            }
        }
    }
    out
}

/// Whether module `m` is loading: `Some(task running its load)` (`Some(None)` for a
/// COMING module whose loading task is not known).
fn load_in_flight(st: &State, m: ModId) -> Option<Option<TaskId>> {
    match st.k.state(m) {
        Some(ModState::Live | ModState::Going) => return None,
        Some(ModState::Coming) => {
            return Some(st.k.instances[m].as_ref().and_then(|i| i.owner_task));
        }
        _ => {}
    }
    let w = &st.devs.waits;
    let tasks: BTreeSet<TaskId> = w.stacks.keys().chain(w.planned.keys()).copied().collect();
    tasks
        .into_iter()
        .find(|t| {
            w.stacks
                .get(t)
                .is_some_and(|s| s.iter().any(|l| l.contains(&m)))
                || w.planned.get(t).is_some_and(|p| p.contains(&m))
        })
        .map(Some)
}

/// Whether `task` waiting on `target` would wait for itself.
fn closes_cycle(st: &State, task: TaskId, target: Option<TaskId>) -> bool {
    match target {
        Some(t) if t == task => true,
        Some(t) => st.k.waits.cycle_through(task, t).is_some(),
        None => false,
    }
}

/// A module that provides `key` and is loading, with the task its load runs on and whether
/// waiting for it would close a cycle: the first whose wait would not, else the first in
/// flight (as the simulator chooses).
fn provider_in_flight(
    st: &State,
    task: TaskId,
    key: &str,
) -> Option<(ModId, Option<TaskId>, bool)> {
    let mut first_cycle = None;
    for m in providers_of(st, key) {
        let Some(target) = load_in_flight(st, m) else {
            continue;
        };
        if !closes_cycle(st, task, target) {
            return Some((m, target, false));
        }
        first_cycle.get_or_insert((m, target, true));
    }
    first_cycle
}

impl HostHandle {
    /// A probe's `need` of `key` on `dev` by `drv`, run as `task`: under `modkit`, when
    /// `key` is not there and a module in flight provides it, waits for that load to end
    /// (or declines a wait that would close a cycle, with the core's line). Returns when
    /// the caller should look `key` up (and defer if it is still missing).
    pub(crate) fn need_wait(&self, task: TaskId, dev: DevId, drv: DrvId, key: &str) {
        let mut st = self.lock();
        self.tick(&mut st);
        if !modkit_core::probewait::waits_for_loading_module(st.k.policy)
            || st.devs.dm.key_ready(&st.k, key)
            || st.devs.waits.deferwq == Some(task)
        {
            return;
        }
        let flight = provider_in_flight(&st, task, key);
        let cycle = flight.is_some_and(|(_, _, c)| c);
        let Some((m, _, _)) = flight else {
            return;
        };
        let dev_name = st.devs.dm.devices[dev].name.clone();
        let drv_name = st.devs.dm.drivers[drv].name.clone();
        let mod_name = st.k.name(m).to_string();
        match decide(st.k.policy, true, cycle) {
            NeedWait::Defer => {}
            NeedWait::DeferCycle => {
                let line = modkit_core::probewait::cycle_line(&dev_name, &drv_name, &mod_name, key);
                st.k.remark(Some(m), line);
            }
            NeedWait::Wait => {
                let line = modkit_core::probewait::wait_line(&dev_name, &drv_name, &mod_name, key);
                st.k.remark(Some(m), line);
                st.devs.waits.waiting += 1;
                let mut stalled = false;
                loop {
                    if st.devs.dm.key_ready(&st.k, key) {
                        break;
                    }
                    let Some((w, target, false)) = provider_in_flight(&st, task, key) else {
                        break;
                    };
                    let info = WaitInfo {
                        key: probe_wait_key(),
                        reason: format!(
                            "probe of {dev_name} waits for the load of {} (needs {key})",
                            st.k.name(w)
                        ),
                        target,
                        deadline: None,
                    };
                    let (g, r) = self.park(st, task, info, false);
                    st = g;
                    if r.is_none() {
                        // The run stalled (virtual clock): the probe defers, saying
                        // nothing (the simulator's stalled tasks never resume).
                        stalled = true;
                        break;
                    }
                    if st.devs.waits.broken.contains(&task) {
                        break;
                    }
                }
                st.devs.waits.waiting -= 1;
                let broken = st.devs.waits.broken.remove(&task);
                if stalled {
                    return;
                }
                self.tick(&mut st);
                let line = if st.devs.dm.key_ready(&st.k, key) {
                    format!("{dev_name}: {key} is there after module {mod_name}'s load: the probe goes on")
                } else if broken {
                    modkit_core::probewait::broken_line(&dev_name, &drv_name, &mod_name, key)
                } else {
                    format!("{dev_name}: module {mod_name}'s load ended without {key}: the probe defers")
                };
                st.k.remark(Some(m), line);
            }
        }
    }

    /// The host delivers a wake of `module_wq` (a module went live, failed, or was freed):
    /// waiting probes ask again, and under `modkit` the pending devices whose need is now
    /// there are retried at once (the core's `retries_on_live`).
    pub(crate) fn module_wq_woken(&self, st: &mut State, keys: &mut Vec<WaitKey>) {
        if st.devs.waits.waiting > 0 {
            keys.push(probe_wait_key());
        }
        if !modkit_core::probewait::retries_on_live(st.k.policy) {
            return;
        }
        let dm = &st.devs.dm;
        let ready: Vec<DevId> = dm
            .pending
            .iter()
            .copied()
            .filter(|&d| {
                dm.devices[d]
                    .defer_key
                    .as_deref()
                    .is_some_and(|k| dm.key_ready(&st.k, k))
            })
            .collect();
        if ready.is_empty() {
            return;
        }
        self.tick(st);
        for d in ready {
            let dev = &st.devs.dm.devices[d];
            let key = dev.defer_key.clone().unwrap_or_default();
            let line = format!(
                "{}: {key} is there now: the deferred probe is retried at once",
                dev.name
            );
            st.k.remark(None, line);
        }
        st.devs.dm.trigger();
        self.kick_deferwq_locked(st);
    }
}
