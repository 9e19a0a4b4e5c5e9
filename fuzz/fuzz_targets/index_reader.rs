//! Fuzzes the kmod index reader (`modules.*.bin`) used by modinfo and modprobe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modkit_ko::index::IndexReader;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = IndexReader::new(data.to_vec()) {
        let _ = r.search("fuse");
        let _ = r.search_wild("pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00");
        let _ = r.search_wild("");
    }
});
