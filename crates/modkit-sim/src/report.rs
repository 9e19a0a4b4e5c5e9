//! Reports of a run: the log with virtual timestamps, the final module table (lsmod),
//! each event's results, the diagnostics with their chains, and the end time; as text
//! or as one JSON object.

use std::fmt::Write as _;

use modkit_core::kernel::LogLine;
use modkit_core::{Kernel, ModState, Outcome, Policy};
use serde_json::{json, Value};

use crate::duration::format_duration;
use crate::observed::Observed;
use crate::sim::Run;
use crate::width::{cell, display_width, pad};

/// One row of the module table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRow {
    /// Name.
    pub name: String,
    /// State (`None` = absent).
    pub state: Option<ModState>,
    /// lsmod refcount.
    pub refcount: i64,
    /// lsmod "used by".
    pub used_by: Vec<String>,
    /// Builtin.
    pub builtin: bool,
    /// Times the init table started.
    pub init_calls: u32,
    /// Its taint flags as `/proc/modules` shows them (`"POE"`; empty for none or absent).
    pub taints: String,
}

/// The module table, in the order modules appear in the scenario.
pub fn module_table(k: &Kernel) -> Vec<ModuleRow> {
    (0..k.db.len())
        .map(|i| {
            let inst = k.instances[i].as_ref();
            let spec = k.db.spec(i);
            let mut used_by = k.holders(i);
            used_by.sort();
            ModuleRow {
                name: spec.name.clone(),
                state: inst.map(|x| x.state),
                refcount: inst.map(|x| x.refcount).unwrap_or(0),
                used_by,
                builtin: spec.builtin,
                init_calls: k.init_calls[i],
                taints: if inst.is_some() && !spec.builtin {
                    k.taint.flags(i)
                } else {
                    String::new()
                },
            }
        })
        .collect()
}

/// `[   30.000000]` as dmesg prints time.
pub fn stamp(ns: u64) -> String {
    format!(
        "[{:>5}.{:06}]",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}

/// Summarises thread results: `ok ×49, EBUSY ×1`.
pub fn summarize(results: &[Outcome]) -> String {
    let mut counts: Vec<(Outcome, usize)> = Vec::new();
    for r in results {
        match counts.iter_mut().find(|(o, _)| o == r) {
            Some((_, n)) => *n += 1,
            None => counts.push((*r, 1)),
        }
    }
    if results.is_empty() {
        return "(not finished)".into();
    }
    counts
        .iter()
        .map(|(o, n)| {
            if *n == 1 && results.len() == 1 {
                o.to_string()
            } else {
                format!("{o} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes timestamped lines, each run of identical consecutive lines once with its count:
/// `[    0.051000] … (×864)`, or `(×864, the last at [   28.800000])` when they span time.
/// (The JSON report keeps every line.)
fn write_lines(s: &mut String, lines: &[LogLine]) {
    let mut i = 0;
    while i < lines.len() {
        let first = &lines[i];
        let n = lines[i..]
            .iter()
            .take_while(|l| l.text == first.text)
            .count();
        let last = &lines[i + n - 1];
        let _ = match n {
            1 => writeln!(s, "{} {}", stamp(first.time), first.text),
            _ if last.time == first.time => {
                writeln!(s, "{} {} (×{n})", stamp(first.time), first.text)
            }
            _ => writeln!(
                s,
                "{} {} (×{n}, the last at {})",
                stamp(first.time),
                first.text,
                stamp(last.time)
            ),
        };
        i += n;
    }
}

/// The text report of a simulator or host run.
pub fn text(title: &str, policy: Policy, seed: u64, run: &Run) -> String {
    text_observed(title, policy, seed, &Observed::from_run(run, "simulator"))
}

/// The text report of what any driver observed.
pub fn text_observed(title: &str, policy: Policy, seed: u64, run: &Observed) -> String {
    let mut s = String::new();
    if run.driver == "simulator" || run.driver == "host" {
        let _ = writeln!(s, "== {title}  (policy {policy}, seed {seed})");
    } else {
        let _ = writeln!(s, "== {title}  ({})", run.driver);
    }
    let _ = writeln!(s, "\n-- log");
    if run.log.is_empty() {
        let _ = writeln!(s, "(empty)");
    }
    write_lines(&mut s, &run.log);
    if !run.stderr.is_empty() {
        let _ = writeln!(s, "\n-- userspace stderr");
        write_lines(&mut s, &run.stderr);
    }
    let _ = writeln!(s, "\n-- modules");
    let rows = &run.modules;
    // Padded by display columns (wide and right-to-left names line up), by hand: a
    // formatting width is limited to 65,535.
    let w = rows
        .iter()
        .map(|r| display_width(&r.name))
        .max()
        .unwrap_or(6)
        .max(6);
    // The taint column only when some module is tainted (as /proc/modules' "(POE)").
    let tainted = rows.iter().any(|r| !r.taints.is_empty());
    let _ = writeln!(
        s,
        "{}  {:<8} {:>4}  {}Used by",
        pad("Module", w),
        "State",
        "Refs",
        if tainted { "Taints  " } else { "" }
    );
    for r in rows {
        let state = if r.builtin {
            "builtin"
        } else {
            r.state.map(|x| x.name()).unwrap_or("absent")
        };
        let refs = if r.state.is_some() && !r.builtin {
            r.refcount.to_string()
        } else {
            "-".into()
        };
        let used_by: Vec<String> = r.used_by.iter().map(|u| cell(u)).collect();
        let taints = if tainted {
            format!("{:<6}  ", r.taints)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{}  {:<8} {:>4}  {taints}{}",
            pad(&r.name, w),
            state,
            refs,
            used_by.join(",")
        );
    }
    if !run.devices.is_empty() {
        let _ = writeln!(s, "\n-- devices");
        let wd = run
            .devices
            .iter()
            .map(|r| r.device.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let wb = run
            .devices
            .iter()
            .map(|r| r.bus.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let wr = run
            .devices
            .iter()
            .map(|r| r.driver.as_deref().unwrap_or("-").len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            s,
            "{}  {}  {}  {:<8}  reason",
            pad("device", wd),
            pad("bus", wb),
            pad("driver", wr),
            "state"
        );
        for r in &run.devices {
            let _ = writeln!(
                s,
                "{}  {}  {}  {:<8}  {}",
                pad(&r.device, wd),
                pad(&r.bus, wb),
                pad(r.driver.as_deref().unwrap_or("-"), wr),
                r.state,
                r.reason.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(s, "\n-- events");
    let empty = Vec::new();
    for id in &run.event_order {
        let res = run.results.get(id).unwrap_or(&empty);
        let unfinished = run.unfinished.get(id).copied().unwrap_or(0);
        if unfinished > 0 {
            let done = if res.is_empty() {
                String::new()
            } else {
                format!("{}; ", summarize(res))
            };
            let _ = writeln!(s, "{id}: {done}{unfinished} still running at the end");
        } else {
            let _ = writeln!(s, "{id}: {}", summarize(res));
        }
    }
    let _ = writeln!(s, "\n-- diagnostics");
    if run.diagnostics.is_empty() {
        let _ = writeln!(s, "(none)");
    }
    for d in &run.diagnostics {
        let _ = writeln!(s, "{} {d}", stamp(d.time));
    }
    if !run.notes.is_empty() {
        let _ = writeln!(s, "\n-- notes");
        for n in &run.notes {
            let _ = writeln!(s, "{n}");
        }
    }
    match run.steps {
        Some(steps) => {
            let _ = writeln!(
                s,
                "\n-- ended at {} of virtual time ({} scheduler steps)",
                format_duration(run.end_time),
                steps
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\n-- ended at {} after the start (measured)",
                format_duration(run.end_time)
            );
        }
    }
    s
}

/// The JSON report of a simulator or host run.
pub fn json(title: &str, policy: Policy, seed: u64, run: &Run) -> Value {
    json_observed(title, policy, seed, &Observed::from_run(run, "simulator"))
}

/// The JSON report of what any driver observed.
pub fn json_observed(title: &str, policy: Policy, seed: u64, run: &Observed) -> Value {
    let empty = Vec::new();
    json!({
        "scenario": title,
        "driver": run.driver,
        "policy": policy.to_string(),
        "seed": seed,
        "log": run.log.iter().map(|l| json!({"time_ns": l.time, "text": l.text})).collect::<Vec<_>>(),
        "stderr": run.stderr.iter().map(|l| json!({"time_ns": l.time, "text": l.text})).collect::<Vec<_>>(),
        "devices": run.devices.iter().map(|r| json!({
            "device": r.device, "bus": r.bus, "driver": r.driver, "state": r.state, "reason": r.reason,
        })).collect::<Vec<_>>(),
        "modules": run.modules.iter().map(|r| json!({
            "name": r.name,
            "state": if r.builtin { "builtin" } else { r.state.map(|x| x.name()).unwrap_or("absent") },
            "refcount": r.refcount,
            "used_by": r.used_by,
            "init_calls": r.init_calls,
            "taints": r.taints,
        })).collect::<Vec<_>>(),
        "events": run.event_order.iter().map(|id| json!({
            "id": id,
            "results": run.results.get(id).unwrap_or(&empty).iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            "unfinished": run.unfinished.get(id).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
        "diagnostics": run.diagnostics.iter().map(|d| json!({
            "time_ns": d.time,
            "kind": d.kind.name(),
            "module": d.module,
            "message": d.message,
            "chain": d.chain,
            "hint": d.hint,
        })).collect::<Vec<_>>(),
        "notes": run.notes,
        "end_time_ns": run.end_time,
        "steps": run.steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::width::display_width;

    fn table(text: &str) -> Vec<String> {
        text.lines()
            .skip_while(|l| *l != "-- modules")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.replace(['\u{2068}', '\u{2069}'], ""))
            .collect()
    }

    #[test]
    fn repeated_log_lines_are_shown_once_with_a_count() {
        let sc = crate::parse(
            "t.toml",
            r#"
policy = "linux-6.1"
[[module]]
name = "a"
imports = ["missing_symbol"]
[[module]]
name = "b"
imports = ["other_symbol"]
[[event]]
id = "storm"
threads = 864
insmod = "a"
[[event]]
id = "later"
at = "1s"
insmod = "b"
[[event]]
id = "last"
at = "2s"
insmod = "a"
"#,
        )
        .unwrap();
        let run = crate::Sim::new(&sc, sc.policy, 0).run().unwrap();
        let t = text("t", sc.policy, 0, &run);
        let log: Vec<&str> = t
            .lines()
            .skip_while(|l| *l != "-- log")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            log,
            vec![
                "[    0.000000] a: Unknown symbol missing_symbol (err -2) (×864)",
                "[    1.000000] b: Unknown symbol other_symbol (err -2)",
                "[    2.000000] a: Unknown symbol missing_symbol (err -2)",
            ],
            "{t}"
        );
        // JSON keeps every line.
        let j = json("t", sc.policy, 0, &run);
        assert_eq!(j["log"].as_array().unwrap().len(), 866);
        let mut lines = vec![
            LogLine {
                time: 0,
                text: "x".into()
            };
            3
        ];
        lines[2].time = 2_000_000_000;
        let mut s = String::new();
        write_lines(&mut s, &lines);
        assert_eq!(s, "[    0.000000] x (×3, the last at [    2.000000])\n");
    }

    #[test]
    fn the_table_lines_up_with_wide_and_right_to_left_names() {
        let sc = crate::parse(
            "t.toml",
            "[[module]]\nname = \"模块模块模块\"\n[[module]]\nname = \"שלום\"\n[[module]]\nname = \"ab\"\n[[event]]\nmodprobe = \"模块模块模块\"\n[[event]]\nmodprobe = \"שלום\"\n",
        )
        .unwrap();
        let run = crate::Sim::new(&sc, sc.policy, 0).run().unwrap();
        let t = text("t", sc.policy, 0, &run);
        let rows = table(&t);
        assert_eq!(rows.len(), 4, "{t}");
        // The State column starts at the same display column on every row.
        let state_col: Vec<usize> = rows
            .iter()
            .map(|r| {
                let name_end = r.find("  ").unwrap();
                display_width(&r[..name_end])
                    + (r[name_end..].len() - r[name_end..].trim_start().len())
            })
            .collect();
        assert!(
            state_col.iter().all(|&c| c == state_col[0]),
            "{t}\n{state_col:?}"
        );
        assert_eq!(state_col[0], 14, "{t}");
        // The right-to-left name is isolated so that it cannot reorder the row.
        assert!(t.contains("\u{2068}שלום\u{2069}"), "{t}");
    }
}
