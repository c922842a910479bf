//! Embedding throughput (texts/s at 128 tokens) of both text embedders, in candle and through ONNX Runtime (the
//! exported `embedder.onnx` run by steer-runtime), on batches of 16 texts (the runtime's embedding batch).
//!
//! `make bench-embed` (or `cargo bench -p steer-trainer --bench embedding_throughput`). Criterion reports
//! `thrpt` in elements/s, where an element is one text. Both engines use every core.

use std::hint::black_box;
use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use steer_runtime::LoadOptions;
use steer_runtime::producer::{EMBED_BATCH, TokenBatch, run_embedder};
use steer_trainer::text::llama::LlamaModel;
use steer_trainer::text::{EmbedderChoice, EmbedderFiles, MiniLmEmbedder, minilm_dir, smollm2_gguf_path};

use steer_testkit as testing;

/// Tokens per text.
const TOKENS: usize = 128;

/// A batch of seeded token ids (ordinary tokens only, no padding): the content does not change the cost.
fn batch(seed: u64) -> TokenBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = Array2::from_shape_fn((EMBED_BATCH, TOKENS), |_| rng.random_range(1_000i64..20_000));
    TokenBatch { input_ids: ids, attention_mask: Array2::ones((EMBED_BATCH, TOKENS)) }
}

fn candle_inputs(batch: &TokenBatch, as_u32: bool) -> (Tensor, Tensor) {
    let shape = (EMBED_BATCH, TOKENS);
    let ids: Vec<i64> = batch.input_ids.iter().copied().collect();
    let ids = if as_u32 {
        Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), shape, &Device::Cpu)
    } else {
        Tensor::from_vec(ids, shape, &Device::Cpu)
    };
    let mask = Tensor::ones(shape, candle_core::DType::I64, &Device::Cpu);
    (ids.expect("ids"), mask.expect("mask"))
}

fn embedders(c: &mut Criterion) {
    if !testing::models_or_skip("embedding_throughput") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = batch(7);
    let all_cores = LoadOptions::default().intra_op_threads(0);
    let mut group = c.benchmark_group("embed_128_tokens");
    group
        .throughput(Throughput::Elements(EMBED_BATCH as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    let minilm = MiniLmEmbedder::load(minilm_dir(), &Device::Cpu).expect("MiniLM");
    let (ids, mask) = candle_inputs(&input, false);
    group.bench_function("minilm/candle", |b| b.iter(|| black_box(minilm.embed(&ids, &mask).expect("embed"))));
    let files = EmbedderFiles::prepare(EmbedderChoice::Minilm, dir.path().join("minilm")).expect("export");
    let ort = files.load(&all_cores).expect("load");
    group.bench_function("minilm/onnxruntime", |b| b.iter(|| black_box(run_embedder(&ort, &input).expect("run"))));
    drop((minilm, ort));

    let smollm2 = LlamaModel::from_gguf(smollm2_gguf_path(), &Device::Cpu).expect("SmolLM2");
    let (ids, mask) = candle_inputs(&input, true);
    group.bench_function("smollm2/candle", |b| b.iter(|| black_box(smollm2.embed(&ids, &mask).expect("embed"))));
    let files = EmbedderFiles::prepare(EmbedderChoice::Smollm2, dir.path().join("smollm2")).expect("export");
    let ort = files.load(&all_cores).expect("load");
    group.bench_function("smollm2/onnxruntime", |b| b.iter(|| black_box(run_embedder(&ort, &input).expect("run"))));
    group.finish();
}

criterion_group!(benches, embedders);
criterion_main!(benches);
