//! Choosing where the networks run.

use std::sync::OnceLock;

use burn::prelude::Device;
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
    /// The wgpu device and queue burn's runtime runs on, when the networks run on wgpu (so
    /// scoring runs there too, on the same device).
    pub wgpu: Option<SharedWgpu>,
}

/// The wgpu handles burn's runtime was brought up on, shared with the WGSL matcher: one
/// device and one queue, so the kernels bind the very buffers the network wrote, and queue
/// order (not a host round trip) makes the network's writes visible to them.
#[derive(Debug, Clone)]
pub struct SharedWgpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::AdapterInfo,
}

/// The adapters wgpu can see on its primary backends (Vulkan, Metal, DX12): (name, device
/// type, backend). GL is left out: wgpu's GL backend deadlocks under concurrent use on Mesa's
/// llvmpipe, so a machine with GL alone runs on the CPU.
pub fn wgpu_adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

/// burn's wgpu runtime, brought up once per process (a runtime cannot be initialised twice):
/// burn acquires the adapter and device itself, with the features and limits its compiler
/// wants, and hands back the handles for our kernels. The same registration `init_device`
/// makes, the other way round, so there is one place that decides the device's features.
fn shared_runtime() -> Result<(Device, SharedWgpu), String> {
    static RUNTIME: OnceLock<Result<(Device, SharedWgpu), String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .map_err(|e| format!("bringing up burn's wgpu runtime: {e}"))?;
            Ok((
                device,
                SharedWgpu {
                    adapter: setup.adapter.get_info(),
                    device: setup.device,
                    queue: setup.queue,
                },
            ))
        })
        .clone()
}

pub fn select(choice: DeviceChoice) -> Result<SelectedDevice, String> {
    let wgpu = || -> Result<SelectedDevice, String> {
        let (device, shared) = shared_runtime()?;
        let a = &shared.adapter;
        Ok(SelectedDevice {
            device,
            label: format!("wgpu: {} ({:?}, {:?})", a.name, a.device_type, a.backend),
            wgpu: Some(shared),
        })
    };
    match choice {
        DeviceChoice::Cpu => Ok(SelectedDevice {
            device: Device::flex(),
            label: "cpu (burn flex)".into(),
            wgpu: None,
        }),
        // burn's default adapter prefers real hardware and accepts a software one (lavapipe).
        DeviceChoice::Gpu if wgpu_adapters().is_empty() => {
            Err("no wgpu adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers)".into())
        }
        DeviceChoice::Gpu => wgpu(),
        DeviceChoice::Auto if wgpu_adapters().iter().any(is_hardware) => wgpu(),
        DeviceChoice::Auto => select(DeviceChoice::Cpu),
    }
}

fn is_hardware(a: &wgpu::AdapterInfo) -> bool {
    matches!(
        a.device_type,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    )
}
