//! Steer from Rust: two users, one prompt, two different answers. Infer each user's profile from a few of their
//! choices between two answers (user A picks the short one, user B the long one), then answer ONE prompt for both
//! users in ONE batch with greedy decoding, streaming user A's answer token by token. The same scenario as
//! examples/c/two_users.c and examples/cpp/two_users.cpp.
//!
//! It needs a bundle with a steerable policy and a text embedder (`steer train-policy` writes one to OUT/bundle).
//! Run it with `make example-policy-rust`, or:
//!
//!     cargo run --release -p steer-runtime --example two_users -- out/policy/bundle ["your prompt"]

use std::io::Write;
use std::ops::ControlFlow;

use steer_runtime::{GenerationParams, GenerationRequest, LoadOptions, Model, TextPair};

const QUESTIONS: [&str; 3] =
    ["How do I boil an egg?", "What is the capital of France?", "Any tips for sleeping better?"];
const SHORT: [&str; 3] = ["Boil it for 9 minutes.", "Paris.", "Keep a regular bedtime."];
const LONG: [&str; 3] = [
    "Put the egg in a pot of cold water, bring it to a boil, then let it simmer for about nine minutes and cool it in \
     cold water so that it peels easily.",
    "The capital of France is Paris, which is also its largest city and has been the seat of government for \
     centuries.",
    "Go to bed at the same time every night, keep the room dark and cool, avoid screens and caffeine in the evening, \
     and get some daylight in the morning.",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bundle = std::env::args().nth(1).unwrap_or_else(|| "out/policy/bundle".into());
    let prompt = std::env::args().nth(2).unwrap_or_else(|| "How do I boil an egg?".into());
    let model = Model::load(&bundle, &LoadOptions::default())?;
    if model.policy().is_none() || model.embedder().is_none() {
        return Err(
            format!("{bundle} needs a policy and a text embedder (steer train-policy writes such a bundle)").into()
        );
    }
    println!("loaded {bundle} (execution providers: {:?})", model.execution_providers());

    // User A prefers the short answers, user B the long ones.
    let choices = |short_wins: bool| -> Vec<TextPair<'static>> {
        (0..3)
            .map(|i| {
                let (chosen, rejected) = if short_wins { (SHORT[i], LONG[i]) } else { (LONG[i], SHORT[i]) };
                TextPair::new(QUESTIONS[i], chosen, rejected)
            })
            .collect()
    };
    let user_a = model.infer_profile_text(&choices(true))?;
    let user_b = model.infer_profile_text(&choices(false))?;

    // The bundle's defaults, made greedy; both users in one batch, user A (row 0) streamed.
    let defaults = model.policy().map(|policy| policy.spec().defaults.clone()).unwrap_or_default();
    let params = GenerationParams { temperature: 0.0, ..defaults };
    let requests = [GenerationRequest::new(&prompt, &user_a), GenerationRequest::new(&prompt, &user_b)];
    println!("prompt: {prompt}");
    print!("streaming user A: ");
    std::io::stdout().flush()?;
    let mut streamed = 0;
    let answers = model.generate_stream(&requests, &params, &mut |event| {
        if event.row == 0 {
            print!("{}", event.text);
            let _ = std::io::stdout().flush();
            streamed += 1;
        }
        ControlFlow::Continue(())
    })?;
    println!();
    for (name, answer) in ["user A", "user B"].iter().zip(&answers) {
        println!("{name}: {}", answer.text);
        println!("  ({} tokens, finished by {:?})", answer.token_ids.len(), answer.finish);
    }
    println!("user A's streamed tokens: {streamed}");
    Ok(())
}
