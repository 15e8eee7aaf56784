//! [`ObjectSchema`]: an object with required and optional properties.

use super::results::{display, error, failure, join, mismatch, Results, ValidationResult, ValidationResultType};
use super::type_code::TypeCode;
use super::value::Schema;
use crate::toolkit::errors::ApplicationError;
use serde_json::{json, Map, Value};

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
    pub(super) description: Option<String>,
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

    pub(super) fn validate_root(&self, value: &Value, out: &mut Results) {
        let empty = Value::Object(Map::new());
        self.validate_value("", if value.is_null() { &empty } else { value }, out);
    }

    pub(super) fn validate_value(&self, path: &str, value: &Value, out: &mut Results) {
        let Value::Object(map) = value else {
            return out.extend(mismatch(path, TypeCode::Map, value, "TYPE_MISMATCH"));
        };
        self.validate_fields(path, |name| map.get(name), map.keys().map(String::as_str), out);
    }

    /// Validates an object given as its fields (each name once, in order: `get` finds one,
    /// `names` lists them), as [`ObjectSchema::validate_and_throw`] validates the same object as
    /// a JSON value: a caller that parsed the object into pairs checks it without building a map.
    ///
    /// # Errors
    /// `INVALID_DATA` with the Error results, as [`ObjectSchema::validate_and_throw`].
    #[allow(clippy::result_large_err)] // the project-wide error type, returned by value everywhere
    pub fn validate_fields_and_throw<'v>(
        &self,
        correlation_id: Option<&str>,
        get: impl Fn(&str) -> Option<&'v Value>,
        names: impl Iterator<Item = &'v str>,
    ) -> Result<(), ApplicationError> {
        let mut out = Vec::new();
        self.validate_fields("", get, names, &mut out);
        failure(correlation_id, &out).map_or(Ok(()), Err)
    }

    /// Whether validating property `name` reads into its value: not for an undeclared name (only
    /// its name is reported) nor for a property of any type (which only must not be null).
    pub fn reads_into(&self, name: &str) -> bool {
        self.properties.iter().find(|p| p.name == name).is_some_and(|p| !p.schema.is_any())
    }

    fn validate_fields<'v>(
        &self,
        path: &str,
        get: impl Fn(&str) -> Option<&'v Value>,
        keys: impl Iterator<Item = &'v str>,
        out: &mut Results,
    ) {
        for p in &self.properties {
            let v = get(&p.name).unwrap_or(&Value::Null);
            p.schema.validate_at(&join(path, &p.name), v, p.required, out);
        }
        if self.allow_undefined {
            return;
        }
        let declared = |k: &&str| self.properties.iter().any(|p| p.name == *k);
        for key in keys.filter(|k| !declared(k)) {
            let msg = format!("{} contains unexpected property {key}", display(path));
            let key_path = join(path, key);
            let r = error(&key_path, "UNEXPECTED_PROPERTY", msg, (), key);
            out.push(ValidationResult { r#type: ValidationResultType::Warning, ..r });
        }
    }
}
