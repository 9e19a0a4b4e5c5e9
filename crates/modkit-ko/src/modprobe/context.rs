//! libkmod's context: the module directory's binary indexes, the configuration and a
//! pool of modules keyed like libkmod's (`name`, or `name\alias` for alias matches).

use std::collections::HashMap;

use super::config::ModprobeConfig;
use crate::fnmatch::fnmatch;
use crate::index::IndexReader;
use crate::names::{alias_normalize, path_to_modname};

/// Index of a module in the [`Context`] pool.
pub type ModId = usize;

/// A pooled module (`struct kmod_module`).
#[derive(Debug, Clone, Default)]
pub struct PoolMod {
    /// Module name.
    pub name: String,
    /// The alias it was found through, if any.
    pub alias: Option<String>,
    /// Path (absolute), once known.
    pub path: Option<String>,
    /// Whether the dependency line was parsed.
    pub dep_init: bool,
    /// Direct and indirect dependencies, deepest first (the `modules.dep` line reversed).
    pub deps: Vec<ModId>,
    /// `Some(true/false)` once known to be (not) built in.
    pub builtin: Option<bool>,
    /// Install command forced by a command lookup.
    pub install_cmd: Option<Option<String>>,
    /// Probe traversal flag.
    pub visited: bool,
    /// Softdep command suppression flag.
    pub ignorecmd: bool,
}

/// The state libkmod keeps for one module directory.
#[derive(Debug)]
pub struct Context {
    /// The module directory (absolute).
    pub dirname: String,
    /// The configuration.
    pub config: ModprobeConfig,
    dep: Option<IndexReader>,
    alias: Option<IndexReader>,
    symbols: Option<IndexReader>,
    builtin_alias: Option<IndexReader>,
    builtin: Option<IndexReader>,
    pool: Vec<PoolMod>,
    by_key: HashMap<String, ModId>,
}

fn load_index(dirname: &str, name: &str) -> Option<IndexReader> {
    // Mapped, as libkmod does: a lookup touches only the pages on its path.
    let path = format!("{dirname}/{name}");
    match IndexReader::open(std::path::Path::new(&path)).ok()? {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("{dirname}/{name}: {e}");
            None
        }
    }
}

impl Context {
    /// Opens the indexes of `dirname` with `config`.
    pub fn new(dirname: String, config: ModprobeConfig) -> Context {
        Context {
            dep: load_index(&dirname, "modules.dep.bin"),
            alias: load_index(&dirname, "modules.alias.bin"),
            symbols: load_index(&dirname, "modules.symbols.bin"),
            builtin_alias: load_index(&dirname, "modules.builtin.alias.bin"),
            builtin: load_index(&dirname, "modules.builtin.bin"),
            dirname,
            config,
            pool: Vec::new(),
            by_key: HashMap::new(),
        }
    }

    /// A pooled module.
    pub fn get(&self, id: ModId) -> &PoolMod {
        &self.pool[id]
    }

    /// A pooled module, mutably.
    pub fn get_mut(&mut self, id: ModId) -> &mut PoolMod {
        &mut self.pool[id]
    }

    /// Clears every `visited` flag.
    pub fn reset_visited(&mut self) {
        for m in &mut self.pool {
            m.visited = false;
        }
    }

    fn new_module(&mut self, name: &str, alias: Option<&str>) -> ModId {
        let key = match alias {
            Some(a) => format!("{name}\\{a}"),
            None => name.to_string(),
        };
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        let id = self.pool.len();
        self.pool.push(PoolMod {
            name: name.to_string(),
            alias: alias.map(str::to_string),
            ..Default::default()
        });
        self.by_key.insert(key, id);
        id
    }

    /// `kmod_module_new_from_name`.
    pub fn module_from_name(&mut self, name: &str) -> ModId {
        self.new_module(name, None)
    }

    /// `kmod_module_new_from_path`: the module named after the file, with this path.
    pub fn module_from_path(&mut self, path: &str) -> ModId {
        let name = path_to_modname(path).unwrap_or_default();
        let id = self.new_module(&name, None);
        if self.pool[id].path.is_none() {
            self.pool[id].path = Some(path.to_string());
        }
        id
    }

    fn parse_depline(&mut self, id: ModId, line: &str) {
        if self.pool[id].dep_init {
            return;
        }
        self.pool[id].dep_init = true;
        let Some((head, rest)) = line.split_once(':') else {
            return;
        };
        let join = |p: &str, dirname: &str| {
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("{dirname}/{p}")
            }
        };
        if self.pool[id].path.is_none() {
            self.pool[id].path = Some(join(head, &self.dirname));
        }
        let mut deps = Vec::new();
        for p in rest.split([' ', '\t']).filter(|s| !s.is_empty()) {
            let path = join(p, &self.dirname);
            deps.push(self.module_from_path(&path));
        }
        deps.reverse();
        self.pool[id].deps = deps;
    }

    /// `kmod_module_get_path` (lazily reads `modules.dep.bin`).
    pub fn path(&mut self, id: ModId) -> Option<String> {
        if self.pool[id].path.is_none() && !self.pool[id].dep_init {
            let name = self.pool[id].name.clone();
            if let Some(line) = self.dep.as_ref().and_then(|d| d.search(&name)) {
                self.parse_depline(id, &line);
            }
        }
        self.pool[id].path.clone()
    }

    /// `kmod_module_get_dependencies`: deepest first.
    pub fn dependencies(&mut self, id: ModId) -> Vec<ModId> {
        if !self.pool[id].dep_init {
            let name = self.pool[id].name.clone();
            if let Some(line) = self.dep.as_ref().and_then(|d| d.search(&name)) {
                self.parse_depline(id, &line);
            }
        }
        self.pool[id].deps.clone()
    }

    /// `kmod_module_is_builtin`.
    pub fn is_builtin(&mut self, id: ModId) -> bool {
        if self.pool[id].builtin.is_none() {
            let name = self.pool[id].name.clone();
            let b = self
                .builtin
                .as_ref()
                .and_then(|i| i.search(&name))
                .is_some();
            self.pool[id].builtin = Some(b);
        }
        self.pool[id].builtin == Some(true)
    }

    /// `kmod_module_get_install_commands`: the first `install` whose glob matches the name.
    pub fn install_command(&mut self, id: ModId) -> Option<String> {
        if self.pool[id].install_cmd.is_none() {
            let name = self.pool[id].name.clone();
            let cmd = self
                .config
                .install_commands
                .iter()
                .find(|(m, _)| fnmatch(m.as_bytes(), name.as_bytes()))
                .map(|(_, c)| c.clone());
            self.pool[id].install_cmd = Some(cmd);
        }
        self.pool[id].install_cmd.clone().flatten()
    }

    /// `kmod_module_get_options`: every matching `options` line joined with a space.
    pub fn options(&self, id: ModId) -> Option<String> {
        let m = &self.pool[id];
        let mut out: Option<String> = None;
        for (name, opts) in &self.config.options {
            if !(*name == m.name || m.alias.as_deref() == Some(name.as_str())) || opts.is_empty() {
                continue;
            }
            match &mut out {
                Some(o) => {
                    o.push(' ');
                    o.push_str(opts);
                }
                None => out = Some(opts.clone()),
            }
        }
        out
    }

    /// Is this module blacklisted (by name)?
    pub fn is_blacklisted(&self, id: ModId) -> bool {
        let name = &self.pool[id].name;
        self.config.blacklists.iter().any(|b| b == name)
    }

    fn search_alias_index(&mut self, which: u8, name: &str) -> Vec<ModId> {
        let idx = match which {
            0 => &self.alias,
            1 => &self.symbols,
            _ => &self.builtin_alias,
        };
        let Some(idx) = idx else { return Vec::new() };
        let hits = idx.search_wild(name);
        hits.into_iter()
            .map(|v| self.new_module(&v.value, Some(name)))
            .collect()
    }

    /// `kmod_module_new_from_lookup`: config aliases, modules.dep, symbols, commands,
    /// aliases, built-ins, built-in aliases; the first source with a match wins.
    /// `None` when the name is not a valid alias (unmatched bracket).
    pub fn lookup(&mut self, given: &str) -> Option<Vec<ModId>> {
        let name = alias_normalize(given)?;
        // 1. config aliases
        let aliases: Vec<(String, String)> = self
            .config
            .aliases
            .iter()
            .filter(|(a, _)| fnmatch(a.as_bytes(), name.as_bytes()))
            .cloned()
            .collect();
        if !aliases.is_empty() {
            return Some(
                aliases
                    .iter()
                    .map(|(a, m)| self.new_module(m, Some(a)))
                    .collect(),
            );
        }
        // 2. modules.dep
        if !name.contains(':') {
            if let Some(line) = self.dep.as_ref().and_then(|d| d.search(&name)) {
                let id = self.module_from_name(&name);
                self.parse_depline(id, &line);
                return Some(vec![id]);
            }
        }
        // 3. symbols
        if name.starts_with("symbol:") {
            let v = self.search_alias_index(1, &name);
            if !v.is_empty() {
                return Some(v);
            }
        }
        // 4. install / remove commands
        let cmd = self
            .config
            .install_commands
            .iter()
            .find(|(m, _)| *m == name)
            .map(|(_, c)| c.clone());
        if let Some(cmd) = cmd {
            let id = self.module_from_name(&name);
            self.pool[id].install_cmd = Some(Some(cmd));
            return Some(vec![id]);
        }
        if self.config.remove_commands.iter().any(|(m, _)| *m == name) {
            let id = self.module_from_name(&name);
            return Some(vec![id]);
        }
        // 5. aliases
        let v = self.search_alias_index(0, &name);
        if !v.is_empty() {
            return Some(v);
        }
        // 6. built-in modules
        if self
            .builtin
            .as_ref()
            .and_then(|b| b.search(&name))
            .is_some()
        {
            let id = self.module_from_name(&name);
            self.pool[id].builtin = Some(true);
            return Some(vec![id]);
        }
        // 7. built-in aliases
        let v = self.search_alias_index(2, &name);
        for &id in &v {
            self.pool[id].builtin = Some(true);
        }
        Some(v)
    }

    /// `kmod_dump_index`: appends `DIRNAME/NAME.bin`'s entries, each key after `prefix`.
    pub fn dump_index(&self, name: &str, prefix: &str, out: &mut Vec<u8>) {
        let idx = match name {
            "modules.alias" => self.alias.as_ref(),
            "modules.symbols" => self.symbols.as_ref(),
            "modules.dep" => self.dep.as_ref(),
            "modules.builtin" => self.builtin.as_ref(),
            _ => self.builtin_alias.as_ref(),
        };
        if let Some(i) = idx {
            i.dump(prefix, out);
        }
    }

    /// `kmod_module_new_from_name_lookup`: modules.dep, then built-ins.
    pub fn name_lookup(&mut self, name: &str) -> Option<ModId> {
        if let Some(line) = self.dep.as_ref().and_then(|d| d.search(name)) {
            let id = self.module_from_name(name);
            self.parse_depline(id, &line);
            return Some(id);
        }
        if self.builtin.as_ref().and_then(|b| b.search(name)).is_some() {
            let id = self.module_from_name(name);
            self.pool[id].builtin = Some(true);
            return Some(id);
        }
        None
    }
}
