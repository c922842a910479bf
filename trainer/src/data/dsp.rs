//! DSP, the Domain-Specific Preference data of Cheng et al., "Everyone Deserves A Reward: Learning Customized Human
//! Preferences" (arXiv 2309.03126; data licence CC BY-NC 4.0).
//!
//! The public file is one JSON array of `{"query": str, "responses": {"academy": str, "business": str,
//! "entertainment": str, "literature": str, "normal": str}}`, read here unchanged (`.gz` decompressed). Every
//! response key other than [`NEUTRAL`] is a user type, and a user of type `t` prefers `t`'s answer to each other answer
//! of the same query (the dataset's own rule: 4 pairs per query and type). Pairs between two types' answers are
//! contested: each of the two users prefers their own. An answer identical to another of the same query (a few short
//! factual answers) gives a pair with no preference in it, so such pairs are left out and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::{LoadOptions, PreferenceDataset, PreferencePair, describe, open};
use crate::error::{Error, Result};

/// The response key of the plain answer, written for no domain: it is an option, not a user type.
pub const NEUTRAL: &str = "normal";

/// One query and its answers, keyed by user type (and [`NEUTRAL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DspQuery {
    /// The instruction.
    pub query: String,
    /// The answer written for each user type, and the plain one under [`NEUTRAL`].
    pub responses: BTreeMap<String, String>,
}

/// A DSP file as read: its queries in file order and its user types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DspData {
    /// The queries, in file order.
    pub queries: Vec<DspQuery>,
    /// The response keys other than [`NEUTRAL`], sorted.
    pub user_types: Vec<String>,
}

impl DspData {
    /// The preference pairs by the dataset's rule: for each query and type, the type's answer is chosen over each
    /// other answer (in key order). A pair of two identical texts, or one repeating an earlier pair of the same type
    /// (two other keys with one answer), is left out. Returns the pairs and how many were left out.
    pub fn pairs(&self) -> (PreferenceDataset, usize) {
        let mut pairs = Vec::new();
        let mut identical = 0;
        for query in &self.queries {
            for user_type in &self.user_types {
                let Some(chosen) = query.responses.get(user_type) else { continue };
                let mut seen = BTreeSet::from([chosen]);
                for rejected in query.responses.iter().filter(|(key, _)| *key != user_type).map(|(_, text)| text) {
                    // A tie says nothing, and a text seen twice (two keys with one answer) would count twice.
                    if !seen.insert(rejected) {
                        identical += 1;
                        continue;
                    }
                    pairs.push(PreferencePair {
                        user_type: user_type.clone(),
                        prompt: query.query.clone(),
                        chosen: chosen.clone(),
                        rejected: rejected.clone(),
                    });
                }
            }
        }
        let mut dataset = PreferenceDataset::new(pairs);
        // Every disagreement is listed: two types both judge the pair of their two answers.
        dataset.conflicts_listed = true;
        (dataset, identical)
    }
}

/// Reads a DSP file (`.json` or `.json.gz`).
///
/// Errors: [`Error::MalformedLine`] for JSON that does not parse (with its line and column) or is not an array,
/// [`Error::EmptyData`] for an empty array, [`Error::InvalidElement`] for an element without `query` or `responses`,
/// a field of the wrong type, a query lacking an answer for one of the file's user types (or holding an extra one),
/// and [`Error::Io`].
pub fn load_queries(path: impl AsRef<Path>) -> Result<DspData> {
    let path = path.as_ref();
    let value: Value = serde_json::from_reader(open(path)?).map_err(|e| {
        if e.is_io() {
            Error::Io { path: path.to_path_buf(), source: e.into() }
        } else {
            Error::MalformedLine { path: path.to_path_buf(), line: e.line(), message: e.to_string() }
        }
    })?;
    let Value::Array(elements) = value else {
        return Err(Error::MalformedLine {
            path: path.to_path_buf(),
            line: 1,
            message: format!("expected a JSON array of {{\"query\", \"responses\"}} objects, got {}", describe(&value)),
        });
    };
    if elements.is_empty() {
        return Err(Error::EmptyData { path: path.to_path_buf(), skipped_malformed: 0 });
    }
    let mut queries = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let invalid = |field: &str, expected: &str, got: String| Error::InvalidElement {
            path: path.to_path_buf(),
            index,
            field: field.to_string(),
            expected: expected.to_string(),
            got,
        };
        let Value::Object(object) = element else {
            return Err(invalid("", "an object with `query` and `responses`", describe(element)));
        };
        let field = |name: &str| object.get(name).ok_or_else(|| invalid(name, "a field of that name", "none".into()));
        let query = field("query")?;
        let query = query.as_str().ok_or_else(|| invalid("query", "a string", describe(query)))?;
        let responses = field("responses")?;
        let Value::Object(responses) = responses else {
            return Err(invalid("responses", "an object of answers keyed by user type", describe(responses)));
        };
        queries.push(DspQuery { query: query.to_string(), responses: answers(responses, &invalid)? });
    }
    let user_types: Vec<String> = queries[0].responses.keys().filter(|k| *k != NEUTRAL).cloned().collect();
    if user_types.is_empty() {
        return Err(Error::InvalidElement {
            path: path.to_path_buf(),
            index: 0,
            field: "responses".into(),
            expected: format!("answers for at least one user type besides `{NEUTRAL}`"),
            got: format!("keys {:?}", queries[0].responses.keys().collect::<Vec<_>>()),
        });
    }
    // Every query must answer for the same types, or some users would be judged on fewer queries than others.
    let keys: Vec<&String> = queries[0].responses.keys().collect();
    for (index, query) in queries.iter().enumerate().skip(1) {
        let missing = keys.iter().find(|k| !query.responses.contains_key(**k));
        let extra = query.responses.keys().find(|k| !keys.contains(k));
        if let Some(key) = missing.copied().or(extra) {
            let expected = format!("answers for exactly the keys of element [0]: {}", join(&keys));
            let got = if missing.is_some() { "none".to_string() } else { "an answer element [0] does not have".into() };
            return Err(Error::InvalidElement {
                path: path.to_path_buf(),
                index,
                field: format!("responses.{key}"),
                expected,
                got,
            });
        }
    }
    Ok(DspData { queries, user_types })
}

/// The answers of one element, each a string.
fn answers(
    responses: &Map<String, Value>,
    invalid: &impl Fn(&str, &str, String) -> Error,
) -> Result<BTreeMap<String, String>> {
    responses
        .iter()
        .map(|(key, answer)| match answer {
            Value::String(text) => Ok((key.clone(), text.clone())),
            other => Err(invalid(&format!("responses.{key}"), "a string", describe(other))),
        })
        .collect()
}

fn join(keys: &[&String]) -> String {
    keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// Loads a DSP file as preference pairs ([`DspData::pairs`]); the count of pairs left out is
/// printed on stderr. With `options.allowed_user_types` set, a user type outside it is an [`Error::InvalidElement`].
/// `options.skip_malformed` does not apply: the file is one JSON document.
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<PreferenceDataset> {
    let path = path.as_ref();
    let data = load_queries(path)?;
    if let Some(allowed) = &options.allowed_user_types
        && let Some(unknown) = data.user_types.iter().find(|t| !allowed.contains(t))
    {
        return Err(Error::InvalidElement {
            path: path.to_path_buf(),
            index: 0,
            field: format!("responses.{unknown}"),
            expected: format!("answers for the user types {} (and `{NEUTRAL}`)", allowed.join(", ")),
            got: "an answer for another user type".into(),
        });
    }
    let (dataset, identical) = data.pairs();
    if identical > 0 {
        eprintln!("{}: left out {identical} pairs of identical or repeated answers", path.display());
    }
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::{pair, shared_data, write_fixture};
    use crate::tasks::{PairSource, Split};
    use crate::text_task::{EmbeddedPairs, TextTask};

    const TWO_QUERIES: &str = r#"[
        {"query": "q1", "responses": {"academy": "A1", "business": "B1", "normal": "N1"}},
        {"query": "q2", "responses": {"normal": "same", "business": "B2", "academy": "same"}}
    ]"#;

    fn load_text(text: &str) -> Result<PreferenceDataset> {
        let dir = tempfile::tempdir().unwrap();
        load(write_fixture(dir.path(), "dsp.json.gz", text), &LoadOptions::default())
    }

    fn error_of(text: &str) -> Error {
        match load_text(text) {
            Err(e) => e,
            Ok(ds) => panic!("expected an error, got {} pairs", ds.len()),
        }
    }

    #[test]
    fn each_type_prefers_its_answer_to_every_other_and_identical_answers_are_left_out() {
        let ds = load_text(TWO_QUERIES).unwrap();
        assert_eq!(
            ds.pairs,
            vec![
                pair("academy", "q1", "A1", "B1"),
                pair("academy", "q1", "A1", "N1"),
                pair("business", "q1", "B1", "A1"),
                pair("business", "q1", "B1", "N1"),
                // q2: academy's answer equals the plain one: that pair says nothing, and business sees the text once.
                pair("academy", "q2", "same", "B2"),
                pair("business", "q2", "B2", "same"),
            ]
        );
        assert_eq!(ds.user_types, vec!["academy", "business"]);
        assert!(ds.conflicts_listed);
        let dir = tempfile::tempdir().unwrap();
        let data = load_queries(write_fixture(dir.path(), "dsp.json", TWO_QUERIES)).unwrap();
        assert_eq!(data.pairs().1, 2, "q2: academy's tie, and business's second pair against the same text");
        assert_eq!(data.queries[1].responses["business"], "B2");
    }

    #[test]
    fn contested_pairs_are_exactly_those_between_two_domain_answers() {
        let ds = load_text(TWO_QUERIES).unwrap();
        let vectors = ndarray::Array2::<f32>::zeros((2 * ds.len(), 1));
        let split = || EmbeddedPairs { data: &ds, embeddings: vectors.view() };
        let task = TextTask::new("dsp", split(), split(), split(), 3).unwrap();
        let pool = task.pool(Split::Test).len();
        let contested: Vec<Option<bool>> = (0..pool).map(|i| task.types_disagree(Split::Test, i)).collect();
        // Pairs merge: (A1,B1), (A1,N1), (B1,N1), (same,B2), and (B2,same) is the same pair as (same,B2).
        assert_eq!(contested, [Some(true), Some(false), Some(false), Some(true)]);
        assert!(task.disagreement_known(Split::Test));
    }

    #[test]
    fn malformed_json_names_its_line_and_column() {
        match error_of("[\n  {\"query\": \"q\",\n  oops}\n]") {
            Error::MalformedLine { line, message, .. } => {
                assert_eq!(line, 3);
                assert!(message.contains("line 3 column 3"), "{message}");
            }
            other => panic!("expected MalformedLine, got {other:?}"),
        }
        let e = error_of(r#"{"query": "q"}"#);
        assert!(e.to_string().contains("expected a JSON array"), "{e}");
    }

    #[test]
    fn an_empty_array_is_empty_data() {
        assert!(matches!(error_of("[]"), Error::EmptyData { skipped_malformed: 0, .. }));
    }

    #[test]
    fn missing_fields_and_missing_answers_are_named_with_their_element() {
        let cases = [
            (r#"[{"query": "q"}]"#, "element [0]: `responses`: expected a field of that name, got none"),
            (r#"[{"responses": {"a": "x"}}]"#, "element [0]: `query`: expected a field of that name, got none"),
            (r#"[{"query": 3, "responses": {"a": "x"}}]"#, "element [0]: `query`: expected a string, got number 3"),
            (
                r#"[{"query": "q", "responses": {"a": "x", "normal": 1}}]"#,
                "element [0]: `responses.normal`: expected a string, got number 1",
            ),
            (
                r#"[{"query": "q", "responses": {"normal": "x"}}]"#,
                "element [0]: `responses`: expected answers for at least one user type besides `normal`",
            ),
            (
                r#"[{"query": "q", "responses": {"a": "x", "b": "y"}}, {"query": "r", "responses": {"a": "z"}}]"#,
                "element [1]: `responses.b`: expected answers for exactly the keys of element [0]: a, b, got none",
            ),
            (
                r#"[{"query": "q", "responses": {"a": "x"}}, {"query": "r", "responses": {"a": "z", "c": "w"}}]"#,
                "element [1]: `responses.c`: expected answers for exactly the keys of element [0]: a, got an answer",
            ),
            (
                r#"[{"query": "q", "responses": ["x"]}]"#,
                "`responses`: expected an object of answers keyed by user type",
            ),
            ("[7]", "element [0]: ``: expected an object with `query` and `responses`, got number 7"),
        ];
        for (text, expected) in cases {
            let e = error_of(text);
            assert!(matches!(e, Error::InvalidElement { .. }), "{text}: {e:?}");
            assert!(e.to_string().contains(expected), "{text}:\n  got {e}\n  expected {expected}");
        }
    }

    #[test]
    fn user_types_outside_the_allowed_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), "dsp.json", TWO_QUERIES);
        let e = load(&path, &LoadOptions::default().allowed_user_types(["academy"])).unwrap_err();
        assert!(e.to_string().contains("`responses.business`"), "{e}");
    }

    #[test]
    fn the_shared_files_have_four_types_and_four_pairs_per_query_and_type() {
        for (file, queries) in [("train.json.gz", 420), ("dev.json.gz", 80)] {
            let Some(path) = shared_data(&format!("dsp/{file}")) else { return };
            let data = load_queries(&path).unwrap();
            assert_eq!(data.queries.len(), queries);
            assert_eq!(data.user_types, ["academy", "business", "entertainment", "literature"]);
            let (pairs, identical) = data.pairs();
            assert_eq!(pairs.len() + identical, 4 * 4 * queries);
            assert!(identical < 4 * queries / 10, "{identical} identical pairs");
        }
    }
}
