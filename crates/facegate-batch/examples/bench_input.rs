//! Writes a `facegate batch` input for the benchmarks (benches/batch/run.sh): a Parquet file of
//! `rows` path rows, the first `real` of them cycling through a pair list's pairs and the rest
//! naming files that do not exist (error rows: no decoding, no network), so a 100,000-row job
//! exercises the streaming reader and writer in minutes. Paths are relative to the pair list's
//! folder: run the job with `--images` that folder (a job reads paths only below it).
//!
//! cargo run --release -p facegate-batch --example bench_input -- PAIRS OUT.parquet ROWS REAL

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pairs, out, rows, real] = args.as_slice() else {
        eprintln!("usage: bench_input PAIRS OUT.parquet ROWS REAL");
        std::process::exit(2);
    };
    let (rows, real): (usize, usize) = (rows.parse().expect("ROWS"), real.parse().expect("REAL"));
    let pairs_file = std::path::Path::new(pairs);
    let pairs = facegate_eval::read_pairs(pairs_file, None).expect("a pair list");
    assert!(!pairs.is_empty(), "the pair list is empty");
    // read_pairs puts the images beside the list: the same paths, relative to its folder.
    let root = pairs_file.parent().expect("a folder");
    let rel = |p: &std::path::Path| {
        p.strip_prefix(root)
            .expect("below the list's folder")
            .display()
            .to_string()
    };
    let file = std::fs::File::create(out).expect("create the output");
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for start in (0..rows).step_by(8192) {
        let end = (start + 8192).min(rows);
        let (mut id, mut probe, mut reference) = (vec![], vec![], vec![]);
        for i in start..end {
            id.push(format!("row-{i:07}"));
            if i < real {
                let p = &pairs[i % pairs.len()];
                probe.push(rel(&p.probe));
                reference.push(rel(&p.reference));
            } else {
                probe.push(format!("nonexistent/probe-{i}.jpg"));
                reference.push(format!("nonexistent/reference-{i}.jpg"));
            }
        }
        let column = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("id", column(id)),
            ("probe", column(probe)),
            ("reference", column(reference)),
        ])
        .expect("a record batch");
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(file.try_clone().expect("file handle"), batch.schema(), None).expect("writer")
        });
        w.write(&batch).expect("write");
    }
    writer.expect("at least one row").close().expect("close");
}
