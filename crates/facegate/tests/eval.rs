//! End-to-end accuracy on real photos from ../shared/data, through the CLI.

use std::path::Path;
use std::process::Command;

fn shared(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
        .display()
        .to_string()
}

/// Regression floors under the measured values (README "Accuracy"): LFW DevTest 97.9 % at the
/// DevTrain threshold, faces-labeled EER 0.0 %. The 99.0 % target is not reached yet.
const MIN_LFW_ACCURACY: f64 = 0.975;
const MAX_FACES_LABELED_EER: f64 = 0.01;

fn eval(pairs: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["eval", "--pairs", &shared(pairs), "--device", "cpu", "--json"])
        .args(extra)
        .output()
        .expect("run facegate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
#[ignore = "needs ../shared/data"]
fn lfw_dev_test_accuracy_and_failure_to_detect() {
    let v = eval("lfw-view1/pairsDevTest.txt", &[]);
    eprintln!("{v}");
    let m = &v["metrics"];
    assert_eq!(m["pairs"], 1000);
    let ftd = v["failure_to_detect_rate"].as_f64().unwrap();
    assert!(ftd <= 0.005, "failure to detect {ftd}");
    let acc = m["accuracy"].as_f64().unwrap();
    assert!(acc >= MIN_LFW_ACCURACY, "accuracy {acc}");
}

#[test]
#[ignore = "needs ../shared/data"]
fn faces_labeled_pairs() {
    let v = eval("faces-labeled/pairs.tsv", &[]);
    eprintln!("{v}");
    let m = &v["metrics"];
    assert_eq!(m["pairs"], 1830);
    assert!(m["eer"].as_f64().unwrap() <= MAX_FACES_LABELED_EER, "{m}");
}
