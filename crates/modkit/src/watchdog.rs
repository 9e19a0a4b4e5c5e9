//! A way out of waits the kernel never times out, for programs on real threads.
//!
//! The kernel waits without a limit for a load in flight, for a module going away, for a
//! request's modprobe; so does the host, and a program whose module misbehaves (an init
//! that never returns, a reference never dropped) can hang in `modprobe`. Two opt-in
//! remedies, both only with the real clock ([`crate::Clock::Real`]; scenario runs on the
//! virtual clock report stalls by themselves):
//!
//! - **Deadlines**: [`HostHandle::modprobe_with`], [`HostHandle::insmod_with`],
//!   [`HostHandle::request_module_with`], and a host-wide default for every operation
//!   ([`HostHandle::set_default_deadline`]). When the deadline passes, the operation's waits end
//!   as a fatal signal ends them (the kernel's killable waits: modkit_core::signal) and it
//!   returns [`Errno::ETIME`] with a `timeout` diagnostic naming the wait-for chain it was
//!   stuck in. Module code already running is never interrupted (an init step runs to its
//!   end); nor is a wait the kernel does not let a signal end (a failed load waiting for
//!   the references taken on its module): the operation returns once that wait ends.
//! - **Watchdog** ([`HostHandle::start_watchdog`]): a thread that looks at the host every
//!   `stall_after / 4` and reports each wait without a deadline of its own that has lasted
//!   `stall_after`: a `tracing` warning (target `modkit::watchdog`) and a `stalled`
//!   diagnostic with the chain; a host operation stuck so (its own task waits, killably)
//!   is ended as by its deadline, and returns ETIME with that diagnostic. The thread holds
//!   only a [`crate::WeakHost`] and ends with the host.

use std::collections::BTreeMap;
use std::time::Duration;

use modkit_core::{DiagKind, Errno, Outcome, TaskId, Time, WaitInfo};

use crate::error::Error;
use crate::host::{Clock, HostHandle, State, WaitStatus};

/// Deadlines of host operations and what ended them.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    /// HostHandle operations in flight (their task), with their deadline (host clock, ns).
    ops: BTreeMap<TaskId, Option<Time>>,
    /// Operations whose wait was ended, with the diagnostic kind and the chain.
    expired: BTreeMap<TaskId, (DiagKind, Vec<String>)>,
    /// Applies to operations without a deadline of their own.
    pub(crate) default_deadline: Option<Duration>,
}

impl Guard {
    /// The deadline of host operation `task`, if any.
    pub(crate) fn deadline_of(&self, task: TaskId) -> Option<Time> {
        self.ops.get(&task).copied().flatten()
    }
}

impl HostHandle {
    /// Sets a deadline for every operation of this host that has none of its own (`None`:
    /// no limit, the default). See [`HostHandle::modprobe_with`] for what a deadline does.
    pub fn set_default_deadline(&self, deadline: Option<Duration>) {
        self.lock().guard.default_deadline = deadline;
    }

    /// `modprobe` that gives up waiting after `deadline` with ETIME and the wait-for chain
    /// it was stuck in (a `timeout` diagnostic). Only waits end: module code that runs is
    /// not interrupted, and a load this call has started goes on without it.
    pub fn modprobe_with(&self, name: &str, deadline: Duration) -> Result<(), Error> {
        self.modprobe_within(name, Some(deadline))
    }

    /// `insmod` with a deadline, as [`HostHandle::modprobe_with`].
    pub fn insmod_with(&self, name: &str, deadline: Duration) -> Result<(), Error> {
        self.insmod_within(name, Some(deadline))
    }

    /// `request_module` with a deadline, as [`HostHandle::modprobe_with`]; the modprobe it
    /// started goes on.
    pub fn request_module_with(&self, name: &str, deadline: Duration) -> Result<(), Error> {
        self.request_module_within(name, Some(deadline))
    }

    /// Starts the watchdog (see the module documentation of `modkit::watchdog` in the
    /// crate docs): waits without a deadline that last `stall_after` are reported (a
    /// `tracing` warning and a `stalled` diagnostic with the chain), and host operations
    /// stuck in one return ETIME. Does nothing on the virtual clock. Calling it again
    /// starts another watchdog.
    pub fn start_watchdog(&self, stall_after: Duration) {
        if self.shared.clock != Clock::Real {
            return;
        }
        let weak = self.downgrade();
        let period = (stall_after / 4).max(Duration::from_millis(1));
        let spawned = crate::sync::thread::Builder::new()
            .name("modkit-watchdog".into())
            .spawn(move || loop {
                crate::sync::thread::sleep(period);
                let Some(host) = weak.upgrade() else { return };
                if !host.watchdog_tick(stall_after) {
                    return;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(target: "modkit::watchdog", error = %e, "the watchdog thread could not start");
        }
    }

    /// One look at the host: reports stalled waits and ends stalled operations. False
    /// once the host is shut down.
    fn watchdog_tick(&self, stall_after: Duration) -> bool {
        let mut st = self.lock();
        if st.shut_down {
            return false;
        }
        let now = self.now(&st);
        let limit = stall_after.as_nanos() as Time;
        let stuck: Vec<TaskId> = st
            .parked
            .iter()
            .filter(|(_, p)| {
                p.status == WaitStatus::Waiting
                    && p.unbounded
                    && !p.reported
                    && now.saturating_sub(p.since) >= limit
            })
            .map(|(t, _)| *t)
            .collect();
        let mut woke = false;
        for task in stuck {
            let chain = chain_of(&st, task);
            let label = st.k.waits.label(task);
            tracing::warn!(
                target: "modkit::watchdog",
                task = %label,
                chain = %chain.join(" → "),
                "a wait has lasted {stall_after:?}"
            );
            st.k.now = st.k.now.max(now);
            let msg = format!(
                "watchdog: {label} has waited {stall_after:?} for something nothing has delivered"
            );
            let is_op = st.guard.ops.contains_key(&task);
            let hint = if is_op {
                "the watchdog ended this operation's wait (ETIME): release what the chain names, or find why it never comes"
            } else {
                "release what the chain names, or find why it never comes; a host operation waiting on it returns ETIME"
            };
            st.k.diagnose(
                DiagKind::Stalled,
                None,
                msg,
                chain.clone(),
                Some(hint.into()),
            );
            let State {
                parked,
                runnable,
                guard,
                k,
                ..
            } = &mut *st;
            let Some(p) = parked.get_mut(&task) else {
                continue;
            };
            p.reported = true;
            if is_op && p.killable {
                guard.expired.insert(task, (DiagKind::Stalled, chain));
                k.send_sigkill(task);
                p.status = WaitStatus::Killed;
                *runnable += 1;
                woke = true;
            }
        }
        drop(st);
        if woke {
            self.notify();
        }
        true
    }

    /// The operation `task` passed its deadline while parked in `info`'s wait: record the
    /// chain and send it SIGKILL (its killable waits end; the caller resumes it).
    pub(crate) fn expire(&self, st: &mut State, task: TaskId, info: &WaitInfo) {
        let mut chain = vec![format!("{}: {}", st.k.waits.label(task), info.reason)];
        if let Some(t) = info.target {
            chain.extend(chain_from(st, t));
        }
        st.guard.expired.insert(task, (DiagKind::Timeout, chain));
        st.k.send_sigkill(task);
    }

    /// Registers host operation `task` with its deadline (explicit, else the default).
    pub(crate) fn begin_op(&self, st: &mut State, task: TaskId, deadline: Option<Duration>) {
        let d = deadline.or(st.guard.default_deadline);
        let at = match (self.shared.clock, d) {
            (Clock::Real, Some(d)) => Some(self.now(st).saturating_add(d.as_nanos() as Time)),
            _ => None,
        };
        st.guard.ops.insert(task, at);
    }

    /// Ends host operation `task`: if a deadline or the watchdog ended one of its waits,
    /// its outcome becomes ETIME and a diagnostic names the chain.
    pub(crate) fn end_op(&self, task: TaskId, op: &str, o: Outcome) -> Outcome {
        let mut st = self.lock();
        st.guard.ops.remove(&task);
        let Some((kind, chain)) = st.guard.expired.remove(&task) else {
            return o;
        };
        if kind == DiagKind::Timeout {
            self.tick(&mut st);
            let msg = format!(
                "{op} gave up at its deadline, waiting: {}",
                chain.join(" → ")
            );
            let hint = "the wait has no end of its own: release what the chain names, or give the operation a longer deadline".to_string();
            st.k.diagnose(DiagKind::Timeout, None, msg, chain, Some(hint));
        }
        Outcome::Err(Errno::ETIME)
    }
}

/// The chain of waits from `task`: each task's label and what it waits for, following
/// the tasks waited on, until one that does not wait or a repeat.
fn chain_of(st: &State, task: TaskId) -> Vec<String> {
    chain_from(st, task)
}

fn chain_from(st: &State, start: TaskId) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut cur = Some(start);
    while let Some(t) = cur {
        if !seen.insert(t) || out.len() >= 32 {
            break;
        }
        match st.k.waits.get(t) {
            Some(w) => {
                out.push(format!("{}: {}", st.k.waits.label(t), w.reason));
                cur = w.target;
            }
            None => {
                out.push(format!("{} (running)", st.k.waits.label(t)));
                cur = None;
            }
        }
    }
    out
}
