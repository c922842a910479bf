//! Text bundles end to end: a hand-made tokenizer and embedder graph (the fixtures in `common`), loaded with the
//! bundle and run through ONNX Runtime; the text calls agree with the embedding calls on the same embeddings.

use steer_testkit as common;

use std::path::{Path, PathBuf};

use common::{
    TEXT_VOCAB, ensure_ort, mean_embedding, replace_file, test_bundle, text_bundle, text_bundle_with, text_spec,
    tokenizer_json,
};
use ndarray::{Array2, Array3, s};
use steer_runtime::{Dims, Error, LoadOptions, Model, ModelKind, Profile, TextOption, TextPair, TextSpec};

const D_EMB: usize = 3;
const LATENT: usize = 2;
const NP_DIMS: Dims = Dims { embedding_dim: D_EMB, latent_dim: LATENT };
const FLAT_DIMS: Dims = Dims { embedding_dim: D_EMB, latent_dim: 0 };

fn bundle(root: &Path, kind: ModelKind) -> PathBuf {
    ensure_ort();
    let dims = if kind.is_conditioned() { NP_DIMS } else { FLAT_DIMS };
    text_bundle(&root.join(kind.as_str()), kind, dims)
}

fn load(root: &Path, kind: ModelKind) -> Model {
    Model::load(bundle(root, kind), &LoadOptions::default()).unwrap()
}

fn load_err(dir: &Path) -> Error {
    ensure_ort();
    Model::load(dir, &LoadOptions::default()).unwrap_err()
}

#[track_caller]
fn assert_close(found: &[f32], expected: &[f32]) {
    let close = found.len() == expected.len()
        && found.iter().zip(expected).all(|(f, e)| (f - e).abs() <= 1e-5 * (1.0 + e.abs()));
    assert!(close, "found {found:?}, expected {expected:?}");
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, Error>, code: i32, needle: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
}

fn pairs<'a>(raw: &[(&'a str, &'a str, &'a str)]) -> Vec<TextPair<'a>> {
    raw.iter().map(|&(p, c, r)| TextPair::new(p, c, r)).collect()
}

/// Two preferences of one user and three of another.
const ALICE: [(&str, &str, &str); 2] = [("the cat ?", "yes", "no"), ("a dog ?", "good dog", "bad dog")];
const BOB: [(&str, &str, &str); 1] = [("the mat", "sat on the mat", "the cat sat on the mat")];

#[test]
fn texts_embed_to_the_mean_of_their_token_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    let embedder = model.embedder().expect("a text bundle has an embedder");
    assert_eq!(embedder.dim(), D_EMB);
    assert_eq!(embedder.encoder().spec(), &text_spec());

    let options = [
        TextOption::new("the cat", "good"),
        // Exactly 8 tokens.
        TextOption::new("", "a dog sat on the mat"),
        // The response fills the window: the prompt is dropped.
        TextOption::new("the cat sat", "a dog sat on the mat"),
        // The response takes 5 of the 6 free tokens; the prompt keeps its last one, `?`.
        TextOption::new("the cat ?", "a dog sat on mat"),
        // Unknown words are [UNK]; "[SEP]" typed by a user is not the separator.
        TextOption::new("zebra", "[SEP]"),
    ];
    let hand_ids: [&[usize]; 5] = [
        &[1, 4, 5, 11, 2],
        &[1, 8, 10, 6, 7, 4, 9, 2],
        &[1, 8, 10, 6, 7, 4, 9, 2],
        &[1, 15, 8, 10, 6, 7, 9, 2],
        &[1, 0, 0, 0, 0, 2],
    ];
    for (option, ids) in options.iter().zip(hand_ids) {
        let encoded: Vec<usize> = embedder.encoder().encode(*option).unwrap().iter().map(|&id| id as usize).collect();
        assert_eq!(encoded, ids, "{option:?}");
    }

    let embedded = model.embed_texts(&options).unwrap();
    assert_eq!(embedded.dim(), (options.len(), D_EMB));
    // Worked by hand: rows 1, 4, 5, 11, 2 of the table are [-0.25, 0.25, 0.75], [-0.5, 0.75, 0.25],
    // [0, -0.25, -0.5], [-0.5, 0.75, 0.25], [0.25, -0.75, 0]; their mean is [-0.2, 0.15, 0.15].
    assert_close(embedded.row(0).as_slice().unwrap(), &[-0.2, 0.15, 0.15]);
    for (row, ids) in hand_ids.iter().enumerate() {
        // The rows of one batch are padded to 8 tokens; the padding is masked out of the mean.
        assert_close(embedded.row(row).as_slice().unwrap(), &mean_embedding(ids, D_EMB));
    }
    // More options than one embedder run takes (16) come back in order.
    let many: Vec<TextOption<'_>> = (0..37).map(|i| options[i % options.len()]).collect();
    let embedded_many = model.embed_texts(&many).unwrap();
    for (i, row) in embedded_many.rows().into_iter().enumerate() {
        assert_eq!(row, embedded.row(i % options.len()), "option {i}");
    }
    assert_eq!(model.embed_texts(&[]).unwrap().dim(), (0, D_EMB));
}

/// The embeddings of `(prompt, chosen)` and `(prompt, rejected)` of each pair.
fn embed_pairs(model: &Model, pairs: &[TextPair<'_>]) -> (Array2<f32>, Array2<f32>) {
    let chosen: Vec<TextOption<'_>> = pairs.iter().map(|p| TextOption::new(p.prompt, p.chosen)).collect();
    let rejected: Vec<TextOption<'_>> = pairs.iter().map(|p| TextOption::new(p.prompt, p.rejected)).collect();
    (model.embed_texts(&chosen).unwrap(), model.embed_texts(&rejected).unwrap())
}

#[test]
fn text_profiles_and_scores_equal_the_embedding_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    let alice = pairs(&ALICE);
    let (chosen, rejected) = embed_pairs(&model, &alice);
    let profile = model.infer_profile_text(&alice).unwrap();
    let expected = model.infer_profile(chosen.view(), rejected.view()).unwrap();
    assert_close(profile.as_slice(), expected.as_slice());
    assert!(profile.as_slice().iter().any(|z| *z != 0.0), "the fixture gives a non-trivial profile");
    // By the encoder's formula, on the hand-checked embeddings.
    let rows = |a: &Array2<f32>| a.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>();
    assert_close(profile.as_slice(), &common::expected_z(&rows(&chosen), &rows(&rejected), D_EMB, LATENT));
    // k = 0: the prior.
    assert_eq!(model.infer_profile_text(&[]).unwrap().as_slice(), &[0.0, 0.0]);

    let prompt = "a cat ?";
    let responses = ["yes", "no", "the cat sat on the mat", "good"];
    let scores = model.score_text(&profile, prompt, &responses).unwrap();
    let options: Vec<TextOption<'_>> = responses.iter().map(|r| TextOption::new(prompt, r)).collect();
    let embedded = model.embed_texts(&options).unwrap();
    let by_embedding = model.score(&profile, embedded.view()).unwrap();
    assert_close(&scores.reward, &by_embedding.reward);
    assert_eq!(scores.std, None);
    for (reward, option) in scores.reward.iter().zip(embedded.rows()) {
        let expected = common::expected_reward(ModelKind::NpBtl, option.as_slice().unwrap(), profile.as_slice()).0;
        assert_close(&[*reward], &[expected]);
    }
    assert!(scores.reward.windows(2).any(|w| w[0] != w[1]), "responses should score differently");
}

#[test]
fn batched_text_calls_equal_one_call_per_user() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    let (alice, bob) = (pairs(&ALICE), pairs(&BOB));
    // Users with k = 2, 0 and 1.
    let users: [&[TextPair<'_>]; 3] = [&alice, &[], &bob];
    let z = model.infer_profiles_text(&users).unwrap();
    assert_eq!(z.len(), 3);
    for (row, user) in users.iter().enumerate() {
        let single = model.infer_profile_text(user).unwrap();
        assert_close(z[row].as_slice(), single.as_slice());
        assert_eq!(z[row].space(), single.space());
    }
    assert_eq!(z[1].as_slice(), &[0.0, 0.0]);
    // Every user with k = 0 (nothing to embed), and a user with k = 0 last.
    let prior = Profile::from_vec(vec![0.0; LATENT]).unwrap();
    assert_eq!(model.infer_profiles_text(&[&[], &[]]).unwrap(), vec![prior.clone(), prior]);
    let last_empty = model.infer_profiles_text(&[&bob, &[]]).unwrap();
    assert_close(last_empty[0].as_slice(), z[2].as_slice());
    assert_eq!(last_empty[1].as_slice(), &[0.0, 0.0]);

    // Scores: prompts[i] with responses[i * n .. (i + 1) * n], user z[i].
    let prompts = ["the cat ?", "a dog ?", "?"];
    let responses = ["yes", "no", "good", "bad", "the mat", "a mat", "sat", "on", "dog"];
    let n = 3;
    let scores = model.score_text_batch(&z, &prompts, &responses, n).unwrap();
    assert_eq!(scores.reward.dim(), (3, n));
    assert!(scores.std.is_none());
    let mut options = Array3::<f32>::zeros((3, n, D_EMB));
    for (i, prompt) in prompts.iter().enumerate() {
        let row: Vec<TextOption<'_>> =
            responses[i * n..(i + 1) * n].iter().map(|r| TextOption::new(prompt, r)).collect();
        options.slice_mut(s![i, .., ..]).assign(&model.embed_texts(&row).unwrap());
        let single = model.score_text(&z[i], prompt, &responses[i * n..(i + 1) * n]);
        assert_close(scores.reward.row(i).as_slice().unwrap(), &single.unwrap().reward);
    }
    let by_embedding = model.score_batch(&z, options.view()).unwrap();
    assert_close(scores.reward.as_slice().unwrap(), by_embedding.reward.as_slice().unwrap());
}

#[test]
fn bad_text_calls_get_stable_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    let profile = model.infer_profile_text(&pairs(&ALICE)).unwrap();
    let z = vec![profile.clone(), profile.clone()];
    // responses is not batch × n.
    assert_code(model.score_text_batch(&z, &["a", "b"], &["yes", "no", "good"], 2), 301, "responses");
    // Not one profile per prompt, or a profile of another latent size.
    assert_code(model.score_text_batch(&z, &["a"], &["yes", "no"], 2), 301, "input `profiles`");
    let wide = Profile::from_vec(vec![0.0; LATENT + 1]).unwrap();
    assert_code(model.score_text_batch(&[&profile, &wide], &["a", "b"], &["yes", "no"], 1), 305, "latent_dim = 2");
    // A count whose product overflows (and would wrap to 2) is a shape error, not a panic.
    assert_code(model.score_text_batch(&z, &["a", "b"], &["yes", "no"], usize::MAX / 2 + 2), 301, "responses");
    // Nothing to do.
    assert_code(model.score_text_batch(&z, &[], &[], 2), 303, "prompts");
    assert_code(model.score_text_batch(&z, &["a", "b"], &[], 0), 303, "responses");
    assert_code(model.score_text(&profile, "a", &[]), 303, "responses");
    assert_code(model.infer_profiles_text(&[]), 303, "users");
    // A profile of another model.
    let short = Profile::from_vec(vec![1.0]).unwrap();
    assert_code(model.score_text(&short, "a", &["yes"]), 305, "latent_dim = 2");
}

#[test]
fn unconditioned_text_bundles_score_text_without_a_profile() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [ModelKind::Btl, ModelKind::Dpl] {
        let model = load(tmp.path(), kind);
        let profile = model.infer_profile_text(&pairs(&ALICE)).unwrap();
        assert_eq!(profile.latent_dim(), 0);
        let responses = ["yes", "the cat sat"];
        let scores = model.score_text(&profile, "?", &responses).unwrap();
        let options: Vec<TextOption<'_>> = responses.iter().map(|r| TextOption::new("?", r)).collect();
        let expected = model.score(&profile, model.embed_texts(&options).unwrap().view()).unwrap();
        assert_eq!(scores, expected);
        assert_eq!(scores.std.is_some(), kind == ModelKind::Dpl);
        let batch = model.score_text_batch(&[Profile::empty()], &["?"], &responses, 2).unwrap();
        assert_close(batch.reward.as_slice().unwrap(), &scores.reward);
    }
}

#[test]
fn text_calls_on_a_bundle_without_text_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_ort();
    let model = Model::load(test_bundle(tmp.path(), ModelKind::NpBtl, NP_DIMS), &LoadOptions::default()).unwrap();
    assert!(model.embedder().is_none());
    assert!(model.manifest().text.is_none());
    let profile = Profile::from_vec(vec![0.0; LATENT]).unwrap();
    let no_text = "no text embedder";
    assert_code(model.embed_texts(&[TextOption::new("a", "b")]), 307, no_text);
    assert_code(model.infer_profile_text(&pairs(&ALICE)), 307, no_text);
    assert_code(model.infer_profile_text(&[]), 307, "np-btl bundle");
    assert_code(model.infer_profiles_text(&[&pairs(&ALICE), &[]]), 307, no_text);
    assert_code(model.score_text(&profile, "a", &["b"]), 307, no_text);
    assert_code(model.score_text_batch(&[profile], &["a"], &["b"], 1), 307, no_text);
}

#[test]
fn a_tokenizer_with_another_vocabulary_is_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path(), ModelKind::NpBtl);
    let mut other: Vec<&str> = TEXT_VOCAB.to_vec();
    other.push("zebra");
    // The hash is updated, so only the tokenizer check can catch it.
    replace_file(&dir, "tokenizer.json", &tokenizer_json(&other));
    let err = load_err(&dir);
    assert_eq!(err.code(), 109, "{err}");
    assert!(matches!(err, Error::TokenizerMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("16 tokens") && err.to_string().contains("17 tokens"), "{err}");

    // The same vocabulary size without a [PAD] token.
    let renamed: Vec<&str> = TEXT_VOCAB.iter().map(|&t| if t == "[PAD]" { "<pad>" } else { t }).collect();
    let spec = TextSpec { pad_token: "<pad>".into(), ..text_spec() };
    let dir = text_bundle_with(&tmp.path().join("renamed"), ModelKind::NpBtl, NP_DIMS, spec);
    let mut json: serde_json::Value = serde_json::from_slice(&tokenizer_json(&TEXT_VOCAB)).unwrap();
    json["model"]["vocab"] = serde_json::to_value(
        renamed.iter().enumerate().map(|(id, t)| (t.to_string(), id)).collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    json["added_tokens"].as_array_mut().unwrap().retain(|t| t["content"] != "[PAD]");
    replace_file(&dir, "tokenizer.json", &serde_json::to_vec(&json).unwrap());
    Model::load(&dir, &LoadOptions::default()).unwrap();
    let dir = text_bundle_with(&tmp.path().join("no-pad"), ModelKind::NpBtl, NP_DIMS, text_spec());
    replace_file(&dir, "tokenizer.json", &serde_json::to_vec(&json).unwrap());
    let err = load_err(&dir);
    assert_eq!(err.code(), 109, "{err}");
    assert!(err.to_string().contains("\"[PAD]\""), "{err}");
}

#[test]
fn an_unreadable_tokenizer_is_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path(), ModelKind::NpBtl);
    replace_file(&dir, "tokenizer.json", b"{ this is not a tokenizer");
    let err = load_err(&dir);
    assert_eq!(err.code(), 108, "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    // Valid JSON that is not a tokenizer either.
    replace_file(&dir, "tokenizer.json", b"{\"model\": 3}");
    assert_eq!(load_err(&dir).code(), 108);
}

#[test]
fn text_files_must_be_listed_in_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    for (field, missing) in [("tokenizer", "vocab.json"), ("embedder", "text-embedder.onnx")] {
        let mut spec = text_spec();
        match field {
            "tokenizer" => spec.tokenizer = missing.into(),
            _ => spec.embedder = missing.into(),
        }
        let dir = text_bundle_with(&tmp.path().join(field), ModelKind::NpBtl, NP_DIMS, spec);
        let err = load_err(&dir);
        assert_eq!(err.code(), 104, "{err}");
        assert!(err.to_string().contains(missing), "{err}");
    }
    // An embedder graph for another embedding size is caught by its signature.
    let dir = bundle(tmp.path(), ModelKind::NpBtl);
    replace_file(&dir, "embedder.onnx", &common::embedder_graph(D_EMB + 1).into_bytes());
    let err = load_err(&dir);
    assert_eq!(err.code(), 107, "{err}");
    assert!(err.to_string().contains("embedder.onnx"), "{err}");
}
