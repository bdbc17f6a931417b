//! `facegate dedup`: which enrolment photos show a face already enrolled under another
//! identity. Every photo is embedded, then one top-k 1:N scan of the templates against
//! themselves (the WGSL gallery kernel on wgpu) finds each one's nearest neighbours; a
//! neighbour of another identity at or above the match threshold is a suspected duplicate.
//! Templates live in memory for the scan only; the output holds identities, row numbers and
//! scores, never a path, an image or a template.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::Descriptor;
use facegate_pipeline::FacePolicy;
use serde_json::json;

use crate::{EngineArgs, Refusal, for_each_face};

#[derive(Args)]
pub struct DedupArgs {
    /// Tab-separated `identity<TAB>photo path` lines (paths relative to the list's folder;
    /// `#` starts a comment line).
    list: PathBuf,
    /// Neighbours kept per photo (at most 31).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=31))]
    k: u16,
    #[command(flatten)]
    engine: EngineArgs,
}

/// One line of the list.
struct Entry {
    identity: String,
    path: PathBuf,
}

fn read_list(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((identity, photo)) = line.split_once('\t') else {
            bail!("{}:{}: expected `identity<TAB>photo path`", path.display(), n + 1);
        };
        if identity.is_empty() || photo.is_empty() {
            bail!("{}:{}: empty identity or path", path.display(), n + 1);
        }
        entries.push(Entry {
            identity: identity.to_string(),
            path: base.join(photo),
        });
    }
    Ok(entries)
}

pub fn dedup(args: DedupArgs) -> Result<()> {
    let entries = read_list(&args.list)?;
    let engine = crate::engine(&args.engine)?;
    let threshold = engine.threshold();
    // Templates of the photos that gave one, with their row in the list.
    let mut templates: Vec<(usize, Descriptor)> = Vec::new();
    let mut refused = 0;
    let paths: Vec<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
    // ID portraits: the largest face, if it clearly dominates.
    for_each_face(&engine, &paths, FacePolicy::Dominant, |row, face| match face {
        Ok(face) => templates.push((row, face.descriptor)),
        Err(refusal) => {
            refused += 1;
            let error = match refusal {
                Refusal::Unreadable => json!({"code": refusal.code(), "message": "the photo could not be read"}),
                Refusal::Rejected(e) => json!({"code": e.code(), "message": e.to_string(), "detail": e}),
            };
            let identity = &entries[row].identity;
            println!("{}", json!({"row": row, "identity": identity, "refused": error}));
        }
    });

    let rows: Vec<&[f32]> = templates.iter().map(|(_, d)| d.as_slice()).collect();
    let nearest = engine.nearest(&rows, args.k as usize);
    let mut flagged = 0;
    for ((row, _), neighbours) in templates.iter().zip(&nearest) {
        let identity = &entries[*row].identity;
        let matches: Vec<_> = neighbours
            .iter()
            .map(|&(j, score)| (templates[j].0, score))
            .filter(|&(other, score)| score >= threshold && entries[other].identity != *identity)
            .map(|(other, score)| json!({"row": other, "identity": entries[other].identity, "score": score}))
            .collect();
        if !matches.is_empty() {
            flagged += 1;
            println!("{}", json!({"row": row, "identity": identity, "matches": matches}));
        }
    }
    let summary = json!({
        "summary": {
            "photos": entries.len(),
            "templates": templates.len(),
            "refused": refused,
            "flagged": flagged,
            "k": args.k,
            "threshold": threshold,
            "scoring": engine.scorer_label(),
            "device": engine.device_label(),
            "model": engine.model_version(),
        }
    });
    println!("{summary}");
    Ok(())
}
