//! Reading the C caller's arguments: handles, float arrays, strings and out-parameters, each checked before use.
//!
//! Every pointer is checked for NULL and alignment before it is read, and every shape for overflow, so bad
//! arguments become a [`Failure`] instead of undefined behaviour. What cannot be checked (that a non-NULL pointer
//! points to as many elements as its shape says) is the caller's contract, stated in each function's docs.

use std::ffi::{CStr, c_char};

use ndarray::{ArrayView2, ArrayView3};

use crate::boundary::Failure;
use crate::status::steer_status;

/// Borrows the object behind a handle.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that is not written during `'a`.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, argument: &str, expected: &str) -> Result<&'a T, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(argument, expected));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(argument, format_args!("is not a valid handle; expected {expected}")));
    }
    // SAFETY: non-NULL and aligned; the caller guarantees it points to a live `T`.
    Ok(unsafe { &*ptr })
}

/// Mutably borrows the object behind a handle.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing else uses during `'a`.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, argument: &str, expected: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: forwarded contract; exclusivity is the caller's.
    unsafe { handle(ptr, argument, expected) }?;
    // SAFETY: checked above; the caller guarantees exclusive access.
    Ok(unsafe { &mut *ptr })
}

/// The number of elements in an array of this shape, failing when the product overflows or the array could not
/// fit in memory.
pub(crate) fn elements(argument: &str, shape: &[usize]) -> Result<usize, Failure> {
    let max = isize::MAX as usize / size_of::<f32>();
    shape
        .iter()
        .try_fold(1usize, |n, &axis| n.checked_mul(axis))
        .filter(|&n| n <= max)
        .ok_or_else(|| Failure::invalid(argument, format_args!("has shape {shape:?}, which is too large")))
}

/// Borrows `len` floats. NULL is allowed only when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable floats that are not written during `'a`.
pub(crate) unsafe fn floats<'a>(ptr: *const f32, len: usize, argument: &str) -> Result<&'a [f32], Failure> {
    // SAFETY: forwarded contract.
    unsafe { slice(ptr, len, argument, "float") }
}

/// Borrows `len` values of `T` (`type_name` is its C name, for messages). NULL is allowed only when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable values that are not written during `'a`.
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    argument: &str,
    type_name: &str,
) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if len.checked_mul(size_of::<T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
        return Err(Failure::invalid(argument, format_args!("has {len} values, which is too large")));
    }
    if ptr.is_null() {
        return Err(Failure::null(argument, &format!("an array of {len} {type_name} values")));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(argument, format_args!("is not aligned for {type_name}")));
    }
    // SAFETY: non-NULL, aligned, at most isize::MAX bytes, and the caller guarantees `len` readable values.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a row-major `[rows, cols]` array.
///
/// # Safety
/// As [`floats`], for `rows * cols` floats.
pub(crate) unsafe fn array2<'a>(
    ptr: *const f32,
    shape: [usize; 2],
    argument: &str,
) -> Result<ArrayView2<'a, f32>, Failure> {
    let len = elements(argument, &shape)?;
    // SAFETY: forwarded contract.
    let data = unsafe { floats(ptr, len, argument) }?;
    ArrayView2::from_shape(shape, data).map_err(|e| Failure::invalid(argument, e))
}

/// Borrows a row-major `[a, b, c]` array.
///
/// # Safety
/// As [`floats`], for `a * b * c` floats.
pub(crate) unsafe fn array3<'a>(
    ptr: *const f32,
    shape: [usize; 3],
    argument: &str,
) -> Result<ArrayView3<'a, f32>, Failure> {
    let len = elements(argument, &shape)?;
    // SAFETY: forwarded contract.
    let data = unsafe { floats(ptr, len, argument) }?;
    ArrayView3::from_shape(shape, data).map_err(|e| Failure::invalid(argument, e))
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that is not written during `'a`.
pub(crate) unsafe fn utf8<'a>(ptr: *const c_char, argument: &str, expected: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(argument, expected));
    }
    // SAFETY: non-NULL; the caller guarantees a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        Failure::new(
            steer_status::InvalidUtf8,
            format!("argument `{argument}` is not valid UTF-8 ({e}); expected {expected} in UTF-8"),
        )
    })
}

/// Borrows an array of `len` NUL-terminated UTF-8 strings. The array may be NULL only when `len` is 0; no element
/// may be NULL. A bad element is named with its index, e.g. `responses[2]`.
///
/// # Safety
/// `ptr` is NULL or points to `len` pointers, each NULL or to a NUL-terminated string, none written during `'a`.
pub(crate) unsafe fn utf8_array<'a>(
    ptr: *const *const c_char,
    len: usize,
    argument: &str,
    expected: &str,
) -> Result<Vec<&'a str>, Failure> {
    // SAFETY: forwarded contract.
    let pointers = unsafe { slice(ptr, len, argument, "const char *") }?;
    pointers
        .iter()
        .enumerate()
        // SAFETY: each element is NULL or a NUL-terminated string (the caller's contract).
        .map(|(i, &string)| unsafe { utf8(string, &format!("{argument}[{i}]"), expected) })
        .collect()
}

/// Borrows an array of `len` handles, none NULL. The array may be NULL only when `len` is 0; a bad element is named
/// with its index, e.g. `profiles[2]`.
///
/// # Safety
/// `ptr` is NULL or points to `len` pointers, each NULL or to a live `T` that is not written during `'a`.
pub(crate) unsafe fn handles<'a, T>(
    ptr: *const *const T,
    len: usize,
    argument: &str,
    expected: &str,
) -> Result<Vec<&'a T>, Failure> {
    // SAFETY: forwarded contract.
    let pointers = unsafe { slice(ptr, len, argument, "handle") }?;
    pointers
        .iter()
        .enumerate()
        // SAFETY: each element is NULL or a live handle (the caller's contract).
        .map(|(i, &element)| unsafe { handle(element, &format!("{argument}[{i}]"), expected) })
        .collect()
}

/// An out-parameter, checked when the call starts and written only when it succeeds.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Checks a required out-parameter.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for writing a `T` until the call returns.
    pub(crate) unsafe fn new(ptr: *mut T, argument: &str) -> Result<Out<T>, Failure> {
        if ptr.is_null() {
            return Err(Failure::null(argument, "a pointer to write the result to"));
        }
        if !ptr.is_aligned() {
            return Err(Failure::invalid(argument, "is not aligned for its type"));
        }
        Ok(Out(ptr))
    }

    /// Writes the result; whatever the location held is overwritten, not dropped.
    pub(crate) fn write(self, value: T) {
        // SAFETY: checked in `new`, whose caller guaranteed the pointer is writable for the call.
        unsafe { self.0.write(value) }
    }
}

/// A caller-provided array of `len` handle slots, checked when the call starts and filled only when it succeeds.
pub(crate) struct OutHandles<T> {
    ptr: *mut *mut T,
    len: usize,
}

impl<T> OutHandles<T> {
    /// Checks an array of `len` slots; NULL is allowed only when `len` is 0.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for writing `len` pointers until the call returns.
    pub(crate) unsafe fn new(ptr: *mut *mut T, len: usize, argument: &str) -> Result<OutHandles<T>, Failure> {
        if len.checked_mul(size_of::<*mut T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
            return Err(Failure::invalid(argument, format_args!("has {len} slots, which is too large")));
        }
        if len > 0 && ptr.is_null() {
            return Err(Failure::null(argument, &format!("an array of {len} handle slots")));
        }
        if len > 0 && !ptr.is_aligned() {
            return Err(Failure::invalid(argument, "is not aligned for a pointer"));
        }
        Ok(OutHandles { ptr, len })
    }

    /// Hands each value to the caller as a handle, in order; the call built exactly `len` of them.
    pub(crate) fn write(self, values: Vec<T>) {
        for (i, value) in values.into_iter().take(self.len).enumerate() {
            // SAFETY: checked in `new` (non-NULL, aligned, writable for `len` pointers) and `i < len`.
            unsafe { self.ptr.add(i).write(Box::into_raw(Box::new(value))) }
        }
    }
}

/// A caller-provided output buffer of floats, checked when the call starts and written only when it succeeds.
pub(crate) struct OutFloats {
    ptr: *mut f32,
    capacity: usize,
}

impl OutFloats {
    /// Checks a buffer of `capacity` floats; NULL is allowed only when `capacity` is 0.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for writing `capacity` floats until the call returns.
    pub(crate) unsafe fn new(ptr: *mut f32, capacity: usize, argument: &str) -> Result<OutFloats, Failure> {
        if capacity > 0 && ptr.is_null() {
            return Err(Failure::null(argument, &format!("a buffer of {capacity} floats")));
        }
        if capacity > 0 && !ptr.is_aligned() {
            return Err(Failure::invalid(argument, "is not aligned for float"));
        }
        Ok(OutFloats { ptr, capacity })
    }

    /// Like [`OutFloats::new`], for an optional buffer: NULL means the caller does not want this output.
    ///
    /// # Safety
    /// As [`OutFloats::new`].
    pub(crate) unsafe fn optional(ptr: *mut f32, len: usize, argument: &str) -> Result<Option<OutFloats>, Failure> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: forwarded contract.
        unsafe { OutFloats::new(ptr, len, argument) }.map(Some)
    }

    /// Fails with `STEER_STATUS_BUFFER_TOO_SMALL` unless `needed` floats fit.
    pub(crate) fn check_fits(&self, needed: usize, argument: &str, what: &str) -> Result<(), Failure> {
        if needed <= self.capacity {
            Ok(())
        } else {
            Err(Failure::new(
                steer_status::BufferTooSmall,
                format!("`{argument}` holds {} floats, but {what} needs {needed}", self.capacity),
            ))
        }
    }

    /// Copies `values` into the start of the buffer (at most its capacity).
    pub(crate) fn write(self, values: &[f32]) {
        let len = values.len().min(self.capacity);
        if len > 0 {
            // SAFETY: checked in `new` (non-NULL, aligned, writable for `capacity >= len` floats); `values` is the
            // library's own memory, so the two do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr, len) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_that_overflow_are_invalid_arguments() {
        assert_eq!(elements("x", &[3, 4, 5]), Ok(60));
        assert_eq!(elements("x", &[0, usize::MAX]), Ok(0));
        let failure = elements("x", &[usize::MAX, 2]).unwrap_err();
        assert_eq!(failure.status, steer_status::InvalidArgument);
        assert_eq!(elements("x", &[isize::MAX as usize / 4 + 1]).unwrap_err().status, steer_status::InvalidArgument);
    }

    #[test]
    fn string_arrays_name_the_bad_element() {
        let (yes, bad) = (c"yes".as_ptr(), c"n\xffo".as_ptr());
        // SAFETY: arrays of valid pointers to NUL-terminated strings, or NULL.
        unsafe {
            assert_eq!(utf8_array(std::ptr::null(), 0, "x", "text"), Ok(vec![]));
            assert_eq!(utf8_array([yes, yes].as_ptr(), 2, "x", "text"), Ok(vec!["yes", "yes"]));
            let null = utf8_array(std::ptr::null(), 1, "x", "text").unwrap_err();
            assert_eq!(null.status, steer_status::NullArgument);
            let element = utf8_array([yes, std::ptr::null()].as_ptr(), 2, "x", "a response").unwrap_err();
            assert_eq!(element.status, steer_status::NullArgument);
            assert_eq!(element.message, "argument `x[1]` is NULL; expected a response");
            let invalid = utf8_array([yes, yes, bad].as_ptr(), 3, "x", "text").unwrap_err();
            assert_eq!(invalid.status, steer_status::InvalidUtf8);
            assert!(invalid.message.starts_with("argument `x[2]` is not valid UTF-8"), "{}", invalid.message);
        }
    }

    #[test]
    fn null_is_an_empty_array_only_when_empty() {
        // SAFETY: NULL is never read.
        unsafe {
            assert_eq!(floats(std::ptr::null(), 0, "x"), Ok(&[][..]));
            assert_eq!(floats(std::ptr::null(), 1, "x").unwrap_err().status, steer_status::NullArgument);
        }
        let data = [0u32; 4];
        let misaligned = data.as_ptr().cast::<u8>().wrapping_add(1).cast::<f32>();
        // SAFETY: rejected before it is read.
        assert_eq!(unsafe { floats(misaligned, 1, "x") }.unwrap_err().status, steer_status::InvalidArgument);
    }
}
