//! What the differential tests compare between the simulator and the host driver.

use modkit_sim::report::module_table;

/// What must agree between drivers: final module table, sorted event results, kinds of
/// diagnostics, virtual end time. A run stopped as a livelock ends mid-way: which threads
/// had finished at the instant it was cut is not part of the contract (the host stops at
/// the simulator's instant), so its results are left out.
pub fn summary(r: &modkit_sim::Run) -> String {
    let mut results: Vec<(String, Vec<String>)> = r
        .results
        .iter()
        .map(|(k, v)| {
            let mut v: Vec<String> = v.iter().map(|o| o.to_string()).collect();
            v.sort();
            (k.clone(), v)
        })
        .collect();
    results.sort();
    if r.kernel
        .diagnostics
        .iter()
        .any(|d| d.kind.name() == "livelock")
    {
        results.clear();
    }
    let mut kinds: Vec<&str> = r.kernel.diagnostics.iter().map(|d| d.kind.name()).collect();
    kinds.sort();
    kinds.dedup();
    format!(
        "modules: {:?}\nresults: {results:?}\ndiagnostics: {kinds:?}\nend: {}",
        module_table(&r.kernel),
        r.end_time
    )
}
