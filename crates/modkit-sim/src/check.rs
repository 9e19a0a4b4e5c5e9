//! Expectations: run a scenario once per `[[expect]]` block under that block's policy and
//! compare every key.

use modkit_core::ModState;

use crate::duration::format_duration;
use crate::observed::Observed;
use crate::scenario::{Expect, Scenario};
use crate::sim::{Run, Sim, SimError};

/// The verdict on one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockResult {
    /// 1-based block index.
    pub index: usize,
    /// Line of the block.
    pub line: usize,
    /// Policy it ran under.
    pub policy: String,
    /// Each difference: `final.kvmgt: expected absent, got live`.
    pub failures: Vec<String>,
}

impl BlockResult {
    /// True when every key held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn state_name(s: Option<ModState>) -> &'static str {
    s.map(|x| x.name()).unwrap_or("absent")
}

/// Compares a simulator or host run with one block.
pub fn compare(ex: &Expect, run: &Run) -> Vec<String> {
    compare_observed(ex, &Observed::from_run(run, "simulator"))
}

/// Compares what any driver observed with one block. Keys the driver cannot observe
/// (`Observed::unobservable`) are skipped: see [`skipped_keys`].
pub fn compare_observed(ex: &Expect, run: &Observed) -> Vec<String> {
    let missing = crate::report::ModuleRow {
        name: String::new(),
        state: None,
        refcount: 0,
        used_by: Vec::new(),
        builtin: false,
        init_calls: 0,
        taints: String::new(),
    };
    let row = |n: &str| run.module(n).unwrap_or(&missing);
    let can = |key: &str| !run.unobservable.contains(&key);
    let mut f = Vec::new();
    for (m, want) in &ex.final_ {
        let got = row(m).state;
        if got != *want {
            f.push(format!(
                "final.{m}: expected {}, got {}",
                state_name(*want),
                state_name(got)
            ));
        }
    }
    let empty = Vec::new();
    let unfinished = |id: &str| run.unfinished.get(id).copied().unwrap_or(0);
    for (id, codes) in &ex.results {
        let got = run.results.get(id).unwrap_or(&empty);
        if got.is_empty() {
            f.push(format!(
                "results.{id}: expected {}, but the event never finished",
                codes_str(codes)
            ));
            continue;
        }
        let bad: Vec<String> = got
            .iter()
            .filter(|o| !codes.iter().any(|c| c.matches(**o)))
            .map(|o| o.to_string())
            .collect();
        if !bad.is_empty() {
            f.push(format!(
                "results.{id}: expected {}, got {}",
                codes_str(codes),
                crate::report::summarize(got)
            ));
        } else if unfinished(id) > 0 {
            f.push(format!(
                "results.{id}: expected {}, but {} thread(s) never finished",
                codes_str(codes),
                unfinished(id)
            ));
        }
    }
    for (id, codes) in &ex.results_any {
        let got = run.results.get(id).unwrap_or(&empty);
        for c in codes {
            if !got.iter().any(|o| c.matches(*o)) {
                f.push(format!(
                    "results_any.{id}: expected some thread to get {}, got {}",
                    c.0,
                    crate::report::summarize(got)
                ));
            }
        }
    }
    for (m, n) in &ex.init_calls {
        let got = row(m).init_calls;
        if got != *n {
            f.push(format!("init_calls.{m}: expected {n}, got {got}"));
        }
    }
    for (m, n) in &ex.refcount {
        let r = row(m);
        if r.state.is_none() {
            f.push(format!("refcount.{m}: expected {n}, but {m} is absent"));
        } else if r.refcount != *n {
            f.push(format!("refcount.{m}: expected {n}, got {}", r.refcount));
        }
    }
    for (d, want) in &ex.devices {
        if !can("devices") {
            break;
        }
        let got = run
            .devices
            .iter()
            .find(|r| r.device == *d)
            .map(|r| match (&r.driver, r.state) {
                (Some(drv), "bound") => format!("bound:{drv}"),
                (_, st) => st.to_string(),
            })
            .unwrap_or_else(|| "absent".into());
        if got != *want {
            f.push(format!("devices.{d}: expected {want}, got {got}"));
        }
    }
    for (m, want) in &ex.taints {
        if !can("taints") {
            break;
        }
        let got = &row(m).taints;
        if got != want {
            f.push(format!("taints.{m}: expected \"{want}\", got \"{got}\""));
        }
    }
    for (m, hs) in &ex.holders {
        let got = &row(m).used_by;
        if got != hs {
            f.push(format!(
                "holders.{m}: expected [{}], got [{}]",
                hs.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(t) = ex.time_max {
        let limit = run.time_tolerance.widen(t);
        if run.end_time > limit {
            let tol = if limit == t {
                String::new()
            } else {
                format!(
                    " (tolerance for emulation: up to {})",
                    format_duration(limit)
                )
            };
            f.push(format!(
                "time_max: expected the run to end by {}{tol}, it ended at {}",
                format_duration(t),
                format_duration(run.end_time)
            ));
        }
    }
    if let Some(t) = ex.time_min {
        if run.end_time < t {
            f.push(format!(
                "time_min: expected the run to last at least {}, it ended at {}",
                format_duration(t),
                format_duration(run.end_time)
            ));
        }
    }
    for want in &ex.log {
        if !run
            .log
            .iter()
            .chain(&run.stderr)
            .any(|l| l.text.contains(want.as_str()))
        {
            f.push(format!("log: no line contains \"{want}\""));
        }
    }
    for bad in &ex.log_absent {
        if let Some(l) = run
            .log
            .iter()
            .chain(&run.stderr)
            .find(|l| l.text.contains(bad.as_str()))
        {
            f.push(format!("log_absent: \"{bad}\" appears in \"{}\"", l.text));
        }
    }
    if can("diagnostics") {
        for d in &ex.diagnostics {
            if !run.diagnostics.iter().any(|x| x.kind == *d) {
                let got: Vec<&str> = run.diagnostics.iter().map(|x| x.kind.name()).collect();
                f.push(format!(
                    "diagnostics: expected {d}, got [{}]",
                    got.join(", ")
                ));
            }
        }
        for h in &ex.hints {
            let found = run.diagnostics.iter().any(|x| {
                x.message.contains(h.as_str())
                    || x.hint.as_deref().is_some_and(|t| t.contains(h.as_str()))
            });
            if !found {
                f.push(format!(
                    "hints: no diagnostic's message or hint contains \"{h}\""
                ));
            }
        }
        for d in &ex.diagnostics_absent {
            if let Some(x) = run.diagnostics.iter().find(|x| x.kind == *d) {
                f.push(format!(
                    "diagnostics_absent: {d} was reported: {}",
                    x.message
                ));
            }
        }
    }
    f
}

/// The keys of `ex` that the driver behind `run` cannot observe and were not checked.
pub fn skipped_keys(ex: &Expect, run: &Observed) -> Vec<&'static str> {
    let mut out = Vec::new();
    if run.unobservable.contains(&"diagnostics")
        && !(ex.diagnostics.is_empty() && ex.diagnostics_absent.is_empty() && ex.hints.is_empty())
    {
        out.push("diagnostics");
    }
    if run.unobservable.contains(&"taints") && !ex.taints.is_empty() {
        out.push("taints");
    }
    if run.unobservable.contains(&"devices") && !ex.devices.is_empty() {
        out.push("devices");
    }
    out
}

fn codes_str(codes: &[crate::scenario::Code]) -> String {
    codes
        .iter()
        .map(|c| c.0.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Runs every block of a scenario (with `seed`, or the file's).
pub fn check(sc: &Scenario, seed: Option<u64>) -> Result<Vec<BlockResult>, SimError> {
    let seed = seed.unwrap_or(sc.seed);
    let mut out = Vec::new();
    for ex in &sc.expects {
        let run = Sim::new(sc, ex.policy, seed).run()?;
        out.push(BlockResult {
            index: ex.index,
            line: ex.line,
            policy: ex.policy.to_string(),
            failures: compare(ex, &run),
        });
    }
    Ok(out)
}
