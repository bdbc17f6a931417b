//! Whole-model and whole-pipeline parity with face-api.js itself.
//!
//! `data/reference-face-api.json` was produced by `tools/parity/reference.js` (face-api.js
//! 1.7.15 on tfjs 4.22's cpu backend) from the PNG fixtures in `data/`, which both sides decode
//! to identical pixels. Required: descriptors max |Δ| ≤ 1e-3 and cosine ≥ 0.9999 for the same
//! input crop, detector boxes within 2 px, landmarks within 1 px. These run face-api.js'
//! pipeline (`face_api_config`), which stays selectable beside the MTCNN default.

mod common;

use common::{data, engine, read};
use facegate_core::{Alignment, Config, Detector, FaceBox, Timings, cosine_similarity};
use facegate_models::recognition;
use facegate_pipeline::{DeviceChoice, Engine, imageops};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_slice(&read(&data("reference-face-api.json"))).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn points(v: &Value) -> Vec<[f64; 2]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect()
}

fn face_box(b: &Value) -> [f64; 4] {
    ["x", "y", "width", "height"].map(|k| b[k].as_f64().unwrap())
}

fn assert_descriptor(ours: &[f32], theirs: &[f64], what: &str, max_abs: f64, min_cos: f64) {
    let delta = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    let theirs32: Vec<f32> = theirs.iter().map(|&v| v as f32).collect();
    let cos = cosine_similarity(ours, &theirs32) as f64;
    eprintln!("{what}: max|Δ| {delta:.2e}, cosine {cos:.7}");
    assert!(
        delta <= max_abs && cos >= min_cos,
        "{what}: max|Δ| {delta:.2e}, cosine {cos:.7}"
    );
}

fn assert_points(ours: &[[f64; 2]], theirs: &[[f64; 2]], what: &str, tol: f64) {
    assert_eq!(ours.len(), theirs.len());
    let d = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
        .fold(0.0, f64::max);
    eprintln!("{what}: landmarks max |Δ| {d:.3} px");
    assert!(d <= tol, "{what}: landmarks differ by {d:.3} px");
}

fn assert_box(ours: &FaceBox, theirs: [f64; 4], what: &str, tol: f64) {
    let o = [ours.x, ours.y, ours.width, ours.height].map(|v| v as f64);
    let d = o.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("{what}: box max |Δ| {d:.3} px");
    assert!(d <= tol, "{what}: box {o:?} vs {theirs:?}");
}

/// Each network on the same input crops face-api.js used (the whole image).
fn networks_match_face_api(device: DeviceChoice) {
    let reference = reference();
    for full in [false, true] {
        let config = Config {
            full_landmarks: full,
            ..face_api_config()
        };
        let Some(engine) = engine(device, config) else { return };
        for r in reference["results"].as_array().unwrap() {
            let name = r["image"].as_str().unwrap();
            let img = image::load_from_memory(&read(&data(name))).unwrap().into_rgb8();
            let whole = FaceBox {
                x: 0.0,
                y: 0.0,
                width: img.width() as f32,
                height: img.height() as f32,
                score: 1.0,
            };
            let key = if full { "landmarks_full" } else { "landmarks_tiny" };
            let ours = engine.landmarks(&[(&img, whole)]).remove(0).unwrap().0;
            assert_points(&ours, &points(&r[key]), &format!("{name} {key}"), 1.0);
            if full {
                continue;
            }
            let size = recognition::INPUT_SIZE;
            let mut crop = vec![0.0; 3 * size * size];
            imageops::crop_square_resize(&img, imageops::full(&img), true, size, &mut crop);
            let d = engine.embed_crops(crop).remove(0);
            assert_descriptor(
                d.as_slice(),
                &floats(&r["descriptor"]),
                &format!("{name} descriptor"),
                1e-3,
                0.9999,
            );
            let boxes = engine.detect(&[&img]).remove(0);
            let theirs = r["detections"].as_array().unwrap();
            assert_eq!(boxes.len(), theirs.len(), "{name}: number of detections");
            for (b, t) in boxes.iter().zip(theirs) {
                assert!((b.face.score as f64 - t["score"].as_f64().unwrap()).abs() < 1e-3);
                assert_box(&b.face, face_box(&t["box"]), &format!("{name} detection"), 2.0);
            }
        }
    }
}

/// The whole face-api pipeline (detect → tiny landmarks → aligned crop → descriptor) on every
/// face of every fixture, multi-face scenes included.
fn pipeline_matches_face_api(engine: &Engine) {
    let reference = reference();
    for r in reference["results"].as_array().unwrap() {
        let name = r["image"].as_str().unwrap();
        let img = image::load_from_memory(&read(&data(name))).unwrap().into_rgb8();
        let boxes = engine.detect(&[&img]).remove(0);
        let theirs = r["pipeline"].as_array().unwrap();
        assert_eq!(boxes.len(), theirs.len(), "{name}: faces");
        let items: Vec<_> = boxes.iter().map(|b| (&img, *b)).collect();
        let faces = engine.describe(&items, &mut Timings::default());
        for (face, t) in faces.iter().zip(theirs) {
            let face = face.as_ref().expect("described");
            assert_box(&face.face, face_box(&t["box"]), &format!("{name} pipeline box"), 2.0);
            let lm: Vec<[f64; 2]> = face.landmarks.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
            assert_points(&lm, &points(&t["landmarks"]), &format!("{name} pipeline"), 1.0);
            let aligned = face.aligned.unwrap();
            let theirs = face_box(&t["aligned"]);
            let ours = [aligned.x, aligned.y, aligned.width, aligned.height].map(|v| v as f64);
            assert_eq!(ours, theirs.map(f64::floor), "{name}: descriptor crop");
            assert_descriptor(
                face.descriptor.as_slice(),
                &floats(&t["descriptor"]),
                &format!("{name} pipeline"),
                1e-3,
                0.9999,
            );
        }
    }
}

#[test]
fn networks_match_face_api_on_cpu() {
    networks_match_face_api(DeviceChoice::Cpu);
}

#[test]
fn networks_match_face_api_on_wgpu() {
    networks_match_face_api(DeviceChoice::Gpu);
}

/// face-api.js' own pipeline: its detector, landmarks, descriptor crop and uint8 weights.
fn face_api_config() -> Config {
    Config {
        detector: Detector::TinyFaceDetector,
        alignment: Alignment::FaceApi,
        embedder: "dlib-resnet-v1-face-api-uint8".into(),
        ..Config::default()
    }
}

#[test]
fn pipeline_matches_face_api_on_cpu() {
    pipeline_matches_face_api(&engine(DeviceChoice::Cpu, face_api_config()).unwrap());
}

#[test]
fn pipeline_matches_face_api_on_wgpu() {
    if let Some(e) = engine(DeviceChoice::Gpu, face_api_config()) {
        pipeline_matches_face_api(&e);
    }
}
