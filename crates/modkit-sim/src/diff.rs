//! Differences between two observations of one scenario (the simulator under a policy
//! beside a real kernel, or beside the host driver): results, init counts, final states,
//! refcounts, holders and the kernel log in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::duration::format_duration;
use crate::observed::Observed;
use crate::report::summarize;

/// What sort of difference it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiffKind {
    /// The two disagree on behaviour: a result, a state, a count, a holder, a log line.
    Behaviour,
    /// Only time differs, within what emulation explains (reported, not a failure).
    Timing,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Kind.
    pub kind: DiffKind,
    /// What differs: `results.storm`, `final.kvmgt`, `log`.
    pub item: String,
    /// The left side's value.
    pub left: String,
    /// The right side's value.
    pub right: String,
}

fn sorted_summary(v: &[modkit_core::Outcome]) -> String {
    let mut v = v.to_vec();
    v.sort();
    summarize(&v)
}

/// Every difference between `left` and `right`. Timing differences are measured against
/// `right.time_tolerance` (the right side is the real kernel in a three-way comparison).
pub fn differences(left: &Observed, right: &Observed) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |kind, item: String, l: String, r: String| {
        out.push(Difference {
            kind,
            item,
            left: l,
            right: r,
        })
    };
    // Results, as multisets (thread order is not behaviour).
    let empty = Vec::new();
    for id in &left.event_order {
        let l = left.results.get(id).unwrap_or(&empty);
        let r = right.results.get(id).unwrap_or(&empty);
        let (lu, ru) = (
            left.unfinished.get(id).copied().unwrap_or(0),
            right.unfinished.get(id).copied().unwrap_or(0),
        );
        let ls = with_unfinished(sorted_summary(l), l.is_empty(), lu);
        let rs = with_unfinished(sorted_summary(r), r.is_empty(), ru);
        if ls != rs {
            push(DiffKind::Behaviour, format!("results.{id}"), ls, rs);
        }
    }
    // Module table.
    for lr in &left.modules {
        let Some(rr) = right.module(&lr.name) else {
            continue;
        };
        let st = |r: &crate::report::ModuleRow| {
            if r.builtin {
                "builtin".to_string()
            } else {
                r.state.map(|s| s.name()).unwrap_or("absent").to_string()
            }
        };
        if st(lr) != st(rr) {
            push(
                DiffKind::Behaviour,
                format!("final.{}", lr.name),
                st(lr),
                st(rr),
            );
        }
        if lr.init_calls != rr.init_calls {
            push(
                DiffKind::Behaviour,
                format!("init_calls.{}", lr.name),
                lr.init_calls.to_string(),
                rr.init_calls.to_string(),
            );
        }
        if lr.state.is_some() && rr.state.is_some() && !lr.builtin {
            if lr.refcount != rr.refcount {
                push(
                    DiffKind::Behaviour,
                    format!("refcount.{}", lr.name),
                    lr.refcount.to_string(),
                    rr.refcount.to_string(),
                );
            }
            if lr.used_by != rr.used_by {
                push(
                    DiffKind::Behaviour,
                    format!("holders.{}", lr.name),
                    format!("[{}]", lr.used_by.join(", ")),
                    format!("[{}]", rr.used_by.join(", ")),
                );
            }
            if lr.taints != rr.taints {
                push(
                    DiffKind::Behaviour,
                    format!("taints.{}", lr.name),
                    format!("\"{}\"", lr.taints),
                    format!("\"{}\"", rr.taints),
                );
            }
        }
    }
    // The log, in order, runs of identical lines collapsed with their counts.
    for d in log_differences(&left.log, &right.log) {
        out.push(d);
    }
    // Userspace stderr, as multisets of lines (the kernel driver prefixes the event id).
    let strip = |l: &modkit_core::kernel::LogLine| {
        let t = l.text.as_str();
        match t.split_once(": ") {
            Some((id, rest)) if !crate::observed::is_userspace(t) && !id.contains(' ') => {
                rest.to_string()
            }
            _ => t.to_string(),
        }
    };
    let count = |v: &[modkit_core::kernel::LogLine]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for l in v {
            *m.entry(strip(l)).or_default() += 1;
        }
        m
    };
    let (sa, sb) = (count(&left.stderr), count(&right.stderr));
    for (t, n) in &sa {
        let m = sb.get(t).copied().unwrap_or(0);
        if *n != m {
            out.push(Difference {
                kind: DiffKind::Behaviour,
                item: "stderr".into(),
                left: format!("{t} ×{n}"),
                right: format!("{t} ×{m}"),
            });
        }
    }
    for (t, m) in &sb {
        if !sa.contains_key(t) {
            out.push(Difference {
                kind: DiffKind::Behaviour,
                item: "stderr".into(),
                left: format!("{t} ×0"),
                right: format!("{t} ×{m}"),
            });
        }
    }
    // End time.
    let tol = right.time_tolerance;
    let (l, r) = (left.end_time, right.end_time);
    if l != r {
        let explained = r <= tol.widen(l) && l <= tol.widen(r);
        out.push(Difference {
            kind: if explained {
                DiffKind::Timing
            } else {
                DiffKind::Behaviour
            },
            item: "end_time".into(),
            left: format_duration(l),
            right: format_duration(r),
        });
    }
    out
}

fn with_unfinished(s: String, none: bool, unfinished: u32) -> String {
    match (unfinished, none) {
        (0, _) => s,
        (_, true) => "(not finished)".to_string(),
        (n, false) => format!("{s}; {n} still running"),
    }
}

/// Runs of identical consecutive lines: (text, count).
fn runs(log: &[modkit_core::kernel::LogLine]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for l in log {
        match out.last_mut() {
            Some((t, n)) if *t == l.text => *n += 1,
            _ => out.push((l.text.clone(), 1)),
        }
    }
    out
}

/// The log lines that only one side printed (longest common subsequence of the runs of
/// identical lines), and runs whose counts differ.
pub fn log_differences(
    left: &[modkit_core::kernel::LogLine],
    right: &[modkit_core::kernel::LogLine],
) -> Vec<Difference> {
    let (a, b) = (runs(left), runs(right));
    // Bounded LCS: logs of thousands of distinct lines fall back to a set comparison.
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return set_log_differences(&a, &b);
    }
    let (n, m) = (a.len(), b.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i].0 == b[j].0 {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i].0 == b[j].0 {
            if a[i].1 != b[j].1 {
                out.push(Difference {
                    kind: DiffKind::Behaviour,
                    item: "log".into(),
                    left: format!("{} ×{}", a[i].0, a[i].1),
                    right: format!("{} ×{}", b[j].0, b[j].1),
                });
            }
            i += 1;
            j += 1;
        } else if j >= m || (i < n && t[i + 1][j] >= t[i][j + 1]) {
            out.push(Difference {
                kind: DiffKind::Behaviour,
                item: "log".into(),
                left: counted(&a[i]),
                right: "(not printed)".into(),
            });
            i += 1;
        } else {
            out.push(Difference {
                kind: DiffKind::Behaviour,
                item: "log".into(),
                left: "(not printed)".into(),
                right: counted(&b[j]),
            });
            j += 1;
        }
    }
    out
}

fn counted(r: &(String, usize)) -> String {
    if r.1 == 1 {
        r.0.clone()
    } else {
        format!("{} ×{}", r.0, r.1)
    }
}

fn set_log_differences(a: &[(String, usize)], b: &[(String, usize)]) -> Vec<Difference> {
    let count = |v: &[(String, usize)]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for (t, n) in v {
            *m.entry(t.clone()).or_default() += n;
        }
        m
    };
    let (ca, cb) = (count(a), count(b));
    let mut out = Vec::new();
    for (t, n) in &ca {
        let m = cb.get(t).copied().unwrap_or(0);
        if *n != m {
            out.push(Difference {
                kind: DiffKind::Behaviour,
                item: "log".into(),
                left: format!("{t} ×{n}"),
                right: format!("{t} ×{m}"),
            });
        }
    }
    for (t, m) in &cb {
        if !ca.contains_key(t) {
            out.push(Difference {
                kind: DiffKind::Behaviour,
                item: "log".into(),
                left: format!("{t} ×0"),
                right: format!("{t} ×{m}"),
            });
        }
    }
    out
}

/// A side-by-side table of two observations and their differences.
pub fn side_by_side(left: &Observed, right: &Observed, diffs: &[Difference]) -> String {
    let mut s = String::new();
    let lw = 34usize;
    let _ = writeln!(
        s,
        "{:<24} {:<lw$} {}",
        "",
        truncate(&left.driver, lw),
        right.driver
    );
    let empty = Vec::new();
    for id in &left.event_order {
        let l = left.results.get(id).unwrap_or(&empty);
        let r = right.results.get(id).unwrap_or(&empty);
        let ls = with_unfinished(
            sorted_summary(l),
            l.is_empty(),
            left.unfinished.get(id).copied().unwrap_or(0),
        );
        let rs = with_unfinished(
            sorted_summary(r),
            r.is_empty(),
            right.unfinished.get(id).copied().unwrap_or(0),
        );
        let mark = if ls == rs { " " } else { "≠" };
        let _ = writeln!(
            s,
            "{mark} {:<22} {:<lw$} {}",
            truncate(&format!("event {id}"), 22),
            truncate(&ls, lw),
            rs
        );
    }
    for lr in &left.modules {
        let Some(rr) = right.module(&lr.name) else {
            continue;
        };
        let show = |r: &crate::report::ModuleRow| {
            if r.builtin {
                "builtin".to_string()
            } else {
                match r.state {
                    None => format!("absent, {} init", r.init_calls),
                    Some(st) => format!(
                        "{} refs {} [{}], {} init",
                        st.name(),
                        r.refcount,
                        r.used_by.join(","),
                        r.init_calls
                    ),
                }
            }
        };
        let (ls, rs) = (show(lr), show(rr));
        let mark = if ls == rs { " " } else { "≠" };
        let _ = writeln!(
            s,
            "{mark} {:<22} {:<lw$} {}",
            truncate(&format!("module {}", lr.name), 22),
            truncate(&ls, lw),
            rs
        );
    }
    let _ = writeln!(
        s,
        "  {:<22} {:<lw$} {}",
        "ended at",
        format_duration(left.end_time),
        format_duration(right.end_time)
    );
    let behaviour: Vec<&Difference> = diffs
        .iter()
        .filter(|d| d.kind == DiffKind::Behaviour)
        .collect();
    let timing: Vec<&Difference> = diffs
        .iter()
        .filter(|d| d.kind == DiffKind::Timing)
        .collect();
    if behaviour.is_empty() {
        let _ = writeln!(s, "\nno behaviour differs");
    } else {
        let _ = writeln!(s, "\n{} difference(s):", behaviour.len());
        for d in behaviour {
            let _ = writeln!(s, "  {}: {}  |  {}", d.item, d.left, d.right);
        }
    }
    for d in timing {
        let _ = writeln!(
            s,
            "  timing (emulation, within tolerance): {}: {}  |  {}",
            d.item, d.left, d.right
        );
    }
    s
}

fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modkit_core::kernel::LogLine;

    fn log(lines: &[&str]) -> Vec<LogLine> {
        lines
            .iter()
            .map(|t| LogLine {
                time: 0,
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn log_diff_finds_missing_extra_and_counts() {
        let a = log(&["x", "y", "y", "z"]);
        let b = log(&["x", "y", "w", "z"]);
        let d = log_differences(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].left, "y ×2");
        assert_eq!(d[0].right, "y ×1");
        assert_eq!(d[1].right, "w");
        assert!(log_differences(&a, &a).is_empty());
    }
}
