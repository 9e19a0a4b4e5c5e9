//! Each device's state changes with their virtual times (what the simulator's
//! `Run::device_history` holds, drawn as the device rows of `--svg`): recorded on the
//! virtual clock when the kernel records history (`Kernel::record_history`).
//!
//! The clock moves only when every thread is parked (`HostHandle::advance`), so the
//! states are sampled there, before the clock moves, and once more at the end of the run:
//! every state a device holds while time passes is recorded with the instant it began. A
//! state that begins and ends within one instant (a probe that binds at once) is not: the
//! simulator, which samples after every step, records it with a zero-length span.

use modkit_core::device::DrvId;
use modkit_core::Time;

use crate::host::State;

/// A device's state word and driver, as `DeviceModel::state_of` gives them.
type Word = (&'static str, Option<DrvId>);

/// The recorded changes.
#[derive(Default)]
pub(crate) struct DevHistory {
    last: Vec<Word>,
    rows: Vec<(Time, usize, &'static str, Option<DrvId>)>,
}

/// Notes every device whose state changed since the last sample, at `now`.
pub(crate) fn note(st: &mut State, now: Time) {
    if !st.k.record_history || st.devs.dm.devices.is_empty() {
        return;
    }
    let State { devs, history, .. } = st;
    let n = devs.dm.devices.len();
    if history.last.len() < n {
        history.last.resize(n, ("absent", None));
    }
    for i in 0..n {
        let w = devs.dm.state_of(i);
        if history.last[i] != w {
            history.last[i] = w;
            history.rows.push((now, i, w.0, w.1));
        }
    }
}

/// The changes recorded so far, with device and driver names.
pub(crate) fn rows(st: &State) -> Vec<(Time, String, &'static str, Option<String>)> {
    let dm = &st.devs.dm;
    st.history
        .rows
        .iter()
        .map(|&(t, d, w, drv)| {
            (
                t,
                dm.devices[d].name.clone(),
                w,
                drv.map(|x| dm.drivers[x].name.clone()),
            )
        })
        .collect()
}
