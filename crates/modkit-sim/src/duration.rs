//! Durations as scenario files write them: `"0s"`, `"10ms"`, `"1.5s"`, `"2m"`.

use modkit_core::Time;

/// The longest duration a scenario may write, in nanoseconds (10^9 s, about 31 years):
/// sums of a few of them cannot overflow the 64-bit virtual clock.
pub const MAX_DURATION: Time = 1_000_000_000_000_000_000;

/// Parses a duration into nanoseconds of virtual time.
pub fn parse_duration(s: &str) -> Result<Time, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("duration `{s}` has no unit: write it like \"10ms\", \"1.5s\" or \"2m\"")
        })?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration `{s}` does not start with a number"))?;
    let scale: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(format!(
                "duration `{s}` has unknown unit `{unit}` (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let ns = value * scale;
    if !ns.is_finite() || ns > MAX_DURATION as f64 {
        return Err(format!(
            "duration `{s}` is too large: the most is {} (about 31 years)",
            format_duration(MAX_DURATION)
        ));
    }
    Ok(ns.round() as Time)
}

/// Formats nanoseconds the way reports print them: `30s`, `1.5s`, `10ms`.
pub fn format_duration(ns: Time) -> String {
    if ns == 0 {
        "0s".into()
    } else if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns >= 1_000_000_000 {
        format!(
            "{}s",
            format!("{:.6}", ns as f64 / 1e9).trim_end_matches('0')
        )
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_format_examples() {
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("10ms"), Ok(10_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        let e = parse_duration("99999999999s").unwrap_err();
        assert!(e.contains("the most is 1000000000s"), "{e}");
        assert_eq!(parse_duration("1000000000s"), Ok(MAX_DURATION));
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(30_000_000_000), "30s");
        assert_eq!(format_duration(1_500_000_000), "1.5s");
        assert_eq!(format_duration(10_000_000), "10ms");
        assert_eq!(format_duration(0), "0s");
    }
}
