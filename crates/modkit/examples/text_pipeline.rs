//! A small host whose features are modules: a text pipeline whose stages are loaded on
//! demand by alias, import each other's services, and cannot be unloaded while in use.
//!
//! Run it with `cargo run -p modkit --example text_pipeline`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use modkit::{Errno, Host, Init, Module, Rmmod, Symbol};

/// What every stage module exports.
pub trait Stage: Send + Sync {
    /// Transforms the text.
    fn apply(&self, input: &str) -> String;
}

/// The service type a stage exports (the type is the symbol's CRC).
type StageRef = Arc<dyn Stage>;

/// textutil's word splitter.
type SplitWords = fn(&str) -> Vec<String>;

struct Trim;
impl Stage for Trim {
    fn apply(&self, input: &str) -> String {
        input.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

struct Lower;
impl Stage for Lower {
    fn apply(&self, input: &str) -> String {
        input.to_lowercase()
    }
}

/// A stage built on another module's service. The service handle is taken in the init
/// step and released in its undo (as a driver binds in probe and lets go in remove): while
/// it is held, the module that provides it cannot be unloaded.
#[derive(Default)]
struct Count {
    words: Mutex<Option<Symbol<SplitWords>>>,
}
impl Stage for Count {
    fn apply(&self, input: &str) -> String {
        match &*self.words.lock().expect("lock") {
            Some(words) => format!("{input} [{} words]", words(input).len()),
            None => format!("{input} [count stage unbound]"),
        }
    }
}

fn modules(host: &Host) -> Result<(), modkit::Error> {
    // A library module: no alias, loaded only as a dependency.
    host.add_module(Module::new("textutil").export(
        "split_words",
        (|s: &str| s.split_whitespace().map(str::to_string).collect()) as SplitWords,
    ))?;
    host.add_module(
        Module::new("stage-trim")
            .alias("stage:trim")
            .export("stage_trim", Arc::new(Trim) as StageRef),
    )?;
    host.add_module(
        Module::new("stage-lower")
            .alias("stage:lower")
            .export("stage_lower", Arc::new(Lower) as StageRef),
    )?;
    // stage-count imports textutil's split_words: modprobe loads textutil first, and
    // textutil cannot go away while stage-count uses it.
    let count = Arc::new(Count::default());
    let (bind, unbind) = (count.clone(), count.clone());
    host.add_module(
        Module::new("stage-count")
            .alias("stage:count")
            .import::<SplitWords>("split_words")
            .export("stage_count", count as StageRef)
            .init_step_with_undo(
                "bind_splitter",
                move |ctx| {
                    let words = ctx
                        .symbol::<fn(&str) -> Vec<String>>("split_words")
                        .map_err(|_| Errno::ENOENT)?;
                    *bind.words.lock().expect("lock") = Some(words);
                    Ok(Init::Continue)
                },
                move |_| {
                    unbind.words.lock().expect("lock").take();
                },
            ),
    )?;
    Ok(())
}

fn run(host: &Host, stages: &[&str], text: &str) -> Result<String, modkit::Error> {
    let mut out = text.to_string();
    for s in stages {
        // Load on demand by alias; a stage already live is not loaded twice.
        host.modprobe(&format!("stage:{s}"))?;
        let sym = host.symbol::<StageRef>(&format!("stage_{s}"))?;
        out = sym.apply(&out);
    }
    Ok(out)
}

fn main() -> std::process::ExitCode {
    match pipeline() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("text_pipeline: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn pipeline() -> Result<(), modkit::Error> {
    let host = Host::new("modkit".parse().expect("policy"));
    modules(&host)?;

    let out = run(&host, &["trim", "lower"], "  Hello   MODULAR   World  ")?;
    println!("pipeline output: {out:?}");

    let counted = run(&host, &["lower", "count"], "Stages Are Modules")?;
    println!("with the count stage: {counted:?}");
    println!("\nafter loading stage:count (textutil came first, as a dependency):");
    print!("{}", host.lsmod_text());

    // textutil is used by stage-count: refused, with the holder named.
    match host.rmmod("textutil") {
        Err(e) => println!("\nrmmod textutil refused: {e}"),
        Ok(()) => println!("\nrmmod textutil unexpectedly succeeded"),
    }

    // A worker holds the trim stage for a while; rmmod waits for it instead of failing.
    let held = host.symbol::<StageRef>("stage_trim")?;
    let worker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let r = held.apply("  still   running  ");
        drop(held);
        r
    });
    let opts = Rmmod {
        wait: true,
        deadline: Some(Duration::from_secs(5)),
        force: false,
    };
    let t = std::time::Instant::now();
    host.rmmod_with("stage-trim", opts)?;
    println!(
        "\nrmmod stage-trim waited {:?} for the worker ({:?}), then unloaded",
        t.elapsed(),
        worker.join().expect("worker")
    );

    host.rmmod("stage-count")?;
    host.rmmod("textutil")?;
    println!("\nfinal lsmod:");
    print!("{}", host.lsmod_text());
    Ok(())
}
