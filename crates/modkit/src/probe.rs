//! The host's driver core: the kernel's attach and detach paths (`drivers/base/dd.c`,
//! `bus.c`, `driver.c`, `core.c`) on real threads, over `modkit_core::device::DeviceModel`
//! kept under the host's lock. Probe and remove code runs outside the lock, on the thread
//! that caused it, as the kernel runs them synchronously in `driver_register()`,
//! `device_add()`, sysfs `bind`/`unbind` and `device_del()`:
//!
//! - a driver registered by its module's init (the `driver_register(NAME)` step appended
//!   to the init table, undone at exit) probes every present, unbound device of its bus
//!   that matches, in the order they were added;
//! - a device added is offered to the registered drivers of its bus in registration order
//!   until one binds or defers;
//! - a probe returning `EPROBE_DEFER` puts the device on the pending list, and every
//!   successful probe moves that list to the active list, which a worker thread
//!   (`kworker: deferred_probe_work_func`) retries; `ENODEV`/`ENXIO` fail silently, any
//!   other error prints the era's line and the next driver is tried;
//! - the deferred-probe timeout runs on the host's clock (a timer thread started with the
//!   first driver registration): when it fires the pending devices are retried once more
//!   and each one still pending prints "deferred probe pending";
//! - unbind (sysfs `unbind`, device removal, the driver's unregistration at its module's
//!   exit) unbinds the device's consumers first, then runs the driver's remove, then
//!   revokes its managed resources ([`crate::Devres`]), newest first, exactly once;
//! - a device is locked while its probe or remove runs (`device_lock()`): another thread
//!   that wants it waits; under the `modkit` policy the wait is bounded (real clock) and a
//!   callback that does not return in time is reported as a `stalled` diagnostic naming
//!   the device, the driver and the callback, and the operation fails with ETIME instead
//!   of hanging. A probe or remove that asks for its own device fails with EDEADLK.
//!
//! A bound device does not pin its driver's module (the kernel takes no module reference
//! at bind): `rmmod` runs the exit, whose `driver_unregister()` unbinds every device first.
//! A driver whose module is GOING probes nothing more (the kernel would still probe in the
//! window between the module's GOING and its exit's `driver_unregister()`, and unbind at
//! once; the host closes that window, modkit's policy, so no probe runs while its module
//! is not COMING or LIVE, the invariant the core checks under `modkit`). An engine that
//! runs a `linux-X.Y` policy (the host driver) reopens it through
//! [`crate::driver::Driver::set_probe_while_going`] (`modkit_core::going`).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use modkit_core::device::{
    BusMatch, DevId, DevState, DeviceModel, DeviceRow, DriverSpec, DrvId, ProbeEnd,
};
use modkit_core::{
    DiagKind, Errno, ModId, ModState, Outcome, Resume, TaskId, Time, WaitInfo, WaitKey,
};

use crate::ctx::InitCtx;
use crate::device::{Device, DeviceCode, DeviceDriver};
use crate::devres::{Devres, Revoke};
use crate::error::Error;
use crate::host::{Clock, HostHandle, State};
use crate::revocable::Revocable;
use crate::sync::{thread, MutexGuard};

/// How long, under the `modkit` policy, an unbind waits for a managed resource's users (or
/// another thread for a device's probe or remove) before it reports a stall and goes on
/// ([`HostHandle::set_unbind_stall_after`]).
pub const DEFAULT_UNBIND_STALL_AFTER: Duration = Duration::from_secs(1);

/// The host's device state, behind the host's lock.
pub(crate) struct Devices {
    /// The core's model.
    pub(crate) dm: DeviceModel,
    /// Probe and remove code, by driver id.
    code: BTreeMap<DrvId, Arc<dyn DeviceCode>>,
    /// Drivers that prefer asynchronous probing, by driver id.
    async_probe: BTreeSet<DrvId>,
    /// Async probe workers in flight, loads that scheduled some (crate::asyncprobe).
    pub(crate) asyncs: crate::asyncprobe::AsyncProbes,
    /// Buses the host has.
    buses: BTreeSet<String>,
    /// Drivers being unregistered: they probe nothing more.
    pub(crate) leaving: BTreeSet<DrvId>,
    /// A driver whose module is GOING still probes (the kernel's window, for an engine
    /// that runs a `linux-X.Y` policy: [`crate::driver::Driver::set_probe_while_going`]).
    pub(crate) probe_while_going: bool,
    /// Devices being deleted: no driver may bind them any more.
    pub(crate) deleting: BTreeSet<DevId>,
    /// The task running a device's probe or remove (`device_lock()`), and which callback.
    pub(crate) holder: BTreeMap<DevId, (TaskId, &'static str)>,
    /// The values of managed resources, by the core's resource id.
    pub(crate) values: BTreeMap<u64, (String, Arc<dyn Revoke>)>,
    /// The deferred-probe worker runs.
    deferwq: bool,
    /// The deferred-probe timeout thread was started.
    timer: bool,
    /// Worker threads (deferred probe, async probe, autoload) running.
    busy: usize,
    /// Every device thread running, the timer included.
    pub(crate) running: usize,
    /// `modprobe MODALIAS` on each device added (udev's coldplug role).
    autoload: bool,
    /// The bound on waits under `modkit`.
    stall_after: Duration,
    /// The host is closing: no new worker threads.
    closing: bool,
    /// The threads started, joined when the host closes.
    pub(crate) threads: Vec<thread::JoinHandle<()>>,
    /// Called when a device became present, before it is offered to the drivers
    /// ([`crate::driver::Driver::on_device_added`]).
    pub(crate) added: Option<AddedHook>,
    /// modkit's probe wait: loads in flight, providers, the deferred-probe worker's task
    /// (crate::probewait).
    pub(crate) waits: crate::probewait::ProbeWaits,
    /// Users of managed resources and modkit's bounded unbind (crate::unbind).
    pub(crate) unbind: crate::unbind::UnbindState,
}

/// What an engine runs when a device became present (its uevent, fw_devlink's links).
pub(crate) type AddedHook = Arc<dyn Fn(&HostHandle, DevId) + Send + Sync>;

impl Devices {
    pub(crate) fn new(policy: modkit_core::Policy) -> Devices {
        Devices {
            dm: DeviceModel::new(Vec::new(), modkit_core::dd::default_timeout(policy)),
            code: BTreeMap::new(),
            async_probe: BTreeSet::new(),
            asyncs: Default::default(),
            buses: modkit_core::device::BUILTIN_BUSES
                .iter()
                .filter(|b| {
                    **b != modkit_core::auxiliary::BUS || modkit_core::auxiliary::bus_exists(policy)
                })
                .map(|b| b.to_string())
                .collect(),
            leaving: BTreeSet::new(),
            probe_while_going: false,
            deleting: BTreeSet::new(),
            holder: BTreeMap::new(),
            values: BTreeMap::new(),
            deferwq: false,
            timer: false,
            busy: 0,
            running: 0,
            autoload: false,
            stall_after: DEFAULT_UNBIND_STALL_AFTER,
            closing: false,
            threads: Vec::new(),
            added: None,
            waits: Default::default(),
            unbind: Default::default(),
        }
    }
}

/// Forgets the handles of threads that have ended (so a long-running program does not
/// collect them); shuttle's handles cannot tell, and its runs are short.
#[cfg(not(feature = "shuttle"))]
fn prune_finished(threads: &mut Vec<thread::JoinHandle<()>>) {
    threads.retain(|t| !t.is_finished());
}

#[cfg(feature = "shuttle")]
fn prune_finished(_threads: &mut Vec<thread::JoinHandle<()>>) {}

/// The phase of an unbind (or a failed probe) that revokes the managed resources.
const DEVRES: &str = "devres release";

/// The wait key of a device's lock, woken when a probe or remove of it ends.
pub(crate) fn device_lock_key(dev: DevId) -> WaitKey {
    WaitKey::Completion(format!("device_lock({dev})"))
}

fn timer_key() -> WaitKey {
    WaitKey::Completion("deferred_probe_timeout".into())
}

fn err(op: &str, e: Errno) -> Error {
    Error::new(op.to_string(), Outcome::Err(e))
}

/// The context a driver's probe or remove runs in. It dereferences to the
/// [`InitCtx`] of the driver's module (symbols, `request_module`, registrations, the host).
pub struct ProbeCtx<'a> {
    init: InitCtx<'a>,
    dev: DevId,
    drv: DrvId,
    probing: bool,
}

impl<'a> std::ops::Deref for ProbeCtx<'a> {
    type Target = InitCtx<'a>;
    fn deref(&self) -> &InitCtx<'a> {
        &self.init
    }
}

impl<'a> std::ops::DerefMut for ProbeCtx<'a> {
    fn deref_mut(&mut self) -> &mut InitCtx<'a> {
        &mut self.init
    }
}

impl ProbeCtx<'_> {
    fn h(&self) -> &HostHandle {
        self.init.host()
    }

    /// The device's name.
    pub fn device_name(&self) -> String {
        self.h().lock().devs.dm.devices[self.dev].name.clone()
    }

    /// The device's modalias.
    pub fn modalias(&self) -> Option<String> {
        self.h().lock().devs.dm.devices[self.dev].modalias.clone()
    }

    /// The driver's name.
    pub fn driver_name(&self) -> String {
        self.h().lock().devs.dm.drivers[self.drv].name.clone()
    }

    /// True in a probe, false in a remove.
    pub fn is_probe(&self) -> bool {
        self.probing
    }

    /// The task the code runs as (for engines).
    pub(crate) fn task(&self) -> TaskId {
        self.init.task()
    }

    /// `devm_*()`: `value` managed by the device's binding, named after its type. Only in
    /// a probe (EINVAL in a remove).
    pub fn devm<T: Send + Sync + 'static>(&mut self, value: T) -> Result<Devres<T>, Error> {
        let name = std::any::type_name::<T>().replace("::", ".");
        self.devm_named(&name, value)
    }

    /// `devm_*()` with a name (shown in stall reports). A `kind:name` name also registers
    /// that name for the driver's module until the resource is released (a
    /// `devm_misc_register()`-style registration).
    pub fn devm_named<T: Send + Sync + 'static>(
        &mut self,
        name: &str,
        value: T,
    ) -> Result<Devres<T>, Error> {
        let r = Revocable::new(value);
        let device = self.take_resource(name, Some(Arc::new(r.clone())))?;
        Ok(Devres {
            inner: r,
            device,
            name: name.to_string(),
        })
    }

    /// A managed resource without a value (what a scenario's `devm = "name"` takes).
    pub fn devm_resource(&mut self, name: &str) -> Result<(), Error> {
        self.take_resource(name, None).map(|_| ())
    }

    fn take_resource(&mut self, name: &str, v: Option<Arc<dyn Revoke>>) -> Result<String, Error> {
        let op = format!("devm({name})");
        if !self.probing {
            return Err(err(&op, Errno::EINVAL));
        }
        let h = self.init.host();
        let mut st = h.lock();
        h.tick(&mut st);
        let State { k, devs, .. } = &mut *st;
        devs.dm.devm(k, self.dev, name).map_err(|e| err(&op, e))?;
        let id = *devs.dm.devres.live.keys().next_back().expect("just added");
        // A value-less resource gets an access gate (crate::unbind, `devres_use`).
        let v = v.or_else(|| Some(h.devres_gate(&mut st, id)));
        let State { devs, .. } = &mut *st;
        if let Some(v) = v {
            devs.values.insert(id, (name.to_string(), v));
        }
        Ok(devs.dm.devices[self.dev].name.clone())
    }

    /// The probe needs a supplier: a registration `kind:name`, or `device:NAME` (a device
    /// that must be bound; a managed device link is made, so unbinding the supplier unbinds
    /// this device first). Fails with EPROBE_DEFER otherwise: return it from the probe.
    pub fn need(&mut self, key: &str) -> Result<(), Error> {
        self.need_with(key, false, None)
    }

    /// [`ProbeCtx::need`] with `optional` (the driver asks
    /// `driver_deferred_probe_check_state()`, which gives up with ETIMEDOUT after the
    /// deferred-probe timeout) and the reason `dev_err_probe()` records.
    pub fn need_with(
        &mut self,
        key: &str,
        optional: bool,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        let op = format!("need({key})");
        if !self.probing {
            return Err(err(&op, Errno::EINVAL));
        }
        let h = self.init.host();
        // modkit: a provider still loading is waited for (crate::probewait).
        h.need_wait(self.task(), self.dev, self.drv, key);
        let mut st = h.lock();
        h.tick(&mut st);
        let State { k, devs, .. } = &mut *st;
        devs.dm
            .need(k, self.dev, key, optional, reason)
            .map_err(|e| err(&op, e))
    }

    /// Adds a device from the probe (an auxiliary device split off this one, say); it is
    /// offered to the drivers at once, on this thread.
    pub fn add_device(&mut self, device: Device) -> Result<(), Error> {
        let task = self.task();
        self.h().add_device_as(Some(task), device)
    }

    /// Removes a device (one this driver added): unbinds it, then it is gone.
    pub fn remove_device(&mut self, name: &str) -> Result<(), Error> {
        let task = self.task();
        self.h().remove_device_as(Some(task), name)
    }
}

impl InitCtx<'_> {
    /// `driver_register()` of a driver this module declares (the step a module with
    /// drivers gets appended to its init table does this): probes every present, unbound
    /// device of the bus that matches. EBUSY when registered already, EINVAL for a driver
    /// the module does not declare.
    pub fn driver_register(&mut self, name: &str) -> Result<(), Error> {
        let drv = self.own_driver(name)?;
        self.host().driver_register_as(self.task(), drv)
    }

    /// `driver_unregister()`: unbinds every device bound to the driver (consumers first,
    /// remove, managed resources), then the driver leaves the bus.
    pub fn driver_unregister(&mut self, name: &str) -> Result<(), Error> {
        let drv = self.own_driver(name)?;
        self.host().driver_unregister_as(self.task(), drv);
        Ok(())
    }

    fn own_driver(&self, name: &str) -> Result<DrvId, Error> {
        let st = self.host().lock();
        match st.devs.dm.find_driver(name) {
            Some(d) if st.devs.dm.drivers[d].module == self.module() => Ok(d),
            _ => Err(err(&format!("driver_register({name})"), Errno::EINVAL)),
        }
    }
}

impl HostHandle {
    /// Checks a module's drivers before it is added (names free, buses known, patterns
    /// valid).
    pub(crate) fn check_drivers(
        &self,
        st: &State,
        module: &str,
        drivers: &[DeviceDriver],
    ) -> Result<(), Error> {
        let op = format!("add module {module}");
        let fail = |why: String| {
            Err(Error::new(
                format!("{op}: {why}"),
                Outcome::Err(Errno::EINVAL),
            ))
        };
        for (i, d) in drivers.iter().enumerate() {
            if d.name.is_empty() {
                return fail(format!("driver {} has an empty name", i + 1));
            }
            if st.devs.dm.find_driver(&d.name).is_some()
                || drivers[..i].iter().any(|o| o.name == d.name)
            {
                return fail(format!("a driver named `{}` exists already", d.name));
            }
            if !st.devs.buses.contains(&d.bus) {
                return fail(format!(
                    "driver `{}` is on bus `{}`, which the host does not have (add it with add_bus)",
                    d.name, d.bus
                ));
            }
            for p in &d.patterns {
                if let Err(e) = modkit_core::device::valid_pattern(p) {
                    return fail(format!(
                        "driver `{}`: pattern `{p}` is not a valid glob: {e}",
                        d.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Declares module `m`'s drivers (checked by [`HostHandle::check_drivers`]).
    pub(crate) fn declare_drivers(
        &self,
        st: &mut State,
        m: ModId,
        drivers: Vec<DeviceDriver>,
    ) -> Vec<DrvId> {
        drivers
            .into_iter()
            .map(|d| {
                let spec = DriverSpec {
                    name: d.name.clone(),
                    bus: d.bus.clone(),
                    module: m,
                    patterns: d.patterns.clone(),
                };
                let a = d.async_probe;
                let id = st.devs.dm.add_driver(spec);
                st.devs.code.insert(id, d.into_code());
                if a {
                    st.devs.async_probe.insert(id);
                }
                id
            })
            .collect()
    }

    /// Runs `f` as `task`, or as the module body this thread runs, or as a new task.
    fn as_task<R>(&self, task: Option<TaskId>, label: &str, f: impl FnOnce(TaskId) -> R) -> R {
        if let Some(t) = task.or_else(crate::host::body_task) {
            return f(t);
        }
        let t = {
            let mut st = self.lock();
            self.new_task(&mut st, label)
        };
        let r = f(t);
        let mut st = self.lock();
        self.finish_task(&mut st, t, Some(Outcome::Ok));
        r
    }

    /// The bound on waits for device users and callbacks: under `modkit` on the real
    /// clock, [`HostHandle::set_unbind_stall_after`]; otherwise none (the kernel waits).
    fn stall_bound(&self, st: &State) -> Option<Duration> {
        (st.k.policy.is_modkit() && self.shared.clock == Clock::Real).then_some(st.devs.stall_after)
    }

    /// `device_lock(dev)`: waits until no other task runs a probe or remove of `dev`.
    fn lock_device<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        task: TaskId,
        dev: DevId,
    ) -> (MutexGuard<'a, State>, Result<(), Errno>) {
        loop {
            let Some(&(t, what)) = st.devs.holder.get(&dev) else {
                return (st, Ok(()));
            };
            let name = st.devs.dm.devices[dev].name.clone();
            let drv = match st.devs.dm.devices[dev].state {
                DevState::Probing(x) | DevState::Removing(x) | DevState::Bound(x) => {
                    st.devs.dm.drivers[x].name.clone()
                }
                _ => "?".into(),
            };
            if t == task {
                self.tick(&mut st);
                let msg = format!(
                    "the {what} of {name} by driver {drv} asks for its own device: device_lock({name}) is held by this very callback"
                );
                st.k.diagnose(
                    DiagKind::DependencyCycle,
                    None,
                    msg,
                    vec![
                        format!("{what} of {name}"),
                        format!("device_lock({name})"),
                        format!("{what} of {name}"),
                    ],
                    Some(
                        "do not unbind, bind or remove a device from its own probe or remove"
                            .into(),
                    ),
                );
                return (st, Err(Errno::EDEADLK));
            }
            let bound = self.stall_bound(&st);
            let deadline = bound.map(|b| self.now(&st).saturating_add(b.as_nanos() as Time));
            // modkit: a probe waiting for a load that now waits for this task stops waiting.
            if crate::probewait::break_for(&mut st, task, t) {
                self.deliver(&mut st);
            }
            let info = WaitInfo {
                key: device_lock_key(dev),
                reason: format!("device_lock({name}): the {what} by {drv} runs"),
                target: None,
                deadline,
            };
            let (g, r) = self.park(st, task, info, false);
            st = g;
            match r {
                None => return (st, Err(Errno::EINTR)),
                Some(Resume::TimedOut) if st.devs.holder.get(&dev).map(|h| h.0) == Some(t) => {
                    let after = bound.unwrap_or_default();
                    // The phase now (the remove may have ended and the release begun).
                    let what = st.devs.holder.get(&dev).map_or(what, |h| h.1);
                    let (msg, link, hint) = if what == DEVRES {
                        (
                            format!("the release of device {name}'s managed resources (driver {drv}) still waits for users in flight after {after:?}: the operation waiting for device_lock({name}) gives up"),
                            "devres release: users in flight".to_string(),
                            format!("drop the Devres guards of {name} sooner (a user holds one across a wait)"),
                        )
                    } else {
                        (
                            format!("driver {drv}'s {what} of device {name} has not returned after {after:?}: the operation waiting for device_lock({name}) gives up"),
                            format!("callback {what}"),
                            format!("make {drv}'s {what} return (it blocks on something that never comes)"),
                        )
                    };
                    let m = st
                        .devs
                        .dm
                        .find_driver(&drv)
                        .map(|x| st.devs.dm.drivers[x].module);
                    st.k.diagnose(
                        DiagKind::Stalled,
                        m,
                        msg,
                        vec![format!("device {name}"), format!("driver {drv}"), link],
                        Some(hint),
                    );
                    return (st, Err(Errno::ETIME));
                }
                _ => {}
            }
        }
    }

    /// Runs a probe or a remove outside the lock, as the module body of `task`.
    pub(crate) fn run_device_code(
        &self,
        task: TaskId,
        dev: DevId,
        drv: DrvId,
        probing: bool,
    ) -> Result<(), Errno> {
        let (code, module) = {
            let st = self.lock();
            (
                st.devs.code.get(&drv).cloned(),
                st.devs.dm.drivers[drv].module,
            )
        };
        let Some(code) = code else {
            // The host is shut down: the code is gone.
            return if probing { Err(Errno::ENODEV) } else { Ok(()) };
        };
        let mut ctx = ProbeCtx {
            init: InitCtx::new(self, task, module),
            dev,
            drv,
            probing,
        };
        let outer = crate::host::set_body_task(Some(task));
        let r = catch_unwind(AssertUnwindSafe(|| {
            if probing {
                code.probe(&mut ctx)
            } else {
                code.remove(&mut ctx);
                Ok(())
            }
        }));
        crate::host::set_body_task(outer);
        match r {
            Ok(r) => r,
            Err(payload) => {
                let msg = crate::host::panic_message(payload.as_ref());
                if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                    std::mem::forget(again);
                }
                let mut st = self.lock();
                self.tick(&mut st);
                let what = if probing { "probe" } else { "remove" };
                let line = format!(
                    "{} {}: {what} panicked: {msg}",
                    st.devs.dm.drivers[drv].name, st.devs.dm.devices[dev].name
                );
                st.k.printk(line.clone());
                let hint = if probing {
                    "the probe fails with EFAULT; its managed resources are released"
                } else {
                    "the unbind goes on: the managed resources are released"
                };
                st.k.diagnose(
                    DiagKind::ModulePanic,
                    Some(module),
                    line,
                    Vec::new(),
                    Some(hint.into()),
                );
                if probing {
                    Err(Errno::EFAULT)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Revokes the managed values of `dev` (newest first) outside the lock; a value still
    /// in use at the bound is reported as a stall.
    fn revoke_devres(&self, dev: DevId, drv: DrvId) {
        if self.revoke_unwaited(dev) {
            // The virtual clock: no thread may block off the host's books (crate::unbind).
            return;
        }
        let (values, bound) = {
            let mut st = self.lock();
            let mut ids = st.devs.dm.devres.ids_of(dev);
            ids.reverse();
            let vals: Vec<(String, Arc<dyn Revoke>)> = ids
                .iter()
                .filter_map(|id| {
                    st.devs.unbind.forget_gate(*id);
                    st.devs.values.remove(id)
                })
                .collect();
            (vals, self.stall_bound(&st))
        };
        for (name, v) in values {
            if !v.revoke(bound) {
                let mut st = self.lock();
                self.tick(&mut st);
                let d = st.devs.dm.devices[dev].name.clone();
                let r = st.devs.dm.drivers[drv].name.clone();
                let m = st.devs.dm.drivers[drv].module;
                let after = bound.unwrap_or_default();
                st.k.diagnose(
                    DiagKind::Stalled,
                    Some(m),
                    format!(
                        "unbind of {d}: driver {r}'s managed resource `{name}` is still in use {after:?} after the revocation began; new access is refused and the unbind goes on"
                    ),
                    vec![format!("device {d}"), format!("driver {r}"), format!("devres {name}: a guard is held")],
                    Some(format!("drop the Devres guard of `{name}` sooner (a user of {d} holds it across a wait)")),
                );
            }
        }
    }

    /// `driver_probe_device(drv, dev)`: `None` when the probe did not run (the device is
    /// claimed, going away, or the driver is leaving), else its result.
    fn probe_one(&self, task: TaskId, dev: DevId, drv: DrvId) -> Option<Result<(), Errno>> {
        let st = self.lock();
        let (mut st, r) = self.lock_device(st, task, dev);
        if let Err(e) = r {
            return Some(Err(e));
        }
        self.tick(&mut st);
        {
            let d = &st.devs;
            // A driver whose module is going probes nothing: its exit is about to
            // unregister it (between the module's GOING and the exit's
            // driver_unregister() the kernel would still probe, and unbind at once; an
            // engine running a linux-X.Y policy asks for that: probe_while_going).
            let module_up = match st.k.state(d.dm.drivers[drv].module) {
                Some(ModState::Coming | ModState::Live) => true,
                Some(ModState::Going) => d.probe_while_going,
                _ => false,
            };
            if d.leaving.contains(&drv)
                || d.deleting.contains(&dev)
                || !module_up
                || !d.dm.is_registered(drv)
                || d.dm.bus_match(&st.k, drv, dev) == BusMatch::No
            {
                return None;
            }
        }
        let State { k, devs, .. } = &mut *st;
        if !devs.dm.probe_begin(k, dev, drv) {
            return None;
        }
        devs.holder.insert(dev, (task, "probe"));
        drop(st);
        let res = self.run_device_code(task, dev, drv, true);
        if self.lock().stalled {
            // The run stalled in the probe (virtual clock): it stays probing, as the
            // simulator leaves it parked.
            return Some(Err(Errno::EINTR));
        }
        if res.is_err() {
            self.lock().devs.holder.insert(dev, (task, DEVRES));
            self.revoke_devres(dev, drv);
        }
        let mut st = self.lock();
        self.tick(&mut st);
        let State { k, devs, .. } = &mut *st;
        let end = devs.dm.probe_end(k, dev, drv, res);
        devs.holder.remove(&dev);
        k.wakes.push(device_lock_key(dev));
        self.deliver(&mut st);
        drop(st);
        if matches!(
            end,
            ProbeEnd::Bound { trigger: true } | ProbeEnd::Deferred { trigger: true }
        ) {
            self.kick_deferwq();
        }
        Some(res)
    }

    /// `__device_attach()`: the matching drivers in registration order until one binds or
    /// defers (async drivers from a worker when no sync one matches).
    fn attach(&self, task: TaskId, dev: DevId) {
        // A bus match that defers (crate::matchdefer): the era's drivers to probe.
        let deferring = self.attach_match_defer(dev);
        let (cands, asyncs): (Vec<DrvId>, Vec<DrvId>) = if let Some(c) = deferring {
            (c, Vec::new())
        } else {
            let st = self.lock();
            let d = &st.devs;
            if d.dm.devices[dev].state != DevState::Unbound || d.deleting.contains(&dev) {
                return;
            }
            d.dm.drivers_for(dev)
                .into_iter()
                .filter(|x| !d.leaving.contains(x))
                .partition(|x| !d.async_probe.contains(x))
        };
        if cands.is_empty() && !asyncs.is_empty() {
            self.spawn_async(dev, asyncs);
            return;
        }
        for drv in cands {
            match self.probe_one(task, dev, drv) {
                Some(Ok(())) | Some(Err(Errno::EPROBE_DEFER)) => return,
                Some(Err(Errno::EDEADLK | Errno::ETIME | Errno::EINTR)) => return,
                Some(Err(_)) => {}
                None => {
                    if self.lock().devs.dm.devices[dev].state != DevState::Unbound {
                        return;
                    }
                }
            }
        }
    }

    fn spawn_async(&self, dev: DevId, drivers: Vec<DrvId>) {
        let name = self.lock().devs.dm.devices[dev].name.clone();
        self.async_probe_scheduled();
        let started = self.spawn_worker(format!("async: probe {name}"), move |h, t| {
            for drv in drivers {
                match h.probe_one(t, dev, drv) {
                    Some(Ok(())) | Some(Err(Errno::EPROBE_DEFER)) => break,
                    _ => {}
                }
            }
            h.async_probe_ended();
        });
        if !started {
            self.async_probe_ended();
        }
    }

    /// Starts a worker thread as a new task; false when it could not start.
    fn spawn_worker(
        &self,
        label: String,
        f: impl FnOnce(&HostHandle, TaskId) + Send + 'static,
    ) -> bool {
        let mut st = self.lock();
        self.spawn_worker_locked(&mut st, label, f).is_some()
    }

    /// [`HostHandle::spawn_worker`] under the host's lock (the thread starts at once and
    /// waits for the lock): its task, or `None` when it could not start.
    fn spawn_worker_locked(
        &self,
        st: &mut State,
        label: String,
        f: impl FnOnce(&HostHandle, TaskId) + Send + 'static,
    ) -> Option<TaskId> {
        if st.devs.closing {
            return None;
        }
        let slot = self.reserve_thread(st)?;
        let task = self.new_task(st, &label);
        st.devs.busy += 1;
        st.devs.running += 1;
        let h = self.clone();
        let spawned = thread::Builder::new().name(label).spawn(move || {
            let _slot = slot;
            f(&h, task);
            let mut st = h.lock();
            st.devs.busy -= 1;
            st.devs.running -= 1;
            h.finish_task(&mut st, task, Some(Outcome::Ok));
        });
        match spawned {
            Ok(j) => {
                prune_finished(&mut st.devs.threads);
                st.devs.threads.push(j);
                Some(task)
            }
            Err(_) => {
                st.devs.busy -= 1;
                st.devs.running -= 1;
                self.finish_task(st, task, Some(Outcome::Err(Errno::ENOMEM)));
                None
            }
        }
    }

    /// Queues the deferred-probe work (a worker thread) if it is not running.
    fn kick_deferwq(&self) {
        let mut st = self.lock();
        self.kick_deferwq_locked(&mut st);
    }

    /// [`HostHandle::kick_deferwq`] under the host's lock.
    pub(crate) fn kick_deferwq_locked(&self, st: &mut State) {
        if st.devs.deferwq || st.devs.dm.active.is_empty() || st.devs.closing {
            return;
        }
        st.devs.deferwq = true;
        let started = self.spawn_worker_locked(
            st,
            "kworker: deferred_probe_work_func".into(),
            |h, t| loop {
                let dev = {
                    let mut st = h.lock();
                    match st.devs.dm.active.pop_front() {
                        Some(d) => d,
                        None => {
                            st.devs.deferwq = false;
                            return;
                        }
                    }
                };
                h.attach(t, dev);
            },
        );
        match started {
            Some(t) => st.devs.waits.deferwq = Some(t),
            None => st.devs.deferwq = false,
        }
    }

    /// Starts the deferred-probe timeout thread, once, when a timeout is pending.
    pub(crate) fn start_timer(&self) {
        {
            let mut st = self.lock();
            if st.devs.timer || st.devs.dm.timeout_due.is_none() {
                return;
            }
            st.devs.timer = true;
        }
        let started = self.spawn_worker(
            "kworker: deferred_probe_timeout_work_func".into(),
            |h, t| h.timeout_work(t),
        );
        if !started {
            self.lock().devs.timer = false;
        }
    }

    fn timeout_work(&self, task: TaskId) {
        // The timer does not count as busy for settle(); it ends (and may be started again
        // by a new timeout) when no timeout is pending, under the same lock as the check.
        self.lock().devs.busy -= 1;
        loop {
            let mut st = self.lock();
            self.tick(&mut st);
            let due = st.devs.dm.timeout_due.filter(|_| !st.devs.closing);
            let Some(due) = due else {
                st.devs.timer = false;
                st.devs.busy += 1;
                return;
            };
            let now = self.now(&st);
            if now >= due {
                if st.devs.dm.timeout_fire(now) {
                    drop(st);
                    // deferred_probe_timeout_work_func(): trigger, flush the work, report.
                    loop {
                        let dev = self.lock().devs.dm.active.pop_front();
                        match dev {
                            Some(d) => self.attach(task, d),
                            None => break,
                        }
                    }
                    let mut st = self.lock();
                    self.tick(&mut st);
                    let State { k, devs, .. } = &mut *st;
                    devs.dm.timeout_report(k);
                }
                continue;
            }
            let info = WaitInfo {
                key: timer_key(),
                reason: "deferred_probe_timeout".into(),
                target: None,
                deadline: Some(due),
            };
            let (mut st, r) = self.park(st, task, info, false);
            if r.is_none() {
                // The run stalled (virtual clock).
                st.devs.timer = false;
                st.devs.busy += 1;
                return;
            }
        }
    }

    /// `__device_release_driver()`: consumers first, then remove, then the managed
    /// resources. Ok when the device is not bound (any more).
    fn release(&self, task: TaskId, dev: DevId) -> Result<(), Errno> {
        loop {
            let st = self.lock();
            let (mut st, r) = self.lock_device(st, task, dev);
            r?;
            self.tick(&mut st);
            let DevState::Bound(drv) = st.devs.dm.devices[dev].state else {
                return Ok(());
            };
            let consumers = st.devs.dm.consumers_of(dev);
            if !consumers.is_empty() {
                drop(st);
                for c in consumers {
                    self.release(task, c)?;
                }
                continue;
            }
            if self.unbind_is_bounded(&st) {
                // modkit on the virtual clock: the simulator's rules (crate::unbind).
                drop(st);
                return self.unbind_bounded(task, dev, drv);
            }
            let State { k, devs, .. } = &mut *st;
            devs.dm.remove_begin(k, dev);
            devs.holder.insert(dev, (task, "remove"));
            drop(st);
            let _ = self.run_device_code(task, dev, drv, false);
            if self.lock().stalled {
                // The run stalled in the remove (virtual clock): the device stays
                // removing and the unbind unfinished, as the kernel's would.
                return Err(Errno::EINTR);
            }
            self.lock().devs.holder.insert(dev, (task, DEVRES));
            if !self.release_unwaited(dev) {
                self.revoke_devres(dev, drv);
            }
            let mut st = self.lock();
            self.tick(&mut st);
            let State { k, devs, .. } = &mut *st;
            devs.dm.remove_end(k, dev);
            devs.holder.remove(&dev);
            k.wakes.push(device_lock_key(dev));
            self.deliver(&mut st);
            return Ok(());
        }
    }

    /// `driver_register()` → `driver_attach()`.
    pub(crate) fn driver_register_as(&self, task: TaskId, drv: DrvId) -> Result<(), Error> {
        let (devs, is_async, name) = {
            let mut st = self.lock();
            self.tick(&mut st);
            let State { k, devs, .. } = &mut *st;
            let name = devs.dm.drivers[drv].name.clone();
            // Devices another thread probes or removes are listed too: probe_one() waits
            // for their lock and probes if unbound then, as __driver_attach() does; one
            // being deleted is off the bus's list already (bus_remove_device()).
            let mut list = devs
                .dm
                .register_driver(k, drv)
                .map_err(|e| err(&format!("driver_register({name})"), e))?;
            list.retain(|d| !devs.deleting.contains(d));
            let is_async = devs.async_probe.contains(&drv);
            if is_async {
                let m = devs.dm.drivers[drv].module;
                HostHandle::note_async_register(&mut st, m, list.len());
            }
            (list, is_async, name)
        };
        tracing::debug!(target: "modkit::device", driver = %name, devices = devs.len(), "driver registered");
        self.start_timer();
        for d in devs {
            // __driver_attach() of a device whose match defers (crate::matchdefer).
            if !self.driver_attach_match_defer(d, drv) {
                continue;
            }
            if is_async {
                self.spawn_async(d, vec![drv]);
            } else {
                self.probe_one(task, d, drv);
            }
        }
        Ok(())
    }

    /// `driver_unregister()` → `driver_detach()`, then the driver leaves the bus. It ends
    /// only when, under one lock, no device is bound to the driver and no probe or remove
    /// of it runs on another thread (an unbind that began meanwhile is waited for); a wait
    /// that gives up (a stalled callback under `modkit`) leaves the rest as it is.
    pub(crate) fn driver_unregister_as(&self, task: TaskId, drv: DrvId) {
        {
            // bus_remove_driver(): off the bus's list (the model's too) before detaching.
            // bus_remove_driver(): the driver is off its bus from now on (sysfs bind
            // fails with ENODEV), as the simulator's begin_unregister().
            let mut st = self.lock();
            st.devs.leaving.insert(drv);
            st.devs.dm.begin_unregister(drv);
        }
        loop {
            let st = self.lock();
            // The bound devices first (newest first), then those whose probe or remove
            // runs on another task, as the simulator's driver_detach() (a remove that
            // never returns on one of them decides where the exit hangs).
            let bound = st.devs.dm.bound_to(drv);
            if !bound.is_empty() {
                drop(st);
                if bound.into_iter().any(|d| self.release(task, d).is_err()) {
                    break;
                }
                continue;
            }
            let busy = st.devs.holder.iter().find_map(|(&d, &(t, _))| {
                (t != task
                    && matches!(st.devs.dm.devices[d].state,
                        DevState::Probing(x) | DevState::Removing(x) if x == drv))
                .then_some(d)
            });
            let Some(d) = busy else {
                break;
            };
            let (_st, r) = self.lock_device(st, task, d);
            if r.is_err() {
                break;
            }
        }
        let mut st = self.lock();
        if st.stalled {
            // The run stalled in a wait above (virtual clock): a device is still being
            // removed by the driver, which stays on the bus, as the kernel's would.
            return;
        }
        st.devs.dm.unregister_driver(drv);
        st.devs.leaving.remove(&drv);
    }

    /// Called when the host closes: stops the timer and waits for the device threads (up
    /// to [`crate::DEFAULT_DROP_WAIT`]; a thread stuck in driver code is left running, with
    /// a warning), then joins those that ended.
    pub(crate) fn devices_close(&self) {
        let until = std::time::Instant::now() + crate::DEFAULT_DROP_WAIT;
        let me = thread::current().id();
        let mut st = self.lock();
        st.devs.closing = true;
        st.k.wakes.push(timer_key());
        self.deliver(&mut st);
        self.notify();
        // A device thread that runs this close (the host dropped from a probe) is not
        // waited for.
        let own = usize::from(st.devs.threads.iter().any(|t| t.thread().id() == me));
        while st.devs.running > own {
            let now = std::time::Instant::now();
            if now >= until {
                tracing::warn!(
                    target: "modkit::host",
                    threads = st.devs.running,
                    "host closed while device threads (probes, removes) still run: left running"
                );
                return;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, (until - now).min(Duration::from_millis(20)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let threads = std::mem::take(&mut st.devs.threads);
        // The drivers' code and the managed values go with the modules' code (they may
        // hold handles to the host), dropped outside the lock.
        let code = std::mem::take(&mut st.devs.code);
        let values = std::mem::take(&mut st.devs.values);
        drop(st);
        drop(code);
        drop(values);
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }

    fn find_present(&self, st: &State, name: &str) -> Option<DevId> {
        st.devs
            .dm
            .find_device(name)
            .filter(|&d| st.devs.dm.present(d))
    }

    // ---- the public operations ----

    /// Adds a bus (`bus_register()`): drivers and devices name it. The kernel's buses
    /// (platform, pci, auxiliary, cpu, acpi, virtual) exist already. EEXIST if it exists.
    pub fn add_bus(&self, name: &str) -> Result<(), Error> {
        let mut st = self.lock();
        if name.is_empty() || name.contains('/') {
            return Err(err(&format!("add bus `{name}`"), Errno::EINVAL));
        }
        if !st.devs.buses.insert(name.to_string()) {
            return Err(err(&format!("add bus {name}"), Errno::EEXIST));
        }
        Ok(())
    }

    /// `device_add()`: the device becomes present and is offered to the registered drivers
    /// of its bus in registration order, on this thread, until one binds or defers. With
    /// [`HostHandle::set_device_autoload`], a device that no driver bound and whose
    /// modalias a module answers gets a `modprobe MODALIAS` on a worker thread (udev's
    /// role). EEXIST when a device of that name is present; EINVAL for an unknown bus or an
    /// auxiliary name that is not `modname.devname.id`.
    pub fn add_device(&self, device: Device) -> Result<(), Error> {
        self.add_device_as(None, device)
    }

    pub(crate) fn add_device_as(&self, task: Option<TaskId>, device: Device) -> Result<(), Error> {
        let op = format!("add device {}", device.name);
        self.refuse_if_closing(&op)?;
        let dev = {
            let mut st = self.lock();
            self.tick(&mut st);
            if device.bus == modkit_core::auxiliary::BUS
                && !modkit_core::auxiliary::bus_exists(st.k.policy)
            {
                let line = format!(
                    "auxiliary_device_add({}): there is no auxiliary bus before 5.11",
                    device.name
                );
                st.k.remark(None, line);
                return Err(err(&op, Errno::ENODEV));
            }
            if !st.devs.buses.contains(&device.bus) {
                return Err(err(&op, Errno::EINVAL));
            }
            let mut modalias = device.modalias.clone();
            if device.bus == modkit_core::auxiliary::BUS {
                if !modkit_core::auxiliary::valid_name(&device.name) {
                    return Err(err(&op, Errno::EINVAL));
                }
                modalias = modkit_core::auxiliary::modalias(&device.name);
            }
            let dm = &mut st.devs.dm;
            let id = dm.declare(&device.name, &device.bus, modalias.clone());
            if dm.present(id) {
                return Err(err(&op, Errno::EEXIST));
            }
            dm.devices[id].bus = device.bus.clone();
            dm.devices[id].modalias = modalias;
            dm.devices[id].match_defer = device.match_defer.clone();
            dm.add_device(id).map_err(|e| err(&op, e))?;
            st.devs.deleting.remove(&id);
            id
        };
        let hook = self.lock().devs.added.clone();
        if let Some(f) = hook {
            f(self, dev);
        }
        self.as_task(task, &op, |t| self.attach(t, dev));
        self.autoload(dev);
        Ok(())
    }

    fn autoload(&self, dev: DevId) {
        let m = {
            let st = self.lock();
            if !st.devs.autoload || st.devs.dm.devices[dev].state != DevState::Unbound {
                return;
            }
            let Some(m) = st.devs.dm.devices[dev].modalias.clone() else {
                return;
            };
            let mods = st.k.db.lookup(&m);
            if mods.is_empty() || mods.iter().all(|&x| st.k.state(x) == Some(ModState::Live)) {
                return;
            }
            m
        };
        self.spawn_worker(format!("udev: modprobe {m}"), move |h, _| {
            if let Err(e) = h.modprobe(&m) {
                tracing::debug!(target: "modkit::device", "autoload: {e}");
            }
        });
    }

    /// `device_unregister()`: unbinds the device (consumers first, remove, managed
    /// resources), then it is gone. ENODEV when no such device is present.
    pub fn remove_device(&self, name: &str) -> Result<(), Error> {
        self.remove_device_as(None, name)
    }

    pub(crate) fn remove_device_as(&self, task: Option<TaskId>, name: &str) -> Result<(), Error> {
        let op = format!("remove device {name}");
        let dev = {
            let mut st = self.lock();
            let Some(dev) = self.find_present(&st, name) else {
                return Err(err(&op, Errno::ENODEV));
            };
            if !st.devs.deleting.insert(dev) {
                return Err(err(&op, Errno::ENODEV));
            }
            dev
        };
        let first = self.lock().k.diagnostics.len();
        let r = self.as_task(task, &op, |t| self.release(t, dev));
        let mut st = self.lock();
        st.devs.deleting.remove(&dev);
        if let Err(e) = r {
            drop(st);
            return self.result(op, Outcome::Err(e), first);
        }
        self.tick(&mut st);
        let State { k, devs, .. } = &mut *st;
        if devs.dm.present(dev) {
            devs.dm.del_device(k, dev);
        }
        Ok(())
    }

    /// sysfs `bind` (`echo DEV > /sys/bus/BUS/drivers/DRV/bind`): probes `device` with
    /// `driver` on this thread. Ok when it binds; EBUSY when the device is bound; ENODEV
    /// when the device is not present or the driver is not registered or does not match;
    /// else the probe's error.
    pub fn bind(&self, device: &str, driver: &str) -> Result<(), Error> {
        self.bind_as(None, device, driver)
    }

    pub(crate) fn bind_as(
        &self,
        task: Option<TaskId>,
        device: &str,
        driver: &str,
    ) -> Result<(), Error> {
        let op = format!("bind {device} {driver}");
        let (dev, drv) = {
            let st = self.lock();
            let d = &st.devs;
            let (Some(dev), Some(drv)) = (self.find_present(&st, device), d.dm.find_driver(driver))
            else {
                return Err(err(&op, Errno::ENODEV));
            };
            // bind_store(): a deferring match is non-zero, a match (crate::matchdefer).
            let no_match = d.dm.bus_match(&st.k, drv, dev) == BusMatch::No;
            if !d.dm.is_registered(drv) || no_match || d.leaving.contains(&drv) {
                return Err(err(&op, Errno::ENODEV));
            }
            if d.dm.devices[dev].state != DevState::Unbound && !d.holder.contains_key(&dev) {
                return Err(err(&op, Errno::EBUSY));
            }
            (dev, drv)
        };
        let first = self.lock().k.diagnostics.len();
        let r = self.as_task(task, &op, |t| self.probe_one(t, dev, drv));
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => self.result(op, Outcome::Err(e), first),
            None => {
                let bound = matches!(self.lock().devs.dm.devices[dev].state, DevState::Bound(_));
                Err(err(&op, if bound { Errno::EBUSY } else { Errno::ENODEV }))
            }
        }
    }

    /// sysfs `unbind`: the device's driver lets it go (consumers first, remove, managed
    /// resources revoked). ENODEV when it is not bound.
    pub fn unbind(&self, device: &str) -> Result<(), Error> {
        self.unbind_as(None, device)
    }

    pub(crate) fn unbind_as(&self, task: Option<TaskId>, device: &str) -> Result<(), Error> {
        let op = format!("unbind {device}");
        let dev = {
            let st = self.lock();
            let Some(dev) = self.find_present(&st, device) else {
                return Err(err(&op, Errno::ENODEV));
            };
            if !matches!(
                st.devs.dm.devices[dev].state,
                DevState::Bound(_) | DevState::Probing(_) | DevState::Removing(_)
            ) {
                return Err(err(&op, Errno::ENODEV));
            }
            dev
        };
        let first = self.lock().k.diagnostics.len();
        match self.as_task(task, &op, |t| self.release(t, dev)) {
            Ok(()) => Ok(()),
            Err(e) => self.result(op, Outcome::Err(e), first),
        }
    }

    /// The device table: every device the host has seen (device, bus, driver, state, and
    /// the deferral reason or the last probe failure), in the order first added.
    pub fn devices(&self) -> Vec<DeviceRow> {
        self.lock().devs.dm.table()
    }

    /// Device `name`'s state as scenario expectations write it: `bound:DRIVER`,
    /// `deferred`, `unbound`, `probing`, `removing`, `absent`; `None` for a name never
    /// seen.
    pub fn device_state(&self, name: &str) -> Option<String> {
        self.lock().devs.dm.state_word(name)
    }

    /// The device table as text.
    pub fn devices_text(&self) -> String {
        let rows = self.devices();
        let w = rows
            .iter()
            .map(|r| r.device.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut s = format!(
            "{:<w$}  {:<10} {:<16} {:<9} Reason\n",
            "Device", "Bus", "Driver", "State"
        );
        for r in rows {
            s.push_str(&format!(
                "{:<w$}  {:<10} {:<16} {:<9} {}\n",
                r.device,
                r.bus,
                r.driver.as_deref().unwrap_or("-"),
                r.state,
                r.reason.as_deref().unwrap_or("")
            ));
        }
        s
    }

    /// Sets the deferred-probe timeout (the `deferred_probe_timeout=` boot parameter),
    /// counted from now on the host's clock; `None`: no timeout. The default is the era's
    /// (modkit: 10 s from the host's start, extended by each driver registration).
    pub fn set_deferred_probe_timeout(&self, timeout: Option<Duration>) {
        let ns = timeout.map(|d| d.as_nanos() as Time);
        {
            let mut st = self.lock();
            let now = self.now(&st);
            st.devs.dm.timeout = ns;
            st.devs.dm.timeout_due = ns.filter(|&t| t > 0).map(|t| now.saturating_add(t));
            st.k.wakes.push(timer_key());
            self.deliver(&mut st);
        }
        if !self.lock().devs.dm.registered.is_empty() {
            self.start_timer();
        }
    }

    /// Makes every device added with a modalias that some module answers, and that no
    /// driver bound, run `modprobe MODALIAS` on a worker thread, as udev's kmod builtin
    /// does for each uevent (off by default).
    pub fn set_device_autoload(&self, on: bool) {
        self.lock().devs.autoload = on;
    }

    /// Under the `modkit` policy, how long an unbind waits for the users of a managed
    /// resource, and another thread for a device's probe or remove, before reporting a
    /// `stalled` diagnostic (default [`DEFAULT_UNBIND_STALL_AFTER`]).
    pub fn set_unbind_stall_after(&self, after: Duration) {
        self.lock().devs.stall_after = after;
    }

    /// Waits until the device model's worker threads are done (the deferred-probe work,
    /// async probes, autoload modprobes), as `udevadm settle` and
    /// `wait_for_device_probe()` do. The deferred-probe timeout's timer is not waited for.
    pub fn settle(&self) {
        let mut st = self.lock();
        while st.devs.busy > 0 || st.devs.deferwq {
            st = self
                .shared
                .cv
                .wait_timeout(st, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// For engines: the device and driver of a probe context.
pub(crate) fn probe_ctx_ids(ctx: &ProbeCtx<'_>) -> (DevId, DrvId) {
    (ctx.dev, ctx.drv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Host, Module};

    #[test]
    fn the_buses_of_each_era() {
        let old = Devices::new("linux-5.10".parse().unwrap());
        assert!(old.buses.contains("pci") && !old.buses.contains("auxiliary"));
        let new = Devices::new("linux-5.11".parse().unwrap());
        assert!(new.buses.contains("auxiliary"));
        let h = Host::new("linux-5.10".parse().unwrap());
        let e = h
            .add_device(crate::Device::auxiliary("i915", "gvt", 0))
            .unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENODEV));
        assert_eq!(h.add_bus("pci").unwrap_err().errno(), Some(Errno::EEXIST));
        assert_eq!(h.add_bus("a/b").unwrap_err().errno(), Some(Errno::EINVAL));
    }

    #[test]
    fn an_auxiliary_device_needs_a_three_part_name_and_gets_its_modalias() {
        let h = Host::new("modkit".parse().unwrap());
        let e = h
            .add_device(crate::Device::new("gvt", "auxiliary"))
            .unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EINVAL));
        h.add_device(crate::Device::auxiliary("i915", "gvt", 0).modalias("ignored"))
            .unwrap();
        let st = h.lock();
        let d = st.devs.dm.find_device("i915.gvt.0").unwrap();
        assert_eq!(
            st.devs.dm.devices[d].modalias.as_deref(),
            Some("auxiliary:i915.gvt")
        );
    }

    #[test]
    fn the_driver_steps_follow_the_module_steps_and_patterns_become_aliases() {
        let h = Host::new("modkit".parse().unwrap());
        h.add_module(
            Module::new("m")
                .init_step("own", |_| Ok(crate::Init::Continue))
                .driver(crate::DeviceDriver::new("d", "pci").matches("pci:v1*")),
        )
        .unwrap();
        let st = h.lock();
        let m = st.k.db.id("m").unwrap();
        let spec = st.k.db.spec(m);
        let steps: Vec<&str> = spec.init.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, vec!["own", "driver_register(d)"]);
        assert!(spec.init[1].has_undo);
        assert_eq!(spec.aliases, vec!["pci:v1*".to_string()]);
        assert_eq!(st.k.db.lookup("pci:v1234"), vec![m]);
    }

    #[test]
    fn a_panicking_probe_fails_with_efault_and_the_next_driver_binds() {
        let h = Host::new("modkit".parse().unwrap());
        h.add_module(
            Module::new("m")
                .driver(
                    crate::DeviceDriver::new("bad", "pci")
                        .matches("pci:*")
                        .probe(|_| panic!("boom")),
                )
                .driver(crate::DeviceDriver::new("good", "pci").matches("pci:*")),
        )
        .unwrap();
        h.modprobe("m").unwrap();
        h.add_device(crate::Device::new("0000:00:01.0", "pci").modalias("pci:v1"))
            .unwrap();
        assert_eq!(h.device_state("0000:00:01.0").unwrap(), "bound:good");
        let log = h.log();
        assert!(
            log.iter()
                .any(|l| l == "bad 0000:00:01.0: probe panicked: boom"),
            "{log:?}"
        );
        assert!(
            log.iter()
                .any(|l| l == "bad 0000:00:01.0: probe with driver bad failed with error -14"),
            "{log:?}"
        );
    }
}
