//! The library version and the ABI version, both taken from Cargo.toml.

use std::ffi::c_char;

use crate::boundary::guard;

/// The ABI version this header describes: `major * 1000000 + minor * 1000 + patch` of the library version.
/// Compare it with `steer_abi_version()` at start-up to catch a program built against another header.
///
/// It must equal the number computed from Cargo.toml's version; the build fails if they differ.
pub const STEER_ABI_VERSION: u32 = 1000;

/// `STEER_ABI_VERSION` as computed from the crate version.
const ABI_FROM_CARGO: u32 = parse_u32(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
    + parse_u32(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
    + parse_u32(env!("CARGO_PKG_VERSION_PATCH"));

const _: () = assert!(
    STEER_ABI_VERSION == ABI_FROM_CARGO,
    "STEER_ABI_VERSION does not match the crate version in Cargo.toml; update it in ffi/src/version.rs"
);

/// A decimal number at compile time.
const fn parse_u32(digits: &str) -> u32 {
    let bytes = digits.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "version parts must be decimal numbers");
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

/// The library's version, e.g. `"0.1.0"`: a static, NUL-terminated string owned by the library (never NULL, never
/// freed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn steer_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    guard(VERSION.as_ptr().cast(), || VERSION.as_ptr().cast())
}

/// The ABI version the library was built with; equal to `STEER_ABI_VERSION` of the header it was built with.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn steer_abi_version() -> u32 {
    guard(STEER_ABI_VERSION, || STEER_ABI_VERSION)
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    #[test]
    fn versions_come_from_cargo_toml() {
        // SAFETY: a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(steer_version()) }.to_str().unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(steer_abi_version(), parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]);
    }
}
