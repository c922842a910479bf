//! The thread-local message of the last failed call, and `steer_last_error_message`.

use std::cell::RefCell;
use std::ffi::c_char;

use crate::boundary::guard;

thread_local! {
    /// The message bytes followed by one NUL. Clearing keeps the allocation, so a pointer handed out earlier reads
    /// as the empty string rather than dangling until the next failure.
    static LAST_ERROR: RefCell<Vec<u8>> = RefCell::new(vec![0]);
}

/// Records `"<function>: <message>"` as this thread's last error. Interior NULs become spaces.
pub(crate) fn set(function: &str, message: &str) {
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut buffer) = cell.try_borrow_mut() {
            buffer.clear();
            buffer.extend_from_slice(function.as_bytes());
            buffer.extend_from_slice(b": ");
            buffer.extend(message.bytes().map(|b| if b == 0 { b' ' } else { b }));
            buffer.push(0);
        }
    });
}

/// Empties this thread's last error message (after a call that succeeded).
pub(crate) fn clear() {
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut buffer) = cell.try_borrow_mut() {
            buffer.clear();
            buffer.push(0);
        }
    });
}

/// The message of the last call on this thread that returned a `steer_status`: what went wrong and what was
/// expected, prefixed with the function's name. The empty string if that call succeeded or none was made.
///
/// Never NULL. The string is owned by the library and belongs to the calling thread: it stays valid until the next
/// call on this thread of a function that returns a `steer_status`, or until the thread exits. Copy it to keep it.
/// Thread-safe (each thread has its own message); calling it does not change the message.
#[unsafe(no_mangle)]
pub extern "C" fn steer_last_error_message() -> *const c_char {
    static EMPTY: &[u8; 1] = b"\0";
    guard(EMPTY.as_ptr().cast(), || {
        LAST_ERROR
            .try_with(|cell| match cell.try_borrow() {
                Ok(buffer) => buffer.as_ptr().cast(),
                Err(_) => EMPTY.as_ptr().cast(),
            })
            .unwrap_or(EMPTY.as_ptr().cast())
    })
}
