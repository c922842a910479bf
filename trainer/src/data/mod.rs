//! Text preference data: one in-memory type, [`PreferenceDataset`], and a loader per file format.
//!
//! - [`hh_relabeled`]: the HH-RLHF derivative labelled by two hidden user types (`helpful`, `harmless`).
//! - [`ultrafeedback`]: UltraFeedback's public format, converted into the paper's HH / HHT splits, their
//!   conflict-rate variants, and Dirichlet-mixture users.
//! - [`dsp`]: the Domain-Specific Preference data (a JSON array of queries, each answered once per domain); a domain's
//!   user prefers their domain's answer to every other.
//! - [`jsonl`]: generic per-user JSONL, `{"user", "prompt", "chosen", "rejected"}`.
//!
//! Every JSONL loader reads one file and decompresses it transparently when its name ends in `.gz`. Bad
//! input is an [`Error`] naming the file, the 1-based line and the field; nothing is dropped silently.
//! The one exception is asked for: with [`LoadOptions::skip_malformed`], lines that are not a JSON
//! object are skipped, and their line numbers are kept in [`PreferenceDataset::skipped_lines`]. Blank
//! lines hold no data and are always passed over.
//!
//! ```no_run
//! use steer_trainer::data::{LoadOptions, hh_relabeled};
//!
//! let options = LoadOptions::default().allowed_user_types(hh_relabeled::USER_TYPES);
//! let dev = hh_relabeled::load("../shared/data/hh_relabeled/dev.jsonl.gz", &options)?;
//! for (user_type, pairs) in dev.by_user_type() {
//!     println!("{user_type}: {} pairs", pairs.len());
//! }
//! # Ok::<(), steer_trainer::Error>(())
//! ```

pub mod builtin;
pub mod dsp;
pub mod hh_relabeled;
pub mod jsonl;
pub mod ultrafeedback;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One pairwise choice: a user (or user type) preferred `chosen` over `rejected` as a reply to `prompt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Who made the choice: a user type (`helpful`, `honesty`, …) or a user id (`dirichlet-17`, a real
    /// user's id). Pairs with the same value come from the same user.
    pub user_type: String,
    /// The prompt or dialogue so far.
    pub prompt: String,
    /// The preferred reply.
    pub chosen: String,
    /// The other reply.
    pub rejected: String,
}

/// A set of text preference pairs and the users who made them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreferenceDataset {
    /// The pairs, in file order.
    pub pairs: Vec<PreferencePair>,
    /// Every distinct [`PreferencePair::user_type`], sorted.
    pub user_types: Vec<String>,
    /// For users with a known latent preference vector (Dirichlet-mixture users), that vector by user id.
    pub user_latents: BTreeMap<String, Vec<f64>>,
    /// 1-based numbers of the malformed lines skipped because [`LoadOptions::skip_malformed`] was set.
    pub skipped_lines: Vec<usize>,
    /// Whether the data lists every disagreement: each pair on which user types differ is judged by each of them.
    /// Then a pair that no two types judged differently is uncontested, and the contested pairs are known exactly
    /// (DSP: the pairs between two domain answers). Otherwise a pair judged by only some types may be contested.
    #[serde(default)]
    pub conflicts_listed: bool,
}

impl PreferenceDataset {
    /// A dataset of `pairs`, with its user types collected, sorted and deduplicated.
    pub fn new(pairs: Vec<PreferencePair>) -> PreferenceDataset {
        let user_types: BTreeSet<&str> = pairs.iter().map(|p| p.user_type.as_str()).collect();
        let user_types = user_types.into_iter().map(str::to_owned).collect();
        PreferenceDataset {
            pairs,
            user_types,
            user_latents: BTreeMap::new(),
            skipped_lines: Vec::new(),
            conflicts_listed: false,
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the dataset holds no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs of each user type, in file order, keyed by user type (sorted).
    pub fn by_user_type(&self) -> BTreeMap<&str, Vec<&PreferencePair>> {
        let mut groups: BTreeMap<&str, Vec<&PreferencePair>> = BTreeMap::new();
        for pair in &self.pairs {
            groups.entry(pair.user_type.as_str()).or_default().push(pair);
        }
        groups
    }

    /// The pairs of one user type, in file order.
    pub fn pairs_of<'a>(&'a self, user_type: &'a str) -> impl Iterator<Item = &'a PreferencePair> + 'a {
        self.pairs.iter().filter(move |p| p.user_type == user_type)
    }

    /// Number of pairs per user type.
    pub fn counts_by_user_type(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for pair in &self.pairs {
            *counts.entry(pair.user_type.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// Number of distinct prompts.
    pub fn distinct_prompts(&self) -> usize {
        self.pairs.iter().map(|p| p.prompt.as_str()).collect::<BTreeSet<_>>().len()
    }
}

/// Options shared by the loaders. Setters consume `self`; the default is strict and accepts any user type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Skip lines that are not a JSON object (bad JSON, bad UTF-8, another JSON value) instead of failing,
    /// and record their line numbers. Missing or invalid fields are errors either way.
    pub skip_malformed: bool,
    /// When set, a user type outside this list is an [`Error::UnknownUserType`].
    pub allowed_user_types: Option<Vec<String>>,
}

impl LoadOptions {
    /// Sets [`LoadOptions::skip_malformed`].
    #[must_use]
    pub fn skip_malformed(mut self, skip: bool) -> LoadOptions {
        self.skip_malformed = skip;
        self
    }

    /// Sets [`LoadOptions::allowed_user_types`].
    #[must_use]
    pub fn allowed_user_types<S: AsRef<str>>(mut self, types: impl IntoIterator<Item = S>) -> LoadOptions {
        self.allowed_user_types = Some(types.into_iter().map(|s| s.as_ref().to_owned()).collect());
        self
    }

    /// Checks `user_type` against [`LoadOptions::allowed_user_types`].
    pub(crate) fn check_user_type(&self, record: &Record<'_>, user_type: &str) -> Result<()> {
        match &self.allowed_user_types {
            Some(allowed) if !allowed.iter().any(|a| a == user_type) => Err(Error::UnknownUserType {
                path: record.path.to_path_buf(),
                line: record.line,
                got: user_type.to_owned(),
                allowed: allowed.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// Opens `path` for reading, through a gzip decoder when its extension is `gz`.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(Error::io(path))?;
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Reads a JSONL file one object at a time, with 1-based line numbers.
pub(crate) struct JsonLines<'a> {
    path: &'a Path,
    reader: Box<dyn BufRead>,
    buf: Vec<u8>,
    line: usize,
    records: usize,
    skip_malformed: bool,
    skipped: Vec<usize>,
}

impl<'a> JsonLines<'a> {
    /// Opens `path` (see [`open`]).
    pub(crate) fn open(path: &'a Path, skip_malformed: bool) -> Result<JsonLines<'a>> {
        Ok(JsonLines {
            path,
            reader: open(path)?,
            buf: Vec::new(),
            line: 0,
            records: 0,
            skip_malformed,
            skipped: Vec::new(),
        })
    }

    /// The next JSON object, `None` at the end of the file. Blank lines are passed over.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record<'a>>> {
        loop {
            self.buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.buf).map_err(Error::io(self.path))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let parsed = match std::str::from_utf8(&self.buf) {
                Err(e) => Err(format!("not UTF-8: {e}")),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(obj)) => Ok(obj),
                    Ok(other) => Err(format!("expected a JSON object, got {}", describe(&other))),
                    Err(e) => Err(e.to_string()),
                },
            };
            match parsed {
                Ok(obj) => {
                    self.records += 1;
                    return Ok(Some(Record { path: self.path, line: self.line, obj }));
                }
                Err(_) if self.skip_malformed => self.skipped.push(self.line),
                Err(message) => {
                    return Err(Error::MalformedLine { path: self.path.to_path_buf(), line: self.line, message });
                }
            }
        }
    }

    /// Ends reading: an [`Error::EmptyData`] when the file held no record, else the skipped line numbers.
    pub(crate) fn finish(self) -> Result<Vec<usize>> {
        if self.records == 0 {
            return Err(Error::EmptyData { path: self.path.to_path_buf(), skipped_malformed: self.skipped.len() });
        }
        Ok(self.skipped)
    }
}

/// One JSON object of a JSONL file, with where it came from, for error messages.
pub(crate) struct Record<'a> {
    /// The file.
    pub(crate) path: &'a Path,
    /// 1-based line number.
    pub(crate) line: usize,
    /// The object.
    pub(crate) obj: Map<String, Value>,
}

impl Record<'_> {
    /// An [`Error::MissingField`] for `field`.
    pub(crate) fn missing(&self, field: impl Into<String>) -> Error {
        Error::MissingField { path: self.path.to_path_buf(), line: self.line, field: field.into() }
    }

    /// An [`Error::InvalidField`] for `field`, which holds `got`.
    pub(crate) fn invalid(&self, field: impl Into<String>, expected: impl Into<String>, got: &Value) -> Error {
        Error::InvalidField {
            path: self.path.to_path_buf(),
            line: self.line,
            field: field.into(),
            expected: expected.into(),
            got: describe(got),
        }
    }

    /// The top-level field `name`, which must be present.
    pub(crate) fn field(&self, name: &str) -> Result<&Value> {
        self.obj.get(name).ok_or_else(|| self.missing(name))
    }

    /// The top-level string field `name`.
    pub(crate) fn string(&self, name: &str) -> Result<String> {
        let value = self.field(name)?;
        value.as_str().map(str::to_owned).ok_or_else(|| self.invalid(name, "a string", value))
    }
}

/// A short description of a JSON value for error messages: its type and, for scalars, its value
/// (strings cut at 40 characters).
/// Reads every record of a JSON-lines file with `parse`, one pair per line, honouring
/// `options.skip_malformed`. Shared by the one-pair-per-line formats.
pub(crate) fn load_pairs(
    path: &Path,
    options: &LoadOptions,
    parse: impl Fn(&Record<'_>, &LoadOptions) -> Result<PreferencePair>,
) -> Result<PreferenceDataset> {
    let mut lines = JsonLines::open(path, options.skip_malformed)?;
    let mut pairs = Vec::new();
    while let Some(record) = lines.next_record()? {
        pairs.push(parse(&record, options)?);
    }
    let skipped = lines.finish()?;
    let mut dataset = PreferenceDataset::new(pairs);
    dataset.skipped_lines = skipped;
    Ok(dataset)
}

pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => format!("string {:?}…", s.chars().take(40).collect::<String>()),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Writes `text` to `name` inside `dir`, gzip-compressed when `name` ends in `.gz`.
    /// A pair from its four fields, for expected values in tests.
    pub(crate) fn pair(user: &str, prompt: &str, chosen: &str, rejected: &str) -> PreferencePair {
        PreferencePair {
            user_type: user.into(),
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
        }
    }

    pub(crate) fn write_fixture(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            let mut file = file;
            file.write_all(text.as_bytes()).unwrap();
        }
        path
    }

    /// The shared data folder beside the repository (`../shared/data`), if present.
    pub(crate) fn shared_data(relative: &str) -> Option<std::path::PathBuf> {
        steer_testkit::shared_data(relative)
    }

    #[test]
    fn dataset_groups_and_counts_by_user_type() {
        let ds = PreferenceDataset::new(vec![
            pair("b", "p1", "x", "y"),
            pair("a", "p1", "y", "x"),
            pair("b", "p2", "u", "v"),
        ]);
        assert_eq!(ds.user_types, vec!["a", "b"]);
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.distinct_prompts(), 2);
        let groups = ds.by_user_type();
        assert_eq!(groups["b"].iter().map(|p| p.prompt.as_str()).collect::<Vec<_>>(), vec!["p1", "p2"]);
        assert_eq!(groups["a"].len(), 1);
        assert_eq!(ds.pairs_of("b").count(), 2);
        assert_eq!(ds.counts_by_user_type(), BTreeMap::from([("a", 1), ("b", 2)]));
    }

    #[test]
    fn gz_and_plain_files_read_the_same_and_blank_lines_are_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"a\": 1}\n\n  \n{\"a\": 2}";
        for name in ["x.jsonl", "x.jsonl.gz"] {
            let path = write_fixture(dir.path(), name, text);
            let mut lines = JsonLines::open(&path, false).unwrap();
            let first = lines.next_record().unwrap().unwrap();
            assert_eq!((first.line, first.obj["a"].as_i64()), (1, Some(1)));
            let second = lines.next_record().unwrap().unwrap();
            assert_eq!((second.line, second.obj["a"].as_i64()), (4, Some(2)));
            assert!(lines.next_record().unwrap().is_none());
            assert_eq!(lines.finish().unwrap(), Vec::<usize>::new());
        }
    }

    #[test]
    fn error_messages_name_file_line_field_and_allowed_types() {
        let path = std::path::PathBuf::from("d/x.jsonl");
        let e = Error::MalformedLine { path: path.clone(), line: 7, message: "EOF".into() };
        assert_eq!(e.to_string(), "d/x.jsonl:7: malformed line: EOF");
        let e = Error::UnknownUserType {
            path: path.clone(),
            line: 2,
            got: "funny".into(),
            allowed: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.to_string(), "d/x.jsonl:2: unknown user type \"funny\"; allowed: a, b");
        let e = Error::InvalidField {
            path,
            line: 3,
            field: "label".into(),
            expected: "0 or 1".into(),
            got: "number 2".into(),
        };
        assert_eq!(e.to_string(), "d/x.jsonl:3: invalid field `label`: expected 0 or 1, got number 2");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.jsonl");
        match JsonLines::open(&path, false) {
            Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected Error::Io, got {:?}", other.err()),
        }
    }

    #[test]
    fn corrupt_gzip_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), "bad.jsonl.gz", "");
        std::fs::write(&path, b"\x1f\x8b\x08\x00garbage").unwrap();
        let mut lines = JsonLines::open(&path, true).unwrap();
        assert!(matches!(lines.next_record(), Err(Error::Io { .. })));
    }

    #[test]
    fn non_utf8_and_non_object_lines_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, b"{\"a\": 1}\n\xff\xfe\n[1, 2]\n").unwrap();
        let mut lines = JsonLines::open(&path, false).unwrap();
        lines.next_record().unwrap();
        assert!(matches!(lines.next_record(), Err(Error::MalformedLine { line: 2, .. })));
        let mut lines = JsonLines::open(&path, true).unwrap();
        assert_eq!(lines.next_record().unwrap().map(|r| r.line), Some(1));
        assert!(lines.next_record().unwrap().is_none());
        assert_eq!(lines.finish().unwrap(), vec![2, 3]);
    }
}
