//! Per-phase timing of one tool run, for measuring where a modprobe storm's time goes
//! (issue 12 item 3): with `MODKIT_TRACE_TIMES=FILE` set, [`mark`] notes the monotonic
//! clock and the process's CPU time at each named point, and [`flush`] appends them to
//! FILE as one line (`pid NAME:WALL_US/CPU_US ...`, both since the first mark; the
//! first mark's CPU time is what the process used before it: dynamic loading, the
//! runtime's start-up, `main`'s set-up). Unset, a mark costs one check of a flag.

use std::io::Write;
use std::sync::Mutex;
use std::sync::OnceLock;

struct Marks {
    file: std::path::PathBuf,
    marks: Vec<(&'static str, u64, u64)>,
}

fn state() -> Option<&'static Mutex<Marks>> {
    static S: OnceLock<Option<Mutex<Marks>>> = OnceLock::new();
    S.get_or_init(|| {
        std::env::var_os("MODKIT_TRACE_TIMES")
            .filter(|v| !v.is_empty())
            .map(|f| {
                Mutex::new(Marks {
                    file: f.into(),
                    marks: Vec::new(),
                })
            })
    })
    .as_ref()
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Notes the point `name` (when `MODKIT_TRACE_TIMES` is set).
pub fn mark(name: &'static str) {
    if let Some(s) = state() {
        let wall = clock_ns(libc::CLOCK_MONOTONIC);
        let cpu = clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
        if let Ok(mut m) = s.lock() {
            m.marks.push((name, wall, cpu));
        }
    }
}

/// The marks as one line: `pid NAME:WALL_US/CPU_US ...` (the first mark's values are
/// absolute: monotonic clock and CPU time used before it; the others are since it).
fn line(pid: u32, marks: &[(&'static str, u64, u64)]) -> String {
    let mut s = pid.to_string();
    let (w0, c0) = marks.first().map_or((0, 0), |m| (m.1, m.2));
    for (i, (name, w, c)) in marks.iter().enumerate() {
        let (w, c) = if i == 0 { (*w, *c) } else { (w - w0, c - c0) };
        s.push_str(&format!(" {name}:{}/{}", w / 1000, c / 1000));
    }
    s.push('\n');
    s
}

/// Appends the marks to the file (one `write`, so concurrent runs do not interleave).
pub fn flush() {
    let Some(s) = state() else { return };
    let Ok(m) = s.lock() else { return };
    if m.marks.is_empty() {
        return;
    }
    let text = line(std::process::id(), &m.marks);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&m.file)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_relative_to_the_first_mark() {
        let l = line(
            7,
            &[
                ("start", 5_000_000, 2_000_000),
                ("end", 8_000_000, 3_500_000),
            ],
        );
        assert_eq!(l, "7 start:5000/2000 end:3000/1500\n");
    }
}
