//! Diagnostics: what went wrong, the chain that led there, and what would fix it.

use std::fmt;

/// The kinds of diagnostic a run can report (the scenario format's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiagKind {
    /// A wait that would close a cycle; carries the chain.
    DependencyCycle,
    /// The run ended with actors waiting and nothing able to wake them.
    Stalled,
    /// A bounded wait gave up.
    Timeout,
    /// An import no live module exports.
    UnknownSymbol,
    /// A GPL-only symbol wanted by a module that is not GPL-compatible.
    GplOnly,
    /// A namespaced symbol used without `MODULE_IMPORT_NS`.
    NamespaceNotImported,
    /// A modversions CRC disagreement.
    VersionMismatch,
    /// Unload refused: holders or pins named.
    InUse,
    /// The request_module concurrency limit was reached.
    LimitReached,
    /// A module went away with registrations still present.
    Leak,
    /// A module exported a symbol another module already exports.
    DuplicateExport,
    /// A module was freed while references on it were still held (the kernel does this
    /// when an init fails after a try_module_get, or on a forced unload): a use after free.
    FreedWhilePinned,
    /// Module code panicked (host driver): the step failed with EFAULT.
    ModulePanic,
    /// The same states recur for ever: module inits that (through request_module or
    /// work items) start each other again and again; carries the loop.
    Livelock,
    /// A module imports a `module:` namespace explicitly (refused with EPERM, 6.16+).
    ModuleNamespaceImport,
    /// A remark of the model that no kernel prints (under `linux-X.Y` kept out of the
    /// kernel log), e.g. an init step that stopped early but has an undo.
    Remark,
    /// modkit: a probe deferred on a supplier that nothing in the scenario can provide;
    /// carries the chain (the device stays deferred for ever under Linux).
    DeferredForever,
    /// modkit: firmware links (fw_devlink) that form a cycle, relaxed; carries the cycle.
    DevlinkCycle,
}

impl DiagKind {
    /// Every kind, for parsing and suggestions.
    pub const ALL: [DiagKind; 18] = [
        DiagKind::DependencyCycle,
        DiagKind::Stalled,
        DiagKind::Timeout,
        DiagKind::UnknownSymbol,
        DiagKind::GplOnly,
        DiagKind::NamespaceNotImported,
        DiagKind::VersionMismatch,
        DiagKind::InUse,
        DiagKind::LimitReached,
        DiagKind::Leak,
        DiagKind::DuplicateExport,
        DiagKind::FreedWhilePinned,
        DiagKind::ModulePanic,
        DiagKind::Livelock,
        DiagKind::ModuleNamespaceImport,
        DiagKind::Remark,
        DiagKind::DeferredForever,
        DiagKind::DevlinkCycle,
    ];

    /// The snake_case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            DiagKind::DependencyCycle => "dependency_cycle",
            DiagKind::Stalled => "stalled",
            DiagKind::Timeout => "timeout",
            DiagKind::UnknownSymbol => "unknown_symbol",
            DiagKind::GplOnly => "gpl_only",
            DiagKind::NamespaceNotImported => "namespace_not_imported",
            DiagKind::VersionMismatch => "version_mismatch",
            DiagKind::InUse => "in_use",
            DiagKind::LimitReached => "limit_reached",
            DiagKind::Leak => "leak",
            DiagKind::DuplicateExport => "duplicate_export",
            DiagKind::FreedWhilePinned => "freed_while_pinned",
            DiagKind::ModulePanic => "module_panic",
            DiagKind::Livelock => "livelock",
            DiagKind::ModuleNamespaceImport => "module_namespace_import",
            DiagKind::Remark => "remark",
            DiagKind::DeferredForever => "deferred_forever",
            DiagKind::DevlinkCycle => "devlink_cycle",
        }
    }

    /// Parses a snake_case name.
    pub fn from_name(s: &str) -> Option<DiagKind> {
        DiagKind::ALL.iter().copied().find(|k| k.name() == s)
    }
}

impl fmt::Display for DiagKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Virtual time (ns) when it was raised.
    pub time: u64,
    /// Kind.
    pub kind: DiagKind,
    /// The module it is about, if one.
    pub module: Option<String>,
    /// What happened, in one sentence.
    pub message: String,
    /// The chain of waits or dependencies that led here (for cycles and stalls).
    pub chain: Vec<String>,
    /// What would fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if !self.chain.is_empty() {
            write!(f, "\n    chain: {}", self.chain.join(" → "))?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n    fix: {h}")?;
        }
        Ok(())
    }
}
