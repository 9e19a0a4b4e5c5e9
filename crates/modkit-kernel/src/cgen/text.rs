//! Text helpers for generated C: string literals, identifiers, percent-encoding.

/// `s` as a C string literal (quotes included). Bytes outside printable ASCII, `"`, `\`
/// and `?` (trigraphs) are escaped; octal escapes are always three digits so that a
/// following digit cannot extend them.
pub(crate) fn c_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'?' => out.push_str("\\?"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// `s` made safe for a C comment on one line.
pub(crate) fn c_comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace("*/", "*\\/")
}

/// True for a C identifier (`[A-Za-z_][A-Za-z0-9_]*`) that is not a C keyword.
pub(crate) fn is_c_ident(s: &str) -> bool {
    let mut chars = s.bytes();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == b'_') && !C_KEYWORDS.contains(&s)
}

const C_KEYWORDS: &[&str] = &[
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "asm",
    "typeof",
    "_Bool",
    "_Static_assert",
    "_Alignas",
    "_Alignof",
    "_Atomic",
    "_Generic",
    "_Noreturn",
    "_Thread_local",
    "bool",
    "true",
    "false",
    "NULL",
    "current",
];

/// The plan's percent-encoding (docs/kernel-driver.md): every byte outside
/// `[A-Za-z0-9_.,:*?+=/@-]` becomes `%XX`; an empty string is `%`.
pub(crate) fn percent(s: &str) -> String {
    if s.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.,:*?+=/@-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_strings_escape_what_c_would_misread() {
        assert_eq!(c_str("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(c_str("x??=y"), r#""x\?\?=y""#);
        assert_eq!(c_str("é1"), r#""\303\2511""#);
        assert_eq!(c_str("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn identifiers_and_percent() {
        assert!(is_c_ident("drm_dev_register"));
        assert!(is_c_ident("_x1"));
        assert!(!is_c_ident("1x"));
        assert!(!is_c_ident("a-b"));
        assert!(!is_c_ident("int"));
        assert!(!is_c_ident(""));
        assert_eq!(percent(""), "%");
        assert_eq!(percent("a b%"), "a%20b%25");
        assert_eq!(percent("cpu:type:x86,ven*"), "cpu:type:x86,ven*");
        assert_eq!(c_comment("a */ b\n"), "a *\\/ b?");
    }
}
