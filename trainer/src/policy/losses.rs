//! The decoder's log-probability losses: the response log-probability DPO compares, and the next-token loss.

use candle_core::{D, DType, Tensor};

use crate::error::{Error, Result};
use crate::text::llama::{LlamaModel, check_batch};

impl LlamaModel {
    /// Each row's log-probability of its response, `[B]`: the sum of `log p(x_t | x_<t)` over the positions `t`
    /// where `response_mask` is 1. Prompt positions (mask 0) are context only and add nothing, and neither do
    /// padding positions (`attention_mask` 0), whatever `response_mask` says there. This is the sequence
    /// log-probability DPO needs; summing over prompt or padding tokens instead was a real bug of the paper's first
    /// public code. Position 0 has no prediction, so its mask value is ignored. `input_ids` are right-padded u32.
    pub fn response_log_probs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        response_mask: &Tensor,
    ) -> Result<Tensor> {
        let (b, t) = check_batch(input_ids, attention_mask)?;
        if response_mask.dims() != [b, t] {
            return Err(Error::InvalidInput {
                input: "response_mask",
                expected: format!("the shape of input_ids, [{b}, {t}]"),
                got: format!("{:?}", response_mask.shape()),
            });
        }
        if t < 2 {
            return Ok(Tensor::zeros(b, DType::F32, self.device())?);
        }
        let logits = self.forward(input_ids, attention_mask)?.logits.narrow(1, 0, t - 1)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let targets = input_ids.narrow(1, 1, t - 1)?.contiguous()?.unsqueeze(2)?;
        let picked = log_probs.gather(&targets, 2)?.squeeze(2)?;
        let counted = (response_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?
            * attention_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?)?;
        Ok((picked * counted)?.sum(1)?)
    }

    /// Mean next-token cross-entropy (nats per token) of right-padded `input_ids` under the model, over the
    /// positions whose current and next tokens are both real.
    pub fn next_token_loss(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<f32> {
        let (b, t) = check_batch(input_ids, attention_mask)?;
        if t < 2 {
            return Err(Error::InvalidInput {
                input: "input_ids",
                expected: "at least 2 tokens per row".into(),
                got: format!("{t}"),
            });
        }
        let logits = self.forward(input_ids, attention_mask)?.logits.narrow(1, 0, t - 1)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let targets = input_ids.narrow(1, 1, t - 1)?.contiguous()?.unsqueeze(2)?;
        let picked = log_probs.gather(&targets, 2)?.squeeze(2)?;
        let valid = attention_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?;
        let count = valid.sum_all()?.to_scalar::<f32>()?;
        if count == 0.0 {
            return Err(Error::InvalidInput {
                input: "attention_mask",
                expected: "at least one row with 2 real tokens".into(),
                got: format!("{b} rows without"),
            });
        }
        let total = (picked * valid)?.sum_all()?.to_scalar::<f32>()?;
        Ok(-total / count)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::text::llama::LlamaConfig;

    fn tiny() -> LlamaModel {
        LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 5, &Device::Cpu).unwrap()
    }

    fn tensor(rows: &[&[u32]]) -> Tensor {
        Tensor::new(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), &Device::Cpu).unwrap()
    }

    #[test]
    fn response_log_probs_count_only_response_tokens_issue_5() {
        let model = tiny();
        // Row 0: prompt [3, 9, 4], response [17, 22], then 2 padding slots; row 1: prompt [5], response [8, 30, 2].
        let ids = tensor(&[&[3, 9, 4, 17, 22, 0, 0], &[5, 8, 30, 2, 0, 0, 0]]);
        let mask = tensor(&[&[1, 1, 1, 1, 1, 0, 0], &[1, 1, 1, 1, 0, 0, 0]]);
        // The response mask also (wrongly) marks padding: it must not count.
        let response = tensor(&[&[0, 0, 0, 1, 1, 1, 1], &[0, 1, 1, 1, 1, 1, 1]]);
        let got = model.response_log_probs(&ids, &mask, &response).unwrap().to_vec1::<f32>().unwrap();

        // By hand: the log-softmax of the logits at t − 1, at token x_t, summed over the response positions only.
        let logits = model.forward(&ids, &mask).unwrap().logits;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec3::<f32>().unwrap();
        let ids_v = ids.to_vec2::<u32>().unwrap();
        let by_hand = |row: usize, positions: &[usize]| -> f32 {
            positions.iter().map(|&t| log_probs[row][t - 1][ids_v[row][t] as usize]).sum()
        };
        let expected = [by_hand(0, &[3, 4]), by_hand(1, &[1, 2, 3])];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
        // Counting the prompt too (the reference code's bug) gives a different, lower number.
        let with_prompt = by_hand(0, &[1, 2, 3, 4]);
        assert!(with_prompt < got[0] - 1e-3, "{with_prompt} vs {}", got[0]);

        // Padding ids change nothing.
        let repadded = tensor(&[&[3, 9, 4, 17, 22, 63, 41], &[5, 8, 30, 2, 7, 7, 7]]);
        let again = model.response_log_probs(&repadded, &mask, &response).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, again);

        // A bad mask shape is an error, not a panic.
        let err = model.response_log_probs(&ids, &mask, &tensor(&[&[1, 1]])).unwrap_err();
        assert_eq!(err.code(), 1022);
    }
}
