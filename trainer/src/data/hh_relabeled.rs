//! HH-relabeled: HH-RLHF pairs each labelled by one of two hidden user types (`../shared/data/README.md`).
//!
//! One JSON object per line with `prompt`, `responses` (two replies), `label` (the index into `responses`
//! of the reply this pair's user preferred) and `objective` (the user type, `helpful` or `harmless`). When
//! the full dialogues `chosen` and `rejected` are present, they must end with the preferred and the other
//! reply, which catches a flipped label. Other fields are ignored.

use std::path::Path;

use serde_json::Value;

use super::{LoadOptions, PreferenceDataset, PreferencePair, Record, load_pairs};
use crate::error::{Error, Result};

/// The user types of the released files, sorted.
pub const USER_TYPES: [&str; 2] = ["harmless", "helpful"];

/// Loads an HH-relabeled file (`.jsonl` or `.jsonl.gz`): chosen = `responses[label]`, rejected =
/// `responses[1 - label]`, user type = `objective`.
///
/// Errors: [`Error::MalformedLine`] (unless `options.skip_malformed`), [`Error::MissingField`],
/// [`Error::InvalidField`] (a field of the wrong type, not exactly 2 responses, a dialogue that does not
/// end with its reply), [`Error::LabelOutOfRange`], [`Error::UnknownUserType`] (when
/// `options.allowed_user_types` is set), [`Error::EmptyData`] and [`Error::Io`].
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<PreferenceDataset> {
    load_pairs(path.as_ref(), options, parse)
}

fn parse(record: &Record<'_>, options: &LoadOptions) -> Result<PreferencePair> {
    let prompt = record.string("prompt")?;
    let user_type = record.string("objective")?;
    options.check_user_type(record, &user_type)?;
    let responses = record.field("responses")?;
    let (first, second) = match responses.as_array().map(Vec::as_slice) {
        Some([Value::String(a), Value::String(b)]) => (a.as_str(), b.as_str()),
        _ => return Err(record.invalid("responses", "an array of 2 strings", responses)),
    };
    let label = record.field("label")?;
    let index = label.as_i64().ok_or_else(|| record.invalid("label", "an integer, 0 or 1", label))?;
    let (chosen, rejected) = match index {
        0 => (first, second),
        1 => (second, first),
        _ => {
            return Err(Error::LabelOutOfRange {
                path: record.path.to_path_buf(),
                line: record.line,
                label: index,
                responses: 2,
            });
        }
    };
    for (field, reply) in [("chosen", chosen), ("rejected", rejected)] {
        match record.obj.get(field) {
            None => {}
            Some(Value::String(dialogue)) if dialogue.ends_with(reply) => {}
            Some(other) => {
                let expected =
                    format!("a dialogue ending with responses[{}]", if field == "chosen" { index } else { 1 - index });
                return Err(record.invalid(field, expected, other));
            }
        }
    }
    Ok(PreferencePair { user_type, prompt, chosen: chosen.to_owned(), rejected: rejected.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::{pair, shared_data, write_fixture};
    use std::collections::BTreeMap;

    const GOOD: &str = concat!(
        r#"{"prompt": "Human: hi", "responses": ["A", "B"], "label": 1, "objective": "helpful", "chosen": "Human: hi\n\nAssistant: B", "rejected": "Human: hi\n\nAssistant: A", "Index": 3}"#,
        "\n",
        r#"{"prompt": "Human: how?", "responses": ["C", "D"], "label": 0, "objective": "harmless"}"#,
        "\n"
    );

    fn load_text(text: &str, options: &LoadOptions) -> Result<PreferenceDataset> {
        let dir = tempfile::tempdir().unwrap();
        load(write_fixture(dir.path(), "hh.jsonl.gz", text), options)
    }

    #[test]
    fn happy_path_gives_exact_pairs() {
        let ds = load_text(GOOD, &LoadOptions::default().allowed_user_types(USER_TYPES)).unwrap();
        assert_eq!(ds.pairs, vec![pair("helpful", "Human: hi", "B", "A"), pair("harmless", "Human: how?", "C", "D")]);
        assert_eq!(ds.user_types, vec!["harmless", "helpful"]);
        assert!(ds.skipped_lines.is_empty());
    }

    #[test]
    fn malformed_line_names_file_and_line_or_is_skipped_and_counted() {
        let text = format!("{GOOD}{{\"prompt\": \"x\", oops\n");
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), "hh.jsonl", &text);
        match load(&path, &LoadOptions::default()) {
            Err(Error::MalformedLine { path: p, line, .. }) => assert_eq!((p, line), (path.clone(), 3)),
            other => panic!("expected MalformedLine, got {other:?}"),
        }
        let ds = load(&path, &LoadOptions::default().skip_malformed(true)).unwrap();
        assert_eq!((ds.len(), ds.skipped_lines.clone()), (2, vec![3]));
    }

    #[test]
    fn missing_field_is_named_with_its_line() {
        let text = format!("{GOOD}{}\n", r#"{"prompt": "p", "responses": ["A", "B"], "objective": "helpful"}"#);
        match load_text(&text, &LoadOptions::default().skip_malformed(true)) {
            Err(Error::MissingField { line, field, .. }) => assert_eq!((line, field.as_str()), (3, "label")),
            other => panic!("expected MissingField, got {other:?}"),
        }
    }

    #[test]
    fn unknown_user_type_lists_the_allowed_ones() {
        let text = r#"{"prompt": "p", "responses": ["A", "B"], "label": 0, "objective": "funny"}"#;
        match load_text(text, &LoadOptions::default().allowed_user_types(USER_TYPES)) {
            Err(Error::UnknownUserType { line, got, allowed, .. }) => {
                assert_eq!((line, got.as_str(), allowed), (1, "funny", vec!["harmless".into(), "helpful".into()]));
            }
            other => panic!("expected UnknownUserType, got {other:?}"),
        }
        // Without an allowed set, any user type is kept.
        assert_eq!(load_text(text, &LoadOptions::default()).unwrap().user_types, vec!["funny"]);
    }

    #[test]
    fn label_out_of_range_is_an_error() {
        for (label, expected) in [("2", 2), ("-1", -1)] {
            let text =
                format!(r#"{{"prompt": "p", "responses": ["A", "B"], "label": {label}, "objective": "helpful"}}"#);
            match load_text(&text, &LoadOptions::default()) {
                Err(Error::LabelOutOfRange { line: 1, label, responses: 2, .. }) => assert_eq!(label, expected),
                other => panic!("expected LabelOutOfRange, got {other:?}"),
            }
        }
        let text = r#"{"prompt": "p", "responses": ["A", "B"], "label": "1", "objective": "helpful"}"#;
        assert!(
            matches!(load_text(text, &LoadOptions::default()), Err(Error::InvalidField { field, .. }) if field == "label")
        );
    }

    #[test]
    fn responses_must_be_two_strings() {
        for responses in [r#"["A"]"#, r#"["A", "B", "C"]"#, r#"["A", 2]"#, r#""AB""#] {
            let text = format!(r#"{{"prompt": "p", "responses": {responses}, "label": 0, "objective": "helpful"}}"#);
            match load_text(&text, &LoadOptions::default()) {
                Err(Error::InvalidField { field, .. }) => assert_eq!(field, "responses"),
                other => panic!("expected InvalidField for {responses}, got {other:?}"),
            }
        }
    }

    #[test]
    fn dialogue_inconsistent_with_label_is_an_error() {
        let text = r#"{"prompt": "p", "responses": ["A", "B"], "label": 0, "objective": "helpful", "chosen": "p B"}"#;
        match load_text(text, &LoadOptions::default()) {
            Err(Error::InvalidField { field, got, .. }) => {
                assert_eq!((field.as_str(), got.as_str()), ("chosen", "string \"p B\""))
            }
            other => panic!("expected InvalidField, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_is_an_error() {
        for text in ["", "\n\n", "not json\n"] {
            match load_text(text, &LoadOptions::default().skip_malformed(true)) {
                Err(Error::EmptyData { skipped_malformed, .. }) => {
                    assert_eq!(skipped_malformed, usize::from(text.starts_with('n')))
                }
                other => panic!("expected EmptyData for {text:?}, got {other:?}"),
            }
        }
    }

    /// The released files hold the README's counts, with the user types of [`USER_TYPES`] only, and no
    /// prompt in both (the split is by conversation).
    #[test]
    fn shared_files_match_the_readme_counts() {
        let options = LoadOptions::default().allowed_user_types(USER_TYPES);
        let mut prompts = Vec::new();
        for (file, pairs, helpful, harmless, distinct_prompts) in
            [("dev.jsonl.gz", 360, 186, 174, 360), ("train.jsonl.gz", 2688, 1444, 1244, 2687)]
        {
            let Some(path) = shared_data(&format!("hh_relabeled/{file}")) else { continue };
            let ds = load(&path, &options).unwrap();
            assert_eq!(ds.len(), pairs, "{file}");
            assert_eq!(
                ds.counts_by_user_type(),
                BTreeMap::from([("harmless", harmless), ("helpful", helpful)]),
                "{file}"
            );
            assert_eq!(ds.distinct_prompts(), distinct_prompts, "{file}");
            assert!(ds.skipped_lines.is_empty());
            // Each file has one pair whose two replies are the same text; it is kept as it is.
            assert_eq!(ds.pairs.iter().filter(|p| p.chosen == p.rejected).count(), 1, "{file}");
            prompts.push(ds.pairs.into_iter().map(|p| p.prompt).collect::<std::collections::BTreeSet<_>>());
        }
        if let [dev, train] = prompts.as_slice() {
            assert_eq!(dev.intersection(train).count(), 0);
        }
    }
}
