//! The interpreter against onnxruntime, on committed fixtures (`data/onnx/`, written by the
//! scripts under `tools/onnx/`), on the CPU (flex) and on wgpu (lavapipe in CI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::prelude::*;
use facegate_onnx::{OnnxError, OnnxNet};
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

/// The fixtures' input generator (data/onnx/README.md).
fn lcg(n: usize) -> Vec<f32> {
    let mut s: u64 = 0x853c_49e6_748f_ea9b;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn devices() -> Vec<(&'static str, Device)> {
    static WGPU: OnceLock<Option<Device>> = OnceLock::new();
    let wgpu = WGPU.get_or_init(|| match Device::wgpu_options().init() {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                std::env::var_os("FACEGATE_REQUIRE_WGPU").is_none(),
                "FACEGATE_REQUIRE_WGPU: {e}"
            );
            eprintln!("skipping wgpu: {e}");
            None
        }
    });
    let mut out = vec![("flex", Device::flex())];
    if let Some(d) = wgpu {
        out.push(("wgpu", d.clone()));
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn batch(values: Vec<f32>, dims: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

#[test]
fn the_input_generator_matches_the_fixtures() {
    let fixture = json("data/onnx/op-zoo.json");
    assert_eq!(lcg(4), floats(&fixture["lcg"]["first_values"]));
}

#[test]
fn op_zoo_matches_onnxruntime_at_batch_1_and_3() {
    let fixture = json("data/onnx/op-zoo.json");
    for (label, device) in devices() {
        let net = OnnxNet::load(&read("data/onnx/op-zoo.onnx"), &device).unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let n = case["batch"].as_u64().unwrap() as usize;
            let outputs = net.run(batch(lcg(n * 3 * 16 * 16), [n, 3, 16, 16], &device)).unwrap();
            assert_eq!(net.output_names(), ["output", "aux"], "{label}");
            for (name, out) in net.output_names().into_iter().zip(outputs) {
                let want = &case["outputs"][name];
                let shape: Vec<usize> = want["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(out.dims, shape, "{label} batch {n} {name}");
                let got: Vec<f32> = out.tensor.into_data().try_to_vec().unwrap();
                let d = max_abs_diff(&got, &floats(&want["data"]));
                assert!(d <= 1e-4, "{label} batch {n} {name}: max |Δ| {d}");
                eprintln!("{label} batch {n} {name}: max |Δ| {d:.2e}");
            }
        }
    }
}

/// The op zoo has one batch norm right after a convolution and one after an addition: only
/// the first can be folded (and the parity test above shows the folded net is still right).
/// Its PRelu after that folded batch norm and its Relu right after a convolution run inside
/// the convolution; its LeakyRelu (after the unfolded batch norm) does not.
#[test]
fn batch_norm_and_activations_after_a_convolution_are_folded_into_it() {
    let net = OnnxNet::load(&read("data/onnx/op-zoo.onnx"), &Device::flex()).unwrap();
    assert_eq!(net.folded_batch_norms(), 1);
    assert_eq!(net.fused_activations(), 2);
    let frn = OnnxNet::load(
        &read("models/faceplugin-mobilefacenet-512/fr_feature.onnx"),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(frn.folded_batch_norms(), 0, "faceplugin's exporter folded them already");
    assert_eq!(frn.fused_activations(), 33, "every PRelu follows a convolution");
}

#[test]
fn an_unsupported_operator_is_refused_at_load_naming_the_node() {
    let err = OnnxNet::load(&read("data/onnx/bad-op.onnx"), &Device::flex()).unwrap_err();
    match &err {
        OnnxError::Unsupported { op, .. } => assert_eq!(op, "Einsum"),
        other => panic!("expected Unsupported, got {other}"),
    }
    assert!(err.to_string().contains("Einsum"), "{err}");
}

#[test]
fn garbage_is_a_parse_error_not_a_panic() {
    for bytes in [
        &b""[..],
        b"not an onnx file at all",
        &read("data/face-a.png")[..],
        &read("data/onnx/op-zoo.onnx")[..5000],
    ] {
        match OnnxNet::load(bytes, &Device::flex()) {
            Err(OnnxError::Parse(_)) | Err(OnnxError::Interface { .. }) => {}
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(_) => panic!("{} bytes of garbage loaded", bytes.len()),
        }
    }
}

#[test]
fn a_wrong_input_shape_is_a_typed_error() {
    let device = Device::flex();
    let net = OnnxNet::load(&read("data/onnx/op-zoo.onnx"), &device).unwrap();
    let err = net.run(batch(vec![0.0; 3 * 8 * 8], [1, 3, 8, 8], &device)).unwrap_err();
    assert!(matches!(err, OnnxError::InputShape { .. }), "{err}");
}

/// faceplugin's MobileFaceNet fixes its batch at 1 (`Reshape [1, -1]`); run as one batch of 2,
/// each row must equal onnxruntime's batch-1 output for that image.
#[test]
fn mobilefacenet_512_matches_onnxruntime_with_a_free_batch() {
    let fixture = json("data/onnx/fr-feature.json");
    let bytes = read("models/faceplugin-mobilefacenet-512/fr_feature.onnx");
    for (label, device) in devices() {
        let net = OnnxNet::load(&bytes, &device).unwrap();
        assert_eq!(net.input().to_string(), "input [N, 3, 112, 112]");
        let rows = net
            .forward_rows(batch(lcg(2 * 3 * 112 * 112), [2, 3, 112, 112], &device))
            .unwrap();
        assert_eq!(rows.dims(), [2, 512]);
        let got: Vec<f32> = rows.into_data().try_to_vec().unwrap();
        for (i, want) in fixture["lcg"]["outputs"].as_array().unwrap().iter().enumerate() {
            let d = max_abs_diff(&got[i * 512..(i + 1) * 512], &floats(want));
            assert!(d <= 1e-4, "{label} image {i}: max |Δ| {d}");
            eprintln!("{label} image {i}: max |Δ| {d:.2e}");
        }
    }
}
