//! The simulator: virtual time, a deterministic scheduler, and actors (events, module
//! init/undo bodies, work items) interpreted so that any of them can park at a wait point
//! without a thread. The event queue is ordered by (virtual time, tie-break, sequence);
//! seed 0 keeps file order for ties, any other seed shuffles them reproducibly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::rc::Rc;

use modkit_core::load::Load;
use modkit_core::modprobe::Modprobe;
use modkit_core::request::Request;
use modkit_core::unload::Unload;
use modkit_core::{
    Body, BodyResult, DiagKind, Errno, Kernel, ModId, Outcome, Policy, Proc, Resume, Step, TaskId,
    Time, WaitInfo, WaitKey,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::actions::{immediate, ActionState};
use crate::scenario::{Action, EventKind, Scenario};

/// Why a run could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The run went on past the step budget (a livelock in the scenario).
    #[error("{file}: the run did not finish within {steps} scheduler steps (virtual time {time} ns); look for actions that wake each other forever")]
    Runaway {
        /// Scenario file.
        file: String,
        /// Steps taken.
        steps: u64,
        /// Virtual time reached.
        time: Time,
    },
    /// The run would have gone past [`MAX_VIRTUAL_TIME`].
    #[error("{file}: the run reached {time} ns of virtual time, past the limit of {limit} ns (about 317 years): shorten the sleeps and timeouts")]
    TimeLimit {
        /// Scenario file.
        file: String,
        /// The instant it would have reached.
        time: Time,
        /// [`MAX_VIRTUAL_TIME`].
        limit: Time,
    },
}

/// The virtual clock stops a run that would go past this instant (about 317 years), so
/// that no deadline computed from it can overflow.
pub const MAX_VIRTUAL_TIME: Time = 10_000_000_000_000_000_000;

/// Where an action list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Init,
    Undo,
    Event,
    Work,
}

#[derive(Debug, Clone)]
struct ActionFrame {
    list: Rc<[Action]>,
    pc: usize,
    kind: ListKind,
    module: Option<ModId>,
    /// The current action is waiting for a nested procedure or a wait.
    busy: bool,
    /// First non-ok outcome (events).
    first_err: Option<Outcome>,
    /// Deadline of the wait in progress.
    deadline: Option<Time>,
}

#[derive(Debug, Clone)]
enum Frame {
    Proc(Proc),
    Actions(ActionFrame),
}

#[derive(Debug)]
struct Task {
    frames: Vec<Frame>,
    label: String,
    event: Option<usize>,
    /// Wait generation: a queue entry or waiter whose token differs is stale.
    token: u64,
    parked_on: Option<WaitKey>,
}

/// The result of one run.
#[derive(Debug)]
pub struct Run {
    /// The kernel at the end.
    pub kernel: Kernel,
    /// Virtual time when the run ended.
    pub end_time: Time,
    /// Results per event id, one per thread, in thread order.
    pub results: BTreeMap<String, Vec<Outcome>>,
    /// Event ids in file order.
    pub event_order: Vec<String>,
    /// Scheduler steps taken.
    pub steps: u64,
}

/// The simulator for one scenario under one policy and seed.
pub struct Sim<'a> {
    sc: &'a Scenario,
    k: Kernel,
    tasks: HashMap<TaskId, Task>,
    next_task: TaskId,
    queue: BinaryHeap<Reverse<QueueEntry>>,
    seq: u64,
    rng: Option<ChaCha8Rng>,
    waiters: HashMap<WaitKey, Vec<(TaskId, u64)>>,
    acts: ActionState,
    results: BTreeMap<String, Vec<Option<Outcome>>>,
    /// Results recorded so far per event (index): slots fill in order.
    filled: Vec<usize>,
    steps_taken: u64,
    max_steps: u64,
}

/// (due time, seeded tie-break, sequence, task, wait token, resume kind).
type QueueEntry = (Time, u64, u64, TaskId, u64, u8);

const R_START: u8 = 0;
const R_WOKEN: u8 = 1;
const R_TIMEOUT: u8 = 2;
const R_EVENT: u8 = 3;

impl<'a> Sim<'a> {
    /// A simulator for `sc` under `policy` with tie-break `seed`.
    pub fn new(sc: &'a Scenario, policy: Policy, seed: u64) -> Self {
        let mut k = Kernel::new(sc.db.clone(), policy);
        k.modprobe_path = sc.modprobe.clone();
        k.modprobe_exec = sc.modprobe_time;
        let mut sim = Sim {
            sc,
            k,
            tasks: HashMap::new(),
            next_task: 1,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: (seed != 0).then(|| ChaCha8Rng::seed_from_u64(seed)),
            waiters: HashMap::new(),
            acts: ActionState::default(),
            results: BTreeMap::new(),
            filled: vec![0; sc.events.len()],
            steps_taken: 0,
            max_steps: 50_000_000,
        };
        for (i, ev) in sc.events.iter().enumerate() {
            sim.results
                .insert(ev.id.clone(), vec![None; ev.threads as usize]);
            sim.push(ev.at, i as TaskId, 0, R_EVENT);
        }
        sim
    }

    /// Keeps the history of state changes (for [`crate::timeline::svg`]).
    pub fn with_history(mut self) -> Self {
        self.k.record_history = true;
        self
    }

    fn push(&mut self, at: Time, task: TaskId, token: u64, kind: u8) {
        let tie = self.rng.as_mut().map(|r| r.next_u64()).unwrap_or(0);
        self.seq += 1;
        self.queue
            .push(Reverse((at, tie, self.seq, task, token, kind)));
    }

    fn spawn_task(&mut self, frames: Vec<Frame>, label: String, event: Option<usize>) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        self.k.waits.set_label(id, label.clone());
        self.tasks.insert(
            id,
            Task {
                frames,
                label,
                event,
                token: 0,
                parked_on: None,
            },
        );
        self.push(self.k.now, id, 0, R_START);
        id
    }

    fn start_event(&mut self, idx: usize) {
        let ev = &self.sc.events[idx];
        if let EventKind::SetModprobe(p) = &ev.kind {
            self.k.modprobe_path = p.clone();
            for r in self.results.get_mut(&ev.id).expect("event").iter_mut() {
                *r = Some(Outcome::Ok);
            }
            return;
        }
        for t in 0..ev.threads {
            let (frame, label) = match &ev.kind {
                EventKind::Modprobe(n) => (
                    Frame::Proc(Proc::Modprobe(Modprobe::new(n, false))),
                    format!("modprobe {n}"),
                ),
                EventKind::Insmod(n) => match self.sc.db.id(n) {
                    Some(id) => (
                        Frame::Proc(Proc::Load(Load::new(id, None))),
                        format!("insmod {n}"),
                    ),
                    // No such module file: ENOENT, as rmmod of an unknown name gives.
                    None => (
                        Frame::Actions(ActionFrame {
                            list: vec![Action::Fail(Errno::ENOENT)].into(),
                            pc: 0,
                            kind: ListKind::Event,
                            module: None,
                            busy: false,
                            first_err: None,
                            deadline: None,
                        }),
                        format!("insmod {n}"),
                    ),
                },
                EventKind::Rmmod {
                    name,
                    force,
                    wait,
                    timeout,
                } => (
                    Frame::Proc(Proc::Unload(Unload::new(name, *force, *wait, *timeout))),
                    format!("rmmod {name}"),
                ),
                EventKind::RequestModule { name, wait } => (
                    Frame::Proc(Proc::Request(Request::new(name, *wait))),
                    format!("request_module({name})"),
                ),
                EventKind::Run(list) => (
                    Frame::Actions(ActionFrame {
                        list: list.clone().into(),
                        pc: 0,
                        kind: ListKind::Event,
                        module: None,
                        busy: false,
                        first_err: None,
                        deadline: None,
                    }),
                    "run".to_string(),
                ),
                EventKind::SetModprobe(_) => unreachable!("handled above"),
            };
            let label = if ev.threads > 1 {
                format!("event {}[{t}]: {label}", ev.id)
            } else {
                format!("event {}: {label}", ev.id)
            };
            self.spawn_task(vec![frame], label, Some(idx));
        }
    }

    /// Runs to the end.
    pub fn run(mut self) -> Result<Run, SimError> {
        while let Some(Reverse((at, _, _, task, token, kind))) = self.queue.pop() {
            self.steps_taken += 1;
            if self.steps_taken > self.max_steps {
                return Err(SimError::Runaway {
                    file: self.sc.file.clone(),
                    steps: self.steps_taken,
                    time: self.k.now,
                });
            }
            debug_assert!(at >= self.k.now);
            if at > MAX_VIRTUAL_TIME {
                return Err(SimError::TimeLimit {
                    file: self.sc.file.clone(),
                    time: at,
                    limit: MAX_VIRTUAL_TIME,
                });
            }
            if kind == R_EVENT {
                self.k.now = at;
                self.start_event(task as usize);
                continue;
            }
            // A stale entry (a task gone, or woken before this deadline) is no event: it
            // must not move the clock, or the run would seem to end at a deadline that
            // never fired.
            let Some(t) = self.tasks.get_mut(&task) else {
                continue;
            };
            if t.token != token {
                continue;
            }
            self.k.now = at;
            t.token += 1;
            let resume = match kind {
                R_START => Resume::Start,
                R_WOKEN => Resume::Woken,
                R_TIMEOUT => Resume::TimedOut,
                _ => unreachable!(),
            };
            if t.parked_on.take().is_some() {
                self.k.waits.end(task);
            }
            self.run_task(task, resume);
        }
        // Anything still parked can never be woken: the run stalled.
        report_stall(&mut self.k);
        let event_order = self.sc.events.iter().map(|e| e.id.clone()).collect();
        let results = self
            .results
            .into_iter()
            .map(|(id, v)| {
                let got: Vec<Outcome> = v.into_iter().flatten().collect();
                (id, got)
            })
            .collect();
        Ok(Run {
            end_time: self.k.now,
            kernel: self.k,
            results,
            event_order,
            steps: self.steps_taken,
        })
    }

    fn deliver_wakes(&mut self) {
        while !self.k.wakes.is_empty() {
            let keys: Vec<WaitKey> = std::mem::take(&mut self.k.wakes);
            for key in keys {
                if let Some(list) = self.waiters.remove(&key) {
                    for (tid, token) in list {
                        if self.tasks.get(&tid).is_some_and(|t| t.token == token) {
                            let now = self.k.now;
                            self.push(now, tid, token, R_WOKEN);
                        }
                    }
                }
            }
        }
    }

    fn park(&mut self, tid: TaskId, info: WaitInfo) {
        let now = self.k.now;
        let t = self.tasks.get_mut(&tid).expect("task");
        let token = t.token;
        t.parked_on = Some(info.key.clone());
        if info.key != WaitKey::Timer {
            self.waiters
                .entry(info.key.clone())
                .or_default()
                .push((tid, token));
        }
        if let Some(d) = info.deadline {
            self.push(d.max(now), tid, token, R_TIMEOUT);
        }
        self.k.waits.begin(tid, info);
    }

    fn holder(&self, tid: TaskId, module: Option<ModId>) -> String {
        match module {
            Some(m) => format!("module {}", self.k.name(m)),
            None => self
                .tasks
                .get(&tid)
                .map(|t| t.label.clone())
                .unwrap_or_default(),
        }
    }

    fn run_task(&mut self, tid: TaskId, mut resume: Resume) {
        loop {
            let Some(task) = self.tasks.get_mut(&tid) else {
                return;
            };
            let Some(top) = task.frames.last_mut() else {
                return;
            };
            match top {
                Frame::Proc(p) => {
                    let step = p.poll(&mut self.k, tid, resume);
                    self.deliver_wakes();
                    match step {
                        Step::Done(o) => {
                            self.tasks.get_mut(&tid).expect("task").frames.pop();
                            match self.finish_frame(tid, FrameEnd::Proc(o)) {
                                Some(r) => resume = r,
                                None => return,
                            }
                        }
                        Step::Wait(info) => {
                            self.park(tid, info);
                            return;
                        }
                        Step::Call(p) => {
                            self.tasks
                                .get_mut(&tid)
                                .expect("task")
                                .frames
                                .push(Frame::Proc(*p));
                            resume = Resume::Start;
                        }
                        Step::Run(body) => {
                            let (m, list, kind) = match body {
                                Body::Init { module, step } => (
                                    module,
                                    self.sc.steps[module][step].run.clone(),
                                    ListKind::Init,
                                ),
                                Body::Undo { module, step } => (
                                    module,
                                    self.sc.steps[module][step].undo.clone().unwrap_or_default(),
                                    ListKind::Undo,
                                ),
                            };
                            self.tasks
                                .get_mut(&tid)
                                .expect("task")
                                .frames
                                .push(Frame::Actions(ActionFrame {
                                    list: list.into(),
                                    pc: 0,
                                    kind,
                                    module: Some(m),
                                    busy: false,
                                    first_err: None,
                                    deadline: None,
                                }));
                            resume = Resume::Start;
                        }
                        Step::Spawn { proc, label } => {
                            let child = self.spawn_task(vec![Frame::Proc(*proc)], label, None);
                            resume = Resume::Spawned(child);
                        }
                    }
                }
                Frame::Actions(_) => match self.step_actions(tid, resume) {
                    ActStep::Push(p) => {
                        self.tasks
                            .get_mut(&tid)
                            .expect("task")
                            .frames
                            .push(Frame::Proc(p));
                        resume = Resume::Start;
                    }
                    ActStep::Parked => return,
                    ActStep::End(end) => {
                        self.tasks.get_mut(&tid).expect("task").frames.pop();
                        match self.finish_frame(tid, end) {
                            Some(r) => resume = r,
                            None => return,
                        }
                    }
                },
            }
        }
    }

    /// A frame ended; returns how to resume its parent, or None when the task is done.
    fn finish_frame(&mut self, tid: TaskId, end: FrameEnd) -> Option<Resume> {
        let task = self.tasks.get(&tid).expect("task");
        if task.frames.is_empty() {
            let o = match end {
                FrameEnd::Proc(o) | FrameEnd::Event(o) => o,
                FrameEnd::Body(BodyResult::Fail(e)) => Outcome::Err(e),
                FrameEnd::Body(_) => Outcome::Ok,
            };
            self.task_done(tid, o);
            return None;
        }
        Some(match end {
            FrameEnd::Proc(o) | FrameEnd::Event(o) => Resume::Child(o),
            FrameEnd::Body(b) => Resume::Body(b),
        })
    }

    fn task_done(&mut self, tid: TaskId, o: Outcome) {
        let task = self.tasks.remove(&tid).expect("task");
        self.k.task_exit(tid, o);
        if let Some(ev) = task.event {
            let e = &self.sc.events[ev];
            let o = match e.kind {
                EventKind::Modprobe(_) | EventKind::Insmod(_)
                    if o == Outcome::Err(Errno::EEXIST) =>
                {
                    Outcome::Ok
                }
                _ => o,
            };
            // The next free slot, without scanning the event's threads (O(1), not
            // O(threads): a storm of 10,000 threads spent half its time here).
            let slots = self.results.get_mut(&e.id).expect("event");
            if let Some(s) = slots.get_mut(self.filled[ev]) {
                *s = Some(o);
                self.filled[ev] += 1;
            }
        }
        self.deliver_wakes();
    }

    fn step_actions(&mut self, tid: TaskId, resume: Resume) -> ActStep {
        let task = self.tasks.get_mut(&tid).expect("task");
        let Some(Frame::Actions(f)) = task.frames.last_mut() else {
            unreachable!()
        };
        let mut f = f.clone();
        let r = self.exec_actions(tid, &mut f, resume);
        if let Some(Frame::Actions(slot)) =
            self.tasks.get_mut(&tid).and_then(|t| t.frames.last_mut())
        {
            *slot = f;
        }
        r
    }

    fn exec_actions(&mut self, tid: TaskId, f: &mut ActionFrame, mut resume: Resume) -> ActStep {
        loop {
            // Result of the action that was in progress.
            if f.busy {
                f.busy = false;
                let o = match resume {
                    Resume::Child(o) => {
                        let Action::RequestModule { required, .. } = &f.list[f.pc] else {
                            unreachable!("only request_module calls procedures")
                        };
                        if !o.is_ok() && !*required {
                            Outcome::Ok
                        } else {
                            o
                        }
                    }
                    Resume::Woken | Resume::TimedOut => match &f.list[f.pc] {
                        Action::Sleep(_) => Outcome::Ok,
                        Action::WaitFor { name, timeout } => {
                            if self.acts.completions.contains(name) {
                                Outcome::Ok
                            } else if resume == Resume::TimedOut {
                                let msg = format!(
                                    "{} gave up waiting for completion {name} after {}",
                                    self.holder(tid, f.module),
                                    crate::duration::format_duration(timeout.unwrap_or(0))
                                );
                                self.k
                                    .diagnose(DiagKind::Timeout, f.module, msg, Vec::new(), None);
                                Outcome::Err(Errno::ETIME)
                            } else {
                                let d = f.deadline;
                                return self.wait_completion(tid, f, name.clone(), d);
                            }
                        }
                        other => unreachable!("{other:?} does not wait"),
                    },
                    other => unreachable!("action resumed with {other:?}"),
                };
                if let Some(end) = self.after_action(f, o) {
                    return ActStep::End(end);
                }
                resume = Resume::Start;
                continue;
            }
            if f.pc >= f.list.len() {
                return ActStep::End(match f.kind {
                    ListKind::Init | ListKind::Undo => FrameEnd::Body(BodyResult::Ok),
                    ListKind::Event | ListKind::Work => {
                        FrameEnd::Event(f.first_err.unwrap_or(Outcome::Ok))
                    }
                });
            }
            let action = f.list[f.pc].clone();
            let holder = self.holder(tid, f.module);
            if let Some(o) = immediate(&mut self.k, &mut self.acts, f.module, &holder, &action) {
                self.deliver_wakes();
                if let Some(end) = self.after_action(f, o) {
                    return ActStep::End(end);
                }
                resume = Resume::Start;
                continue;
            }
            let o: Outcome = match action {
                Action::Sleep(d) => {
                    f.busy = true;
                    let deadline = self.k.now.saturating_add(d);
                    self.park(
                        tid,
                        WaitInfo {
                            key: WaitKey::Timer,
                            reason: format!("sleep {}", crate::duration::format_duration(d)),
                            target: None,
                            deadline: Some(deadline),
                        },
                    );
                    return ActStep::Parked;
                }
                Action::Fail(e) => Outcome::Err(e),
                Action::Stop => return ActStep::End(FrameEnd::Body(BodyResult::Stop)),
                Action::RequestModule { name, wait, .. } => {
                    f.busy = true;
                    return ActStep::Push(Proc::Request(Request::new(&name, wait)));
                }
                Action::Spawn(list) => {
                    let label = format!("work item of {}", self.holder(tid, f.module));
                    let frame = Frame::Actions(ActionFrame {
                        list: list.into(),
                        pc: 0,
                        kind: ListKind::Work,
                        module: f.module,
                        busy: false,
                        first_err: None,
                        deadline: None,
                    });
                    self.spawn_task(vec![frame], label, None);
                    Outcome::Ok
                }
                Action::WaitFor { name, timeout } => {
                    if self.acts.completions.contains(&name) {
                        Outcome::Ok
                    } else {
                        let deadline = timeout.map(|t| self.k.now.saturating_add(t));
                        return self.wait_completion(tid, f, name, deadline);
                    }
                }
                _ => unreachable!("immediate actions are handled above"),
            };
            self.deliver_wakes();
            if let Some(end) = self.after_action(f, o) {
                return ActStep::End(end);
            }
            resume = Resume::Start;
        }
    }

    fn wait_completion(
        &mut self,
        tid: TaskId,
        f: &mut ActionFrame,
        name: String,
        deadline: Option<Time>,
    ) -> ActStep {
        f.busy = true;
        f.deadline = deadline;
        self.park(
            tid,
            WaitInfo {
                key: WaitKey::Completion(name.clone()),
                reason: format!("wait_for_completion({name})"),
                target: None,
                deadline,
            },
        );
        ActStep::Parked
    }

    /// Applies an action's outcome; returns the frame's end when it stops here.
    fn after_action(&mut self, f: &mut ActionFrame, o: Outcome) -> Option<FrameEnd> {
        f.pc += 1;
        if o.is_ok() {
            return None;
        }
        match f.kind {
            ListKind::Init | ListKind::Undo => {
                let e = o.errno().unwrap_or(Errno::ENOENT);
                Some(FrameEnd::Body(BodyResult::Fail(e)))
            }
            ListKind::Event | ListKind::Work => {
                f.first_err.get_or_insert(o);
                Some(FrameEnd::Event(o))
            }
        }
    }
}

/// Raises the `stalled` diagnostic listing every wait still in the wait-for graph, if any.
/// Both drivers call it when nothing is left that could wake anyone.
pub fn report_stall(k: &mut Kernel) {
    let stalled: Vec<(TaskId, WaitInfo)> = k.waits.all().map(|(t, w)| (t, w.clone())).collect();
    if stalled.is_empty() {
        return;
    }
    let chain = stalled
        .iter()
        .map(|(t, w)| {
            let on = w
                .target
                .map(|x| format!(" (on {})", k.waits.label(x)))
                .unwrap_or_default();
            format!("{} waits: {}{on}", k.waits.label(*t), w.reason)
        })
        .collect();
    let msg = format!(
        "the run stalled: {} task(s) wait and nothing can wake them",
        stalled.len()
    );
    let hint = "under modkit such a wait fails at once with the cycle named; see the dependency chain above";
    k.diagnose(DiagKind::Stalled, None, msg, chain, Some(hint.into()));
}

enum FrameEnd {
    Proc(Outcome),
    Event(Outcome),
    Body(BodyResult),
}

enum ActStep {
    Parked,
    End(FrameEnd),
    Push(Proc),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_clock_is_bounded() {
        let mut text = String::from("[[event]]\nrun = [");
        for _ in 0..20 {
            text.push_str("{ sleep = \"1000000000s\" },");
        }
        text.push_str("]\n");
        let sc = crate::parse("t.toml", &text).unwrap();
        let e = Sim::new(&sc, Policy::Modkit, 0).run().unwrap_err();
        assert!(matches!(e, SimError::TimeLimit { .. }), "{e}");
        assert!(e.to_string().contains("about 317 years"), "{e}");
    }
}
