//! Embedders from the registry inside the engine: faceplugin's MobileFaceNet-512 on MTCNN's
//! five points and the ArcFace template, against onnxruntime on the same face
//! (`data/onnx/fr-feature.json`, `tools/onnx/fr_feature_reference.py`).

mod common;

use common::{data, engine, read};
use facegate_core::Config;
use facegate_pipeline::{DeviceChoice, FacePolicy};

fn mobilefacenet() -> Config {
    Config {
        embedder: "faceplugin-mobilefacenet-512".into(),
        ..Config::default()
    }
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt())
}

/// The reference aligns with plain bilinear sampling, we with dlib-style 2×2 supersampling
/// when shrinking (docs/notes/faceplugin-devtrain.md: same accuracy on DevTrain), so the
/// vectors are compared by direction, not element by element.
#[test]
fn mobilefacenet_on_arcface_crops_matches_onnxruntime() {
    let fixture: serde_json::Value = serde_json::from_slice(&read(&data("onnx/fr-feature.json"))).unwrap();
    let want: Vec<f64> = fixture["face-a"]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for device in [DeviceChoice::Cpu, DeviceChoice::Gpu] {
        let Some(engine) = engine(device, mobilefacenet()) else {
            continue;
        };
        assert_eq!(engine.crop_size(), 112);
        let bytes = read(&data("face-a.png"));
        let face = engine
            .analyze(&[&bytes], &[FacePolicy::Dominant])
            .items
            .remove(0)
            .unwrap();
        let got: Vec<f64> = face.descriptor.as_slice().iter().map(|&v| v as f64).collect();
        assert_eq!(got.len(), 512);
        let c = cosine(&got, &want);
        eprintln!("{device:?}: cosine with onnxruntime {c:.5}");
        assert!(c >= 0.99, "{device:?}: cosine {c}");
        assert!(
            engine
                .model_version()
                .contains("arcface-112/faceplugin-mobilefacenet-512@87aacdfe5751")
        );
    }
}

/// Same person scores far above different people (the threshold itself comes from DevTrain).
#[test]
fn mobilefacenet_separates_the_same_face_from_others() {
    let engine = engine(DeviceChoice::Cpu, mobilefacenet()).unwrap();
    let (a, a_jpg, b) = (
        read(&data("face-a.png")),
        read(&data("face-a.jpg")),
        read(&data("face-b.png")),
    );
    let v = engine.verify(&[(&a, &a_jpg), (&a, &b)]);
    let (same, other) = (v[0].score.unwrap(), v[1].score.unwrap());
    assert!(same > 0.9 && other < 0.4, "same {same}, other {other}");
}
