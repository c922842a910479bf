//! The generated files. `include/steer.h`: the committed copy is what cbindgen generates from this crate; it
//! compiles on its own as C99 and C++17 and when included twice; it declares only `steer_` names, exactly the
//! functions libsteer.so exports; its ABI version and status values agree with the library.
//! `docs/status-codes.md`: the committed copy is what the status table in `runtime/src/status.rs` generates.
//!
//! When either is out of date, regenerate both with `make header`, i.e. `STEER_UPDATE_HEADER=1 STEER_UPDATE_DOCS=1
//! cargo test -p steer-ffi --release --test header committed_`.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ffi_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn include_dir() -> PathBuf {
    ffi_dir().join("../include")
}

fn committed_header() -> String {
    std::fs::read_to_string(include_dir().join("steer.h")).unwrap_or_default()
}

/// What cbindgen makes of this crate with `ffi/cbindgen.toml`. The crate declares `steer_status` with a macro,
/// which cbindgen does not expand, so cbindgen also reads the enum's declaration (`steer_status::DECLARATION`)
/// from a file of its own, before `lib.rs`: the enum stays first in the header, as in the crate's module order.
fn generate() -> String {
    let config = cbindgen::Config::from_file(ffi_dir().join("cbindgen.toml")).expect("read ffi/cbindgen.toml");
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.rs");
    std::fs::write(&status, steer::steer_status::DECLARATION).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(status)
        .with_src(ffi_dir().join("src/lib.rs"))
        .generate()
        .expect("cbindgen cannot generate the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_what_cbindgen_generates() {
    check_generated(
        &include_dir().join("steer.h"),
        &generate(),
        "STEER_UPDATE_HEADER",
        "cbindgen generates from ffi/src",
    );
}

#[test]
fn committed_status_codes_page_is_what_the_table_generates() {
    let page = steer::steer_status::markdown();
    let path = ffi_dir().join("../docs/status-codes.md");
    check_generated(&path, &page, "STEER_UPDATE_DOCS", "the status table in runtime/src/status.rs generates");
}

/// Fails unless the committed file at `path` is `generated`; writes it instead when the variable `update` is set.
fn check_generated(path: &Path, generated: &str, update: &str, source: &str) {
    if std::env::var_os(update).is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(path, generated).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let line = line.unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date: it differs from what {source} at line {}:\n\
             committed: {:?}\ngenerated: {:?}\n\
             Regenerate it with `make header` ({update}=1 cargo test -p steer-ffi --release --test header committed_) \
             and commit it.",
            path.display(),
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

/// Compiles `source` (a translation unit including steer.h) with `compiler` and `flags`, syntax only.
fn compiles(compiler: &str, extension: &str, source: &str, flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("check.{extension}"));
    std::fs::write(&file, source).unwrap();
    let output = Command::new(compiler)
        .args(flags)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(include_dir())
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{compiler}` (install gcc/g++): {e}"));
    assert!(
        output.status.success(),
        "steer.h does not compile with `{compiler} {}`:\n{}",
        flags.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

const C99: &[&str] = &["-x", "c", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"];
const CPP17: &[&str] = &["-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-pedantic", "-Werror"];

/// Uses a few declarations so that the compiler checks more than the preprocessor.
const USES: &str = "int main(void) {\n\
    steer_status status = STEER_STATUS_OK;\n\
    steer_model *model = NULL;\n\
    (void)model;\n\
    return (int)status + (steer_abi_version() == STEER_ABI_VERSION ? 0 : 1);\n\
}\n";

#[test]
fn header_compiles_alone_as_c99() {
    compiles("cc", "c", &format!("#include \"steer.h\"\n{USES}"), C99);
}

#[test]
fn header_compiles_when_included_twice() {
    compiles("cc", "c", &format!("#include \"steer.h\"\n#include \"steer.h\"\n{USES}"), C99);
}

#[test]
fn header_compiles_as_cpp17() {
    compiles("c++", "cpp", &format!("#include \"steer.h\"\n#include \"steer.h\"\n{USES}"), CPP17);
}

#[test]
fn readme_c_quick_start_compiles_against_the_header() {
    let readme = std::fs::read_to_string(ffi_dir().join("../README.md")).expect("read README.md");
    let section = readme.split("\n## C ABI").nth(1).expect("README.md has a `## C ABI` section");
    let start = section.find("```c\n").expect("the C ABI section has a ```c block") + "```c\n".len();
    let end = start + section[start..].find("```").expect("the ```c block ends");
    compiles("cc", "c", &section[start..end], C99);
}

/// The header without comments.
fn code(header: &str) -> String {
    let mut out = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..].find("*/").map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The name a function-pointer typedef declares (`typedef bool (*steer_token_callback)(...)`), if `line` is one.
fn function_pointer_typedef(line: &str) -> Option<&str> {
    let line = line.trim_start().strip_prefix("typedef ")?;
    let rest = &line[line.find("(*")? + 2..];
    Some(&rest[..rest.find(')')?])
}

/// The names of the functions the header declares: an identifier followed by `(` outside preprocessor lines and
/// function-pointer typedefs.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let code = code(header);
    let mut names = BTreeSet::new();
    let declarations =
        code.lines().filter(|l| !l.trim_start().starts_with('#') && function_pointer_typedef(l).is_none());
    for line in declarations {
        let bytes = line.as_bytes();
        for (i, _) in line.match_indices('(') {
            let end = line[..i].trim_end().len();
            let start = line[..end].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |p| p + 1);
            if start < end && bytes[start].is_ascii_alphabetic() {
                names.insert(line[start..end].to_string());
            }
        }
    }
    names
}

#[test]
fn header_declares_only_steer_names() {
    let header = committed_header();
    let code = code(&header);
    let functions = declared_functions(&header);
    assert!(functions.len() >= 30, "found only {functions:?}");
    for name in &functions {
        assert!(name.starts_with("steer_"), "function `{name}` does not start with steer_");
    }
    for line in code.lines().map(str::trim) {
        let words: Vec<&str> =
            line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
        let declared = match words.first() {
            Some(&"define") if line.starts_with('#') => words.get(1).copied(),
            _ if line.starts_with('#') => None,
            Some(&"typedef") if function_pointer_typedef(line).is_some() => function_pointer_typedef(line),
            Some(&"typedef") => words.last().copied(),
            Some(&"struct") | Some(&"enum") => words.get(1).copied(),
            Some(name) if line.contains('=') && name.starts_with("STEER_") => Some(*name),
            Some(name) if line.contains('=') => panic!("enumerator `{name}` does not start with STEER_"),
            _ => None,
        };
        if let Some(name) = declared {
            assert!(
                name.starts_with("steer_") || name.starts_with("STEER_"),
                "`{name}` in `{line}` is not a steer name"
            );
        }
    }
}

/// The libsteer.so cargo built with this test: in `target/<profile>/deps` beside the test binary (`cargo test`
/// builds every crate type of the library there), else `target/<profile>` after a `cargo build`.
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().expect("the test binary is in target/<profile>/deps");
    let candidates = [deps.join("libsteer.so"), deps.parent().unwrap_or(deps).join("libsteer.so")];
    candidates.iter().find(|c| c.is_file()).cloned().unwrap_or_else(|| panic!("libsteer.so not found: {candidates:?}"))
}

#[test]
fn libsteer_so_exports_exactly_the_header_functions() {
    let library = built_library();
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&library)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nm (install binutils): {e}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exported: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect();
    for name in &exported {
        assert!(name.starts_with("steer_"), "libsteer.so exports `{name}`, which does not start with steer_");
    }
    assert_eq!(exported, declared_functions(&committed_header()), "exported symbols vs header declarations");
}

#[test]
fn abi_version_in_the_header_matches_the_library() {
    let header = committed_header();
    let define = header
        .lines()
        .find_map(|line| line.strip_prefix("#define STEER_ABI_VERSION "))
        .expect("steer.h defines STEER_ABI_VERSION");
    let in_header: u32 = define.trim().parse().expect("STEER_ABI_VERSION is a number");
    assert_eq!(in_header, steer::steer_abi_version());
    assert_eq!(in_header, steer::STEER_ABI_VERSION);
}

#[test]
fn status_values_in_the_header_match_the_library() {
    let code = code(&committed_header());
    let mut seen = 0;
    for line in code.lines().map(str::trim).filter(|l| l.starts_with("STEER_STATUS_")) {
        let (name, value) = line.trim_end_matches(',').split_once(" = ").expect("STEER_STATUS_X = N");
        let value: i32 = value.parse().expect("status values are explicit numbers");
        // SAFETY: steer_status_name returns a static NUL-terminated string.
        let named = unsafe { CStr::from_ptr(steer::steer_status_name(value)) }.to_str().unwrap();
        assert_eq!(named, name, "value {value}");
        seen += 1;
    }
    assert_eq!(seen, steer::steer_status::all().len(), "every status is in the header");
}
