//! `facegate models`: the registry from the command line. A researcher adds an ONNX embedder
//! with its card and runs it with `--model NAME`, with no Rust to write.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use facegate_models::card::{Accuracy, Card, Colour, Format, Licence, Source, Task, Template};
use facegate_models::registry::sha256_hex;
use facegate_models::{Registry, registry::Entry};

#[derive(Args, Clone)]
pub struct RegistryArgs {
    /// A directory of user models (default: none; `models add` needs one).
    #[arg(long, env = "FACEGATE_MODELS")]
    models_dir: Option<PathBuf>,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Every model: built in, and those in the models directory.
    List(RegistryArgs),
    /// One model's card.
    Show {
        /// The model's registry name (`facegate models list`).
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Add an ONNX embedder: copies the file into MODELS_DIR/NAME/ and writes its card.
    Add(Box<AddArgs>),
}

#[derive(Args)]
pub struct AddArgs {
    /// The ONNX file.
    file: PathBuf,
    /// Its name in the registry (letters, digits, - _ .).
    #[arg(long)]
    name: String,
    /// What it does in the pipeline: only `embedder` can be added as an ONNX file so far.
    #[arg(long, default_value = "embedder")]
    task: String,
    /// Where the five landmarks go: arcface112 or dlib_chip150.
    #[arg(long, default_value = "arcface112")]
    template: String,
    /// The square input's side (default: from the graph, else the template's).
    #[arg(long)]
    input_size: Option<usize>,
    /// Channel order the network takes: rgb or bgr.
    #[arg(long, default_value = "rgb")]
    colour: String,
    /// `x = (pixel − mean) · scale`; one value for all channels, or three.
    #[arg(long, default_value = "127.5", value_delimiter = ',')]
    mean: Vec<f32>,
    /// See --mean (default 1/128).
    #[arg(long, default_value_t = 0.0078125)]
    scale: f32,
    /// The embedding's length (default: measured by running the graph).
    #[arg(long)]
    dim: Option<usize>,
    /// The card's source: the registry package the file comes from (`npm:…`, `pypi:…`).
    #[arg(long, default_value = "")]
    source_package: String,
    /// The package's version.
    #[arg(long, default_value = "")]
    source_version: String,
    /// Where the package or file can be fetched.
    #[arg(long, default_value = "")]
    source_url: String,
    /// The package's licence (SPDX).
    #[arg(long, default_value = "")]
    licence_package: String,
    /// The weights' licence, where it differs from the package's.
    #[arg(long, default_value = "")]
    licence_weights: String,
    /// The accuracy its authors publish (free text, with the benchmark).
    #[arg(long, default_value = "")]
    published_accuracy: String,
    /// Anything a user of the model should know (training data, caveats).
    #[arg(long, default_value = "")]
    notes: String,
    /// Its decision threshold (cosine), if known; else verify/serve need --threshold or a
    /// calibration (`facegate eval --model NAME --write-calibration FILE` measures one).
    #[arg(long)]
    threshold: Option<f32>,
    /// Replace a model of the same name in the models directory.
    #[arg(long)]
    force: bool,
    /// The models directory the model is added to.
    #[arg(long, env = "FACEGATE_MODELS")]
    models_dir: Option<PathBuf>,
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::List(r) => {
            let registry = Registry::with_dir(r.models_dir.as_deref())?;
            if r.json {
                let list: Vec<serde_json::Value> = registry.entries().iter().map(entry_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<32} {:<9} {:<8} {:>5} {:<12} {:<10} origin",
                    "name", "task", "format", "dim", "template", "licence"
                );
                for e in registry.entries() {
                    let c = &e.card;
                    println!(
                        "{:<32} {:<9} {:<8} {:>5} {:<12} {:<10} {}",
                        c.name,
                        format!("{:?}", c.task).to_lowercase(),
                        format!("{:?}", c.format).to_lowercase(),
                        if c.dim > 0 { c.dim.to_string() } else { "-".into() },
                        c.template.map_or("-", Template::as_str),
                        c.licence.package,
                        e.origin_label()
                    );
                }
            }
        }
        ModelsCommand::Show { name, registry: r } => {
            let registry = Registry::with_dir(r.models_dir.as_deref())?;
            let e = registry
                .get(&name)
                .with_context(|| format!("no model `{name}` (facegate models list)"))?;
            if r.json {
                println!("{}", serde_json::to_string_pretty(&entry_json(e))?);
            } else {
                println!("# {} ({})\n{}", e.card.name, e.origin_label(), e.card.to_toml());
            }
        }
        ModelsCommand::Add(a) => add(*a)?,
    }
    Ok(())
}

fn entry_json(e: &Entry) -> serde_json::Value {
    let mut v = serde_json::to_value(&e.card).expect("a card serialises");
    v["origin"] = e.origin_label().into();
    v
}

fn add(a: AddArgs) -> Result<()> {
    let Some(dir) = a.models_dir.clone() else {
        return Err(crate::usage("models add needs --models-dir DIR (or FACEGATE_MODELS)"));
    };
    let task = match a.task.as_str() {
        "embedder" => Task::Embedder,
        other => {
            return Err(crate::usage(format!(
                "task `{other}`: only embedders can be added as ONNX files so far"
            )));
        }
    };
    let template = match a.template.as_str() {
        "arcface112" => Template::Arcface112,
        "dlib_chip150" => Template::DlibChip150,
        other => return Err(crate::usage(format!("template `{other}`: arcface112 or dlib_chip150"))),
    };
    let colour = match a.colour.as_str() {
        "rgb" => Colour::Rgb,
        "bgr" => Colour::Bgr,
        other => return Err(crate::usage(format!("--colour `{other}`: rgb or bgr"))),
    };
    let mean = match a.mean[..] {
        [m] => [m; 3],
        [r, g, b] => [r, g, b],
        _ => return Err(crate::usage("--mean takes one value or three")),
    };
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    // Parse it now: a file we cannot run is refused here, with the node that stops it.
    let device = burn::prelude::Device::flex();
    let net = facegate_onnx::OnnxNet::load(&bytes, &device).with_context(|| format!("{}", a.file.display()))?;
    let graph_size = match net.input().dims[..] {
        [_, Some(3), Some(h), Some(w)] if h == w => Some(h),
        _ => None,
    };
    let input_size = a.input_size.or(graph_size).unwrap_or(match template {
        Template::Arcface112 => 112,
        Template::DlibChip150 => 150,
    });
    let file_name = a
        .file
        .file_name()
        .and_then(|f| f.to_str())
        .filter(|f| f.ends_with(".onnx"))
        .unwrap_or("model.onnx")
        .to_string();
    let mut card = Card {
        name: a.name.clone(),
        task,
        format: Format::Onnx,
        file: file_name.clone(),
        sha256: sha256_hex(&bytes),
        input_size,
        colour,
        mean,
        scale: a.scale,
        template: Some(template),
        dim: a.dim.unwrap_or(0),
        threshold: a.threshold,
        source: Source {
            package: a.source_package,
            version: a.source_version,
            path: a.file.display().to_string(),
            url: a.source_url,
        },
        licence: Licence {
            package: a.licence_package,
            weights: a.licence_weights,
        },
        accuracy: Accuracy {
            published: a.published_accuracy,
            devtest: "not measured (facegate eval --model NAME --pairs pairsDevTest.txt)".into(),
        },
        notes: a.notes,
    };
    if card.dim == 0 {
        let probe = burn::prelude::Tensor::zeros([1, 3, input_size, input_size], &device);
        card.dim = net.forward_rows(probe)?.dims()[1];
    }
    card.validate().map_err(anyhow::Error::msg)?;
    if Registry::builtin().get(&card.name).is_some() {
        bail!("`{}` is a built-in model's name", card.name);
    }
    let target = dir.join(&card.name);
    if target.exists() && !a.force {
        bail!("{} exists (--force replaces it)", target.display());
    }
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    write_new(&target.join(&file_name), &bytes)?;
    write_new(&target.join("model.toml"), card.to_toml().as_bytes())?;
    // Load it the way the engine will: the card must describe the file.
    Registry::with_dir(Some(&dir))?.embedder(&card.name, &device)?;
    println!(
        "added {} ({} -> {}-d, {} template) in {}",
        card.name,
        input_size,
        card.dim,
        template.as_str(),
        target.display()
    );
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
