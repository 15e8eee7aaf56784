//! [`ValidationResult`]s and the helpers that build them: paths, type mismatches and the
//! `INVALID_DATA` error of a failed validation.

use super::type_code::TypeCode;
use crate::toolkit::errors::ApplicationError;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

/// The severity of a validation result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ValidationResultType {
    /// Informational only.
    Information,
    /// Suspicious but accepted (non-strict validation).
    Warning,
    /// Fails validation.
    Error,
}

/// One finding of a validation, in the Pip.Services shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationResult {
    /// Dotted path of the value (`""` for the root).
    pub path: String,
    /// The severity.
    pub r#type: ValidationResultType,
    /// A machine code such as `TYPE_MISMATCH`.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// What was expected, if meaningful.
    pub expected: Option<Value>,
    /// What was found (a type name, length, number or key; never a string value).
    pub actual: Option<Value>,
}

pub(super) type Results = Vec<ValidationResult>;

/// An Error result; a null `expected`/`actual` becomes `None`.
pub(super) fn error(
    path: &str,
    code: &str,
    message: String,
    exp: impl Into<Value>,
    act: impl Into<Value>,
) -> ValidationResult {
    let some = |v: Value| Some(v).filter(|v| !v.is_null());
    ValidationResult {
        path: path.to_string(),
        r#type: ValidationResultType::Error,
        code: code.to_string(),
        message,
        expected: some(exp.into()),
        actual: some(act.into()),
    }
}

/// How a path appears in messages: the root `""` is shown as `value`.
pub(super) fn display(path: &str) -> &str {
    if path.is_empty() {
        "value"
    } else {
        path
    }
}

pub(super) fn join<'a>(path: &str, name: &'a str) -> Cow<'a, str> {
    if path.is_empty() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{path}.{name}"))
    }
}

/// The type-mismatch Error (with `code`) when a non-null `value` does not match `expected`.
pub(super) fn mismatch(path: &str, expected: TypeCode, value: &Value, code: &str) -> Option<ValidationResult> {
    if expected.accepts(value) {
        return None;
    }
    let actual = TypeCode::of_value(value).map_or("null", TypeCode::name);
    let (shown, expected) = (display(path), expected.name());
    let msg = format!("{shown} type must be {expected} but found {actual}");
    Some(error(path, code, msg, expected, actual))
}

/// The `INVALID_DATA` error for the Error results, if any (warnings and information are skipped).
pub(super) fn failure(cid: Option<&str>, results: &[ValidationResult]) -> Option<ApplicationError> {
    let is_error = |r: &&ValidationResult| r.r#type == ValidationResultType::Error;
    let errors: Vec<&ValidationResult> = results.iter().filter(is_error).collect();
    if errors.is_empty() {
        return None;
    }
    let messages: Vec<&str> = errors.iter().map(|r| r.message.as_str()).collect();
    let message = format!("Validation failed: {}", messages.join(", "));
    let details = serde_json::to_value(&errors).unwrap_or_default();
    Some(
        ApplicationError::bad_request("INVALID_DATA", message)
            .with_details("results", details)
            .with_correlation_id(cid),
    )
}
