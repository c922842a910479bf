//! The `steer` CLI as a user runs it: the report contract, and errors that name what was wrong.

use std::process::Command;

fn steer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_steer"))
}

#[test]
fn train_writes_the_report_contract_and_a_plot() {
    let out = tempfile::tempdir().unwrap();
    let status = steer()
        .args(["train", "--steps", "40", "--baseline-steps", "20", "--hidden", "16", "--eval-tasks", "64", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["task"], "synthetic-1d");
    assert_eq!(report["evaluated_with"], "onnxruntime");
    assert_eq!(report["n_tasks"], 64);
    for model in ["np-btl", "btl", "dpl"] {
        for user in ["prefers-high", "prefers-middle", "all"] {
            for k in ["0", "1", "3", "5", "10"] {
                let acc = report["accuracy"][model][user][k].as_f64().unwrap();
                let se = report["stderr"][model][user][k].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&acc) && se >= 0.0, "{model}/{user}/{k}: {acc} ± {se}");
            }
        }
    }
    for field in ["parity_max_normwise_diff", "parity_max_probability_diff"] {
        assert!(report[field].as_f64().unwrap() <= 1e-5, "{field} = {}", report[field]);
    }
    let svg = std::fs::read_to_string(out.path().join("accuracy.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("np-btl"));
    for model in ["np-btl", "btl", "dpl"] {
        assert!(out.path().join("bundles").join(model).join(steer_runtime::manifest::MANIFEST_FILE).is_file());
    }

    // Re-evaluating the run through `steer eval` gives the same figures.
    let again = tempfile::tempdir().unwrap();
    let status = steer().args(["eval", "--run"]).arg(out.path()).arg("--out").arg(again.path()).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["accuracy"], second["accuracy"]);
}

#[test]
fn eval_of_a_missing_run_names_the_file_and_fails() {
    let out = tempfile::tempdir().unwrap();
    let result = steer().args(["eval", "--run", "/nonexistent/run", "--out"]).arg(out.path()).output().unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("/nonexistent/run/run.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The OS error is named once, not once by the library error and again as its cause.
    let os_error = std::fs::read("/nonexistent/run/run.json").unwrap_err().to_string();
    assert_eq!(stderr.matches(os_error.as_str()).count(), 1, "{stderr}");

    // A folder that `steer train-policy` did not write is named as such.
    let result =
        steer().args(["eval-policy", "--bundle"]).arg(out.path()).arg("--out").arg(out.path()).output().unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("not a `steer train-policy` folder"), "{stderr}");
}

#[test]
fn invalid_arguments_are_rejected_with_the_expected_range() {
    let out = tempfile::tempdir().unwrap();
    let result = steer()
        .args(["train", "--task", "gaussian", "--rho", "1.5", "--steps", "1", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("rho") && stderr.contains("[-1, 1]"), "{stderr}");

    // Training settings are checked before any long stage starts.
    for (args, expected) in [
        (
            &["train", "--task", "synthetic1d", "--steps", "1", "--weight-decay=-1"][..],
            "`weight_decay`: expected a finite number >= 0, got -1",
        ),
        (&["train-policy", "--lr=-1"][..], "`lr`: expected a positive finite number, got -1"),
        (&["train-policy", "--steps", "0"][..], "`steps`: expected >= 1, got 0"),
        (&["train-policy", "--base", "tiny", "--base-dir", "x"][..], "cannot be used with '--base-dir"),
        (&["train-policy", "--prompts", "60,20"][..], "--prompts takes three counts"),
        // A Hugging Face directory without its tokenizer (the test fixture has the model only).
        (&["train-policy", "--base-dir", "../tests/fixtures/hf/qwen2"][..], "qwen2/tokenizer.json"),
    ] {
        let result = steer().args(args).arg("--out").arg(out.path().join("run")).output().unwrap();
        assert!(!result.status.success());
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // Sampling values are checked before the bundle loads, and negative ones reach that check.
    for (flag, value, expected) in [
        ("--temperature", "-1", "a finite value >= 0"),
        ("--top-p", "1.5", "(0, 1]"),
        ("--max-new-tokens", "0", "at least 1"),
    ] {
        let result =
            steer().args(["generate", "--bundle", "/nonexistent", "--prompt", "hi", flag, value]).output().unwrap();
        assert!(!result.status.success());
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(expected) && stderr.contains(&format!("found {value}")), "{flag}: {stderr}");
    }
}
