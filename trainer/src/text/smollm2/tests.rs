use std::sync::OnceLock;

use super::*;
use crate::text::cache::smollm2_gguf_path;
use crate::text::testing::models_or_skip;

/// The vocabulary and tokenizer, read once per test process (about 0.3 s), or `None` after a skip message.
fn smollm2(test: &str) -> Option<&'static (GgufVocab, Tokenizer)> {
    static LOADED: OnceLock<(GgufVocab, Tokenizer)> = OnceLock::new();
    if !models_or_skip(test) {
        return None;
    }
    Some(LOADED.get_or_init(|| {
        let vocab = GgufVocab::read(smollm2_gguf_path()).unwrap();
        let tokenizer = vocab.to_tokenizer().unwrap();
        (vocab, tokenizer)
    }))
}

fn ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    tokenizer.encode(text, false).unwrap().get_ids().to_vec()
}

const ROUND_TRIP_TEXTS: &[&str] = &[
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n\n\n  indented\n",
    "Numbers: 3.14159, 1,000,000 and 2026-11-28.",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 中文, 한국어, עברית, العربية",
    "Emoji 🤖🚀👩‍💻 and symbols ∑∫√∞ ≠ ≤ → ©®™ €£¥",
    "fn main() {\n    let x: Vec<u8> = vec![0xFF; 4];\n    println!(\"{x:?}\");\n}\n",
    "def f(a, b=2):\n\treturn a ** b  # comment\n",
    "<div class=\"a\">&amp; it's \"quoted\" — don't, we'll, I'm, you've, they're, he'd</div>",
    "",
    " ",
    "\u{0}\u{7}\u{1b}[0m control bytes and a zero-width\u{200b}joiner",
];

#[test]
fn smollm2_round_trips_text_exactly() {
    let Some((_, tokenizer)) = smollm2("smollm2_round_trips_text_exactly") else { return };
    for text in ROUND_TRIP_TEXTS {
        let ids = ids(tokenizer, text);
        let decoded = tokenizer.decode(&ids, false).unwrap();
        assert_eq!(&decoded, text, "ids {ids:?}");
    }
}

#[test]
fn smollm2_known_ids_are_stable() {
    let Some((_, tokenizer)) = smollm2("smollm2_known_ids_are_stable") else { return };
    for (text, expected) in KNOWN_IDS {
        let got = ids(tokenizer, text);
        assert_eq!(&got, expected, "{text:?} -> {:?}", tokenizer.encode(*text, false).unwrap().get_tokens());
    }
}

/// Ids measured with this tokenizer; they pin the vocabulary, the merge order and the pre-tokenizer together.
const KNOWN_IDS: &[(&str, &[u32])] = &[
    ("Hello world", &[19556, 905]),
    ("The quick brown fox jumps over the lazy dog.", &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]),
    ("12345", &[33, 34, 35, 36, 37]),
    ("<|im_start|>user\nHi!<|im_end|>\n", &[1, 4093, 198, 26843, 17, 2, 198]),
    ("naïve café 日本", &[3546, 46494, 37366, 17097, 241, 115, 40993]),
];

#[test]
fn smollm2_english_takes_about_1_3_tokens_per_word() {
    let Some((_, tokenizer)) = smollm2("smollm2_english_takes_about_1_3_tokens_per_word") else { return };
    let paragraph = "The village sits at the edge of a wide river, and most of the people who live there have \
        worked on the water for as long as anyone can remember. In the spring, when the snow melts in the hills, \
        the river rises quickly and the small boats are pulled up onto the bank. Children walk to school along a \
        narrow road that follows the shore, and in the evenings their parents gather in the square to talk about \
        the weather, the price of fish and the news from the city. Visitors are rare, but those who come often \
        stay longer than they planned, because the days are quiet and the food is simple and good.";
    let words = paragraph.split_whitespace().count();
    let tokens = ids(tokenizer, paragraph).len();
    let ratio = tokens as f64 / words as f64;
    println!("{tokens} tokens for {words} words: {ratio:.3} tokens/word");
    assert!((1.0..=1.5).contains(&ratio), "{tokens} tokens for {words} words ({ratio:.3}/word)");
}

#[test]
fn smollm2_special_tokens_and_chat_template() {
    let Some((vocab, tokenizer)) = smollm2("smollm2_special_tokens_and_chat_template") else { return };
    assert_eq!(vocab.model, "gpt2");
    assert_eq!(vocab.pre, "smollm");
    assert_eq!(vocab.tokens.len(), 49152);
    assert_eq!(vocab.merges.len(), 48900);
    assert_eq!(vocab.add_bos_token, Some(false));
    assert_eq!(vocab.special, SpecialTokens { bos: Some(1), eos: Some(2), unk: Some(0), pad: Some(2) });
    assert_eq!(tokenizer.get_vocab_size(true), 49152);
    assert_eq!(tokenizer.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(2));
    let specials: Vec<&str> = vocab.added_tokens().iter().filter(|(_, s)| *s).map(|(t, _)| *t).collect();
    assert_eq!(specials.len(), 17, "{specials:?}");

    let template = vocab.chat_template().unwrap();
    assert!(template.contains("<|im_start|>") && template.contains("<|im_end|>"), "{template}");
    assert!(template.contains("add_generation_prompt"), "{template}");

    // The chat markers are single special tokens, dropped by `skip_special_tokens`.
    let chat = "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n";
    let encoded = ids(tokenizer, chat);
    assert_eq!(encoded.iter().filter(|&&id| id == 1).count(), 2, "{encoded:?}");
    assert_eq!(encoded.iter().filter(|&&id| id == 2).count(), 1, "{encoded:?}");
    assert_eq!(tokenizer.decode(&encoded, true).unwrap(), "user\nHi!\nassistant\n");
    // No BOS/EOS is added by encoding (tokenizer.ggml.add_bos_token is false).
    assert_eq!(ids(tokenizer, "Hi"), tokenizer.encode("Hi", true).unwrap().get_ids());
}

#[test]
fn smollm2_splits_digits_one_by_one_and_drops_only_bytes_missing_from_its_vocabulary() {
    let test = "smollm2_splits_digits_one_by_one_and_drops_only_bytes_missing_from_its_vocabulary";
    let Some((_, tokenizer)) = smollm2(test) else { return };
    let tokens = tokenizer.encode("year 2026", false).unwrap().get_tokens().to_vec();
    assert_eq!(tokens, ["year", "Ġ", "2", "0", "2", "6"]);
    // SmolLM2's vocabulary has no token for 21 of the 256 bytes: the controls 0x04 0x06 0x13 0x14 0x16 0x1D, and
    // 0xC0 0xC1 0xF1 0xF2 0xF5..=0xFF, which UTF-8 text only needs for code points U+40000..U+BFFFF (unassigned).
    // Like llama.cpp and the Hub's tokenizer.json (no unk token), encoding drops those six control characters;
    // every other character up to U+07FF round-trips.
    let all: String = (1u32..0x800).filter_map(char::from_u32).collect();
    let encoded = ids(tokenizer, &all);
    assert!(!encoded.contains(&0), "no unknown token is produced");
    let decoded = tokenizer.decode(&encoded, false).unwrap();
    let dropped: Vec<char> = all.chars().filter(|c| !decoded.contains(*c)).collect();
    assert_eq!(dropped, ['\u{4}', '\u{6}', '\u{13}', '\u{14}', '\u{16}', '\u{1d}']);
    let kept: String = all.chars().filter(|c| !dropped.contains(c)).collect();
    assert_eq!(decoded, kept);
}

#[test]
fn smollm2_tokenizer_json_reloads_with_the_same_ids() {
    let Some((_, tokenizer)) = smollm2("smollm2_tokenizer_json_reloads_with_the_same_ids") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    save_tokenizer_json(tokenizer, &path).unwrap();
    let reloaded = Tokenizer::from_file(&path).unwrap();
    for text in ROUND_TRIP_TEXTS {
        assert_eq!(ids(&reloaded, text), ids(tokenizer, text), "{text:?}");
    }
}

#[test]
fn unknown_pre_tokenizer_is_an_error() {
    let err = pre_tokenizer_for("llama3").unwrap_err();
    assert!(err.to_string().contains("llama3"), "{err}");
    assert!(pre_tokenizer_for("smollm").is_ok());
}

#[test]
fn missing_gguf_file_is_an_io_error() {
    let err = smollm2_tokenizer_from_gguf("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}
