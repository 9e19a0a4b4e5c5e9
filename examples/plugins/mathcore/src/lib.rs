//! mathcore: arithmetic the other plugins import. Built three ways (see Cargo.toml's
//! features) for the reload and type-change demos.

#[cfg(not(feature = "changed-type"))]
modkit::plugin! {
    name: "mathcore",
    license: "MIT",
    aliases: [],
    imports: {},
    exports: {
        fn add(a: i64, b: i64) -> i64 { a + b }
        fn scale(x: i64) -> i64 { x * FACTOR }
    },
    init: [
        "announce" => |ctx| { ctx.log(&format!("mathcore up (factor {FACTOR})")); Ok(()) },
            undo |ctx| ctx.log("mathcore down");
    ],
}

#[cfg(feature = "changed-type")]
modkit::plugin! {
    name: "mathcore",
    license: "MIT",
    aliases: [],
    imports: {},
    exports: {
        fn add(a: i64, b: i64) -> i64 { a + b }
        fn scale(x: i32) -> i32 { x * 10 }
    },
    init: [],
}

#[cfg(not(any(feature = "v2", feature = "changed-type")))]
const FACTOR: i64 = 10;
#[cfg(feature = "v2")]
const FACTOR: i64 = 100;

/// The benchmark's build only: `scale` as a plain C symbol for libloading's side.
#[cfg(feature = "c-abi")]
#[no_mangle]
pub extern "C" fn mathcore_scale_c(x: i64) -> i64 {
    x * FACTOR
}
