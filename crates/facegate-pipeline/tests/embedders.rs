//! Embedders from the registry inside the engine: faceplugin's MobileFaceNet-512 on MTCNN's
//! five points and the ArcFace template, against onnxruntime on the same face
//! (`data/onnx/fr-feature.json`, `tools/onnx/fr_feature_reference.py`).

mod common;

use common::{data, engine, read};
use facegate_core::{Calibration, Config};
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

/// `--model A+B`: one descriptor per face whose cosine is, up to a fixed affine map, the mean
/// of each embedder's score z-normalised by its DevTrain impostor mean and deviation — checked
/// against the two embedders run alone and the statistics read from their calibration files.
#[test]
fn a_fusion_scores_the_z_normalised_mean_of_its_embedders() {
    let names = ["dlib-resnet-v1", "faceplugin-mobilefacenet-512"];
    let stats: Vec<(f64, f64)> = ["mtcnn-dlib-resnet-v1-f32", "mtcnn-faceplugin-mobilefacenet-512"]
        .iter()
        .map(|f| {
            let path = common::root().join(format!("models/calibration/{f}.lfw-devtrain.toml"));
            let c = Calibration::read(&path).unwrap();
            (c.impostor_mean.unwrap(), c.impostor_std.unwrap())
        })
        .collect();
    let config = |embedder: &str| Config {
        embedder: embedder.into(),
        ..Config::default()
    };
    let fused = engine(DeviceChoice::Cpu, config(&names.join("+"))).unwrap();
    assert_eq!(fused.embedding().dim(), 128 + 512);
    let singles: Vec<_> = names
        .iter()
        .map(|n| engine(DeviceChoice::Cpu, config(n)).unwrap())
        .collect();
    // The fusion's id names both pipelines, so its calibration fits only this pair.
    let id = fused.model_version();
    for single in &singles {
        let (_, branch) = single.model_version().split_once('/').unwrap();
        assert!(id.contains(branch), "{id} lacks {branch}");
    }
    let photos = [
        read(&data("face-a.png")),
        read(&data("face-a.jpg")),
        read(&data("face-b.png")),
    ];
    let pairs: Vec<(&[u8], &[u8])> = [(0, 1), (0, 2), (1, 2)]
        .iter()
        .map(|&(a, b)| (photos[a].as_slice(), photos[b].as_slice()))
        .collect();
    let got: Vec<f32> = fused.verify(&pairs).iter().map(|v| v.score.unwrap()).collect();
    let alone: Vec<Vec<f32>> = singles
        .iter()
        .map(|e| e.verify(&pairs).iter().map(|v| v.score.unwrap()).collect())
        .collect();
    for (k, &score) in got.iter().enumerate() {
        let want: f64 = alone
            .iter()
            .zip(&stats)
            .map(|(s, (mean, std))| (f64::from(s[k]) - mean) / std)
            .sum::<f64>()
            / 2.0;
        let z = fused.embedding().z_score(f64::from(score));
        eprintln!("pair {k}: fused cosine {score:.5}, z {z:.4}, from the embedders alone {want:.4}");
        assert!((z - want).abs() < 1e-3, "pair {k}: {z} vs {want}");
    }
    // Same person far above different people, on the fused scale too.
    assert!(got[0] > fused.threshold() && got[1] < fused.threshold() && got[2] < fused.threshold());
}

#[test]
fn a_fusion_names_each_model_once_and_needs_its_statistics() {
    let load = |embedder: &str, models_dir: Option<std::path::PathBuf>| {
        let config = Config {
            embedder: embedder.into(),
            models_dir,
            ..Config::default()
        };
        facegate_pipeline::Engine::new(config, DeviceChoice::Cpu)
            .err()
            .map(|e| e.to_string())
    };
    let e = load("dlib-resnet-v1+dlib-resnet-v1", None).unwrap();
    assert!(e.contains("names dlib-resnet-v1 twice"), "{e}");
    let e = load("dlib-resnet-v1+", None).unwrap();
    assert!(e.contains("joined by `+`"), "{e}");
    let e = load("dlib-resnet-v1+mtcnn", None).unwrap();
    assert!(e.contains("`mtcnn` is a detector, not an embedder"), "{e}");
    // A model of our own with no calibration beside its card: no statistics to fuse by.
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("mfn-copy");
    std::fs::create_dir_all(&own).unwrap();
    let card = std::fs::read_to_string(common::root().join("models/faceplugin-mobilefacenet-512/model.toml"))
        .unwrap()
        .replace("name = \"faceplugin-mobilefacenet-512\"", "name = \"mfn-copy\"");
    std::fs::write(own.join("model.toml"), card).unwrap();
    std::fs::copy(
        common::root().join("models/faceplugin-mobilefacenet-512/fr_feature.onnx"),
        own.join("fr_feature.onnx"),
    )
    .unwrap();
    let e = load("dlib-resnet-v1+mfn-copy", Some(dir.path().to_path_buf())).unwrap();
    assert!(
        e.contains("impostor mean and deviation") && e.contains("mfn-copy@87aacdfe5751"),
        "{e}"
    );
}
