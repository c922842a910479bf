//! Test helpers: tiny hand-encoded ONNX graphs with known outputs, bundle writing, and making sure the ONNX Runtime
//! library is in the project cache.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use steer_runtime::manifest::{FORMAT_VERSION, FileEntry, Graphs, sha256_file};
use steer_runtime::{Dims, LoadOptions, Manifest, ModelKind, TextSpec};

pub mod policy_graph;

/// Makes sure ONNX Runtime can be found, fetching it with the project's script when it cannot.
pub fn ensure_ort() {
    if steer_runtime::ort_env::find_onnxruntime(&LoadOptions::default()).is_ok() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-onnxruntime.sh");
    let status = Command::new("bash").arg(&script).status().expect("cannot run scripts/fetch-onnxruntime.sh");
    assert!(status.success(), "scripts/fetch-onnxruntime.sh failed; is PyPI reachable?");
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal protobuf writer, enough for ONNX ModelProto (field numbers from onnx.proto3).

#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }
    fn int(mut self, field: u64, v: i64) -> Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    fn bytes(mut self, field: u64, bytes: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u64, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// An axis of a declared shape: a symbolic (dynamic) name or a fixed size.
#[derive(Clone, Copy)]
pub enum D {
    Sym(&'static str),
    Fix(i64),
}

fn value_info(name: &str, elem_type: i64, dims: &[D]) -> Msg {
    let mut shape = Msg::default();
    for dim in dims {
        let d = match dim {
            D::Sym(s) => Msg::default().str(2, s),
            D::Fix(v) => Msg::default().int(1, *v),
        };
        shape = shape.msg(1, d);
    }
    let tensor = Msg::default().int(1, elem_type).msg(2, shape);
    Msg::default().str(1, name).msg(2, Msg::default().msg(1, tensor))
}

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m = m.int(1, d);
    }
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    m.int(2, FLOAT).str(8, name).bytes(9, &raw)
}

fn int64_tensor(name: &str, values: &[i64]) -> Msg {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Msg::default().int(1, values.len() as i64).int(2, INT64).str(8, name).bytes(9, &raw)
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: &[(&str, i64)]) -> Msg {
    let mut m = Msg::default();
    for i in inputs {
        m = m.str(1, i);
    }
    for o in outputs {
        m = m.str(2, o);
    }
    m = m.str(3, &format!("{op}_{}", outputs[0])).str(4, op);
    for &(name, value) in attributes {
        // AttributeProto { name, i: value, type: INT (2) }
        m = m.msg(5, Msg::default().str(1, name).int(3, value).int(20, 2));
    }
    m
}

/// A graph under construction.
#[derive(Default)]
pub struct Graph {
    g: Msg,
}

impl Graph {
    pub fn input(mut self, name: &str, dims: &[D]) -> Self {
        self.g = self.g.msg(11, value_info(name, FLOAT, dims));
        self
    }
    pub fn output(mut self, name: &str, dims: &[D]) -> Self {
        self.g = self.g.msg(12, value_info(name, FLOAT, dims));
        self
    }
    pub fn weight(mut self, name: &str, dims: &[i64], values: &[f32]) -> Self {
        self.g = self.g.msg(5, float_tensor(name, dims, values));
        self
    }
    pub fn axes(mut self, name: &str, axes: &[i64]) -> Self {
        self.g = self.g.msg(5, int64_tensor(name, axes));
        self
    }
    pub fn op(mut self, op: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        self.g = self.g.msg(1, node(op, inputs, outputs, &[]));
        self
    }
    pub fn reduce_sum(mut self, input: &str, axes: &str, output: &str, keepdims: i64) -> Self {
        self.g = self.g.msg(1, node("ReduceSum", &[input, axes], &[output], &[("keepdims", keepdims)]));
        self
    }
    /// An int64 input (token ids, attention masks).
    pub fn input_i64(mut self, name: &str, dims: &[D]) -> Self {
        self.g = self.g.msg(11, value_info(name, INT64, dims));
        self
    }
    /// `output = Cast(input)` to float.
    pub fn cast_to_float(mut self, input: &str, output: &str) -> Self {
        self.g = self.g.msg(1, node("Cast", &[input], &[output], &[("to", FLOAT)]));
        self
    }
    /// ModelProto bytes: ir_version 8, opset 17.
    pub fn into_bytes(self) -> Vec<u8> {
        let graph = self.g.str(2, "steer_test");
        Msg::default()
            .int(1, 8)
            .str(2, "steer-runtime tests")
            .msg(7, graph)
            .msg(8, Msg::default().str(1, "").int(2, 17))
            .0
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The test model. Its graphs compute simple, checkable functions:
//   encoder: z = (Σ_k mask[k] · context[k]) @ W                  with W[i, l] = W_SCALE · (i + 1) · (l + 1)
//   reward (np-btl): r[n] = options[n] · u + z · v
//   reward (btl, dpl): r[n] = options[n] · u;  dpl: std[n] = softplus(options[n] · s)

pub const W_SCALE: f32 = 0.1;

pub fn u(d: usize) -> Vec<f32> {
    (0..d).map(|i| 1.0 - 0.5 * i as f32).collect()
}
pub fn v(latent: usize) -> Vec<f32> {
    (0..latent).map(|l| 0.25 * (l as f32 + 1.0)).collect()
}
pub fn s(d: usize) -> Vec<f32> {
    (0..d).map(|i| 0.3 + 0.2 * i as f32).collect()
}
pub fn w(d: usize, latent: usize) -> Vec<f32> {
    (0..2 * d).flat_map(|i| (0..latent).map(move |l| W_SCALE * (i as f32 + 1.0) * (l as f32 + 1.0))).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The encoder's z for one user.
pub fn expected_z(chosen: &[Vec<f32>], rejected: &[Vec<f32>], d: usize, latent: usize) -> Vec<f32> {
    let mut summed = vec![0.0f32; 2 * d];
    for (c, r) in chosen.iter().zip(rejected) {
        for i in 0..d {
            summed[i] += c[i];
            summed[d + i] += r[i];
        }
    }
    let w = w(d, latent);
    (0..latent).map(|l| (0..2 * d).map(|i| summed[i] * w[i * latent + l]).sum()).collect()
}

/// The reward of one option (and its std for DPL).
pub fn expected_reward(kind: ModelKind, option: &[f32], z: &[f32]) -> (f32, Option<f32>) {
    let d = option.len();
    let base = dot(option, &u(d));
    match kind {
        ModelKind::NpBtl => (base + dot(z, &v(z.len())), None),
        ModelKind::Btl => (base, None),
        ModelKind::Dpl => (base, Some(dot(option, &s(d)).exp().ln_1p())),
    }
}

pub fn encoder_graph(d: usize, latent: usize) -> Graph {
    Graph::default()
        .input("context", &[D::Sym("batch"), D::Sym("k"), D::Fix(2 * d as i64)])
        .input("mask", &[D::Sym("batch"), D::Sym("k")])
        .output("z", &[D::Sym("batch"), D::Fix(latent as i64)])
        .axes("axis1", &[1])
        .axes("axis2", &[2])
        .weight("W", &[2 * d as i64, latent as i64], &w(d, latent))
        .op("Unsqueeze", &["mask", "axis2"], &["mask3"])
        .op("Mul", &["context", "mask3"], &["masked"])
        .reduce_sum("masked", "axis1", "summed", 0)
        .op("MatMul", &["summed", "W"], &["z"])
}

pub fn reward_graph(kind: ModelKind, d: usize, latent: usize) -> Graph {
    let mut g = Graph::default()
        .input("options", &[D::Sym("batch"), D::Sym("n"), D::Fix(d as i64)])
        .output("reward", &[D::Sym("batch"), D::Sym("n")])
        .axes("axis1", &[1])
        .axes("axis2", &[2])
        .weight("u", &[d as i64], &u(d))
        .op("Mul", &["options", "u"], &["ou"]);
    match kind {
        ModelKind::NpBtl => {
            g = g
                .input("z", &[D::Sym("batch"), D::Fix(latent as i64)])
                .weight("v", &[latent as i64], &v(latent))
                .reduce_sum("ou", "axis2", "ro", 0)
                .op("Mul", &["z", "v"], &["zv"])
                .reduce_sum("zv", "axis1", "rz", 1)
                .op("Add", &["ro", "rz"], &["reward"]);
        }
        ModelKind::Btl => g = g.reduce_sum("ou", "axis2", "reward", 0),
        ModelKind::Dpl => {
            g = g
                .output("reward_std", &[D::Sym("batch"), D::Sym("n")])
                .weight("s", &[d as i64], &s(d))
                .reduce_sum("ou", "axis2", "reward", 0)
                .op("Mul", &["options", "s"], &["os"])
                .reduce_sum("os", "axis2", "spre", 0)
                .op("Softplus", &["spre"], &["reward_std"]);
        }
    }
    g
}

// ---------------------------------------------------------------------------------------------------------------
// Bundles.

/// Writes `files` into `dir` and a manifest listing them with their hashes.
pub fn write_bundle(dir: &Path, kind: ModelKind, dims: Dims, files: &[(&str, Vec<u8>)]) -> Manifest {
    write_bundle_with_text(dir, kind, dims, files, None)
}

/// [`write_bundle`] with a text spec in the manifest.
pub fn write_bundle_with_text(
    dir: &Path,
    kind: ModelKind,
    dims: Dims,
    files: &[(&str, Vec<u8>)],
    text: Option<TextSpec>,
) -> Manifest {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let entries = files
        .iter()
        .map(|(name, _)| FileEntry { path: name.to_string(), sha256: sha256_file(&dir.join(name)).unwrap() })
        .collect();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_kind: kind,
        dims,
        opset: 17,
        graphs: Graphs {
            encoder: kind.is_conditioned().then(|| "encoder.onnx".to_string()),
            reward: "reward.onnx".to_string(),
        },
        files: entries,
        text,
        policy: None,
        producer: "steer-runtime tests".into(),
        training: serde_json::Value::Null,
        metrics: serde_json::Value::Null,
    };
    manifest.save(dir).unwrap();
    manifest
}

/// A bundle of `kind` whose graphs match `dims`.
pub fn test_bundle(dir: &Path, kind: ModelKind, dims: Dims) -> PathBuf {
    let (d, latent) = (dims.embedding_dim, dims.latent_dim);
    let mut files = vec![("reward.onnx", reward_graph(kind, d, latent).into_bytes())];
    if kind.is_conditioned() {
        files.push(("encoder.onnx", encoder_graph(d, latent).into_bytes()));
    }
    write_bundle(dir, kind, dims, &files);
    dir.to_path_buf()
}

// ---------------------------------------------------------------------------------------------------------------
// The text bundle: a word-level tokenizer over TEXT_VOCAB and an embedder that looks every token up in a fixed
// table and takes the masked mean over the sequence:
//   embedding = Σ_s mask[s] · TABLE[input_ids[s]] / Σ_s mask[s]          with TABLE[id][j] = table(id, j)
// Options are `[CLS] ‖ tail(prompt) ‖ head(response) ‖ [SEP]`, at most TEXT_MAX_TOKENS tokens.

/// The text fixture's vocabulary; a token's id is its index. `[PAD]` is 3, so padding that leaked into the mean
/// would show.
pub const TEXT_VOCAB: [&str; 16] =
    ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "the", "cat", "sat", "on", "a", "mat", "dog", "good", "bad", "yes", "no", "?"];
/// At most 8 tokens per option: 6 of text between `[CLS]` and `[SEP]`.
pub const TEXT_MAX_TOKENS: usize = 8;

/// The embedding table entry `TABLE[id][j]`: small distinct values, exact in f32.
pub fn table(id: usize, j: usize) -> f32 {
    ((id * (j + 2) + j) % 7) as f32 * 0.25 - 0.75
}

/// The embedder's output for one option's token ids (no padding): the mean of their table rows.
pub fn mean_embedding(ids: &[usize], d: usize) -> Vec<f32> {
    (0..d).map(|j| ids.iter().map(|&id| table(id, j)).sum::<f32>() / ids.len() as f32).collect()
}

/// The embedder graph for embedding size `d`.
pub fn embedder_graph(d: usize) -> Graph {
    let values: Vec<f32> = (0..TEXT_VOCAB.len()).flat_map(|id| (0..d).map(move |j| table(id, j))).collect();
    Graph::default()
        .input_i64("input_ids", &[D::Sym("batch"), D::Sym("seq")])
        .input_i64("attention_mask", &[D::Sym("batch"), D::Sym("seq")])
        .output("embedding", &[D::Sym("batch"), D::Fix(d as i64)])
        .weight("table", &[TEXT_VOCAB.len() as i64, d as i64], &values)
        .axes("axis1", &[1])
        .axes("axis2", &[2])
        .op("Gather", &["table", "input_ids"], &["tokens"])
        .cast_to_float("attention_mask", "maskf")
        .op("Unsqueeze", &["maskf", "axis2"], &["mask3"])
        .op("Mul", &["tokens", "mask3"], &["masked"])
        .reduce_sum("masked", "axis1", "summed", 0)
        .reduce_sum("maskf", "axis1", "count", 1)
        .op("Div", &["summed", "count"], &["embedding"])
}

/// A Hugging Face `tokenizer.json`: word-level over `vocab` (ids are indices), split on whitespace and punctuation,
/// with `[CLS]`, `[SEP]` and `[PAD]` as special tokens.
pub fn tokenizer_json(vocab: &[&str]) -> Vec<u8> {
    let ids: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(id, token)| (token.to_string(), id.into())).collect();
    let added: Vec<serde_json::Value> = ["[CLS]", "[SEP]", "[PAD]"]
        .iter()
        .map(|token| {
            serde_json::json!({
                "id": vocab.iter().position(|t| t == token).expect("special tokens are in the vocabulary"),
                "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true,
            })
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": ids, "unk_token": "[UNK]" },
    });
    serde_json::to_vec_pretty(&json).unwrap()
}

/// The text spec of the fixture.
pub fn text_spec() -> TextSpec {
    TextSpec {
        embedder: "embedder.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        embedder_id: "steer-tests-table".into(),
        pooling: "mean".into(),
        vocab_size: TEXT_VOCAB.len(),
        max_tokens: TEXT_MAX_TOKENS,
        begin_tokens: vec!["[CLS]".into()],
        end_tokens: vec!["[SEP]".into()],
        pad_token: "[PAD]".into(),
        response_prefix: String::new(),
    }
}

/// A text bundle of `kind`: the graphs of [`test_bundle`] plus the embedder and tokenizer, with `spec` in the
/// manifest.
pub fn text_bundle_with(dir: &Path, kind: ModelKind, dims: Dims, spec: TextSpec) -> PathBuf {
    let (d, latent) = (dims.embedding_dim, dims.latent_dim);
    let mut files = vec![
        ("reward.onnx", reward_graph(kind, d, latent).into_bytes()),
        ("embedder.onnx", embedder_graph(d).into_bytes()),
        ("tokenizer.json", tokenizer_json(&TEXT_VOCAB)),
    ];
    if kind.is_conditioned() {
        files.push(("encoder.onnx", encoder_graph(d, latent).into_bytes()));
    }
    write_bundle_with_text(dir, kind, dims, &files, Some(spec));
    dir.to_path_buf()
}

/// A text bundle of `kind` with [`text_spec`].
pub fn text_bundle(dir: &Path, kind: ModelKind, dims: Dims) -> PathBuf {
    text_bundle_with(dir, kind, dims, text_spec())
}

/// Replaces `file` in the bundle and records its new hash in the manifest, so only the content differs.
pub fn replace_file(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let path = dir.join(steer_runtime::manifest::MANIFEST_FILE);
    let mut manifest: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entry = manifest.files.iter_mut().find(|f| f.path == file).expect("the file is in the manifest");
    entry.sha256 = sha256_file(&dir.join(file)).unwrap();
    manifest.save(dir).unwrap();
}
