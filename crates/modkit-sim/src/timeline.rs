//! A picture of a run: one row per module showing its state over virtual time (unformed,
//! coming, live, going), the events as dashed lines, the diagnostics as marks. Written as
//! a standalone SVG file (`modkit simulate --svg FILE`).

use std::fmt::Write as _;

use modkit_core::{ModState, Time};

use crate::duration::format_duration;
use crate::scenario::Scenario;
use crate::sim::Run;

const LEFT: f64 = 170.0;
const WIDTH: f64 = 900.0;
const ROW: f64 = 24.0;
const TOP: f64 = 84.0;

fn color(s: ModState) -> &'static str {
    match s {
        ModState::Unformed => "#9e9e9e",
        ModState::Coming => "#f0b429",
        ModState::Live => "#2e7d32",
        ModState::Going => "#c62828",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Picks tick spacing for an axis of length `end` (about 8 ticks, 1-2-5 steps).
fn tick_step(end: Time) -> Time {
    let raw = (end / 8).max(1);
    let mut step: Time = 1;
    loop {
        for m in [1, 2, 5] {
            if step * m >= raw {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// Renders the run as SVG. The run must have been made with history recording on
/// ([`crate::Sim::with_history`]); modules that never changed state are left out.
pub fn svg(sc: &Scenario, title: &str, run: &Run) -> String {
    let k = &run.kernel;
    let end = run.end_time.max(1);
    let x = |t: Time| LEFT + WIDTH * (t as f64 / end as f64);
    let mut rows: Vec<usize> = Vec::new();
    for &(_, m, _) in &k.history {
        if !rows.contains(&m) {
            rows.push(m);
        }
    }
    rows.sort();
    let height = TOP + ROW * rows.len() as f64 + 120.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
        w = LEFT + WIDTH + 70.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="40" fill="#555">policy {}, ended at {} of virtual time</text>"##,
        esc(&k.policy.to_string()),
        format_duration(run.end_time)
    );
    // Time axis.
    let axis_y = TOP + ROW * rows.len() as f64 + 8.0;
    let step = tick_step(end);
    let mut t = 0;
    while t <= end {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle" fill="#555">{4}</text>"##,
            x(t),
            TOP - 6.0,
            axis_y,
            axis_y + 14.0,
            format_duration(t)
        );
        t += step;
    }
    // Rows.
    for (row, &m) in rows.iter().enumerate() {
        let y = TOP + ROW * row as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 15.0,
            esc(k.name(m))
        );
        let inits = k.init_calls[m];
        if inits > 1 {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" fill="#555" font-size="11">{inits} inits</text>"##,
                LEFT + WIDTH + 4.0,
                y + 15.0
            );
        }
        let changes: Vec<(Time, Option<ModState>)> = k
            .history
            .iter()
            .filter(|h| h.1 == m)
            .map(|h| (h.0, h.2))
            .collect();
        for (i, &(t0, st)) in changes.iter().enumerate() {
            let Some(st) = st else { continue };
            let t1 = changes.get(i + 1).map(|c| c.0).unwrap_or(run.end_time);
            let w = (x(t1) - x(t0)).max(1.5);
            let _ = writeln!(
                s,
                r#"<rect x="{:.2}" y="{}" width="{w:.2}" height="{}" fill="{}"><title>{} {} from {} to {}</title></rect>"#,
                x(t0),
                y + 3.0,
                ROW - 6.0,
                color(st),
                esc(k.name(m)),
                st.name(),
                format_duration(t0),
                format_duration(t1)
            );
        }
    }
    // Events (those at one instant share a line and a label).
    let mut at: Vec<(Time, Vec<&str>)> = Vec::new();
    for ev in &sc.events {
        match at.iter_mut().find(|(t, _)| *t == ev.at) {
            Some((_, ids)) => ids.push(&ev.id),
            None => at.push((ev.at, vec![&ev.id])),
        }
    }
    for (t, ids) in at {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#1565c0" stroke-dasharray="3,3"/><text x="{0:.1}" y="{3}" fill="#1565c0" font-size="11" transform="rotate(-30 {0:.1} {3})">{4}</text>"##,
            x(t),
            TOP - 4.0,
            axis_y,
            TOP - 8.0,
            esc(&ids.join(", "))
        );
    }
    // Diagnostics.
    let dy = axis_y + 34.0;
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">diagnostics</text>"#,
        LEFT - 8.0,
        dy + 4.0
    );
    for d in &k.diagnostics {
        let cx = x(d.time);
        let _ = writeln!(
            s,
            r##"<path d="M{:.1},{} l5,9 l-10,0 z" fill="#c62828"><title>{}: {}</title></path>"##,
            cx,
            dy - 6.0,
            d.kind.name(),
            esc(&d.message)
        );
    }
    let mut kinds: Vec<&str> = k.diagnostics.iter().map(|d| d.kind.name()).collect();
    kinds.dedup();
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" fill="#c62828">{}</text>"##,
        LEFT,
        dy + 22.0,
        esc(&kinds.join(", "))
    );
    // Legend.
    let ly = dy + 44.0;
    for (i, st) in [
        ModState::Unformed,
        ModState::Coming,
        ModState::Live,
        ModState::Going,
    ]
    .into_iter()
    .enumerate()
    {
        let lx = LEFT + 110.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="14" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            ly - 10.0,
            color(st),
            lx + 20.0,
            ly,
            st.name()
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(8), 1);
        assert_eq!(tick_step(120_000_000_000), 20_000_000_000);
        assert_eq!(tick_step(30_000_000), 5_000_000);
    }

    #[test]
    fn draws_a_bar_per_state() {
        let sc = crate::parse(
            "t.toml",
            "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ sleep = \"1s\" }]\n[[event]]\nid = \"boot\"\nmodprobe = \"a\"\n",
        )
        .unwrap();
        let run = crate::Sim::new(&sc, sc.policy, 0)
            .with_history()
            .run()
            .unwrap();
        let svg = svg(&sc, "t", &run);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a coming from"));
        assert!(svg.contains("a unformed from"));
        assert!(svg.contains(">boot<"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
