//! `fnmatch(pattern, string, 0)` as glibc implements it for the ASCII patterns found in
//! module aliases and modprobe.d: `*`, `?`, bracket expressions (`[a-z]`, `[!x]`, `[^x]`,
//! `[[:digit:]]`) and backslash escapes.

/// Does `s` match the shell glob `pat` (no flags)?
pub fn fnmatch(pat: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking (sufficient for flags = 0, where `*`
    // matches any sequence including `/`).
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    while p < pat.len() && pat[p] == b'*' {
                        p += 1;
                    }
                    if p == pat.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' if i < s.len() => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' if i < s.len() => {
                    if let Some((matched, next)) = bracket(pat, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        // Not a valid bracket expression: `[` matches itself.
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pat.len() && i < s.len() && s[i] == pat[p + 1] => {
                    p += 2;
                    i += 1;
                    continue;
                }
                // An escape that does not match: fall through to backtracking.
                b'\\' if p + 1 < pat.len() => {}
                c if c != b'?' && c != b'[' && i < s.len() && s[i] == c => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        } else if i == s.len() {
            return true;
        }
        match star {
            Some((sp, si)) if si < s.len() => {
                star = Some((sp, si + 1));
                p = sp;
                i = si + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the bracket expression starting at `pat[start] == b'['`.
/// Returns `(matched, index after the expression)`, or `None` if it is not terminated.
fn bracket(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut p = start + 1;
    let negate = matches!(pat.get(p), Some(b'!') | Some(b'^'));
    if negate {
        p += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *pat.get(p)?;
        if ch == b']' && !first {
            p += 1;
            break;
        }
        first = false;
        if ch == b'[' && pat.get(p + 1) == Some(&b':') {
            let rest = &pat[p + 2..];
            if let Some(end) = rest.windows(2).position(|w| w == b":]") {
                let class = &rest[..end];
                let hit = match class {
                    b"alpha" => c.is_ascii_alphabetic(),
                    b"digit" => c.is_ascii_digit(),
                    b"alnum" => c.is_ascii_alphanumeric(),
                    b"upper" => c.is_ascii_uppercase(),
                    b"lower" => c.is_ascii_lowercase(),
                    b"space" => c.is_ascii_whitespace() || c == 0x0b,
                    b"xdigit" => c.is_ascii_hexdigit(),
                    b"punct" => c.is_ascii_punctuation(),
                    b"print" => (0x20..0x7f).contains(&c),
                    b"graph" => (0x21..0x7f).contains(&c),
                    b"cntrl" => c < 0x20 || c == 0x7f,
                    b"blank" => c == b' ' || c == b'\t',
                    _ => return None,
                };
                matched |= hit;
                p += 2 + end + 2;
                continue;
            }
        }
        let lo = if ch == b'\\' {
            p += 1;
            *pat.get(p)?
        } else {
            ch
        };
        p += 1;
        if pat.get(p) == Some(&b'-') && pat.get(p + 1).is_some_and(|&n| n != b']') {
            let mut hi = pat[p + 1];
            p += 2;
            if hi == b'\\' {
                hi = *pat.get(p)?;
                p += 1;
            }
            matched |= lo <= c && c <= hi;
        } else {
            matched |= lo == c;
        }
    }
    Some((matched != negate, p))
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn globs() {
        let m = |p: &str, s: &str| fnmatch(p.as_bytes(), s.as_bytes());
        assert!(m(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00"
        ));
        assert!(!m(
            "pci:v00001AF4d*sv*sd*bc03*",
            "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00"
        ));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("usb:v[0-9]*", "usb:v5x"));
        assert!(!m("usb:v[!0-9]*", "usb:v5x"));
        assert!(m("x[[:digit:]]y", "x7y"));
        assert!(m("*", ""));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("a[", "a["));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("abc", "abcd"));
    }
}
