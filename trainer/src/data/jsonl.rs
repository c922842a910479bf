//! Generic per-user JSONL: one choice per line, `{"user": ..., "prompt": ..., "chosen": ..., "rejected": ...}`.
//!
//! `user` is a string or an integer id (kept as its decimal text). Other fields are ignored.

use std::path::Path;

use serde_json::Value;

use super::{LoadOptions, PreferenceDataset, PreferencePair, Record, load_pairs};
use crate::error::Result;

/// Loads a per-user JSONL file (`.jsonl` or `.jsonl.gz`); each pair's user type is its `user`.
///
/// Errors: [`crate::Error::MalformedLine`] (unless `options.skip_malformed`), [`crate::Error::MissingField`],
/// [`crate::Error::InvalidField`] (a field of the wrong type), [`crate::Error::UnknownUserType`] (when
/// `options.allowed_user_types` is set), [`crate::Error::EmptyData`] and [`crate::Error::Io`].
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<PreferenceDataset> {
    load_pairs(path.as_ref(), options, parse)
}

fn parse(record: &Record<'_>, options: &LoadOptions) -> Result<PreferencePair> {
    let user = record.field("user")?;
    let user_type = match user {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => return Err(record.invalid("user", "a string or an integer id", other)),
    };
    options.check_user_type(record, &user_type)?;
    Ok(PreferencePair {
        user_type,
        prompt: record.string("prompt")?,
        chosen: record.string("chosen")?,
        rejected: record.string("rejected")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::data::tests::{pair, write_fixture};

    fn load_text(text: &str, options: &LoadOptions) -> Result<PreferenceDataset> {
        let dir = tempfile::tempdir().unwrap();
        load(write_fixture(dir.path(), "users.jsonl", text), options)
    }

    #[test]
    fn happy_path_gives_exact_pairs_for_string_and_integer_users() {
        let text = concat!(
            r#"{"user": "alice", "prompt": "p1", "chosen": "a", "rejected": "b", "extra": [1]}"#,
            "\n",
            r#"{"user": 42, "prompt": "p1", "chosen": "b", "rejected": "a"}"#,
            "\n",
            r#"{"user": "alice", "prompt": "p2", "chosen": "c", "rejected": "d"}"#,
        );
        for name in ["users.jsonl", "users.jsonl.gz"] {
            let dir = tempfile::tempdir().unwrap();
            let ds = load(write_fixture(dir.path(), name, text), &LoadOptions::default()).unwrap();
            assert_eq!(
                ds.pairs,
                vec![pair("alice", "p1", "a", "b"), pair("42", "p1", "b", "a"), pair("alice", "p2", "c", "d")]
            );
            assert_eq!(ds.user_types, vec!["42", "alice"]);
            assert_eq!(ds.by_user_type()["alice"].len(), 2);
        }
    }

    #[test]
    fn malformed_line_is_an_error_or_skipped_and_counted() {
        let text = "{\"user\": \"u\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"user\": \n";
        assert!(matches!(load_text(text, &LoadOptions::default()), Err(Error::MalformedLine { line: 2, .. })));
        let ds = load_text(text, &LoadOptions::default().skip_malformed(true)).unwrap();
        assert_eq!((ds.len(), ds.skipped_lines), (1, vec![2]));
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let text = r#"{"user": "u", "prompt": "p", "chosen": "a"}"#;
        match load_text(text, &LoadOptions::default()) {
            Err(Error::MissingField { line: 1, field, .. }) => assert_eq!(field, "rejected"),
            other => panic!("expected MissingField, got {other:?}"),
        }
        let text = r#"{"user": 1.5, "prompt": "p", "chosen": "a", "rejected": "b"}"#;
        match load_text(text, &LoadOptions::default()) {
            Err(Error::InvalidField { line: 1, field, got, .. }) => {
                assert_eq!((field.as_str(), got.as_str()), ("user", "number 1.5"))
            }
            other => panic!("expected InvalidField, got {other:?}"),
        }
        let text = r#"{"user": "u", "prompt": null, "chosen": "a", "rejected": "b"}"#;
        assert!(
            matches!(load_text(text, &LoadOptions::default()), Err(Error::InvalidField { field, .. }) if field == "prompt")
        );
    }

    #[test]
    fn unknown_user_and_empty_file_are_errors() {
        let text = r#"{"user": "carol", "prompt": "p", "chosen": "a", "rejected": "b"}"#;
        match load_text(text, &LoadOptions::default().allowed_user_types(["alice", "bob"])) {
            Err(Error::UnknownUserType { got, allowed, .. }) => {
                assert_eq!((got.as_str(), allowed), ("carol", vec!["alice".to_owned(), "bob".to_owned()]));
            }
            other => panic!("expected UnknownUserType, got {other:?}"),
        }
        assert!(matches!(load_text("", &LoadOptions::default()), Err(Error::EmptyData { skipped_malformed: 0, .. })));
    }
}
