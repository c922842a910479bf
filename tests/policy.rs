//! NP-DPO policy (issue #5): the exported `policy.onnx` against candle through ONNX Runtime, with a key/value cache,
//! left padding and one profile per row; and the whole `train-policy` pipeline on a tiny decoder.
//!
//! `cargo test --release -p steer-trainer --test policy -- --nocapture`

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use ndarray::{Array2, Array4, ArrayD};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use steer_runtime::LoadOptions;
use steer_runtime::policy_spec::policy_io;
use steer_trainer::onnx::write_model;
use steer_trainer::params::SeededVarMap;
use steer_trainer::policy::export::policy_model;
use steer_trainer::policy::{PolicyShape, SteerPolicy};
use steer_trainer::text::llama::{KvCache, LlamaConfig, LlamaModel};

/// A tiny policy on `base` whose FiLM and LoRA weights are all moved off their identity initialisation, so that the
/// export's use of each is checked.
fn tiny_policy(base: LlamaModel) -> SteerPolicy {
    let store = Arc::new(SeededVarMap::new(22));
    let shape = PolicyShape { film_layers: 2, lora_rank: 4, lora_alpha: 8.0, latent_dim: 6, normalize_z: true };
    let policy = SteerPolicy::new(base, shape, store.builder(&Device::Cpu)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let noise = Normal::new(0.0f32, 0.3).unwrap();
    let vars = store.varmap().data().lock().unwrap();
    let mut names: Vec<_> = vars.keys().cloned().collect();
    names.sort();
    assert!(names.iter().any(|n| n.contains("lora")) && names.iter().any(|n| n.contains("film")), "{names:?}");
    for name in names {
        let var = &vars[&name];
        let shape = var.shape().clone();
        let offset = if name.ends_with("gamma.bias") { 1.0 } else { 0.0 };
        let values: Vec<f32> = (0..shape.elem_count()).map(|_| offset + noise.sample(&mut rng)).collect();
        var.set(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap()).unwrap();
    }
    drop(vars);
    policy
}

fn session(bytes: &[u8]) -> ort::session::Session {
    let env = steer_runtime::producer::ort_environment(&LoadOptions::default()).unwrap();
    ort::session::Session::builder(&env).unwrap().commit_from_memory(bytes).unwrap()
}

/// One layer's key and value cache, as ONNX Runtime returns them.
type Cache = (ArrayD<f32>, ArrayD<f32>);

/// One step through ONNX Runtime: logits and presents.
fn ort_step(
    session: &mut ort::session::Session,
    ids: &[Vec<i64>],
    mask: &[Vec<i64>],
    positions: &[Vec<i64>],
    past: &[Cache],
    z: &Array2<f32>,
) -> (ArrayD<f32>, Vec<Cache>) {
    let to2 = |rows: &[Vec<i64>]| Array2::from_shape_vec((rows.len(), rows[0].len()), rows.concat()).unwrap();
    let (ids, mask, positions) = (to2(ids), to2(mask), to2(positions));
    let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
        (policy_io::INPUT_IDS.into(), ort::value::Tensor::from_array(ids).unwrap().into()),
        (policy_io::ATTENTION_MASK.into(), ort::value::Tensor::from_array(mask).unwrap().into()),
        (policy_io::POSITION_IDS.into(), ort::value::Tensor::from_array(positions).unwrap().into()),
        (policy_io::Z.into(), ort::value::Tensor::from_array(z.clone()).unwrap().into()),
    ];
    for (layer, (key, value)) in past.iter().enumerate() {
        inputs.push((policy_io::past_key(layer), ort::value::Tensor::from_array(key.clone()).unwrap().into()));
        inputs.push((policy_io::past_value(layer), ort::value::Tensor::from_array(value.clone()).unwrap().into()));
    }
    let out = session.run(inputs).unwrap();
    let logits = out[policy_io::LOGITS].try_extract_array::<f32>().unwrap().to_owned();
    let presents = (0..past.len())
        .map(|layer| {
            let key = out[policy_io::present_key(layer).as_str()].try_extract_array::<f32>().unwrap().to_owned();
            let value = out[policy_io::present_value(layer).as_str()].try_extract_array::<f32>().unwrap().to_owned();
            (key, value)
        })
        .collect();
    (logits, presents)
}

fn candle_array(t: &Tensor) -> ArrayD<f32> {
    let shape = t.dims().to_vec();
    ArrayD::from_shape_vec(shape, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap()
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn policy_onnx_matches_candle_over_cached_steps_issue_5() {
    let base = LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 21, &Device::Cpu).unwrap();
    check_export(&tiny_policy(base), 1);
}

/// The same for the Hugging Face decoders of `tests/fixtures/hf` (see `tests/hf.rs`): Qwen2's query/key/value
/// biases (tied head) and Llama 3's rotary scaling (untied head, so two vocabulary-wide tables).
#[test]
fn policy_onnx_matches_candle_for_qwen2_and_llama3_bases_issue_5() {
    for (name, vocab_tables) in [("qwen2", 1), ("llama3", 2)] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf").join(name);
        println!("{name}:");
        check_export(&tiny_policy(LlamaModel::from_hf_dir(&dir, &Device::Cpu).unwrap()), vocab_tables);
    }
}

/// Runs `policy` through candle and its `policy.onnx` through ONNX Runtime over a prompt step and a cached step, and
/// checks that the graph holds `vocab_tables` vocabulary-wide tables.
fn check_export(policy: &SteerPolicy, vocab_tables: usize) {
    let cfg = policy.model().config().clone();
    let onnx_model = policy_model(policy).unwrap();
    let bytes = prost::Message::encode_to_vec(&onnx_model);
    let mut session = session(&bytes);

    // Two users in one batch: row 0 has 5 prompt tokens, row 1 has 3 (left-padded with 2 padding slots).
    let ids = vec![vec![3i64, 9, 14, 27, 5], vec![0, 0, 8, 41, 2]];
    let mask = vec![vec![1i64, 1, 1, 1, 1], vec![0, 0, 1, 1, 1]];
    let positions = vec![vec![0i64, 1, 2, 3, 4], vec![0, 0, 0, 1, 2]];
    let z = Array2::from_shape_vec((2, 6), vec![0.5f32, -1.0, 0.2, 0.0, 1.5, -0.3, -0.8, 0.4, 1.1, -1.2, 0.0, 0.9])
        .unwrap();
    let empty = Array4::<f32>::zeros((2, cfg.num_kv_heads, 0, cfg.head_dim())).into_dyn();
    let past: Vec<_> = (0..cfg.num_layers).map(|_| (empty.clone(), empty.clone())).collect();

    let tensor_u32 = |rows: &[Vec<i64>]| {
        Tensor::new(
            rows.iter().map(|r| r.iter().map(|&v| v as u32).collect::<Vec<_>>()).collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .unwrap()
    };
    let z_t = Tensor::from_vec(z.iter().copied().collect::<Vec<_>>(), (2, 6), &Device::Cpu).unwrap();
    let (logits, presents) =
        policy.forward_step(&tensor_u32(&ids), &tensor_u32(&mask), &tensor_u32(&positions), None, &z_t).unwrap();
    let (ort_logits, ort_presents) = ort_step(&mut session, &ids, &mask, &positions, &past, &z);
    // Padded query positions see no real key and are not compared.
    let real = |a: &ArrayD<f32>| {
        let mut a = a.clone();
        for t in 0..2 {
            a.slice_mut(ndarray::s![1, t, ..]).fill(0.0);
        }
        a
    };
    let first = max_diff(&real(&candle_array(&logits)), &real(&ort_logits));
    println!("step 1 (prompt, left padding, per-row z): max |candle - ORT| logits = {first:.3e}");
    assert!(first <= 1e-3, "{first}");
    let mut worst_cache = 0.0f32;
    for (c, (k, v)) in presents.iter().zip(&ort_presents) {
        worst_cache = worst_cache.max(max_diff(&candle_array(&c.key), k)).max(max_diff(&candle_array(&c.value), v));
    }
    println!("step 1: max |candle - ORT| present key/values = {worst_cache:.3e}");
    assert!(worst_cache <= 1e-3, "{worst_cache}");

    // Step 2: one new token per row, each step's cache from its own engine.
    let next = vec![vec![17i64], vec![60]];
    let mask2 = vec![vec![1i64, 1, 1, 1, 1, 1], vec![0, 0, 1, 1, 1, 1]];
    let positions2 = vec![vec![5i64], vec![3]];
    let candle_past: Vec<KvCache> = presents;
    let (logits2, _) = policy
        .forward_step(&tensor_u32(&next), &tensor_u32(&mask2), &tensor_u32(&positions2), Some(&candle_past), &z_t)
        .unwrap();
    let (ort_logits2, _) = ort_step(&mut session, &next, &mask2, &positions2, &ort_presents, &z);
    let second = max_diff(&candle_array(&logits2), &ort_logits2);
    println!("step 2 (cached): max |candle - ORT| logits = {second:.3e}");
    assert!(second <= 1e-3, "{second}");

    // The cached step equals recomputing the whole sequence; z matters; and the graph holds one vocabulary table.
    let full_ids = vec![vec![3i64, 9, 14, 27, 5, 17]];
    let full_mask = vec![vec![1i64; 6]];
    let full_positions = vec![vec![0i64, 1, 2, 3, 4, 5]];
    let one_z = z.slice(ndarray::s![0..1, ..]).to_owned();
    let past1: Vec<_> = past
        .iter()
        .map(|(k, v)| {
            (
                k.slice(ndarray::s![0..1, .., .., ..]).to_owned().into_dyn(),
                v.slice(ndarray::s![0..1, .., .., ..]).to_owned().into_dyn(),
            )
        })
        .collect();
    let (full, _) = ort_step(&mut session, &full_ids, &full_mask, &full_positions, &past1, &one_z);
    let recomputed = full.slice(ndarray::s![0, 5, ..]).to_owned();
    let cached = ort_logits2.slice(ndarray::s![0, 0, ..]).to_owned();
    let recompute_diff = recomputed.iter().zip(cached.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    println!("cached step vs full recomputation (ORT): {recompute_diff:.3e}");
    assert!(recompute_diff <= 1e-4, "{recompute_diff}");
    let other_z = z.slice(ndarray::s![1..2, ..]).to_owned();
    let (steered, _) = ort_step(&mut session, &full_ids, &full_mask, &full_positions, &past1, &other_z);
    let z_effect = max_diff(&steered, &full);
    assert!(z_effect > 1e-2, "z changes nothing: {z_effect}");
    // FiLM reads z at unit RMS, so a profile's scale (which grows with the number of choices) does not matter.
    let (scaled, _) = ort_step(&mut session, &full_ids, &full_mask, &full_positions, &past1, &(&one_z * 7.0));
    let scale_effect = max_diff(&scaled, &full);
    assert!(scale_effect <= 1e-4, "scaling z changed the logits by {scale_effect}");

    // A decoder too large for one protobuf keeps its weights in `policy.onnx.data` (forced here with a limit of 0):
    // ONNX Runtime loads it from disk to the same logits.
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("policy.onnx");
    let written = write_model(onnx_model, &path, 0).unwrap();
    assert_eq!(written, ["policy.onnx", "policy.onnx.data"]);
    let (graph_bytes, data_bytes) =
        (std::fs::metadata(&path).unwrap().len(), std::fs::metadata(files.path().join(&written[1])).unwrap().len());
    println!("external data: policy.onnx {graph_bytes} B, policy.onnx.data {data_bytes} B");
    assert!(graph_bytes * 10 < data_bytes, "the weights stayed in the graph file: {graph_bytes} vs {data_bytes}");
    let env = steer_runtime::producer::ort_environment(&LoadOptions::default()).unwrap();
    let mut external = ort::session::Session::builder(&env).unwrap().commit_from_file(&path).unwrap();
    let (external_logits, _) = ort_step(&mut external, &full_ids, &full_mask, &full_positions, &past1, &one_z);
    assert_eq!(max_diff(&external_logits, &full), 0.0);

    let proto = <steer_trainer::onnx::proto::ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    let tables = graph.initializer.iter().filter(|t| t.dims.contains(&(cfg.vocab_size as i64))).count();
    assert_eq!(tables, vocab_tables, "a tied head must reuse the embedding table");
    let names: HashMap<_, _> = graph.input.iter().map(|i| (i.name.as_str(), ())).collect();
    for name in ["input_ids", "attention_mask", "position_ids", "z", "past_key_values.0.key", "past_key_values.1.value"]
    {
        assert!(names.contains_key(name), "missing input {name}");
    }
}

/// A policy bundle around `policy` (on `LlamaConfig::tiny`'s 64-token vocabulary) in `dir/bundle`, without any
/// downloaded model: a word-level tokenizer with ChatML's special tokens, the tiny decoder itself as the text
/// embedder, and a random NP-BTL reward model with `latent_dim` 6.
fn tiny_policy_bundle(policy: &SteerPolicy, dir: &std::path::Path) -> steer_trainer::policy::base::Base {
    use steer_runtime::{ModelKind, TextSpec};
    use steer_trainer::model::ModelConfig;
    use steer_trainer::text::EmbedderFiles;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::{AddedToken, Tokenizer};

    let mut words: Vec<String> = ["<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "Be", "brief"]
        .map(String::from)
        .to_vec();
    words.extend((words.len()..64).map(|i| format!("w{i}")));
    let vocab = words.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
    let model = WordLevel::builder().vocab(vocab).unk_token("<unk>".into()).build().unwrap();
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    let _ =
        tokenizer.add_special_tokens([AddedToken::from("<|im_start|>", true), AddedToken::from("<|im_end|>", true)]);
    let template =
        "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n";
    let base = steer_trainer::policy::base::Base {
        model: policy.model().clone(),
        chat: steer_runtime::ChatEncoder::new(tokenizer.clone(), template).unwrap(),
        tokenizer,
        id: "tiny-random@21".into(),
        chat_template: template.into(),
        eos: 2,
    };

    let embedder_dir = dir.join("embedder");
    std::fs::create_dir_all(&embedder_dir).unwrap();
    steer_trainer::text::write_llama_embedder(&base.model, embedder_dir.join("embedder.onnx")).unwrap();
    steer_trainer::text::save_tokenizer_json(&base.tokenizer, embedder_dir.join("tokenizer.json")).unwrap();
    let spec = TextSpec {
        embedder: "embedder.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        embedder_id: "tiny-random@21".into(),
        pooling: "last-token".into(),
        vocab_size: 64,
        max_tokens: 32,
        begin_tokens: Vec::new(),
        end_tokens: vec!["<|im_end|>".into()],
        pad_token: "<|im_end|>".into(),
        response_prefix: " ".into(),
    };
    let embedder = EmbedderFiles { dir: embedder_dir, spec, dim: 32 };
    let cfg = ModelConfig { kind: ModelKind::NpBtl, embedding_dim: 32, hidden: 6, heads: 2 };
    let (reward, _) = steer_trainer::train::init_model(&cfg, 11, &Device::Cpu).unwrap();
    let reward_dir = dir.join("reward");
    let json = serde_json::json!({});
    steer_trainer::export::write_bundle_with_text(&reward, &cfg, &reward_dir, json.clone(), json, Some(&embedder))
        .unwrap();
    let defaults = steer_runtime::GenerationParams::default();
    let limit = steer_trainer::onnx::INLINE_MODEL_LIMIT;
    steer_trainer::policy::export::write_policy_bundle(
        policy,
        &base,
        defaults,
        &reward_dir,
        &dir.join("bundle"),
        limit,
    )
    .unwrap();
    base
}

/// Sampled generation (temperature, top-k, top-p and repetition penalty together) gives the same tokens through the
/// runtime (ONNX Runtime) as through the trainer's candle loop, for the same seed: both sample with
/// `steer_runtime::sampling`. Two rows of different lengths and profiles, so left padding and per-row seeds count.
#[test]
fn candle_and_onnx_runtime_sample_the_same_tokens_issue_14() {
    use steer_runtime::{GenerationParams, GenerationRequest, Model, Profile};
    use steer_trainer::policy::generate::generate_ids;

    let policy = tiny_policy(LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 21, &Device::Cpu).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_policy_bundle(&policy, dir.path());
    let model = Model::load(dir.path().join("bundle"), &LoadOptions::default()).unwrap();

    let prompts = ["w20 w21 w22 w23 w24 w25", "w30"];
    let z_rows = [vec![0.5f32, -1.0, 0.2, 0.0, 1.5, -0.3], vec![-0.8f32, 0.4, 1.1, -1.2, 0.0, 0.9]];
    let profiles: Vec<Profile> = z_rows.iter().map(|z| Profile::from_vec(z.clone()).unwrap()).collect();
    let requests: Vec<_> = prompts.iter().zip(&profiles).map(|(p, z)| GenerationRequest::new(p, z)).collect();
    let prompt_ids: Vec<Vec<u32>> = prompts.iter().map(|p| base.chat.encode(p).unwrap()).collect();
    let z = Tensor::from_vec(z_rows.concat(), (2, 6), &Device::Cpu).unwrap();
    let step = |i: &Tensor, m: &Tensor, p: &Tensor, past: Option<&[KvCache]>| policy.forward_step(i, m, p, past, &z);
    let candle = |params: &GenerationParams| {
        generate_ids(&step, &prompt_ids, params, &[base.eos], base.eos, &Device::Cpu).unwrap()
    };

    let mut compared = 0;
    for seed in [3, 40, 41] {
        let params = GenerationParams {
            max_new_tokens: 16,
            temperature: 1.2,
            top_k: 12,
            top_p: 0.9,
            repetition_penalty: 1.3,
            seed,
            stop: Vec::new(),
        };
        let onnx = model.generate(&requests, &params).unwrap();
        let sampled = candle(&params);
        for (row, (c, o)) in sampled.iter().zip(&onnx).enumerate() {
            println!("seed {seed} row {row}: candle {c:?}, ONNX Runtime {:?}", o.token_ids);
            assert_eq!(c, &o.token_ids, "seed {seed}, row {row}");
            compared += c.len();
        }
        // The draw mattered: the sampled tokens are not the greedy ones.
        assert_ne!(sampled, candle(&GenerationParams::greedy(16)), "seed {seed}");
    }
    assert!(compared >= 24, "only {compared} sampled tokens compared");
}

// The same fetch-or-skip helper the trainer's unit tests use (the tiny run needs SmolLM2's tokenizer and MiniLM).
use steer_testkit as testing;

/// The whole `train-policy` pipeline on a tiny random decoder and the built-in text task (casual vs formal users):
/// NP-BTL, DPO through cached frozen layers, export, and generation through the runtime. A tiny decoder writes no
/// sense, so the trait of its generations is not checked here (the full SmolLM2 run in the README is); what it must
/// do is learn to rank each user type's answers from z, and generate through ONNX Runtime exactly as in candle.
#[test]
fn tiny_policy_run_learns_each_type_and_generates_through_the_runtime_issue_5() {
    use steer_trainer::policy::base::BaseModel;
    use steer_trainer::policy::dpo::DpoConfig;
    use steer_trainer::policy::run::{
        DEFAULT_SYSTEM_PROMPT, PolicyDataSource, PolicyRunConfig, TraitKind, train_policy,
    };
    use steer_trainer::policy::steering::SteeringConfig;
    use steer_trainer::train::TrainConfig;
    if !testing::models_or_skip("tiny_policy_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let defaults = PolicyRunConfig::default();
    let cfg = PolicyRunConfig {
        base: BaseModel::Tiny,
        data: PolicyDataSource::BuiltinText,
        steering: SteeringConfig { prompts: [400, 120, 120], ..SteeringConfig::default() },
        dpo: DpoConfig { steps: 80, lr: 1e-2, eval_every: 20, ..DpoConfig::default() },
        reward: TrainConfig { steps: 300, baseline_steps: 60, eval_every: 50, ..defaults.reward.clone() },
        eval_draws: 2,
        trait_prompts: 2,
        trait_max_new_tokens: 6,
        trait_kind: TraitKind::Formality,
        ..defaults
    };
    let report = train_policy(&cfg, &LoadOptions::default(), dir.path(), false).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.greedy_parity, Some(true), "greedy generation through ONNX Runtime differs from candle");
    for (user_type, by_k) in &report.implicit_reward_accuracy {
        let (k0, k10) = (by_k[&0], by_k[&10]);
        assert!(k10 >= k0 + 5.0, "{user_type}: implicit-reward accuracy {k0:.1}% at k = 0, {k10:.1}% at k = 10");
    }

    // Two users in one batch through the runtime get different greedy answers from the same bundle.
    let model = steer_runtime::Model::load(dir.path().join("bundle"), &LoadOptions::default()).unwrap();
    // The bundle serves the policy with the system prompt it was trained with.
    let template = &model.policy().unwrap().spec().chat_template;
    assert!(template.contains(&format!("system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>")), "{template}");
    let casual = [steer_runtime::TextPair::new(
        "Any tips?",
        "yeah sure, just try it lol",
        "Certainly. I would recommend trying it.",
    )];
    let formal = [steer_runtime::TextPair::new(
        "Any tips?",
        "Certainly. I would recommend trying it.",
        "yeah sure, just try it lol",
    )];
    let (a, b) = (model.infer_profile_text(&casual).unwrap(), model.infer_profile_text(&formal).unwrap());
    let requests =
        [steer_runtime::GenerationRequest::new("Hello", &a), steer_runtime::GenerationRequest::new("Hello", &b)];
    let params = steer_runtime::GenerationParams { max_new_tokens: 8, temperature: 0.0, ..Default::default() };
    let out = model.generate(&requests, &params).unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|g| !g.token_ids.is_empty()));

    // The same policy exported with its weights in an external data file (forced with a limit of 0) loads, verifies
    // and generates the same greedy answers.
    let (base, policy) = steer_trainer::policy::run::load_policy(dir.path()).unwrap();
    let external = dir.path().join("bundle-external");
    let defaults = model.policy().map(|policy| policy.spec().defaults.clone()).unwrap_or_default();
    let reward = dir.path().join("reward/bundles/np-btl");
    let manifest =
        steer_trainer::policy::export::write_policy_bundle(&policy, &base, defaults, &reward, &external, 0).unwrap();
    assert!(manifest.files.iter().any(|f| f.path == "policy.onnx.data"), "{:?}", manifest.files);
    let external = steer_runtime::Model::load(&external, &LoadOptions::default()).unwrap();
    let (a2, b2) = (external.infer_profile_text(&casual).unwrap(), external.infer_profile_text(&formal).unwrap());
    let requests2 =
        [steer_runtime::GenerationRequest::new("Hello", &a2), steer_runtime::GenerationRequest::new("Hello", &b2)];
    let out2 = external.generate(&requests2, &params).unwrap();
    let ids = |o: &[steer_runtime::Generation]| o.iter().map(|g| g.token_ids.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&out2), ids(&out));

    // `steer generate` streams the same greedy answer for a user given as a JSONL file of choices.
    let context = dir.path().join("casual.jsonl");
    let line = serde_json::json!({"prompt": "Any tips?", "chosen": "yeah sure, just try it lol",
        "rejected": "Certainly. I would recommend trying it."});
    std::fs::write(&context, format!("{line}\n")).unwrap();
    let steer = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_steer"))
            .arg("generate")
            .arg("--bundle")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let context_arg = context.to_str().unwrap();
    let run = steer(&["--context", context_arg, "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", "8"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim_end(), out[0].text.trim_end());
    // Bad input: a top-p out of range, and a context line without "rejected", fail with messages that say so.
    let bad = steer(&["--prompt", "Hello", "--top-p", "1.5"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("top_p"), "{}", String::from_utf8_lossy(&bad.stderr));
    std::fs::write(&context, "{\"prompt\": \"Any tips?\", \"chosen\": \"sure\"}\n").unwrap();
    let bad = steer(&["--context", context_arg, "--prompt", "Hello"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains(":1:") && stderr.contains("rejected"), "{stderr}");
}
