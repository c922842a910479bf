//! The C and C++ generation examples (`examples/c/two_users.c`, `examples/cpp/two_users.cpp`) compiled with the
//! flags `make` uses (`-std=c99`/`-std=c++17 -Wall -Wextra -pedantic -Werror`), linked against the libsteer.so of
//! this build, and run on the runtime's hand-made policy bundle: they exit 0, print both users' answers, stream
//! user A's answer exactly, and C and C++ agree.

mod behaviour;

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The folder holding the libsteer.so cargo built with this test (`target/<profile>/deps`, else `target/<profile>`).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().expect("the test binary is in target/<profile>/deps").to_path_buf();
    [deps.clone(), deps.parent().unwrap_or(&deps).to_path_buf()]
        .into_iter()
        .find(|dir| dir.join("libsteer.so").is_file())
        .unwrap_or_else(|| panic!("libsteer.so not found beside {}", exe.display()))
}

/// Compiles `source` with `compiler` and `flags` into `out`.
fn compile(compiler: &str, flags: &[&str], source: &str, out: &Path) {
    let lib = library_dir();
    let output = Command::new(compiler)
        .args(flags)
        .arg(format!("-I{}", workspace().join("include").display()))
        .arg(workspace().join(source))
        .arg(format!("-L{}", lib.display()))
        .arg("-lsteer")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{compiler}` (install gcc/g++): {e}"));
    assert!(
        output.status.success(),
        "{compiler} failed on {source}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs an example on `bundle` (with `prompt`, if given); returns its standard output.
fn run(program: &Path, bundle: &Path, prompt: Option<&str>) -> String {
    let output = Command::new(program).arg(bundle).args(prompt).output().unwrap();
    let stdout = String::from_utf8(output.stdout).expect("the example prints UTF-8");
    assert!(
        output.status.success(),
        "{} exited with {}:\n{stdout}\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The text after `prefix` on the line that starts with it.
fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"))
}

/// Checks one example's output; returns its answers for user A and user B.
fn answers(stdout: &str) -> (String, String) {
    let (a, b) = (line(stdout, "user A: "), line(stdout, "user B: "));
    assert_eq!(line(stdout, "streaming user A: "), a, "the streamed deltas make user A's answer:\n{stdout}");
    assert!(stdout.contains("finished by "), "{stdout}");
    assert!(!a.is_empty() && !b.is_empty(), "both answers are printed:\n{stdout}");
    (a.to_string(), b.to_string())
}

#[test]
fn the_c_and_cpp_two_users_examples_print_both_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = behaviour::policy_bundle(tmp.path());
    let c = tmp.path().join("two_users_c");
    compile("cc", &["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"], "examples/c/two_users.c", &c);
    let cpp = tmp.path().join("two_users_cpp");
    compile("c++", &["-std=c++17", "-Wall", "-Wextra", "-pedantic", "-Werror"], "examples/cpp/two_users.cpp", &cpp);

    // The default English prompt is all unknown words to the tiny policy; "a" is one it knows.
    for prompt in [None, Some("a")] {
        let c_out = run(&c, &bundle, prompt);
        let cpp_out = run(&cpp, &bundle, prompt);
        println!("{c_out}");
        let c_answers = answers(&c_out);
        assert_eq!(answers(&cpp_out), c_answers, "C and C++ give the same answers:\n{c_out}\n{cpp_out}");
    }

    // A bundle without a policy: the examples say so and fail.
    let plain = behaviour::text_bundle(tmp.path(), steer_runtime::ModelKind::NpBtl);
    for program in [&c, &cpp] {
        let output = Command::new(program).arg(&plain).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", program.display());
        assert!(String::from_utf8_lossy(&output.stderr).contains("needs a policy"), "{output:?}");
    }
}
