//! HH-relabeled: HH-RLHF pairs each labelled by one of two hidden user types (`../shared/data/README.md`).
//!
//! One JSON object per line with `prompt`, `responses` (two replies), `label` (the index into `responses`
//! of the reply this pair's user preferred) and `objective` (the user type, `helpful` or `harmless`). When
//! the full dialogues `chosen` and `rejected` are present, they must end with the preferred and the other
//! reply, which catches a flipped label. Other fields are ignored by [`load`].
//!
//! The labels are GPT-3.5 relabels of HH-RLHF. [`label_agreement`] measures how often they agree with the original
//! human label (`original_label`), per HH-RLHF subset (`data_subset`) and per user type.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonLines, LoadOptions, PreferenceDataset, PreferencePair, Record, load_pairs};
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
    read(record, options).map(|(_, pair)| pair)
}

/// The pair of `record` and its `label` (0 or 1).
fn read(record: &Record<'_>, options: &LoadOptions) -> Result<(i64, PreferencePair)> {
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
    Ok((index, PreferencePair { user_type, prompt, chosen: chosen.to_owned(), rejected: rejected.to_owned() }))
}

/// How many of a group of pairs have a `label` equal to their `original_label`, with the share in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Pairs whose `label` equals `original_label`.
    pub agree: usize,
    /// Pairs in the group (at least 1).
    pub pairs: usize,
    /// `agree / pairs`, in percent.
    pub percent: f64,
    /// The binomial standard error of `percent`, in points: `sqrt(p (1 - p) / pairs)`.
    pub stderr: f64,
    /// The 95 % Wilson score interval of `percent`, in percent; unlike `percent ± 1.96 stderr`, it stays inside
    /// [0, 100] and is not empty for small groups.
    pub interval95: [f64; 2],
    /// Chance agreement, in percent: what `percent` would be if `label` were drawn independently of
    /// `original_label`, each with its own frequency of 0 and 1 in the group.
    pub chance: f64,
}

/// The counts behind an [`Agreement`].
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    agree: usize,
    pairs: usize,
    label_zero: usize,
    original_zero: usize,
}

impl Tally {
    fn add(&mut self, label: i64, original: i64) {
        self.agree += usize::from(label == original);
        self.pairs += 1;
        self.label_zero += usize::from(label == 0);
        self.original_zero += usize::from(original == 0);
    }
}

impl Agreement {
    /// The figures of a tally of at least one pair.
    fn new(tally: Tally) -> Agreement {
        const Z: f64 = 1.959_963_984_540_054;
        let Tally { agree, pairs, label_zero, original_zero } = tally;
        let n = pairs.max(1) as f64;
        let p = agree as f64 / n;
        let (label_zero, original_zero) = (label_zero as f64 / n, original_zero as f64 / n);
        let variance = p * (1.0 - p) / n;
        let scale = 1.0 + Z * Z / n;
        let centre = (p + Z * Z / (2.0 * n)) / scale;
        let half = Z / scale * (variance + Z * Z / (4.0 * n * n)).sqrt();
        Agreement {
            agree,
            pairs,
            percent: 100.0 * p,
            stderr: 100.0 * variance.sqrt(),
            interval95: [100.0 * (centre - half).max(0.0), 100.0 * (centre + half).min(1.0)],
            chance: 100.0 * (label_zero * original_zero + (1.0 - label_zero) * (1.0 - original_zero)),
        }
    }
}

/// How often an HH-relabeled file's `label` agrees with HH-RLHF's human `original_label`: overall, per
/// `data_subset`, per `objective` (the user type) and per subset and objective. Groups are keyed by their names,
/// sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelAgreement {
    /// Every pair of the file.
    pub overall: Agreement,
    /// Per HH-RLHF subset (`helpful`, `harmless`).
    pub by_subset: BTreeMap<String, Agreement>,
    /// Per user type (`objective`).
    pub by_objective: BTreeMap<String, Agreement>,
    /// Per subset, then per user type.
    pub by_subset_and_objective: BTreeMap<String, BTreeMap<String, Agreement>>,
    /// 1-based numbers of the malformed lines skipped because [`LoadOptions::skip_malformed`] was set.
    pub skipped_lines: Vec<usize>,
}

/// Reads an HH-relabeled file as [`load`] does and measures how often its `label` agrees with `original_label`
/// (see [`LabelAgreement`]). Both `original_label` (0 or 1) and `data_subset` (a string) are required here.
///
/// Errors: those of [`load`]; [`Error::MissingField`] for a missing `original_label` or `data_subset`, and
/// [`Error::InvalidField`] for one of the wrong type or an `original_label` other than 0 or 1.
pub fn label_agreement(path: impl AsRef<Path>, options: &LoadOptions) -> Result<LabelAgreement> {
    let mut lines = JsonLines::open(path.as_ref(), options.skip_malformed)?;
    let mut overall = Tally::default();
    let mut by_subset: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_objective: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_both: BTreeMap<String, BTreeMap<String, Tally>> = BTreeMap::new();
    while let Some(record) = lines.next_record()? {
        let (label, pair) = read(&record, options)?;
        let original = record.field("original_label")?;
        let original = match original.as_i64() {
            Some(index @ (0 | 1)) => index,
            _ => return Err(record.invalid("original_label", "an integer, 0 or 1", original)),
        };
        let subset = record.string("data_subset")?;
        let groups = [
            &mut overall,
            by_subset.entry(subset.clone()).or_default(),
            by_objective.entry(pair.user_type.clone()).or_default(),
            by_both.entry(subset).or_default().entry(pair.user_type).or_default(),
        ];
        for tally in groups {
            tally.add(label, original);
        }
    }
    let skipped_lines = lines.finish()?;
    let figures = |groups: BTreeMap<String, Tally>| {
        groups.into_iter().map(|(name, tally)| (name, Agreement::new(tally))).collect()
    };
    Ok(LabelAgreement {
        overall: Agreement::new(overall),
        by_subset: figures(by_subset),
        by_objective: figures(by_objective),
        by_subset_and_objective: by_both.into_iter().map(|(subset, groups)| (subset, figures(groups))).collect(),
        skipped_lines,
    })
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

    /// Each group's (agree, pairs), for comparing with expected counts.
    fn counts(groups: &BTreeMap<String, Agreement>) -> BTreeMap<&str, (usize, usize)> {
        groups.iter().map(|(name, a)| (name.as_str(), (a.agree, a.pairs))).collect()
    }

    /// A line with the fields `label_agreement` reads.
    fn agreement_line(subset: &str, objective: &str, label: u8, original: u8) -> String {
        format!(
            r#"{{"prompt": "p", "responses": ["A", "B"], "label": {label}, "objective": "{objective}", "original_label": {original}, "data_subset": "{subset}"}}"#
        )
    }

    #[test]
    fn label_agreement_counts_every_group_exactly() {
        let lines = [
            agreement_line("helpful", "helpful", 0, 0),
            agreement_line("helpful", "harmless", 1, 0),
            String::new(),
            agreement_line("harmless", "helpful", 1, 1),
            agreement_line("harmless", "harmless", 0, 0),
            agreement_line("harmless", "harmless", 1, 0),
            "not json".into(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), "hh.jsonl.gz", &lines.join("\n"));
        let agreement = label_agreement(&path, &LoadOptions::default().skip_malformed(true)).unwrap();
        assert_eq!((agreement.overall.agree, agreement.overall.pairs), (3, 5));
        assert_eq!(agreement.overall.percent, 60.0);
        // Labels 0, 1, 1, 0, 1 against originals 0, 0, 1, 0, 0: chance is 0.4 × 0.8 + 0.6 × 0.2.
        assert!((agreement.overall.chance - 44.0).abs() < 1e-9, "{}", agreement.overall.chance);
        assert_eq!(counts(&agreement.by_subset), BTreeMap::from([("harmless", (2, 3)), ("helpful", (1, 2))]));
        assert_eq!(counts(&agreement.by_objective), BTreeMap::from([("harmless", (1, 3)), ("helpful", (2, 2))]));
        let both = &agreement.by_subset_and_objective;
        assert_eq!(counts(&both["harmless"]), BTreeMap::from([("harmless", (1, 2)), ("helpful", (1, 1))]));
        assert_eq!(counts(&both["helpful"]), BTreeMap::from([("harmless", (0, 1)), ("helpful", (1, 1))]));
        assert_eq!(agreement.skipped_lines, vec![7]);
        // Without skip_malformed the bad line is an error, as for the loader.
        assert!(matches!(label_agreement(&path, &LoadOptions::default()), Err(Error::MalformedLine { line: 7, .. })));
    }

    #[test]
    fn agreement_has_its_binomial_stderr_and_wilson_interval() {
        let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        let tally = |agree, pairs| Tally { agree, pairs, label_zero: pairs, original_zero: pairs / 2 };
        let a = Agreement::new(tally(1578, 2688));
        close(a.chance, 50.0);
        close(a.percent, 58.705_357_142_857_14);
        close(a.stderr, 0.949_666_443_050_553_3);
        close(a.interval95[0], 56.832_909_024_082_8);
        close(a.interval95[1], 60.552_958_871_905_1);
        // At the edges the interval stays inside [0, 100] and is not empty.
        let (none, all) = (Agreement::new(tally(0, 1)), Agreement::new(tally(1, 1)));
        assert_eq!((none.percent, none.stderr, none.interval95[0]), (0.0, 0.0, 0.0));
        close(none.interval95[1], 79.345_068_562_276_25);
        close(all.interval95[0], 20.654_931_437_723_75);
        assert_eq!(all.interval95[1], 100.0);
    }

    #[test]
    fn label_agreement_needs_original_label_and_data_subset() {
        let good = agreement_line("helpful", "helpful", 0, 0);
        for field in ["original_label", "data_subset"] {
            let mut obj: serde_json::Map<String, Value> = serde_json::from_str(&good).unwrap();
            obj.remove(field);
            let text = format!("{good}\n{}\n", Value::Object(obj));
            let dir = tempfile::tempdir().unwrap();
            let path = write_fixture(dir.path(), "hh.jsonl", &text);
            match label_agreement(&path, &LoadOptions::default()) {
                Err(Error::MissingField { path: p, line, field: f }) => {
                    assert_eq!((p, line, f.as_str()), (path.clone(), 2, field))
                }
                other => panic!("expected MissingField `{field}`, got {other:?}"),
            }
            // The loader itself does not need them.
            assert_eq!(load(&path, &LoadOptions::default()).unwrap().len(), 2);
        }
    }

    #[test]
    fn label_agreement_rejects_bad_labels_as_the_loader_does() {
        let dir = tempfile::tempdir().unwrap();
        for (original, got) in [("2", "number 2"), ("\"1\"", "string \"1\""), ("null", "null")] {
            let text = agreement_line("helpful", "helpful", 0, 0)
                .replace(r#""original_label": 0"#, &format!(r#""original_label": {original}"#));
            let path = write_fixture(dir.path(), "hh.jsonl", &text);
            match label_agreement(&path, &LoadOptions::default()) {
                Err(Error::InvalidField { line: 1, field, got: g, .. }) => {
                    assert_eq!((field.as_str(), g.as_str()), ("original_label", got))
                }
                other => panic!("expected InvalidField for {original}, got {other:?}"),
            }
        }
        let path = write_fixture(dir.path(), "hh.jsonl", &agreement_line("helpful", "helpful", 2, 0));
        assert!(matches!(
            label_agreement(&path, &LoadOptions::default()),
            Err(Error::LabelOutOfRange { line: 1, label: 2, .. })
        ));
        let options = LoadOptions::default().allowed_user_types(USER_TYPES);
        let path = write_fixture(dir.path(), "hh.jsonl", &agreement_line("helpful", "funny", 0, 0));
        assert!(matches!(label_agreement(&path, &options), Err(Error::UnknownUserType { line: 1, .. })));
        let path = write_fixture(dir.path(), "hh.jsonl", "\n");
        assert!(matches!(label_agreement(&path, &options), Err(Error::EmptyData { .. })));
    }

    /// The released labels agree with HH-RLHF's human labels only a little above chance (docs/results.md,
    /// "Text: HH-relabeled"; `make hh-agreement`).
    #[test]
    fn shared_files_label_agreement_matches_docs_results() {
        let options = LoadOptions::default().allowed_user_types(USER_TYPES);
        // (agree, pairs): overall; subsets harmless, helpful; objectives harmless, helpful; subset × objective
        // harmless × harmless, harmless × helpful, helpful × harmless, helpful × helpful.
        type Row = [(usize, usize); 9];
        let expected: [(&str, Row); 2] = [
            (
                "dev.jsonl.gz",
                [(200, 360), (85, 171), (115, 189), (99, 174), (101, 186), (43, 77), (42, 94), (56, 97), (59, 92)],
            ),
            (
                "train.jsonl.gz",
                [
                    (1578, 2688),
                    (808, 1368),
                    (770, 1320),
                    (721, 1244),
                    (857, 1444),
                    (411, 668),
                    (397, 700),
                    (310, 576),
                    (460, 744),
                ],
            ),
        ];
        for (file, row) in expected {
            let Some(path) = shared_data(&format!("hh_relabeled/{file}")) else { continue };
            let a = label_agreement(&path, &options).unwrap();
            let pair = |a: &Agreement| (a.agree, a.pairs);
            let both = &a.by_subset_and_objective;
            let got = [
                pair(&a.overall),
                pair(&a.by_subset["harmless"]),
                pair(&a.by_subset["helpful"]),
                pair(&a.by_objective["harmless"]),
                pair(&a.by_objective["helpful"]),
                pair(&both["harmless"]["harmless"]),
                pair(&both["harmless"]["helpful"]),
                pair(&both["helpful"]["harmless"]),
                pair(&both["helpful"]["helpful"]),
            ];
            assert_eq!(got, row, "{file}");
            assert_eq!((a.by_subset.len(), a.by_objective.len()), (2, 2), "{file}");
            // The original labels are balanced, so chance agreement is 50 %.
            assert!((a.overall.chance - 50.0).abs() < 0.2, "{file}: {}", a.overall.chance);
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
