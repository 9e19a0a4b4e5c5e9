//! The host's `tracing` events (target `modkit::module`): one per state change, pin, holder
//! link, failed init step and undo, in order, with their fields.

use std::sync::{Arc, Mutex};

use modkit::{Errno, Host, Init, Module};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keeps every `modkit::module` event as `message key=value …` (fields in order).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else if field.name() != "task" && field.name() != "pin" {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == modkit::trace::TARGET
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut l = Line(String::new());
        e.record(&mut l);
        self.0.lock().unwrap().push(l.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[test]
fn modprobe_rmmod_and_failed_init_events() {
    let cap = Capture::default();
    tracing::subscriber::set_global_default(cap.clone()).unwrap();

    let host = Host::new("modkit".parse().unwrap());
    host.add_module(Module::new("base").export("answer", 42u32))
        .unwrap();
    host.add_module(
        Module::new("user")
            .import::<u32>("answer")
            .init_step("use", |ctx| {
                let v = ctx.symbol::<u32>("answer")?;
                assert_eq!(*v, 42);
                Ok(Init::Continue)
            }),
    )
    .unwrap();
    host.modprobe("user").unwrap();
    host.rmmod("user").unwrap();
    host.rmmod("base").unwrap();
    let got = cap.take();
    let want = [
        "state module=base state=unformed",
        "state module=base state=coming",
        "state module=base state=live",
        "state module=user state=unformed",
        "holder added module=base user=user",
        "state module=user state=coming",
        "pin taken module=base",
        "pin dropped module=base",
        "state module=user state=live",
        "state module=user state=going",
        "state module=user state=gone",
        "holder removed module=base user=user",
        "state module=base state=going",
        "state module=base state=gone",
    ];
    assert_eq!(got, want, "modprobe user + rmmod user, base");

    host.add_module(
        Module::new("bad")
            .init_step_with_undo("first", |_| Ok(Init::Continue), |_| {})
            .init_step("second", |_| Err(Errno::ENODEV)),
    )
    .unwrap();
    let e = host.modprobe("bad").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENODEV));
    let got = cap.take();
    let want = [
        "state module=bad state=unformed",
        "state module=bad state=coming",
        "init failed module=bad step=second errno=ENODEV",
        "undo module=bad step=first",
        "state module=bad state=going",
        "state module=bad state=gone",
    ];
    assert_eq!(got, want, "failing init");
}
