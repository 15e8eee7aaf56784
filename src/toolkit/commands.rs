//! Commands: named, schema-validated async actions grouped in a [`CommandSet`].
//!
//! A business component exposes its operations as commands through [`Commandable`]; the generic
//! commandable HTTP service turns each into `POST /<base_route>/<name>`. A command validates its
//! parameters against its [`ObjectSchema`] before the action runs, so actions can read the
//! parameters they declared without re-checking types.

use super::errors::ApplicationError;
use super::json::{JsonText, WriteJson};
use super::schema::ObjectSchema;
use futures::future::BoxFuture;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The parameters of one command call: the fields of the JSON object of the request body, in
/// order, each name once (a repeated name keeps its first place and its last value, as a JSON
/// object parsed into a map does). A command reads a few names, so they are found by comparing
/// names instead of hashing them into a map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters(Vec<(String, Value)>);

impl Parameters {
    /// Wraps a JSON object.
    pub fn new(map: Map<String, Value>) -> Self {
        Self(map.into_iter().collect())
    }

    /// Parses a JSON text whose top level is an object straight into its fields (the values are
    /// parsed as [`Value`]s, so nested objects keep their key order and exact numbers); `None`
    /// when the text is valid JSON but not an object.
    ///
    /// # Errors
    /// The parser's error for text that is not JSON.
    pub fn from_json(text: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        use serde::de::DeserializeSeed;
        let marked = std::cell::Cell::new(false);
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let parsed = TopLevel { marked: &marked }.deserialize(&mut deserializer).and_then(|fields| {
            deserializer.end()?;
            Ok(fields)
        });
        match parsed {
            // The parser's own marker key (see `RAW_VALUE_TOKEN`): parsed exactly as a `Value` is.
            Err(_) if marked.get() => Ok(match serde_json::from_slice::<Value>(text)? {
                Value::Object(map) => Some(Self::new(map)),
                _ => None,
            }),
            parsed => parsed.map(|fields| fields.map(Self)),
        }
    }

    /// The fields in order.
    pub fn fields(&self) -> &[(String, Value)] {
        &self.0
    }

    /// A parameter, `None` when absent or `null`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.get_raw(name).filter(|v| !v.is_null())
    }

    /// A string parameter.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A string parameter that the schema declared required.
    ///
    /// # Errors
    /// `INVALID_DATA` if it is missing (only possible if the schema and the action disagree).
    pub fn required_str(&self, name: &str) -> Result<&str, ApplicationError> {
        self.get_str(name).ok_or_else(|| {
            ApplicationError::bad_request("INVALID_DATA", format!("Validation failed: {name} must not be null"))
        })
    }

    /// An integer parameter.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    /// A boolean parameter.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// A parameter's value as given (JSON `null` included), `None` only when the key is absent.
    pub fn get_raw(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Moves a parameter's value out (leaving `null`), without copying it; `null` when absent.
    pub fn take(&mut self, name: &str) -> Value {
        self.0.iter_mut().find(|(k, _)| k == name).map_or(Value::Null, |(_, v)| v.take())
    }
}

/// The marker key by which `serde_json` recognises its `RawValue` in a map: a `Value` parse of an
/// object whose first key is this one yields something else than that object, so such a body
/// (which no client sends) is handed to the `Value` parser to keep its answer exactly.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Up to this many top-level names a body's repeats are found by comparing names.
const LINEAR_NAMES: usize = 16;

/// Reads the top level of a command body: the object's fields, or `None` for any other JSON value
/// (read through to its end, so text that is not JSON is still the parser's syntax error).
struct TopLevel<'a> {
    /// Set when the object's first key is [`RAW_VALUE_TOKEN`] (the read then stops).
    marked: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<Vec<(String, Value)>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel<'_> {
    type Value = Option<Vec<(String, Value)>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::with_capacity(8);
        // Names are compared one by one while there are few; a body with many (a client's choice)
        // gets a hashed index of them, so finding repeats stays linear in the body's size.
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if fields.is_empty() && key == RAW_VALUE_TOKEN {
                self.marked.set(true);
                return Err(serde::de::Error::custom("raw value marker"));
            }
            let value: Value = map.next_value()?;
            let seen = match &index {
                Some(index) => index.get(&key).copied(),
                None => fields.iter().position(|(k, _)| *k == key),
            };
            match seen {
                Some(i) => fields[i].1 = value,
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), fields.len());
                    }
                    fields.push((key, value));
                    if index.is_none() && fields.len() > LINEAR_NAMES {
                        index = Some(fields.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
                    }
                }
            }
        }
        Ok(Some(fields))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Parsed as values (not skipped), so a number out of range is the same error as before.
        while seq.next_element::<Value>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// What a command returns: serialised JSON, or `None` for "no value" (HTTP 204). Results are
/// serialised once, straight from the typed value, and sent as they are.
pub type CommandOutput = Option<JsonText>;

/// The future a command action returns.
pub type CommandResult = BoxFuture<'static, Result<CommandOutput, ApplicationError>>;

/// Serialises a typed result into a command output.
///
/// # Errors
/// `SERIALIZATION_FAILED` (500) if the value cannot be encoded.
pub fn output<T: serde::Serialize + ?Sized>(value: &T) -> Result<CommandOutput, ApplicationError> {
    JsonText::encode(value)
        .map(Some)
        .map_err(|e| ApplicationError::internal("SERIALIZATION_FAILED", "Cannot encode the result").with_cause(e))
}

/// A typed result that writes its own JSON, as a command output.
pub fn written<T: WriteJson + ?Sized>(value: &T) -> CommandOutput {
    Some(JsonText::write(value))
}

/// A command action.
pub type CommandAction = Arc<dyn Fn(Option<String>, Parameters) -> CommandResult + Send + Sync>;

/// A named, validated action.
#[derive(Clone)]
pub struct Command {
    name: String,
    description: String,
    schema: ObjectSchema,
    action: CommandAction,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").field("name", &self.name).finish()
    }
}

impl Command {
    /// Builds a command from its name, description, parameter schema and action.
    pub fn new<F>(name: &str, description: &str, schema: ObjectSchema, action: F) -> Self
    where
        F: Fn(Option<String>, Parameters) -> CommandResult + Send + Sync + 'static,
    {
        Self { name: name.to_string(), description: description.to_string(), schema, action: Arc::new(action) }
    }

    /// The command name (snake_case, the last route segment).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A one-line description (used in the OpenAPI document).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The parameter schema.
    pub fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    /// Validates the parameters, then runs the action.
    ///
    /// # Errors
    /// `INVALID_DATA` for invalid parameters, or the action's own error.
    pub async fn execute(
        &self,
        correlation_id: Option<&str>,
        args: Parameters,
    ) -> Result<CommandOutput, ApplicationError> {
        self.start(correlation_id, args)?.await.map_err(|e| e.with_correlation_id(correlation_id))
    }

    /// Validates the parameters, then starts the action: its future, which the caller awaits
    /// (no future of this command's own wraps it). The action's error does not carry the
    /// correlation id yet: the caller adds it, as [`Command::execute`] does.
    ///
    /// # Errors
    /// `INVALID_DATA` for invalid parameters.
    pub fn start(&self, correlation_id: Option<&str>, args: Parameters) -> Result<CommandResult, ApplicationError> {
        self.schema.validate_fields_and_throw(correlation_id, &args.0)?;
        Ok((self.action)(correlation_id.map(str::to_string), args))
    }
}

/// An ordered set of commands, with what their results look like for the OpenAPI document.
#[derive(Debug, Clone, Default)]
pub struct CommandSet {
    commands: IndexMap<String, Arc<Command>>,
    /// Result schema by command name (OpenAPI 3.0 JSON); `None` = the command never answers 200.
    results: IndexMap<String, Option<Value>>,
    /// Named schemas the result schemas refer to (`#/components/schemas/<name>`).
    schemas: IndexMap<String, Value>,
}

impl CommandSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a command (a later command with the same name replaces the earlier one).
    pub fn add(&mut self, command: Command) {
        self.commands.insert(command.name.clone(), Arc::new(command));
    }

    /// Documents a command's result: `Some(schema)` for its 200 answer (an OpenAPI 3.0 schema,
    /// which may refer to [`CommandSet::add_schema`] schemas), `None` when it never answers 200.
    pub fn describe_result(&mut self, name: &str, schema: Option<Value>) {
        self.results.insert(name.to_string(), schema);
    }

    /// Adds a named schema that result schemas refer to as `#/components/schemas/<name>`.
    pub fn add_schema(&mut self, name: &str, schema: Value) {
        self.schemas.insert(name.to_string(), schema);
    }

    /// A command's documented result: `None` when undocumented, `Some(None)` when it never
    /// answers 200.
    pub fn result(&self, name: &str) -> Option<&Option<Value>> {
        self.results.get(name)
    }

    /// The named schemas, in insertion order.
    pub fn schemas(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.schemas.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Commands in insertion order.
    pub fn commands(&self) -> impl Iterator<Item = &Arc<Command>> {
        self.commands.values()
    }

    /// A command by name.
    pub fn find(&self, name: &str) -> Option<Arc<Command>> {
        self.commands.get(name).cloned()
    }

    /// Runs a command by name.
    ///
    /// # Errors
    /// `CMD_NOT_FOUND` (400) for an unknown name, else as [`Command::execute`].
    pub async fn execute(
        &self,
        correlation_id: Option<&str>,
        name: &str,
        args: Parameters,
    ) -> Result<CommandOutput, ApplicationError> {
        match self.find(name) {
            Some(c) => c.execute(correlation_id, args).await,
            None => Err(ApplicationError::bad_request("CMD_NOT_FOUND", "Request command does not exist")
                .with_details("command", name)
                .with_correlation_id(correlation_id)),
        }
    }
}

/// A component that exposes its operations as commands.
pub trait Commandable: Send + Sync {
    /// The component's command set.
    fn command_set(&self) -> Arc<CommandSet>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::schema::{Schema, TypeCode};
    use futures::FutureExt;
    use serde_json::json;

    fn set() -> CommandSet {
        let mut s = CommandSet::new();
        s.add(Command::new(
            "echo",
            "Echoes its text.",
            ObjectSchema::new().allow_undefined(true).with_required_property("text", Schema::from(TypeCode::String)),
            |_cid, p| {
                let text = p.get_str("text").map(str::to_string);
                async move { text.map_or(Ok(None), |t| output(&t)) }.boxed()
            },
        ));
        s
    }

    fn args(v: Value) -> Parameters {
        Parameters::new(v.as_object().cloned().unwrap_or_default())
    }

    fn parsed(text: &str) -> Option<Parameters> {
        Parameters::from_json(text.as_bytes()).ok().flatten()
    }

    #[tokio::test]
    async fn validates_before_running() {
        let s = set();
        let out = s.execute(None, "echo", args(json!({"text": "hi"}))).await.unwrap().unwrap();
        assert_eq!(out.as_str(), r#""hi""#);
        let e = s.execute(Some("c1"), "echo", args(json!({"text": 5}))).await.unwrap_err();
        assert_eq!(e.code, "INVALID_DATA");
        assert_eq!(e.message, "Validation failed: text type must be string but found long");
        assert_eq!(e.correlation_id.as_deref(), Some("c1"));
        let e = s.execute(None, "nope", args(json!({}))).await.unwrap_err();
        assert_eq!((e.code.as_str(), e.status), ("CMD_NOT_FOUND", 400));
        assert_eq!(s.commands().map(|c| c.name().to_string()).collect::<Vec<_>>(), vec!["echo"]);
    }

    /// What the body parsed as a `Value` gives: the reference `from_json` must match.
    fn via_value(text: &str) -> Result<Option<Parameters>, (usize, usize)> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Some(Parameters::new(map))),
            Ok(_) => Ok(None),
            Err(e) => Err((e.line(), e.column())),
        }
    }

    #[test]
    fn parses_bodies_as_a_value_parse_would() {
        for text in [
            r#"{"session_id": "s1", "data": {"z": 1, "a": [1.50, -0, 1e3], "big": 18446744073709551615}}"#,
            r#"{"a": 1, "b": 2, "a": {"x": null}}"#,
            r#"{"a": null, "b": false, "c": "é\u00e9\n"}"#,
            "{}",
            " [1, {\"a\": 2}] ",
            r#""text""#,
            "12",
            "-1.5",
            "true",
            "null",
            r#"{"a": 1"#,
            r#"{"a": 1} x"#,
            "[1e400]",
            r#"{"a": [1e400]}"#,
            "[1, 2",
            "{\n\"a\": tru}",
            r#"{"a" 1}"#,
            r#"{"$serde_json::private::RawValue": "{\"session_id\": \"s\"}"}"#,
            r#"{"$serde_json::private::RawValue": 5}"#,
            r#"{"x": 1, "$serde_json::private::RawValue": "{}"}"#,
        ] {
            let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
            assert_eq!(ours, via_value(text), "{text}");
        }
    }

    #[test]
    fn a_body_with_many_names_keeps_first_places_and_last_values() {
        // Past the names compared one by one, repeats are found through the hashed index.
        let mut text = String::from("{");
        for round in 0..3 {
            for i in 0..(LINEAR_NAMES * 4) {
                text.push_str(&format!("\"k{}\": {},", (i * 7 + round) % (LINEAR_NAMES * 3), round * 1000 + i));
            }
        }
        text.push_str("\"k0\": \"last\"}");
        let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
        assert_eq!(ours, via_value(&text));
        let p = parsed(&text).unwrap_or_default();
        assert_eq!(p.fields().len(), LINEAR_NAMES * 3);
        assert_eq!(p.get_str("k0"), Some("last"));
    }

    #[test]
    fn keeps_order_exact_values_and_the_last_of_repeated_names() {
        let p = parsed(r#"{"b": 1, "data": {"z": 1, "a": 2.50, "n": 18446744073709551615}, "b": null}"#)
            .unwrap_or_default();
        let names: Vec<&str> = p.fields().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["b", "data"]);
        assert_eq!(p.get_raw("b"), Some(&Value::Null));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get_raw("missing"), None);
        let data = p.get_raw("data").map(Value::to_string).unwrap_or_default();
        assert_eq!(data, r#"{"z":1,"a":2.5,"n":18446744073709551615}"#);
        let object = Value::Object(p.fields().iter().cloned().collect());
        assert_eq!(object.to_string(), r#"{"b":null,"data":{"z":1,"a":2.5,"n":18446744073709551615}}"#);
    }

    #[test]
    fn typed_reads_and_take() {
        let mut p =
            parsed(r#"{"s": "x", "n": 5, "f": 5.5, "t": true, "o": {"k": [1]}, "z": null}"#).unwrap_or_default();
        assert_eq!(p.get_str("s"), Some("x"));
        assert_eq!(p.get_str("n"), None);
        assert_eq!(p.get_i64("n"), Some(5));
        assert_eq!(p.get_i64("f"), None);
        assert_eq!(p.get_bool("t"), Some(true));
        assert_eq!(p.required_str("s").ok(), Some("x"));
        let e = p.required_str("z").unwrap_err();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("INVALID_DATA", "Validation failed: z must not be null"));
        assert_eq!(p.take("o"), json!({"k": [1]}));
        assert_eq!(p.get_raw("o"), Some(&Value::Null));
        assert_eq!(p.take("missing"), Value::Null);
    }

    #[tokio::test]
    async fn parsed_parameters_are_validated_as_before() {
        let s = set();
        for (text, message) in [
            (r#"{"text": 5}"#, "Validation failed: text type must be string but found long"),
            (r#"{"text": null}"#, "Validation failed: text must not be null"),
            ("{}", "Validation failed: text must not be null"),
            (r#"{"text": "a", "text": [1]}"#, "Validation failed: text type must be string but found array"),
        ] {
            let e = s.execute(None, "echo", parsed(text).unwrap_or_default()).await.unwrap_err();
            assert_eq!(e.message, message, "{text}");
            // The same answer, details included, as validating the body parsed as a `Value`.
            let value: Value = serde_json::from_str(text).unwrap_or_default();
            let schema = s.find("echo").map(|c| c.schema().clone()).unwrap_or_default();
            let reference = schema.validate_and_throw(None, &value).unwrap_err();
            assert_eq!((e.message, e.details), (reference.message, reference.details), "{text}");
        }
        let out = s.execute(None, "echo", parsed(r#"{"text": 1, "text": "hi", "x": 2}"#).unwrap_or_default()).await;
        assert_eq!(out.unwrap().unwrap().as_str(), r#""hi""#);
    }
}
