//! A real machine's coldplug against a real module tree (`modkit simulate --tree TREE
//! --devices FILE`): the machine's devices, as captured from its /sys, become `[[device]]`s
//! present at boot; every module of the tree whose aliases match one of them gets a driver
//! on that device's bus whose id table is those aliases (what `MODULE_DEVICE_TABLE` makes
//! of a driver's ids); udevd handles each device's uevent with one `modprobe MODALIAS`, as
//! systemd-udevd's kmod builtin does at coldplug (`udevadm trigger --action=add`).
//!
//! A device list has one device per line, in any of three forms:
//!
//! ```text
//! # comment, and blank lines, are ignored
//! pci 0000:00:02.0 pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00
//! /sys/devices/pci0000:00/0000:00:03.0/modalias:pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00
//! virtio:d00000001v00001AF4
//! ```
//!
//! The first, `BUS NAME MODALIAS`, is what the capture command in docs/scenario-format.md
//! prints (the bus from the device's `subsystem` link); the second is `grep -r .
//! /sys/devices --include=modalias`; the third is `cat` of the modalias files (the bus is
//! then the modalias's prefix, which is wrong for a platform device with an ACPI modalias:
//! prefer the first form).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use modkit_core::device::BUILTIN_BUSES;
use modkit_ko::fnmatch::fnmatch;
use modkit_ko::names::alias_normalize;

/// Most devices a list may hold.
pub const MAX_DEVICES: usize = 100_000;
/// Longest line of a device list (the kernel's modalias files hold at most a page).
pub const MAX_LINE: usize = 64 * 1024;

/// One device of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDevice {
    /// The device's bus (its `subsystem`).
    pub bus: String,
    /// `dev_name()`: the device's directory name under /sys/devices.
    pub name: String,
    /// What its `modalias` file holds.
    pub modalias: String,
}

fn valid_bus(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 64
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn valid_modalias(m: &str) -> bool {
    m.contains(':') && !m.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Parses a device list (`file` names it in errors). Names are made unique: a name seen
/// before gets `@BUS`, then `#N`, appended.
pub fn parse_device_list(file: &str, text: &str) -> Result<Vec<MachineDevice>, String> {
    let mut out: Vec<MachineDevice> = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let forms = "expected `BUS NAME MODALIAS`, `/sys/devices/…/modalias:MODALIAS` or `MODALIAS` (see docs/scenario-format.md, \"A real machine's coldplug\")";
    for (i, raw) in text.lines().enumerate() {
        let at = i + 1;
        if raw.len() > MAX_LINE {
            return Err(format!(
                "{file}:{at}: the line is {} bytes long, more than the {MAX_LINE} a modalias file can hold",
                raw.len()
            ));
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (bus, name, modalias) = if fields.len() == 3 {
            if !valid_bus(fields[0]) {
                return Err(format!(
                    "{file}:{at}: `{}` is not a bus name (letters, digits, `_`, `-`): {forms}",
                    fields[0]
                ));
            }
            (
                fields[0].to_string(),
                fields[1].to_string(),
                fields[2].to_string(),
            )
        } else if fields.len() == 1 && line.starts_with("/sys/") {
            let Some((path, modalias)) = line.split_once("/modalias:") else {
                return Err(format!(
                    "{file}:{at}: a /sys path without `/modalias:` after it: {forms}"
                ));
            };
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            let bus = modalias.split(':').next().unwrap_or_default().to_string();
            (bus, name, modalias.to_string())
        } else if fields.len() == 1 {
            let bus = line.split(':').next().unwrap_or_default().to_string();
            (bus, String::new(), line.to_string())
        } else {
            return Err(format!("{file}:{at}: {} fields: {forms}", fields.len()));
        };
        if !valid_modalias(&modalias) {
            return Err(format!(
                "{file}:{at}: `{modalias}` is not a modalias (`PREFIX:…`): {forms}"
            ));
        }
        if !valid_bus(&bus) {
            return Err(format!(
                "{file}:{at}: the bus `{bus}` (the modalias's prefix) is not a bus name: give the bus as `BUS NAME MODALIAS`"
            ));
        }
        if out.len() == MAX_DEVICES {
            return Err(format!(
                "{file}:{at}: more than {MAX_DEVICES} devices: split the list"
            ));
        }
        let base = if name.is_empty() {
            format!("{bus}{}", out.iter().filter(|d| d.bus == bus).count())
        } else {
            name
        };
        let mut unique = base.clone();
        if names.contains(&unique) {
            unique = format!("{base}@{bus}");
        }
        let mut n = 2;
        while names.contains(&unique) {
            unique = format!("{base}@{bus}#{n}");
            n += 1;
        }
        names.insert(unique.clone());
        out.push(MachineDevice {
            bus,
            name: unique,
            modalias,
        });
    }
    if out.is_empty() {
        return Err(format!("{file}: no device in the list: {forms}"));
    }
    Ok(out)
}

fn toml_str(s: &str) -> String {
    // A TOML basic string: JSON-style escapes are valid TOML.
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// What a coldplug scenario is made of, besides its text.
#[derive(Debug, Clone)]
pub struct Coldplug {
    /// The scenario's text (TOML, format 1).
    pub text: String,
    /// Each module given a driver, with the devices its aliases match.
    pub matches: BTreeMap<String, Vec<String>>,
    /// Devices no module of the tree matches (builtin drivers, or none).
    pub unmatched: Vec<String>,
}

/// The scenario of `devices`' coldplug on the tree at `root` (a lib/modules/VERSION
/// directory; `symvers` as for `tree`), under `udev`'s defaults.
pub fn coldplug_scenario(
    root: &Path,
    symvers: Option<&Path>,
    list_name: &str,
    devices: &[MachineDevice],
) -> Result<Coldplug, String> {
    let loaded = modkit_ko::tree::load_tree_lenient(root).map_err(|e| e.to_string())?;
    let mut text = format!(
        "name = {}\ntree = {}\n",
        toml_str(&format!("coldplug of {list_name} on {}", root.display())),
        toml_str(&root.display().to_string())
    );
    if let Some(s) = symvers {
        text.push_str(&format!(
            "symvers = {}\n",
            toml_str(&s.display().to_string())
        ));
    }
    // udevd with systemd's defaults (workers from the `cpu` devices).
    text.push_str("udev = {}\n");
    let buses: BTreeSet<&str> = devices
        .iter()
        .map(|d| d.bus.as_str())
        .filter(|b| !BUILTIN_BUSES.contains(b))
        .collect();
    for b in &buses {
        text.push_str(&format!("\n[[bus]]\nname = {}\n", toml_str(b)));
    }
    for d in devices {
        text.push_str(&format!(
            "\n[[device]]\nname = {}\nbus = {}\nmodalias = {}\n",
            toml_str(&d.name),
            toml_str(&d.bus),
            toml_str(&d.modalias)
        ));
    }
    // Drivers: modules in the tree's path order (udev's modprobe resolves aliases in
    // modules.alias order; the first registered driver that matches binds).
    let normalized: Vec<Option<String>> = devices
        .iter()
        .map(|d| alias_normalize(&d.modalias))
        .collect();
    let mut matches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut matched_devices: BTreeSet<usize> = BTreeSet::new();
    for m in &loaded.modules {
        // bus → the module's aliases that match a device of that bus.
        let mut by_bus: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in &m.aliases {
            let Some(pat) = alias_normalize(a) else {
                continue;
            };
            for (i, d) in devices.iter().enumerate() {
                let Some(ma) = &normalized[i] else { continue };
                if fnmatch(pat.as_bytes(), ma.as_bytes()) {
                    let v = by_bus.entry(d.bus.as_str()).or_default();
                    if !v.contains(&a.as_str()) {
                        v.push(a.as_str());
                    }
                    matched_devices.insert(i);
                    let md = matches.entry(m.name.clone()).or_default();
                    if !md.contains(&d.name) {
                        md.push(d.name.clone());
                    }
                }
            }
        }
        // CPU features are not drivers: a `cpu:` alias (MODULE_DEVICE_TABLE(x86cpu, …)) only
        // makes udev load the module for the CPU's uevent; its init checks the CPU itself
        // (x86_match_cpu()) and binds nothing (drivers/base/cpu.c has no driver to match).
        by_bus.remove("cpu");
        if by_bus.is_empty() {
            continue;
        }
        text.push_str(&format!("\n[[module]]\nname = {}\n", toml_str(&m.name)));
        let several = by_bus.len() > 1;
        for (bus, pats) in by_bus {
            let name = if several {
                format!("{}@{bus}", m.name)
            } else {
                m.name.clone()
            };
            let pats: Vec<String> = pats.iter().map(|p| toml_str(p)).collect();
            text.push_str(&format!(
                "[[module.driver]]\nname = {}\nbus = {}\nmatch = [{}]\n",
                toml_str(&name),
                toml_str(bus),
                pats.join(", ")
            ));
        }
    }
    let unmatched = devices
        .iter()
        .enumerate()
        .filter(|(i, _)| !matched_devices.contains(i))
        .map(|(_, d)| d.name.clone())
        .collect();
    Ok(Coldplug {
        text,
        matches,
        unmatched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_parse() {
        let list = "# captured\n\npci 0000:00:02.0 pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00\n/sys/devices/pci0000:00/0000:00:03.0/virtio2/modalias:virtio:d00000001v00001AF4\nvirtio:d00000002v00001AF4\nplatform ACPI0013:00 acpi:ACPI0013:\n/sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0013:00/modalias:acpi:ACPI0013:\n";
        let d = parse_device_list("m.devices", list).unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d[0].bus, "pci");
        assert_eq!(d[0].name, "0000:00:02.0");
        assert_eq!(d[1].name, "virtio2");
        assert_eq!(d[1].bus, "virtio");
        assert_eq!(d[1].modalias, "virtio:d00000001v00001AF4");
        assert_eq!(d[2].name, "virtio1", "unnamed: bus and index");
        assert_eq!(d[3].bus, "platform");
        assert_eq!(
            d[4].name, "ACPI0013:00@acpi",
            "a second device of that name"
        );
    }

    #[test]
    fn bad_lists_name_the_line_and_the_fix() {
        let e = parse_device_list("m.devices", "pci 0000:00:02.0\n").unwrap_err();
        assert!(e.starts_with("m.devices:1: 2 fields"), "{e}");
        let e = parse_device_list("m.devices", "\nnot-a-modalias\n").unwrap_err();
        assert!(
            e.starts_with("m.devices:2:") && e.contains("not a modalias"),
            "{e}"
        );
        let e = parse_device_list("m.devices", "p/ci x pci:v1\n").unwrap_err();
        assert!(e.contains("not a bus name"), "{e}");
        let e = parse_device_list("m.devices", "# nothing\n").unwrap_err();
        assert!(e.contains("no device"), "{e}");
        let long = format!("pci:{}\n", "a".repeat(MAX_LINE));
        let e = parse_device_list("m.devices", &long).unwrap_err();
        assert!(e.contains("more than the"), "{e}");
        let e = parse_device_list("m.devices", "/sys/devices/x/uevent:pci:v1\n").unwrap_err();
        assert!(e.contains("/modalias:"), "{e}");
    }

    #[test]
    fn strings_are_escaped_for_toml() {
        assert_eq!(toml_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
