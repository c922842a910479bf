//! The decoding loop: left-padded prompts, the key/value cache, one sampled token per running row and step; see the
//! [module docs](super#the-loop).

use std::borrow::Cow;
use std::ops::ControlFlow;

use ndarray::{Array2, Array4, Axis};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, ValueType};

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::policy_spec::{GenerationParams, policy_io};

use super::stream::Row;
use super::types::{Generation, GenerationRequest, TokenEvent};

/// Position ids from an attention mask: the running count of real tokens minus one, clamped at 0.
fn position_ids(mask: &Array2<i64>) -> Array2<i64> {
    let mut positions = Array2::zeros(mask.raw_dim());
    for (mask_row, mut position_row) in mask.outer_iter().zip(positions.outer_iter_mut()) {
        let mut count = 0i64;
        for (&m, p) in mask_row.iter().zip(position_row.iter_mut()) {
            count += m;
            *p = (count - 1).max(0);
        }
    }
    positions
}

/// Generates for checked requests (a policy, valid parameters, at least one request, profiles of the right length).
pub(crate) fn generate(
    policy: &Policy,
    requests: &[GenerationRequest<'_>],
    params: &GenerationParams,
    on_token: &mut dyn FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<Generation>> {
    let spec = policy.spec();
    let prompts = requests.iter().map(|r| policy.encode_prompt(r.prompt)).collect::<Result<Vec<_>>>()?;
    for prompt in &prompts {
        if prompt.len().saturating_add(params.max_new_tokens) > spec.max_positions {
            return Err(Error::PromptTooLong {
                prompt_tokens: prompt.len(),
                max_new_tokens: params.max_new_tokens,
                max_positions: spec.max_positions,
            });
        }
    }
    let batch = requests.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pad = i64::from(spec.pad_token_id);
    let mut input_ids = Array2::from_elem((batch, longest), pad);
    let mut mask = Array2::<i64>::zeros((batch, longest));
    for (i, prompt) in prompts.iter().enumerate() {
        let offset = longest - prompt.len();
        for (j, &id) in prompt.iter().enumerate() {
            input_ids[[i, offset + j]] = i64::from(id);
            mask[[i, offset + j]] = 1;
        }
    }
    let mut positions = position_ids(&mask);
    let latent = policy.latent_dim();
    let mut z = Array2::<f32>::zeros((batch, latent));
    for (mut row, request) in z.outer_iter_mut().zip(requests) {
        row.iter_mut().zip(request.profile.as_slice()).for_each(|(dst, &src)| *dst = src);
    }
    let mut rows: Vec<Row> = prompts.iter().enumerate().map(|(i, prompt)| Row::new(prompt, params.seed, i)).collect();

    let pool = policy.pool();
    let graph = pool.graph().to_string();
    let fail = |e: ort::Error| Error::Inference { graph: graph.clone(), message: e.to_string() };
    let z_tensor = Tensor::from_array(z).map_err(fail)?;
    let mut past_names = Vec::with_capacity(2 * spec.num_layers);
    let mut present_names = Vec::with_capacity(2 * spec.num_layers);
    for layer in 0..spec.num_layers {
        past_names.push(policy_io::past_key(layer));
        past_names.push(policy_io::past_value(layer));
        present_names.push(policy_io::present_key(layer));
        present_names.push(policy_io::present_value(layer));
    }
    let mut past: Vec<DynValue> = (0..2 * spec.num_layers)
        .map(|_| {
            Tensor::from_array(Array4::<f32>::zeros((batch, spec.num_kv_heads, 0, spec.head_dim)))
                .map(Tensor::into_dyn)
                .map_err(fail)
        })
        .collect::<Result<_>>()?;

    pool.with_session(|session| {
        let mut cancelled = false;
        while rows.iter().any(Row::running) {
            let seq = input_ids.ncols();
            let total = mask.ncols();
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
                (policy_io::INPUT_IDS.into(), Tensor::from_array(input_ids.clone()).map_err(fail)?.into()),
                (policy_io::ATTENTION_MASK.into(), Tensor::from_array(mask.clone()).map_err(fail)?.into()),
                (policy_io::POSITION_IDS.into(), Tensor::from_array(positions.clone()).map_err(fail)?.into()),
                (policy_io::Z.into(), (&z_tensor).into()),
            ];
            for (name, value) in past_names.iter().zip(past.drain(..)) {
                inputs.push((name.as_str().into(), value.into()));
            }
            let mut outputs = session.run(inputs).map_err(fail)?;

            // The last position's logits of each running row.
            let unexpected = |tensor: &str, expected: String, found: String| Error::UnexpectedOutput {
                graph: graph.clone(),
                tensor: tensor.to_string(),
                expected,
                found,
            };
            let expected_logits = format!("f32 [{batch}, {seq}, {}]", spec.vocab_size);
            let logits = outputs
                .get(policy_io::LOGITS)
                .ok_or_else(|| unexpected(policy_io::LOGITS, expected_logits.clone(), "no such output".into()))?
                .try_extract_array::<f32>()
                .map_err(|e| unexpected(policy_io::LOGITS, expected_logits.clone(), e.to_string()))?;
            if logits.shape() != [batch, seq, spec.vocab_size] {
                return Err(unexpected(policy_io::LOGITS, expected_logits, format!("f32 {:?}", logits.shape())));
            }
            let last: Vec<Option<Vec<f32>>> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    row.running()
                        .then(|| logits.index_axis(Axis(0), i).index_axis(Axis(0), seq - 1).iter().copied().collect())
                })
                .collect();
            if let Some((i, Some(values))) =
                last.iter().enumerate().find(|(_, l)| l.as_ref().is_some_and(|v| v.iter().any(|x| x.is_nan())))
            {
                let at = values.iter().position(|x| x.is_nan()).unwrap_or(0);
                return Err(unexpected(
                    policy_io::LOGITS,
                    "logits that are not NaN".into(),
                    format!("NaN at row {i}, token {at}"),
                ));
            }

            // The cache for the next step.
            let expected_present = [batch, spec.num_kv_heads, total, spec.head_dim];
            for name in &present_names {
                let value = outputs
                    .remove(name.as_str())
                    .ok_or_else(|| unexpected(name, format!("f32 {expected_present:?}"), "no such output".into()))?;
                let shape_ok = match value.dtype() {
                    ValueType::Tensor { ty, shape, .. } => {
                        *ty == ort::value::TensorElementType::Float32
                            && shape.len() == 4
                            && shape.iter().zip(expected_present).all(|(&a, b)| usize::try_from(a) == Ok(b))
                    }
                    _ => false,
                };
                if !shape_ok {
                    return Err(unexpected(name, format!("f32 {expected_present:?}"), value.dtype().to_string()));
                }
                past.push(value);
            }
            drop(outputs);

            // Sample, stream, and decide who ends.
            let mut next = Array2::from_elem((batch, 1), pad);
            for (i, logits) in last.into_iter().enumerate() {
                let Some(logits) = logits else { continue };
                let row = &mut rows[i];
                let id = row.sampler.sample(&logits, params);
                let delta = row.push(policy, id, params)?;
                if row.running() {
                    next[[i, 0]] = i64::from(id);
                }
                if on_token(TokenEvent { row: i, token_id: id, text: &delta }).is_break() {
                    cancelled = true;
                    break;
                }
            }
            if cancelled {
                break;
            }
            let step = Array2::<i64>::ones((batch, 1));
            mask = ndarray::concatenate(Axis(1), &[mask.view(), step.view()])
                .map_err(|e| unexpected(policy_io::ATTENTION_MASK, "a mask".into(), e.to_string()))?;
            let last_positions = positions.column(seq - 1).to_owned();
            positions = (last_positions + 1).insert_axis(Axis(1));
            input_ids = next;
        }
        Ok(())
    })?;
    Ok(rows.into_iter().map(Row::into_generation).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_real_tokens_and_padding_is_zero() {
        let mask = ndarray::array![[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]];
        assert_eq!(position_ids(&mask), ndarray::array![[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]);
    }
}
