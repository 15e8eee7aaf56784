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
use std::sync::Arc;

/// The parameters of one command call (the JSON object of the request body).
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters(Value);

impl Default for Parameters {
    fn default() -> Self {
        Self(Value::Object(Map::new()))
    }
}

impl Parameters {
    /// Wraps a JSON object.
    pub fn new(map: Map<String, Value>) -> Self {
        Self(Value::Object(map))
    }

    /// The parameters as one JSON object.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// A parameter, `None` when absent or `null`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
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
        self.0.get(name)
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
        self.schema.validate_and_throw(correlation_id, &args.0)?;
        (self.action)(correlation_id.map(str::to_string), args).await.map_err(|e| e.with_correlation_id(correlation_id))
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
}
