//! ticker: starts a thread the host owns; rmmod stops and joins it before the library is
//! closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static TICKS: AtomicU64 = AtomicU64::new(0);

fn run(stop: &modkit::plugin::Stop<'_>) {
    while !stop.stopped() {
        TICKS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
    }
}

modkit::plugin! {
    name: "ticker",
    license: "MIT",
    aliases: [],
    // Declared by hand (it would also be computed from the import of `add`): both work.
    depends: ["mathcore"],
    imports: {
        fn add(a: i64, b: i64) -> i64;
    },
    exports: {
        fn ticks() -> u64 { TICKS.load(Ordering::Relaxed) }
        fn ticks_plus(n: i64) -> i64 { add(TICKS.load(Ordering::Relaxed) as i64, n) }
    },
    init: [
        "start" => |ctx| {
            TICKS.store(0, Ordering::Relaxed);
            ctx.spawn("tick", run)?;
            Ok(())
        }, undo |ctx| ctx.log("ticker: thread stopped");
    ],
}
