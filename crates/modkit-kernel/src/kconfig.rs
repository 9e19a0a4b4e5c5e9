//! The loader settings a kernel fixes in its build configuration, read from its `.config`.
//!
//! A scenario's `modversions`, `force_load` and `force_unload` stand for
//! CONFIG_MODVERSIONS, CONFIG_MODULE_FORCE_LOAD and CONFIG_MODULE_FORCE_UNLOAD. A booted
//! kernel has what it was built with: Debian's 6.1.176 and 6.12.117 cloud kernels have all
//! three, sid's 7.2.13 cloud kernel has CONFIG_MODVERSIONS off (`# CONFIG_MODVERSIONS is not
//! set` in its config-7.2.13+deb14-cloud-amd64). `modkit compare` runs the simulator beside
//! such a kernel with each setting the scenario turns on and the kernel lacks turned off,
//! and says so in a note,
//! so that a difference it reports is one of behaviour, not of configuration. The scenario's
//! own `[[expect]]` blocks are still checked by `modkit check` with the scenario's values.

use modkit_core::taint::LoaderConfig;

/// `CONFIG_X` is `y` (or `m`) in a kernel `.config` text.
fn enabled(config: &str, option: &str) -> bool {
    config.lines().any(|l| {
        l.strip_prefix(option)
            .and_then(|rest| rest.strip_prefix('='))
            .is_some_and(|v| v == "y" || v == "m")
    })
}

/// Turns off each build-time setting `cfg` has on and the kernel whose `.config` is
/// `config` lacks; returns one note per setting changed (empty when the kernel has what
/// the scenario asks). A setting the scenario leaves off stays off although the kernel has
/// it: `modversions` is off in the model unless a scenario asks for it (scenarios give CRCs
/// where they matter), and a scenario that turns `force_load` or `force_unload` off where
/// it matters is refused before building (`cgen`).
pub fn apply_kernel_config(config: &str, kver: &str, cfg: &mut LoaderConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let mut set = |key: &str, option: &str, field: &mut bool| {
        let kernel = enabled(config, option);
        if *field && !kernel {
            notes.push(format!(
                "the simulator runs with `{key} = {kernel}` beside this kernel: {option} is {} in {kver}'s config (the scenario says `{key} = {}`)",
                if kernel { "set" } else { "not set" },
                *field
            ));
            *field = kernel;
        }
    };
    set("modversions", "CONFIG_MODVERSIONS", &mut cfg.modversions);
    set(
        "force_load",
        "CONFIG_MODULE_FORCE_LOAD",
        &mut cfg.force_load,
    );
    set(
        "force_unload",
        "CONFIG_MODULE_FORCE_UNLOAD",
        &mut cfg.force_unload,
    );
    notes
}

/// The `.config` of kernel `kver` (from its cached packages).
pub fn kernel_config(kver: &str) -> Result<String, crate::assets::AssetError> {
    let assets = crate::assets::kernel(kver)?;
    std::fs::read_to_string(&assets.config).map_err(|e| crate::assets::AssetError::Io {
        path: assets.config.display().to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_build_options_win() {
        let sid = "CONFIG_MODULE_FORCE_LOAD=y\nCONFIG_MODULE_FORCE_UNLOAD=y\n# CONFIG_MODVERSIONS is not set\n";
        let mut cfg = LoaderConfig {
            modversions: true,
            ..LoaderConfig::default()
        };
        let notes = apply_kernel_config(sid, "7.2.13+deb14-cloud-amd64", &mut cfg);
        assert!(!cfg.modversions && cfg.force_load && cfg.force_unload);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("CONFIG_MODVERSIONS is not set"),
            "{}",
            notes[0]
        );
        let bookworm =
            "CONFIG_MODULE_FORCE_LOAD=y\nCONFIG_MODULE_FORCE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n";
        let mut cfg2 = LoaderConfig {
            modversions: true,
            ..LoaderConfig::default()
        };
        assert!(apply_kernel_config(bookworm, "6.12.117+deb12-cloud-amd64", &mut cfg2).is_empty());
        assert!(cfg2.modversions);
        // The model's default (modversions off) stays off beside a kernel that has it.
        let mut cfg3 = LoaderConfig::default();
        assert!(apply_kernel_config(bookworm, "6.12.117+deb12-cloud-amd64", &mut cfg3).is_empty());
        assert!(!cfg3.modversions);
        // CONFIG_MODVERSIONS_X=y is another option.
        assert!(!enabled("CONFIG_MODVERSIONS_X=y\n", "CONFIG_MODVERSIONS"));
    }
}
