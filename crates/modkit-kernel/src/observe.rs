//! The guest runner's report (docs/kernel-driver.md, "Runner report") as a
//! driver-neutral [`Observed`].

use std::collections::{BTreeMap, HashMap};

use modkit_core::kernel::LogLine;
use modkit_core::{DiagKind, Diagnostic, Errno, ModState, Outcome};
use modkit_sim::observed::{Observed, TimeTolerance};
use modkit_sim::report::ModuleRow;
use modkit_sim::scenario::EventKind;
use modkit_sim::Scenario;

/// The line the runner writes to /dev/kmsg just before the start.
const RUNNER_MARKER: &str = "modkit-runner: start";

/// How many of the report's last lines an error quotes.
const TAIL_LINES: usize = 8;

/// A report that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A required line is missing: the guest crashed, hung or ran out of time.
    #[error("the report has no `{missing}` line (the guest probably crashed or was stopped before the runner finished); its last lines:\n{tail}")]
    Truncated {
        /// The missing line.
        missing: &'static str,
        /// The last lines seen.
        tail: String,
    },
    /// The guest could not run the scenario at all (`@@ fatal`, from /init or the runner).
    #[error("report line {line}: the guest failed: {text}")]
    Fatal {
        /// 1-based line number.
        line: usize,
        /// What it said.
        text: String,
    },
    /// The runner could not perform a thread's operation (`@@ error`): fork failed,
    /// /proc/modkit_rt missing or refusing the command. The kernel gave no result.
    #[error(
        "report line {line}: event {event} thread {thread}: the runner could not run it: {text}"
    )]
    Runner {
        /// 1-based line number.
        line: usize,
        /// Event id.
        event: String,
        /// Thread index.
        thread: u32,
        /// What failed.
        text: String,
    },
    /// A thread with neither a result nor an `unfinished` line.
    #[error("event {event} thread {thread} has neither a result nor an `unfinished` line (the report is incomplete)")]
    Missing {
        /// Event id.
        event: String,
        /// Thread index.
        thread: u32,
    },
    /// A runner line that does not parse.
    #[error("report line {line}: {why}: {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
        /// The line.
        text: String,
    },
}

/// One finished thread.
struct ResultLine {
    idx: usize,
    thread: u32,
    outcome: Outcome,
    end_ns: u64,
}

/// Decodes the report's percent-encoding (`%` alone is the empty string).
fn percent_decode(s: &str) -> String {
    if s == "%" {
        return String::new();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Decodes /dev/kmsg's `\xNN` escapes.
fn kmsg_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                out.push(h << 4 | l);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A kmsg record's first line, `PRI,SEQ,USEC,FLAGS[,...];TEXT`: `(usec, lines)`, the
/// text decoded and split where the message had newlines (`\x0a`), as dmesg prints it.
/// Dictionary lines (` KEY=VALUE`) and anything else without the header give `None`.
fn kmsg_record(line: &str) -> Option<(u64, Vec<String>)> {
    let (head, text) = line.split_once(';')?;
    let mut fields = head.split(',');
    fields.next()?.parse::<u32>().ok()?;
    fields.next()?.parse::<u64>().ok()?;
    let usec = fields.next()?.parse().ok()?;
    let text = kmsg_decode(text);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Some((usec, text.split('\n').map(str::to_string).collect()))
}

/// True for a kernel log line that modkit_rt's own presence explains, including its
/// "X: cannot register K: already registered by Y" (the simulator's words for a refusal
/// no kernel prints: a `remark` diagnostic there, not a log line).
fn is_runtime_line(text: &str) -> bool {
    text.starts_with("modkit_rt:")
        || text
            .split_once(": cannot register ")
            .is_some_and(|(who, rest)| {
                !who.contains(' ') && rest.contains(": already registered by ")
            })
}

fn outcome(kind: &str, n: i64) -> Option<Outcome> {
    match kind {
        "errno" if n == 0 => Some(Outcome::Ok),
        "errno" if n > 0 => Some(match Errno::from_code(n as i32) {
            Some(e) => Outcome::Err(e),
            None => Outcome::Status(-(n as i32)),
        }),
        "status" | "exit" => Some(Outcome::Status(n as i32)),
        // The thread's process (or its modprobe) died of a kill event's SIGKILL.
        "signal" if n == 9 => Some(Outcome::Killed),
        "signal" => Some(Outcome::Status(n as i32)),
        _ => None,
    }
}

fn map_state(s: &str) -> Option<ModState> {
    match s {
        "Live" => Some(ModState::Live),
        "Loading" => Some(ModState::Coming),
        "Unloading" => Some(ModState::Going),
        _ => None,
    }
}

/// One `/proc/modules` row's taint flags: the `(POE)` after the address, without the
/// `+`/`-` state marks (`module_flags()`).
fn row_taints(cols: &[&str]) -> String {
    cols.iter()
        .skip(6)
        .find_map(|c| c.strip_prefix('(').and_then(|c| c.strip_suffix(')')))
        .map(|f| f.chars().filter(|c| c.is_ascii_uppercase()).collect())
        .unwrap_or_default()
}

/// One `/proc/modules` row: name, refcount, holders (without modkit_rt), state.
fn modules_row(line: &str) -> Option<(String, i64, Vec<String>, Option<ModState>)> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 5 {
        return None;
    }
    let refcount = cols[2].parse().unwrap_or(0);
    let mut used_by: Vec<String> = cols[3]
        .split(',')
        .filter(|h| !h.is_empty() && *h != "-" && *h != "modkit_rt" && !h.starts_with('['))
        .map(str::to_string)
        .collect();
    used_by.sort();
    Some((cols[0].to_string(), refcount, used_by, map_state(cols[4])))
}

fn tail(lines: &[&str]) -> String {
    let from = lines.len().saturating_sub(TAIL_LINES);
    if lines.is_empty() {
        return "    (the report is empty)".into();
    }
    lines[from..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads the runner's report of `sc`'s run; `label` names the driver.
pub fn observe(sc: &Scenario, report: &[u8], label: &str) -> Result<Observed, ObserveError> {
    let text = String::from_utf8_lossy(report);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();

    #[derive(PartialEq)]
    enum Section {
        Top,
        Modules,
        Dmesg,
    }
    let mut section = Section::Top;
    let mut start: Option<u64> = None;
    let mut end: Option<u64> = None;
    let mut results: Vec<ResultLine> = Vec::new();
    let mut stderr_raw: Vec<(usize, u32, String)> = Vec::new();
    let mut unfinished: BTreeMap<String, u32> = BTreeMap::new();
    let mut proc_modules: Vec<&str> = Vec::new();
    let mut kmsg: Vec<(u64, String)> = Vec::new(); // (usec, text)
    let mut notes = Vec::new();
    let mut seen: Vec<Vec<bool>> = sc
        .events
        .iter()
        .map(|e| vec![false; e.threads as usize])
        .collect();
    let mut exits: BTreeMap<usize, Vec<(u32, i64)>> = BTreeMap::new();
    let mut unknown_errnos: BTreeMap<i64, u32> = BTreeMap::new();

    for (n, line) in lines.iter().enumerate() {
        let bad = |why: &str| ObserveError::Malformed {
            line: n + 1,
            why: why.to_string(),
            text: line.to_string(),
        };
        match section {
            Section::Modules if *line != "@@ modules_end" => {
                proc_modules.push(line);
                continue;
            }
            Section::Dmesg if *line != "@@ dmesg_end" => {
                if let Some((usec, texts)) = kmsg_record(line) {
                    kmsg.extend(texts.into_iter().map(|t| (usec, t)));
                }
                continue;
            }
            _ => {}
        }
        let Some(rest) = line.strip_prefix("@@ ") else {
            continue; // not the runner's (console noise on the report's line)
        };
        let w: Vec<&str> = rest.split(' ').collect();
        let idx_of = |s: &str| -> Result<usize, ObserveError> {
            s.parse::<usize>()
                .ok()
                .filter(|&i| i < sc.events.len())
                .ok_or_else(|| bad("no such event index"))
        };
        let num = |s: &str| -> Result<u64, ObserveError> {
            s.parse::<u64>().map_err(|_| bad("not a number"))
        };
        // A thread's line: event index and thread, each thread reported once.
        let mut thread_of = |i: &str, t: &str, last: bool| -> Result<(usize, u32), ObserveError> {
            let idx = idx_of(i)?;
            let thread = t
                .parse::<u32>()
                .ok()
                .filter(|&t| t < sc.events[idx].threads)
                .ok_or_else(|| bad("no such thread"))?;
            if last {
                let slot = &mut seen[idx][thread as usize];
                if *slot {
                    return Err(bad("a second result for this thread"));
                }
                *slot = true;
            }
            Ok((idx, thread))
        };
        match w[0] {
            "start" if w.len() == 2 => start = Some(num(w[1])?),
            "end" if w.len() == 2 => end = Some(num(w[1])?),
            "result" if w.len() == 6 => {
                let (idx, thread) = thread_of(w[1], w[2], true)?;
                let value: i64 = w[4].parse().map_err(|_| bad("not a number"))?;
                let outcome = outcome(w[3], value).ok_or_else(|| bad("unknown result kind"))?;
                if w[3] == "exit" {
                    exits.entry(idx).or_default().push((thread, value));
                } else if w[3] == "errno" && matches!(outcome, Outcome::Status(_)) {
                    *unknown_errnos.entry(value).or_insert(0) += 1;
                }
                results.push(ResultLine {
                    idx,
                    thread,
                    outcome,
                    end_ns: num(w[5])?,
                });
            }
            "stderr" if w.len() == 4 => {
                let (idx, thread) = thread_of(w[1], w[2], false)?;
                stderr_raw.push((idx, thread, percent_decode(w[3])));
            }
            "unfinished" if w.len() == 3 => {
                let (idx, _) = thread_of(w[1], w[2], true)?;
                *unfinished.entry(sc.events[idx].id.clone()).or_insert(0) += 1;
            }
            "error" if w.len() == 4 => {
                let (idx, thread) = thread_of(w[1], w[2], true)?;
                return Err(ObserveError::Runner {
                    line: n + 1,
                    event: sc.events[idx].id.clone(),
                    thread,
                    text: percent_decode(w[3]),
                });
            }
            "dmesg_lost" if w.len() == 2 => notes.push(format!(
                "{} kernel log record(s) were overwritten before the runner read them",
                num(w[1])?
            )),
            "dmesg_unavailable" if w.len() == 2 => notes.push(format!(
                "the kernel log could not be read ({}): no log, init counts or log-derived diagnostics",
                percent_decode(w[1])
            )),
            "modules_unavailable" if w.len() == 2 => notes.push(format!(
                "/proc/modules could not be read ({}): every module shows as absent",
                percent_decode(w[1])
            )),
            "modules_begin" => section = Section::Modules,
            "modules_end" | "dmesg_end" => section = Section::Top,
            "dmesg_begin" => section = Section::Dmesg,
            "refcnt" | "holders" => {}
            // Written by /init around the runner.
            "runner-exit" => {}
            "fatal" => {
                return Err(ObserveError::Fatal {
                    line: n + 1,
                    text: rest.strip_prefix("fatal").unwrap_or(rest).trim().to_string(),
                })
            }
            _ => return Err(bad("unknown runner line")),
        }
    }
    let Some(start) = start else {
        return Err(ObserveError::Truncated {
            missing: "@@ start",
            tail: tail(&lines),
        });
    };
    if end.is_none() {
        return Err(ObserveError::Truncated {
            missing: "@@ end",
            tail: tail(&lines),
        });
    }
    for (idx, threads) in seen.iter().enumerate() {
        if let Some(t) = threads.iter().position(|s| !s) {
            return Err(ObserveError::Missing {
                event: sc.events[idx].id.clone(),
                thread: t as u32,
            });
        }
    }
    for (idx, list) in &exits {
        let (thread, value) = list[0];
        notes.push(format!(
            "event {}: {} thread(s) ended with modprobe exiting non-zero without an error text modkit recognises (thread {thread}: exit {value}); shown as status N",
            sc.events[*idx].id,
            list.len()
        ));
    }
    for (code, count) in &unknown_errnos {
        notes.push(format!(
            "{count} result(s) with errno {code}, which modkit has no name for; shown as status -{code}"
        ));
    }

    // The kernel log since the start, without trace lines and modkit_rt's own.
    // The runner's marker (`modkit-runner: start`) is the start on the log's own clock
    // and in its order; without it, records stamped before the start are left out.
    let marker = kmsg.iter().rposition(|(_, t)| t.starts_with(RUNNER_MARKER));
    let (kmsg, origin) = match marker {
        Some(i) => {
            let origin = kmsg[i].0.saturating_mul(1000);
            (kmsg.split_off(i + 1), origin)
        }
        None => (kmsg, start),
    };
    let mut init_calls: HashMap<String, u32> = HashMap::new();
    let mut log = Vec::new();
    // The last trace line: module code ran then, although the line is not shown.
    let mut last_trace = 0u64;
    for (usec, text) in kmsg {
        let ns = usec.saturating_mul(1000);
        if marker.is_none() && ns < start {
            continue;
        }
        if text.starts_with(RUNNER_MARKER) {
            continue;
        }
        if let Some(t) = text.strip_prefix("modkit-trace:") {
            last_trace = last_trace.max(ns.saturating_sub(origin));
            if let Some(m) = t.trim().strip_prefix("init ") {
                *init_calls.entry(m.trim().to_string()).or_insert(0) += 1;
            }
            continue;
        }
        if is_runtime_line(&text) {
            continue;
        }
        log.push(LogLine {
            time: ns.saturating_sub(origin),
            text,
        });
    }

    // Modules, in scenario order.
    let listed: HashMap<String, (i64, Vec<String>, Option<ModState>)> = proc_modules
        .iter()
        .filter_map(|l| modules_row(l))
        .map(|(n, r, u, s)| (n, (r, u, s)))
        .collect();
    let taints_of: HashMap<String, String> = proc_modules
        .iter()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (!cols.is_empty()).then(|| (cols[0].to_string(), row_taints(&cols)))
        })
        .collect();
    // Every generated module is unsigned (none can carry Debian's signature): the E flag
    // of a module the scenario calls signed is not observable and is left out.
    let mut hid_e = false;
    let modules = (0..sc.db.len())
        .map(|i| {
            let spec = sc.db.spec(i);
            let calls = init_calls.get(&spec.name).copied().unwrap_or(0);
            if spec.builtin {
                return ModuleRow {
                    name: spec.name.clone(),
                    state: Some(ModState::Live),
                    refcount: 0,
                    used_by: Vec::new(),
                    builtin: true,
                    init_calls: calls,
                    taints: String::new(),
                };
            }
            let row = listed.get(&spec.name);
            let mut taints = taints_of.get(&spec.name).cloned().unwrap_or_default();
            if spec.provenance.signed && taints.contains('E') {
                taints.retain(|c| c != 'E');
                hid_e = true;
            }
            ModuleRow {
                name: spec.name.clone(),
                state: row.and_then(|r| r.2),
                refcount: row.map(|r| r.0).unwrap_or(0),
                used_by: row.map(|r| r.1.clone()).unwrap_or_default(),
                builtin: false,
                init_calls: calls,
                taints,
            }
        })
        .collect::<Vec<ModuleRow>>();
    if hid_e {
        notes.push(
            "the kernel driver cannot sign modules with the kernel's key: every generated module is unsigned, and the E taint flag of modules the scenario calls signed is left out of the table".to_string(),
        );
    }

    // Results, per event in thread order.
    results.sort_by_key(|r| (r.idx, r.thread));
    let rel = |t: u64| t.saturating_sub(start);
    let mut by_event: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut ends: HashMap<(usize, u32), u64> = HashMap::new();
    for r in &results {
        by_event
            .entry(sc.events[r.idx].id.clone())
            .or_default()
            .push(r.outcome);
        ends.insert((r.idx, r.thread), rel(r.end_ns));
    }
    // Each at its thread's end (a tool's output is read until it exits), in time order.
    let mut stderr: Vec<LogLine> = stderr_raw
        .into_iter()
        .map(|(idx, thread, text)| LogLine {
            time: ends.get(&(idx, thread)).copied().unwrap_or(0),
            text: format!("{}: {text}", sc.events[idx].id),
        })
        .collect();
    stderr.sort_by_key(|l| l.time);

    // Diagnostics the kernel showed unambiguously.
    let mut diagnostics = Vec::new();
    for l in &log {
        if let Some((kind, module)) = log_diagnostic(&l.text) {
            diagnostics.push(Diagnostic {
                time: l.time,
                kind,
                module,
                message: l.text.clone(),
                chain: Vec::new(),
                hint: None,
            });
        }
    }
    for r in &results {
        let ev = &sc.events[r.idx];
        if let EventKind::Rmmod { name, .. } = &ev.kind {
            if r.outcome == Outcome::Err(Errno::EWOULDBLOCK) {
                diagnostics.push(Diagnostic {
                    time: rel(r.end_ns),
                    kind: DiagKind::InUse,
                    module: Some(name.clone()),
                    message: format!(
                        "rmmod {name} (event {}, thread {}): EWOULDBLOCK: the module is in use",
                        ev.id, r.thread
                    ),
                    chain: Vec::new(),
                    hint: None,
                });
            }
        }
    }
    diagnostics.sort_by_key(|d| d.time);
    let names: Vec<String> = (0..sc.db.len())
        .map(|i| sc.db.spec(i).name.clone())
        .collect();
    let dumped = crate::stackdump::reduce_stack_dumps(&mut log);
    if dumped > 0 {
        notes.push(format!(
            "{dumped} line(s) of stack dumps (CPU/PID, hardware, frames, registers) are left out of the log; each dump keeps its `Call Trace:` line"
        ));
    }
    let before = log.len();
    log.retain(|l| relevant(&l.text, &names) || l.text == modkit_core::initret::STACK_DUMP_LINE);
    if log.len() < before {
        notes.push(format!(
            "{} kernel line(s) about neither the loader nor a scenario module (clocksource, TSC…) are left out of the log",
            before - log.len()
        ));
    }
    notes.push(
        "diagnostics on a real kernel are derived from what it printed: unknown_symbol (\"Unknown symbol\", also the kernel's answer to a GPL-only import by a non-GPL module), version_mismatch (\"disagrees about version of symbol\"), namespace_not_imported, limit_reached (\"kmod busy\"), leak (the generated modules' \"still registered as the module goes\"), and in_use from rmmod results EWOULDBLOCK; the other kinds are the simulator's analysis and are not derived"
            .to_string(),
    );

    // The last thing seen happening: a thread's end, a log line, or module code's trace
    // (a run stuck in an init has nothing else).
    let end_time = results
        .iter()
        .map(|r| rel(r.end_ns))
        .chain(log.last().map(|l| l.time))
        .chain(std::iter::once(last_trace))
        .max()
        .unwrap_or(0);

    Ok(Observed {
        driver: label.to_string(),
        log,
        stderr,
        modules,
        results: by_event,
        unfinished,
        event_order: sc.events.iter().map(|e| e.id.clone()).collect(),
        diagnostics,
        end_time,
        steps: None,
        notes,
        unobservable: vec!["diagnostics"],
        time_tolerance: TimeTolerance::EXACT,
        import_order: BTreeMap::new(),
        devices: Vec::new(),
    })
}

/// The diagnostic a kernel log line shows unambiguously, with its module.
fn log_diagnostic(text: &str) -> Option<(DiagKind, Option<String>)> {
    // "M: Unknown symbol S (err -2)", "M: disagrees about version of symbol S",
    // "M: module uses symbol (S) from namespace NS, but does not import it."
    const BY_MODULE: &[(&str, DiagKind)] = &[
        (": Unknown symbol ", DiagKind::UnknownSymbol),
        (
            ": disagrees about version of symbol ",
            DiagKind::VersionMismatch,
        ),
        (": module uses symbol (", DiagKind::NamespaceNotImported),
    ];
    for (pat, kind) in BY_MODULE {
        if let Some(pos) = text.find(pat) {
            if *kind == DiagKind::NamespaceNotImported && !text.contains("but does not import it") {
                continue;
            }
            return Some((*kind, Some(text[..pos].to_string())));
        }
    }
    // "request_module: modprobe X cannot be processed, kmod busy with 50 threads for more
    // than 5 seconds now"
    if text.starts_with("request_module: ") && text.contains("kmod busy with") {
        return Some((DiagKind::LimitReached, None));
    }
    // cgen's own line: "modkit: M: fs:X still registered as the module goes; ..."
    if let Some(rest) = text.strip_prefix("modkit: ") {
        if text.contains(" still registered as the module goes") {
            return Some((DiagKind::Leak, rest.split(':').next().map(str::to_string)));
        }
    }
    None
}

/// Whether a kernel line belongs in the scenario's log: it names a scenario module (as
/// `name:` or `'name'` or `module name`), or comes from the module loader or kmod.
fn relevant(text: &str, names: &[String]) -> bool {
    const LOADER: &[&str] = &[
        "request_module",
        "kmod",
        "Disabling lock debugging",
        "do_init_module",
        "module ",
        "Module ",
        "modprobe",
        "Unknown symbol",
        "taint",
        "debugfs:",
        "misc ",
        "filesystem",
    ];
    if LOADER.iter().any(|p| text.contains(p)) {
        return true;
    }
    names.iter().any(|n| {
        let dashed = n.replace('_', "-");
        [n.as_str(), dashed.as_str()].iter().any(|n| {
            text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .any(|w| w == *n || w.starts_with(&format!("{n}_")))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance_keeps_loader_and_module_lines_only() {
        let names = vec!["i915".to_string(), "kvm_gt".to_string()];
        for keep in [
            "debugfs: Directory 'i915_globals' with parent '/' already present!",
            "debugfs: 'i915_globals' already exists in '/'",
            "kvm-gt: gave up waiting for init of module i915.",
            "request_module: modprobe x cannot be processed",
            "i915: Unknown symbol a (err -2)",
        ] {
            assert!(relevant(keep, &names), "{keep}");
        }
        for drop in [
            "clocksource: Switched to clocksource tsc",
            "tsc: Refined TSC clocksource calibration: 2596.109 MHz",
            "i9150: something else",
        ] {
            assert!(!relevant(drop, &names), "{drop}");
        }
    }

    const SC: &str = r#"
[[module]]
name = "a"

[[module]]
name = "b"
depends = ["a"]

[[module]]
name = "k"
builtin = true

[[module]]
name = "c"

[[event]]
id = "load"
threads = 2
modprobe = "b"

[[event]]
id = "rm"
at = "1s"
rmmod = "a"

[[event]]
id = "req"
at = "2s"
request_module = "c"
"#;

    fn sc() -> Scenario {
        modkit_sim::scenario::parse("t.toml", SC).expect("scenario parses")
    }

    const REPORT: &str = "\
@@ start 5000000000
@@ stderr 0 1 modprobe:%20ERROR:%20could%20not%20insert%20'b':%20File%20exists
@@ result 0 1 errno 17 5300000000
@@ result 0 0 errno 0 5200000000
@@ result 1 0 errno 11 6100000000
@@ unfinished 2 0
@@ modules_begin
b 16384 0 - Live 0xffffffffc0201000 (OE)
a 16384 1 b,modkit_rt, Live 0xffffffffc0200000 (OE)
modkit_rt 40960 0 - Live 0xffffffffc01f0000 (OE)
@@ modules_end
@@ refcnt b 0
@@ holders b
@@ refcnt a 1
@@ holders a b modkit_rt
@@ dmesg_begin
4,500,4000000,-;modkit_rt: loading out-of-tree module taints kernel.
6,501,5100000,-;modkit-trace: init a
6,502,5150000,-;modkit-trace: init b
6,503,5160000,-;modkit-trace: step b s 0
6,504,5250000,-;b: hello\\x20world\\xc3\\xa9
4,505,5260000,-;c: Unknown symbol foo (err -2)
6,506,5270000,-;modkit_rt: something of its own
6,507,5280000,-;modkit_rt: cannot register pmu:x: already registered by a
@@ dmesg_end
@@ end 9000000000
";

    #[test]
    fn a_report_becomes_an_observation() {
        let o = observe(&sc(), REPORT.as_bytes(), "kernel test").unwrap();
        assert_eq!(o.driver, "kernel test");
        assert_eq!(o.event_order, vec!["load", "rm", "req"]);
        assert_eq!(
            o.results["load"],
            vec![Outcome::Ok, Outcome::Err(Errno::EEXIST)]
        );
        assert_eq!(o.results["rm"], vec![Outcome::Err(Errno::EWOULDBLOCK)]);
        assert!(!o.results.contains_key("req"));
        assert_eq!(o.unfinished["req"], 1);
        let texts: Vec<(u64, &str)> = o.log.iter().map(|l| (l.time, l.text.as_str())).collect();
        assert_eq!(
            texts,
            vec![
                (250_000_000, "b: hello worldé"),
                (260_000_000, "c: Unknown symbol foo (err -2)"),
            ]
        );
        assert_eq!(o.stderr.len(), 1);
        assert_eq!(o.stderr[0].time, 300_000_000);
        assert_eq!(
            o.stderr[0].text,
            "load: modprobe: ERROR: could not insert 'b': File exists"
        );
        let a = o.module("a").unwrap();
        assert_eq!(
            (a.state, a.refcount, a.used_by.clone(), a.init_calls),
            (Some(ModState::Live), 1, vec!["b".to_string()], 1)
        );
        let b = o.module("b").unwrap();
        assert_eq!(
            (b.state, b.refcount, b.init_calls),
            (Some(ModState::Live), 0, 1)
        );
        let k = o.module("k").unwrap();
        assert!(k.builtin);
        assert_eq!(k.state, Some(ModState::Live));
        let c = o.module("c").unwrap();
        assert_eq!((c.state, c.init_calls), (None, 0));
        let names: Vec<&str> = o.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "k", "c"]);
        let kinds: Vec<(DiagKind, Option<&str>)> = o
            .diagnostics
            .iter()
            .map(|d| (d.kind, d.module.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (DiagKind::UnknownSymbol, Some("c")),
                (DiagKind::InUse, Some("a"))
            ]
        );
        assert_eq!(o.end_time, 1_100_000_000);
        assert_eq!(o.steps, None);
        assert_eq!(o.unobservable, vec!["diagnostics"]);
        assert!(!o.notes.is_empty());
    }

    #[test]
    fn a_killed_thread_reads_as_killed() {
        assert_eq!(outcome("signal", 9), Some(Outcome::Killed));
        assert_eq!(outcome("signal", 15), Some(Outcome::Status(15)));
        assert_eq!(outcome("errno", 3), Some(Outcome::Err(Errno::ESRCH)));
    }

    #[test]
    fn states_and_statuses_map() {
        let report = "\
@@ start 1000
@@ result 2 0 status 256 3000
@@ result 0 0 exit 1 2500
@@ result 0 1 errno 95 2600
@@ unfinished 1 0
@@ modules_begin
a 16384 0 - Loading 0x0 (OE)
b 16384 2 [permanent], Unloading 0x0 (OE)
@@ modules_end
@@ dmesg_begin
@@ dmesg_end
@@ end 4000
";
        let o = observe(&sc(), report.as_bytes(), "k").unwrap();
        assert_eq!(o.results["req"], vec![Outcome::Status(256)]);
        assert_eq!(
            o.results["load"],
            vec![Outcome::Status(1), Outcome::Status(-95)]
        );
        assert_eq!(o.module("a").unwrap().state, Some(ModState::Coming));
        let b = o.module("b").unwrap();
        assert_eq!((b.state, b.refcount), (Some(ModState::Going), 2));
        assert!(b.used_by.is_empty());
        assert_eq!(o.end_time, 2000);
        assert!(
            o.notes
                .iter()
                .any(|n| n.contains("event load: 1 thread(s)") && n.contains("thread 0: exit 1")),
            "{:?}",
            o.notes
        );
        assert!(
            o.notes.iter().any(|n| n.contains("errno 95")),
            "{:?}",
            o.notes
        );
        assert_eq!(o.unfinished["rm"], 1);
    }

    #[test]
    fn the_runner_marker_sets_the_log_origin() {
        let report = "\
@@ start 9000000000
@@ unfinished 0 0
@@ unfinished 0 1
@@ unfinished 1 0
@@ unfinished 2 0
@@ modules_begin
@@ modules_end
@@ dmesg_begin
6,10,1000000,-;a: before the marker
12,11,2000000,-;modkit-runner: start
6,12,2500000,-;modkit-trace: init a
6,13,2600000,-;a: after
@@ dmesg_end
@@ end 9900000000
";
        let o = observe(&sc(), report.as_bytes(), "k").unwrap();
        let texts: Vec<(u64, &str)> = o.log.iter().map(|l| (l.time, l.text.as_str())).collect();
        assert_eq!(texts, vec![(600_000_000, "a: after")]);
        assert_eq!(o.end_time, 600_000_000);
        // stuck in an init: only the trace line shows when it happened
        let stuck = report.replace("6,13,2600000,-;a: after\n", "");
        let o = observe(&sc(), stuck.as_bytes(), "k").unwrap();
        assert_eq!(o.end_time, 500_000_000);
        assert_eq!(o.module("a").unwrap().init_calls, 1);
    }

    #[test]
    fn truncated_reports_say_what_is_missing() {
        let e = observe(&sc(), b"", "k").unwrap_err();
        assert!(e.to_string().contains("@@ start"), "{e}");
        let e = observe(
            &sc(),
            b"@@ start 1\n@@ result 0 0 errno 0 2\n@@ modules_begin\nx 1 0 - Live 0x0\n",
            "k",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("@@ end"), "{s}");
        assert!(s.contains("x 1 0 - Live"), "{s}");
    }

    #[test]
    fn malformed_lines_are_errors() {
        let e = observe(
            &sc(),
            b"@@ start 1\n@@ result 9 0 errno 0 2\n@@ end 3\n",
            "k",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = observe(
            &sc(),
            b"@@ start 1\n@@ result 0 0 weird 0 2\n@@ end 3\n",
            "k",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown result kind"), "{e}");
    }

    /// Builds the runner, plays `sc` on the host (without the /dev/kmsg marker: this is
    /// not a guest) and returns its report.
    fn run_on_host(sc: &Scenario) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!(
            "modkit-observe-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let runner = crate::plan::build_runner(&dir).unwrap();
        let text = crate::plan::plan(
            sc,
            &|m: &str| format!("/nonexistent/{m}.ko"),
            std::time::Duration::from_secs(20),
        )
        .unwrap()
        .replace("kmsg_marker\n", "");
        let plan = dir.join("plan");
        std::fs::write(&plan, text).unwrap();
        let out = std::process::Command::new(&runner)
            .arg(&plan)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn host_can_run() -> bool {
        std::process::Command::new("gcc")
            .arg("--version")
            .output()
            .is_ok()
            && !std::path::Path::new("/proc/modkit_rt").exists()
    }

    /// The runner, built and run on the host: rmmod of a module that does not exist (20
    /// threads at once), modprobe and insmod of one; the report reads back. Nothing here
    /// changes the host (no such module, no marker written to its log).
    #[test]
    fn the_host_runs_the_runner() {
        if !host_can_run() {
            return;
        }
        let sc = modkit_sim::scenario::parse(
            "t.toml",
            r#"
[[module]]
name = "modkit_absent_mod"

[[event]]
id = "rm"
threads = 20
rmmod = "modkit_absent_mod"

[[event]]
id = "load"
at = "20ms"
threads = 2
modprobe = "modkit_absent_mod"

[[event]]
id = "ins"
at = "10ms"
insmod = "modkit_absent_mod"
"#,
        )
        .unwrap();
        let report = run_on_host(&sc);
        let o = observe(&sc, &report, "host").unwrap();
        assert_eq!(o.results["rm"].len(), 20);
        // ENOENT, or EPERM/ENOSYS where the host has no module support
        assert!(
            o.results["rm"].iter().all(|r| !r.is_ok()),
            "{:?}",
            o.results
        );
        assert_eq!(o.results["ins"], vec![Outcome::Err(Errno::ENOENT)]);
        // kmod 30: "modprobe: FATAL: Module modkit_absent_mod not found in directory ..."
        if std::path::Path::new("/sbin/modprobe").exists() {
            assert_eq!(
                o.results["load"],
                vec![Outcome::Err(Errno::ENOENT); 2],
                "{:?}",
                o.stderr
            );
            assert_eq!(o.stderr.len(), 2, "{:?}", o.stderr);
            assert!(o.stderr[0].text.starts_with("load: modprobe: "));
        }
        assert!(o.unfinished.is_empty());
        assert_eq!(o.module("modkit_absent_mod").unwrap().state, None);
        assert!(o.end_time >= 20_000_000, "{}", o.end_time);
    }

    /// Without /proc/modkit_rt the runner cannot run request_module: that is an error of
    /// the run naming the event, not a result.
    #[test]
    fn the_host_runner_reports_what_it_could_not_do() {
        if !host_can_run() {
            return;
        }
        let sc = modkit_sim::scenario::parse(
            "t.toml",
            r#"
[[module]]
name = "modkit_absent_mod"

[[event]]
id = "req"
threads = 2
request_module = "modkit_absent_mod"
"#,
        )
        .unwrap();
        let report = run_on_host(&sc);
        let text = String::from_utf8_lossy(&report);
        assert_eq!(text.matches("@@ error 0 ").count(), 2, "{text}");
        let e = observe(&sc, &report, "host").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("event req thread") && msg.contains("/proc/modkit_rt"),
            "{msg}"
        );
    }

    #[test]
    fn thread_accounting_is_checked() {
        let sc = sc();
        let all_but = |skip: &str| {
            let mut r = String::from("@@ start 1\n");
            for l in [
                "@@ result 0 0 errno 0 2",
                "@@ result 0 1 errno 0 2",
                "@@ unfinished 1 0",
                "@@ result 2 0 errno 0 3",
            ] {
                if l != skip {
                    r.push_str(l);
                    r.push('\n');
                }
            }
            r + "@@ end 4\n"
        };
        assert!(observe(&sc, all_but("").as_bytes(), "k").is_ok());
        let e = observe(&sc, all_but("@@ unfinished 1 0").as_bytes(), "k").unwrap_err();
        assert!(
            matches!(&e, ObserveError::Missing { event, thread: 0 } if event == "rm"),
            "{e}"
        );
        let dup = all_but("").replace("@@ end", "@@ result 0 1 errno 0 2\n@@ end");
        let e = observe(&sc, dup.as_bytes(), "k").unwrap_err();
        assert!(e.to_string().contains("line 6: a second result"), "{e}");
        let e = observe(&sc, b"@@ start 1\n@@ result 1 1 errno 0 2\n@@ end 3\n", "k").unwrap_err();
        assert!(e.to_string().contains("line 2: no such thread"), "{e}");
        let e = observe(
            &sc,
            b"@@ start 1\n@@ error 2 0 open%20/proc/modkit_rt:%20No%20such%20file%20or%20directory\n",
            "k",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "report line 2: event req thread 0: the runner could not run it: open /proc/modkit_rt: No such file or directory"
        );
        let e = observe(&sc, b"@@ fatal modkit_rt did not load\n", "k").unwrap_err();
        assert_eq!(
            e.to_string(),
            "report line 1: the guest failed: modkit_rt did not load"
        );
    }

    #[test]
    fn log_records_and_diagnostics() {
        let report = "\
@@ start 100000000
@@ result 0 0 errno 0 200000000
@@ result 0 1 errno 2 200000000
@@ result 1 0 errno 0 200000000
@@ result 2 0 status 256 200000000
@@ modules_begin
@@ modules_end
@@ dmesg_begin
12,1,100000,-;modkit-runner: start
4,2,100500,-,caller=T12;a: first line\\x0asecond line of a
4,3,100600,-;b: disagrees about version of symbol foo
3,4,100700,-;c: module uses symbol (bar) from namespace NS, but does not import it.
4,5,100800,-;request_module: modprobe c cannot be processed, kmod busy with 50 threads for more than 5 seconds now
4,6,100900,-;modkit: a: fs:xfs still registered as the module goes; unregistered, or the kernel would keep a pointer into freed memory
4,7,101000,c;b: a record\\x5cwith a backslash
@@ dmesg_end
@@ dmesg_lost 3
@@ end 300000000
";
        let o = observe(&sc(), report.as_bytes(), "k").unwrap();
        let texts: Vec<(u64, &str)> = o.log.iter().map(|l| (l.time, l.text.as_str())).collect();
        assert_eq!(texts[0], (500_000, "a: first line"));
        assert_eq!(texts[1], (500_000, "second line of a"));
        assert_eq!(
            texts.last().unwrap(),
            &(1_000_000, "b: a record\\with a backslash")
        );
        let kinds: Vec<(DiagKind, Option<&str>)> = o
            .diagnostics
            .iter()
            .map(|d| (d.kind, d.module.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (DiagKind::VersionMismatch, Some("b")),
                (DiagKind::NamespaceNotImported, Some("c")),
                (DiagKind::LimitReached, None),
                (DiagKind::Leak, Some("a")),
            ]
        );
        assert!(
            o.notes.iter().any(|n| n.contains("3 kernel log record(s)")),
            "{:?}",
            o.notes
        );
        assert_eq!(o.end_time, 100_000_000);
    }

    #[test]
    fn decoders() {
        assert_eq!(percent_decode("%"), "");
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(kmsg_decode("x\\x0ay\\x"), "x\ny\\x");
    }
}
