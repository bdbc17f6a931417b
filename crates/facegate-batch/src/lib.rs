//! Offline verification jobs: pairs from an Arrow IPC or Parquet file in, decisions to Parquet
//! out, through the service's scheduler (bulk priority, so batches fill).
//!
//! The job streams: it reads `rows_per_group` input rows at a time, verifies them, and writes
//! their results as one Parquet file in `OUT.parts/` (written to a temporary name, synced, then
//! renamed, so a part is either whole or absent). Killed at any moment, `--resume` skips the
//! rows whose part exists; at the end the parts are joined into `OUT`, one row group each, in
//! input order. Results only: no image and no descriptor is ever written.
//!
//! Inputs as users write them: Parquet in any codec pyarrow, pandas, Spark or DuckDB use
//! (snappy, zstd, gzip, lz4, brotli), Arrow IPC plain or lz4/zstd. Output: Parquet, zstd. Path
//! columns are read only below the images folder: a path that leaves it is an error row
//! (`probe_path_outside_root`, `reference_path_outside_root`) and is never opened.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch, RecordBatchReader, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use facegate_core::ImageBytes;
use facegate_scheduler::{EngineBackend, PairRequest, Priority, Scheduler};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("input: {0}")]
    Input(String),
    #[error("{0}")]
    State(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct JobOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Base folder of path columns (default: the input file's folder).
    pub images: Option<PathBuf>,
    pub resume: bool,
    /// Input rows per output row group (and per durable part).
    pub rows_per_group: usize,
}

/// What a finished (or resumed) job did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rows: u64,
    /// Rows already done by an earlier, interrupted run.
    pub resumed_rows: u64,
    pub matches: u64,
    pub no_matches: u64,
    pub rejected: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// The schema of the output file.
pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("decision", DataType::Utf8, false),
        Field::new("score", DataType::Float32, true),
        Field::new("threshold", DataType::Float32, false),
        Field::new(
            "reasons",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("model", DataType::Utf8, false),
        Field::new("elapsed_ms", DataType::Float64, false),
    ]))
}

/// One output row. `decision` is `match`, `no_match`, `rejected` (a photo unusable: reasons
/// say why) or `error` (the row could not be verified: a missing file, a device failure).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub id: String,
    pub decision: String,
    pub score: Option<f32>,
    pub threshold: f32,
    pub reasons: Vec<String>,
    pub model: String,
    pub elapsed_ms: f64,
}

/// Kept beside the parts, so a resume uses the same chunking on the same input.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Manifest {
    input: PathBuf,
    input_bytes: u64,
    rows_per_group: usize,
}

fn parts_dir(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".parts");
    PathBuf::from(s)
}

fn part_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("part-{index:09}.parquet"))
}

/// The number of rows, when the input says so without being read (Parquet's footer).
pub fn count_rows(path: &Path) -> Option<u64> {
    let f = File::open(path).ok()?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).ok()?;
    u64::try_from(b.metadata().file_metadata().num_rows()).ok()
}

/// Record batches of `rows` rows from a Parquet or Arrow IPC (file or stream) input.
pub fn open_input(path: &Path, rows: usize) -> Result<Box<dyn RecordBatchReader + Send>, JobError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(io(path))?;
    f.seek(SeekFrom::Start(0)).map_err(io(path))?;
    if n >= 4 && &magic[..4] == b"PAR1" {
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)?
            .with_batch_size(rows)
            .build()?;
        Ok(Box::new(reader))
    } else if n == 6 && &magic == b"ARROW1" {
        let reader = arrow_ipc::reader::FileReader::try_new(BufReader::new(f), None)?;
        Ok(Box::new(Rechunk::new(reader, rows)))
    } else {
        let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(f), None)
            .map_err(|e| JobError::Input(format!("{}: neither Parquet nor Arrow IPC ({e})", path.display())))?;
        Ok(Box::new(Rechunk::new(reader, rows)))
    }
}

/// IPC files keep the writer's batch sizes; re-slice them to `rows` so parts line up.
struct Rechunk<R> {
    inner: R,
    rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    done: bool,
}

impl<R: RecordBatchReader> Rechunk<R> {
    fn new(inner: R, rows: usize) -> Self {
        Self {
            inner,
            rows,
            pending: Vec::new(),
            pending_rows: 0,
            done: false,
        }
    }
}

impl<R: RecordBatchReader> Iterator for Rechunk<R> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.pending_rows < self.rows {
            match self.inner.next() {
                Some(Ok(b)) => {
                    self.pending_rows += b.num_rows();
                    self.pending.push(b);
                }
                Some(Err(e)) => return Some(Err(e)),
                None => self.done = true,
            }
        }
        if self.pending_rows == 0 {
            return None;
        }
        let all = match arrow_select::concat::concat_batches(&self.inner.schema(), &self.pending) {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let take = self.rows.min(all.num_rows());
        let out = all.slice(0, take);
        let rest = all.slice(take, all.num_rows() - take);
        self.pending_rows = rest.num_rows();
        self.pending = if rest.num_rows() > 0 { vec![rest] } else { Vec::new() };
        Some(Ok(out))
    }
}

impl<R: RecordBatchReader> RecordBatchReader for Rechunk<R> {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// Where a photo comes from in one input row.
enum Source {
    Bytes(ImageBytes),
    /// Below the images folder, as far as the path's text says (links are checked at load).
    Path(PathBuf),
    /// A path that leaves the images folder (absolute, or with `..`): never opened.
    Outside,
}

/// `base/rel`, or `None` when `rel` could leave `base` by its text alone.
fn confined(base: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| base.join(rel))
}

struct InputRow {
    id: String,
    probe: Source,
    reference: Source,
}

/// A row to verify, or (id, error code) when the row itself is unusable.
type RowOrError = Result<InputRow, (String, String)>;

/// The input columns a job reads: `id`, `probe` and `reference` unless named otherwise.
#[derive(Debug, Clone)]
pub struct Columns {
    pub id: String,
    pub probe: String,
    pub reference: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            id: "id".into(),
            probe: "probe".into(),
            reference: "reference".into(),
        }
    }
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, JobError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| JobError::Input(format!("no `{name}` column")))?;
    let owned = |it: &mut dyn Iterator<Item = Option<&str>>| it.map(|v| v.map(str::to_string)).collect();
    match col.data_type() {
        DataType::Utf8 => Ok(owned(&mut col.as_string::<i32>().iter())),
        DataType::LargeUtf8 => Ok(owned(&mut col.as_string::<i64>().iter())),
        // Polars and recent pyarrow hand strings over as views.
        DataType::Utf8View => Ok(owned(&mut col.as_string_view().iter())),
        other => Err(JobError::Input(format!(
            "`{name}` must be a string column, not {other}"
        ))),
    }
}

fn sources(batch: &RecordBatch, name: &str, base: Option<&Path>) -> Result<Vec<Option<Source>>, JobError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| JobError::Input(format!("no `{name}` column")))?;
    let owned = |it: &mut dyn Iterator<Item = Option<&[u8]>>| {
        it.map(|v| v.map(|b| Source::Bytes(ImageBytes::new(b.to_vec()))))
            .collect()
    };
    match col.data_type() {
        DataType::Binary => Ok(owned(&mut col.as_binary::<i32>().iter())),
        DataType::LargeBinary => Ok(owned(&mut col.as_binary::<i64>().iter())),
        DataType::BinaryView => Ok(owned(&mut col.as_binary_view().iter())),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let base = base.ok_or_else(|| {
                JobError::Input(format!(
                    "`{name}` holds paths: name the folder they are under (images_root)"
                ))
            })?;
            Ok(strings(batch, name)?
                .into_iter()
                .map(|p| p.map(|p| confined(base, &p).map_or(Source::Outside, Source::Path)))
                .collect())
        }
        other => Err(JobError::Input(format!(
            "`{name}` must be binary (image bytes) or string (a path), not {other}"
        ))),
    }
}

fn input_rows(batch: &RecordBatch, base: Option<&Path>, columns: &Columns) -> Result<Vec<RowOrError>, JobError> {
    let ids = strings(batch, &columns.id)?;
    let probes = sources(batch, &columns.probe, base)?;
    let references = sources(batch, &columns.reference, base)?;
    Ok(ids
        .into_iter()
        .zip(probes)
        .zip(references)
        .enumerate()
        .map(|(i, ((id, p), r))| {
            let id = id.ok_or_else(|| (format!("row-{i}"), "missing_id".to_string()))?;
            match (p, r) {
                (Some(probe), Some(reference)) => Ok(InputRow { id, probe, reference }),
                (None, _) => Err((id, "missing_probe".into())),
                (_, None) => Err((id, "missing_reference".into())),
            }
        })
        .collect())
}

/// A row's photo: its bytes, or an error code. `root` is the images folder, canonical.
async fn load(source: Source, root: Option<&Path>) -> Result<ImageBytes, String> {
    let code = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => "file_not_found".to_string(),
        _ => "file_unreadable".to_string(),
    };
    match source {
        Source::Bytes(b) => Ok(b),
        Source::Outside => Err("path_outside_root".into()),
        Source::Path(p) => {
            // No images folder, nothing is below it (input_rows makes no paths without one).
            let Some(root) = root else {
                return Err("path_outside_root".into());
            };
            // A link inside the folder may point out of it: resolve before reading.
            let real = tokio::fs::canonicalize(&p).await.map_err(code)?;
            if !real.starts_with(root) {
                return Err("path_outside_root".into());
            }
            tokio::fs::read(&real).await.map(ImageBytes::new).map_err(code)
        }
    }
}

fn error_row(id: String, code: String, threshold: f32, model: &str, elapsed_ms: f64) -> ResultRow {
    ResultRow {
        id,
        decision: "error".into(),
        score: None,
        threshold,
        reasons: vec![code],
        model: model.to_string(),
        elapsed_ms,
    }
}

/// Verifies the rows of one record batch through the scheduler (bulk priority), as a job
/// does: the result rows, in input order, in [`output_schema`]. Path columns are read below
/// `images` only (none given: a path column is an input error); a row that cannot be
/// verified is an `error` row, never a failed call. The library's entry point (Python's
/// `verify_batch`); `run` is the same per chunk of a file.
pub async fn verify_batch(
    scheduler: &Scheduler<EngineBackend>,
    batch: &RecordBatch,
    images: Option<&Path>,
    columns: &Columns,
) -> Result<RecordBatch, JobError> {
    let root = match images {
        Some(d) => Some(std::fs::canonicalize(d).map_err(io(d))?),
        None => None,
    };
    let rows = input_rows(batch, root.as_deref(), columns)?;
    let results = verify_rows(scheduler, rows, root.as_deref()).await;
    Ok(to_batch(&results)?)
}

/// Verify one chunk of rows through the scheduler; results in input order.
async fn verify_rows(
    scheduler: &Scheduler<EngineBackend>,
    rows: Vec<Result<InputRow, (String, String)>>,
    root: Option<&Path>,
) -> Vec<ResultRow> {
    let engine = scheduler.backend().engine();
    let (threshold, model) = (engine.threshold(), engine.model_version().to_string());
    // Read at most a queue's worth of files at once; the scheduler then waits for room (by
    // count and by bytes) rather than refusing a row.
    let room = Arc::new(tokio::sync::Semaphore::new(scheduler.config().queue_capacity));
    let tasks: Vec<_> = rows
        .into_iter()
        .map(|row| {
            let (scheduler, model, room) = (scheduler.clone(), model.clone(), room.clone());
            let root = root.map(Path::to_path_buf);
            tokio::spawn(async move {
                let row = match row {
                    Ok(r) => r,
                    Err((id, code)) => return error_row(id, code, threshold, &model, 0.0),
                };
                let _room = room.acquire_owned().await.expect("never closed");
                let start = Instant::now();
                let ms = |s: Instant| s.elapsed().as_secs_f64() * 1e3;
                let pair = match (
                    load(row.probe, root.as_deref()).await,
                    load(row.reference, root.as_deref()).await,
                ) {
                    (Ok(probe), Ok(reference)) => PairRequest { probe, reference },
                    (Err(e), _) => return error_row(row.id, format!("probe_{e}"), threshold, &model, ms(start)),
                    (_, Err(e)) => return error_row(row.id, format!("reference_{e}"), threshold, &model, ms(start)),
                };
                match scheduler.submit_waiting(pair, Priority::Bulk).await {
                    Ok(o) => {
                        let v = o.response;
                        ResultRow {
                            id: row.id,
                            decision: v.decision.as_str().into(),
                            score: v.score,
                            threshold: v.threshold,
                            reasons: v
                                .reasons
                                .iter()
                                .map(|r| format!("{}_{}", r.role.as_str(), r.code))
                                .collect(),
                            model: v.model,
                            elapsed_ms: ms(start),
                        }
                    }
                    Err(e) => error_row(row.id, e.code().to_string(), threshold, &model, ms(start)),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("row task does not panic"));
    }
    out
}

fn to_batch(rows: &[ResultRow]) -> Result<RecordBatch, ArrowError> {
    let mut reasons = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for reason in &r.reasons {
            reasons.values().append_value(reason);
        }
        reasons.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.id.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.decision.as_str()))),
        Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.score))),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.threshold))),
        Arc::new(reasons.finish()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.model.as_str()))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.elapsed_ms))),
    ];
    RecordBatch::try_new(output_schema(), columns)
}

/// Our Parquet: zstd at its default level (smaller than snappy, read by every current reader).
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// Write `batch` to `path` so that it is either complete or absent, even across a crash.
fn write_durable(path: &Path, batches: &[RecordBatch]) -> Result<(), JobError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut writer = ArrowWriter::try_new(file, output_schema(), Some(writer_properties()))?;
    for b in batches {
        writer.write(b)?;
        // One row group per part.
        writer.flush()?;
    }
    let file = writer.into_inner()?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

/// Run (or resume) a job. `progress` is called with the rows done so far.
pub async fn run(
    scheduler: &Scheduler<EngineBackend>,
    options: &JobOptions,
    mut progress: impl FnMut(u64),
) -> Result<Summary, JobError> {
    let start = Instant::now();
    let parts = parts_dir(&options.output);
    let input_bytes = std::fs::metadata(&options.input).map_err(io(&options.input))?.len();
    let mut manifest = Manifest {
        input: std::fs::canonicalize(&options.input).map_err(io(&options.input))?,
        input_bytes,
        rows_per_group: options.rows_per_group.max(1),
    };
    let manifest_path = parts.join("job.json");
    let manifest_existed = parts.exists();
    if manifest_existed {
        if !options.resume {
            return Err(JobError::State(format!(
                "{} holds an interrupted run: pass --resume to continue it, or delete it",
                parts.display()
            )));
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
        let earlier: Manifest =
            serde_json::from_str(&text).map_err(|e| JobError::State(format!("{}: {e}", manifest_path.display())))?;
        let mut differs = Vec::new();
        if earlier.input != manifest.input {
            differs.push(format!(
                "it read {}, this run reads {}",
                earlier.input.display(),
                manifest.input.display()
            ));
        }
        if earlier.input_bytes != manifest.input_bytes {
            differs.push(format!(
                "the input was {} bytes then and is {} bytes now",
                earlier.input_bytes, manifest.input_bytes
            ));
        }
        if !differs.is_empty() {
            return Err(JobError::State(format!(
                "{} was started on a different input: {}. Resume with that input, or delete the folder to start over",
                parts.display(),
                differs.join("; ")
            )));
        }
        manifest.rows_per_group = earlier.rows_per_group;
    } else {
        if options.output.exists() && !options.resume {
            return Err(JobError::State(format!(
                "{} exists; remove it or choose another output",
                options.output.display()
            )));
        }
        if options.output.exists() {
            return Ok(Summary::default()); // resumed after completion: nothing left to do
        }
        std::fs::create_dir_all(&parts).map_err(io(&parts))?;
        let tmp = manifest_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest).expect("serialisable")).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &manifest_path).map_err(io(&manifest_path))?;
    }
    let fresh = !manifest_existed;
    let result = run_parts(
        scheduler,
        options,
        &parts,
        manifest.rows_per_group,
        &mut progress,
        start,
    )
    .await;
    // A run that failed before any result was written leaves nothing behind, so that fixing
    // the input and running again just works.
    if result.is_err() && fresh && !has_parts(&parts) {
        let _ = std::fs::remove_dir_all(&parts);
    }
    result
}

/// Whether `dir` holds any finished part.
fn has_parts(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
    })
}

async fn run_parts(
    scheduler: &Scheduler<EngineBackend>,
    options: &JobOptions,
    parts: &Path,
    rows_per_group: usize,
    progress: &mut impl FnMut(u64),
    start: Instant,
) -> Result<Summary, JobError> {
    let base = match &options.images {
        Some(d) => d.clone(),
        None => options.input.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let root = std::fs::canonicalize(&base).map_err(io(&base))?;
    let reader = open_input(&options.input, rows_per_group)?;
    let mut summary = Summary::default();
    let mut part_files = Vec::new();
    for (index, batch) in reader.enumerate() {
        let batch = batch?;
        let path = part_path(parts, index as u64);
        summary.rows += batch.num_rows() as u64;
        if path.exists() {
            summary.resumed_rows += batch.num_rows() as u64;
        } else {
            let rows = input_rows(&batch, Some(&base), &Columns::default())?;
            // Our copies of the images are wiped when the rows are done; Arrow's buffer of the
            // chunk is freed here, not wiped (a known gap, README "Privacy").
            drop(batch);
            let results = verify_rows(scheduler, rows, Some(&root)).await;
            for r in &results {
                match r.decision.as_str() {
                    "match" => summary.matches += 1,
                    "no_match" => summary.no_matches += 1,
                    "rejected" => summary.rejected += 1,
                    _ => summary.errors += 1,
                }
            }
            write_durable(&path, &[to_batch(&results)?])?;
        }
        part_files.push(path);
        progress(summary.rows);
    }
    // Join the parts, one row group each, then remove them.
    let tmp = options.output.with_extension("joining");
    {
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut writer = ArrowWriter::try_new(file, output_schema(), Some(writer_properties()))?;
        for p in &part_files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(p).map_err(io(p))?)?.build()?;
            for b in reader {
                writer.write(&b?)?;
            }
            writer.flush()?;
        }
        writer.into_inner()?.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &options.output).map_err(io(&options.output))?;
    std::fs::remove_dir_all(parts).map_err(io(parts))?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Read a job's output back (tests, tools).
pub fn read_output(path: &Path) -> Result<Vec<ResultRow>, JobError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).map_err(io(path))?)?.build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| JobError::Input(format!("{}: no `{name}` column", path.display())))
        };
        let (id, decision, model) = (
            col("id")?.as_string::<i32>(),
            col("decision")?.as_string::<i32>(),
            col("model")?.as_string::<i32>(),
        );
        let score = col("score")?.as_primitive::<Float32Type>();
        let threshold = col("threshold")?.as_primitive::<Float32Type>();
        let elapsed = col("elapsed_ms")?.as_primitive::<Float64Type>();
        let reasons = col("reasons")?.as_list::<i32>();
        for i in 0..b.num_rows() {
            let r = reasons.value(i);
            out.push(ResultRow {
                id: id.value(i).to_string(),
                decision: decision.value(i).to_string(),
                score: score.is_valid(i).then(|| score.value(i)),
                threshold: threshold.value(i),
                reasons: r.as_string::<i32>().iter().flatten().map(str::to_string).collect(),
                model: model.value(i).to_string(),
                elapsed_ms: elapsed.value(i),
            });
        }
    }
    Ok(out)
}
