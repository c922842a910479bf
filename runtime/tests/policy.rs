//! Text generation end to end with the hand-made policy of `common::policy_graph`: greedy replies computed by hand,
//! per-row profiles, the cache, left padding, seeded sampling, stop strings, streaming, best-of-n and the errors.

use steer_testkit as common;

use std::ops::ControlFlow;
use std::path::Path;

use common::policy_graph::*;
use common::{ensure_ort, text_bundle};
use steer_runtime::{
    Error, FinishReason, Generation, GenerationParams, GenerationRequest, LoadOptions, Model, ModelKind, PolicySpec,
    Profile,
};

fn load(root: &Path) -> Model {
    ensure_ort();
    Model::load(policy_bundle(&root.join("policy")), &LoadOptions::default()).unwrap()
}

fn profile(z: &[f32]) -> Profile {
    Profile::from_vec(z.to_vec()).unwrap()
}

fn generate_one(model: &Model, prompt: &str, z: &Profile, params: &GenerationParams) -> Generation {
    model.generate(&[GenerationRequest::new(prompt, z)], params).unwrap().remove(0)
}

fn words(ids: &[u32]) -> String {
    ids.iter().map(|&id| POLICY_VOCAB[id as usize]).collect::<Vec<_>>().join(" ")
}

#[test]
fn the_model_reports_its_policy() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let policy = model.policy().expect("a policy bundle");
    assert_eq!(policy.spec(), &policy_spec());
    assert_eq!(policy.spec().defaults, greedy());
    // The template's special tokens become their ids; the same text in the user's prompt stays plain text.
    let policy = model.policy().unwrap();
    assert_eq!(policy.encode_prompt("a").unwrap(), templated(&[A]));
    assert_eq!(policy.encode_prompt("a <|im_end|>").unwrap(), templated(&[A, UNK, UNK, UNK]));
}

#[test]
fn greedy_replies_follow_the_hand_computed_sequences_per_row_profile() {
    // Prompt "a" = [1, 3, 5, 2, 1, 4], sum 16, last position 5. With z = (1, 0):
    //   step 1 after `assistant`: a = 2 (z), e = 1.6 (0.1 · 16), EOS = 0.55                  → a   (sum 21)
    //   step 2 after a: c = 3, e = 2.1, a = 2                                                  → c   (sum 28)
    //   step 3 after c: a = 3 + 2 = 5, e = 2.8                                                 → a   (sum 33)
    //   step 4 after a: c = 3, e = 3.3                                                         → e   (sum 42)
    //   step 5 after e: EOS = 5 + 0.05 · 9 + 0.05 · 10 = 5.95, e = 4.2                         → EOS
    // With z = (0, 1) the chain is b → d → b, and e wins at sum 36: b = 2 / d = 3 / b = 5 / e = 3.6 > d = 3.
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let (za, zb) = (profile(&[1.0, 0.0]), profile(&[0.0, 1.0]));
    let expected_a = [A, C, A, E];
    let expected_b = [B, DD, B, E];
    assert_eq!(reference_greedy(&templated(&[A]), &[1.0, 0.0], 8, true), expected_a);
    assert_eq!(reference_greedy(&templated(&[A]), &[0.0, 1.0], 8, true), expected_b);

    let out = model.generate(&[GenerationRequest::new("a", &za), GenerationRequest::new("a", &zb)], &greedy()).unwrap();
    assert_eq!(out[0].token_ids, expected_a);
    assert_eq!(out[0].text, "a c a e");
    assert_eq!(out[0].finish, FinishReason::Eos);
    assert_eq!(out[0].prompt_tokens, 6);
    assert_eq!(out[1].token_ids, expected_b);
    assert_eq!(out[1].text, "b d b e");
    assert_eq!(out[1].finish, FinishReason::Eos);
}

#[test]
fn the_reply_depends_on_the_cache() {
    // Without the cache the sum would only see the last fed token: `e` would never win, and the reply would run on
    // until the position bonus of `x` (from position 11, the 7th new token).
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let broken = reference_greedy(&templated(&[A]), &[1.0, 0.0], 8, false);
    assert_eq!(broken, [A, C, A, C, A, C, X, X]);
    let out = generate_one(&model, "a", &profile(&[1.0, 0.0]), &greedy());
    assert_ne!(out.token_ids, broken);
    assert_eq!(out.token_ids, reference_greedy(&templated(&[A]), &[1.0, 0.0], 8, true));
}

#[test]
fn left_padding_gives_each_row_the_reply_it_gets_alone() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let (za, zb) = (profile(&[1.0, 0.0]), profile(&[0.0, 1.0]));
    // "a a a": sum 26, so `e` (2.6) beats `a` (2) at once; then EOS.
    let long = generate_one(&model, "a a a", &za, &greedy());
    assert_eq!(long.token_ids, [E]);
    assert_eq!(long.token_ids, reference_greedy(&templated(&[A, A, A]), &[1.0, 0.0], 8, true));
    // The long prompt pads "a" by 3: positions counted from the padding would reach X_FROM and give an `x`.
    let cases = [("a", &za), ("a a a", &za), ("c", &zb), ("b d c a", &za)];
    let shifted = {
        let mut padded = vec![PAD; 3];
        padded.extend(templated(&[A]));
        reference_greedy(&padded, &[1.0, 0.0], 8, true)
    };
    assert!(shifted.contains(&X), "{shifted:?}");
    let alone: Vec<Generation> = cases.iter().map(|&(p, z)| generate_one(&model, p, z, &greedy())).collect();
    let requests: Vec<GenerationRequest<'_>> = cases.iter().map(|&(p, z)| GenerationRequest::new(p, z)).collect();
    let batched = model.generate(&requests, &greedy()).unwrap();
    assert_eq!(batched, alone);
    for (i, &(prompt, z)) in cases.iter().enumerate() {
        let prompt_ids = model.policy().unwrap().encode_prompt(prompt).unwrap();
        let expected = reference_greedy(&prompt_ids, z.as_slice(), 8, true);
        assert_eq!(batched[i].token_ids, expected, "row {i} ({prompt}): {}", words(&expected));
    }
}

#[test]
fn the_same_seed_gives_the_same_sample_and_other_seeds_differ() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let z = profile(&[0.5, 0.5]);
    let sampled = |seed| {
        let params = GenerationParams { temperature: 1.5, max_new_tokens: 6, seed, ..greedy() };
        generate_one(&model, "a", &z, &params)
    };
    let first = sampled(7);
    assert_eq!(sampled(7), first);
    let others: Vec<Generation> = (8..16).map(sampled).collect();
    assert!(others.iter().any(|g| g.token_ids != first.token_ids), "8 seeds all gave {:?}", first.token_ids);
    // Row i of a batch uses seed + i: row 1 with seed 7 is seed 8 alone.
    let batch = model
        .generate(
            &[GenerationRequest::new("a", &z), GenerationRequest::new("a", &z)],
            &GenerationParams { temperature: 1.5, max_new_tokens: 6, seed: 7, ..greedy() },
        )
        .unwrap();
    assert_eq!(batch[0], first);
    assert_eq!(batch[1], others[0]);
}

/// A sampled batch through the runtime is the hand-computed logits of the fixture sampled with the public
/// `sampling::RowSampler` of each row (seed + row, prompt included in the repetition penalty), token for token.
#[test]
fn sampled_generation_is_the_public_sampler_over_the_logits_issue_14() {
    use steer_runtime::sampling::RowSampler;
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let rows = [("a", [1.0f32, 0.0]), ("b a", [0.3, 0.7])];
    let profiles: Vec<Profile> = rows.iter().map(|(_, z)| profile(z)).collect();
    let requests: Vec<_> = rows.iter().zip(&profiles).map(|((p, _), z)| GenerationRequest::new(p, z)).collect();
    let mut sampled = 0;
    for seed in 0..8 {
        let params =
            GenerationParams { temperature: 2.0, top_k: 6, top_p: 0.95, repetition_penalty: 1.2, seed, ..greedy() };
        let out = model.generate(&requests, &params).unwrap();
        for (row, ((prompt, z), generation)) in rows.iter().zip(&out).enumerate() {
            let prompt = model.policy().unwrap().encode_prompt(prompt).unwrap();
            let mut sampler = RowSampler::new(seed, row, &prompt);
            let (mut tokens, mut expected) = (prompt, Vec::new());
            while expected.len() < params.max_new_tokens {
                let sum = tokens.iter().map(|&t| t as f32).sum();
                let id = sampler.sample(&next_logits(&tokens, z, sum), &params);
                if id == EOS {
                    break;
                }
                tokens.push(id);
                expected.push(id);
            }
            assert_eq!(generation.token_ids, expected, "seed {seed} row {row}: {}", words(&expected));
            sampled += expected.len();
        }
    }
    println!("{sampled} sampled tokens");
    assert!(sampled >= 24, "only {sampled} sampled tokens");
}

#[test]
fn the_repetition_penalty_covers_the_prompt() {
    // Penalty 2 halves the positive logits of the prompt's tokens: after `assistant`, a = 2 / 2 = 1 < e = 1.6, so
    // e (sum 25); then EOS = (5 + 0.3 + 0.35) / 2 = 2.825 beats e = 2.5 / 2 and a = 1.
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let params = GenerationParams { repetition_penalty: 2.0, ..greedy() };
    let out = generate_one(&model, "a", &profile(&[1.0, 0.0]), &params);
    assert_eq!((out.token_ids.as_slice(), out.finish), (&[E][..], FinishReason::Eos));
    assert_eq!(out.text, "e");
}

#[test]
fn stop_strings_eos_and_length_end_a_row() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let za = profile(&[1.0, 0.0]);
    // "a c a e" stops before " e"; the token that completed the stop string is in the ids.
    let stop = GenerationParams { stop: vec![" e".into()], ..greedy() };
    let out = generate_one(&model, "a", &za, &stop);
    assert_eq!((out.text.as_str(), out.finish), ("a c a", FinishReason::Stop));
    assert_eq!(out.token_ids, [A, C, A, E]);
    let stop = GenerationParams { stop: vec!["zzz".into(), "c a".into()], ..greedy() };
    let out = generate_one(&model, "a", &za, &stop);
    assert_eq!((out.text.as_str(), out.finish), ("a ", FinishReason::Stop));
    assert_eq!(out.token_ids, [A, C, A]);

    let out = generate_one(&model, "a", &za, &greedy());
    assert_eq!(out.finish, FinishReason::Eos);
    assert!(!out.token_ids.contains(&EOS));

    let out = generate_one(&model, "a", &za, &GenerationParams { max_new_tokens: 2, ..greedy() });
    assert_eq!((out.text.as_str(), out.finish), ("a c", FinishReason::Length));
    assert_eq!(out.token_ids, [A, C]);
}

#[test]
fn streamed_deltas_concatenate_to_the_text() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let (za, zb) = (profile(&[1.0, 0.0]), profile(&[0.0, 1.0]));
    for stop in [vec![], vec!["a e".to_string()], vec!["d b e".to_string()]] {
        let params = GenerationParams { stop, ..greedy() };
        let mut streamed = vec![String::new(); 2];
        let mut tokens = vec![Vec::new(); 2];
        let out = model
            .generate_stream(
                &[GenerationRequest::new("a", &za), GenerationRequest::new("a", &zb)],
                &params,
                &mut |event| {
                    streamed[event.row].push_str(event.text);
                    tokens[event.row].push(event.token_id);
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        assert_eq!(
            out,
            model.generate(&[GenerationRequest::new("a", &za), GenerationRequest::new("a", &zb)], &params).unwrap()
        );
        for row in 0..2 {
            assert_eq!(streamed[row], out[row].text, "row {row}, stop {:?}", params.stop);
            assert!(tokens[row].starts_with(&out[row].token_ids));
        }
    }
    // With "a e" as the stop string the trailing "a" is held back until the next token settles it.
    let params = GenerationParams { stop: vec!["a e".into()], ..greedy() };
    let mut deltas = Vec::new();
    let out = model
        .generate_stream(&[GenerationRequest::new("a", &za)], &params, &mut |event| {
            deltas.push(event.text.to_string());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(deltas, ["", "a c", " ", ""]);
    assert_eq!((out[0].text.as_str(), out[0].finish), ("a c ", FinishReason::Stop));
    // Without stop strings every token's text comes out at once, and the EOS event carries nothing.
    let mut deltas = Vec::new();
    model
        .generate_stream(&[GenerationRequest::new("a", &za)], &greedy(), &mut |event| {
            deltas.push((event.token_id, event.text.to_string()));
            ControlFlow::Continue(())
        })
        .unwrap();
    let expected: Vec<(u32, String)> =
        [(A, "a"), (C, " c"), (A, " a"), (E, " e"), (EOS, "")].iter().map(|&(id, t)| (id, t.to_string())).collect();
    assert_eq!(deltas, expected);
}

#[test]
fn break_cancels_every_running_row() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let za = profile(&[1.0, 0.0]);
    let mut seen = 0;
    let out = model
        .generate_stream(&[GenerationRequest::new("a", &za)], &greedy(), &mut |_| {
            seen += 1;
            if seen == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(out[0].finish, FinishReason::Cancelled);
    assert_eq!(out[0].token_ids, [A, C]);
    assert_eq!(out[0].text, "a c");

    // Two rows: stopping at row 0's second token leaves row 1 with one token, both cancelled.
    let zb = profile(&[0.0, 1.0]);
    let mut events = Vec::new();
    let out = model
        .generate_stream(&[GenerationRequest::new("a", &za), GenerationRequest::new("a", &zb)], &greedy(), &mut |e| {
            events.push((e.row, e.token_id));
            if events.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(events, [(0, A), (1, B), (0, C)]);
    assert_eq!(out[0].token_ids, [A, C]);
    assert_eq!(out[1].token_ids, [B]);
    assert!(out.iter().all(|g| g.finish == FinishReason::Cancelled));
}

#[test]
fn best_of_n_scores_each_candidate_with_the_bundle_reward() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let z = profile(&[0.5, 0.5]);
    let params = GenerationParams { temperature: 1.5, max_new_tokens: 5, seed: 3, ..greedy() };
    let best = model.generate_best_of_n("a", &z, 4, &params).unwrap();
    assert_eq!(best.candidates.len(), 4);
    assert_eq!(best.rewards.len(), 4);
    for (i, candidate) in best.candidates.iter().enumerate() {
        let alone = generate_one(&model, "a", &z, &GenerationParams { seed: 3 + i as u64, ..params.clone() });
        assert_eq!(candidate, &alone, "candidate {i} is seed 3 + {i}");
    }
    let texts: Vec<&str> = best.candidates.iter().map(|c| c.text.as_str()).collect();
    let scores = model.score_text(&z, "a", &texts).unwrap();
    assert_eq!(best.rewards, scores.reward);
    let max = best.rewards.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(best.rewards[best.best], max);
    assert!(best.rewards[..best.best].iter().all(|&r| r < max));
}

#[test]
fn invalid_parameters_are_error_308() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let z = profile(&[1.0, 0.0]);
    let request = [GenerationRequest::new("a", &z)];
    let cases = [
        ("temperature", GenerationParams { temperature: -1.0, ..greedy() }),
        ("top_p", GenerationParams { top_p: 0.0, ..greedy() }),
        ("top_p", GenerationParams { top_p: 1.5, ..greedy() }),
        ("repetition_penalty", GenerationParams { repetition_penalty: 0.0, ..greedy() }),
        ("max_new_tokens", GenerationParams { max_new_tokens: 0, ..greedy() }),
        ("stop", GenerationParams { stop: vec![String::new()], ..greedy() }),
    ];
    for (name, params) in cases {
        let err = model.generate(&request, &params).unwrap_err();
        assert_eq!(err.code(), 308, "{name}: {err}");
        assert!(matches!(&err, Error::InvalidGenerationParam { param, .. } if param == name), "{err:?}");
    }
    let err = model.generate_best_of_n("a", &z, 0, &greedy()).unwrap_err();
    assert_eq!(err.code(), 308);
    assert!(err.to_string().contains("`n`"), "{err}");
}

#[test]
fn a_prompt_too_long_for_the_context_window_is_error_309() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let z = profile(&[1.0, 0.0]);
    // 5 template tokens + 11 words = 16 tokens; + 8 new = 24 fits, + 9 does not.
    let prompt = ["a"; 11].join(" ");
    let fits = model.generate(&[GenerationRequest::new(&prompt, &z)], &greedy()).unwrap();
    assert_eq!(fits[0].prompt_tokens, 16);
    let err = model
        .generate(&[GenerationRequest::new(&prompt, &z)], &GenerationParams { max_new_tokens: 9, ..greedy() })
        .unwrap_err();
    assert_eq!(err.code(), 309);
    assert!(
        matches!(err, Error::PromptTooLong { prompt_tokens: 16, max_new_tokens: 9, max_positions: MAX_POSITIONS }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("16") && message.contains("24"), "{message}");
}

#[test]
fn a_bundle_without_policy_is_error_310() {
    ensure_ort();
    let root = tempfile::tempdir().unwrap();
    let dir = text_bundle(&root.path().join("np"), ModelKind::NpBtl, POLICY_DIMS);
    let model = Model::load(dir, &LoadOptions::default()).unwrap();
    assert!(model.policy().is_none());
    let z = profile(&[1.0, 0.0]);
    let request = [GenerationRequest::new("a", &z)];
    assert_eq!(model.generate(&request, &greedy()).unwrap_err().code(), 310);
    let err = model.generate_stream(&request, &greedy(), &mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(matches!(err, Error::NoPolicy { .. }), "{err:?}");
    assert_eq!(model.generate_best_of_n("a", &z, 2, &greedy()).unwrap_err().code(), 310);
}

#[test]
fn bad_requests_are_rejected() {
    let root = tempfile::tempdir().unwrap();
    let model = load(root.path());
    let short = profile(&[1.0]);
    let err = model.generate(&[GenerationRequest::new("a", &short)], &greedy()).unwrap_err();
    assert_eq!(err.code(), 305);
    assert!(matches!(err, Error::ProfileLength { expected: 2, found: 1, .. }), "{err:?}");
    assert_eq!(model.generate_best_of_n("a", &short, 2, &greedy()).unwrap_err().code(), 305);
    let err = model.generate(&[], &greedy()).unwrap_err();
    assert!(matches!(err, Error::EmptyInput { .. }), "{err:?}");
}

#[test]
fn a_policy_that_does_not_match_its_spec_is_not_loaded() {
    ensure_ort();
    let root = tempfile::tempdir().unwrap();
    // No z input: graph signature, 107.
    let dir = policy_bundle_with(
        &root.path().join("no-z"),
        policy_spec(),
        policy_graph(Broken { no_z: true }),
        policy_tokenizer_json(),
    );
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 107, "{err}");
    assert!(matches!(&err, Error::GraphSignature { tensor, .. } if tensor == "z"), "{err:?}");
    // Two layers in the spec, one in the graph.
    let two_layers = PolicySpec { num_layers: 2, ..policy_spec() };
    let dir = policy_bundle_with(
        &root.path().join("layers"),
        two_layers,
        policy_graph(Broken::default()),
        policy_tokenizer_json(),
    );
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::GraphSignature { tensor, .. } if tensor == "past_key_values.1.key"), "{err:?}");
    // Another head_dim than the graph's fixed 1.
    let wide = PolicySpec { head_dim: 2, ..policy_spec() };
    let dir =
        policy_bundle_with(&root.path().join("wide"), wide, policy_graph(Broken::default()), policy_tokenizer_json());
    assert_eq!(Model::load(&dir, &LoadOptions::default()).unwrap_err().code(), 107);
    // A tokenizer file that is not one: 108.
    let dir = policy_bundle_with(
        &root.path().join("tok"),
        policy_spec(),
        policy_graph(Broken::default()),
        b"{\"not\": \"a tokenizer\"}".to_vec(),
    );
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 108, "{err}");
    // A vocabulary larger than the logits: 109.
    let narrow = PolicySpec { vocab_size: 11, eos_token_ids: vec![EOS], ..policy_spec() };
    let dir = policy_bundle_with(
        &root.path().join("narrow"),
        narrow,
        policy_graph(Broken::default()),
        policy_tokenizer_json(),
    );
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 109, "{err}");
    // An EOS id outside the vocabulary: an invalid manifest, 104.
    let bad_eos = PolicySpec { eos_token_ids: vec![99], ..policy_spec() };
    let dir =
        policy_bundle_with(&root.path().join("eos"), bad_eos, policy_graph(Broken::default()), policy_tokenizer_json());
    assert_eq!(Model::load(&dir, &LoadOptions::default()).unwrap_err().code(), 104);
}
