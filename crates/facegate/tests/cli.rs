//! The command line as an operator meets it: usage errors exit 2, `serve` is configured by its
//! environment as a container platform does it, and loadgen runs from any directory.

use std::process::{Command, Stdio};

mod common;

fn facegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["eval", "--pairs", "x.txt", "--policy", "nope"], "--policy"),
        (&["eval", "--pairs", "x.txt", "--target-fmr", "2"], "rate"),
        (&["eval", "--compare", "a", "--report", "r"], "two or more"),
        (&["eval", "--compare", "a,b"], "--report"),
        (&["loadgen", "--url", "http://192.0.2.1:8080"], "this machine"),
        (&["loadgen", "--concurrency", "0"], "--concurrency"),
        (&["loadgen", "--timeout", "0"], "--timeout"),
        // Flags that would do nothing are not accepted.
        (&["embed", "--threshold", "0.5", "x.png"], "--threshold"),
        (&["detect", "--calibration", "c.toml", "x.png"], "--calibration"),
        (&["verify", "only-one.png"], "REFERENCE"),
    ];
    for (args, says) in cases {
        let out = facegate().args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A failure that is not a usage error stays 1, its cause named once.
    let out = facegate()
        .args(["verify", "missing-a.png", "missing-b.png"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("missing-a.png").count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn serve_is_configured_from_the_environment_and_loadgen_runs_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("serve.toml"), dir.path().join("serve.log"));
    std::fs::write(&config, "[scheduler]\nqueue_capacity = 64\n").unwrap();
    let mut child = facegate()
        .arg("serve")
        .current_dir(dir.path())
        .env("FACEGATE_CONFIG", &config)
        .env("FACEGATE_BIND", "127.0.0.1:0")
        .env("FACEGATE_DEVICE", "cpu")
        .env("FACEGATE_MAX_BATCH", "3")
        .env("FACEGATE_LOG_FILE", &log)
        .env_remove("FACEGATE_LOG")
        // Only the binary's own lines at info: the service's per-request lines are filtered.
        .env("RUST_LOG", "warn,facegate::serve=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, _, _stderr) = common::until_listening(&mut child);
    // Loadgen from a directory without data/: its default photos are built in.
    let out = facegate()
        .args([
            "loadgen",
            "--url",
            &format!("http://{addr}"),
            "--requests",
            "3",
            "--json",
            "--log",
            "requests.csv",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let health = |addr: &str| {
        (facegate()
            .args(["health", "--url", &format!("http://{addr}/health")])
            .status())
        .unwrap()
        .code()
    };
    let alive = health(&addr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(out.status.success(), "loadgen: {err}");
    // The container's health check: 0 while it serves, 1 once it has stopped.
    assert_eq!(alive, Some(0));
    assert_eq!(health(&addr), Some(1));
    assert_eq!(report["status"]["200"], 3, "{report}");
    // --log: a line per request with its status and the id the service issued (a UUID each).
    let csv = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
    let lines: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    let ids: std::collections::HashSet<&str> = lines.iter().map(|l| l[4]).collect();
    assert!(lines.iter().all(|l| l[3] == "200" && l[4].len() == 36), "{csv}");
    assert_eq!(ids.len(), 3, "{csv}");
    // The environment reached the scheduler, the device and the config (the startup line
    // states them), and the log went to FACEGATE_LOG_FILE.
    assert!(status.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    let listening: serde_json::Value = (logged.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "listening")
        .expect("the startup line is in the log file");
    assert_eq!(listening["fields"]["max_batch"], 3, "{listening}");
    assert_eq!(listening["fields"]["queue_capacity"], 64, "{listening}");
    assert_eq!(listening["fields"]["device"], "cpu (burn flex)", "{listening}");
    // RUST_LOG was honoured: the three verifications logged nothing at info.
    assert!(!logged.contains("\"target\":\"facegate_server"), "{logged}");
}

/// `facegate detect ... | head -c0`: the reader goes away before the output is written; the
/// command ends as Unix tools do (SIGPIPE), not with a panic about stdout.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["detect", "--device", "cpu"])
        .args(std::iter::repeat_n(common::data("face-a.png"), 4))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run facegate");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "{:?} {stderr}", out.status);
}
