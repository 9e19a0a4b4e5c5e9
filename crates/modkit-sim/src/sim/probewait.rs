//! modkit: a probe whose need a loading module provides waits for that load instead of
//! deferring (rules and words in `modkit_core::probewait`).
//!
//! A module "in flight" is one whose init runs (COMING), or whose load is under way on some
//! task (a `Load` before COMING, a `modprobe` whose name or alias gives it, a udev worker's
//! kmod load still to come in its list). A udev event still queued is not: its worker slot
//! may only free when this probe ends (the probe defers, and is retried when the module
//! goes live). The probe parks on
//! [`probe_wait_key`], woken whenever `module_wq` is (a module went live, failed, or was
//! freed) and whenever a task ends (a modprobe that failed before COMING); each time it asks
//! again: the thing is there (go on), a provider is still in flight (wait again), or not
//! (defer as the kernel does).

use modkit_core::device::DevId;
use modkit_core::probewait::{decide, NeedWait};
use modkit_core::{Errno, ModId, ModState, Outcome, Proc, TaskId, WaitInfo, WaitKey};

use super::devices::{Bind, Cur, DevStep, Job};
use super::{Frame, Sim};
use crate::devices::DeviceAction;
use crate::scenario::{Action, Scenario};
use modkit_core::device::DeviceModel;

/// A waiting probe's need.
#[derive(Debug, Clone)]
pub(super) struct NeedArgs {
    module: ModId,
    key: String,
    optional: bool,
    reason: Option<String>,
    /// The wait was broken: a task the load waits for now waits for this probe.
    broken: bool,
}

/// The key probes waiting for a module's load park on.
fn probe_wait_key() -> WaitKey {
    WaitKey::Completion("modkit: probe waits for a module's load".into())
}

impl Sim<'_> {
    /// A probe's `need` on `dev`: under modkit, when `key` is missing and a module in flight
    /// provides it, the frame that waits; `None` to go on as the kernel does.
    pub(super) fn need_wait_begin(
        &mut self,
        tid: TaskId,
        dev: DevId,
        key: &str,
        optional: bool,
        reason: &Option<String>,
    ) -> Option<DevStep> {
        if !modkit_core::probewait::waits_for_loading_module(self.k.policy)
            || self.dm.key_ready(&self.k, key)
        {
            return None;
        }
        // The deferred-probe worker serves every pending device: it never waits (its
        // retry defers, and is retried when the module goes live).
        if self.devs.deferwq_task() == Some(tid) {
            return None;
        }
        let flight = self.provider_in_flight(tid, key);
        let cycle = flight.is_some_and(|(_, _, c)| c);
        let drv = self.probing_driver(dev);
        match decide(self.k.policy, flight.is_some(), cycle) {
            NeedWait::Defer => None,
            NeedWait::DeferCycle => {
                let (m, _, _) = flight.expect("in flight");
                let line = modkit_core::probewait::cycle_line(
                    &self.dm.devices[dev].name,
                    &drv,
                    self.k.name(m),
                    key,
                );
                self.k.remark(Some(m), line);
                None
            }
            NeedWait::Wait => {
                let (m, _, _) = flight.expect("in flight");
                let line = modkit_core::probewait::wait_line(
                    &self.dm.devices[dev].name,
                    &drv,
                    self.k.name(m),
                    key,
                );
                self.k.remark(Some(m), line);
                self.devs.need_waits.insert(
                    dev,
                    NeedArgs {
                        module: m,
                        key: key.to_string(),
                        optional,
                        reason: reason.clone(),
                        broken: false,
                    },
                );
                Some(DevStep::Push(Bind::new([Job::NeedWait(dev)])))
            }
        }
    }

    /// The waiting need of `dev` asks again: `Some(outcome)` when the wait is over, `None`
    /// when the task parked again.
    pub(super) fn need_wait_step(&mut self, tid: TaskId, dev: DevId) -> Option<Outcome> {
        let Some(a) = self.devs.need_waits.get(&dev).cloned() else {
            return Some(Outcome::Err(Errno::EPROBE_DEFER));
        };
        if !self.dm.key_ready(&self.k, &a.key) && !a.broken {
            if let Some((m, target, false)) = self.provider_in_flight(tid, &a.key) {
                let name = self.dm.devices[dev].name.clone();
                let reason = format!(
                    "probe of {name} waits for the load of {} (needs {})",
                    self.k.name(m),
                    a.key
                );
                self.park(
                    tid,
                    WaitInfo {
                        key: probe_wait_key(),
                        reason,
                        target,
                        deadline: None,
                    },
                    false,
                );
                return None;
            }
        }
        self.devs.need_waits.remove(&dev);
        let name = self.dm.devices[dev].name.clone();
        let m = self.k.name(a.module).to_string();
        let line = if self.dm.key_ready(&self.k, &a.key) {
            format!(
                "{name}: {} is there after module {m}'s load: the probe goes on",
                a.key
            )
        } else if a.broken {
            let drv = self.probing_driver(dev);
            modkit_core::probewait::broken_line(&name, &drv, &m, &a.key)
        } else {
            format!(
                "{name}: module {m}'s load ended without {}: the probe defers",
                a.key
            )
        };
        self.k.remark(Some(a.module), line);
        Some(
            self.dm
                .need(&mut self.k, dev, &a.key, a.optional, a.reason.as_deref())
                .into(),
        )
    }

    /// `tid` starts waiting for `dev`'s device lock: if the task holding it is a probe
    /// waiting for a module's load, and that load waits, directly or through others, for
    /// `tid`, the probe's wait is broken (`modkit_core::probewait::breaks_wait`): it defers,
    /// which frees the lock.
    pub(super) fn need_wait_break(&mut self, tid: TaskId, dev: DevId) {
        if self.devs.need_waits.get(&dev).is_none_or(|a| a.broken) {
            return;
        }
        let mut ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        ids.sort_unstable();
        let holder = ids.into_iter().find(|t| {
            *t != tid
                && self.tasks[t].frames.iter().any(|f| {
                    matches!(f, Frame::Bind(b) if matches!(b.cur, Some(Cur::Probing { dev: d, .. }) if d == dev))
                })
        });
        let Some(h) = holder else {
            return;
        };
        let target = match self.k.waits.get(h) {
            Some(w) if w.key == probe_wait_key() => w.target,
            _ => return,
        };
        let cycle = target.is_some_and(|t| self.k.waits.cycle_through(tid, t).is_some());
        if !modkit_core::probewait::breaks_wait(self.k.policy, cycle) {
            return;
        }
        if let Some(a) = self.devs.need_waits.get_mut(&dev) {
            a.broken = true;
        }
        self.k.wakes.push(probe_wait_key());
        self.deliver_wakes();
    }

    /// `module_wq` was woken (or a task ended): waiting probes ask again, and under modkit the
    /// pending devices whose need is now there are retried at once.
    pub(super) fn probe_waits_on_module_wq(&mut self) {
        self.probe_waits_wake();
        if !modkit_core::probewait::retries_on_live(self.k.policy) {
            return;
        }
        let ready: Vec<DevId> = self
            .dm
            .pending
            .iter()
            .copied()
            .filter(|&d| {
                self.dm.devices[d]
                    .defer_key
                    .as_deref()
                    .is_some_and(|k| self.dm.key_ready(&self.k, k))
            })
            .collect();
        if !ready.is_empty() {
            for &d in &ready {
                let key = self.dm.devices[d].defer_key.clone().unwrap_or_default();
                let line = format!(
                    "{}: {key} is there now: the deferred probe is retried at once",
                    self.dm.devices[d].name
                );
                self.k.remark(None, line);
            }
            self.dm.trigger();
            self.kick_deferwq();
        }
    }

    /// Waiting probes ask again (a task ended: maybe a load that failed before COMING).
    pub(super) fn probe_waits_wake(&mut self) {
        if !self.devs.need_waits.is_empty() {
            self.k.wakes.push(probe_wait_key());
        }
    }

    /// The name of the driver probing `dev`.
    fn probing_driver(&self, dev: DevId) -> String {
        match self.dm.devices[dev].state {
            modkit_core::device::DevState::Probing(x) => self.dm.drivers[x].name.clone(),
            _ => "?".into(),
        }
    }

    /// Whether `tid` waiting on `target` would wait for itself.
    fn closes_cycle(&self, tid: TaskId, target: Option<TaskId>) -> bool {
        match target {
            Some(t) if t == tid => true,
            Some(t) => self.k.waits.cycle_through(tid, t).is_some(),
            None => false,
        }
    }

    /// A module that provides `key` and is loading, with the task its load runs on (if one
    /// does yet) and whether waiting for it would close a cycle: the first whose wait would
    /// not, else the first in flight. Tasks are searched in id order, so the answer is the
    /// same on every run.
    fn provider_in_flight(
        &mut self,
        tid: TaskId,
        key: &str,
    ) -> Option<(ModId, Option<TaskId>, bool)> {
        let provs = self.providers_of(key);
        let mut ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        ids.sort_unstable();
        let mut first_cycle = None;
        for &m in &provs {
            let Some(target) = self.load_in_flight(m, &ids) else {
                continue;
            };
            if !self.closes_cycle(tid, target) {
                return Some((m, target, false));
            }
            first_cycle.get_or_insert((m, target, true));
        }
        first_cycle
    }

    /// Whether module `m` is loading: `Some(task running its load)` (`Some(None)` for a
    /// COMING module whose loading task is not known). A udev event still queued is not a
    /// load in flight: its worker slot may only free when this probe ends; the probe
    /// defers and is retried when the module goes live.
    fn load_in_flight(&self, m: ModId, ids: &[TaskId]) -> Option<Option<TaskId>> {
        match self.k.state(m) {
            Some(ModState::Live | ModState::Going) => return None,
            Some(ModState::Coming) => {
                return Some(self.k.instances[m].as_ref().and_then(|i| i.owner_task));
            }
            _ => {}
        }
        for &t in ids {
            let task = &self.tasks[&t];
            let loads = task.frames.iter().any(|f| match f {
                Frame::Proc(Proc::Load(l)) => l.module == m,
                Frame::Proc(Proc::Modprobe(mp)) => self.k.db.lookup(&mp.target).contains(&m),
                Frame::Bind(b) => b.jobs.contains(&Job::Load(m)),
                _ => false,
            });
            if loads {
                return Some(Some(t));
            }
        }
        None
    }

    /// The modules whose code provides `key` ([`need_providers`]), computed once per key
    /// (a `device:NAME` key only once that device is declared).
    fn providers_of(&mut self, key: &str) -> Vec<ModId> {
        if let Some(v) = self.devs.providers_of.get(key) {
            return v.clone();
        }
        let out = need_providers(self.sc, &self.dm, key);
        // A device added later by an action is not declared yet: ask again then.
        let device = key
            .strip_prefix("device:")
            .and_then(|n| self.dm.find_device(n));
        if device.is_some() || !key.starts_with("device:") {
            self.devs.providers_of.insert(key.to_string(), out.clone());
        }
        out
    }
}

/// The modules whose code provides `key`, in the order a probe's wait looks at them: those
/// whose init step (or a work item it queues) registers it, by module id; then, by driver,
/// the modules of the drivers whose probe makes it a managed resource or registers it, or
/// (`device:NAME`) that match that device. The host driver hands this to the library
/// (`modkit::driver::Driver::set_need_providers`), so both runs wait for the same modules.
pub fn need_providers(sc: &Scenario, dm: &DeviceModel, key: &str) -> Vec<ModId> {
    fn registers(list: &[Action], key: &str) -> bool {
        list.iter().any(|a| match a {
            Action::Register(k) | Action::Device(DeviceAction::Devm(k)) => k == key,
            Action::Spawn(l) => registers(l, key),
            _ => false,
        })
    }
    let mut out = Vec::new();
    for (m, steps) in sc.steps.iter().enumerate() {
        if steps.iter().any(|s| registers(&s.run, key)) {
            out.push(m);
        }
    }
    let device = key.strip_prefix("device:").and_then(|n| dm.find_device(n));
    for (i, d) in sc.devices.drivers.iter().enumerate() {
        let m = d.spec.module;
        let provides = registers(&d.probe, key) || device.is_some_and(|x| dm.matches(i, x));
        if provides && !out.contains(&m) {
            out.push(m);
        }
    }
    out
}
