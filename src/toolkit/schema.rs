//! Parameter schemas: validation of a command's JSON parameters before it runs.
//!
//! This module owns [`TypeCode`], [`Schema`], [`ObjectSchema`] and [`ValidationResult`]. It mirrors
//! the Pip.Services commons `ObjectSchema`/`TypeCode` semantics (required and optional properties,
//! `VALUE_IS_NULL`, `TYPE_MISMATCH` with lenient numeric codes, `UNEXPECTED_PROPERTY` warnings,
//! `VALUE_ISNOT_ARRAY`/`VALUE_ISNOT_MAP`, dotted paths, the `INVALID_DATA` "Validation failed: ..."
//! error) and adds the hardened service's rules: integral codes reject fractions, and strings and
//! numbers can carry length and range limits (`VALUE_TOO_LONG`, `VALUE_TOO_SMALL`,
//! `VALUE_TOO_LARGE`). Schemas also render themselves as OpenAPI 3.0 schema objects.
//!
//! "Integral" means what `serde_json` parsed as an integer: `5` is a `long`, `5.0` a `double`.
//! Array elements and map values may be null. A null root of an [`ObjectSchema`] is validated as
//! an empty object, so its required properties are still reported. Results never echo string
//! values, which may hold session data.

use super::errors::ApplicationError;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

/// The Pip.Services type codes a schema can expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TypeCode {
    /// Any value.
    #[default]
    Any,
    /// A JSON string.
    String,
    /// A JSON boolean.
    Boolean,
    /// An integral JSON number.
    Integer,
    /// An integral JSON number.
    Long,
    /// Any JSON number.
    Float,
    /// Any JSON number.
    Double,
    /// A JSON string in RFC 3339 form.
    DateTime,
    /// A JSON object.
    Map,
    /// A JSON array.
    Array,
}

impl TypeCode {
    /// The lowercase name used in messages (`string`, `long`, `datetime`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Long => "long",
            Self::Float => "float",
            Self::Double => "double",
            Self::DateTime => "datetime",
            Self::Map => "map",
            Self::Array => "array",
        }
    }

    /// The type code of a JSON value (`None` for null).
    pub fn of_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Self::Boolean),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Self::Long),
            Value::Number(_) => Some(Self::Double),
            Value::String(_) => Some(Self::String),
            Value::Array(_) => Some(Self::Array),
            Value::Object(_) => Some(Self::Map),
        }
    }

    /// Whether a non-null value matches this expected type code.
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (Self::Any, _) | (Self::Float | Self::Double, Value::Number(_)) => true,
            (Self::Integer | Self::Long, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Self::String, Value::String(_)) | (Self::Boolean, Value::Bool(_)) => true,
            (Self::DateTime, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            (Self::Map, Value::Object(_)) | (Self::Array, Value::Array(_)) => true,
            _ => false,
        }
    }
}

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

type Results = Vec<ValidationResult>;

/// An Error result; a null `expected`/`actual` becomes `None`.
fn error(path: &str, code: &str, message: String, exp: impl Into<Value>, act: impl Into<Value>) -> ValidationResult {
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

/// The constraints of a [`Schema::Scalar`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScalarSchema {
    /// The expected type.
    pub type_code: TypeCode,
    /// Maximum number of characters of a string value.
    pub max_length: Option<usize>,
    /// Smallest allowed number.
    pub min: Option<i64>,
    /// Largest allowed number.
    pub max: Option<i64>,
}

/// A schema for one JSON value. Build with [`Schema::string`], [`Schema::integer`], ...,
/// [`Schema::map`], [`Schema::array`], `From<TypeCode>` or `From<ObjectSchema>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// A value of one type code, with optional limits and description.
    Scalar(ScalarSchema, Option<String>),
    /// A JSON object with declared properties.
    Object(ObjectSchema),
    /// A JSON array whose elements all follow one schema, with optional description.
    Array(Box<Schema>, Option<String>),
    /// A JSON object whose values all follow one schema, with optional description.
    Map(Box<Schema>, Option<String>),
}

impl From<TypeCode> for Schema {
    fn from(type_code: TypeCode) -> Self {
        let scalar = ScalarSchema { type_code, ..ScalarSchema::default() };
        Self::Scalar(scalar, None)
    }
}

impl From<ObjectSchema> for Schema {
    fn from(schema: ObjectSchema) -> Self {
        Self::Object(schema)
    }
}

impl Schema {
    /// A scalar schema of a type code.
    pub fn of(type_code: TypeCode) -> Self {
        type_code.into()
    }
    /// A string schema.
    pub fn string() -> Self {
        TypeCode::String.into()
    }
    /// A boolean schema.
    pub fn boolean() -> Self {
        TypeCode::Boolean.into()
    }
    /// An integer schema.
    pub fn integer() -> Self {
        TypeCode::Integer.into()
    }
    /// A long schema.
    pub fn long() -> Self {
        TypeCode::Long.into()
    }
    /// A double schema.
    pub fn double() -> Self {
        TypeCode::Double.into()
    }
    /// An RFC 3339 date-time schema.
    pub fn datetime() -> Self {
        TypeCode::DateTime.into()
    }
    /// A schema accepting anything.
    pub fn any() -> Self {
        TypeCode::Any.into()
    }
    /// A map (JSON object with string keys) whose values follow `values`.
    pub fn map(values: impl Into<Schema>) -> Self {
        Self::Map(Box::new(values.into()), None)
    }
    /// An array whose elements follow `items`.
    pub fn array(items: impl Into<Schema>) -> Self {
        Self::Array(Box::new(items.into()), None)
    }

    fn scalar(mut self, set: impl FnOnce(&mut ScalarSchema)) -> Self {
        if let Self::Scalar(s, _) = &mut self {
            set(s);
        }
        self
    }

    /// Limits a string's length in characters (scalar schemas only; ignored otherwise).
    #[must_use]
    pub fn max_length(self, n: usize) -> Self {
        self.scalar(|s| s.max_length = Some(n))
    }

    /// Sets the smallest allowed number (scalar schemas only; ignored otherwise).
    #[must_use]
    pub fn min(self, min: i64) -> Self {
        self.scalar(|s| s.min = Some(min))
    }

    /// Sets the largest allowed number (scalar schemas only; ignored otherwise).
    #[must_use]
    pub fn max(self, max: i64) -> Self {
        self.scalar(|s| s.max = Some(max))
    }

    /// Sets the description emitted in OpenAPI.
    #[must_use]
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        match &mut self {
            Self::Scalar(_, d) | Self::Array(_, d) | Self::Map(_, d) => *d = Some(text.into()),
            Self::Object(o) => o.description = Some(text.into()),
        }
        self
    }

    /// Validates a root value. Null is accepted, except that an object schema still reports its
    /// missing required properties.
    pub fn validate(&self, value: &Value) -> Vec<ValidationResult> {
        let mut out = Vec::new();
        match self {
            Self::Object(o) => o.validate_root(value, &mut out),
            _ => self.validate_at("", value, false, &mut out),
        }
        out
    }

    /// Validates and fails with `INVALID_DATA` (400) when any Error result is found.
    #[allow(clippy::result_large_err)] // the project-wide error type, returned by value everywhere
    pub fn validate_and_throw(&self, correlation_id: Option<&str>, value: &Value) -> Result<(), ApplicationError> {
        failure(correlation_id, &self.validate(value)).map_or(Ok(()), Err)
    }

    /// The OpenAPI 3.0 schema object of this schema.
    pub fn to_openapi(&self) -> Value {
        let (mut out, description) = match self {
            Self::Object(o) => return o.to_openapi(),
            Self::Scalar(s, d) => (s.to_openapi(), d),
            Self::Array(items, d) => (json!({"type": "array", "items": items.to_openapi()}), d),
            Self::Map(values, d) => {
                let values = match values.as_ref() {
                    Self::Scalar(s, None) if s.type_code == TypeCode::Any => json!({}),
                    other => other.to_openapi(),
                };
                (json!({"type": "object", "additionalProperties": values}), d)
            }
        };
        if let (Some(d), Value::Object(m)) = (description, &mut out) {
            m.insert("description".into(), json!(d));
        }
        out
    }

    fn validate_at(&self, path: &str, value: &Value, required: bool, out: &mut Results) {
        if value.is_null() {
            if required {
                let msg = format!("{} must not be null", display(path));
                out.push(error(path, "VALUE_IS_NULL", msg, "NOT NULL", ()));
            }
            return;
        }
        match (self, value) {
            (Self::Scalar(s, _), _) => s.validate(path, value, out),
            (Self::Object(o), _) => o.validate_value(path, value, out),
            (Self::Array(items, _), Value::Array(elements)) => {
                for (i, element) in elements.iter().enumerate() {
                    items.validate_at(&join(path, &i.to_string()), element, false, out);
                }
            }
            (Self::Map(values, _), Value::Object(entries)) => {
                for (key, v) in entries {
                    values.validate_at(&join(path, key), v, false, out);
                }
            }
            (Self::Array(..), _) => out.extend(mismatch(path, TypeCode::Array, value, "VALUE_ISNOT_ARRAY")),
            (Self::Map(..), _) => out.extend(mismatch(path, TypeCode::Map, value, "VALUE_ISNOT_MAP")),
        }
    }
}

impl ScalarSchema {
    fn validate(&self, path: &str, value: &Value, out: &mut Results) {
        if let Some(r) = mismatch(path, self.type_code, value, "TYPE_MISMATCH") {
            return out.push(r);
        }
        let shown = display(path);
        if let (Value::String(s), Some(limit)) = (value, self.max_length) {
            let len = s.chars().count();
            if len > limit {
                let msg = format!("{shown} length must not exceed {limit} characters");
                out.push(error(path, "VALUE_TOO_LONG", msg, limit, len));
            }
        }
        let Value::Number(n) = value else { return };
        // Integers are int64 (the OpenAPI format says so): a larger one is out of range, never
        // "absent" to a reader asking for an i64 (a declared `max` below reports itself further on).
        let int64 = matches!(self.type_code, TypeCode::Integer | TypeCode::Long);
        if int64 && self.max.is_none() && n.as_i64().is_none() {
            let msg = format!("{shown} must be at most {}", i64::MAX);
            return out.push(error(path, "VALUE_TOO_LARGE", msg, i64::MAX, n.clone()));
        }
        // Exact for integers; a u64 beyond i64 is above every bound; fractions compare as f64.
        let cmp = |bound: i64| match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.cmp(&bound),
            (None, _) if n.is_u64() => Ordering::Greater,
            (None, f) => f.and_then(|f| f.partial_cmp(&(bound as f64))).unwrap_or(Ordering::Equal),
        };
        if let Some(min) = self.min.filter(|m| cmp(*m).is_lt()) {
            let msg = format!("{shown} must be at least {min}");
            out.push(error(path, "VALUE_TOO_SMALL", msg, min, n.clone()));
        }
        if let Some(max) = self.max.filter(|m| cmp(*m).is_gt()) {
            let msg = format!("{shown} must be at most {max}");
            out.push(error(path, "VALUE_TOO_LARGE", msg, max, n.clone()));
        }
    }

    fn to_openapi(&self) -> Value {
        let mut out = match self.type_code {
            TypeCode::Any => json!({"nullable": true}),
            TypeCode::String => json!({"type": "string"}),
            TypeCode::Boolean => json!({"type": "boolean"}),
            TypeCode::Integer | TypeCode::Long => json!({"type": "integer", "format": "int64"}),
            TypeCode::Float | TypeCode::Double => json!({"type": "number"}),
            TypeCode::DateTime => json!({"type": "string", "format": "date-time"}),
            TypeCode::Map => json!({"type": "object", "additionalProperties": {}}),
            TypeCode::Array => json!({"type": "array", "items": {}}),
        };
        if let Value::Object(m) = &mut out {
            if let (TypeCode::String, Some(n)) = (self.type_code, self.max_length) {
                m.insert("maxLength".into(), json!(n));
            }
            use TypeCode::{Double, Float, Integer, Long};
            let numeric = matches!(self.type_code, Integer | Long | Float | Double);
            for (key, bound) in [("minimum", self.min), ("maximum", self.max)] {
                if let Some(b) = bound.filter(|_| numeric) {
                    m.insert(key.into(), json!(b));
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Property {
    name: String,
    required: bool,
    schema: Schema,
}

/// A schema for a JSON object with declared required and optional properties.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectSchema {
    properties: Vec<Property>,
    allow_undefined: bool,
    description: Option<String>,
}

impl ObjectSchema {
    /// An empty object schema that warns about undeclared properties.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_property(mut self, name: impl Into<String>, required: bool, schema: Schema) -> Self {
        let name = name.into();
        self.properties.push(Property { name, required, schema });
        self
    }

    /// Declares a property that must be present and non-null.
    #[must_use]
    pub fn with_required_property(self, name: impl Into<String>, schema: impl Into<Schema>) -> Self {
        self.with_property(name, true, schema.into())
    }

    /// Declares a property that may be missing or null.
    #[must_use]
    pub fn with_optional_property(self, name: impl Into<String>, schema: impl Into<Schema>) -> Self {
        self.with_property(name, false, schema.into())
    }

    /// Whether undeclared properties are accepted silently (default `false`: each gives a warning).
    #[must_use]
    pub fn allow_undefined(mut self, allow: bool) -> Self {
        self.allow_undefined = allow;
        self
    }

    /// Sets the description emitted in OpenAPI.
    #[must_use]
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Validates a root value; null is treated as an empty object.
    pub fn validate(&self, value: &Value) -> Vec<ValidationResult> {
        let mut out = Vec::new();
        self.validate_root(value, &mut out);
        out
    }

    /// Validates and fails with `INVALID_DATA` (400) when any Error result is found.
    #[allow(clippy::result_large_err)] // the project-wide error type, returned by value everywhere
    pub fn validate_and_throw(&self, correlation_id: Option<&str>, value: &Value) -> Result<(), ApplicationError> {
        failure(correlation_id, &self.validate(value)).map_or(Ok(()), Err)
    }

    /// The OpenAPI 3.0 schema object of this schema.
    pub fn to_openapi(&self) -> Value {
        let (mut properties, mut required) = (Map::new(), Vec::new());
        for p in &self.properties {
            properties.insert(p.name.clone(), p.schema.to_openapi());
            if p.required {
                required.push(p.name.as_str());
            }
        }
        let mut out = json!({"type": "object", "properties": properties});
        if let Value::Object(m) = &mut out {
            if !required.is_empty() {
                m.insert("required".into(), json!(required));
            }
            if let Some(d) = &self.description {
                m.insert("description".into(), json!(d));
            }
        }
        out
    }

    fn validate_root(&self, value: &Value, out: &mut Results) {
        let empty = Value::Object(Map::new());
        self.validate_value("", if value.is_null() { &empty } else { value }, out);
    }

    fn validate_value(&self, path: &str, value: &Value, out: &mut Results) {
        let Value::Object(map) = value else {
            return out.extend(mismatch(path, TypeCode::Map, value, "TYPE_MISMATCH"));
        };
        for p in &self.properties {
            let v = map.get(&p.name).unwrap_or(&Value::Null);
            let path = join(path, &p.name);
            p.schema.validate_at(&path, v, p.required, out);
        }
        if self.allow_undefined {
            return;
        }
        let declared = |k: &&String| self.properties.iter().any(|p| &p.name == *k);
        for key in map.keys().filter(|k| !declared(k)) {
            let msg = format!("{} contains unexpected property {key}", display(path));
            let key_path = join(path, key);
            let r = error(&key_path, "UNEXPECTED_PROPERTY", msg, (), key.as_str());
            out.push(ValidationResult { r#type: ValidationResultType::Warning, ..r });
        }
    }
}

/// How a path appears in messages: the root `""` is shown as `value`.
fn display(path: &str) -> &str {
    if path.is_empty() {
        "value"
    } else {
        path
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The type-mismatch Error (with `code`) when a non-null `value` does not match `expected`.
fn mismatch(path: &str, expected: TypeCode, value: &Value, code: &str) -> Option<ValidationResult> {
    if expected.accepts(value) {
        return None;
    }
    let actual = TypeCode::of_value(value).map_or("null", TypeCode::name);
    let (shown, expected) = (display(path), expected.name());
    let msg = format!("{shown} type must be {expected} but found {actual}");
    Some(error(path, code, msg, expected, actual))
}

/// The `INVALID_DATA` error for the Error results, if any (warnings and information are skipped).
fn failure(cid: Option<&str>, results: &[ValidationResult]) -> Option<ApplicationError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session_schema() -> ObjectSchema {
        ObjectSchema::new()
            .with_required_property("session_id", Schema::string().max_length(8))
            .with_optional_property(
                "paging",
                ObjectSchema::new()
                    .with_optional_property("skip", Schema::integer().min(0))
                    .with_optional_property("take", Schema::integer().min(0).max(100))
                    .with_optional_property("total", TypeCode::Boolean),
            )
            .with_optional_property("filter", Schema::map(TypeCode::Any))
            .with_optional_property("ids", Schema::array(TypeCode::Long))
            .with_optional_property("request_time", TypeCode::DateTime)
            .allow_undefined(true)
    }

    /// The messages of validating `value` against `schema`.
    fn check(schema: impl Into<Schema>, value: Value) -> Vec<String> {
        let results = schema.into().validate(&value);
        results.into_iter().map(|r| r.message).collect()
    }

    #[test]
    fn type_mismatch_is_reported_and_thrown() {
        let value = json!({"session_id": 123});
        let msg = "session_id type must be string but found long";
        let results = session_schema().validate(&value);
        assert_eq!(results.len(), 1);
        let err = session_schema().validate_and_throw(Some("c1"), &value);
        let err = err.unwrap_err();
        assert_eq!(err.message, format!("Validation failed: {msg}"));
        assert_eq!((err.status, err.code.as_str()), (400, "INVALID_DATA"));
        assert_eq!(err.correlation_id.as_deref(), Some("c1"));
        let expected = json!({"path": "session_id", "type": "Error", "code": "TYPE_MISMATCH",
            "message": msg, "expected": "string", "actual": "long"});
        assert_eq!(err.details["results"], json!([expected.clone()]));
        assert_eq!(serde_json::to_value(&results[0]).unwrap_or_default(), expected);
    }

    #[test]
    fn missing_or_null_required_property_is_an_error() {
        for value in [json!({}), json!({"session_id": null}), Value::Null] {
            let results = session_schema().validate(&value);
            assert_eq!(results.len(), 1);
            assert_eq!(results[0].message, "session_id must not be null");
            assert_eq!(results[0].code, "VALUE_IS_NULL");
            assert_eq!(results[0].expected, Some(json!("NOT NULL")));
        }
        let ok = json!({"session_id": "s1", "paging": null, "filter": null});
        assert!(session_schema().validate(&ok).is_empty());
        assert!(session_schema().validate_and_throw(None, &ok).is_ok());
        assert!(check(Schema::string(), Value::Null).is_empty());
    }

    #[test]
    fn nested_paths_are_dotted_and_strings_are_not_coerced() {
        let value = json!({"session_id": "s", "paging": {"take": "1", "skip": 2}});
        let results = session_schema().validate(&value);
        assert_eq!(results[0].path, "paging.take");
        let msg = "paging.take type must be integer but found string";
        assert_eq!(check(session_schema(), value), [msg]);
        let value = json!({"session_id": "s", "paging": 3});
        let msg = "paging type must be map but found long";
        assert_eq!(check(session_schema(), value), [msg]);
    }

    #[test]
    fn numeric_codes_are_lenient_except_fractions_for_integers() {
        assert!(check(Schema::integer(), json!(5)).is_empty());
        assert!(check(Schema::long(), json!(i64::MAX)).is_empty());
        assert!(check(Schema::double(), json!(5)).is_empty());
        assert!(check(TypeCode::Float, json!(5.5)).is_empty());
        assert!(check(Schema::any(), json!({"a": [1]})).is_empty());
        let msg = "value type must be integer but found double";
        assert_eq!(check(Schema::integer(), json!(5.5)), [msg]);
        let big = json!(u64::MAX);
        assert_eq!(check(Schema::integer().min(1), big.clone()), ["value must be at most 9223372036854775807"]);
        assert!(check(Schema::double(), big).is_empty());
        let msg = "value type must be double but found string";
        assert_eq!(check(Schema::double(), json!("10")), [msg]);
        let msg = "value type must be boolean but found array";
        assert_eq!(check(Schema::boolean(), json!([])), [msg]);
    }

    #[test]
    fn datetimes_must_parse_as_rfc3339() {
        assert!(check(Schema::datetime(), json!("2024-05-01T10:00:00Z")).is_empty());
        assert!(check(TypeCode::DateTime, json!("2024-05-01T10:00:00.1+02:00")).is_empty());
        let msg = "value type must be datetime but found string";
        assert_eq!(check(Schema::datetime(), json!("yesterday")), [msg]);
        assert_eq!(check(Schema::datetime(), json!("2024-13-01T10:00:00Z")), [msg]);
        let value = json!({"session_id": "s", "request_time": 17});
        let msg = "request_time type must be datetime but found long";
        assert_eq!(check(session_schema(), value), [msg]);
    }

    #[test]
    fn length_and_range_rules() {
        let value = json!({"session_id": "ééééééééé", "paging": {"skip": -1, "take": 101}});
        let results = session_schema().validate(&value);
        let codes: Vec<&str> = results.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["VALUE_TOO_LONG", "VALUE_TOO_SMALL", "VALUE_TOO_LARGE"]);
        assert_eq!(results[0].expected, Some(json!(8)));
        assert_eq!(results[0].actual, Some(json!(9)));
        let expected = [
            "session_id length must not exceed 8 characters",
            "paging.skip must be at least 0",
            "paging.take must be at most 100",
        ];
        assert_eq!(check(session_schema(), value), expected);
        let value = json!({"session_id": "éééééééé", "paging": {"take": 100}});
        assert!(check(session_schema(), value).is_empty());
        let range = Schema::double().min(1).max(2);
        assert_eq!(check(range.clone(), json!(0.5)), ["value must be at least 1"]);
        assert_eq!(check(range.clone(), json!(2.5)), ["value must be at most 2"]);
        assert!(check(range, json!(1.5)).is_empty());
        let msg = "value must be at most 10";
        assert_eq!(check(Schema::long().max(10), json!(u64::MAX)), [msg]);
    }

    #[test]
    fn undeclared_properties_warn_only_when_not_allowed() {
        let strict = ObjectSchema::new().with_required_property("id", TypeCode::String);
        let value = json!({"id": "a", "extra": 1});
        let results = strict.validate(&value);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].r#type, ValidationResultType::Warning);
        assert_eq!(results[0].code, "UNEXPECTED_PROPERTY");
        assert_eq!(results[0].path, "extra");
        assert_eq!(results[0].message, "value contains unexpected property extra");
        assert!(strict.validate_and_throw(None, &value).is_ok());
        assert!(strict.clone().allow_undefined(true).validate(&value).is_empty());
        let nested = ObjectSchema::new().with_optional_property("inner", strict);
        let msg = "inner contains unexpected property x";
        assert_eq!(check(nested, json!({"inner": {"id": "a", "x": 0}})), [msg]);
    }

    #[test]
    fn map_and_array_elements_have_indexed_paths() {
        let value = json!({"session_id": "s", "ids": [1, "two", null], "filter": {"k": [1]}});
        let msg = "ids.1 type must be long but found string";
        assert_eq!(check(session_schema(), value), [msg]);
        let value = json!({"a": "x", "b": true});
        let msg = "b type must be string but found boolean";
        assert_eq!(check(Schema::map(Schema::string()), value), [msg]);
        let msg = "1 type must be integer but found double";
        assert_eq!(check(Schema::array(Schema::integer()), json!([1, 2.5])), [msg]);
        let results = Schema::array(TypeCode::Any).validate(&json!({}));
        assert_eq!(results[0].message, "value type must be array but found map");
        assert_eq!(results[0].code, "VALUE_ISNOT_ARRAY");
        let err = Schema::map(TypeCode::Any).validate_and_throw(None, &json!([]));
        let err = err.unwrap_err();
        assert_eq!(err.message, "Validation failed: value type must be map but found array");
        assert_eq!(err.details["results"][0]["code"], "VALUE_ISNOT_MAP");
    }

    #[test]
    fn only_error_messages_are_joined() {
        let schema = session_schema().allow_undefined(false);
        let err = schema.validate_and_throw(None, &json!({"x": 1, "ids": "a"}));
        let err = err.unwrap_err();
        let msg = "session_id must not be null, ids type must be array but found string";
        assert_eq!(err.message, format!("Validation failed: {msg}"));
        assert_eq!(err.details["results"].as_array().map(Vec::len), Some(2));
        assert_eq!(err.correlation_id, None);
    }

    #[test]
    fn renders_openapi() {
        let schema = ObjectSchema::new()
            .with_required_property("id", Schema::string().max_length(256).describe("Id"))
            .with_optional_property(
                "paging",
                ObjectSchema::new()
                    .with_optional_property("skip", Schema::integer().min(0))
                    .with_optional_property("total", TypeCode::Boolean),
            )
            .with_optional_property("filter", Schema::map(TypeCode::Any))
            .with_optional_property("ratios", Schema::array(Schema::double().max(1)))
            .with_optional_property("at", TypeCode::DateTime)
            .with_required_property("data", TypeCode::Any)
            .allow_undefined(true)
            .describe("Open a session");
        let expected = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "maxLength": 256, "description": "Id"},
                "paging": {"type": "object", "properties": {
                    "skip": {"type": "integer", "format": "int64", "minimum": 0},
                    "total": {"type": "boolean"}}},
                "filter": {"type": "object", "additionalProperties": {}},
                "ratios": {"type": "array", "items": {"type": "number", "maximum": 1}},
                "at": {"type": "string", "format": "date-time"},
                "data": {"nullable": true}
            },
            "required": ["id", "data"],
            "description": "Open a session"
        });
        assert_eq!(schema.to_openapi().to_string(), expected.to_string());
        assert_eq!(Schema::from(schema).to_openapi(), expected);
        let map = Schema::map(Schema::long()).describe("Counters").to_openapi();
        let expected = json!({"type": "object", "description": "Counters",
            "additionalProperties": {"type": "integer", "format": "int64"}});
        assert_eq!(map, expected);
    }
}
