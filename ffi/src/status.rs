//! `steer_status`: what every fallible call returns. It is the runtime's [`Status`](steer_runtime::Status), whose
//! one table (in `runtime/src/status.rs`) gives each status its value, C name and meaning; cbindgen writes the C
//! enum from that table's declaration (see `ffi/tests/header.rs`).

use std::ffi::c_char;

pub use steer_runtime::Status as steer_status;

use crate::boundary::guard;

/// The name of a status value as a static string, e.g. `"STEER_STATUS_NULL_ARGUMENT"`, or
/// `"STEER_STATUS_UNKNOWN"` for a value this library does not define.
///
/// Takes any `int32_t`, so it is safe to call with a value from a newer library. The string is owned by the
/// library and lives as long as the process; do not free it. Thread-safe; does not change the thread's last error
/// message.
#[unsafe(no_mangle)]
pub extern "C" fn steer_status_name(status: i32) -> *const c_char {
    const UNKNOWN: &std::ffi::CStr = c"STEER_STATUS_UNKNOWN";
    guard(UNKNOWN.as_ptr(), || steer_status::from_code(status).map_or(UNKNOWN, steer_status::name_c_str).as_ptr())
}
