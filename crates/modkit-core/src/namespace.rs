//! Symbol namespaces by kernel version: `module:` namespaces (6.16+) and the syntax of
//! `MODULE_IMPORT_NS` that a hint should give (6.13+ takes a string literal).
//!
//! Sources (kernel/module/main.c, torvalds/linux c550f0055c5d):
//! - `verify_module_namespace()`: a namespace `module:PATTERNS` (comma-separated, each
//!   pattern may end in `*`, a tail glob) lets a module whose name matches use the symbol
//!   without importing anything; names compare with `mod_strncmp()`, where `-` and `_`
//!   are equal (092a4f5985f2 "module: Add module specific symbol namespace support" with
//!   "module: Extend the module namespace parsing" and "module: Account for the build time
//!   module name mangling", merged for 6.16; the macro `EXPORT_SYMBOL_GPL_FOR_MODULES()`
//!   was renamed `EXPORT_SYMBOL_FOR_MODULES()` by 6d3c3ca4c77e in 6.17, same namespace
//!   string). A module that does not match falls through to the `import_ns` loop and is
//!   refused as before: "module uses symbol (X) from namespace module:…, but does not
//!   import it." (EINVAL).
//! - `setup_modinfo()`: an explicit `MODULE_IMPORT_NS("module:…")` is refused before any
//!   symbol is resolved: "%s: module tries to import module namespace: %s" and -EPERM.
//! - cdd30ebb1b9f "module: Convert symbol namespace to string literal" (6.13-rc2,
//!   2 Dec 2024): `MODULE_IMPORT_NS("NS")`; before it `MODULE_IMPORT_NS(NS)`.
//!
//! Before 6.16 a `module:` namespace is an ordinary namespace string: only an explicit
//! import of exactly that string satisfies it.
//!
//! The `-` = `_` rule is the loader's only: `mod->name` is the mangled `KBUILD_MODNAME`
//! (`s/-/_/g`), so 0267cbf297bf "module: Account for the build time module name mangling"
//! made `verify_module_namespace()` compare with `mod_strncmp()`. modpost (a build-time
//! check this crate does not model) still compares with `strncmp()` against the unmangled
//! object name and so warns that `ns_user_a` does not import `module:ns-user*`. Measured on
//! Debian's 7.2.13: `ns_user_a`, an out-of-tree module, uses a symbol exported to
//! `module:ns-user*` and loads (examples/scenarios/module-namespaces.toml).

use crate::diag::DiagKind;
use crate::errno::Errno;
use crate::kernel::{Kernel, ModId};
use crate::policy::{Policy, Version};

/// The prefix of a module namespace (`MODULE_NS_PREFIX` in later kernels).
pub const MODULE_NS_PREFIX: &str = "module:";

/// True when `ns` is a `module:` namespace (by its spelling; whether the kernel treats it
/// specially depends on the version, see [`Policy::module_namespaces`]).
pub fn is_module_namespace(ns: &str) -> bool {
    ns.starts_with(MODULE_NS_PREFIX)
}

/// `mod_strncmp(a, b, n) == 0`: the first `n` bytes equal, `-` and `_` counting as one;
/// a string that ends before `n` bytes only equals one that ends at the same place.
fn mod_prefix_eq(pattern: &[u8], name: &[u8], n: usize) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    for i in 0..n {
        let a = pattern.get(i).copied().unwrap_or(0);
        let b = name.get(i).copied().unwrap_or(0);
        if norm(a) != norm(b) {
            return false;
        }
        if a == 0 {
            return true;
        }
    }
    true
}

/// `verify_module_namespace(namespace, modname)` of 6.16+: true when `ns` is a `module:`
/// namespace one of whose comma-separated patterns matches `modname` (exactly, or as a
/// prefix when the pattern ends in `*`; `-` and `_` are equal).
pub fn module_namespace_allows(ns: &str, modname: &str) -> bool {
    let Some(patterns) = ns.strip_prefix(MODULE_NS_PREFIX) else {
        return false;
    };
    let name = modname.as_bytes();
    // strchrnul(',') walk: an empty piece (",," or a trailing ',') is a zero-length
    // pattern, which matches nothing unless it is "*".
    let mut rest = patterns.as_bytes();
    while !rest.is_empty() {
        let end = rest.iter().position(|&c| c == b',').unwrap_or(rest.len());
        let piece = &rest[..end];
        let (pat, glob) = match piece.split_last() {
            Some((b'*', head)) => (head, true),
            _ => (piece, false),
        };
        if mod_prefix_eq(pat, name, pat.len()) && (glob || pat.len() == name.len()) {
            return true;
        }
        rest = if end < rest.len() {
            &rest[end + 1..]
        } else {
            &[]
        };
    }
    false
}

/// The explicit import of a `module:` namespace that `setup_modinfo()` refuses (6.16+):
/// the first such entry of `import_namespaces`.
pub fn forbidden_import(import_namespaces: &[String]) -> Option<&str> {
    import_namespaces
        .iter()
        .map(String::as_str)
        .find(|ns| is_module_namespace(ns))
}

/// The `MODULE_IMPORT_NS` line that imports `ns` in the syntax of the policy's kernel:
/// `MODULE_IMPORT_NS("NS")` from 6.13 (and under modkit), `MODULE_IMPORT_NS(NS)` before.
pub fn import_ns_macro(policy: Policy, ns: &str) -> String {
    let literal = match policy {
        Policy::Modkit => true,
        Policy::Linux(v) => v >= Version::new(6, 13),
    };
    if literal {
        format!("MODULE_IMPORT_NS(\"{ns}\")")
    } else {
        format!("MODULE_IMPORT_NS({ns})")
    }
}

/// `setup_modinfo()` of 6.16+: a module that imports a `module:` namespace explicitly is
/// refused with EPERM before its symbols are resolved. `None` when the load goes on.
pub(crate) fn refuse_module_ns_import(k: &mut Kernel, m: ModId) -> Option<Errno> {
    if !k.policy.module_namespaces() {
        return None;
    }
    let ns = forbidden_import(&k.db.spec(m).import_namespaces)?.to_string();
    let name = k.name(m).to_string();
    k.printk(format!(
        "{name}: module tries to import module namespace: {ns}"
    ));
    let msg = format!(
        "{name} imports the module namespace {ns} explicitly; the loader refuses it (EPERM)"
    );
    let hint = Some(format!(
        "remove {} (import_namespaces): a module: namespace is implicit for the modules it names",
        import_ns_macro(k.policy, &ns)
    ));
    k.diagnose(
        DiagKind::ModuleNamespaceImport,
        Some(m),
        msg,
        Vec::new(),
        hint,
    );
    Some(Errno::EPERM)
}

/// `verify_namespace_is_imported()` for a symbol in namespace `ns` that module `m` does
/// not import: allowed (`None`) when `ns` is a `module:` namespace naming `m` (6.16+),
/// otherwise the kernel's line, a diagnostic with the hint in the syntax of the version,
/// and EINVAL.
pub(crate) fn refuse_namespaced_use(
    k: &mut Kernel,
    m: ModId,
    sym: &str,
    ns: &str,
) -> Option<Errno> {
    let name = k.name(m).to_string();
    let module_ns = k.policy.module_namespaces() && is_module_namespace(ns);
    if module_ns && module_namespace_allows(ns, &name) {
        return None;
    }
    k.printk(format!(
        "{name}: module uses symbol ({sym}) from namespace {ns}, but does not import it."
    ));
    let (msg, hint) = if module_ns {
        let patterns = &ns[MODULE_NS_PREFIX.len()..];
        (
            format!("{name} uses {sym}, which is exported only for modules matching {patterns}"),
            format!(
                "only a module whose name matches `{patterns}` may use it; a module: namespace cannot be imported"
            ),
        )
    } else {
        (
            format!("{name} uses {sym} from namespace {ns} without importing it"),
            format!(
                "add {} (import_namespaces = [\"{ns}\"])",
                import_ns_macro(k.policy, ns)
            ),
        )
    };
    k.diagnose(
        DiagKind::NamespaceNotImported,
        Some(m),
        msg,
        Vec::new(),
        Some(hint),
    );
    Some(Errno::EINVAL)
}

impl Policy {
    /// `module:` namespaces are understood (6.16+; modkit always): a matching module needs
    /// no import, and an explicit import of one is refused.
    pub fn module_namespaces(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => v >= Version::new(6, 16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_as_verify_module_namespace_does() {
        assert!(module_namespace_allows("module:kvm", "kvm"));
        assert!(!module_namespace_allows("module:kvm", "kvm_intel"));
        assert!(module_namespace_allows("module:kvm*", "kvm_intel"));
        assert!(module_namespace_allows("module:kvm*", "kvm"));
        assert!(module_namespace_allows("module:kvm,kvm-intel", "kvm_intel"));
        assert!(module_namespace_allows("module:kvm-*", "kvm_amd"));
        // As on the real 7.2.13: a dash in the pattern matches the mangled name's '_'.
        assert!(module_namespace_allows("module:ns-user*", "ns_user_a"));
        assert!(module_namespace_allows("module:ns_user*", "ns-user-a"));
        assert!(!module_namespace_allows("module:ns-user", "ns_user_a"));
        assert!(module_namespace_allows("module:a,b,c", "c"));
        assert!(!module_namespace_allows("module:a,b,c", "d"));
        assert!(!module_namespace_allows("module:ab", "a"));
        assert!(!module_namespace_allows("module:a", "ab"));
        assert!(module_namespace_allows("module:*", "anything"));
        assert!(!module_namespace_allows("module:", "x"));
        assert!(!module_namespace_allows("module:a,,b", "x"));
        assert!(module_namespace_allows("module:a,", "a"));
        // Not a module namespace at all.
        assert!(!module_namespace_allows("KVM", "kvm"));
        assert!(!module_namespace_allows("MODULE:kvm", "kvm"));
    }

    #[test]
    fn versions_and_hints() {
        assert!(!p("linux-6.15").module_namespaces());
        assert!(p("linux-6.16").module_namespaces());
        assert!(p("linux-6.19").module_namespaces());
        assert!(p("linux-7.2.13").module_namespaces());
        assert!(p("modkit").module_namespaces());
        assert_eq!(
            import_ns_macro(p("linux-6.12.117"), "CXL"),
            "MODULE_IMPORT_NS(CXL)"
        );
        assert_eq!(
            import_ns_macro(p("linux-6.13"), "CXL"),
            "MODULE_IMPORT_NS(\"CXL\")"
        );
        assert_eq!(
            import_ns_macro(p("modkit"), "CXL"),
            "MODULE_IMPORT_NS(\"CXL\")"
        );
        let ns = vec!["A".to_string(), "module:x".to_string()];
        assert_eq!(forbidden_import(&ns), Some("module:x"));
        assert_eq!(forbidden_import(&ns[..1]), None);
    }
}
