//! The model registry through the CLI: the built-in cards, and a network the tests have never
//! seen (our FaceRecognitionNet exported to ONNX by `tools/onnx/export_face_recognition_net.py`)
//! added with `facegate models add` and run with `--model`, against the built-in net.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{data, run};
use serde_json::Value;

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn models_list_shows_every_built_in_model_with_its_card() {
    let list: Vec<Value> = serde_json::from_slice(&run(&["models", "list", "--json"]).stdout).unwrap();
    let names: Vec<&str> = list.iter().map(|m| m["name"].as_str().unwrap()).collect();
    for want in [
        "dlib-resnet-v1",
        "dlib-resnet-v1-face-api-uint8",
        "faceplugin-mobilefacenet-512",
        "mtcnn",
        "tiny-face-detector",
        "face-landmark-68",
        "face-landmark-68-tiny",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for m in &list {
        for field in ["sha256", "task"] {
            assert!(!m[field].as_str().unwrap_or("").is_empty(), "{}: no {field}", m["name"]);
        }
        assert!(
            !m["source"]["package"].as_str().unwrap().is_empty(),
            "{}: no source",
            m["name"]
        );
        assert!(
            !m["licence"]["weights"].as_str().unwrap().is_empty(),
            "{}: no licence",
            m["name"]
        );
    }
    // The npm package's file, as unpacked from faceplugin-face-recognition-js 0.0.1.
    let shown: Value =
        serde_json::from_slice(&run(&["models", "show", "faceplugin-mobilefacenet-512", "--json"]).stdout).unwrap();
    assert_eq!(
        shown["sha256"],
        "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
    );
    assert_eq!(shown["template"], "arcface112");
    assert_eq!(shown["dim"], 512);
}

#[test]
fn a_file_we_cannot_run_is_refused_by_models_add() {
    let dir = tempfile::tempdir().unwrap();
    let bad = data("onnx/bad-op.onnx");
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["models", "add", bad.to_str().unwrap(), "--name", "bad", "--models-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Einsum"), "{err}");
    assert!(
        !dir.path().join("bad").exists(),
        "nothing is written for a refused model"
    );
}

#[test]
fn an_unknown_model_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["embed", "--device", "cpu", "--model", "no-such-model"])
        .arg(data("face-a.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no embedder `no-such-model`") && err.contains("faceplugin-mobilefacenet-512"),
        "{err}"
    );
}

/// `.ci/run` writes it with the export script (in a venv with `onnx`).
fn exported_net() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-export/face_recognition_net.onnx");
    assert!(
        p.is_file(),
        "{} is missing: python tools/onnx/export_face_recognition_net.py {} (see .ci/run)",
        p.display(),
        p.display()
    );
    p
}

fn descriptors(device: &str, extra: &[&str]) -> Vec<Vec<f64>> {
    let (a, b) = (data("face-a.png"), data("face-c.png"));
    let mut args = vec!["embed", "--json", "--device", device];
    args.extend(extra);
    args.extend([a.to_str().unwrap(), b.to_str().unwrap()]);
    json_lines(&run(&args).stdout)
        .iter()
        .map(|v| {
            v["descriptor"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs target/onnx-export/face_recognition_net.onnx (.ci/run makes it)"]
fn an_onnx_file_added_with_models_add_runs_as_the_built_in_network() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().to_str().unwrap();
    let onnx = exported_net();
    // The exported graph subtracts dlib's mean and divides by 256 itself: mean 0, scale 1.
    let added = run(&[
        "models",
        "add",
        onnx.to_str().unwrap(),
        "--name",
        "frn-export",
        "--template",
        "dlib_chip150",
        "--mean",
        "0",
        "--scale",
        "1",
        "--threshold",
        "0.9108",
        "--source-package",
        "facegate (export test)",
        "--licence-weights",
        "CC0 (dlib)",
        "--models-dir",
        models,
    ]);
    assert!(
        String::from_utf8_lossy(&added.stdout).contains("150 -> 128-d"),
        "{:?}",
        added
    );
    let card = std::fs::read_to_string(dir.path().join("frn-export/model.toml")).unwrap();
    assert!(
        card.contains("input_size = 150") && card.contains("dim = 128"),
        "{card}"
    );

    let listed = String::from_utf8_lossy(&run(&["models", "list", "--models-dir", models]).stdout).to_string();
    assert!(listed.contains("frn-export"), "{listed}");

    for device in ["cpu", "gpu"] {
        if device == "gpu" && std::env::var_os("FACEGATE_REQUIRE_WGPU").is_none() {
            continue;
        }
        let built_in = descriptors(device, &["--model", "dlib-resnet-v1"]);
        let exported = descriptors(device, &["--model", "frn-export", "--models-dir", models]);
        assert_eq!(built_in.len(), 2);
        assert_eq!(exported.len(), 2);
        for (b, e) in built_in.iter().zip(&exported) {
            assert_eq!(b.len(), e.len(), "{device}: descriptor lengths");
            let d = b.iter().zip(e).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(d <= 1e-4, "{device}: max |Δ| {d}");
        }
    }

    // And through eval, which names the model it measured.
    let tsv = dir.path().join("pairs.tsv");
    let row = |a: &str, b: &str, same: u8| format!("{}\t{}\t{same}\n", data(a).display(), data(b).display());
    let list = format!(
        "probe\treference\tsame\n{}{}{}",
        row("face-a.png", "face-a.jpg", 1),
        row("face-a.png", "face-b.png", 0),
        row("face-c.png", "face-d.png", 0)
    );
    std::fs::write(&tsv, list).unwrap();
    let report: Value = serde_json::from_slice(
        &run(&[
            "eval",
            "--pairs",
            tsv.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            "--model",
            "frn-export",
            "--models-dir",
            models,
        ])
        .stdout,
    )
    .unwrap();
    let model = report["context"]["model"].as_str().unwrap_or_default();
    assert!(
        model.ends_with(&format!("frn-export@{}", &sha256_prefix(&card))),
        "{report}"
    );
}

fn sha256_prefix(card: &str) -> String {
    let line = card.lines().find(|l| l.starts_with("sha256")).unwrap();
    line.split('"').nth(1).unwrap()[..12].to_string()
}
