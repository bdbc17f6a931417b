//! `facegate._native`: the engine for Python. The Python package (`python/facegate`) wraps it:
//! it checks arguments (NumPy dtypes and shapes, which the abi3 API cannot see), turns JSON
//! into objects, and defines the exceptions this module raises.
//!
//! One [`Engine`] owns a tokio runtime and the service's scheduler: `verify` from many Python
//! threads is batched as the HTTP service batches. Every call releases the GIL while it
//! computes, and a panic inside one becomes a `FacegateError`, never an abort.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_pyarrow::{PyArrowType, Table};
use facegate_batch::{Columns, JobError, output_schema};
use facegate_core::{Config, ImageBytes, Overrides, Rejection, Role};
use facegate_pipeline::{DeviceChoice, FacePolicy};
use facegate_scheduler::{EngineBackend, Metrics, PairRequest, Priority, Scheduler, SchedulerConfig};
use image::ImageEncoder;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString, PyTuple};
use zeroize::{Zeroize, Zeroizing};

/// Input rows verified per call into the engine: bounds the image bytes copied out of Arrow
/// at once, whatever the table's size.
const ROWS_PER_CHUNK: usize = 1024;

/// A Python exception from `facegate._errors` (the package defines the classes, so they are
/// ordinary Python classes with `code`, `message` and `detail`).
fn raise(py: Python<'_>, class: &str, code: &str, message: &str, detail: Option<String>) -> PyErr {
    let made = py
        .import("facegate._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((code, message, detail)));
    match made {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

fn rejected(py: Python<'_>, r: &Rejection, role: Option<Role>) -> PyErr {
    let detail = serde_json::json!({ "role": role.map(Role::as_str), "rejection": r });
    raise(py, "ImageRejected", r.code(), &r.to_string(), Some(detail.to_string()))
}

/// What went wrong inside a call, before it becomes a Python exception (made with the GIL).
enum Failure {
    Rejected(Rejection, Option<Role>),
    Io(std::io::Error),
    Input(String),
    Config(String),
    Model(String),
    Internal(String),
}

impl Failure {
    fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Self::Rejected(r, role) => rejected(py, &r, role),
            Self::Io(e) => e.into(),
            Self::Input(m) => raise(py, "InputError", "bad_input", &m, None),
            Self::Config(m) => raise(py, "ConfigError", "bad_config", &m, None),
            Self::Model(m) => raise(py, "ModelError", "model", &m, None),
            Self::Internal(m) => raise(py, "FacegateError", "internal", &m, None),
        }
    }
}

impl From<facegate_pipeline::EngineError> for Failure {
    fn from(e: facegate_pipeline::EngineError) -> Self {
        match e {
            facegate_pipeline::EngineError::Config(e) => Self::Config(e.to_string()),
            other => Self::Model(other.to_string()),
        }
    }
}

/// Runs `f` without the GIL; a panic in it becomes a `FacegateError("internal")`.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Failure> + Send) -> PyResult<T> {
    let out = py.detach(|| {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(Failure::Internal(format!("the engine failed: {what}")))
        })
    });
    out.map_err(|f| f.into_py(py))
}

/// A photo as Python hands it over: encoded bytes, a path, or raw RGB rows.
enum Image {
    Encoded(ImageBytes),
    Path(PathBuf),
    /// `(height, width, pixels)`: H×W×3 uint8, row-major, copied out of the caller's buffer.
    Raw(u32, u32, Zeroizing<Vec<u8>>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Image {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Self::Encoded(ImageBytes::new(b.as_bytes().to_vec())));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(Self::Path(PathBuf::from(s.to_cow()?.into_owned())));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let (h, w, buf): (u32, u32, Bound<'py, PyByteArray>) = t.extract()?;
            return Ok(Self::Raw(h, w, Zeroizing::new(buf.to_vec())));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(
            "an image is bytes, a path, or (height, width, bytearray) of RGB pixels",
        ))
    }
}

impl Image {
    /// The encoded photo the engine decodes. Raw pixels are written as an uncompressed-ish
    /// PNG (fast, lossless), so they take the same decoder and the same size limits as files.
    fn into_bytes(self, max_pixels: u64) -> Result<ImageBytes, Failure> {
        match self {
            Self::Encoded(b) => Ok(b),
            Self::Path(p) => std::fs::read(&p).map(ImageBytes::new).map_err(Failure::Io),
            Self::Raw(h, w, pixels) => {
                if u64::from(w) * u64::from(h) > max_pixels {
                    return Err(Failure::Rejected(
                        Rejection::ImageTooLarge {
                            width: w,
                            height: h,
                            max_pixels,
                        },
                        None,
                    ));
                }
                if pixels.len() != 3 * w as usize * h as usize {
                    return Err(Failure::Input(format!(
                        "{} bytes are not {h}×{w}×3 pixels",
                        pixels.len()
                    )));
                }
                let mut png = Vec::with_capacity(pixels.len() + 1024);
                image::codecs::png::PngEncoder::new_with_quality(
                    &mut png,
                    image::codecs::png::CompressionType::Fast,
                    image::codecs::png::FilterType::NoFilter,
                )
                .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| Failure::Input(format!("raw pixels: {e}")))?;
                Ok(ImageBytes::new(png))
            }
        }
    }
}

fn config_of(
    model: Option<String>,
    detector: Option<String>,
    config_path: Option<PathBuf>,
    config_json: Option<String>,
    calibration: Option<PathBuf>,
    operating_point: Option<String>,
    models_dir: Option<PathBuf>,
) -> Result<Config, Failure> {
    let config = match (config_path, config_json) {
        (Some(p), _) => Config::from_file(&p).map_err(|e| Failure::Config(e.to_string()))?,
        (None, Some(j)) => serde_json::from_str(&j).map_err(|e| Failure::Config(format!("config: {e}")))?,
        (None, None) => Config::default(),
    };
    let detector = match detector {
        Some(d) => Some(
            serde_json::from_value(serde_json::Value::String(d.clone()))
                .map_err(|_| Failure::Config(format!("unknown detector `{d}` (mtcnn or tiny_face_detector)")))?,
        ),
        None => None,
    };
    config
        .overridden(Overrides {
            embedder: model,
            detector,
            calibration,
            operating_point,
            models_dir,
            ..Overrides::default()
        })
        .map_err(|e| Failure::Config(e.to_string()))
}

fn pipeline_engine(config: Config, device: &str) -> Result<facegate_pipeline::Engine, Failure> {
    let device: DeviceChoice = device.parse().map_err(Failure::Config)?;
    Ok(facegate_pipeline::Engine::new(config, device)?)
}

/// The engine: models loaded once, a scheduler that batches concurrent calls.
#[pyclass(frozen, module = "facegate._native")]
struct Engine {
    runtime: tokio::runtime::Runtime,
    scheduler: Scheduler<EngineBackend>,
}

impl Engine {
    fn engine(&self) -> &facegate_pipeline::Engine {
        self.scheduler.backend().engine()
    }

    fn max_pixels(&self) -> u64 {
        self.engine().config().max_pixels
    }
}

impl Drop for Engine {
    /// Answer what is in flight, then stop the device threads.
    fn drop(&mut self) {
        self.runtime.block_on(self.scheduler.shutdown());
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (model=None, detector=None, device="auto", config_path=None, config_json=None, calibration=None, operating_point=None, models_dir=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        detector: Option<String>,
        device: &str,
        config_path: Option<PathBuf>,
        config_json: Option<String>,
        calibration: Option<PathBuf>,
        operating_point: Option<String>,
        models_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let device = device.to_string();
        detached(py, move || {
            let config = config_of(
                model,
                detector,
                config_path,
                config_json,
                calibration,
                operating_point,
                models_dir,
            )?;
            let engine = pipeline_engine(config, &device)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("facegate-py")
                .enable_all()
                .build()
                .map_err(|e| Failure::Internal(e.to_string()))?;
            let scheduler = {
                let _in_runtime = runtime.enter();
                Scheduler::start(EngineBackend::new(engine), SchedulerConfig::default(), Metrics::new())
                    .map_err(Failure::Internal)?
            };
            Ok(Self { runtime, scheduler })
        })
    }

    /// The facts `/info` gives: models with their sha256, device, threshold, operating point,
    /// version (JSON).
    fn info(&self) -> String {
        serde_json::to_string(&self.engine().info()).expect("plain data")
    }

    /// One verification through the scheduler (batched with other threads' calls): the
    /// `Verification` as `facegate verify --json` prints it. A photo that is not an image
    /// (empty, corrupt, unsupported, too large) raises `ImageRejected`; a photo without a
    /// usable face is an answer (`rejected`, with its reasons).
    fn verify(&self, py: Python<'_>, probe: Image, reference: Image) -> PyResult<String> {
        let max = self.max_pixels();
        detached(py, move || {
            let probe = probe.into_bytes(max).map_err(|f| with_role(f, Role::Probe))?;
            let reference = reference.into_bytes(max).map_err(|f| with_role(f, Role::Reference))?;
            let outcome = self
                .runtime
                .block_on(
                    self.scheduler
                        .submit_waiting(PairRequest { probe, reference }, Priority::Interactive),
                )
                .map_err(|e| Failure::Internal(format!("{}: {e}", e.code())))?;
            let v = outcome.response;
            if let Some(r) = v.reasons.iter().find(|r| r.detail.is_image_error()) {
                return Err(Failure::Rejected(r.detail.clone(), Some(r.role)));
            }
            serde_json::to_string(&v).map_err(|e| Failure::Internal(e.to_string()))
        })
    }

    /// Every row of an Arrow stream (a table, record batches, a Polars frame) verified, in
    /// input order, as the rows of `facegate batch`'s output.
    #[pyo3(signature = (data, probe, reference, id, images_root=None))]
    fn verify_batch(
        &self,
        py: Python<'_>,
        data: PyArrowType<RecordBatchStreamReader>,
        probe: String,
        reference: String,
        id: String,
        images_root: Option<PathBuf>,
    ) -> PyResult<PyArrowType<Table>> {
        let columns = Columns { id, probe, reference };
        let reader = data.0;
        let batches = detached(py, move || {
            let mut out = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| Failure::Input(format!("reading the table: {e}")))?;
                for start in (0..batch.num_rows()).step_by(ROWS_PER_CHUNK) {
                    let chunk = batch.slice(start, ROWS_PER_CHUNK.min(batch.num_rows() - start));
                    out.push(self.verify_chunk(&chunk, images_root.as_deref(), &columns)?);
                }
            }
            Ok(out)
        })?;
        Table::try_new(batches, output_schema())
            .map(PyArrowType)
            .map_err(|e| raise(py, "FacegateError", "internal", &e.to_string(), None))
    }

    /// Descriptors of each photo's face (the largest, when it dominates), as `facegate embed
    /// --json` gives them: `(descriptors, dim, rows)`, where `descriptors` holds N×dim
    /// little-endian f32 (NaN rows where there is no face) and `rows` is JSON: each photo's
    /// face, quality and refusal.
    fn embed<'py>(&self, py: Python<'py>, images: Vec<Image>) -> PyResult<(Bound<'py, PyByteArray>, usize, String)> {
        let max = self.max_pixels();
        let dim = self.engine().embedding().dim();
        let (mut flat, rows) = detached(py, move || {
            let engine = self.engine();
            // A file that cannot be read fails the call before any photo is analysed; a
            // refused raw array (too large) is that photo's refusal.
            let mut bytes: Vec<Result<ImageBytes, Rejection>> = Vec::with_capacity(images.len());
            for image in images {
                bytes.push(match image.into_bytes(max) {
                    Ok(b) => Ok(b),
                    Err(Failure::Rejected(r, _)) => Err(r),
                    Err(other) => return Err(other),
                });
            }
            let data: Vec<&[u8]> = bytes
                .iter()
                .map(|b| b.as_ref().map_or(&[][..], |b| b.as_slice()))
                .collect();
            let analysed = engine.analyze(&data, &vec![FacePolicy::Dominant; data.len()]).items;
            let mut flat = Vec::with_capacity(4 * dim * data.len());
            let mut rows = Vec::with_capacity(data.len());
            for (b, face) in bytes.into_iter().zip(analysed) {
                let face = b.and(face);
                match &face {
                    Ok(f) => f
                        .descriptor
                        .as_slice()
                        .iter()
                        .for_each(|v| flat.extend_from_slice(&v.to_le_bytes())),
                    Err(_) => (0..dim).for_each(|_| flat.extend_from_slice(&f32::NAN.to_le_bytes())),
                }
                rows.push(serde_json::json!({
                    "face": face.as_ref().ok().map(|f| f.face),
                    "landmarks": face.as_ref().ok().map(|f| &f.landmarks),
                    "sharpness": face.as_ref().ok().map(|f| f.sharpness),
                    "yaw": face.as_ref().ok().map(|f| f.yaw),
                    "rotation": face.as_ref().ok().map(|f| f.rotation),
                    "descreened": face.as_ref().ok().map(|f| f.descreened),
                    "error": face.as_ref().err().map(|e| serde_json::json!({"rejection": e, "message": e.to_string()})),
                }));
            }
            Ok((flat, serde_json::Value::Array(rows).to_string()))
        })?;
        let out = PyByteArray::new(py, &flat);
        flat.zeroize();
        Ok((out, dim, rows))
    }

    /// Every face the detector finds, largest first, in the photo's pixels (JSON: box, score,
    /// five landmarks where the detector gives them).
    fn detect(&self, py: Python<'_>, image: Image) -> PyResult<String> {
        let max = self.max_pixels();
        detached(py, move || {
            let engine = self.engine();
            let bytes = image.into_bytes(max)?;
            let mut photo = engine
                .decode(bytes.as_slice())
                .map_err(|r| Failure::Rejected(r, None))?;
            let faces = engine.detect(&[&photo.image]).remove(0);
            let faces: Vec<_> = faces.into_iter().map(|f| f.in_original(photo.scale)).collect();
            photo.wipe();
            serde_json::to_string(&faces).map_err(|e| Failure::Internal(e.to_string()))
        })
    }

    /// The embedder's input chip of the photo's face, chosen as for `role` ("probe": exactly
    /// one face; "reference": the dominant one): `(size, pixels)`, size×size×3 RGB bytes.
    /// No usable face raises `ImageRejected` with the refusal's code.
    fn align<'py>(&self, py: Python<'py>, image: Image, role: &str) -> PyResult<(usize, Bound<'py, PyByteArray>)> {
        let max = self.max_pixels();
        // The role's face policy, as the service applies it (a probe: exactly one face).
        let policy = FacePolicy::from(one_of(
            py,
            "role",
            role,
            &[("probe", Role::Probe), ("reference", Role::Reference)],
        )?);
        let (size, mut pixels) = detached(py, move || {
            let engine = self.engine();
            let bytes = image.into_bytes(max)?;
            let mut photo = engine
                .decode(bytes.as_slice())
                .map_err(|r| Failure::Rejected(r, None))?;
            let face = engine.analyze_decoded(&[Ok(&photo.image)], &[policy]).items.remove(0);
            let chip = face.map(|f| engine.chips(&photo.image, &f).into_iter().next().flatten());
            photo.wipe();
            match chip {
                Ok(Some(chip)) => Ok((chip.width() as usize, chip.into_raw())),
                Ok(None) => Err(Failure::Rejected(Rejection::NoFace, None)),
                Err(r) => Err(Failure::Rejected(r, None)),
            }
        })?;
        let out = PyByteArray::new(py, &pixels);
        pixels.zeroize();
        Ok((size, out))
    }
}

impl Engine {
    fn verify_chunk(
        &self,
        chunk: &RecordBatch,
        images_root: Option<&std::path::Path>,
        columns: &Columns,
    ) -> Result<RecordBatch, Failure> {
        let result = self.runtime.block_on(facegate_batch::verify_batch(
            &self.scheduler,
            chunk,
            images_root,
            columns,
        ));
        result.map_err(|e| match e {
            JobError::Input(m) => Failure::Input(m),
            JobError::Io { path, source } => {
                Failure::Io(std::io::Error::new(source.kind(), format!("{path}: {source}")))
            }
            other => Failure::Internal(other.to_string()),
        })
    }
}

/// `value` as the one of `options` it names, or an `InputError` (`bad_<what>`) listing them.
fn one_of<T: Copy>(py: Python<'_>, what: &str, value: &str, options: &[(&str, T)]) -> PyResult<T> {
    match options.iter().find(|(name, _)| *name == value) {
        Some(&(_, v)) => Ok(v),
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
            let message = format!("{what} is one of {}, not {value:?}", names.join(", "));
            Err(raise(py, "InputError", &format!("bad_{what}"), &message, None))
        }
    }
}

fn with_role(f: Failure, role: Role) -> Failure {
    match f {
        Failure::Rejected(r, None) => Failure::Rejected(r, Some(role)),
        other => other,
    }
}

/// `facegate eval --json` on a pair list: the report (JSON). An engine of its own is loaded
/// for the call.
#[pyfunction]
#[pyo3(signature = (pairs, images=None, model=None, detector=None, device="auto", config_path=None, config_json=None, models_dir=None, target_fmr=vec![1e-2, 1e-3, 1e-4], all_pairs=false, cross_roles=false, policy="dominant"))]
#[allow(clippy::too_many_arguments)]
fn evaluate(
    py: Python<'_>,
    pairs: PathBuf,
    images: Option<PathBuf>,
    model: Option<String>,
    detector: Option<String>,
    device: &str,
    config_path: Option<PathBuf>,
    config_json: Option<String>,
    models_dir: Option<PathBuf>,
    target_fmr: Vec<f64>,
    all_pairs: bool,
    cross_roles: bool,
    policy: &str,
) -> PyResult<String> {
    let policy = one_of(
        py,
        "policy",
        policy,
        &[("dominant", FacePolicy::Dominant), ("single", FacePolicy::Single)],
    )?;
    let device = device.to_string();
    detached(py, move || {
        let config = config_of(model, detector, config_path, config_json, None, None, models_dir)?;
        let engine = pipeline_engine(config, &device)?;
        let options = facegate_accuracy::Options {
            images,
            policy,
            all_pairs,
            cross_roles,
            target_fmr,
            ..facegate_accuracy::Options::new(pairs)
        };
        let e = facegate_accuracy::evaluate(&engine, &options, |_, _| {}).map_err(|e| Failure::Input(e.to_string()))?;
        serde_json::to_string(&e.report).map_err(|e| Failure::Internal(e.to_string()))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    // `facegate batch`'s output schema as pyarrow sees it: the one definition for the Python
    // layer (facegate.ray's staged and committed tables).
    m.add("BATCH_SCHEMA", PyArrowType(output_schema().as_ref().clone()))?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
