//! The panic boundary every exported function runs inside, and the failures it reports.
//!
//! A function that returns a status wraps its body in [`call`]; one that returns a value (a version string, a
//! name) or nothing (`*_free`) wraps it in [`guard`] with the value to return if it panicked. Both catch panics in
//! [`catch`]; `call` also keeps the thread's last error message. No panic unwinds into C.

use std::any::Any;
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::last_error;
use crate::status::steer_status;

/// Why a call failed: the status it returns and the message `steer_last_error_message()` gives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) status: steer_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: steer_status, message: impl Display) -> Failure {
        Failure { status, message: message.to_string() }
    }

    /// A required pointer argument was NULL.
    pub(crate) fn null(argument: &str, expected: &str) -> Failure {
        Failure::new(steer_status::NullArgument, format!("argument `{argument}` is NULL; expected {expected}"))
    }

    /// An argument is out of its allowed range or otherwise unusable.
    pub(crate) fn invalid(argument: &str, problem: impl Display) -> Failure {
        Failure::new(steer_status::InvalidArgument, format!("argument `{argument}` {problem}"))
    }
}

impl From<steer_runtime::Error> for Failure {
    fn from(error: steer_runtime::Error) -> Failure {
        Failure::new(error.status(), error)
    }
}

/// The result of a status-returning function's body.
pub(crate) type Outcome = Result<(), Failure>;

/// Runs the body of the exported function `function`: returns `STEER_STATUS_OK` and clears the thread's last
/// error message when it succeeds; otherwise records `"<function>: <message>"` and returns the failure's status. A
/// panic becomes `STEER_STATUS_PANIC`.
pub(crate) fn call(function: &'static str, body: impl FnOnce() -> Outcome) -> steer_status {
    let outcome = catch(body).unwrap_or_else(|panic| {
        Err(Failure::new(
            steer_status::Panic,
            format!("the library panicked: {panic}; this is a bug, please report it"),
        ))
    });
    match outcome {
        Ok(()) => {
            last_error::clear();
            steer_status::Ok
        }
        Err(failure) => {
            last_error::set(function, &failure.message);
            failure.status
        }
    }
}

/// Runs `body`, returning `on_panic` if it panics.
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch(body).unwrap_or(on_panic)
}

/// The one place the library catches panics: runs `body` and turns a panic into its message.
fn catch<T>(body: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|panic| panic_message(panic.as_ref()).to_string())
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => message,
        (None, Some(message)) => message,
        (None, None) => "(no message)",
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::last_error::steer_last_error_message;

    fn last_message() -> String {
        // SAFETY: the pointer is valid until the next status-returning call on this thread.
        unsafe { CStr::from_ptr(steer_last_error_message()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = call("steer_test_panics", || panic!("boom {}", 7));
        assert_eq!(status, steer_status::Panic);
        let message = last_message();
        assert!(message.starts_with("steer_test_panics: the library panicked: boom 7;"), "{message}");
        assert_eq!(guard(5, || panic!("static message")), 5);
    }

    #[test]
    fn failures_set_the_message_and_success_clears_it() {
        let status = call("steer_test_fails", || Err(Failure::null("model", "a steer_model")));
        assert_eq!(status, steer_status::NullArgument);
        assert_eq!(last_message(), "steer_test_fails: argument `model` is NULL; expected a steer_model");
        assert_eq!(call("steer_test_succeeds", || Ok(())), steer_status::Ok);
        assert_eq!(last_message(), "");
    }

    #[test]
    fn runtime_errors_keep_their_code() {
        let error = steer_runtime::Error::ProfileLength { profile: "profile".into(), expected: 2, found: 3 };
        let failure = Failure::from(error);
        assert_eq!(failure.status as i32, 305);
        assert!(failure.message.contains("latent_dim = 2"), "{}", failure.message);
    }
}
