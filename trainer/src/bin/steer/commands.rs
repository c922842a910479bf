//! What each command does: the library call behind it, its error context, and its output.

use std::path::Path;

use anyhow::Context;
use steer_runtime::LoadOptions;
use steer_trainer::eval::EvalConfig;
use steer_trainer::experiments::bench_policy::bench_policy;
use steer_trainer::experiments::identifiability::{measure_rho, summary};
use steer_trainer::policy::policy_bundle_dir;
use steer_trainer::policy::run::{evaluate, load_run, train_policy};
use steer_trainer::run::{ALL_KINDS, RunRecord, evaluate_run, train_export_evaluate};
use steer_trainer::text::EmbedderChoice;
use steer_trainer::text_run::{DataFormat, TextRunRecord, eval_text, train_text};

use crate::args::{Cli, Command, EmbedderName, FormatName, SamplingArgs, train_config};
use crate::print::{print_identifiability_header, print_identifiability_row, print_outputs, print_policy_report};

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
