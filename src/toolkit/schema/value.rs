//! [`Schema`] (one JSON value: scalar, array, map, object or any) and the constraints of a
//! scalar ([`ScalarSchema`]).

use super::object::ObjectSchema;
use super::results::{display, error, failure, join, mismatch, Results, ValidationResult};
use super::type_code::TypeCode;
use crate::toolkit::errors::ApplicationError;
use serde_json::{json, Value};
use std::cmp::Ordering;

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
    /// Whether this is a scalar schema of any type (which looks at a value only for `null`).
    pub fn is_any(&self) -> bool {
        matches!(self, Self::Scalar(s, _) if s.type_code == TypeCode::Any)
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

    pub(super) fn validate_at(&self, path: &str, value: &Value, required: bool, out: &mut Results) {
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
