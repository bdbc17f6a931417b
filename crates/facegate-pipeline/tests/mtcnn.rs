//! MTCNN and dlib's chip and descriptor, against the real libraries.
//!
//! - `data/reference-mtcnn.json`: facenet-pytorch 2.6.0 itself (`tools/reference/mtcnn_reference.py`):
//!   each network's outputs for fixed inputs, and `MTCNN().detect` on the fixtures. Required:
//!   network outputs within 1e-4, boxes and landmarks within 1 px.
//! - `data/reference-dlib.json` and `data/dlib-chips/`: dlib 20 (`tools/reference/dlib_reference.py`):
//!   `get_face_chip` with its chip → image similarity, and `compute_face_descriptor` on those
//!   chips. Required: our warp within 2 grey levels on average, our descriptor (dlib's float
//!   weights converted by `facegate-import-dlib`) within 1e-4 of dlib's.

mod common;

use burn::prelude::*;
use common::{data, device, engine, read};
use facegate_core::Config;
use facegate_models::mtcnn::Mtcnn;
use facegate_models::{Weights, embedded, recognition};
use facegate_pipeline::{DeviceChoice, decode, imageops};
use serde_json::Value;

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(&data(name))).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn max_abs(ours: &[f32], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

/// The reference's synthetic input: `sin(0.37(n+1) + 0.11(c+1)w + 0.07h)`.
fn synthetic(shape: [usize; 4], device: &Device) -> Tensor<4> {
    let [n, c, h, w] = shape;
    let mut v = Vec::with_capacity(n * c * h * w);
    for n in 0..n {
        for c in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let a = 0.37 * (n + 1) as f64 + 0.11 * (c + 1) as f64 * x as f64 + 0.07 * y as f64;
                    v.push(a.sin() as f32);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn shape4(v: &Value) -> [usize; 4] {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    s.try_into().unwrap()
}

fn networks_match_facenet_pytorch(choice: DeviceChoice) {
    let Some(device) = device(choice) else { return };
    let st = |b: &[u8]| Weights::from_safetensors(b).unwrap();
    let nets = Mtcnn::load(
        &st(embedded::MTCNN_PNET),
        &st(embedded::MTCNN_RNET),
        &st(embedded::MTCNN_ONET),
        &device,
    )
    .unwrap();
    let r = &json("reference-mtcnn.json")["nets"];
    let check = |what: &str, ours: Vec<f32>, theirs: &Value| {
        let d = max_abs(&ours, &floats(&theirs["data"]));
        eprintln!("{what}: max |Δ| {d:.2e}");
        assert!(d <= 1e-4, "{what}: max |Δ| {d:.2e}");
    };
    let input = |net: &str| synthetic(shape4(&r[net]["input_shape"]), &device);
    let (reg, prob) = nets.pnet.forward(input("pnet"));
    check("pnet reg", host(reg), &r["pnet"]["outputs"]["reg"]);
    check("pnet prob", host(prob), &r["pnet"]["outputs"]["prob"]);
    let (reg, prob) = nets.rnet.forward(input("rnet"));
    check("rnet reg", host(reg), &r["rnet"]["outputs"]["reg"]);
    check("rnet prob", host(prob), &r["rnet"]["outputs"]["prob"]);
    let (reg, marks, prob) = nets.onet.forward(input("onet"));
    check("onet reg", host(reg), &r["onet"]["outputs"]["reg"]);
    check("onet landmarks", host(marks), &r["onet"]["outputs"]["landmarks"]);
    check("onet prob", host(prob), &r["onet"]["outputs"]["prob"]);
}

#[test]
fn networks_match_facenet_pytorch_on_cpu() {
    networks_match_facenet_pytorch(DeviceChoice::Cpu);
}

#[test]
fn networks_match_facenet_pytorch_on_wgpu() {
    networks_match_facenet_pytorch(DeviceChoice::Gpu);
}

/// Every face facenet-pytorch's `MTCNN()` finds in every fixture, multi-face scenes and an
/// EXIF-rotated JPEG included: same count and order, boxes and landmarks within 1 px on PNGs.
/// JPEGs get 2 px: PIL (libjpeg-turbo) and the `image` crate decode them to slightly different
/// pixels, so there the difference measures the decoders, not MTCNN.
fn detections_match_facenet_pytorch(choice: DeviceChoice) {
    // facenet-pytorch's defaults: no minimum face size relative to the image.
    let config = Config {
        mtcnn_min_face_fraction: 0.0,
        ..Config::default()
    };
    let Some(engine) = engine(choice, config) else { return };
    let reference = json("reference-mtcnn.json");
    let images: Vec<_> = reference["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| decode(&read(&data(r["file"].as_str().unwrap())), u64::MAX).unwrap())
        .collect();
    // All fixtures in one call: equally sized images share pyramid levels, others do not.
    let found = engine.detect(&images.iter().collect::<Vec<_>>());
    for (r, faces) in reference["images"].as_array().unwrap().iter().zip(found) {
        let name = r["file"].as_str().unwrap();
        let boxes = r["boxes"].as_array().unwrap();
        assert_eq!(faces.len(), boxes.len(), "{name}: number of faces");
        for (k, face) in faces.iter().enumerate() {
            let b = floats(&boxes[k]);
            let f = face.face;
            let ours = [f.x, f.y, f.x + f.width, f.y + f.height].map(|v| v as f64);
            let d = ours.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            let points = face.points.expect("MTCNN gives five points");
            let theirs = r["landmarks"][k].as_array().unwrap();
            let dp = points
                .iter()
                .zip(theirs)
                .map(|(p, t)| {
                    (p[0] - t[0].as_f64().unwrap())
                        .abs()
                        .max((p[1] - t[1].as_f64().unwrap()).abs())
                })
                .fold(0.0, f64::max);
            let dprob = (f.score as f64 - r["probs"][k].as_f64().unwrap()).abs();
            eprintln!("{name} face {k}: box max |Δ| {d:.3} px, landmarks {dp:.3} px, probability {dprob:.1e}");
            let tolerance = if name.ends_with(".png") { 1.0 } else { 2.0 };
            assert!(
                d <= tolerance && dp <= tolerance && dprob <= 1e-3,
                "{name} face {k}: {ours:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn detections_match_facenet_pytorch_on_cpu() {
    detections_match_facenet_pytorch(DeviceChoice::Cpu);
}

#[test]
fn detections_match_facenet_pytorch_on_wgpu() {
    detections_match_facenet_pytorch(DeviceChoice::Gpu);
}

fn png_planar(name: &str) -> Vec<f32> {
    let img = image::load_from_memory(&read(&data(name))).unwrap().into_rgb8();
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = p[ch] as f32;
        }
    }
    out
}

/// Our bilinear warp with dlib's own chip → image similarity gives dlib's chip.
#[test]
fn chip_matches_dlib() {
    let size = recognition::INPUT_SIZE;
    for f in json("reference-dlib.json")["faces"].as_array().unwrap() {
        let img = decode(&read(&data(f["file"].as_str().unwrap())), u64::MAX).unwrap();
        let m: [f64; 6] = floats(&f["chip_to_image"]).try_into().unwrap();
        let mut ours = vec![0.0; 3 * size * size];
        imageops::warp_affine(&img, m, size, &mut ours);
        let theirs = png_planar(f["chip_png"].as_str().unwrap());
        let mean = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / ours.len() as f64;
        eprintln!("{}: chip mean |Δ| {mean:.3} grey levels", f["file"]);
        assert!(mean <= 2.0, "{}: chip mean |Δ| {mean:.3}", f["file"]);
    }
}

/// dlib's float weights, converted, give dlib's descriptors on dlib's chips.
fn descriptors_match_dlib(choice: DeviceChoice) {
    let config = Config {
        embedder: "dlib-resnet-v1".into(),
        ..Config::default()
    };
    let Some(engine) = engine(choice, config) else { return };
    let faces = json("reference-dlib.json")["faces"].as_array().unwrap().clone();
    let crops: Vec<f32> = faces
        .iter()
        .flat_map(|f| png_planar(f["chip_png"].as_str().unwrap()))
        .collect();
    for (f, ours) in faces.iter().zip(engine.embed_crops(crops)) {
        let d = max_abs(ours.as_slice(), &floats(&f["descriptor"]));
        eprintln!("{}: descriptor max |Δ| {d:.2e}", f["file"]);
        assert!(d <= 1e-4, "{}: descriptor max |Δ| {d:.2e}", f["file"]);
    }
}

#[test]
fn descriptors_match_dlib_on_cpu() {
    descriptors_match_dlib(DeviceChoice::Cpu);
}

#[test]
fn descriptors_match_dlib_on_wgpu() {
    descriptors_match_dlib(DeviceChoice::Gpu);
}

/// Close-ups: dlib's own 150 px chips, where the face fills the frame and runs past its top
/// edge (an ID-portrait crop, a selfie held close). MTCNN finds exactly one face in each, and it
/// verifies as the person of the photo the chip was cut from.
#[test]
fn close_ups_that_fill_the_frame_are_found_and_verified() {
    let engine = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    for (chip, photo) in [
        ("dlib-chips/face-a-png.png", "face-a.png"),
        ("dlib-chips/face-b-png.png", "face-b.png"),
        ("dlib-chips/face-c-png.png", "face-c.png"),
        ("dlib-chips/face-d-png.png", "face-d.png"),
        ("dlib-chips/face-e-png.png", "face-e.png"),
    ] {
        let img = decode(&read(&data(chip)), u64::MAX).unwrap();
        let faces = engine.detect(&[&img]).remove(0);
        assert_eq!(faces.len(), 1, "{chip}: {faces:?}");
        let b = faces[0].face;
        assert!(b.width > 0.6 * img.width() as f32, "{chip}: {b:?}");
        let v = engine.verify(&[(&read(&data(chip)), &read(&data(photo)))]).remove(0);
        assert_eq!(v.decision, facegate_core::Decision::Match, "{chip}: {:?}", v.score);
    }
}
