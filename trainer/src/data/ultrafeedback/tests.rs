use super::*;
use crate::data::tests::{pair, write_fixture};
use serde_json::json;

/// A completion with helpfulness, honesty and truthfulness ratings (`0` writes `"N/A"`).
fn completion(response: &str, h: u8, o: u8, t: u8) -> Value {
    let rating = |r: u8| {
        if r == 0 { json!({"Rating": "N/A"}) } else { json!({"Rating": r.to_string(), "Rationale": "…"}) }
    };
    json!({"model": "m", "response": response, "annotations": {
        "helpfulness": rating(h), "honesty": rating(o), "truthfulness": [rating(t)],
        "instruction_following": {"Rating": "3"},
    }})
}

/// Four prompts: p1 has three comparisons (HH: all conflicting), p2 three (HH: two agreeing, one
/// tied), p3 one completion, p4 one unanimous comparison.
fn fixture() -> String {
    let rows = [
        json!({"instruction": "p1", "completions": [completion("A", 5, 1, 4), completion("B", 2, 4, 2), completion("C", 4, 3, 4)]}),
        json!({"instruction": "p2", "completions": [completion("D", 3, 3, 3), completion("E", 1, 1, 0), completion("F", 3, 2, 1)]}),
        json!({"instruction": "p3", "completions": [completion("G", 1, 1, 1)]}),
        json!({"instruction": "p4", "completions": [completion("H", 5, 5, 5), completion("I", 1, 1, 1)]}),
    ];
    rows.iter().map(|r| format!("{r}\n")).collect()
}

fn load_text(text: &str, options: &UltraFeedbackOptions) -> Result<UltraFeedbackData> {
    let dir = tempfile::tempdir().unwrap();
    load(write_fixture(dir.path(), "uf.jsonl.gz", text), options)
}

#[test]
fn hh_keeps_strictly_opposite_comparisons() {
    let data = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(0.0))).unwrap();
    assert_eq!(
        data.dataset.pairs,
        vec![
            pair("helpfulness", "p1", "A", "B"),
            pair("honesty", "p1", "B", "A"),
            pair("helpfulness", "p1", "A", "C"),
            pair("honesty", "p1", "C", "A"),
            pair("helpfulness", "p1", "C", "B"),
            pair("honesty", "p1", "B", "C"),
        ]
    );
    assert_eq!(data.dataset.user_types, vec!["helpfulness", "honesty"]);
    let expected = UltraFeedbackStats {
        prompts: 4,
        completions: 9,
        comparisons: 7,
        unrated: 0,
        tied: 1,
        conflicting: 3,
        agreeing: 3,
        agreeing_kept: 0,
        usable: 6,
    };
    assert_eq!(data.stats, expected);
}

#[test]
fn hht_keeps_non_unanimous_comparisons_rated_without_ties() {
    let data = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hht(0.0))).unwrap();
    assert_eq!(
        data.dataset.pairs,
        vec![
            pair("helpfulness", "p1", "A", "B"),
            pair("honesty", "p1", "B", "A"),
            pair("truthfulness", "p1", "A", "B"),
            pair("helpfulness", "p1", "C", "B"),
            pair("honesty", "p1", "B", "C"),
            pair("truthfulness", "p1", "C", "B"),
        ]
    );
    let s = data.stats;
    assert_eq!((s.comparisons, s.unrated, s.tied, s.conflicting, s.agreeing), (7, 2, 2, 2, 1));
}

#[test]
fn conflict_rate_variants_mix_in_seeded_agreeing_comparisons() {
    // f = 0.5 with 3 conflicting needs all 3 agreeing comparisons, in file order.
    let data = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(0.5))).unwrap();
    assert_eq!(data.stats.agreeing_kept, 3);
    let agreeing: Vec<_> = data.dataset.pairs[6..].iter().map(|p| (p.chosen.as_str(), p.rejected.as_str())).collect();
    assert_eq!(agreeing, vec![("D", "E"), ("D", "E"), ("F", "E"), ("F", "E"), ("H", "I"), ("H", "I")]);
    // f = 0.25 keeps round(3 · 0.25 / 0.75) = 1 of them, chosen by the seed.
    let mut picked = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let options = UltraFeedbackOptions::new(Split::hh(0.25)).seed(seed);
        let data = load_text(&fixture(), &options).unwrap();
        assert_eq!((data.dataset.len(), data.stats.agreeing_kept), (8, 1));
        assert_eq!(data, load_text(&fixture(), &options).unwrap(), "same seed, same split");
        let extra: Vec<_> = data.dataset.pairs.iter().filter(|p| p.prompt != "p1").collect();
        assert_eq!(extra.len(), 2);
        assert_eq!((&extra[0].chosen, &extra[0].rejected), (&extra[1].chosen, &extra[1].rejected));
        picked.insert(extra[0].chosen.clone());
    }
    assert!(picked.len() > 1, "the seed should change which agreeing comparison is kept: {picked:?}");
    // f = 0.6 would need round(4.5) = 5 agreeing comparisons; there are 3.
    let err = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(0.6))).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "agreeing_fraction", .. }), "{err}");
    let err = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(1.0))).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "agreeing_fraction", .. }), "{err}");
}

#[test]
fn dirichlet_users_prefer_the_higher_weighted_reward() {
    let split = Split::Dirichlet {
        attributes: vec![Attribute::Helpfulness, Attribute::Honesty, Attribute::Truthfulness],
        alpha: 0.5,
        users: 12,
        pairs_per_user: 3,
    };
    let options = UltraFeedbackOptions::new(split.clone()).seed(7);
    let data = load_text(&fixture(), &options).unwrap();
    // Candidates: AB, AC, BC, DF, HI (DE and EF have an N/A truthfulness).
    assert_eq!((data.stats.usable, data.stats.unrated, data.stats.tied), (5, 2, 0));
    let ds = &data.dataset;
    assert_eq!(ds.len(), 36);
    assert_eq!(ds.user_types.first().map(String::as_str), Some("dirichlet-00"));
    assert_eq!(ds.user_types.len(), 12);
    let ratings = |r: &str| -> [f64; 3] {
        match r {
            "A" => [5., 1., 4.],
            "B" => [2., 4., 2.],
            "C" => [4., 3., 4.],
            "D" => [3., 3., 3.],
            "F" => [3., 2., 1.],
            "H" => [5., 5., 5.],
            "I" => [1., 1., 1.],
            other => panic!("unexpected response {other}"),
        }
    };
    for (user, pairs) in ds.by_user_type() {
        let z = &ds.user_latents[user];
        assert!((z.iter().sum::<f64>() - 1.0).abs() < 1e-12 && z.iter().all(|&w| w >= 0.0), "{z:?}");
        assert_eq!(pairs.len(), 3);
        for p in pairs {
            let reward = |r: &str| ratings(r).iter().zip(z).map(|(x, w)| x * w).sum::<f64>();
            assert!(reward(&p.chosen) >= reward(&p.rejected), "{user} {z:?}: {p:?}");
        }
    }
    assert_eq!(data, load_text(&fixture(), &options).unwrap(), "same seed, same users");
    let other = load_text(&fixture(), &UltraFeedbackOptions::new(split).seed(8)).unwrap();
    assert_ne!(other.dataset.user_latents, ds.user_latents);
    let too_many =
        Split::Dirichlet { attributes: vec![Attribute::Helpfulness], alpha: 0.5, users: 1, pairs_per_user: 7 };
    let err = load_text(&fixture(), &UltraFeedbackOptions::new(too_many)).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "pairs_per_user", .. }), "{err}");
}

#[test]
fn bad_splits_are_config_errors() {
    for (split, field) in [
        (Split::Conflict { attributes: vec![Attribute::Honesty], agreeing_fraction: 0.0 }, "attributes"),
        (Split::Conflict { attributes: vec![Attribute::Honesty; 2], agreeing_fraction: 0.0 }, "attributes"),
        (Split::hh(-0.1), "agreeing_fraction"),
        (Split::Dirichlet { attributes: vec![Attribute::Honesty], alpha: 0.0, users: 1, pairs_per_user: 1 }, "alpha"),
        (Split::dirichlet(0, 1), "users"),
        (Split::dirichlet(1, 0), "pairs_per_user"),
    ] {
        match load_text(&fixture(), &UltraFeedbackOptions::new(split)) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidConfig for {field}, got {other:?}"),
        }
    }
}

#[test]
fn bad_ratings_and_missing_fields_are_named() {
    let mut bad = completion("Y", 2, 2, 2);
    bad["annotations"]["honesty"]["Rating"] = json!("7");
    let row = json!({"instruction": "p", "completions": [completion("X", 1, 1, 1), bad]});
    match load_text(
        &format!("{}\n{row}\n", fixture().lines().next().unwrap()),
        &UltraFeedbackOptions::new(Split::hh(0.0)),
    ) {
        Err(Error::InvalidField { line, field, got, .. }) => {
            assert_eq!(
                (line, field.as_str(), got.as_str()),
                (2, "completions[1].annotations.honesty.Rating", "string \"7\"")
            );
        }
        other => panic!("expected InvalidField, got {other:?}"),
    }
    let mut missing = completion("Y", 2, 2, 2);
    missing["annotations"].as_object_mut().unwrap().remove("truthfulness");
    let row = json!({"instruction": "p", "completions": [missing]});
    // HH does not read truthfulness; HHT needs it.
    assert!(load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))).is_ok());
    match load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hht(0.0))) {
        Err(Error::MissingField { line: 1, field, .. }) => {
            assert_eq!(field, "completions[0].annotations.truthfulness")
        }
        other => panic!("expected MissingField, got {other:?}"),
    }
    let row = json!({"completions": []});
    assert!(matches!(
        load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))),
        Err(Error::MissingField { field, .. }) if field == "instruction"
    ));
    let row = json!({"instruction": "p", "completions": ["just text"]});
    assert!(matches!(
        load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))),
        Err(Error::InvalidField { field, .. }) if field == "completions[0]"
    ));
    let row = json!({"instruction": "p", "completions": [{"annotations": {}}]});
    assert!(matches!(
        load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))),
        Err(Error::MissingField { field, .. }) if field == "completions[0].response"
    ));
}

#[test]
fn malformed_lines_and_empty_files() {
    let text = format!("{}not json\n", fixture());
    let err = load_text(&text, &UltraFeedbackOptions::new(Split::hh(0.0))).unwrap_err();
    assert!(matches!(err, Error::MalformedLine { line: 5, .. }), "{err}");
    let data = load_text(&text, &UltraFeedbackOptions::new(Split::hh(0.0)).skip_malformed(true)).unwrap();
    assert_eq!((data.dataset.len(), data.dataset.skipped_lines.clone()), (6, vec![5]));
    let err = load_text("", &UltraFeedbackOptions::new(Split::hh(0.0))).unwrap_err();
    assert!(matches!(err, Error::EmptyData { .. }), "{err}");
}

#[test]
fn ratings_parse_strings_numbers_and_na() {
    assert_eq!(parse_rating(&json!("4")), Some(Some(4)));
    assert_eq!(parse_rating(&json!(" 5 ")), Some(Some(5)));
    assert_eq!(parse_rating(&json!(1)), Some(Some(1)));
    assert_eq!(parse_rating(&json!("N/A")), Some(None));
    for bad in [json!("0"), json!("6"), json!(2.5), json!("four"), json!(null), json!(-1)] {
        assert_eq!(parse_rating(&bad), None, "{bad}");
    }
}
