//! `facegate batch` on the real binary: Parquet and Arrow IPC inputs (ours and pyarrow's, every
//! codec), binary and path columns, paths confined to `--images`, error rows, a failed run that
//! leaves nothing, and a SIGKILL mid-job followed by `--resume` with every row exactly once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use facegate_batch::{ResultRow, read_output};
use facegate_core::{Config, Decision};
use facegate_pipeline::{DeviceChoice, Engine, model_version};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// (id, probe file, reference file); `missing.png` does not exist.
fn pairs() -> Vec<(String, &'static str, &'static str)> {
    [
        ("face-a.png", "exif-rotated.jpg"),
        ("face-a.png", "face-c.png"),
        ("truncated.jpg", "face-a.png"),
        ("no-face.png", "face-a.png"),
        ("face-d.png", "group-5.png"),
        ("face-b.png", "missing.png"),
        ("face-e.png", "face-b.png"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (p, r))| (format!("row-{i:03}"), *p, *r))
    .collect()
}

fn write_parquet(path: &Path, batch: &RecordBatch, rows_per_group: usize) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props))
        .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn write_ipc(path: &Path, batch: &RecordBatch) {
    let mut w = arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(path).unwrap(), &batch.schema()).unwrap();
    // Uneven writer batches: the job re-slices them into its own row groups.
    w.write(&batch.slice(0, 3)).unwrap();
    w.write(&batch.slice(3, batch.num_rows() - 3)).unwrap();
    w.finish().unwrap();
}

fn path_batch(rows: &[(String, &str, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("probe", DataType::Utf8, false),
        Field::new("reference", DataType::Utf8, false),
    ]));
    let col = |f: &dyn Fn(&(String, &str, &str)) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    RecordBatch::try_new(
        schema,
        vec![
            col(&|r| r.0.clone()),
            col(&|r| r.1.to_string()),
            col(&|r| r.2.to_string()),
        ],
    )
    .unwrap()
}

fn binary_batch(rows: &[(String, &str, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("probe", DataType::Binary, true),
        Field::new("reference", DataType::Binary, true),
    ]));
    let read = |name: &str| std::fs::read(data_dir().join(name)).ok();
    let probes: Vec<Option<Vec<u8>>> = rows.iter().map(|r| read(r.1)).collect();
    let refs: Vec<Option<Vec<u8>>> = rows.iter().map(|r| read(r.2)).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
            Arc::new(BinaryArray::from_iter(probes.iter().map(|p| p.as_deref()))),
            Arc::new(BinaryArray::from_iter(refs.iter().map(|p| p.as_deref()))),
        ],
    )
    .unwrap()
}

fn batch_cmd(input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facegate"));
    c.args(["batch", "--device", "cpu", "--json", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--images")
        .arg(data_dir())
        .args(extra);
    c
}

/// The engine's own answer for each row, computed in-process pair by pair: the reference.
fn expected(rows: &[(String, &str, &str)]) -> Vec<(Option<Decision>, Option<f32>)> {
    let engine = Engine::new(Config::default(), DeviceChoice::Cpu).unwrap();
    rows.iter()
        .map(
            |(_, p, r)| match (std::fs::read(data_dir().join(p)), std::fs::read(data_dir().join(r))) {
                (Ok(p), Ok(r)) => {
                    let v = engine.verify(&[(&p, &r)]).remove(0);
                    (Some(v.decision), v.score)
                }
                _ => (None, None),
            },
        )
        .collect()
}

fn check(rows: &[(String, &str, &str)], got: &[ResultRow], want: &[(Option<Decision>, Option<f32>)], missing: &str) {
    assert_eq!(got.len(), rows.len());
    for ((row, g), (decision, score)) in rows.iter().zip(got).zip(want) {
        assert_eq!(g.id, row.0, "row order is kept");
        match decision {
            None => {
                assert_eq!(g.decision, "error", "{row:?}");
                assert_eq!(g.reasons, vec![missing.to_string()], "{row:?}");
            }
            Some(d) => {
                assert_eq!(
                    g.decision,
                    serde_json::to_value(d).unwrap().as_str().unwrap(),
                    "{row:?}"
                );
                match (g.score, score) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "{row:?}: {a} vs {b}"),
                    (a, b) => assert_eq!(a, *b, "{row:?}"),
                }
            }
        }
        assert_eq!(g.model, model_version(&Config::default()), "the default pipeline's id");
    }
}

#[test]
fn parquet_and_ipc_inputs_with_binary_and_path_columns() {
    let rows = pairs();
    let want = expected(&rows);
    let decisions: Vec<_> = want.iter().filter_map(|w| w.0).collect();
    assert!(decisions.contains(&Decision::Match) && decisions.contains(&Decision::NoMatch));
    assert!(decisions.contains(&Decision::Rejected));
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("binary.parquet", binary_batch(&rows), true, "missing_reference"),
        ("paths.arrow", path_batch(&rows), false, "reference_file_not_found"),
    ];
    for (name, batch, parquet, missing) in cases {
        let input = dir.path().join(name);
        if parquet {
            write_parquet(&input, &batch, 3);
        } else {
            write_ipc(&input, &batch);
        }
        let output = dir.path().join(format!("{name}.out.parquet"));
        let out = batch_cmd(&input, &output, &["--rows-per-group", "2"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got = read_output(&output).unwrap();
        check(&rows, &got, &want, missing);
        let corrupt = got.iter().find(|r| r.id == "row-002").unwrap();
        assert_eq!(corrupt.reasons, vec!["probe_corrupt_image"]);
        // Written in row groups of 2 as the job went.
        let meta = parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&output).unwrap()).unwrap(),
        )
        .clone();
        assert_eq!(meta.num_row_groups(), rows.len().div_ceil(2));
        assert!(!PathBuf::from(format!("{}.parts", output.display())).exists());
        // No image bytes in the output.
        let written = std::fs::read(&output).unwrap();
        let image = std::fs::read(data_dir().join("face-a.png")).unwrap();
        assert!(!image.chunks_exact(16).any(|c| written.windows(16).any(|w| w == c)));
    }
}

#[test]
fn sigkill_then_resume_gives_every_row_exactly_once() {
    let base = pairs();
    // 48 rows cycling through the pairs, in row groups of 2.
    let rows: Vec<(String, &str, &str)> = (0..48)
        .map(|i| {
            let (_, p, r) = base[i % base.len()];
            (format!("row-{i:03}"), p, r)
        })
        .collect();
    let want_base = expected(&base);
    let want: Vec<_> = (0..rows.len()).map(|i| want_base[i % base.len()]).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("job.parquet");
    write_parquet(&input, &path_batch(&rows), 16);
    let output = dir.path().join("out.parquet");
    let parts = PathBuf::from(format!("{}.parts", output.display()));

    let mut child = batch_cmd(&input, &output, &["--rows-per-group", "2"]).spawn().unwrap();
    let start = Instant::now();
    let done_parts = || {
        std::fs::read_dir(&parts)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                    .count()
            })
            .unwrap_or(0)
    };
    while done_parts() < 4 {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!output.exists(), "a killed job left a final output");
    let kept = done_parts();
    assert!(kept < rows.len() / 2, "killed too late to test anything");

    // Without --resume the interrupted run is not silently overwritten.
    let refused = batch_cmd(&input, &output, &["--rows-per-group", "2"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));

    // Resumed with another input, the refusal says what differs.
    let other = dir.path().join("other.parquet");
    write_parquet(&other, &path_batch(&rows[..5]), 16);
    let wrong = batch_cmd(&other, &output, &["--resume"]).output().unwrap();
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        message.contains("other.parquet") && message.contains("job.parquet") && message.contains("bytes"),
        "{message}"
    );
    assert!(done_parts() == kept, "a refused resume touched the parts");

    let resumed = batch_cmd(&input, &output, &["--resume"]).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(summary["rows"], 48);
    assert_eq!(summary["resumed_rows"], 2 * kept as u64);
    let got = read_output(&output).unwrap();
    check(&rows, &got, &want, "reference_file_not_found");
    assert!(!parts.exists());
}

/// Inputs as users write them (`tools/batch/make_inputs.py`, pyarrow 18.1): snappy (pyarrow's,
/// pandas', Spark's and DuckDB's default), zstd, gzip, lz4 and brotli Parquet; lz4 and zstd
/// Arrow IPC. Our output is zstd Parquet.
#[test]
fn parquet_and_arrow_as_pyarrow_writes_them() {
    let rows: Vec<(String, &str, &str)> = vec![
        ("same".into(), "face-a.png", "exif-rotated.jpg"),
        ("other".into(), "face-a.png", "face-c.png"),
        ("missing".into(), "face-b.png", "missing.png"),
    ];
    let want = expected(&rows);
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        "pairs.snappy.parquet",
        "pairs.zstd.parquet",
        "pairs.gzip.parquet",
        "pairs.lz4.parquet",
        "pairs.brotli.parquet",
        "pairs.lz4.arrow",
        "pairs.zstd.arrow",
    ];
    for name in inputs {
        let input = data_dir().join("batch").join(name);
        let output = dir.path().join(format!("{name}.out.parquet"));
        let out = batch_cmd(&input, &output, &[]).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        check(&rows, &read_output(&output).unwrap(), &want, "reference_file_not_found");
        let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&output).unwrap()).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        for column in meta.row_group(0).columns() {
            assert!(
                matches!(column.compression(), parquet::basic::Compression::ZSTD(_)),
                "{name}: output column {} is {:?}",
                column.column_path(),
                column.compression()
            );
        }
    }
}

/// Path columns are read only below `--images`: an absolute path, a `..`, or a link out of the
/// folder is an error row, and what it names is never read.
#[test]
fn paths_that_leave_the_images_folder_are_error_rows() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["face-a.png", "exif-rotated.jpg"] {
        std::fs::copy(data_dir().join(f), images.join(f)).unwrap();
    }
    // A file outside the folder that is a valid photo: were it read, the row would verify.
    std::fs::copy(data_dir().join("face-a.png"), dir.path().join("outside.png")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.png"), images.join("link.png")).unwrap();
    let outside = dir.path().join("outside.png").display().to_string();
    let rows: Vec<(String, &str, &str)> = vec![
        ("inside".into(), "face-a.png", "exif-rotated.jpg"),
        ("dotdot".into(), "face-a.png", "../outside.png"),
        ("absolute".into(), &outside, "face-a.png"),
        ("link".into(), "face-a.png", "link.png"),
        ("dot".into(), "./face-a.png", "exif-rotated.jpg"),
    ];
    let input = dir.path().join("paths.parquet");
    write_parquet(&input, &path_batch(&rows), 16);
    let output = dir.path().join("out.parquet");
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["batch", "--device", "cpu", "--json", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--images")
        .arg(&images)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = read_output(&output).unwrap();
    let by_id = |id: &str| got.iter().find(|r| r.id == id).unwrap();
    assert_eq!(by_id("inside").decision, "match");
    assert_eq!(by_id("dot").decision, "match");
    assert_eq!(by_id("dotdot").reasons, vec!["reference_path_outside_root"]);
    assert_eq!(by_id("absolute").reasons, vec!["probe_path_outside_root"]);
    assert_eq!(by_id("link").reasons, vec!["reference_path_outside_root"]);
    for id in ["dotdot", "absolute", "link"] {
        assert_eq!(by_id(id).decision, "error", "{id}");
    }
}

/// A run that fails on its input leaves nothing behind, so that the fixed input runs at once.
#[test]
fn a_failed_run_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.parquet");
    let parts = PathBuf::from(format!("{}.parts", output.display()));
    // No `id` column: refused on the first chunk, before any result.
    let bad = dir.path().join("bad.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("probe", DataType::Utf8, false),
        Field::new("reference", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(["face-a.png"])),
        Arc::new(StringArray::from_iter_values(["face-c.png"])),
    ];
    write_parquet(&bad, &RecordBatch::try_new(schema, columns).unwrap(), 16);
    let failed = batch_cmd(&bad, &output, &[]).output().unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no `id` column"));
    assert!(!parts.exists(), "a failed run left {}", parts.display());
    assert!(!output.exists());

    let rows: Vec<(String, &str, &str)> = (0..4)
        .map(|i| (format!("row-{i}"), "face-a.png", "face-c.png"))
        .collect();
    let good = dir.path().join("good.parquet");
    write_parquet(&good, &path_batch(&rows), 16);
    let ok = batch_cmd(&good, &output, &[]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(read_output(&output).unwrap().len(), 4);
}

/// The library entry point Python's `verify_batch` uses: one record batch in, result rows out,
/// with columns named by the caller and held as views (as Polars and recent pyarrow hand them
/// over); paths without an images folder are refused as an input error, not opened.
#[test]
fn verify_batch_reads_named_view_columns() {
    use arrow_array::{BinaryViewArray, StringViewArray};
    use facegate_batch::{Columns, JobError, verify_batch};
    use facegate_scheduler::{EngineBackend, Metrics, Scheduler, SchedulerConfig};

    let rows = pairs();
    let read = |name: &str| std::fs::read(data_dir().join(name)).ok();
    let probes: Vec<Option<Vec<u8>>> = rows.iter().map(|r| read(r.1)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("subject", DataType::Utf8View, false),
        Field::new("selfie", DataType::BinaryView, true),
        Field::new("card", DataType::Utf8View, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
            Arc::new(BinaryViewArray::from_iter(probes.iter().map(|p| p.as_deref()))),
            Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap();
    let columns = Columns {
        id: "subject".into(),
        probe: "selfie".into(),
        reference: "card".into(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (out, refused) = runtime.block_on(async {
        let engine = Engine::new(Config::default(), DeviceChoice::Cpu).unwrap();
        let scheduler =
            Scheduler::start(EngineBackend::new(engine), SchedulerConfig::default(), Metrics::new()).unwrap();
        let out = verify_batch(&scheduler, &batch, Some(&data_dir()), &columns)
            .await
            .unwrap();
        let refused = verify_batch(&scheduler, &batch, None, &columns).await;
        (out, refused)
    });
    assert!(
        matches!(&refused, Err(JobError::Input(m)) if m.contains("`card` holds paths")),
        "{refused:?}"
    );
    assert_eq!(out.schema(), facegate_batch::output_schema());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.parquet");
    write_parquet(&file, &out, 1024);
    // Probe bytes of a missing file are a null: the row is an error row, the others verified.
    let got = read_output(&file).unwrap();
    let want = expected(&rows);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if rows[i].2 == "missing.png" {
            assert_eq!(g.decision, "error");
            assert_eq!(g.reasons, vec!["reference_file_not_found".to_string()]);
            continue;
        }
        if probes[i].is_none() {
            assert_eq!(g.decision, "error");
            continue;
        }
        check(&rows[i..=i], std::slice::from_ref(g), std::slice::from_ref(w), "");
    }
}
