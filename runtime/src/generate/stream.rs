//! One row's text while it is generated: when it ends (EOS, stop string, length), and how much of it may be
//! streamed (held back while it ends in U+FFFD or in the beginning of a stop string); see the
//! [module docs](super#streaming).

use crate::error::Result;
use crate::policy::Policy;
use crate::policy_spec::GenerationParams;
use crate::sampling::RowSampler;

use super::types::{FinishReason, Generation};

/// The byte index of the earliest stop string in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|stop| text.find(stop.as_str())).min()
}

/// How much of `text` may be streamed: all of it but a trailing run of U+FFFD and the longest tail that is a
/// proper beginning of a stop string.
fn releasable(text: &str, stops: &[String]) -> usize {
    let end = text.trim_end_matches('\u{FFFD}').len();
    let settled = &text[..end];
    let mut cut = end;
    for stop in stops {
        for (k, _) in stop.char_indices().skip(1) {
            if settled.ends_with(&stop[..k]) {
                cut = cut.min(end - k);
            }
        }
    }
    cut
}

/// The state of one row of the batch.
pub(super) struct Row {
    prompt_tokens: usize,
    ids: Vec<u32>,
    /// The decoding of `ids`.
    text: String,
    /// The text streamed so far.
    emitted: String,
    finish: Option<(FinishReason, usize)>,
    /// Picks the row's tokens (and remembers them for the repetition penalty).
    pub(super) sampler: RowSampler,
}

impl Row {
    /// Row `row` of a batch generated with `seed`, whose prompt is `prompt`.
    pub(super) fn new(prompt: &[u32], seed: u64, row: usize) -> Row {
        Row {
            prompt_tokens: prompt.len(),
            ids: Vec::new(),
            text: String::new(),
            emitted: String::new(),
            finish: None,
            sampler: RowSampler::new(seed, row, prompt),
        }
    }

    /// Whether the row has not ended yet.
    pub(super) fn running(&self) -> bool {
        self.finish.is_none()
    }

    /// Takes a sampled token; returns the text to stream.
    pub(super) fn push(&mut self, policy: &Policy, id: u32, params: &GenerationParams) -> Result<String> {
        if policy.spec().eos_token_ids.contains(&id) {
            self.finish = Some((FinishReason::Eos, self.text.len()));
            return Ok(self.release(self.text.len()));
        }
        self.ids.push(id);
        self.text = policy.decode(&self.ids)?;
        if let Some(at) = find_stop(&self.text, &params.stop) {
            self.finish = Some((FinishReason::Stop, at));
            return Ok(self.release(at));
        }
        if self.ids.len() >= params.max_new_tokens {
            self.finish = Some((FinishReason::Length, self.text.len()));
            return Ok(self.release(self.text.len()));
        }
        Ok(self.release(releasable(&self.text, &params.stop)))
    }

    /// Streams the text up to byte `end` that was not streamed yet. Nothing when the decoding changed what was
    /// already streamed (a decoder that is not prefix-stable).
    fn release(&mut self, end: usize) -> String {
        let start = self.emitted.len();
        if end <= start || !self.text.starts_with(self.emitted.as_str()) || !self.text.is_char_boundary(end) {
            return String::new();
        }
        let delta = self.text[start..end].to_string();
        self.emitted.push_str(&delta);
        delta
    }

    /// The row's result (a row that has not ended was cancelled).
    pub(super) fn into_generation(self) -> Generation {
        let (finish, end) = self.finish.unwrap_or((FinishReason::Cancelled, self.text.len()));
        let mut text = self.text;
        if text.is_char_boundary(end) {
            text.truncate(end);
        }
        Generation { text, token_ids: self.ids, prompt_tokens: self.prompt_tokens, finish }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_holds_back_replacement_characters_and_stop_prefixes() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(releasable("hello", &stops), 5);
        assert_eq!(releasable("hello E", &stops), 6);
        assert_eq!(releasable("hello EN", &stops), 6);
        assert_eq!(releasable("hello\n", &stops), 5);
        assert_eq!(releasable("caf\u{FFFD}", &stops), 3);
        assert_eq!(releasable("caf\u{FFFD}\u{FFFD}", &[]), 3);
        assert_eq!(find_stop("a END b\n\n", &stops), Some(2));
        assert_eq!(find_stop("a b", &stops), None);
    }
}
