//! modkit's probe that waits for a loading module instead of polling (issue 10, item 3).
//!
//! Under `linux-X.Y` a probe that returns -EPROBE_DEFER joins the pending list and is
//! retried only when some other probe binds (`driver_deferred_probe_trigger()`) or when the
//! deferred-probe timeout fires ([`crate::dd`]): a supplier module whose init is still
//! running when the consumer probes leaves the consumer waiting for an unrelated bind, or
//! for the timeout (10 s from 5.19), or for ever before 5.7.
//!
//! Under `modkit`, a probe's `need` on something (`kind:name`, `device:NAME`) that a module
//! in flight provides — its init is running (COMING), or a load of it is under way (a
//! `modprobe`, a udev worker's kmod builtin, an `insmod` not yet at COMING; not a udev event
//! still queued, whose worker slot may only free when this probe ends) — waits for that
//! module's load to end (its init
//! returned, or the load failed), then asks again at once: the probe goes on if the thing is
//! there, else it defers as under Linux (and `deferred_forever` applies).
//!
//! A wait that would close a cycle is not made: the probe runs on the task that runs the
//! provider's own init (the module registers its driver, whose probe needs what a later
//! init step registers), or the task running the provider's load already waits, directly
//! or through others, for this task. Then the probe defers as under Linux, and modkit
//! retries the pending devices whose need has become available each time a module goes
//! LIVE (its init returned), so the device binds as soon as that init ends instead of at the
//! next unrelated bind or the timeout. Both are logged (modkit's own lines, `remark`).
//!
//! A cycle that forms after a wait began breaks it ([`breaks_wait`]): when a task starts
//! waiting for the device lock held by a probe that waits for a load, and that load waits,
//! directly or through others, for this task (e.g. a failing init's undo unregisters the
//! probing driver), the probe stops waiting and defers ([`broken_line`]).

use crate::policy::Policy;

/// Whether a probe's unmet need waits for a module in flight (modkit only).
pub fn waits_for_loading_module(policy: Policy) -> bool {
    policy.is_modkit()
}

/// Whether the pending devices whose need became available are retried when a module goes
/// LIVE (modkit only; the kernel waits for a bind or the timeout).
pub fn retries_on_live(policy: Policy) -> bool {
    policy.is_modkit()
}

/// What a probe's unmet need leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedWait {
    /// Wait for the provider's load to end.
    Wait,
    /// Defer as the kernel does (no provider in flight, or Linux).
    Defer,
    /// Defer: waiting would close a cycle (the provider's init runs on this task or waits
    /// for it); retried when the provider goes live.
    DeferCycle,
}

/// Decides what an unmet need does: `provider_in_flight` when a module that provides it is
/// loading, `cycle` when waiting for it would wait for oneself.
pub fn decide(policy: Policy, provider_in_flight: bool, cycle: bool) -> NeedWait {
    if !waits_for_loading_module(policy) || !provider_in_flight {
        NeedWait::Defer
    } else if cycle {
        NeedWait::DeferCycle
    } else {
        NeedWait::Wait
    }
}

/// modkit's line when a probe starts waiting.
pub fn wait_line(dev: &str, drv: &str, module: &str, key: &str) -> String {
    format!("{dev}: probe by {drv} waits for module {module}'s load to end (it provides {key}) instead of deferring")
}

/// modkit's line when a wait would close a cycle.
pub fn cycle_line(dev: &str, drv: &str, module: &str, key: &str) -> String {
    format!("{dev}: probe by {drv} does not wait for module {module} (which provides {key}): its load cannot end before this probe does; deferred, retried when {module} is live")
}

/// Whether a probe already waiting for a module's load stops waiting because a task now
/// waits for it (here: for its device lock) while the load it waits for waits, directly or
/// through others, for that task (`closes_cycle`): a cycle formed after the wait began. The
/// probe defers, as a wait that would close a cycle at its start does (modkit only).
pub fn breaks_wait(policy: Policy, closes_cycle: bool) -> bool {
    waits_for_loading_module(policy) && closes_cycle
}

/// modkit's line when a probe's wait is broken ([`breaks_wait`]).
pub fn broken_line(dev: &str, drv: &str, module: &str, key: &str) -> String {
    format!("{dev}: probe by {drv} stops waiting for module {module} (which provides {key}): its load now waits for this probe; deferred, retried when {module} is live")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_modkit_waits_and_never_in_a_cycle() {
        let m: Policy = "modkit".parse().unwrap();
        let l: Policy = "linux-6.12".parse().unwrap();
        assert_eq!(decide(m, true, false), NeedWait::Wait);
        assert_eq!(decide(m, true, true), NeedWait::DeferCycle);
        assert_eq!(decide(m, false, false), NeedWait::Defer);
        assert_eq!(decide(l, true, false), NeedWait::Defer);
        assert!(retries_on_live(m) && !retries_on_live(l));
    }

    #[test]
    fn a_cycle_formed_later_breaks_the_wait_under_modkit_only() {
        let m: Policy = "modkit".parse().unwrap();
        let l: Policy = "linux-6.12".parse().unwrap();
        assert!(breaks_wait(m, true));
        assert!(!breaks_wait(m, false));
        assert!(!breaks_wait(l, true));
        assert!(broken_line("x0", "d", "m", "reg:r").contains("stops waiting for module m"));
    }
}
