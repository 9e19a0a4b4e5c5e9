//! The host's engine for drivers: what a program that runs its own actors on the host
//! needs beyond the module API (tasks, procedures, waits on the virtual clock, the core's
//! state under the host's lock). The scenario-on-threads driver (`modkit-hostdriver`,
//! `modkit check --driver host`) is built on it; programs that only load modules do not
//! need this module.

use std::sync::Arc;

use modkit_core::{Kernel, ModId, Outcome, Proc, Resume, TaskId, Time, WaitKey};

pub use crate::device::DeviceCode;
use crate::host::{Clock, HostHandle, State};
pub use crate::host::{ModuleCode, ThreadSlot};
use crate::signal::Target;
use crate::InitCtx;
pub use modkit_core::device::{DevId, DeviceModel, DrvId};

/// A thread started by [`Driver::spawn_thread`] (std's, or shuttle's under `shuttle`).
pub type ThreadHandle = crate::sync::thread::JoinHandle<()>;

/// What [`Driver::wait_on_unless`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unless {
    /// The condition held: no wait.
    Done,
    /// The task waited: how it was resumed (`None`: the run stalled).
    Waited(Option<Resume>),
}

/// A handle on a host's engine. Cloning gives another handle to the same host.
#[derive(Clone, Debug)]
pub struct Driver {
    host: HostHandle,
}

impl Driver {
    /// A host around kernel state `k` on `clock` (scenario runs use [`Clock::Virtual`]).
    pub fn new(k: Kernel, clock: Clock) -> Driver {
        Driver {
            host: HostHandle::from_kernel(k, clock),
        }
    }

    /// The engine of an existing host.
    pub fn of(host: &HostHandle) -> Driver {
        Driver { host: host.clone() }
    }

    /// The host, for the module API.
    pub fn host(&self) -> &HostHandle {
        &self.host
    }

    /// Sets the code the host runs for module `m`'s init steps and undos.
    pub fn set_code(&self, m: ModId, code: Arc<dyn ModuleCode>) {
        let mut st = self.host.lock();
        if st.code.len() <= m {
            st.code.resize(m + 1, None);
        }
        st.code[m] = Some(code);
    }

    /// Virtual clock: the run stops (as stalled, with [`Driver::stopped`] saying so) rather
    /// than let the clock pass `t`.
    pub fn set_horizon(&self, t: Option<Time>) {
        self.host.lock().horizon = t;
    }

    /// Runs `f` on the core's state and the driver's own state `E` (created with
    /// `E::default()` on first use) under the host's lock, with the clock made current;
    /// the wakeups `f` causes are delivered before the lock is released.
    pub fn engine<E: std::any::Any + Send + Default, R>(
        &self,
        f: impl FnOnce(&mut Kernel, &mut E) -> R,
    ) -> R {
        let h = &self.host;
        let mut st = h.lock();
        h.tick(&mut st);
        let State { k, ext, .. } = &mut *st;
        let mut e: Box<E> = ext
            .take()
            .and_then(|b| b.downcast::<E>().ok())
            .unwrap_or_default();
        let r = f(k, &mut e);
        *ext = Some(e);
        h.deliver(&mut st);
        r
    }

    /// Registers a new task (an actor about to run on the calling thread or one about to
    /// start); it counts as running until [`Driver::finish_task`].
    pub fn new_task(&self, label: &str) -> TaskId {
        let mut st = self.host.lock();
        self.host.new_task(&mut st, label)
    }

    /// Ends a task with its outcome (`None`: it stalled). Returns the exit as others see
    /// it ([`Outcome::Killed`] for a task sent SIGKILL).
    pub fn finish_task(&self, task: TaskId, o: Option<Outcome>) -> Option<Outcome> {
        let mut st = self.host.lock();
        self.host.finish_task(&mut st, task, o)
    }

    /// Runs a procedure to its end on the calling thread as `task`. `None`: the run
    /// stalled.
    pub fn drive(&self, task: TaskId, proc: Proc) -> Option<Outcome> {
        self.host.drive(task, proc)
    }

    /// Parks `task` on `key` until it is woken or `deadline` passes; `killable`: SIGKILL
    /// ends the wait. `None`: the run stalled.
    pub fn wait_on(
        &self,
        task: TaskId,
        key: WaitKey,
        reason: String,
        deadline: Option<Time>,
        killable: bool,
    ) -> Option<Resume> {
        self.host.wait_on(task, key, reason, deadline, killable)
    }

    /// Adds (`true`) or removes a runnable token: a driver holds one while it starts its
    /// threads so that the virtual clock cannot move before all of them are counted.
    pub fn hold(&self, on: bool) {
        self.host.hold(on)
    }

    /// Waits until no task runs and nothing is parked (or the run stalled).
    pub fn wait_idle(&self) {
        self.host.wait_idle()
    }

    /// The virtual clock.
    pub fn vclock(&self) -> Time {
        self.host.vclock()
    }

    /// How the run ended: `(stalled, horizon_hit)`.
    pub fn stopped(&self) -> (bool, bool) {
        let st = self.host.lock();
        (st.stalled, st.horizon_hit)
    }

    /// Whether a thread could not be started because [`crate::thread_limit`] threads were
    /// live (the run is then incomplete).
    pub fn thread_limit_hit(&self) -> bool {
        self.host.lock().thread_limit_hit
    }

    /// Reserves one of the host's [`crate::thread_limit`] OS threads for a thread about to
    /// start (move the slot into it; dropping it gives the thread back). `None` at the
    /// limit, which is recorded ([`Driver::thread_limit_hit`]).
    pub fn reserve_thread(&self) -> Option<ThreadSlot> {
        let mut st = self.host.lock();
        self.host.reserve_thread(&mut st)
    }

    /// Starts an OS thread for the host's actors: the standard library's, or shuttle's under
    /// the `shuttle` feature so that the model checks see it.
    pub fn spawn_thread(
        &self,
        name: Option<String>,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<ThreadHandle> {
        let mut b = crate::sync::thread::Builder::new();
        if let Some(n) = name {
            b = b.name(n);
        }
        b.spawn(f)
    }

    /// As [`Driver::wait_on`], but [`Unless::Done`] at once when `done` holds for the
    /// driver's state `E` (see [`Driver::engine`]): the check and the wait are one step
    /// under the lock, so a wake between them cannot be lost.
    pub fn wait_on_unless<E: std::any::Any + Send>(
        &self,
        task: TaskId,
        key: WaitKey,
        reason: String,
        deadline: Option<Time>,
        killable: bool,
        done: impl Fn(&E) -> bool,
    ) -> Unless {
        let r = self
            .host
            .wait_on_unless(task, key, reason, deadline, killable, |st: &State| {
                st.ext
                    .as_ref()
                    .and_then(|b| b.downcast_ref::<E>())
                    .is_some_and(&done)
            });
        match r {
            Err(()) => Unless::Done,
            Ok(r) => Unless::Waited(r),
        }
    }

    /// Takes the core's state out of the host (leaving an empty one).
    pub fn take_kernel(&self) -> Kernel {
        self.host.take_kernel()
    }

    /// `task`, the thread of event `id`, has started its work: kill events naming `id`
    /// reach it.
    pub fn add_killable_event(&self, task: TaskId, id: &str) {
        self.host.lock().killable_tasks.add_event(task, id);
    }

    /// SIGKILL to the running threads of event `id`: ok, or ESRCH when there is none.
    pub fn kill_event(&self, id: &str) -> Outcome {
        self.host.kill(Target::Event(id))
    }

    /// SIGKILL to the modprobes request_module started for `name`: ok, or ESRCH.
    pub fn kill_modprobe(&self, name: &str) -> Outcome {
        self.host.kill(Target::Modprobe(name))
    }
}

/// The device model, for engines that run device scenarios on the host: drivers declared
/// with their code, device operations as a given task, the core's model under the lock.
impl Driver {
    /// Declares a driver of module `m` whose probe and remove are `driver`'s code (for an
    /// engine, [`crate::DeviceDriver::code`] with its own [`DeviceCode`]). Its patterns
    /// are not added to the module's aliases (the engine's module specs carry them).
    /// EINVAL for a name taken, an unknown bus or an invalid pattern.
    pub fn add_device_driver(
        &self,
        m: ModId,
        driver: crate::DeviceDriver,
    ) -> Result<DrvId, crate::Error> {
        let mut st = self.host.lock();
        let name = st.k.name(m).to_string();
        self.host
            .check_drivers(&st, &name, std::slice::from_ref(&driver))?;
        Ok(self.host.declare_drivers(&mut st, m, vec![driver])[0])
    }

    /// `driver_register()` as `task` (a builtin module's driver at boot, or a
    /// `register = "driver:NAME"` action): probes the matching devices on this thread.
    pub fn driver_register(&self, task: TaskId, drv: DrvId) -> Result<(), crate::Error> {
        self.known_driver(drv)?;
        self.host.driver_register_as(task, drv)
    }

    fn known_driver(&self, drv: DrvId) -> Result<(), crate::Error> {
        if drv < self.host.lock().devs.dm.drivers.len() {
            return Ok(());
        }
        Err(crate::Error {
            op: format!("driver_register: no driver {drv}"),
            outcome: Outcome::Err(modkit_core::Errno::EINVAL),
            diagnostics: Vec::new(),
        })
    }

    /// `driver_unregister()` as `task`: unbinds every device of the driver, then it leaves
    /// the bus.
    pub fn driver_unregister(&self, task: TaskId, drv: DrvId) {
        if self.known_driver(drv).is_ok() {
            self.host.driver_unregister_as(task, drv)
        }
    }

    /// [`HostHandle::add_device`] as `task`.
    pub fn add_device(&self, task: TaskId, device: crate::Device) -> Result<(), crate::Error> {
        self.host.add_device_as(Some(task), device)
    }

    /// [`HostHandle::remove_device`] as `task`.
    pub fn remove_device(&self, task: TaskId, name: &str) -> Result<(), crate::Error> {
        self.host.remove_device_as(Some(task), name)
    }

    /// [`HostHandle::bind`] as `task`.
    pub fn bind(&self, task: TaskId, device: &str, driver: &str) -> Result<(), crate::Error> {
        self.host.bind_as(Some(task), device, driver)
    }

    /// Each device's state changes `(virtual time, device, state word, driver)` from
    /// `absent` on, as the simulator's `Run::device_history` (recorded on the virtual
    /// clock when the kernel records history; crate::history).
    pub fn device_history(&self) -> Vec<(Time, String, &'static str, Option<String>)> {
        let mut st = self.host.lock();
        let now = self.host.now(&st);
        crate::history::note(&mut st, now);
        crate::history::rows(&st)
    }

    /// At the end of a run, before [`Driver::take_kernel`]: modkit's abandoned remove
    /// callbacks still parked leave the wait-for graph (detached, not a hang).
    pub fn forget_abandoned(&self) {
        self.host.forget_abandoned()
    }

    /// After the run: abandoned remove callbacks still parked are let go, so that their
    /// threads end.
    pub fn release_abandoned(&self) {
        self.host.release_abandoned()
    }

    /// [`HostHandle::unbind`] as `task`.
    pub fn unbind(&self, task: TaskId, device: &str) -> Result<(), crate::Error> {
        self.host.unbind_as(Some(task), device)
    }

    /// Runs `f` on the core's state and the device model under the host's lock.
    pub fn device_model<R>(&self, f: impl FnOnce(&mut Kernel, &mut DeviceModel) -> R) -> R {
        let mut st = self.host.lock();
        self.host.tick(&mut st);
        let State { k, devs, .. } = &mut *st;
        let r = f(k, &mut devs.dm);
        self.host.deliver(&mut st);
        r
    }

    /// Runs `f` each time a device becomes present (any path: an engine's add, a probe's
    /// `add_device`), after it is present and before it is offered to the drivers, on the
    /// adding thread and outside the lock: where an engine sends the device's uevent and
    /// makes its firmware links.
    pub fn on_device_added(&self, f: impl Fn(&Driver, DevId) + Send + Sync + 'static) {
        self.host.lock().devs.added = Some(Arc::new(move |h: &HostHandle, d| f(&Driver::of(h), d)));
    }

    /// Replaces the library's answer to "which modules provide `key`" for modkit's probe
    /// wait (by default the keys modules declared with [`crate::Module::provides`], then
    /// for `device:NAME` the modules whose drivers match that device): `f` gets the device
    /// model and the key and returns the providers in the order the wait looks at them
    /// (the first in flight whose wait closes no cycle is waited for).
    pub fn set_need_providers(
        &self,
        f: impl Fn(&DeviceModel, &str) -> Vec<ModId> + Send + Sync + 'static,
    ) {
        self.host.lock().devs.waits.providers = Some(Arc::new(f));
    }

    /// Announces the modules `task` will load next, in order, beyond the procedure it
    /// drives now (a udev worker's list of `modprobe`s): under `modkit` a probe needing
    /// what one of them provides waits for it. Call it again as the list shrinks; an
    /// empty list (or the task's end) clears it.
    pub fn plan_loads(&self, task: TaskId, modules: Vec<ModId>) {
        let mut st = self.host.lock();
        crate::probewait::plan(&mut st, task, modules);
    }

    /// Runs `f` when a bus match that defers leaves a device on the pending list without
    /// a probe (6.0+ and `modkit`; [`crate::Device::match_defer`]), on the thread that
    /// tried it and outside the lock: where an engine reports a match that can never
    /// succeed.
    pub fn on_match_deferred(&self, f: impl Fn(&Driver, DevId) + Send + Sync + 'static) {
        self.host.lock().devs.waits.match_hook =
            Some(Arc::new(move |h: &HostHandle, d| f(&Driver::of(h), d)));
    }

    /// Whether a driver whose module is GOING still probes, as the kernel does between
    /// `delete_module()`'s GOING and the exit's `driver_unregister()` (off by default:
    /// the host library keeps modkit's rule). An engine running a `linux-X.Y` policy turns
    /// it on with `modkit_core::going::probes_while_going(policy)`.
    pub fn set_probe_while_going(&self, on: bool) {
        self.host.lock().devs.probe_while_going = on;
    }

    /// Starts the deferred-probe timeout's worker now (it otherwise starts with the first
    /// driver registration), as the kernel queues the timeout work at boot.
    pub fn start_deferred_probe_timer(&self) {
        self.host.start_timer();
    }

    /// Sets the deferred-probe timeout in the host clock's nanoseconds (virtual time under
    /// [`Clock::Virtual`]): `None` none, `Some(0)` expired from the start, else counted from
    /// now. The timer thread starts with the first driver registration.
    pub fn set_deferred_probe_timeout_ns(&self, ns: Option<Time>) {
        let mut st = self.host.lock();
        let now = self.host.now(&st);
        st.devs.dm.timeout = ns;
        st.devs.dm.timeout_due = ns.filter(|&t| t > 0).map(|t| now.saturating_add(t));
    }
}

/// The device and the driver whose probe or remove runs in `ctx`.
pub fn probe_ctx_ids(ctx: &crate::ProbeCtx<'_>) -> (DevId, DrvId) {
    crate::probe::probe_ctx_ids(ctx)
}

/// The task running the code `ctx` belongs to.
pub fn ctx_task(ctx: &InitCtx<'_>) -> TaskId {
    ctx.task()
}

/// The module whose code runs in `ctx`.
pub fn ctx_module(ctx: &InitCtx<'_>) -> ModId {
    ctx.module()
}
