//! Bundle validation that happens before ONNX Runtime is involved: the manifest and the files it lists.

use steer_testkit as common;

use std::path::Path;

use serde_json::{Value, json};
use steer_runtime::manifest::MANIFEST_FILE;
use steer_runtime::{Dims, Error, LoadOptions, Manifest, Model, ModelKind};

const DIMS: Dims = Dims { embedding_dim: 2, latent_dim: 3 };

/// An np-btl bundle with placeholder graph files (their content does not matter before ONNX Runtime runs).
fn bundle(dir: &Path) {
    common::write_bundle(
        dir,
        ModelKind::NpBtl,
        DIMS,
        &[("encoder.onnx", b"encoder bytes".to_vec()), ("reward.onnx", b"reward bytes".to_vec())],
    );
}

fn manifest_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

/// Rewrites the manifest after `edit`, then loads it through both entry points and checks they agree.
fn load_edited(dir: &Path, edit: impl FnOnce(&mut Value)) -> Error {
    bundle(dir);
    let mut value = manifest_json(dir);
    edit(&mut value);
    std::fs::write(dir.join(MANIFEST_FILE), serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let err = Manifest::load_and_verify(dir).unwrap_err();
    let model_err = Model::load(dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), model_err.code());
    err
}

/// A change to a manifest's JSON.
type Edit = fn(&mut Value);

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidManifest { field, .. } => field,
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
}

#[test]
fn a_valid_manifest_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    bundle(tmp.path());
    let manifest = Manifest::load_and_verify(tmp.path()).unwrap();
    assert_eq!(manifest.model_kind, ModelKind::NpBtl);
    assert_eq!(manifest.dims, DIMS);
    assert_eq!(manifest.graphs.encoder.as_deref(), Some("encoder.onnx"));
    assert_eq!(manifest_json(tmp.path())["model_kind"], "np-btl");
}

#[test]
fn missing_folder_or_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Model::load(tmp.path().join("absent"), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 100, "{err}");
    let err = Model::load(tmp.path(), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 101, "{err}");
    assert!(err.to_string().contains(MANIFEST_FILE), "{err}");
}

#[test]
fn unreadable_json_and_unknown_versions() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(MANIFEST_FILE), "{ not json").unwrap();
    assert_eq!(Manifest::load_and_verify(tmp.path()).unwrap_err().code(), 102);

    for (version, shown) in [(json!(2), "2"), (json!("1"), "\"1\""), (Value::Null, "null")] {
        let dir = tmp.path().join(format!("v{shown}"));
        let err = load_edited(&dir, |m| m["format_version"] = version);
        assert_eq!(err.code(), 103, "{err}");
        assert!(matches!(&err, Error::UnsupportedFormatVersion { found, supported: 1 } if found == shown), "{err}");
    }

    let dir = tmp.path().join("no-dims");
    let err = load_edited(&dir, |m| {
        m.as_object_mut().unwrap().remove("dims");
    });
    assert_eq!(err.code(), 102, "{err}");
    assert!(err.to_string().contains("dims"), "{err}");

    let dir = tmp.path().join("bad-kind");
    let err = load_edited(&dir, |m| m["model_kind"] = json!("transformer"));
    assert_eq!(err.code(), 102, "{err}");
}

#[test]
fn inconsistent_fields_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, Edit, &str); 8] = [
        ("np-latent-0", (|m| m["dims"]["latent_dim"] = json!(0)), "dims.latent_dim"),
        ("embedding-0", (|m| m["dims"]["embedding_dim"] = json!(0)), "dims.embedding_dim"),
        ("btl-latent", (|m| m["model_kind"] = json!("btl")), "dims.latent_dim"),
        (
            "btl-encoder",
            (|m| {
                m["model_kind"] = json!("dpl");
                m["dims"]["latent_dim"] = json!(0);
            }),
            "graphs.encoder",
        ),
        (
            "np-no-encoder",
            (|m| {
                m["graphs"].as_object_mut().unwrap().remove("encoder");
            }),
            "graphs.encoder",
        ),
        ("opset-16", (|m| m["opset"] = json!(16)), "opset"),
        ("escape", (|m| m["files"][0]["path"] = json!("../encoder.onnx")), "files[].path"),
        ("unlisted-graph", (|m| m["graphs"]["reward"] = json!("other.onnx")), "files"),
    ];
    for (name, edit, expected_field) in cases {
        let err = load_edited(&tmp.path().join(name), edit);
        assert_eq!(err.code(), 104, "{name}: {err}");
        assert_eq!(field(&err), expected_field, "{name}");
    }
}

#[test]
fn missing_and_corrupt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("missing");
    bundle(&dir);
    std::fs::remove_file(dir.join("reward.onnx")).unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 105, "{err}");
    assert!(matches!(&err, Error::MissingFile { path } if path.ends_with("reward.onnx")), "{err}");

    let dir = tmp.path().join("corrupt");
    bundle(&dir);
    std::fs::write(dir.join("encoder.onnx"), b"tampered").unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), 106, "{err}");
    match err {
        Error::HashMismatch { path, expected, actual } => {
            assert!(path.ends_with("encoder.onnx"));
            assert_ne!(expected, actual);
            assert_eq!(actual.len(), 64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_options_are_reported_before_the_bundle_is_read() {
    let err = Model::load("/does/not/exist", &LoadOptions::default().session_pool_size(0)).unwrap_err();
    assert_eq!(err.code(), 300, "{err}");
}
