//! Scenario actions as C statements inside a generated module.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use modkit_sim::scenario::Action;

use super::text::{c_comment, c_str};
use super::{Ctx, Provider, Unsupported};

/// Which kind of function a list of actions becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// An init step: `stop` returns `MODKIT_STOP`.
    Init,
    /// An undo: its result is ignored; `stop` ends it.
    Undo,
    /// A work item: its result is ignored; `stop` ends it.
    Work,
}

/// Features a module's code uses (each brings its includes and helpers).
#[derive(Debug, Default, Clone)]
pub(crate) struct Uses {
    pub rt: bool,
    pub sleep: bool,
    pub request: bool,
    pub spawn: bool,
    pub debugfs: bool,
}

/// Generates the action functions of one module.
pub(crate) struct Gen<'c, 'a> {
    pub ctx: &'c Ctx<'a>,
    pub m: usize,
    pub gpl: bool,
    pub uses: Uses,
    /// Work functions, in the order they must appear (inner ones first).
    pub funcs: Vec<String>,
    /// Import symbol -> index of its `modkit_imp_N` declaration.
    pub imports: BTreeMap<String, usize>,
    /// Own exports called by `use_symbol` -> index of `modkit_own_N`.
    pub own_used: BTreeMap<String, usize>,
    /// `fs:` names this module registers -> slot.
    pub fs: BTreeMap<String, usize>,
    /// `misc:` names this module registers -> slot.
    pub misc: BTreeMap<String, usize>,
    works: usize,
}

/// Where an action is, for error messages.
#[derive(Clone)]
pub(crate) struct Place {
    pub text: String,
}

impl<'c, 'a> Gen<'c, 'a> {
    pub fn new(ctx: &'c Ctx<'a>, m: usize) -> Self {
        let spec = ctx.spec(m);
        let imports = spec
            .imports
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Gen {
            ctx,
            m,
            gpl: spec.is_gpl_compatible(),
            uses: Uses::default(),
            funcs: Vec::new(),
            imports,
            own_used: BTreeMap::new(),
            fs: BTreeMap::new(),
            misc: BTreeMap::new(),
            works: 0,
        }
    }

    /// Records every `fs:` and `misc:` registration of `list` (slots are static objects).
    pub fn collect_registrations(&mut self, list: &[Action]) {
        for a in list {
            match a {
                Action::Register(key) => {
                    if let Some((kind, name)) = key.split_once(':') {
                        let map = match kind {
                            "fs" => &mut self.fs,
                            "misc" => &mut self.misc,
                            _ => continue,
                        };
                        let n = map.len();
                        map.entry(name.to_string()).or_insert(n);
                    }
                }
                Action::Spawn(inner) => self.collect_registrations(inner),
                _ => {}
            }
        }
    }

    /// A `static int NAME(void)` running `list`.
    pub fn function(
        &mut self,
        name: &str,
        list: &[Action],
        body: Body,
        place: &Place,
    ) -> Result<String, Unsupported> {
        let mut st = String::new();
        let mut uses_ret = false;
        let mut ended = false;
        for (k, a) in list.iter().enumerate() {
            let here = Place {
                text: format!("{}, action #{}", place.text, k + 1),
            };
            ended = self.action(a, body, &here, &mut st, &mut uses_ret)?;
            if ended {
                break;
            }
        }
        let mut f = format!("static int {name}(void)\n{{\n");
        if uses_ret {
            f.push_str("\tint ret;\n\n");
        }
        f.push_str(&st);
        if !ended {
            f.push_str("\treturn 0;\n");
        }
        f.push_str("}\n");
        Ok(f)
    }

    /// Appends the statements of one action; true when it ends the list.
    fn action(
        &mut self,
        a: &Action,
        body: Body,
        place: &Place,
        st: &mut String,
        uses_ret: &mut bool,
    ) -> Result<bool, Unsupported> {
        let check = "\tif (ret)\n\t\treturn ret;\n";
        match a {
            Action::Device(_) => {
                return Err(Unsupported::new(
                    "a device action",
                    place.text.clone(),
                    "the kernel driver has no device model (docs/scenario-format.md, \"Devices\")",
                ))
            }
            Action::Sleep(ns) => {
                if *ns > 0 {
                    self.uses.sleep = true;
                    let _ = writeln!(st, "\tmodkit_sleep_ns({ns}ULL);");
                }
            }
            Action::Fail(e) => {
                let _ = writeln!(st, "\treturn -{}; /* -{} */", e.code(), e.name());
                return Ok(true);
            }
            Action::Ret(n) => {
                // Only in init steps (the parser refuses it elsewhere): the init function
                // returns N, which do_init_module() warns about and accepts.
                if body != Body::Init {
                    return Err(Unsupported::new(
                        "ret",
                        place.text.clone(),
                        "`ret` is what an init returns; only an init step can do it",
                    ));
                }
                let _ = writeln!(
                    st,
                    "\tmodkit_init_ret = {n}; /* the init returns {n} */\n\treturn MODKIT_STOP;"
                );
                return Ok(true);
            }
            Action::Stop => {
                st.push_str(match body {
                    Body::Init => "\treturn MODKIT_STOP;\n",
                    Body::Undo | Body::Work => "\treturn 0; /* stop */\n",
                });
                return Ok(true);
            }
            Action::RequestModule {
                name,
                wait,
                required,
            } => {
                self.uses.request = true;
                let call = if *wait {
                    "request_module"
                } else {
                    "request_module_nowait"
                };
                if *required {
                    *uses_ret = true;
                    let _ = writeln!(st, "\tret = {call}(\"%s\", {});", c_str(name));
                    st.push_str(
                        "\tif (ret) /* required: a wait status counts as ENOENT */\n\t\treturn ret < 0 ? ret : -ENOENT;\n",
                    );
                } else {
                    let _ = writeln!(st, "\t{call}(\"%s\", {});", c_str(name));
                }
            }
            Action::GetModule(m) | Action::PutModule(m) => {
                let get = matches!(a, Action::GetModule(_));
                if self.ctx.is_builtin_name(m) {
                    let _ = writeln!(
                        st,
                        "\t/* {} {}: builtin, always live, no reference count */",
                        if get { "get_module" } else { "put_module" },
                        c_comment(m)
                    );
                } else {
                    self.uses.rt = true;
                    *uses_ret = true;
                    let f = if get {
                        "modkit_rt_get_module"
                    } else {
                        "modkit_rt_put_module"
                    };
                    let _ = writeln!(st, "\tret = {f}({});", c_str(m));
                    st.push_str(check);
                }
            }
            Action::UseSymbol(s) => self.use_symbol(s, place, st)?,
            Action::SymbolGet(s) | Action::SymbolPut(s) => {
                // kernel/module/main.c: EXPORT_SYMBOL_GPL(__symbol_get); __symbol_put is
                // EXPORT_SYMBOL. The scenario's convention: NULL is -ENOENT.
                if !self.gpl {
                    return Err(Unsupported::new(
                        "symbol_get in a module that is not GPL-compatible",
                        place.text.clone(),
                        format!(
                            "`{s}`: __symbol_get is EXPORT_SYMBOL_GPL, so such a module could not be loaded at all"
                        ),
                    ));
                }
                if matches!(a, Action::SymbolGet(_)) {
                    *uses_ret = true;
                    let _ = writeln!(
                        st,
                        "\tret = __symbol_get({}) ? 0 : -ENOENT; /* symbol_get */",
                        c_str(s)
                    );
                    st.push_str(check);
                } else {
                    let _ = writeln!(st, "\t__symbol_put({}); /* symbol_put */", c_str(s));
                }
            }
            Action::Register(key) | Action::Unregister(key) => {
                let reg = matches!(a, Action::Register(_));
                *uses_ret = true;
                self.registration(key, reg, place, st)?;
                st.push_str(check);
            }
            Action::Lookup { key, get } => {
                if *get && key.starts_with("debugfs:") {
                    return Err(Unsupported::new(
                        "pinning lookup of debugfs:",
                        place.text.clone(),
                        format!("`{key}`: debugfs directories have no owner module to pin"),
                    ));
                }
                self.uses.rt = true;
                *uses_ret = true;
                let _ = writeln!(st, "\tret = modkit_rt_lookup({}, {});", c_str(key), get);
                st.push_str(check);
            }
            Action::Open { key, fd } => {
                if key.starts_with("debugfs:") {
                    return Err(Unsupported::new(
                        "open of debugfs:",
                        place.text.clone(),
                        format!("`{key}`: debugfs directories have no owner module to pin"),
                    ));
                }
                self.uses.rt = true;
                *uses_ret = true;
                let _ = writeln!(st, "\tret = modkit_rt_open({}, {});", c_str(key), c_str(fd));
                st.push_str(check);
            }
            Action::Close(fd) => {
                self.uses.rt = true;
                *uses_ret = true;
                let _ = writeln!(st, "\tret = modkit_rt_close({});", c_str(fd));
                st.push_str(check);
            }
            Action::Spawn(list) => {
                let n = self.works;
                self.works += 1;
                let inner = Place {
                    text: format!("{} (work item)", place.text),
                };
                let body_fn =
                    self.function(&format!("modkit_work_{n}_body"), list, Body::Work, &inner)?;
                self.funcs.push(body_fn);
                self.funcs.push(format!(
                    "static void modkit_work_{n}(struct work_struct *work)\n{{\n\tkfree(work);\n\tmodkit_work_{n}_body();\n}}\n"
                ));
                self.uses.spawn = true;
                *uses_ret = true;
                let _ = writeln!(st, "\tret = modkit_spawn(modkit_work_{n});");
                st.push_str(check);
            }
            Action::Complete(c) => {
                self.uses.rt = true;
                *uses_ret = true;
                let _ = writeln!(st, "\tret = modkit_rt_complete({});", c_str(c));
                st.push_str(check);
            }
            Action::WaitFor { name, timeout } => {
                self.uses.rt = true;
                *uses_ret = true;
                let t = match timeout {
                    Some(t) => format!("{t}LL"),
                    None => "-1".to_string(),
                };
                let _ = writeln!(st, "\tret = modkit_rt_wait_for({}, {t});", c_str(name));
                st.push_str(check);
            }
        }
        Ok(false)
    }

    fn use_symbol(&mut self, s: &str, place: &Place, st: &mut String) -> Result<(), Unsupported> {
        let spec = self.ctx.spec(self.m);
        if let Some(&i) = self.imports.get(s) {
            match self.ctx.syms.get(s).map(|x| x.provider) {
                Some(Provider::Vmlinux) => {
                    return Err(Unsupported::new(
                        "use_symbol of a vmlinux symbol",
                        place.text.clone(),
                        format!(
                            "`{s}` is a real function of the kernel {}: calling it with an invented prototype is unsafe (the import is kept: it is resolved, never called)",
                            self.ctx.target.kver
                        ),
                    ))
                }
                Some(_) | None => {
                    let _ = writeln!(st, "\tmodkit_imp_{i}(); /* {s} */");
                }
            }
            return Ok(());
        }
        if spec.exports.iter().any(|e| e.name == s) {
            let n = self.own_used.len();
            let i = *self.own_used.entry(s.to_string()).or_insert(n);
            let _ = writeln!(st, "\tmodkit_own_{i}(); /* {s} */");
            return Ok(());
        }
        Err(Unsupported::new(
            "use_symbol of a symbol the module does not import",
            place.text.clone(),
            format!("`{s}`: a real module can only call what it imports or defines"),
        ))
    }

    fn registration(
        &mut self,
        key: &str,
        reg: bool,
        place: &Place,
        st: &mut String,
    ) -> Result<(), Unsupported> {
        let (kind, name) = key.split_once(':').unwrap_or(("", key));
        let verb = if reg { "register" } else { "unregister" };
        match kind {
            "fs" | "misc" => {
                check_device_name(kind, name, key, place)?;
                let map = if kind == "fs" { &self.fs } else { &self.misc };
                let Some(&slot) = map.get(name) else {
                    return Err(Unsupported::new(
                        format!("unregister of {kind}: registered elsewhere"),
                        place.text.clone(),
                        format!(
                            "`{key}`: this module never registers it, and only the module that registered a {kind} object holds the structure the kernel unregisters"
                        ),
                    ));
                };
                let _ = writeln!(
                    st,
                    "\tret = modkit_{kind}_{verb}(&modkit_{kind}_{slot}, &modkit_{kind}_{slot}_on);"
                );
            }
            "debugfs" => {
                check_device_name(kind, name, key, place)?;
                let f = if self.gpl {
                    self.uses.debugfs = true;
                    if reg {
                        "modkit_debugfs_create"
                    } else {
                        "modkit_debugfs_remove"
                    }
                } else {
                    // debugfs is GPL-only: a module of another licence goes through
                    // modkit_rt, which makes the same calls.
                    self.uses.rt = true;
                    if reg {
                        "modkit_rt_debugfs_create"
                    } else {
                        "modkit_rt_debugfs_remove"
                    }
                };
                let _ = writeln!(st, "\tret = {f}({});", c_str(name));
            }
            _ => {
                self.uses.rt = true;
                if reg {
                    let _ = writeln!(
                        st,
                        "\tret = modkit_rt_register({}, THIS_MODULE);",
                        c_str(key)
                    );
                } else {
                    let _ = writeln!(st, "\tret = modkit_rt_unregister({});", c_str(key));
                }
            }
        }
        Ok(())
    }
}

/// Names the kernel takes for a filesystem, a misc device or a debugfs directory.
fn check_device_name(kind: &str, name: &str, key: &str, place: &Place) -> Result<(), Unsupported> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || b == b'-'
                || b == b'+'
                || (b == b'.' && kind != "fs")
        })
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Unsupported::new(
            format!("{kind}: name"),
            place.text.clone(),
            format!(
                "`{key}`: a {kind} name must be 1-64 of [A-Za-z0-9_+-]{} (register_filesystem() BUGs on a '.')",
                if kind == "fs" { "" } else { " or '.'" }
            ),
        ))
    }
}
