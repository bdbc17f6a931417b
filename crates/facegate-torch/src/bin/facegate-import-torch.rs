//! Convert a legacy `torch.save` state dict to safetensors, names and layouts unchanged.
//!
//!     pip download --no-deps facenet-pytorch==2.6.0     # then unzip the wheel
//!     cargo run --release -p facegate-torch --bin facegate-import-torch -- \
//!         facenet_pytorch/data/pnet.pt facenet_pytorch-2.6.0-py3-none-any.whl \
//!         facenet-pytorch 2.6.0 mtcnn_pnet models/mtcnn_pnet.safetensors
//!
//! The package file is only hashed (its sha256 goes into the output's metadata); the `.pt` is
//! read from where it was unpacked, so no archive reader is needed.

use std::process::ExitCode;

use facegate_tfjs::{Provenance, sha256_hex};
use facegate_torch::{read_state_dict, to_safetensors};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pt, package_file, package, version, model, out] = args.as_slice() else {
        eprintln!("usage: facegate-import-torch PT PACKAGE_FILE PACKAGE_NAME VERSION MODEL_NAME OUT.safetensors");
        return ExitCode::from(2);
    };
    let provenance = |sha| Provenance {
        package: package.clone(),
        version: version.clone(),
        package_sha256: sha,
    };
    match run(pt, package_file, provenance, model, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facegate-import-torch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    pt: &str,
    package_file: &str,
    provenance: impl Fn(String) -> Provenance,
    model: &str,
    out: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let provenance = provenance(sha256_hex(&std::fs::read(package_file)?));
    println!(
        "{} {} sha256 {}",
        provenance.package, provenance.version, provenance.package_sha256
    );
    let raw = std::fs::read(pt)?;
    println!("{pt}: {} bytes, sha256 {}", raw.len(), sha256_hex(&raw));
    let tensors = read_state_dict(&raw)?;
    for t in &tensors {
        println!("  {} {:?}", t.name, t.shape);
    }
    let params: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    let bytes = to_safetensors(&tensors, model, &provenance)?;
    std::fs::write(out, &bytes)?;
    println!(
        "{model}: {} tensors, {params} parameters -> {out} (sha256 {})",
        tensors.len(),
        sha256_hex(&bytes)
    );
    Ok(())
}
