//! [`TypeCode`]: the Pip.Services type codes and how a JSON value matches one.

use serde_json::Value;

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
