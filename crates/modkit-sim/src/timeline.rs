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
/// Room right of the plot for "N inits".
const RIGHT: f64 = 110.0;
const ROW: f64 = 24.0;
/// Where the event labels' first lane sits (below the title and the subtitle).
const LABELS_TOP: f64 = 60.0;
/// Height of one lane of event labels.
const LANE: f64 = 14.0;
/// At most this many lanes; labels that fit none are cut to fit the last.
const MAX_LANES: usize = 4;
/// Estimated width of one display column at font-size 11 (wide characters take two).
const COL11: f64 = 6.6;

/// An event label placed in a lane: its marker, text, anchor and extent.
struct Label {
    x: f64,
    text: String,
    full: String,
    end_anchor: bool,
    lane: usize,
}

/// Places labels (sorted by x) in lanes so that none overlaps another, the title or the
/// edges: each sits at its marker, starting there, or ending there when it would run off
/// the right edge; one that fits no lane is cut to fit the room in the last lane.
fn place_labels(marks: Vec<(f64, String)>, right_edge: f64) -> Vec<Label> {
    let mut lanes: Vec<f64> = Vec::new(); // right extent used in each lane
    let mut out = Vec::new();
    for (x, full) in marks {
        let text = crate::width::truncate(&full, 60);
        let w = crate::width::display_width(&text) as f64 * COL11;
        let end_anchor = x + w > right_edge;
        let (x0, x1) = if end_anchor { (x - w, x) } else { (x, x + w) };
        let lane = lanes.iter().position(|&used| used + 6.0 <= x0);
        let (lane, text, end_anchor, x1) = match lane {
            Some(l) => (l, text, end_anchor, x1),
            None if lanes.len() < MAX_LANES => {
                lanes.push(f64::MIN);
                (lanes.len() - 1, text, end_anchor, x1)
            }
            None => {
                // No lane has room: end the label at its marker, cut to the room left
                // in the emptiest lane; with no room at all only the tooltip remains.
                let (l, used) = lanes
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap_or((0, 0.0));
                let cols = ((x - used - 6.0) / COL11).floor();
                let text = if cols >= 2.0 {
                    crate::width::truncate(&full, cols as usize)
                } else {
                    String::new()
                };
                (l, text, true, x)
            }
        };
        lanes[lane] = lanes[lane].max(x1);
        out.push(Label {
            x,
            text,
            full,
            end_anchor,
            lane,
        });
    }
    out
}

fn color(s: ModState) -> &'static str {
    match s {
        ModState::Unformed => "#9e9e9e",
        ModState::Coming => "#f0b429",
        ModState::Live => "#2e7d32",
        ModState::Going => "#c62828",
    }
}

/// Most device rows drawn; the others are counted in one line.
const MAX_DEVICE_ROWS: usize = 40;

fn device_color(state: &str) -> Option<&'static str> {
    match state {
        "unbound" => Some("#cfd8dc"),
        "probing" => Some("#f0b429"),
        "deferred" => Some("#7e57c2"),
        "bound" => Some("#2e7d32"),
        "removing" => Some("#c62828"),
        _ => None,
    }
}

/// The devices to draw, in the order they first changed: those a driver ever probed,
/// bound or deferred first (they are the story), then the others, at most
/// [`MAX_DEVICE_ROWS`]; and how many were left out.
fn device_rows(run: &Run) -> (Vec<&str>, usize) {
    let mut all: Vec<&str> = Vec::new();
    let mut busy: Vec<&str> = Vec::new();
    for (_, d, st, _) in &run.device_history {
        if !all.contains(&d.as_str()) {
            all.push(d);
        }
        if matches!(*st, "probing" | "bound" | "deferred" | "removing")
            && !busy.contains(&d.as_str())
        {
            busy.push(d);
        }
    }
    let mut rows: Vec<&str> = busy.clone();
    rows.extend(all.iter().filter(|d| !busy.contains(d)));
    let left = rows.len().saturating_sub(MAX_DEVICE_ROWS);
    rows.truncate(MAX_DEVICE_ROWS);
    (rows, left)
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
    // Event labels first: how many lanes they need decides where the rows start.
    let mut at: Vec<(Time, Vec<&str>)> = Vec::new();
    for ev in &sc.events {
        match at.iter_mut().find(|(t, _)| *t == ev.at) {
            Some((_, ids)) => ids.push(&ev.id),
            None => at.push((ev.at, vec![&ev.id])),
        }
    }
    at.sort_by_key(|(t, _)| *t);
    let total_width = LEFT + WIDTH + RIGHT;
    let labels = place_labels(
        at.iter().map(|(t, ids)| (x(*t), ids.join(", "))).collect(),
        total_width - 6.0,
    );
    let lanes = labels.iter().map(|l| l.lane + 1).max().unwrap_or(1);
    #[allow(non_snake_case)]
    let TOP = LABELS_TOP + LANE * lanes as f64 + 10.0;
    let (dev_rows, dev_left) = device_rows(run);
    // Device rows below the module rows, after a heading row; one more row counts the
    // devices left out.
    let dev_extra = if dev_rows.is_empty() {
        0
    } else {
        1 + dev_rows.len() + usize::from(dev_left > 0)
    };
    let nrows = rows.len() + dev_extra;
    let height = TOP + ROW * nrows as f64 + 120.0 + if dev_rows.is_empty() { 0.0 } else { 22.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
        w = total_width
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // The title, cut to the picture's width (about 9 px a column in bold 15).
    let cols = ((total_width - 20.0) / 9.0) as usize;
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}<title>{}</title></text>"#,
        esc(&crate::width::truncate(title, cols)),
        esc(title)
    );
    let inits: u64 = k.init_calls.iter().map(|&n| u64::from(n)).sum();
    let threads: u64 = sc.events.iter().map(|e| u64::from(e.threads)).sum();
    let _ = writeln!(
        s,
        r##"<text x="10" y="40" fill="#555">policy {}, ended at {} of virtual time; {} init{} ran ({} event thread{})</text>"##,
        esc(&k.policy.to_string()),
        format_duration(run.end_time),
        inits,
        if inits == 1 { "" } else { "s" },
        threads,
        if threads == 1 { "" } else { "s" }
    );
    // Time axis.
    let axis_y = TOP + ROW * nrows as f64 + 8.0;
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
        // Names are cut to the room left of the plot (about 7 px a column).
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}<title>{}</title></text>"#,
            LEFT - 8.0,
            y + 15.0,
            esc(&crate::width::truncate(
                k.name(m),
                ((LEFT - 16.0) / 7.0) as usize
            )),
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
    // Device rows: each device's state over time (from the device's first change).
    if !dev_rows.is_empty() {
        let hy = TOP + ROW * rows.len() as f64;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555" font-style="italic">devices</text><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#bbb"/>"##,
            LEFT - 8.0,
            hy + 15.0,
            LEFT,
            hy + 10.0,
            LEFT + WIDTH,
            hy + 10.0
        );
        for (r, dev) in dev_rows.iter().enumerate() {
            let y = TOP + ROW * (rows.len() + 1 + r) as f64;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}<title>{}</title></text>"#,
                LEFT - 8.0,
                y + 15.0,
                esc(&crate::width::truncate(dev, ((LEFT - 16.0) / 7.0) as usize)),
                esc(dev)
            );
            let changes: Vec<&(Time, String, &str, Option<String>)> =
                run.device_history.iter().filter(|h| h.1 == *dev).collect();
            for (i, (t0, _, st, drv)) in changes.iter().map(|c| (c.0, &c.1, c.2, &c.3)).enumerate()
            {
                let Some(fill) = device_color(st) else {
                    continue;
                };
                let t1 = changes.get(i + 1).map(|c| c.0).unwrap_or(run.end_time);
                let w = (x(t1) - x(t0)).max(1.5);
                let who = drv
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.2}" y="{}" width="{w:.2}" height="{}" fill="{fill}"><title>{} {st}{} from {} to {}</title></rect>"#,
                    x(t0),
                    y + 5.0,
                    ROW - 10.0,
                    esc(dev),
                    esc(&who),
                    format_duration(t0),
                    format_duration(t1)
                );
            }
            // The driver bound at the end, right of the plot.
            if let Some((_, _, "bound", Some(d))) = changes.last().map(|c| (c.0, &c.1, c.2, &c.3)) {
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" fill="#555" font-size="11">{}</text>"##,
                    LEFT + WIDTH + 4.0,
                    y + 15.0,
                    esc(&crate::width::truncate(d, 15))
                );
            }
        }
        if dev_left > 0 {
            let y = TOP + ROW * (rows.len() + 1 + dev_rows.len()) as f64;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" fill="#555">… and {dev_left} more device{}</text>"##,
                LEFT,
                y + 15.0,
                if dev_left == 1 { "" } else { "s" }
            );
        }
    }
    // Events (those at one instant share a line and a label), each label in its lane at
    // its marker.
    for l in &labels {
        let ly = LABELS_TOP + LANE * l.lane as f64;
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#1565c0" stroke-dasharray="3,3"/><text x="{0:.1}" y="{3}" fill="#1565c0" font-size="11"{4}>{5}<title>{6}</title></text>"##,
            l.x,
            ly + 3.0,
            axis_y,
            ly,
            if l.end_anchor {
                r#" text-anchor="end""#
            } else {
                ""
            },
            esc(&l.text),
            esc(&l.full)
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
    if !dev_rows.is_empty() {
        let ly = ly + 22.0;
        for (i, st) in ["unbound", "probing", "deferred", "bound", "removing"]
            .into_iter()
            .enumerate()
        {
            let lx = LEFT + 135.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="{}" width="14" height="8" fill="{}"/><text x="{}" y="{}">device {st}</text>"#,
                ly - 8.0,
                device_color(st).unwrap_or("#fff"),
                lx + 20.0,
                ly
            );
        }
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

    /// (x, y, anchored at the end, text) of every event label.
    fn event_labels(svg: &str) -> Vec<(f64, f64, bool, String)> {
        svg.lines()
            .filter(|l| l.contains(r##"stroke="#1565c0""##))
            .map(|l| {
                let t = &l[l.find("<text").unwrap()..];
                let num = |k: &str| -> f64 {
                    let i = t.find(k).unwrap() + k.len();
                    t[i..i + t[i..].find('"').unwrap()].parse().unwrap()
                };
                let text = t[t.find('>').unwrap() + 1..t.find("<title>").unwrap()].to_string();
                (
                    num(" x=\""),
                    num(" y=\""),
                    t.contains("text-anchor=\"end\""),
                    text,
                )
            })
            .collect()
    }

    #[test]
    fn event_labels_stay_clear_of_the_title_and_the_edges() {
        let mut text = String::from(
            "policy = \"linux-6.1\"\n[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ sleep = \"50ms\" }, { fail = \"ENODEV\" }]\n[[event]]\nid = \"storm_of_failing_modprobes\"\nthreads = 20\nmodprobe = \"a\"\n",
        );
        for i in 0..12 {
            text.push_str(&format!(
                "[[event]]\nid = \"a_rather_long_event_name_number_{i}_模块\"\nat = \"{}ms\"\nmodprobe = \"a\"\n",
                i * 3
            ));
        }
        text.push_str("[[event]]\nid = \"the_very_last_event_with_a_long_name\"\nat = \"1.6s\"\nmodprobe = \"a\"\n");
        let sc = crate::parse("t.toml", &text).unwrap();
        let run = crate::Sim::new(&sc, sc.policy, 0)
            .with_history()
            .run()
            .unwrap();
        let svg = svg(&sc, &"a long title ".repeat(40), &run);
        let total = LEFT + WIDTH + RIGHT;
        let labels = event_labels(&svg);
        assert_eq!(labels.len(), 13, "events at one instant share a label");
        let mut boxes = Vec::new();
        for (x, y, end, t) in labels.iter().filter(|l| !l.3.is_empty()) {
            let w = crate::width::display_width(t) as f64 * COL11;
            let (x0, x1) = if *end { (x - w, *x) } else { (*x, x + w) };
            assert!(x0 >= 0.0 && x1 <= total, "{t} runs off: {x0}..{x1}");
            assert!(*y - 11.0 > 40.0, "{t} overlaps the title at y {y}");
            for (bx0, bx1, by) in &boxes {
                assert!(
                    *by != *y || x1 <= *bx0 || x0 >= *bx1,
                    "{t} overlaps another label"
                );
            }
            boxes.push((x0, x1, *y));
        }
        // Labels sit at their markers.
        for l in svg.lines().filter(|l| l.contains(r##"stroke="#1565c0""##)) {
            let x1 = &l[l.find("x1=\"").unwrap() + 4..];
            let x1 = &x1[..x1.find('"').unwrap()];
            assert!(l.contains(&format!("<text x=\"{x1}\"")), "{l}");
        }
        // The last event sits at the right edge: its label ends at its marker.
        assert!(labels.last().unwrap().2);
        // A storm picture says how many inits ran.
        assert!(svg.contains("; 33 inits ran (33 event threads)"), "{svg}");
        // The title is cut to the width, its full text kept in a tooltip.
        assert!(svg.contains("…<title>a long title"), "{svg}");
    }

    #[test]
    fn draws_device_rows_with_their_states_and_drivers() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/scenarios/deferred-probe-timeout.toml"
        ))
        .unwrap();
        let sc = crate::parse("deferred-probe-timeout.toml", &text).unwrap();
        let run = crate::Sim::new(&sc, "linux-6.1".parse().unwrap(), 0)
            .with_history()
            .run()
            .unwrap();
        assert!(!run.device_history.is_empty());
        let svg = svg(&sc, "t", &run);
        assert!(svg.contains(">devices<"), "a heading row");
        assert!(
            svg.contains("camera deferred from 1.001s to 11.002s"),
            "{svg}"
        );
        assert!(svg.contains("sensor2 bound (imx219) from"), "{svg}");
        // Without history recording there are no device rows.
        let plain = crate::Sim::new(&sc, "linux-6.1".parse().unwrap(), 0)
            .run()
            .unwrap();
        assert!(plain.device_history.is_empty());
    }

    #[test]
    fn many_devices_are_capped_and_counted() {
        let sc = crate::parse(
            "t.toml",
            "udev = {}\n[[device]]\nname = \"cpu\"\nbus = \"cpu\"\nmodalias = \"cpu:x\"\ncount = 100\n[[module]]\nname = \"m\"\n[[module.driver]]\nbus = \"cpu\"\nmatch = [\"cpu:x\"]\n",
        )
        .unwrap();
        let run = crate::Sim::new(&sc, sc.policy, 0)
            .with_history()
            .run()
            .unwrap();
        let svg = svg(&sc, "t", &run);
        assert_eq!(
            svg.matches(" bound (m) from").count(),
            MAX_DEVICE_ROWS,
            "{svg}"
        );
        assert!(svg.contains("and 60 more devices"), "{svg}");
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
