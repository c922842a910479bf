//! What each command does: the library call behind it, its error context, and its output.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use steer_runtime::LoadOptions;
use steer_trainer::data::hh_relabeled::{self, LabelAgreement};
use steer_trainer::eval::EvalConfig;
use steer_trainer::experiments::bench_policy::bench_policy;
use steer_trainer::experiments::identifiability::{measure_rho, summary};
use steer_trainer::policy::policy_bundle_dir;
use steer_trainer::policy::run::{evaluate, load_run, train_policy};
use steer_trainer::run::{ALL_KINDS, RunRecord, evaluate_run, train_export_evaluate};
use steer_trainer::text::EmbedderChoice;
use steer_trainer::text_run::{DataFormat, TextRunRecord, eval_text, train_text};
use steer_trainer::train::TrainConfig;

use crate::args::{Cli, Command, EmbedderName, FormatName, SamplingArgs, train_config};
use crate::print::{
    print_data_stats, print_identifiability_header, print_identifiability_row, print_outputs, print_policy_report,
};

/// Runs the command `cli` names.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let load = cli.runtime.load_options();
    match cli.command {
        Command::Train { args, out } if args.format.is_some() => {
            let format = args.format.map_or(DataFormat::Builtin, FormatName::format);
            let embedder = match args.embedder {
                EmbedderName::Minilm => EmbedderChoice::Minilm,
                EmbedderName::Smollm2 => EmbedderChoice::Smollm2,
            };
            let mut record = TextRunRecord {
                format,
                train_data: args.data.clone(),
                dev_data: args.dev.clone(),
                embedder,
                train: train_config(&args),
                eval: EvalConfig { n_tasks: args.eval_tasks, ..EvalConfig::default() },
                user_types: Vec::new(),
                skip_malformed: args.skip_malformed,
                models: Vec::new(),
            };
            let report = train_text(&mut record, &load, &out, true).context("steer train failed")?;
            print_outputs(&report, &out);
        }
        Command::Train { args, out } => {
            let record = RunRecord {
                train: train_config(&args),
                eval: EvalConfig { n_tasks: args.eval_tasks, ..EvalConfig::default() },
                kinds: ALL_KINDS.to_vec(),
            };
            let report = train_export_evaluate(&record, &load, &out, true).context("steer train failed")?;
            print_outputs(&report, &out);
        }
        Command::Eval { bundle, format, data, skip_malformed, eval_tasks, out } => {
            let eval = eval_tasks.map(|n| EvalConfig { n_tasks: n, ..EvalConfig::default() });
            let report = match format {
                Some(format) => eval_text(&bundle, format.format(), data.as_deref(), skip_malformed, eval, &load, &out),
                None => evaluate_run(&bundle, eval, &load, &out),
            }
            .context("steer eval failed")?;
            print_outputs(&report, &out);
        }
        Command::TrainPolicy { args, out } => {
            let report = train_policy(&args.config()?, &load, &out, true).context("steer train-policy failed")?;
            print_policy_report(&report, &out);
        }
        Command::Generate { bundle, context, prompt, sampling, best_of } => {
            generate(&bundle, context.as_deref(), &prompt, &sampling, best_of, &load)?;
        }
        Command::BenchPolicy { bundle, new_tokens, repeats } => {
            let report = bench_policy(&bundle, new_tokens, repeats, &load).context("steer bench-policy failed")?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::EvalPolicy { bundle, out } => {
            let ctx = load_run(&bundle, &load, true).context("loading the policy run")?;
            let report = evaluate(&ctx, true).context("steer eval-policy failed")?;
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
            print_policy_report(&report, &out);
        }
        Command::DataStats { format, data, skip_malformed, json } => {
            let stats =
                data_stats(format.format(), data.as_deref(), skip_malformed).context("steer data-stats failed")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_data_stats(&stats);
            }
        }
        Command::Identifiability { rhos, steps, max_context, eval_tasks, out } => {
            identifiability(&rhos, steps, max_context, eval_tasks, &load, &out)?;
        }
    }
    Ok(())
}

/// Reads a user's choices: JSONL lines with string fields `prompt`, `chosen` and `rejected`.
fn read_choices(path: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut choices = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        let field = |name: &str| -> anyhow::Result<String> {
            value.get(name).and_then(|v| v.as_str()).map(str::to_owned).with_context(|| {
                format!("{}:{}: expected a string field \"{name}\" (prompt, chosen, rejected)", path.display(), i + 1)
            })
        };
        choices.push((field("prompt")?, field("chosen")?, field("rejected")?));
    }
    Ok(choices)
}

fn generate(
    bundle: &Path,
    context: Option<&Path>,
    prompt: &str,
    sampling: &SamplingArgs,
    best_of: Option<usize>,
    load: &LoadOptions,
) -> anyhow::Result<()> {
    use std::io::Write;
    // Check the values given on the command line before the bundle loads; the bundle's defaults fill in the rest.
    sampling.params(&steer_runtime::GenerationParams::default()).validate()?;
    let model = steer_runtime::Model::load(policy_bundle_dir(bundle), load).context("loading the bundle")?;
    let defaults =
        model.policy().map(|policy| policy.spec().defaults.clone()).context("this bundle has no policy (error 310)")?;
    let params = sampling.params(&defaults);
    let choices = match context {
        Some(path) => read_choices(path)?,
        None => Vec::new(),
    };
    let pairs: Vec<steer_runtime::TextPair<'_>> =
        choices.iter().map(|(p, c, r)| steer_runtime::TextPair::new(p, c, r)).collect();
    let profile = model.infer_profile_text(&pairs).context("inferring the profile")?;
    eprintln!("profile from {} choices", pairs.len());
    if let Some(n) = best_of {
        let best = model.generate_best_of_n(prompt, &profile, n, &params)?;
        for (i, (candidate, reward)) in best.candidates.iter().zip(&best.rewards).enumerate() {
            eprintln!("candidate {i}: reward {reward:.3}: {}", candidate.text);
        }
        println!("{}", best.candidates[best.best].text);
        return Ok(());
    }
    let request = steer_runtime::GenerationRequest::new(prompt, &profile);
    let mut stdout = std::io::stdout();
    let out = model.generate_stream(&[request], &params, &mut |event| {
        let _ = write!(stdout, "{}", event.text);
        let _ = stdout.flush();
        std::ops::ControlFlow::Continue(())
    })?;
    println!();
    eprintln!("({} tokens, {:?})", out[0].token_ids.len(), out[0].finish);
    Ok(())
}

/// Trains NP-BTL for each ρ, printing a row of the table as each finishes, and writes OUT/report.json.
fn identifiability(
    rhos: &[f64],
    steps: Option<usize>,
    max_context: Option<usize>,
    eval_tasks: usize,
    load: &LoadOptions,
    out: &Path,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    print_identifiability_header();
    for &rho in rhos {
        let row =
            measure_rho(rho, steps, max_context, eval_tasks, load, out).with_context(|| format!("rho = {rho}"))?;
        print_identifiability_row(&row);
        rows.push(row);
    }
    let summary = summary(eval_tasks, &rows);
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&summary)?)?;
    println!("report: {}", out.join("report.json").display());
    Ok(())
}

/// What `steer data-stats` reports of a data file.
#[derive(Serialize)]
pub(crate) struct DataStats {
    /// The format's name.
    pub(crate) format: &'static str,
    /// The file, or what the built-in task generated.
    pub(crate) data: String,
    /// Pairs in all.
    pub(crate) pairs: usize,
    /// Distinct prompts.
    pub(crate) distinct_prompts: usize,
    /// Pairs per user type.
    pub(crate) pairs_per_user_type: BTreeMap<String, usize>,
    /// Lines skipped as malformed (with --skip-malformed).
    pub(crate) skipped_lines: Vec<usize>,
    /// For hh-relabeled: how often `label` agrees with HH-RLHF's `original_label`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) label_agreement: Option<LabelAgreement>,
}

/// Loads `data` in `format` as training does and counts it; the built-in task counts its training split, generated
/// with the default seed.
fn data_stats(format: DataFormat, data: Option<&Path>, skip_malformed: bool) -> anyhow::Result<DataStats> {
    let seed = TrainConfig::builtin_text_default().seed;
    let dataset = format.load(data, 0, seed, None, skip_malformed)?;
    let label_agreement = match (format, data) {
        (DataFormat::HhRelabeled, Some(path)) => {
            let options = steer_trainer::data::LoadOptions::default()
                .skip_malformed(skip_malformed)
                .allowed_user_types(hh_relabeled::USER_TYPES);
            Some(hh_relabeled::label_agreement(path, &options)?)
        }
        _ => None,
    };
    Ok(DataStats {
        format: format.as_str(),
        data: match (format, data) {
            (DataFormat::Builtin, _) => format!("generated training split, seed {seed}"),
            (_, Some(path)) => path.display().to_string(),
            (_, None) => String::new(),
        },
        pairs: dataset.len(),
        distinct_prompts: dataset.distinct_prompts(),
        pairs_per_user_type: dataset.counts_by_user_type().into_iter().map(|(t, n)| (t.to_owned(), n)).collect(),
        skipped_lines: dataset.skipped_lines,
        label_agreement,
    })
}
