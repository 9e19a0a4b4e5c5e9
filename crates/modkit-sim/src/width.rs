//! Text that lines up in a terminal whatever the script: widths by display columns
//! (a CJK character takes two, a combining mark none), and right-to-left names isolated so
//! that they cannot reorder the columns around them.

use unicode_width::UnicodeWidthStr;

/// First strong isolate (U+2068): the text up to [`PDI`] takes its own direction.
const FSI: char = '\u{2068}';
/// Pop directional isolate (U+2069).
const PDI: char = '\u{2069}';

/// Columns `s` takes in a terminal.
pub fn display_width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// True when `s` has a right-to-left character (Hebrew, Arabic, Syriac, Thaana, N'Ko and
/// the other right-to-left blocks, and their presentation forms).
pub fn has_rtl(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c as u32,
            0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF | 0x10800..=0x10FFF | 0x1E800..=0x1EFFF)
    })
}

/// `s` as a table cell: wrapped in directional isolates when it has right-to-left text.
pub fn cell(s: &str) -> String {
    if has_rtl(s) {
        format!("{FSI}{s}{PDI}")
    } else {
        s.to_string()
    }
}

/// `s` as a cell padded with spaces to `width` columns (never cut).
pub fn pad(s: &str, width: usize) -> String {
    let mut out = cell(s);
    let w = display_width(s);
    out.push_str(&" ".repeat(width.saturating_sub(w)));
    out
}

/// `s` cut to at most `max` columns, with `…` at the end when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if display_width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_count_columns() {
        assert_eq!(display_width("ab"), 2);
        assert_eq!(display_width("模块"), 4);
        assert_eq!(display_width("שלום"), 4);
        assert_eq!(pad("模块", 6), "模块  ");
        assert_eq!(display_width(&pad("שלום", 6)), 6);
        assert!(pad("שלום", 6).starts_with('\u{2068}'));
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("模块模块", 5), "模块…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
