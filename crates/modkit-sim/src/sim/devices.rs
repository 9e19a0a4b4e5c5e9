//! The simulator's side of the device model: the attach/detach loops of the driver core
//! (`driver_attach()`, `__device_attach()`, `driver_detach()`, `device_del()`) as a frame
//! that runs probe and remove bodies one after another on the task that caused them (as
//! the kernel runs them synchronously in `driver_register()` and `device_add()`), the
//! deferred-probe work (`deferwq`), the deferred-probe timeout work, and udevd.
//!
//! udevd (systemd-udevd with its kmod builtin, `80-drivers.rules`: `ENV{MODALIAS}=="?*",
//! RUN{builtin}+="kmod load"`): every device added with a modalias queues one event; at
//! most `workers` events run at once (`children_max`), each one `modprobe -b MODALIAS`; a
//! worker still running after `event_timeout` is killed (`udev_event_execute_rules()`
//! timeout, "Worker [PID] processing SEQNUM=N killed"). Not modelled: udevd's ordering of
//! events of one device path (a child waits for its parent's event), its warning at a
//! third of the timeout, and blacklist handling (`-b`).

use std::collections::VecDeque;

use modkit_core::device::{DevId, DevState, DrvId, ProbeEnd};
use modkit_core::modprobe::Modprobe;
use modkit_core::{BodyResult, Errno, Outcome, Proc, Resume, TaskId, Time, WaitInfo, WaitKey};

use super::{ActStep, ActionFrame, Frame, FrameEnd, ListKind, Sim};
use crate::devices::{DeviceAction, DeviceEvent};
use crate::scenario::Action;

/// One thing the driver core does for a device or driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    /// `device_add()`: present, uevent, then attach.
    Add(DevId),
    /// `__device_attach()`: try the matching drivers in order.
    Attach(DevId),
    /// `driver_probe_device(drv, dev)` alone (`driver_attach()`, sysfs bind).
    Probe(DevId, DrvId),
    /// `device_release_driver()`: consumers first, remove, devres.
    Release(DevId),
    /// `device_del()`: release, then gone.
    Delete(DevId),
    /// The device leaves (after its release).
    Gone(DevId),
    /// The driver leaves its bus (after `driver_detach()`).
    Unregister(DrvId),
    /// The deferred-probe timeout work: wait until due, then retry and report.
    Timeout,
    /// udevd watching a worker: kill it at the deadline.
    Watch(TaskId, Time),
    /// `__driver_attach_async_helper()` / `__device_attach_async_helper()`: an async
    /// worker probes the device with the drivers that allow async probing.
    AttachAsync(DevId),
    /// `async_synchronize_full()` after a module went LIVE (`do_init_module()`), which
    /// keeps its initial reference until the wait ends.
    AsyncSync(modkit_core::ModId),
    /// A udev worker's kmod builtin loads one module the modalias matched
    /// (`kmod_module_probe_insert_module()`, as `modprobe NAME`), whatever the others gave.
    Load(modkit_core::ModId),
    /// modkit: a probe's need waits for the load of a module that provides it
    /// (sim/probewait.rs).
    NeedWait(DevId),
    /// A user of managed resource `.0` of device `.1` in flight until `.2`
    /// (sim/unbind.rs).
    Use(u64, DevId, Time),
}

#[derive(Debug, Clone)]
pub(super) enum Cur {
    Probing {
        dev: DevId,
        drv: DrvId,
        rest: Vec<DrvId>,
        /// The probe was asked for by sysfs bind (its result is the event's).
        bind: bool,
    },
    Removing(DevId),
    Waiting(Job),
    Loading,
    /// modkit: the remove callback of `.0` runs on task `.1`, waited for until `.2`
    /// (sim/unbind.rs).
    RemoveWait(DevId, TaskId, Time),
}

/// The driver core working on this task.
#[derive(Debug, Clone)]
pub(super) struct Bind {
    pub(super) jobs: VecDeque<Job>,
    pub(super) cur: Option<Cur>,
    /// The deferred work: when the jobs run out, take the next device of the active list.
    deferwq: bool,
    /// The timeout work: report the devices still pending at the end.
    report: bool,
    /// The timeout work took its preemption point before the report.
    report_yielded: bool,
    /// The preemption point before the next `Job::Probe` or `Job::Attach` was taken.
    probe_yielded: bool,
    pub(super) result: Outcome,
}

impl Bind {
    pub(super) fn new(jobs: impl IntoIterator<Item = Job>) -> Self {
        Bind {
            jobs: jobs.into_iter().collect(),
            cur: None,
            deferwq: false,
            report: false,
            report_yielded: false,
            probe_yielded: false,
            result: Outcome::Ok,
        }
    }
}

/// Device state of a run beyond the core's model.
#[derive(Debug, Default)]
pub(super) struct DevRun {
    /// The deferred work's task, while it runs.
    deferwq: Option<TaskId>,
    /// udev events not yet handed to a worker.
    udev_queue: VecDeque<(DevId, String, u64)>,
    /// udev workers running, with the device and the event's sequence number.
    udev_workers: Vec<(TaskId, DevId, u64)>,
    /// uevent sequence numbers.
    seqnum: u64,
    /// What the scenario can ever provide to a `need` (modkit's deferred_forever check):
    /// registrations some code makes, and `device:NAME` of devices some driver can bind.
    pub(super) providers: Option<std::collections::BTreeSet<String>>,
    /// (device, key) pairs already reported.
    pub(super) reported: std::collections::BTreeSet<(DevId, String)>,
    /// fw_devlink's links (the `[[device]]`s' `suppliers`).
    fwdl: modkit_core::devlink::FwDevlink,
    /// Async probe workers running (`async_schedule_dev()`).
    async_tasks: std::collections::BTreeSet<TaskId>,
    /// Modules whose init scheduled async probes (`PF_USED_ASYNC` of the loading task).
    used_async: std::collections::BTreeSet<modkit_core::ModId>,
    /// modkit: probes waiting for a module's load, with their need (sim/probewait.rs).
    pub(super) need_waits: std::collections::BTreeMap<DevId, super::probewait::NeedArgs>,
    /// The modules that provide each key asked for (sim/probewait.rs), computed once.
    pub(super) providers_of: std::collections::BTreeMap<String, Vec<modkit_core::ModId>>,
    /// Users in flight of managed resources, revoked devices (sim/unbind.rs).
    pub(super) users: modkit_core::revocable::Users,
    /// modkit: when the drain of each device's users gives up.
    pub(super) drain_due: std::collections::BTreeMap<DevId, Time>,
    /// modkit: remove callbacks abandoned at their bound, with the module reference each
    /// holds until it returns (sim/unbind.rs).
    pub(super) abandoned: std::collections::BTreeMap<TaskId, u64>,
    /// Devices whose deletion has begun (`device_del()`'s `kill_device()`: `dev->p->dead`),
    /// until they are gone: no driver_attach() reaches them (sim/going.rs).
    pub(super) deleting: std::collections::BTreeSet<DevId>,
}

impl DevRun {
    /// The deferred work's task, while it runs.
    pub(super) fn deferwq_task(&self) -> Option<TaskId> {
        self.deferwq
    }
}

impl Sim<'_> {
    /// At the start of a run: builtin drivers register, boot devices are added (with their
    /// coldplug uevents), the timeout work is queued.
    pub(super) fn devices_boot(&mut self) {
        if !self.sc.devices.used {
            return;
        }
        self.devs.fwdl = fw_devlink(self.sc, &self.dm);
        let boot: Vec<DevId> = self
            .sc
            .devices
            .devices
            .iter()
            .filter(|d| d.boot)
            .map(|d| self.dm.find_device(&d.name).expect("declared"))
            .collect();
        let builtin: Vec<DrvId> = (0..self.dm.drivers.len())
            .filter(|&d| self.k.db.spec(self.dm.drivers[d].module).builtin)
            .collect();
        let mut jobs = Vec::new();
        for d in builtin {
            // Builtin drivers register during initcalls, before userspace.
            let _ = self.dm.register_driver(&mut self.k, d);
        }
        for d in boot {
            jobs.push(Job::Add(d));
        }
        if !jobs.is_empty() {
            self.spawn_task(
                vec![Frame::Bind(Box::new(Bind::new(jobs)))],
                "boot: device_add".into(),
                None,
                None,
            );
        }
        // The timeout work only matters to drivers; a file without any keeps its own end.
        if self.dm.timeout_due.is_some() && !self.dm.drivers.is_empty() {
            let mut b = Bind::new([Job::Timeout]);
            b.report = true;
            self.spawn_task(
                vec![Frame::Bind(Box::new(b))],
                "kworker: deferred_probe_timeout_work_func".into(),
                None,
                None,
            );
        }
    }

    /// The frame of a device event.
    pub(super) fn device_event(&mut self, ev: &DeviceEvent) -> Frame {
        let dev = |name: &str| self.dm.find_device(name);
        let (jobs, err) = match ev {
            DeviceEvent::Add(n) => match dev(n) {
                Some(d) => (vec![Job::Add(d)], None),
                None => (vec![], Some(Errno::ENODEV)),
            },
            DeviceEvent::Remove(n) => match dev(n) {
                Some(d) if self.dm.present(d) => (vec![Job::Delete(d)], None),
                _ => (vec![], Some(Errno::ENODEV)),
            },
            DeviceEvent::Bind { device, driver } => {
                match (dev(device), self.dm.find_driver(driver)) {
                    (Some(d), Some(r))
                        if self.dm.present(d)
                            && self.dm.on_bus(r)
                            // bind_store(): a deferring match is non-zero, a match.
                            && self.dm.bus_match(&self.k, r, d)
                                != modkit_core::device::BusMatch::No =>
                    {
                        if self.dm.devices[d].state == DevState::Unbound {
                            (vec![Job::Probe(d, r)], None)
                        } else {
                            (vec![], Some(Errno::EBUSY))
                        }
                    }
                    _ => (vec![], Some(Errno::ENODEV)),
                }
            }
            DeviceEvent::Unbind(n) => match dev(n) {
                Some(d) if matches!(self.dm.devices[d].state, DevState::Bound(_)) => {
                    (vec![Job::Release(d)], None)
                }
                _ => (vec![], Some(Errno::ENODEV)),
            },
        };
        let mut b = Bind::new(jobs);
        if let Some(e) = err {
            b.result = Outcome::Err(e);
        }
        if matches!(ev, DeviceEvent::Bind { .. }) && err.is_none() {
            // bind_store(): the write fails unless the device ends up bound.
            b.result = Outcome::Err(Errno::ENODEV);
        }
        Frame::Bind(Box::new(b))
    }

    /// An action of module code that the device model handles, or `None`.
    pub(super) fn device_action(
        &mut self,
        tid: TaskId,
        f: &ActionFrame,
        a: &Action,
    ) -> Option<DevStep> {
        match a {
            Action::Register(key) if self.sc.devices.used && key.starts_with("driver:") => {
                let name = &key["driver:".len()..];
                let Some(drv) = self.dm.find_driver(name) else {
                    return Some(DevStep::Done(Outcome::Err(Errno::EINVAL)));
                };
                // Devices another task probes or removes are in the list (sim/going.rs);
                // one being deleted is off the bus's list already (bus_remove_device()).
                let listed = self.dm.register_driver(&mut self.k, drv).map(|mut devs| {
                    devs.retain(|d| !self.devs.deleting.contains(d));
                    devs
                });
                Some(match listed {
                    Err(e) => DevStep::Done(Outcome::Err(e)),
                    Ok(devs) if self.sc.devices.drivers[drv].async_probe => {
                        // __driver_attach(): one async helper per device, then return.
                        let m = self.dm.drivers[drv].module;
                        if !devs.is_empty()
                            && matches!(self.k.state(m), Some(modkit_core::ModState::Coming))
                        {
                            self.devs.used_async.insert(m);
                        }
                        for d in devs {
                            self.spawn_async(Job::Probe(d, drv));
                        }
                        DevStep::Push(Bind::new([]))
                    }
                    Ok(devs) => {
                        DevStep::Push(Bind::new(devs.into_iter().map(|d| Job::Probe(d, drv))))
                    }
                })
            }
            Action::Unregister(key) if self.sc.devices.used && key.starts_with("driver:") => {
                let name = &key["driver:".len()..];
                let Some(drv) = self.dm.find_driver(name) else {
                    return Some(DevStep::Done(Outcome::Err(Errno::EINVAL)));
                };
                let mut jobs: Vec<Job> = self
                    .dm
                    .bound_to(drv)
                    .into_iter()
                    .map(Job::Release)
                    .collect();
                // driver_detach(): a device whose probe or remove by this driver runs on
                // another task is waited for (device_lock()), then released if bound.
                jobs.extend(
                    self.dm
                        .added
                        .iter()
                        .copied()
                        .filter(|&d| {
                            matches!(self.dm.devices[d].state,
                                DevState::Probing(x) | DevState::Removing(x) if x == drv)
                        })
                        .map(Job::Release),
                );
                jobs.push(Job::Unregister(drv));
                self.dm.begin_unregister(drv);
                Some(DevStep::Push(Bind::new(jobs)))
            }
            Action::Device(d) => Some(self.device_action_of(tid, f, d)),
            _ => None,
        }
    }

    fn device_action_of(&mut self, tid: TaskId, f: &ActionFrame, d: &DeviceAction) -> DevStep {
        let probing = matches!(f.kind, ListKind::Probe).then_some(f.step);
        match d {
            DeviceAction::Add {
                name,
                bus,
                modalias,
            } => {
                if bus == modkit_core::auxiliary::BUS
                    && !modkit_core::auxiliary::bus_exists(self.k.policy)
                {
                    let line = format!(
                        "auxiliary_device_add({name}): there is no auxiliary bus before 5.11"
                    );
                    self.k.remark(f.module, line);
                    return DevStep::Done(Outcome::Err(Errno::ENODEV));
                }
                let dev = self.dm.declare(name, bus, modalias.clone());
                if self.dm.present(dev) {
                    return DevStep::Done(Outcome::Err(Errno::EEXIST));
                }
                DevStep::Push(Bind::new([Job::Add(dev)]))
            }
            DeviceAction::Remove(name) => match self.dm.find_device(name) {
                Some(dev) if self.dm.present(dev) => DevStep::Push(Bind::new([Job::Delete(dev)])),
                _ => DevStep::Done(Outcome::Err(Errno::ENODEV)),
            },
            DeviceAction::Need {
                key,
                optional,
                reason,
            } => match probing {
                Some(dev) => {
                    if let Some(s) = self.need_wait_begin(tid, dev, key, *optional, reason) {
                        return s;
                    }
                    DevStep::Done(
                        self.dm
                            .need(&mut self.k, dev, key, *optional, reason.as_deref())
                            .into(),
                    )
                }
                None => DevStep::Done(Outcome::Err(Errno::EINVAL)),
            },
            DeviceAction::Devm(name) => match probing {
                Some(dev) => DevStep::Done(self.dm.devm(&mut self.k, dev, name).into()),
                None => DevStep::Done(Outcome::Err(Errno::EINVAL)),
            },
            DeviceAction::UseDevres { name, dur } => self.use_devres_begin(name, *dur),
        }
    }

    /// Queues the deferred work if it is not running (`queue_work(deferred_wq, …)`).
    pub(super) fn kick_deferwq(&mut self) {
        if self.dm.active.is_empty() {
            return;
        }
        if let Some(t) = self.devs.deferwq {
            if self.tasks.contains_key(&t) {
                return;
            }
        }
        let mut b = Bind::new([]);
        b.deferwq = true;
        let t = self.spawn_task(
            vec![Frame::Bind(Box::new(b))],
            "kworker: deferred_probe_work_func".into(),
            None,
            None,
        );
        self.devs.deferwq = Some(t);
    }

    /// A uevent for an added device: udevd queues it when it has a modalias.
    fn uevent_add(&mut self, dev: DevId) {
        self.devs.seqnum += 1;
        let Some(udev) = self.sc.devices.udev else {
            return;
        };
        let Some(m) = self.dm.devices[dev].modalias.clone() else {
            return;
        };
        // The event keeps its own sequence number (udevd's `event->seqnum`).
        let seq = self.devs.seqnum;
        self.devs.udev_queue.push_back((dev, m, seq));
        self.udev_dispatch(udev.workers as usize);
    }

    fn udev_dispatch(&mut self, workers: usize) {
        let Some(udev) = self.sc.devices.udev else {
            return;
        };
        while self.devs.udev_workers.len() < workers {
            let Some((dev, m, seq)) = self.devs.udev_queue.pop_front() else {
                return;
            };
            let name = self.dm.devices[dev].name.clone();
            // systemd's module_load_and_warn(): every module the alias matches is loaded,
            // each with its dependencies, going on after a failure (kmod's modprobe tool
            // stops at the first).
            let loads: Vec<Job> = self.k.db.lookup(&m).into_iter().map(Job::Load).collect();
            let w = self.spawn_task(
                vec![Frame::Bind(Box::new(Bind::new(loads)))],
                format!("udev worker ({name}): kmod load {m}"),
                None,
                None,
            );
            self.devs.udev_workers.push((w, dev, seq));
            let deadline = self.k.now.saturating_add(udev.event_timeout);
            self.spawn_task(
                vec![Frame::Bind(Box::new(Bind::new([Job::Watch(w, deadline)])))],
                format!("udevd: watching worker for {name}"),
                None,
                None,
            );
        }
    }

    /// A preemption point of device work (see `Sim::preempt`): when preemptible and `done`
    /// is not yet set, sets it and queues the task again at this instant (the caller
    /// returns [`ActStep::Yielded`]).
    fn preempt_at(&mut self, tid: TaskId, done: &mut bool) -> bool {
        if !self.preempt || *done {
            return false;
        }
        *done = true;
        let token = self.tasks.get(&tid).expect("task").token;
        self.push(self.k.now, tid, token, super::R_YIELD);
        true
    }

    /// Schedules an async probe worker (`async_schedule_dev()`).
    fn spawn_async(&mut self, job: Job) {
        let dev = match job {
            Job::Probe(d, _) | Job::AttachAsync(d) => d,
            _ => unreachable!("only probes run async"),
        };
        let name = self.dm.devices[dev].name.clone();
        let t = self.spawn_task(
            vec![Frame::Bind(Box::new(Bind::new([job])))],
            format!("async: probe {name}"),
            None,
            None,
        );
        self.devs.async_tasks.insert(t);
    }

    /// `do_init_module()`: whether the load of `m`, which just made it LIVE, must wait in
    /// `async_synchronize_full()`; if so, the frame that waits and then returns `o`.
    pub(super) fn async_sync_frame(&mut self, m: modkit_core::ModId, o: Outcome) -> Option<Frame> {
        let scheduled = self.devs.used_async.remove(&m);
        if self.devs.async_tasks.is_empty()
            || !modkit_core::asyncprobe::load_waits(self.k.policy, scheduled)
        {
            return None;
        }
        // The initial reference is dropped only after the wait (`module_put(mod)` follows
        // async_synchronize_full()); the core's load dropped it at LIVE: take it back.
        if let Some(i) = self.k.instances[m].as_mut() {
            i.refcount += 1;
        }
        let mut b = Bind::new([Job::AsyncSync(m)]);
        b.result = o;
        Some(Frame::Bind(Box::new(b)))
    }

    /// A task ended: a udev worker frees its slot.
    pub(super) fn devices_task_done(&mut self, tid: TaskId) {
        // modkit: a load that ended before COMING (a modprobe that failed) ends a probe's
        // wait for it too (sim/probewait.rs).
        self.probe_waits_wake();
        self.abandoned_done(tid);
        if self.devs.async_tasks.remove(&tid) && self.devs.async_tasks.is_empty() {
            self.k.wakes.push(async_done());
            self.deliver_wakes();
        }
        if let Some(i) = self.devs.udev_workers.iter().position(|w| w.0 == tid) {
            self.devs.udev_workers.remove(i);
            if let Some(u) = self.sc.devices.udev {
                self.udev_dispatch(u.workers as usize);
            }
        }
    }

    fn start_probe(
        &mut self,
        b: &mut Bind,
        dev: DevId,
        mut cands: Vec<DrvId>,
        bind: bool,
    ) -> Option<ActStep> {
        // bus_for_each_drv() walks the bus's live list: a driver unregistered while an
        // earlier one probed (and failed) is not tried.
        // A driver whose module is GOING probes under linux-X.Y only (sim/going.rs).
        cands.retain(|&d| self.dm.on_bus(d) && self.module_may_probe(d));
        if cands.is_empty() {
            return None;
        }
        let drv = cands.remove(0);
        if !self.dm.probe_begin(&mut self.k, dev, drv) {
            return None;
        }
        let decl = &self.sc.devices.drivers[drv];
        // fw_devlink: device_links_check_suppliers() runs before the driver's probe; a
        // supplier that holds it back makes the probe defer without running it.
        let list = match self.devs.fwdl.blocker(self.k.policy, &self.dm, dev) {
            Some(blk) => vec![Action::Device(DeviceAction::Need {
                key: blk.key,
                optional: false,
                reason: blk.reason,
            })],
            None => crate::devices::probe_behind_links(
                self.devs.fwdl.enforced(self.k.policy, &self.dm, dev),
                &decl.probe,
            ),
        };
        b.cur = Some(Cur::Probing {
            dev,
            drv,
            rest: cands,
            bind,
        });
        Some(ActStep::PushFrame(Frame::Actions(ActionFrame {
            list: list.into(),
            pc: 0,
            kind: ListKind::Probe,
            module: Some(decl.spec.module),
            busy: false,
            first_err: None,
            deadline: None,
            step: dev,
            yielded: false,
        })))
    }

    /// Advances the driver core frame on top of `tid`.
    pub(super) fn step_bind(&mut self, tid: TaskId, mut resume: Resume) -> ActStep {
        let Some(Frame::Bind(b)) = self.tasks.get_mut(&tid).and_then(|t| t.frames.last_mut())
        else {
            unreachable!("a bind frame is on top")
        };
        let mut b = (**b).clone();
        let r = self.run_bind(tid, &mut b, &mut resume);
        if let Some(Frame::Bind(slot)) = self.tasks.get_mut(&tid).and_then(|t| t.frames.last_mut())
        {
            **slot = b;
        }
        r
    }

    fn run_bind(&mut self, tid: TaskId, b: &mut Bind, resume: &mut Resume) -> ActStep {
        loop {
            if let Some(cur) = b.cur.take() {
                match cur {
                    Cur::Probing {
                        dev,
                        drv,
                        rest,
                        bind,
                    } => {
                        let Resume::Body(r) = *resume else {
                            unreachable!("a probe body returns")
                        };
                        let res = match r {
                            BodyResult::Fail(e) => Err(e),
                            _ => Ok(()),
                        };
                        let end = self.dm.probe_end(&mut self.k, dev, drv, res);
                        self.k.wakes.push(device_lock(dev));
                        if bind {
                            b.result = match res {
                                Ok(()) => Outcome::Ok,
                                Err(e) => Outcome::Err(e),
                            };
                        }
                        if matches!(end, ProbeEnd::Deferred { .. }) && self.k.policy.is_modkit() {
                            self.check_deferred_forever(dev, drv);
                        }
                        match end {
                            ProbeEnd::Bound { trigger } | ProbeEnd::Deferred { trigger } => {
                                if trigger {
                                    self.kick_deferwq();
                                }
                            }
                            ProbeEnd::Failed => {
                                if let Some(s) = self.start_probe(b, dev, rest, bind) {
                                    *resume = Resume::Start;
                                    return s;
                                }
                            }
                        }
                    }
                    Cur::Removing(dev) => {
                        self.note_release_in_use(dev);
                        self.dm.remove_end(&mut self.k, dev);
                        self.k.wakes.push(device_lock(dev));
                    }
                    Cur::RemoveWait(dev, child, due) => {
                        if let Some(s) = self.remove_wait_end(tid, b, dev, child, due, *resume) {
                            return s;
                        }
                    }
                    Cur::Waiting(Job::Use(res, dev, _)) => self.use_devres_end(res, dev),
                    Cur::Waiting(Job::Timeout) => {
                        let now = self.k.now;
                        if !self.dm.timeout_fire(now) {
                            b.jobs.push_front(Job::Timeout);
                        } else {
                            b.deferwq = true;
                        }
                    }
                    Cur::Waiting(Job::Watch(w, _)) => {
                        if *resume == Resume::TimedOut && self.tasks.contains_key(&w) {
                            self.udev_kill(w);
                        }
                    }
                    Cur::Waiting(_) => {}
                    Cur::Loading => {
                        if self.k.fatal_signal_pending(tid) {
                            // Killed by udevd: the worker process is gone.
                            b.jobs.clear();
                        }
                    }
                }
                *resume = Resume::Start;
                self.deliver_wakes();
                continue;
            }
            let Some(job) = b.jobs.pop_front() else {
                if b.deferwq {
                    if let Some(d) = self.dm.active.pop_front() {
                        b.jobs.push_back(Job::Attach(d));
                        continue;
                    }
                }
                if b.report {
                    // deferred_probe_timeout_work_func(): the list walk takes
                    // deferred_probe_mutex after flush_work(), and the host its lock: an
                    // async probe the retry scheduled may defer (or bind) first.
                    if self.preempt_at(tid, &mut b.report_yielded) {
                        return ActStep::Yielded;
                    }
                    self.dm.timeout_report(&mut self.k);
                }
                if b.deferwq && self.devs.deferwq == Some(tid) {
                    self.devs.deferwq = None;
                }
                return ActStep::End(FrameEnd::Proc(b.result));
            };
            // driver_attach() goes from one device to the next (bus_for_each_dev()), and
            // the host's driver core takes its lock for each: another task may lock the
            // next device first (an async probe just scheduled, the deferred-probe work).
            // Likewise between device_add() making a device present (bus_add_device())
            // and its own attach (bus_probe_device()): a driver registered meanwhile probes
            // it from its driver_attach(), and the attach tries it again.
            if matches!(job, Job::Probe(..) | Job::Attach(..)) {
                if self.preempt_at(tid, &mut b.probe_yielded) {
                    b.jobs.push_front(job);
                    return ActStep::Yielded;
                }
                b.probe_yielded = false;
            }
            match job {
                Job::Add(dev) => {
                    if self.dm.add_device(dev).is_err() {
                        b.result = Outcome::Err(Errno::EEXIST);
                        continue;
                    }
                    self.devs.fwdl.device_added(&mut self.k, &self.dm, dev);
                    self.uevent_add(dev);
                    b.jobs.push_front(Job::Attach(dev));
                }
                Job::Attach(dev) => {
                    if self.dm.devices[dev].state != DevState::Unbound {
                        continue;
                    }
                    // The bus's match defers (sim/matchdefer.rs).
                    if let Some(cands) = self.attach_match_defer(dev) {
                        if let Some(s) = self.start_probe(b, dev, cands, false) {
                            return s;
                        }
                        continue;
                    }
                    // __device_attach(): the drivers that do not allow async probing now;
                    // the async ones from a worker if none of those is there.
                    let (cands, asyncs): (Vec<DrvId>, Vec<DrvId>) = self
                        .dm
                        .drivers_for(dev)
                        .into_iter()
                        .partition(|&d| !self.sc.devices.drivers[d].async_probe);
                    if cands.is_empty() && !asyncs.is_empty() {
                        self.spawn_async(Job::AttachAsync(dev));
                        continue;
                    }
                    if let Some(s) = self.start_probe(b, dev, cands, false) {
                        return s;
                    }
                }
                Job::AttachAsync(dev) => {
                    if self.dm.devices[dev].state != DevState::Unbound {
                        continue;
                    }
                    let cands: Vec<DrvId> = self
                        .dm
                        .drivers_for(dev)
                        .into_iter()
                        .filter(|&d| self.sc.devices.drivers[d].async_probe)
                        .collect();
                    if let Some(s) = self.start_probe(b, dev, cands, false) {
                        return s;
                    }
                }
                Job::AsyncSync(m) => {
                    if self.devs.async_tasks.is_empty() {
                        if let Some(i) = self.k.instances[m].as_mut() {
                            i.refcount = i.refcount.saturating_sub(1);
                        }
                        self.k.wake_module_wq();
                        continue;
                    }
                    b.jobs.push_front(job);
                    b.cur = Some(Cur::Waiting(job));
                    self.park(
                        tid,
                        WaitInfo {
                            key: async_done(),
                            reason: "async_synchronize_full".into(),
                            target: None,
                            deadline: None,
                        },
                        false,
                    );
                    return ActStep::Parked;
                }
                Job::Probe(dev, drv) => {
                    if !self.dm.on_bus(drv) {
                        continue;
                    }
                    // __driver_attach(): __device_driver_lock() waits for a probe or remove
                    // of the device running on another task (sim/going.rs).
                    if self.attach_waits_for_lock(tid, dev) {
                        b.jobs.push_front(job);
                        b.cur = Some(Cur::Waiting(job));
                        return ActStep::Parked;
                    }
                    // __driver_probe_device(): a device being deleted is dead (-ENODEV).
                    if self.devs.deleting.contains(&dev) {
                        continue;
                    }
                    let bind = b.result == Outcome::Err(Errno::ENODEV);
                    match self.dm.bus_match(&self.k, drv, dev) {
                        modkit_core::device::BusMatch::No => continue,
                        modkit_core::device::BusMatch::Yes => {}
                        // bind_store(): a deferring match is non-zero, a match.
                        modkit_core::device::BusMatch::Defer if bind => {}
                        modkit_core::device::BusMatch::Defer => {
                            if !self.driver_attach_match_defer(dev) {
                                continue;
                            }
                        }
                    }
                    if let Some(s) = self.start_probe(b, dev, vec![drv], bind) {
                        return s;
                    }
                }
                Job::Release(dev) => {
                    if matches!(
                        self.dm.devices[dev].state,
                        DevState::Probing(_) | DevState::Removing(_)
                    ) {
                        // device_release_driver() takes the device lock, which the probe
                        // (or remove) running on another task holds: wait for it.
                        b.jobs.push_front(Job::Release(dev));
                        b.cur = Some(Cur::Waiting(Job::Release(dev)));
                        self.park_on_device_lock(tid, dev);
                        return ActStep::Parked;
                    }
                    let consumers = self.dm.consumers_of(dev);
                    if !consumers.is_empty() {
                        b.jobs.push_front(Job::Release(dev));
                        for c in consumers.into_iter().rev() {
                            b.jobs.push_front(Job::Release(c));
                        }
                        continue;
                    }
                    // modkit: revoke, drain the users, bound the remove (sim/unbind.rs).
                    if modkit_core::revocable::revokes_before_remove(self.k.policy) {
                        if let Some(s) = self.unbind_bounded(tid, b, dev) {
                            return s;
                        }
                        continue;
                    }
                    if let Some(drv) = self.dm.remove_begin(&mut self.k, dev) {
                        let decl = &self.sc.devices.drivers[drv];
                        b.cur = Some(Cur::Removing(dev));
                        return ActStep::PushFrame(remove_frame(decl, dev));
                    }
                }
                Job::Delete(dev) => {
                    self.devs.deleting.insert(dev);
                    b.jobs.push_front(Job::Gone(dev));
                    b.jobs.push_front(Job::Release(dev));
                }
                Job::Gone(dev) => {
                    self.devs.deleting.remove(&dev);
                    if self.dm.present(dev) {
                        self.dm.del_device(&mut self.k, dev);
                    }
                }
                Job::Unregister(drv) => self.dm.unregister_driver(drv),
                Job::Load(m) => {
                    b.cur = Some(Cur::Loading);
                    let name = self.k.name(m).to_string();
                    return ActStep::PushFrame(Frame::Proc(Proc::Modprobe(Modprobe::new(
                        &name, true,
                    ))));
                }
                Job::Timeout => {
                    let Some(due) = self.dm.timeout_due else {
                        continue;
                    };
                    b.cur = Some(Cur::Waiting(Job::Timeout));
                    self.park(
                        tid,
                        WaitInfo {
                            key: WaitKey::Timer,
                            reason: "deferred_probe_timeout".into(),
                            target: None,
                            deadline: Some(due),
                        },
                        false,
                    );
                    return ActStep::Parked;
                }
                Job::NeedWait(dev) => match self.need_wait_step(tid, dev) {
                    Some(o) => b.result = o,
                    None => {
                        b.jobs.push_front(job);
                        b.cur = Some(Cur::Waiting(job));
                        return ActStep::Parked;
                    }
                },
                Job::Use(_, _, due) => {
                    b.cur = Some(Cur::Waiting(job));
                    self.park(
                        tid,
                        WaitInfo {
                            key: WaitKey::Timer,
                            reason: "use of a managed resource (ioctl in flight)".into(),
                            target: None,
                            deadline: Some(due),
                        },
                        false,
                    );
                    return ActStep::Parked;
                }
                Job::Watch(w, deadline) => {
                    if !self.tasks.contains_key(&w) {
                        continue;
                    }
                    b.cur = Some(Cur::Waiting(job));
                    self.park(
                        tid,
                        WaitInfo {
                            key: WaitKey::Task(w),
                            reason: "udevd event_timeout".into(),
                            target: None,
                            deadline: Some(deadline),
                        },
                        false,
                    );
                    return ActStep::Parked;
                }
            }
        }
    }

    /// udevd kills a worker past `event_timeout` (udevd.c, on_event_timeout():
    /// "Worker [PID] processing SEQNUM=N killed" with `event->seqnum`, the killed event's
    /// own number, not the latest one; the PID is the model's task id).
    fn udev_kill(&mut self, w: TaskId) {
        let Some(&(_, dev, seq)) = self.devs.udev_workers.iter().find(|x| x.0 == w) else {
            return;
        };
        let name = self.dm.devices[dev].name.clone();
        self.k.printk(format!(
            "systemd-udevd: {name}: Worker [{w}] processing SEQNUM={seq} killed"
        ));
        self.k.send_sigkill(w);
        let t = self.tasks.get(&w).expect("task");
        if t.parked_on.is_some() && t.killable {
            let token = t.token;
            self.push(self.k.now, w, token, super::R_KILLED);
        }
    }
}

impl Sim<'_> {
    /// modkit: a deferral on a supplier nothing in the scenario can provide is reported at
    /// once, with the chain, instead of waiting on the pending list for ever.
    fn check_deferred_forever(&mut self, dev: DevId, drv: DrvId) {
        let Some(key) = self.dm.devices[dev].defer_key.clone() else {
            return;
        };
        if self.devs.providers.is_none() {
            self.devs.providers = Some(providers(self.sc, &self.dm));
        }
        let known = self.devs.providers.as_ref().expect("computed");
        if known.contains(&key) || !self.devs.reported.insert((dev, key.clone())) {
            return;
        }
        let d = self.dm.devices[dev].name.clone();
        let r = self.dm.drivers[drv].name.clone();
        let m = self.dm.drivers[drv].module;
        let what = if key.starts_with("device:") {
            "no driver of the scenario can bind that device"
        } else {
            "no code of the scenario registers it"
        };
        self.k.diagnose(
            modkit_core::DiagKind::DeferredForever,
            Some(m),
            format!("{d} defers on {key}, which nothing provides ({what}): it would stay on the pending list for ever"),
            vec![d.clone(), format!("probe by {r} needs {key}"), what.to_string()],
            Some(format!(
                "add the module that provides {key}, or make {r}'s probe go on without it"
            )),
        );
    }
}

/// Every `kind:name` some action of the scenario registers (`register`, `devm`), and
/// `device:NAME` for each device (declared or added by an action) that a driver matches.
pub fn providers(
    sc: &crate::scenario::Scenario,
    dm: &modkit_core::device::DeviceModel,
) -> std::collections::BTreeSet<String> {
    let all = sc.all_actions();
    let mut out = std::collections::BTreeSet::new();
    for a in &all {
        match a {
            Action::Register(k) | Action::Device(DeviceAction::Devm(k)) => {
                out.insert(k.clone());
            }
            Action::Device(DeviceAction::Add {
                name,
                bus,
                modalias,
            }) if dm.any_driver_matches(bus, modalias.as_deref()) => {
                out.insert(format!("device:{name}"));
            }
            _ => {}
        }
    }
    for d in &sc.devices.devices {
        if dm.any_driver_matches(&d.bus, d.modalias.as_deref()) {
            out.insert(format!("device:{}", d.name));
        }
    }
    out
}

/// fw_devlink's links from the `[[device]]`s' `suppliers` (names checked at parse time).
pub fn fw_devlink(
    sc: &crate::scenario::Scenario,
    dm: &modkit_core::device::DeviceModel,
) -> modkit_core::devlink::FwDevlink {
    let mut links = Vec::new();
    let mut fwnodes = Vec::new();
    for d in &sc.devices.devices {
        let Some(c) = dm.find_device(&d.name) else {
            continue;
        };
        if let Some(f) = &d.fwnode {
            fwnodes.push((c, f.clone()));
        }
        for s in &d.suppliers {
            if let Some(s) = dm.find_device(s) {
                links.push((c, s));
            }
        }
    }
    modkit_core::devlink::FwDevlink::new(links, fwnodes)
}

/// The wait key of `async_synchronize_full()`: every async probe worker has ended.
fn async_done() -> WaitKey {
    WaitKey::Completion("async_synchronize_full".into())
}

/// The wait key of a device's lock (`device_lock()`), released when a probe or remove ends.
/// The frame that runs `decl`'s remove body for `dev`.
pub(super) fn remove_frame(decl: &crate::devices::DriverDecl, dev: DevId) -> Frame {
    Frame::Actions(ActionFrame {
        list: decl.remove.clone().into(),
        pc: 0,
        kind: ListKind::Remove,
        module: Some(decl.spec.module),
        busy: false,
        first_err: None,
        deadline: None,
        step: dev,
        yielded: false,
    })
}

pub(super) fn device_lock(dev: DevId) -> WaitKey {
    WaitKey::Completion(format!("device_lock({dev})"))
}

impl Sim<'_> {
    /// Parks `tid` on `dev`'s device lock (`device_lock()`), which a probe or remove running
    /// on another task holds; woken when that ends.
    pub(super) fn park_on_device_lock(&mut self, tid: TaskId, dev: DevId) {
        let name = self.dm.devices[dev].name.clone();
        self.park(
            tid,
            WaitInfo {
                key: device_lock(dev),
                reason: format!("device_lock({name})"),
                target: None,
                deadline: None,
            },
            false,
        );
        // modkit: a probe waiting for a load that now waits for this task stops waiting.
        self.need_wait_break(tid, dev);
    }
}

/// What a device action asks of the action interpreter.
pub(super) enum DevStep {
    /// Done at once with this outcome.
    Done(Outcome),
    /// Run the driver core on this task; its result is the action's.
    Push(Bind),
}
