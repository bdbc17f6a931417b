//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output};

/// A fixture shipped in data/.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)
}

/// A photo or list under ../shared/data (tests using it are ignored on a fresh clone).
pub fn shared(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
        .display()
        .to_string()
}

/// Run the `facegate` binary; it must succeed.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .output()
        .expect("run facegate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Cosine similarity in f64, the tests' independent reference.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Reads a `facegate serve` child's stderr until it says where it listens: the address
/// (host:port), the stderr read so far, and the reader for the rest. Panics if serve exits first.
pub fn until_listening(child: &mut Child) -> (String, String, BufReader<ChildStderr>) {
    let mut stderr = BufReader::new(child.stderr.take().expect("serve's stderr is piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("serve exited before listening:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(a) = line.trim().strip_prefix("facegate: listening on http://") {
            return (a.to_string(), seen, stderr);
        }
    }
}
