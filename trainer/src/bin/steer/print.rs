//! What the commands print: the reports of `train`, `eval`, `train-policy`, `eval-policy`, `identifiability` and
//! `data-stats`.

use std::path::Path;

use steer_trainer::data::hh_relabeled::Agreement;
use steer_trainer::eval::ZUsage;
use steer_trainer::experiments::identifiability::RhoRow;
use steer_trainer::policy::run::PolicyReport;
use steer_trainer::report::Report;

use crate::commands::DataStats;

pub(crate) fn print_outputs(report: &Report, out: &Path) {
    println!("\n{}", report.table());
    println!(
        "candle vs ONNX Runtime: z and rewards max |diff| {:.2e} (normwise {:.2e}); p(a>b) max |diff| {:.2e}",
        report.parity_max_abs_diff, report.parity_max_normwise_diff, report.parity_max_probability_diff
    );
    for (model, usage) in &report.z_usage {
        println!(
            "{model} uses the user's context: {:.1}% with their own {} pairs vs {:.1}% with another user's (z spread {:.3})",
            usage.accuracy_own_context, usage.k, usage.accuracy_swapped_context, usage.z_spread
        );
        if !usage.is_used() {
            eprintln!(
                "WARNING: {model} ignores the user's context (latent collapse): own context is not {} points better \
                 than a stranger's. Train longer or check the data.",
                ZUsage::MIN_GAIN
            );
        }
    }
    if let Some(text) = &report.text {
        print_text_figures(report, text);
    }
    println!("report: {}", out.join("report.json").display());
    println!("plot:   {}", out.join("accuracy.svg").display());
    for (model, path) in &report.bundles {
        println!("bundle: {model:<7} {path}");
    }
}

/// Per-type accuracy, worst type, conflicting pairs and the share of the oracle gap NP-BTL closes.
fn print_text_figures(report: &Report, text: &steer_trainer::report::TextFigures) {
    println!(
        "data: {} ({}), embedder {}, pairs per type {:?}",
        text.data, text.format, text.embedder, text.pairs_per_type
    );
    // Rows are keyed by k as text; list them in numeric order.
    let cells = |row: &std::collections::BTreeMap<String, f64>| {
        let mut cells: Vec<(usize, f64)> = row.iter().filter_map(|(k, v)| Some((k.parse().ok()?, *v))).collect();
        cells.sort_by_key(|&(k, _)| k);
        cells.iter().map(|(k, v)| format!("k={k}: {v:5.1}")).collect::<Vec<_>>().join("  ")
    };
    println!("accuracy % on unseen pairs by user type:");
    for (model, by_type) in &report.accuracy {
        for (user_type, row) in by_type {
            println!("  {model:<16} {user_type:<18} {}", cells(row));
        }
    }
    for (model, row) in &text.worst_type {
        println!("  {model:<16} {:<18} {}", "worst type", cells(row));
    }
    for (model, row) in &text.conflict_accuracy {
        println!("  {model:<16} {:<18} {}", format!("conflicting ({})", text.conflicts_from), cells(row));
    }
    for (user_type, gap) in &text.oracle_gap {
        let Some(closed) = text.gap_closed.get(user_type) else {
            let se = text.oracle_gap_stderr.get(user_type).copied().unwrap_or(0.0);
            println!(
                "the share of the gap NP-BTL closes is undefined for {user_type} users: btl-{user_type} beats \
                 btl-mixed by {gap:.1} ± {se:.1} points at k={}, not more than twice its standard error",
                text.gap_closed_k
            );
            continue;
        };
        let posterior = text.oracle_posterior_gap_closed.get(user_type).map_or(String::new(), |p| {
            format!(" (the oracles mixed by the posterior over types close {p:.0}%: what reading the user can gain)")
        });
        println!(
            "NP-BTL at k={} closes {closed:.0}% of the gap between btl-mixed and btl-{user_type} for {user_type} \
             users{posterior}",
            text.gap_closed_k
        );
    }
}

/// ` ± se` to one decimal, or nothing when there is no standard error (reports written before it was).
fn stderr_suffix(stderr: Option<&f64>) -> String {
    stderr.map_or(String::new(), |se| format!(" ± {se:.1}"))
}

pub(crate) fn print_policy_report(report: &PolicyReport, out: &Path) {
    println!("implicit-reward accuracy % on unseen pairs:");
    for (user_type, by_k) in &report.implicit_reward_accuracy {
        let cells: Vec<String> = by_k.iter().map(|(k, v)| format!("k={k}: {v:5.1}")).collect();
        println!("  {user_type:<12} {}", cells.join("  "));
    }
    println!("mean {:?} of sampled generations:", report.trait_kind);
    for (user_type, by_k) in &report.r#trait {
        let se = report.trait_stderr.get(user_type);
        let cells: Vec<String> =
            by_k.iter().map(|(k, v)| format!("k={k}: {v:5.1}{}", stderr_suffix(se.and_then(|se| se.get(k))))).collect();
        println!("  {user_type:<12} {}", cells.join("  "));
    }
    if let Some(base) = report.base_trait {
        println!("  {:<12} {base:5.1}", "base model");
    }
    println!("win rate vs the base model (NP-BTL judge, same user): {:?}", report.win_rate_vs_base);
    let continuum: Vec<String> = report
        .continuum
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{v:.1}{}", stderr_suffix(report.continuum_stderr.get(i))))
        .collect();
    println!("continuum between two users: {} (monotonic: {})", continuum.join(" / "), report.continuum_monotonic);
    if let Some(training) = &report.training {
        println!(
            "training: best step {} (dev {:.1}%), {:.2} s/step, {:.0} s in all",
            training.best_step, training.best_dev_accuracy, training.seconds_per_step, training.train_seconds
        );
    }
    println!("report: {}", out.join("report.json").display());
}

/// The header of `steer identifiability`'s table.
pub(crate) fn print_identifiability_header() {
    println!(
        "{:>6} {:>22} {:>8} {:>6} {:>26}",
        "rho", "identification % ± se", "Bayes %", "gap", "conflicting targets % ± se"
    );
}

/// One ρ's row of `steer identifiability`'s table.
pub(crate) fn print_identifiability_row(row: &RhoRow) {
    let (rho, error, se, bayes) = (row.rho, row.error, row.error_stderr, row.bayes);
    let (conflict, conflict_se) = (row.conflict, row.conflict_stderr);
    println!(
        "{rho:>6} {:>22} {bayes:>8.1} {:>6.1} {:>26}",
        format!("{error:.1} ± {se:.1}"),
        error - bayes,
        format!("{conflict:.1} ± {conflict_se:.1}")
    );
}

/// `steer data-stats`: the counts, then for hh-relabeled the label-agreement table.
pub(crate) fn print_data_stats(stats: &DataStats) {
    println!("{}: {}", stats.format, stats.data);
    println!("{} pairs, {} distinct prompts", stats.pairs, stats.distinct_prompts);
    let per_type: Vec<String> = stats.pairs_per_user_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!("pairs per user type: {}", per_type.join(", "));
    let Some(agreement) = &stats.label_agreement else { return };
    println!("label agrees with HH-RLHF's original (human) label, % [95% interval] ± s.e. (agree / pairs; chance %):");
    let row = |group: &str, a: &Agreement| {
        println!(
            "  {group:<38} {:5.1} [{:4.1}, {:4.1}] ± {:3.1}  ({} / {}; chance {:.1})",
            a.percent, a.interval95[0], a.interval95[1], a.stderr, a.agree, a.pairs, a.chance
        );
    };
    row("all", &agreement.overall);
    for (subset, a) in &agreement.by_subset {
        row(&format!("subset {subset}"), a);
    }
    for (objective, a) in &agreement.by_objective {
        row(&format!("objective (user type) {objective}"), a);
    }
    for (subset, by_objective) in &agreement.by_subset_and_objective {
        for (objective, a) in by_objective {
            row(&format!("subset {subset}, objective {objective}"), a);
        }
    }
}
