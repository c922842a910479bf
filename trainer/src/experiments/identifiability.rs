//! `steer identifiability`: on the Gaussian-ρ task, NP-BTL's error in identifying the user type from one context
//! pair, beside the Bayes error 1/4 + arcsin(ρ)/(2π).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use steer_runtime::LoadOptions;

use crate::eval::EvalConfig;
use crate::run::{RunDir, RunRecord, train_export_evaluate};
use crate::tasks::TaskSpec;
use crate::train::TrainConfig;

/// One ρ's figures at k = 1, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct RhoRow {
    /// The correlation ρ.
    pub rho: f64,
    /// Error in identifying the user type from the model's choice on the probe pair.
    pub error: f64,
    /// Its standard error.
    pub error_stderr: f64,
    /// The Bayes error of that identification.
    pub bayes: f64,
    /// Error on unseen target pairs where the types disagree.
    pub conflict: f64,
    /// Its standard error.
    pub conflict_stderr: f64,
    /// The run's candle vs ONNX Runtime parity: z and rewards max |diff|.
    pub parity_max_abs_diff: f64,
    /// The same, normwise.
    pub parity_max_normwise_diff: f64,
    /// p(a>b) max |diff|.
    pub parity_max_probability_diff: f64,
    /// The run's `report.json`.
    pub report: PathBuf,
}

impl RhoRow {
    /// How far the model's error is above the Bayes error, in points.
    pub fn gap(&self) -> f64 {
        self.error - self.bayes
    }
}

/// Trains NP-BTL on the Gaussian-ρ task into `out/rho={rho}` (exports and evaluates it through ONNX Runtime), and
/// reads its figures with one context pair. `steps` and `max_context` default to [`TrainConfig::default`]'s.
pub fn measure_rho(
    rho: f64,
    steps: Option<usize>,
    max_context: Option<usize>,
    eval_tasks: usize,
    load: &LoadOptions,
    out: &Path,
) -> crate::Result<RhoRow> {
    let at_k1 = |map: &BTreeMap<String, BTreeMap<String, f64>>| {
        map.get("np-btl").and_then(|m| m.get("1")).copied().unwrap_or(f64::NAN)
    };
    let defaults = TrainConfig::default();
    let record = RunRecord {
        train: TrainConfig {
            task: TaskSpec::GaussianRho { rho },
            steps: steps.unwrap_or(defaults.steps),
            max_context: max_context.unwrap_or(defaults.max_context),
            ..defaults
        },
        eval: EvalConfig { n_tasks: eval_tasks, ks: vec![0, 1], ..EvalConfig::default() },
        kinds: vec![steer_runtime::ModelKind::NpBtl],
    };
    let dir = out.join(format!("rho={rho}"));
    let report = train_export_evaluate(&record, load, &dir, true)?;
    let (error, se) = (at_k1(&report.identification_error), at_k1(&report.identification_error_stderr));
    let (conflict, conflict_se) = (at_k1(&report.conflict_error), at_k1(&report.conflict_error_stderr));
    let bayes = report.bayes_identification_error.unwrap_or(f64::NAN);
    Ok(RhoRow {
        rho,
        error,
        error_stderr: se,
        bayes,
        conflict,
        conflict_stderr: conflict_se,
        parity_max_abs_diff: report.parity_max_abs_diff,
        parity_max_normwise_diff: report.parity_max_normwise_diff,
        parity_max_probability_diff: report.parity_max_probability_diff,
        report: RunDir(dir).report(),
    })
}

/// The experiment's `report.json`: the settings, what the figures mean, and one row per ρ.
pub fn summary(eval_tasks: usize, rows: &[RhoRow]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let (rho, error, se, bayes) = (row.rho, row.error, row.error_stderr, row.bayes);
            let (conflict, conflict_se) = (row.conflict, row.conflict_stderr);
            serde_json::json!({
                "rho": rho, "identification_error": error, "identification_error_stderr": se,
                "bayes_error": bayes, "gap": error - bayes,
                "conflicting_targets_error": conflict, "conflicting_targets_error_stderr": conflict_se,
                "parity_max_abs_diff": row.parity_max_abs_diff,
                "parity_max_normwise_diff": row.parity_max_normwise_diff,
                "parity_max_probability_diff": row.parity_max_probability_diff, "report": row.report,
            })
        })
        .collect();
    serde_json::json!({
        "task": "gaussian-rho",
        "evaluated_with": "onnxruntime",
        "n_tasks": eval_tasks,
        "metric": "with one context pair: error (%) in identifying the user type from the model's choice on the probe pair a=(1,-1), b=(-1,1) (type h0 prefers a, h1 prefers b); also the error on unseen target pairs where the types disagree, which adds ranking errors on near-tied pairs",
        "rows": rows,
    })
}
