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

mod object;
mod results;
mod type_code;
mod value;

pub use object::ObjectSchema;
pub use results::{ValidationResult, ValidationResultType};
pub use type_code::TypeCode;
pub use value::{ScalarSchema, Schema};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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

    #[test]
    fn fields_are_validated_as_the_object_is() {
        let strict = session_schema().allow_undefined(false);
        for value in [
            json!({"session_id": "s1"}),
            json!({}),
            json!({"session_id": null, "paging": {"take": "1"}}),
            json!({"session_id": 5, "ids": [1, "two"], "extra": true}),
            json!({"session_id": "ééééééééé", "request_time": "yesterday", "filter": []}),
        ] {
            let fields: Vec<(String, Value)> =
                value.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
            for schema in [session_schema(), strict.clone()] {
                let expected = schema.validate_and_throw(Some("c"), &value).map_err(|e| (e.message, e.details));
                let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                let names = fields.iter().map(|(k, _)| k.as_str());
                let found = schema.validate_fields_and_throw(Some("c"), get, names).map_err(|e| (e.message, e.details));
                assert_eq!(found, expected, "{value}");
            }
        }
        // Undeclared fields are warnings, as for the object: not an error.
        let fields = [("session_id", json!("s")), ("extra", json!(1))];
        let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
        let names = fields.iter().map(|(k, _)| *k);
        assert!(session_schema().allow_undefined(false).validate_fields_and_throw(None, get, names).is_ok());
    }
}
