//! Commands: named, schema-validated async actions grouped in a [`CommandSet`].
//!
//! A business component exposes its operations as commands through [`Commandable`]; the generic
//! commandable HTTP service turns each into `POST /<base_route>/<name>`. A command validates its
//! parameters against its [`ObjectSchema`] before the action runs, so actions can read the
//! parameters they declared without re-checking types.

use super::errors::ApplicationError;
use super::json::{plain_string, skip_json_space, CanonicalJson, Json, JsonText, WriteJson, RAW_VALUE_MARKER};
use super::schema::ObjectSchema;
use futures::future::BoxFuture;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The parameters of one command call: the fields of the JSON object of the request body, in
/// order, each name once (a repeated name keeps its first place and its last value, as a JSON
/// object parsed into a map does). A command reads a few names, so they are found by comparing
/// names instead of hashing them into a map. An array or object written in canonical form (see
/// [`CanonicalJson::new`]) is kept as its text and parsed only when something reads it: a
/// payload the command passes on as it is ([`Parameters::take_json`]) is never parsed.
#[derive(Debug, Clone, Default)]
pub struct Parameters(Vec<(String, Param)>);

/// One parameter's value: parsed, or kept as its canonical text and parsed on first read (only
/// that form pays for the lazy cell).
#[derive(Debug, Clone)]
enum Param {
    Parsed(Value),
    Text(CanonicalJson, OnceLock<Value>),
}

impl Param {
    /// The value (a text parsed, once).
    fn value(&self) -> &Value {
        match self {
            Self::Parsed(v) => v,
            Self::Text(t, v) => v.get_or_init(|| t.to_value()),
        }
    }

    /// The value if it is parsed (a text that something has read is).
    fn parsed(&self) -> Option<&Value> {
        match self {
            Self::Parsed(v) => Some(v),
            Self::Text(_, v) => v.get(),
        }
    }

    /// The value as its text while nothing has read it, else as the value; leaves `null`.
    fn take(&mut self) -> Json {
        match std::mem::replace(self, Self::Parsed(Value::Null)) {
            Self::Parsed(v) => Json::Value(v),
            Self::Text(t, v) => v.into_inner().map_or(Json::Text(t), Json::Value),
        }
    }
}

/// Two parameter lists are equal when they have the same names in the same order with equal
/// values, whichever form each value is held in.
impl PartialEq for Parameters {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|((a, x), (b, y))| a == b && x.value() == y.value())
    }
}

/// What a value read in the body stands in for while it is kept as text, when validation only
/// asks whether it is `null` (a text never is).
static NOT_NULL: Value = Value::Bool(true);

impl Parameters {
    /// Wraps a JSON object.
    pub fn new(map: Map<String, Value>) -> Self {
        Self::parsed(map)
    }

    /// Parses a JSON text whose top level is an object straight into its fields (the values are
    /// parsed as [`Value`]s, so nested objects keep their key order and exact numbers; a
    /// canonical array or object is kept as its text until read); `None` when the text is valid
    /// JSON but not an object.
    ///
    /// # Errors
    /// The parser's error for text that is not JSON.
    pub fn from_json(text: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        use serde::de::DeserializeSeed;
        // The common body first: an object of plain strings (ids, names), read without the
        // parser; anything else is left to it.
        if let Some(fields) = plain_object(text) {
            return Ok(Some(Self(fields)));
        }
        let marked = std::cell::Cell::new(false);
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let parsed = TopLevel { marked: &marked }.deserialize(&mut deserializer).and_then(|fields| {
            deserializer.end()?;
            Ok(fields)
        });
        match parsed {
            // The parser's own marker key (see `RAW_VALUE_MARKER`): parsed exactly as a `Value` is.
            Err(_) if marked.get() => Ok(match serde_json::from_slice::<Value>(text)? {
                Value::Object(map) => Some(Self::new(map)),
                _ => None,
            }),
            parsed => parsed.map(|fields| fields.map(Self::parsed)),
        }
    }

    /// Parameters of parsed values.
    fn parsed(fields: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self(fields.into_iter().map(|(k, v)| (k, Param::Parsed(v))).collect())
    }

    /// The fields in order (each value parsed, if it was kept as text).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> + '_ {
        self.0.iter().map(|(k, p)| (k.as_str(), p.value()))
    }

    /// Validates the fields against `schema`, as [`ObjectSchema::validate_fields_and_throw`]
    /// does; a value kept as text is parsed only when its property's schema reads into it.
    ///
    /// # Errors
    /// `INVALID_DATA` with the Error results.
    #[allow(clippy::result_large_err)] // the project-wide error type, returned by value everywhere
    pub fn validate(&self, schema: &ObjectSchema, correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        let get = |name: &str| {
            self.find(name).map(|p| match p.parsed() {
                Some(v) => v,
                None if schema.reads_into(name) => p.value(),
                None => &NOT_NULL,
            })
        };
        schema.validate_fields_and_throw(correlation_id, get, self.0.iter().map(|(k, _)| k.as_str()))
    }

    fn find(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, p)| p)
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
        self.find(name).map(Param::value)
    }

    /// Moves a parameter's value out (leaving `null`), without copying it; `null` when absent.
    pub fn take(&mut self, name: &str) -> Value {
        self.take_json(name).into_value()
    }

    /// Moves a parameter's value out (leaving `null`) in the form it is held: its canonical text
    /// when nothing has read it, so a payload passed on as it is is never parsed; `null` when
    /// absent.
    pub fn take_json(&mut self, name: &str) -> Json {
        self.0.iter_mut().find(|(k, _)| k == name).map_or(Json::Value(Value::Null), |(_, p)| p.take())
    }
}

/// The fields of a body that is one JSON object whose names are distinct plain strings (what
/// commands are sent: `{"session_id": "…"}`, `open_session`'s names and addresses, a `data`
/// payload), read in one pass over the bytes: plain strings, `true`, `false` and `null` by this
/// reading, any other value (a string with escapes, a number, an array, an object) by the
/// parser on its own. `None` for anything else — a name with an escape or a control character,
/// invalid UTF-8, a repeated name, more than [`PLAIN_NAMES`] names, the parser's marker key,
/// text after the object, a value nested deeper than [`NESTED_DEPTH`], any error — which the
/// parser then reads as a whole, as before. Where it answers, its answer is the parser's: the
/// same names in the same order and the same values.
fn plain_object(body: &[u8]) -> Option<Vec<(String, Param)>> {
    // Read first, made after: a body that turns out not to be plain costs no allocation and no
    // UTF-8 check. Places are kept as `u32` (a body is far shorter), so the list is small.
    u32::try_from(body.len()).ok()?;
    let mut read = [(0u32, 0u32, PlainValue::Null); PLAIN_NAMES];
    let mut count = 0;
    let mut at = skip_json_space(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_json_space(body, at + 1);
    if body.get(at) != Some(&b'}') {
        loop {
            let (name, next) = plain_string(body, at)?;
            let seen = read.get(..count)?;
            let named = |(from, to, _): &(u32, u32, PlainValue)| body.get(*from as usize..*to as usize);
            let name_text = body.get(name.0 as usize..name.1 as usize)?;
            if count == PLAIN_NAMES
                || name_text == RAW_VALUE_MARKER.as_bytes()
                || seen.iter().any(|field| named(field) == Some(name_text))
            {
                return None;
            }
            at = skip_json_space(body, next);
            if body.get(at) != Some(&b':') {
                return None;
            }
            at = skip_json_space(body, at + 1);
            let (value, next) = match body.get(at)? {
                b'"' => match plain_string(body, at) {
                    Some((v, next)) => (PlainValue::String(v.0, v.1), next),
                    None => json_value(at, string_end(body, at)?)?,
                },
                b't' if body.get(at..at + 4) == Some(b"true") => (PlainValue::Bool(true), at + 4),
                b'f' if body.get(at..at + 5) == Some(b"false") => (PlainValue::Bool(false), at + 5),
                b'n' if body.get(at..at + 4) == Some(b"null") => (PlainValue::Null, at + 4),
                b'{' | b'[' => json_value(at, nested_end(body, at)?)?,
                b'-' | b'0'..=b'9' => json_value(at, number_end(body, at))?,
                _ => return None,
            };
            *read.get_mut(count)? = (name.0, name.1, value);
            count += 1;
            at = skip_json_space(body, next);
            match body.get(at)? {
                b',' => at = skip_json_space(body, at + 1),
                b'}' => break,
                _ => return None,
            }
        }
    }
    if skip_json_space(body, at + 1) != body.len() {
        return None;
    }
    // UTF-8 checked once for the whole body: its strings, cut at its quotes, are then UTF-8.
    let text = std::str::from_utf8(body).ok()?;
    let cut = |from: u32, to: u32| text.get(from as usize..to as usize).map(str::to_string);
    let mut fields = Vec::with_capacity(count.max(1));
    for (from, to, value) in read.get(..count)? {
        let value = match *value {
            PlainValue::String(from, to) => Param::Parsed(Value::String(cut(from, to)?)),
            PlainValue::Bool(b) => Param::Parsed(Value::Bool(b)),
            PlainValue::Null => Param::Parsed(Value::Null),
            // An array or object in canonical form stays text until something reads it.
            PlainValue::Json(from, to) => {
                let json = text.get(from as usize..to as usize)?;
                match CanonicalJson::new(json) {
                    Some(canonical) => Param::Text(canonical, OnceLock::new()),
                    None => Param::Parsed(serde_json::from_str(json).ok()?),
                }
            }
        };
        fields.push((cut(*from, *to)?, value));
    }
    Some(fields)
}

/// A value [`plain_object`] reads: a plain string by its place in the body, or the place of any
/// other value, which the parser reads on its own.
#[derive(Debug, Clone, Copy)]
enum PlainValue {
    String(u32, u32),
    Bool(bool),
    Null,
    Json(u32, u32),
}

/// The value between `from` and `to`, for the parser, and the position after it.
fn json_value(from: usize, to: usize) -> Option<(PlainValue, usize)> {
    Some((PlainValue::Json(u32::try_from(from).ok()?, u32::try_from(to).ok()?), to))
}

/// How deep an array or object [`plain_object`] hands to the parser may nest: the parser reads a
/// value on its own with one level more of its limit (128) than inside the body, so a value
/// near the limit is left to the parse of the whole body, which refuses it as before.
const NESTED_DEPTH: usize = 100;

/// The position after the array or object that starts at `at`, found by its brackets (strings
/// skipped); `None` past [`NESTED_DEPTH`] or at the end of the body. Whether it is JSON is the
/// parser's to say.
fn nested_end(body: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    loop {
        match *body.get(i)? {
            b'"' => {
                i = string_end(body, i)?;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > NESTED_DEPTH {
                    return None;
                }
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The position after the string whose opening quote is at `at` (escapes skipped).
fn string_end(body: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match *body.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The position after the bytes a number may be made of, from `at`.
fn number_end(body: &[u8], at: usize) -> usize {
    let len = body.get(at..).map_or(0, |rest| {
        rest.iter().position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).unwrap_or(rest.len())
    });
    at + len
}

/// Up to this many names a body is read by [`plain_object`] (a command has a few).
const PLAIN_NAMES: usize = 8;

/// Up to this many top-level names a body's repeats are found by comparing names.
const LINEAR_NAMES: usize = 16;

/// Reads the top level of a command body: the object's fields, or `None` for any other JSON value
/// (read through to its end, so text that is not JSON is still the parser's syntax error).
struct TopLevel<'a> {
    /// Set when the object's first key is [`RAW_VALUE_MARKER`] (the read then stops).
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
            if fields.is_empty() && key == RAW_VALUE_MARKER {
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
        args.validate(&self.schema, correlation_id)?;
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
            // Bodies of plain strings (read without the parser) and their near misses.
            r#"{"session_id":"9f86d081884c7d659a2feaa0c55ad015"}"#,
            " {\t\"user_id\" :\r\n\"u1\", \"user_name\": \"Ünïcødé ✓\", \"x\": null, \"t\": true, \"f\": false } \n",
            r#"{"a": "x\"y"}"#,
            r#"{"a": "x\u0041"}"#,
            "{\"a\": \"tab\there\"}",
            r#"{"a": "x", "a": "y"}"#,
            r#"{"a": "x",}"#,
            r#"{"a": "x"} {}"#,
            r#"{"a": "x"}}"#,
            r#"{"a" "x"}"#,
            r#"{"a": tru}"#,
            r#"{"a": nul}"#,
            r#"{"a": "x""#,
            r#"{"a": "x"#,
            r#"{"a": 5, "b": "x"}"#,
            r#"{"b": "x", "a": [1]}"#,
            r#"{'a': "x"}"#,
            "{\u{a0}\"a\": \"x\"}",
            "{}  ",
            "{ } x",
            r#"{"$serde_json::private::RawValue": "{}"}"#,
        ] {
            let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
            assert_eq!(ours, via_value(text), "{text}");
        }
    }

    #[test]
    fn plain_bodies_are_read_without_the_parser() {
        let read = |text: &str| plain_object(text.as_bytes()).map(|f| f.len());
        assert_eq!(read(r#"{"session_id": "s1"}"#), Some(1));
        assert_eq!(read(r#" { "a" : "x" , "b":true,"c":false,"d":null } "#), Some(4));
        assert_eq!(read("{}"), Some(0));
        assert_eq!(read(r#"{"a": "x\"y", "b": 1, "c": {"d": [1, "]"]}}"#), Some(3));
        for other in [r#"{"a\"": "x"}"#, r#"{"a": "x", "a": "y"}"#, r#"{"a": 01}"#, r#"{"a": [}"#, "[]", r#""a""#] {
            assert_eq!(read(other), None, "{other}");
        }
        // Each kind of byte that ends the eight-at-a-time scan, at every place of strings up to
        // forty bytes long: the parser's answer.
        for special in ["\\\"", "\\n", "\t", "\u{1}", "é", "\u{7f}", "\"", "✓"] {
            for len in 0..40 {
                for place in 0..=len {
                    let mut value: String = "a".repeat(len);
                    value.insert_str(place, special);
                    let text = format!(r#"{{"k{len}": "{value}", "n": null}}"#);
                    let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
                    assert_eq!(ours, via_value(&text), "{text}");
                }
            }
        }
    }

    #[test]
    fn nested_values_are_read_as_the_whole_body_is_at_any_depth() {
        for depth in [1, 99, 100, 101, 126, 127, 128, 129, 200] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let inner = if open == "[" { "1" } else { "\"v\"" };
                let text =
                    format!(r#"{{"s": "x", "a": {}{inner}{}, "n": -0.5e1}}"#, open.repeat(depth), close.repeat(depth));
                let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
                assert_eq!(ours, via_value(&text), "{depth} {open}");
            }
        }
        for text in [
            r#"{"a": ["]", "\"]", {"}": "{"}], "b": "\\"}"#,
            r#"{"a": [1, 2]], "b": 1}"#,
            r#"{"a": 1.5.5}"#,
            r#"{"a": -}"#,
            r#"{"a": 1e999}"#,
            r#"{"a": 18446744073709551616}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": [1, 2"#,
            r#"{"a": "unterminated\"}"#,
        ] {
            let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
            assert_eq!(ours, via_value(text), "{text}");
        }
    }

    #[test]
    fn bodies_that_are_not_utf_8_are_read_as_the_parser_reads_them() {
        for text in [&b"{\"a\": \"\xff\"}"[..], b"{\"\xc3\": \"x\"}", b"{\"a\": \"\xc3\xa9\"}"] {
            let ours = Parameters::from_json(text).map_err(|e| (e.line(), e.column()));
            let reference = match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(map)) => Ok(Some(Parameters::new(map))),
                Ok(_) => Ok(None),
                Err(e) => Err((e.line(), e.column())),
            };
            assert_eq!(ours, reference, "{text:?}");
        }
    }

    proptest::proptest! {
        /// Bodies made of JSON's pieces, right and wrong: the same answer as a `Value` parse,
        /// whether the plain-string reading or the parser answers.
        #[test]
        fn any_body_is_read_as_a_value_parse_would(pieces in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("{".to_string()),
                proptest::strategy::Just("}".to_string()),
                proptest::strategy::Just(",".to_string()),
                proptest::strategy::Just(":".to_string()),
                proptest::strategy::Just(" ".to_string()),
                proptest::strategy::Just("\n".to_string()),
                proptest::strategy::Just("true".to_string()),
                proptest::strategy::Just("null".to_string()),
                proptest::strategy::Just("1".to_string()),
                proptest::strategy::Just("[".to_string()),
                proptest::strategy::Just("\"".to_string()),
                proptest::strategy::Just("\\".to_string()),
                "\"[a-c\\\\\"é\t]{0,3}\"",
            ],
            0..14,
        )) {
            let text: String = pieces.concat();
            let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
            proptest::prop_assert_eq!(ours, via_value(&text), "{}", text);
            let object = format!("{{{}}}", pieces.concat());
            let ours = Parameters::from_json(object.as_bytes()).map_err(|e| (e.line(), e.column()));
            proptest::prop_assert_eq!(ours, via_value(&object), "{}", object);
        }
    }

    proptest::proptest! {
        /// Objects of a few names (repeats included) and values, plain and not, spaced at
        /// random: the same answer as a `Value` parse.
        #[test]
        fn any_object_is_read_as_a_value_parse_would(fields in proptest::collection::vec(
            (
                "[abé]{0,2}",
                proptest::prop_oneof![
                    proptest::strategy::Just("\"x\""),
                    proptest::strategy::Just("\"9f86d081884c7d659a2feaa0c55ad015\""),
                    proptest::strategy::Just("\"a\\\"b\""),
                    proptest::strategy::Just("\"é ✓\""),
                    proptest::strategy::Just("\"\""),
                    proptest::strategy::Just("true"),
                    proptest::strategy::Just("false"),
                    proptest::strategy::Just("null"),
                    proptest::strategy::Just("-1.5e3"),
                    proptest::strategy::Just("[1, \"x\"]"),
                    proptest::strategy::Just("{\"k\": 1}"),
                ],
                "[ \t\r\n]{0,2}",
            ),
            0..20,
        )) {
            let body: Vec<String> = fields.iter().map(|(k, v, space)| format!("{space}\"{k}\"{space}:{space}{v}{space}")).collect();
            let text = format!("{{{}}}", body.join(","));
            let ours = Parameters::from_json(text.as_bytes()).map_err(|e| (e.line(), e.column()));
            proptest::prop_assert_eq!(ours, via_value(&text), "{}", text);
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

    /// An array or object written as its value writes (spaces aside) is kept as that text: taken
    /// as text while nothing has read it, validated against a schema of any type without being
    /// parsed, parsed once when a schema or a reader looks into it; any other spelling is parsed
    /// at once. Every way, the parameter reads as the parser's value.
    #[test]
    fn canonical_payloads_stay_text_until_read() {
        let body = r#"{"id": "s1", "data": {"n": 1, "cart": [1, 2]}, "user": {"a": 1.5}}"#;
        let any = ObjectSchema::new().with_required_property("data", Schema::any());
        let p = parsed(body).unwrap();
        p.validate(&any, None).unwrap();
        let mut taken = p.clone();
        assert_eq!(taken.take_json("data"), Json::Text(CanonicalJson::new(r#"{"n":1,"cart":[1,2]}"#).unwrap()));
        assert_eq!(taken.get_raw("data"), Some(&Value::Null));
        assert_eq!(taken.clone().take_json("user"), Json::Value(json!({"a": 1.5})));
        assert_eq!(taken.take_json("missing"), Json::Value(Value::Null));
        // Read first (by a getter, or by a schema that looks into it), it is taken as the value.
        let mut read = p.clone();
        assert_eq!(read.get_raw("data"), Some(&json!({"n": 1, "cart": [1, 2]})));
        assert_eq!(read.take_json("data"), Json::Value(json!({"n": 1, "cart": [1, 2]})));
        let map = ObjectSchema::new().with_required_property("data", Schema::map(TypeCode::String));
        let e = p.validate(&map, None).unwrap_err();
        assert_eq!(e.code, "INVALID_DATA");
        assert_eq!(p.clone().take_json("data"), Json::Value(json!({"n": 1, "cart": [1, 2]})));
        assert_eq!(p, Parameters::new(serde_json::from_str::<Value>(body).unwrap().as_object().unwrap().clone()));
    }

    #[test]
    fn keeps_order_exact_values_and_the_last_of_repeated_names() {
        let p = parsed(r#"{"b": 1, "data": {"z": 1, "a": 2.50, "n": 18446744073709551615}, "b": null}"#)
            .unwrap_or_default();
        let names: Vec<&str> = p.fields().map(|(k, _)| k).collect();
        assert_eq!(names, ["b", "data"]);
        assert_eq!(p.get_raw("b"), Some(&Value::Null));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get_raw("missing"), None);
        let data = p.get_raw("data").map(Value::to_string).unwrap_or_default();
        assert_eq!(data, r#"{"z":1,"a":2.5,"n":18446744073709551615}"#);
        let object = Value::Object(p.fields().map(|(k, v)| (k.to_string(), v.clone())).collect());
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
