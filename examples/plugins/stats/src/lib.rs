//! stats: found by its alias `calc:stats`; imports mathcore's functions (linked by modkit,
//! not by the dynamic linker; its dependency on mathcore is computed from these imports)
//! and exports its own, one of which can panic.

modkit::plugin! {
    name: "stats",
    license: "MIT",
    aliases: ["calc:*"],
    // No `depends:`: mathcore is found from the imports below (their `import=` entries
    // against mathcore's `export=` entries), by `modkit depmod` and by the host.
    imports: {
        fn add(a: i64, b: i64) -> i64;
        fn scale(x: i64) -> i64;
    },
    exports: {
        fn weighted(a: i64, b: i64) -> i64 { scale(add(a, b)) }
        fn ratio(a: i64, b: i64) -> i64 {
            if b == 0 {
                panic!("ratio: division by zero");
            }
            a / b
        }
    },
    init: [
        "check-link" => |ctx| {
            // Imports are callable from the first step on.
            if scale(add(1, 1)) <= 0 {
                return Err(modkit::Errno::EINVAL);
            }
            ctx.log("stats linked against mathcore");
            Ok(())
        };
    ],
}
