//! Choosing where the networks run.

use burn::prelude::Device;
use burn::tensor::DeviceKind;
use burn::tensor::wgpu::wgpu;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A real GPU adapter if one is present, else the CPU (flex) backend.
    #[default]
    Auto,
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// burn's wgpu backend on the best adapter, software ones (lavapipe) included.
    Gpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" | "wgpu" => Ok(Self::Gpu),
            other => Err(format!("unknown device `{other}` (auto, cpu or gpu)")),
        }
    }
}

/// A device and a label saying what it is, for output and audit records.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub label: String,
    /// The networks run on wgpu (so scoring runs there too).
    pub wgpu: bool,
}

/// The adapters wgpu can see: (name, device type, backend).
pub fn wgpu_adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::default();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

pub fn select(choice: DeviceChoice) -> Result<SelectedDevice, String> {
    let adapters = || wgpu_adapters();
    let describe = |a: &wgpu::AdapterInfo| format!("wgpu: {} ({:?}, {:?})", a.name, a.device_type, a.backend);
    match choice {
        DeviceChoice::Cpu => Ok(SelectedDevice {
            device: Device::flex(),
            label: "cpu (burn flex)".into(),
            wgpu: false,
        }),
        DeviceChoice::Gpu => {
            let all = adapters();
            // Prefer real hardware, but accept a software adapter (lavapipe) when asked for wgpu.
            let best = all
                .iter()
                .find(|a| is_hardware(a))
                .or_else(|| all.first())
                .ok_or("no wgpu adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers)")?;
            Ok(SelectedDevice {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                label: describe(best),
                wgpu: true,
            })
        }
        DeviceChoice::Auto => match adapters().iter().find(|a| is_hardware(a)) {
            Some(a) => Ok(SelectedDevice {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                label: describe(a),
                wgpu: true,
            }),
            None => select(DeviceChoice::Cpu),
        },
    }
}

fn is_hardware(a: &wgpu::AdapterInfo) -> bool {
    matches!(
        a.device_type,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    )
}
