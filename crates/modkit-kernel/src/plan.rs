//! The plan: a scenario's events as the guest runner (`guest/runner.c`) plays them, and
//! the runner itself, built once per source version. Format: docs/kernel-driver.md,
//! "Plan file" and "Actions".

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use modkit_sim::scenario::{Action, EventKind};
use modkit_sim::Scenario;

/// The runner's source, compiled by [`build_runner`].
pub const RUNNER_SOURCE: &str = include_str!("../guest/runner.c");

/// The most bytes of one command written to `/proc/modkit_rt` (modkit_rt's `MK_CMD_MAX`).
pub const RT_COMMAND_MAX: usize = 64 * 1024;

/// The most bytes of one decoded word of an action list (modkit_rt's `MODKIT_RT_NAME_MAX`).
pub const RT_WORD_MAX: usize = 255;

/// The deepest nesting of `spawn` modkit_rt accepts.
pub const RT_SPAWN_DEPTH: usize = 16;

/// The longest default deadline.
pub const MAX_DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

/// Slack of the default deadline beyond the scenario's own time (see [`default_deadline`]).
pub const DEADLINE_SLACK: Duration = Duration::from_secs(120);

/// How long the runner keeps watching after the last thread finished when the scenario
/// has deferred work, beyond that work's own sleeps (see [`settle_time`]).
pub const SETTLE_SLACK: Duration = Duration::from_secs(2);

/// The kernel's default `/proc/sys/kernel/modprobe` (CONFIG_MODPROBE_PATH).
pub const KERNEL_MODPROBE: &str = "/sbin/modprobe";

/// The longest `/proc/sys/kernel/modprobe` (KMOD_PATH_LEN 256, with its NUL).
pub const MODPROBE_PATH_MAX: usize = 255;

/// Why the events cannot be played, or the runner not built.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `rmmod` with `timeout`: no real kernel has a waiting rmmod with a bound.
    #[error("event {event}: rmmod with a timeout: a real kernel has no waiting rmmod with a timeout (since 3.13 it never waits)")]
    RmmodTimeout {
        /// Event id.
        event: String,
    },
    /// Something else a real kernel or the runner cannot do as the scenario says.
    #[error("event {event}: {feature}: {why}")]
    Unsupported {
        /// Event id (`scenario` for a top-level setting).
        event: String,
        /// The feature.
        feature: &'static str,
        /// Why.
        why: String,
    },
    /// An action list longer than modkit_rt accepts in one command.
    #[error("event {event}: its actions encode to {len} bytes, more than modkit_rt's {max}-byte command")]
    TooLong {
        /// Event id.
        event: String,
        /// Bytes of the command.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A word (name) of an action longer than modkit_rt accepts.
    #[error("event {event}: {word:?} is longer than modkit_rt's {max} bytes")]
    WordTooLong {
        /// Event id.
        event: String,
        /// The word.
        word: String,
        /// The limit.
        max: usize,
    },
    /// A word with a NUL byte, which modkit_rt refuses.
    #[error("event {event}: {word:?} contains a NUL byte")]
    NulByte {
        /// Event id.
        event: String,
        /// The word.
        word: String,
    },
    /// `spawn` nested deeper than modkit_rt accepts.
    #[error("event {event}: spawn nested more than {max} levels deep")]
    TooDeep {
        /// Event id.
        event: String,
        /// The limit.
        max: usize,
    },
    /// A file of the runner's build could not be written or run.
    #[error("{path}: {source}")]
    Io {
        /// The file or program.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// gcc refused the runner.
    #[error("compiling the guest runner with `{command}` failed ({status}):\n{stderr}")]
    Compile {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What gcc printed.
        stderr: String,
    },
}

/// The plan's percent-encoding: every byte outside `[A-Za-z0-9_.,:*?+=/@-]` becomes `%XX`;
/// an empty string is `%`.
pub fn encode_field(s: &str) -> String {
    encode(s, b"_.,:*?+=/@-")
}

/// An action word's encoding: the plan's, with `,` escaped as well (`;` already is).
pub fn encode_word(s: &str) -> String {
    encode(s, b"_.:*?+=/@-")
}

fn encode(s: &str, extra: &[u8]) -> String {
    if s.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || extra.contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Encodes an action list as one `run` field (`%` for an empty list).
pub fn encode_actions(event: &str, actions: &[Action]) -> Result<String, PlanError> {
    let mut items = Vec::new();
    push_actions(event, actions, 0, &mut items)?;
    if items.is_empty() {
        return Ok("%".into());
    }
    let text = items.join(";");
    if text.len() + 4 > RT_COMMAND_MAX {
        return Err(PlanError::TooLong {
            event: event.to_string(),
            len: text.len() + 4,
            max: RT_COMMAND_MAX,
        });
    }
    Ok(text)
}

fn push_actions(
    event: &str,
    actions: &[Action],
    depth: usize,
    out: &mut Vec<String>,
) -> Result<(), PlanError> {
    let w = |s: &str| -> Result<String, PlanError> {
        if s.len() > RT_WORD_MAX {
            return Err(PlanError::WordTooLong {
                event: event.to_string(),
                word: s.to_string(),
                max: RT_WORD_MAX,
            });
        }
        if s.contains('\0') {
            return Err(PlanError::NulByte {
                event: event.to_string(),
                word: s.to_string(),
            });
        }
        Ok(encode_word(s))
    };
    let b = |v: bool| if v { "1" } else { "0" };
    for a in actions {
        let item = match a {
            Action::Device(_) => return Err(PlanError::Unsupported {
                event: event.to_string(),
                feature: "a device action",
                why: "the kernel driver has no device model (docs/scenario-format.md, \"Devices\")"
                    .into(),
            }),
            Action::Sleep(ns) => format!("sleep,{ns}"),
            Action::Fail(e) => format!("fail,{}", e.code()),
            Action::Stop => "stop".to_string(),
            // The parser allows `ret` only in init steps, which are C code, never the
            // runner's actions; an event cannot get here.
            Action::Ret(n) => {
                return Err(PlanError::Unsupported {
                    event: event.to_string(),
                    feature: "ret",
                    why: format!("`ret = {n}` is an init's return value; events have none"),
                })
            }
            Action::RequestModule {
                name,
                wait,
                required,
            } => format!("request_module,{},{},{}", w(name)?, b(*wait), b(*required)),
            Action::GetModule(m) => format!("get_module,{}", w(m)?),
            Action::PutModule(m) => format!("put_module,{}", w(m)?),
            Action::UseSymbol(s) => format!("use_symbol,{}", w(s)?),
            Action::SymbolGet(s) | Action::SymbolPut(s) => {
                return Err(PlanError::Unsupported {
                    event: event.to_string(),
                    feature: "symbol_get",
                    why: format!(
                        "`{s}`: the kernel driver runs symbol_get and symbol_put only in module code (init steps, undos, a module's work items)"
                    ),
                })
            }
            Action::Register(k) => format!("register,{}", w(k)?),
            Action::Unregister(k) => format!("unregister,{}", w(k)?),
            Action::Lookup { key, get } => format!("lookup,{},{}", w(key)?, b(*get)),
            Action::Open { key, fd } => format!("open,{},{}", w(key)?, w(fd)?),
            Action::Close(fd) => format!("close,{}", w(fd)?),
            Action::Complete(c) => format!("complete,{}", w(c)?),
            Action::WaitFor { name, timeout } => match timeout {
                Some(t) => format!("wait_for,{},{t}", w(name)?),
                None => format!("wait_for,{},-1", w(name)?),
            },
            Action::Spawn(inner) => {
                if depth + 1 > RT_SPAWN_DEPTH {
                    return Err(PlanError::TooDeep {
                        event: event.to_string(),
                        max: RT_SPAWN_DEPTH,
                    });
                }
                out.push(format!("spawn,{}", inner.len()));
                push_actions(event, inner, depth + 1, out)?;
                continue;
            }
        };
        out.push(item);
    }
    Ok(())
}

/// The plan file for `sc`: `guest_path` gives a module's `.ko` path in the guest (for
/// insmod); the runner stops waiting `deadline` after the start.
pub fn plan(
    sc: &Scenario,
    guest_path: &dyn Fn(&str) -> String,
    deadline: Duration,
) -> Result<String, PlanError> {
    let mut out = String::from("modkit-plan 1\n");
    let _ = writeln!(
        out,
        "deadline_ns {}",
        deadline.as_nanos().min(u64::MAX as u128)
    );
    let settle = settle_time(sc);
    if !settle.is_zero() {
        let _ = writeln!(out, "settle_ns {}", settle.as_nanos().min(u64::MAX as u128));
    }
    out.push_str("kmsg_marker\n");
    if sc.modprobe != KERNEL_MODPROBE {
        check_modprobe_path("scenario", &sc.modprobe)?;
        let _ = writeln!(out, "modprobe {}", encode_field(&sc.modprobe));
    }
    for (idx, ev) in sc.events.iter().enumerate() {
        let head = format!("event {idx} {} {}", ev.at, ev.threads);
        let tail = match &ev.kind {
            EventKind::Device(_) => return Err(PlanError::Unsupported {
                event: ev.id.clone(),
                feature: "a device event",
                why: "the kernel driver has no device model (docs/scenario-format.md, \"Devices\")"
                    .into(),
            }),
            EventKind::Modprobe(name) => format!("modprobe {}", encode_field(name)),
            EventKind::Insmod(name) if sc.db.id(name).is_some_and(|m| sc.db.spec(m).builtin) => {
                return Err(PlanError::Unsupported {
                    event: ev.id.clone(),
                    feature: "insmod of a builtin module",
                    why: format!("{name} is part of the kernel image; there is no .ko to insert"),
                });
            }
            EventKind::Insmod(name) => format!(
                "insmod {} {} {}",
                encode_field(name),
                encode_field(&guest_path(name)),
                if ev.init_module { "init" } else { "finit" }
            ),
            EventKind::Kill(target) => {
                let t = sc
                    .events
                    .iter()
                    .position(|e| &e.id == target)
                    .ok_or_else(|| PlanError::Unsupported {
                        event: ev.id.clone(),
                        feature: "kill",
                        why: format!("no event has id `{target}`"),
                    })?;
                format!("kill {t}")
            }
            EventKind::KillModprobe(name) => format!("kill_modprobe {}", encode_field(name)),
            EventKind::Rmmod {
                name,
                force,
                wait,
                timeout,
            } => {
                if timeout.is_some() {
                    return Err(PlanError::RmmodTimeout {
                        event: ev.id.clone(),
                    });
                }
                let flags = if *wait { 0 } else { 2048 } | if *force { 512 } else { 0 };
                format!("rmmod {} {flags}", encode_field(name))
            }
            EventKind::RequestModule { name, wait } => format!(
                "request_module {} {}",
                encode_field(name),
                if *wait { 1 } else { 0 }
            ),
            EventKind::Run(actions) => format!("run {}", encode_actions(&ev.id, actions)?),
            EventKind::SetModprobe(path) => {
                check_modprobe_path(&ev.id, path)?;
                format!("set_modprobe {}", encode_field(path))
            }
        };
        let _ = writeln!(out, "{head} {tail}");
    }
    Ok(out)
}

/// A path /proc/sys/kernel/modprobe can hold as it is.
fn check_modprobe_path(event: &str, path: &str) -> Result<(), PlanError> {
    let why = if path.len() > MODPROBE_PATH_MAX {
        format!(
            "{} bytes; the kernel keeps at most {MODPROBE_PATH_MAX}",
            path.len()
        )
    } else if path.contains(['\n', '\0']) {
        "it contains a newline or NUL byte, where the kernel's sysctl stops reading".to_string()
    } else {
        return Ok(());
    };
    Err(PlanError::Unsupported {
        event: event.to_string(),
        feature: "modprobe path",
        why,
    })
}

/// True if the actions queue work or start a modprobe that nobody waits for.
fn defers(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Spawn(_) | Action::RequestModule { wait: false, .. }
        )
    })
}

/// Every action list of the scenario: init steps, undos and events.
fn all_actions(sc: &Scenario) -> impl Iterator<Item = &[Action]> {
    let steps = sc
        .steps
        .iter()
        .flatten()
        .flat_map(|s| std::iter::once(s.run.as_slice()).chain(s.undo.as_deref()));
    let events = sc.events.iter().filter_map(|e| match &e.kind {
        EventKind::Run(a) => Some(a.as_slice()),
        _ => None,
    });
    steps.chain(events)
}

/// How long the runner keeps watching after every thread has finished: zero unless the
/// scenario has deferred work (`spawn`, `request_module` with `wait = false`, or a `kill`
/// event: a request_module caller killed leaves its modprobe running with nobody waiting),
/// which can still change modules after the last thread is done; then [`SETTLE_SLACK`]
/// plus every sleep and wait bound of the scenario. The deadline bounds it in the runner.
pub fn settle_time(sc: &Scenario) -> Duration {
    let nowait_event = sc.events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::RequestModule { wait: false, .. } | EventKind::Kill(_)
        )
    });
    if !nowait_event && !all_actions(sc).any(defers) {
        return Duration::ZERO;
    }
    let total = all_actions(sc)
        .map(actions_time)
        .fold(0, u64::saturating_add);
    Duration::from_nanos(total).saturating_add(SETTLE_SLACK)
}

/// Time the actions may take by themselves: their sleeps and wait bounds, spawned ones
/// included.
fn actions_time(actions: &[Action]) -> u64 {
    actions
        .iter()
        .map(|a| match a {
            Action::Sleep(ns) => *ns,
            Action::WaitFor {
                timeout: Some(t), ..
            } => *t,
            Action::Spawn(inner) => actions_time(inner),
            _ => 0,
        })
        .fold(0u64, u64::saturating_add)
}

/// The default deadline: the last event's start, plus every sleep and wait bound of the
/// scenario's init steps, undos and events (each counted once), plus [`DEADLINE_SLACK`]
/// (120 s) for what takes real time under emulation (every modprobe is a fork and exec,
/// a storm of them queues on two emulated CPUs); at most [`MAX_DEFAULT_DEADLINE`]
/// (10 minutes). A run only lasts that long when some thread never finishes, and then the
/// state it is stuck in is what the report shows; an event later than the deadline is
/// never started and its threads are reported unfinished.
pub fn default_deadline(sc: &Scenario) -> Duration {
    let last = sc.events.iter().map(|e| e.at).max().unwrap_or(0);
    let own = sc
        .events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Rmmod {
                timeout: Some(t), ..
            } => *t,
            _ => 0,
        })
        .chain(all_actions(sc).map(actions_time))
        .fold(last, u64::saturating_add);
    Duration::from_nanos(own)
        .saturating_add(DEADLINE_SLACK)
        .min(MAX_DEFAULT_DEADLINE)
}

/// FNV-1a, 64 bits: a stable name for a source version.
fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Compiles the runner (`gcc -std=gnu11 -static -O2 -Wall -Werror`) into
/// `dir/runner-<hash of the source>`, or reuses that file if it is there.
pub fn build_runner(dir: &Path) -> Result<PathBuf, PlanError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| PlanError::Io { path, source }
    };
    let hash = fnv64(RUNNER_SOURCE.as_bytes());
    let out = dir.join(format!("runner-{hash:016x}"));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tag = format!("{hash:016x}.{}", std::process::id());
    let src = dir.join(format!("runner-{tag}.c"));
    let tmp = dir.join(format!("runner-{tag}.tmp"));
    std::fs::write(&src, RUNNER_SOURCE).map_err(io(&src))?;
    let mut cmd = Command::new("gcc");
    cmd.args(["-std=gnu11", "-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&tmp)
        .arg(&src);
    let command = format!("{cmd:?}");
    let result = cmd.output();
    let _ = std::fs::remove_file(&src);
    let output = result.map_err(|source| PlanError::Io {
        path: "gcc".into(),
        source,
    })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(PlanError::Compile {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    std::fs::rename(&tmp, &out).map_err(io(&out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modkit_core::Errno;

    fn scenario(text: &str) -> Scenario {
        modkit_sim::scenario::parse("t.toml", text).expect("scenario parses")
    }

    #[test]
    fn fields_and_words_are_percent_encoded() {
        assert_eq!(encode_field(""), "%");
        assert_eq!(encode_field("a b%"), "a%20b%25");
        assert_eq!(encode_field("cpu:type:x86,ven*"), "cpu:type:x86,ven*");
        assert_eq!(encode_word("a,b;c"), "a%2Cb%3Bc");
        assert_eq!(encode_word(""), "%");
    }

    #[test]
    fn actions_encode_with_spawn_counts() {
        let a = vec![
            Action::Sleep(5),
            Action::Spawn(vec![
                Action::Fail(Errno::EBUSY),
                Action::Spawn(vec![Action::Stop]),
            ]),
            Action::RequestModule {
                name: "fs-x y".into(),
                wait: true,
                required: false,
            },
            Action::WaitFor {
                name: "c".into(),
                timeout: None,
            },
            Action::WaitFor {
                name: "c".into(),
                timeout: Some(7),
            },
            Action::Lookup {
                key: "misc:a".into(),
                get: true,
            },
            Action::Open {
                key: "fs:x".into(),
                fd: "f,1".into(),
            },
            Action::Close("f,1".into()),
        ];
        assert_eq!(
            encode_actions("e", &a).unwrap(),
            "sleep,5;spawn,2;fail,16;spawn,1;stop;request_module,fs-x%20y,1,0;\
             wait_for,c,-1;wait_for,c,7;lookup,misc:a,1;open,fs:x,f%2C1;close,f%2C1"
        );
        assert_eq!(encode_actions("e", &[]).unwrap(), "%");
    }

    #[test]
    fn action_limits_are_errors() {
        let long = Action::GetModule("x".repeat(256));
        assert!(matches!(
            encode_actions("e", &[long]),
            Err(PlanError::WordTooLong { .. })
        ));
        let mut deep = vec![Action::Stop];
        for _ in 0..17 {
            deep = vec![Action::Spawn(deep)];
        }
        let err = encode_actions("ev", &deep).unwrap_err();
        assert!(err.to_string().contains("ev"), "{err}");
        let many = vec![Action::Sleep(1_000_000_000); 8000];
        assert!(matches!(
            encode_actions("e", &many),
            Err(PlanError::TooLong { .. })
        ));
    }

    const SC: &str = r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ sleep = "2s" }]

[[event]]
id = "load"
modprobe = "a"

[[event]]
id = "ins"
at = "1s"
threads = 3
insmod = "a"

[[event]]
id = "rm"
at = "2s"
rmmod = "a"
force = true

[[event]]
id = "rmw"
at = "2s"
rmmod = "a"
wait = true

[[event]]
id = "req"
at = "3s"
request_module = "fs-x"
wait = false

[[event]]
id = "go"
at = "4s"
run = [{ sleep = "1s" }, { complete = "c d" }]
"#;

    #[test]
    fn plan_lists_events() {
        let sc = scenario(SC);
        let text = plan(
            &sc,
            &|m: &str| format!("/x/{m}.ko"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(
            text,
            "modkit-plan 1\n\
             deadline_ns 30000000000\n\
             settle_ns 5000000000\n\
             kmsg_marker\n\
             event 0 0 1 modprobe a\n\
             event 1 1000000000 3 insmod a /x/a.ko finit\n\
             event 2 2000000000 1 rmmod a 2560\n\
             event 3 2000000000 1 rmmod a 0\n\
             event 4 3000000000 1 request_module fs-x 0\n\
             event 5 4000000000 1 run sleep,1000000000;complete,c%20d\n"
        );
        // last event 4 s + init sleep 2 s + event sleep 1 s + 120 s
        assert_eq!(default_deadline(&sc), Duration::from_secs(127));
        // a nowait request_module: 2 s + the sleeps
        assert_eq!(settle_time(&sc), Duration::from_secs(5));
    }

    #[test]
    fn kill_events_and_init_module() {
        let sc = scenario(
            r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ sleep = "1s" }]

[[event]]
id = "ins"
insmod = "a"
syscall = "init_module"

[[event]]
id = "k"
at = "10ms"
kill = "ins"

[[event]]
id = "km"
at = "20ms"
kill_modprobe = "fs-x y"
"#,
        );
        let text = plan(&sc, &|m: &str| format!("/x/{m}.ko"), Duration::from_secs(9)).unwrap();
        assert_eq!(
            text,
            "modkit-plan 1\n\
             deadline_ns 9000000000\n\
             settle_ns 3000000000\n\
             kmsg_marker\n\
             event 0 0 1 insmod a /x/a.ko init\n\
             event 1 10000000 1 kill 0\n\
             event 2 20000000 1 kill_modprobe fs-x%20y\n"
        );
    }

    #[test]
    fn settings_and_refusals() {
        let sc = scenario(
            r#"
modprobe = ""

[[module]]
name = "a"

[[module]]
name = "k"
builtin = true

[[event]]
id = "off"
set = { modprobe = "/bin/false x" }

[[event]]
id = "load"
modprobe = "a"
"#,
        );
        let text = plan(&sc, &|m: &str| m.to_string(), Duration::from_secs(9)).unwrap();
        assert_eq!(
            text,
            "modkit-plan 1\n\
             deadline_ns 9000000000\n\
             kmsg_marker\n\
             modprobe %\n\
             event 0 0 1 set_modprobe /bin/false%20x\n\
             event 1 0 1 modprobe a\n"
        );
        assert_eq!(settle_time(&sc), Duration::ZERO);

        let sc = scenario(
            r#"
[[module]]
name = "k"
builtin = true

[[event]]
id = "ins"
insmod = "k"
"#,
        );
        let err = plan(&sc, &|m: &str| m.to_string(), Duration::from_secs(1)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("event ins") && msg.contains("builtin"),
            "{msg}"
        );

        let long = format!(
            "[[module]]\nname = \"a\"\n[[event]]\nid = \"s\"\nset = {{ modprobe = \"/{}\" }}\n",
            "x".repeat(300)
        );
        let err = plan(
            &scenario(&long),
            &|m: &str| m.to_string(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("event s: modprobe path"), "{err}");
        let nl = "modprobe = \"/sbin/modprobe\\n\"\n[[module]]\nname = \"a\"\n";
        let err = plan(
            &scenario(nl),
            &|m: &str| m.to_string(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("event scenario: modprobe path"),
            "{err}"
        );
    }

    #[test]
    fn spawned_work_settles() {
        let sc = scenario(
            r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ spawn = [{ sleep = "3s" }] }]

[[event]]
modprobe = "a"
"#,
        );
        assert_eq!(settle_time(&sc), Duration::from_secs(5));
        let text = plan(&sc, &|m: &str| m.to_string(), Duration::from_secs(9)).unwrap();
        assert!(text.contains("\nsettle_ns 5000000000\n"), "{text}");
    }

    #[test]
    fn rmmod_timeout_is_refused() {
        let sc = scenario(
            r#"
[[module]]
name = "a"

[[event]]
id = "rm"
rmmod = "a"
wait = true
timeout = "1s"
"#,
        );
        let err = plan(&sc, &|m: &str| m.to_string(), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(&err, PlanError::RmmodTimeout { event } if event == "rm"));
        assert!(err.to_string().contains("rm"));
    }

    #[test]
    fn deadline_is_capped() {
        let sc = scenario(
            r#"
[[module]]
name = "a"

[[event]]
at = "1h"
modprobe = "a"
"#,
        );
        assert_eq!(default_deadline(&sc), MAX_DEFAULT_DEADLINE);
    }

    #[test]
    fn runner_builds_and_is_reused() {
        if Command::new("gcc").arg("--version").output().is_err() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("modkit-runner-test-{}", std::process::id()));
        let a = build_runner(&dir).unwrap();
        let b = build_runner(&dir).unwrap();
        assert_eq!(a, b);
        assert!(a.is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
