//! Evaluation: pair lists, verification metrics and the figures of an evaluation report. Pure
//! functions over scores, so every figure can be checked against a hand computation.

pub mod groups;
mod pairs;
mod rates;
pub mod report;

pub use pairs::{Pair, PairsError, identities, read_pairs};
pub use rates::{Metrics, ScoreSets, Scored, accuracy, best_threshold, eer, metrics, rates, tar_at_far};
