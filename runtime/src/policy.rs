//! [`Policy`]: the bundle's steerable language model (`policy.onnx`), its tokenizer and its [`PolicySpec`].
//!
//! # Prompts
//!
//! A prompt becomes the policy's input by the rule
//!
//! ```text
//! encode(template before {prompt}) ‖ encode_as_text(prompt) ‖ encode(template after {prompt})
//! ```
//!
//! The chat template ([`PolicySpec::chat_template`]) is split at its first `{prompt}`; its two parts are tokenized
//! with special tokens recognised (`<|im_start|>` becomes its one special id), the user's prompt with any
//! special-token text in it treated as plain text (a user cannot open a turn of their own). Neither adds the
//! tokenizer's own special tokens (a BOS belongs in the template). The three parts are tokenized separately and
//! their ids concatenated.
//!
//! A prompt is never truncated: when its ids (template included) plus `max_new_tokens` exceed
//! [`PolicySpec::max_positions`], generation fails with [`Error::PromptTooLong`].

use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::options::LoadOptions;
use crate::policy_spec::{PolicySpec, policy_io};
use crate::pool::SessionPool;
use crate::providers::ProviderPlan;

/// A loaded policy: the session pool of `policy.onnx`, its tokenizer and its spec.
#[derive(Debug)]
pub struct Policy {
    pool: SessionPool,
    spec: PolicySpec,
    latent_dim: usize,
    /// Recognises special-token text (for the template).
    template_tokenizer: Tokenizer,
    /// Treats special-token text as plain text (for the user's prompt).
    text_tokenizer: Tokenizer,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
}

impl Policy {
    /// The policy's entry in the manifest.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The size of the profiles the policy is conditioned on (the bundle's `latent_dim`).
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// The token ids the policy reads for `prompt`: the chat template applied by the rule of the
    /// [module docs](self). Not checked against the context window (generation does that).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let encoding = self
            .text_tokenizer
            .encode(prompt, false)
            .map_err(|e| Error::Tokenization { text: preview(prompt), message: e.to_string() })?;
        let ids = encoding.get_ids();
        let mut out = Vec::with_capacity(self.prefix.len() + ids.len() + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(ids);
        out.extend_from_slice(&self.suffix);
        Ok(out)
    }

    /// The text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.template_tokenizer.decode(ids, true).map_err(|e| Error::Tokenization {
            text: format!("<{} generated token ids>", ids.len()),
            message: e.to_string(),
        })
    }

    pub(crate) fn pool(&self) -> &SessionPool {
        &self.pool
    }
}

/// Loads the policy named by `spec` from `dir`: its tokenizer (checked against the spec) and a session pool of its
/// graph (whose inputs and outputs are checked against the spec and `latent_dim`).
pub(crate) fn load_policy(
    env: &Environment,
    dir: &Path,
    spec: &PolicySpec,
    latent_dim: usize,
    plan: &ProviderPlan,
    options: &LoadOptions,
) -> Result<Policy> {
    let bad = |field: &str, expected: String, found: String| Error::InvalidManifest {
        field: field.to_string(),
        expected,
        found,
    };
    if let Some(&id) = spec.eos_token_ids.iter().find(|&&id| id as usize >= spec.vocab_size) {
        return Err(bad("policy.eos_token_ids", format!("ids below vocab_size {}", spec.vocab_size), id.to_string()));
    }
    if spec.pad_token_id as usize >= spec.vocab_size {
        return Err(bad(
            "policy.pad_token_id",
            format!("an id below vocab_size {}", spec.vocab_size),
            spec.pad_token_id.to_string(),
        ));
    }
    let Some((before, after)) = spec.chat_template.split_once("{prompt}") else {
        return Err(bad("policy.chat_template", "a template containing {prompt}".into(), spec.chat_template.clone()));
    };

    let path = dir.join(&spec.tokenizer);
    let mut template_tokenizer =
        Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer { path: path.clone(), message: e.to_string() })?;
    let found = template_tokenizer.get_vocab_size(true);
    if found > spec.vocab_size {
        return Err(Error::TokenizerMismatch {
            expected: format!("at most {} tokens (policy.vocab_size, the width of the logits)", spec.vocab_size),
            found: format!("{found} tokens in {}", spec.tokenizer),
        });
    }
    template_tokenizer.with_padding(None);
    template_tokenizer
        .with_truncation(None)
        .map_err(|e| Error::TokenizerMismatch { expected: "a tokenizer".into(), found: e.to_string() })?;
    template_tokenizer.set_encode_special_tokens(false);
    let mut text_tokenizer = template_tokenizer.clone();
    text_tokenizer.set_encode_special_tokens(true);
    let encode_template = |part: &str| -> Result<Vec<u32>> {
        let encoding = template_tokenizer
            .encode(part, false)
            .map_err(|e| Error::Tokenization { text: preview(part), message: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    };
    let prefix = encode_template(before)?;
    let suffix = encode_template(after)?;

    let pool = crate::model::load_pool_with(env, dir, &spec.graph, plan, options, |session| {
        check_signature(&spec.graph, spec, latent_dim, session)
    })?;
    Ok(Policy { pool, spec: spec.clone(), latent_dim, template_tokenizer, text_tokenizer, prefix, suffix })
}

/// One axis of a policy tensor.
#[derive(Debug, Clone, Copy)]
enum Axis {
    /// Must be dynamic (batch, sequence lengths).
    Dynamic(&'static str),
    /// Of this size, from this spec field; a dynamic axis is accepted too (exporters differ).
    Size(usize, &'static str),
}

struct Expected {
    name: String,
    ty: TensorElementType,
    axes: Vec<Axis>,
}

impl Expected {
    fn describe(&self) -> String {
        let axes: Vec<String> = self
            .axes
            .iter()
            .map(|axis| match axis {
                Axis::Dynamic(name) => format!("{name} (dynamic)"),
                Axis::Size(size, from) => format!("{size} ({from})"),
            })
            .collect();
        format!("{} [{}]", self.ty, axes.join(", "))
    }

    fn matches(&self, found: &ValueType) -> bool {
        let ValueType::Tensor { ty, shape, .. } = found else {
            return false;
        };
        *ty == self.ty
            && shape.len() == self.axes.len()
            && shape.iter().zip(&self.axes).all(|(&size, axis)| match axis {
                Axis::Dynamic(_) => size < 0,
                Axis::Size(want, _) => size < 0 || i64::try_from(*want).is_ok_and(|want| want == size),
            })
    }
}

/// The inputs and outputs `policy.onnx` must declare (see [`crate::policy_spec`]).
fn expected_signature(spec: &PolicySpec, latent_dim: usize) -> (Vec<Expected>, Vec<Expected>) {
    let (batch, seq) = (Axis::Dynamic("batch"), Axis::Dynamic("seq"));
    let heads = Axis::Size(spec.num_kv_heads, "num_kv_heads");
    let head_dim = Axis::Size(spec.head_dim, "head_dim");
    let int64 = |name: &str, axes: Vec<Axis>| Expected { name: name.to_string(), ty: TensorElementType::Int64, axes };
    let float = |name: String, axes: Vec<Axis>| Expected { name, ty: TensorElementType::Float32, axes };
    let mut inputs = vec![
        int64(policy_io::INPUT_IDS, vec![batch, seq]),
        int64(policy_io::ATTENTION_MASK, vec![batch, Axis::Dynamic("total_seq")]),
        int64(policy_io::POSITION_IDS, vec![batch, seq]),
        float(policy_io::Z.to_string(), vec![batch, Axis::Size(latent_dim, "latent_dim")]),
    ];
    let mut outputs =
        vec![float(policy_io::LOGITS.to_string(), vec![batch, seq, Axis::Size(spec.vocab_size, "vocab_size")])];
    for layer in 0..spec.num_layers {
        let past = vec![batch, heads, Axis::Dynamic("past_seq"), head_dim];
        let present = vec![batch, heads, Axis::Dynamic("total_seq"), head_dim];
        inputs.push(float(policy_io::past_key(layer), past.clone()));
        inputs.push(float(policy_io::past_value(layer), past));
        outputs.push(float(policy_io::present_key(layer), present.clone()));
        outputs.push(float(policy_io::present_value(layer), present));
    }
    (inputs, outputs)
}

/// Checks the session's declared inputs and outputs against the spec: every expected tensor present with its
/// element type and rank, batch and sequence axes dynamic, sized axes of the spec's size (or dynamic), and no input
/// the runtime would not feed. Extra outputs are allowed (they are not read).
fn check_signature(graph: &str, spec: &PolicySpec, latent_dim: usize, session: &Session) -> Result<()> {
    let (inputs, outputs) = expected_signature(spec, latent_dim);
    let declared = |outlets: &[ort::value::Outlet]| -> Vec<(String, ValueType)> {
        outlets.iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect()
    };
    check_side(graph, "input", &inputs, &declared(session.inputs()), false)?;
    check_side(graph, "output", &outputs, &declared(session.outputs()), true)
}

fn check_side(
    graph: &str,
    side: &str,
    expected: &[Expected],
    found: &[(String, ValueType)],
    extra_allowed: bool,
) -> Result<()> {
    let mismatch = |tensor: &str, expected: String, found: String| Error::GraphSignature {
        graph: graph.to_string(),
        tensor: tensor.to_string(),
        expected,
        found,
    };
    for want in expected {
        match found.iter().find(|(name, _)| *name == want.name) {
            None => {
                let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
                return Err(mismatch(
                    &want.name,
                    format!("an {side} `{}`: {}", want.name, want.describe()),
                    format!("no such {side} (the graph's {side}s are [{}])", names.join(", ")),
                ));
            }
            Some((_, ty)) if !want.matches(ty) => return Err(mismatch(&want.name, want.describe(), describe(ty))),
            Some(_) => {}
        }
    }
    if !extra_allowed {
        if let Some((extra, ty)) = found.iter().find(|(name, _)| !expected.iter().any(|want| want.name == *name)) {
            let names: Vec<&str> = expected.iter().map(|want| want.name.as_str()).collect();
            return Err(mismatch(
                extra,
                format!("only the {side}s [{}]", names.join(", ")),
                format!("an extra {side} `{extra}`: {}", describe(ty)),
            ));
        }
    }
    Ok(())
}

fn describe(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let axes: Vec<String> =
                shape.iter().map(|&size| if size < 0 { "dynamic".to_string() } else { size.to_string() }).collect();
            format!("{ty} [{}]", axes.join(", "))
        }
        other => other.to_string(),
    }
}

/// The first characters of a text, for error messages.
fn preview(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
