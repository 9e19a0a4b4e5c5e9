//! What a run showed, whichever driver ran it: the simulator, the host's real threads or a
//! real kernel in QEMU. Reports and expectations are computed from this, so that the three
//! drivers are printed and checked the same way.

use std::collections::BTreeMap;

use modkit_core::kernel::LogLine;
use modkit_core::{Diagnostic, Outcome};

use crate::report::{module_table, ModuleRow};
use crate::sim::Run;

/// The outcome of one run, driver-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Who ran it: `simulator`, `host`, `kernel 6.1.0-50-cloud-amd64 (6.1.176)`.
    pub driver: String,
    /// The kernel log, times in ns since the scenario started.
    pub log: Vec<LogLine>,
    /// What userspace tools printed on stderr (modprobe's "could not insert"), kept apart
    /// from the kernel log; each text starts with the event id.
    pub stderr: Vec<LogLine>,
    /// One row per scenario module, in scenario order.
    pub modules: Vec<ModuleRow>,
    /// Results per event id, one per finished thread.
    pub results: BTreeMap<String, Vec<Outcome>>,
    /// Threads of each event still running when the run was stopped (real kernels only:
    /// the simulator reports those as a `stalled` diagnostic).
    pub unfinished: BTreeMap<String, u32>,
    /// Event ids in file order.
    pub event_order: Vec<String>,
    /// Diagnostics: the simulator's analysis, or what a real kernel showed unambiguously.
    pub diagnostics: Vec<Diagnostic>,
    /// Time (ns) when the run ended: virtual for the simulator and host, measured since the
    /// start for a real kernel.
    pub end_time: u64,
    /// Scheduler steps, where the driver counts them.
    pub steps: Option<u64>,
    /// Remarks of the driver (emulation, derived values), printed with the report.
    pub notes: Vec<String>,
    /// Expectation keys this driver cannot observe (`diagnostics` on a real kernel): a
    /// block's keys of these kinds are reported as not checked instead of failing.
    pub unobservable: Vec<&'static str>,
    /// Tolerance for timing bounds: `time_max` is accepted up to `t * factor + slack_ns`.
    /// The simulator and the host are exact (factor 1, slack 0).
    pub time_tolerance: TimeTolerance,
    /// Per scenario module, its imports in the order the real kernel resolves them (the
    /// built `.ko`'s symbol table); empty for the simulator and the host, which follow the
    /// file ([`crate::Scenario::with_import_order`]).
    pub import_order: BTreeMap<String, Vec<String>>,
    /// The device table (empty without devices, and on drivers that have no device model).
    pub devices: Vec<modkit_core::device::DeviceRow>,
}

/// How far a measured time may exceed an expected upper bound (emulation overhead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeTolerance {
    /// Multiplier in percent (100 = exact).
    pub percent: u64,
    /// Added ns.
    pub slack_ns: u64,
}

impl TimeTolerance {
    /// No tolerance.
    pub const EXACT: TimeTolerance = TimeTolerance {
        percent: 100,
        slack_ns: 0,
    };

    /// The largest accepted time for an upper bound `t`.
    pub fn widen(self, t: u64) -> u64 {
        (t as u128 * self.percent as u128 / 100 + self.slack_ns as u128).min(u64::MAX as u128)
            as u64
    }
}

impl Observed {
    /// The observation of a simulator or host run.
    pub fn from_run(run: &Run, driver: &str) -> Observed {
        let k = &run.kernel;
        let (stderr, log): (Vec<LogLine>, Vec<LogLine>) =
            k.log.iter().cloned().partition(|l| is_userspace(&l.text));
        Observed {
            driver: driver.to_string(),
            log,
            stderr,
            modules: module_table(k),
            results: run.results.clone(),
            unfinished: BTreeMap::new(),
            event_order: run.event_order.clone(),
            diagnostics: k.diagnostics.clone(),
            end_time: run.end_time,
            steps: Some(run.steps),
            notes: Vec::new(),
            unobservable: Vec::new(),
            time_tolerance: TimeTolerance::EXACT,
            import_order: BTreeMap::new(),
            devices: run.devices.clone(),
        }
    }

    /// The row of module `name`, if the scenario has it.
    pub fn module(&self, name: &str) -> Option<&ModuleRow> {
        self.modules.iter().find(|r| r.name == name)
    }
}

/// Lines the simulator writes for userspace tools (kmod's modprobe, insmod and rmmod
/// print them on stderr, not in the kernel log).
pub fn is_userspace(text: &str) -> bool {
    ["modprobe: ", "insmod: ", "rmmod: ", "systemd-udevd: "]
        .iter()
        .any(|p| text.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_widens_and_saturates() {
        let t = TimeTolerance {
            percent: 150,
            slack_ns: 2_000_000_000,
        };
        assert_eq!(t.widen(1_000_000_000), 3_500_000_000);
        assert_eq!(TimeTolerance::EXACT.widen(7), 7);
        assert_eq!(t.widen(u64::MAX), u64::MAX);
    }
}
