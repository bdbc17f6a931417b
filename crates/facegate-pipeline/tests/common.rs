//! Helpers shared by the pipeline's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use facegate_core::Config;
use facegate_pipeline::{DeviceChoice, Engine};

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)
}

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An engine on the CPU (flex) or on wgpu (lavapipe in CI). Without any wgpu adapter the wgpu
/// variant is skipped, unless FACEGATE_REQUIRE_WGPU is set (CI sets it), then it fails.
pub fn engine(device: DeviceChoice, config: Config) -> Option<Engine> {
    available(device).then(|| Engine::new(config, device).expect("engine"))
}

/// The burn device itself, for tests of single networks; skipped as [`engine`] is.
pub fn device(choice: DeviceChoice) -> Option<burn::prelude::Device> {
    available(choice).then(|| facegate_pipeline::device::select(choice).expect("device").device)
}

fn available(device: DeviceChoice) -> bool {
    if device == DeviceChoice::Gpu && facegate_pipeline::device::wgpu_adapters().is_empty() {
        assert!(
            std::env::var_os("FACEGATE_REQUIRE_WGPU").is_none(),
            "FACEGATE_REQUIRE_WGPU is set but no wgpu adapter exists (install mesa-vulkan-drivers)"
        );
        eprintln!("skipping: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
        return false;
    }
    true
}
