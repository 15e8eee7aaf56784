//! Container configuration: the descriptor list, typed per-component sections, and redaction.
//!
//! A config file is a Pip template (see [`super::template`]) rendered from an explicit parameter
//! map, then parsed as YAML (JSON is YAML too) into a list of entries, each with `descriptor:` plus
//! that component's keys. A top-level map is also accepted: each value is one entry.
//! [`ComponentConfig::section`] deserialises an entry into a typed settings struct through a
//! *lenient* deserializer, because Pip configs carry every scalar as text: `port: "8080"`,
//! `enabled: "true"` and `port: 8080` must all work, and an empty value (`port: {{HTTP_PORT}}`
//! with the variable unset) means "not set". YAML parsing stays behind this one module, so the
//! YAML crate can be swapped in one place.

use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::template;
use indexmap::IndexMap;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

/// Template parameters: ordered, looked up case-insensitively by the renderer.
pub type ConfigParameters = IndexMap<String, String>;

/// One component entry of the configuration.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// The entry's descriptor.
    pub descriptor: Descriptor,
    /// Position of the entry in the file (0-based).
    pub index: usize,
    /// The whole entry (including `descriptor`) as JSON.
    pub value: Value,
}

impl ComponentConfig {
    /// Builds an entry from a descriptor and a JSON object of keys (used by tests and code).
    pub fn new(descriptor: Descriptor, value: Value) -> Self {
        Self { descriptor, index: 0, value }
    }

    /// Deserialises the entry into a typed section; unknown keys are ignored, empty values count
    /// as absent, and scalars are converted from text where the target type asks for it.
    ///
    /// # Errors
    /// `Misconfiguration` / `BAD_CONFIG` naming the entry and the offending key.
    pub fn section<T: DeserializeOwned>(&self) -> Result<T, ApplicationError> {
        T::deserialize(Lenient(&self.value)).map_err(|e| {
            ApplicationError::config(
                "BAD_CONFIG",
                format!("Component #{} ({}): {}", self.index + 1, self.descriptor, e),
            )
            .with_details("descriptor", self.descriptor.to_string())
        })
    }

    /// The entry flattened to Pip's dotted keys (`connection.port`), with secrets redacted.
    pub fn redacted(&self) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        flatten("", &self.value, &mut out);
        for (k, v) in out.iter_mut() {
            if is_secret_key(k) && !v.is_empty() {
                *v = "***".to_string();
            }
        }
        out
    }
}

/// Whether a dotted config key names a secret (password, secret, key material, token, or a URI
/// that may embed credentials).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "pass", "secret", "token", "api_key", "api_keys", "uri", "ssl_key"]
        .iter()
        .any(|s| k.split('.').any(|part| part == *s || part.ends_with(&format!("_{s}"))))
}

fn flatten(prefix: &str, v: &Value, out: &mut IndexMap<String, String>) {
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| flatten(&key(&i.to_string()), v, out)),
        Value::Null => {
            out.insert(prefix.to_string(), String::new());
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// A parsed configuration: the entries that have a valid descriptor, and a problem for each entry
/// that has none (so the container can list them together with every other problem it finds).
#[derive(Debug, Clone, Default)]
pub struct ParsedConfig {
    /// Entries with a valid descriptor, in file order.
    pub components: Vec<ComponentConfig>,
    /// One problem per entry without a valid descriptor, as `(entry index, message)`.
    pub problems: Vec<(usize, String)>,
}

/// Renders and parses a configuration text, keeping entries with a bad descriptor as problems.
///
/// # Errors
/// A template or YAML error (with line and column), or a document that is not a list (or map) of
/// components: nothing else can be read from such a text.
pub fn parse_config_entries(text: &str, params: &ConfigParameters) -> Result<ParsedConfig, ApplicationError> {
    let rendered = template::render(text, params)?;
    let doc: Value = serde_yaml::from_str(&rendered).map_err(|e| {
        let mut err = ApplicationError::config("BAD_CONFIG", format!("Configuration is not valid YAML: {e}"));
        if let Some(loc) = e.location() {
            err = err.with_details("line", loc.line()).with_details("column", loc.column());
        }
        err
    })?;
    let entries: Vec<Value> = match doc {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
        _ => return Err(ApplicationError::config("BAD_CONFIG", "Configuration must be a list of components")),
    };
    let mut parsed = ParsedConfig::default();
    for (index, value) in entries.into_iter().enumerate() {
        match value.get("descriptor").and_then(Value::as_str) {
            None => parsed
                .problems
                .push((index, format!("Component #{}: component configuration must have a descriptor", index + 1))),
            Some(s) => match s.parse::<Descriptor>() {
                Ok(descriptor) => parsed.components.push(ComponentConfig { descriptor, index, value }),
                Err(e) => parsed.problems.push((index, format!("Component #{}: {}", index + 1, e.message))),
            },
        }
    }
    Ok(parsed)
}

/// Renders and parses a configuration text into its component entries.
///
/// # Errors
/// As [`parse_config_entries`], or `BAD_CONFIG` listing **every** entry without a valid
/// descriptor.
pub fn parse_config(text: &str, params: &ConfigParameters) -> Result<Vec<ComponentConfig>, ApplicationError> {
    let parsed = parse_config_entries(text, params)?;
    if parsed.problems.is_empty() {
        Ok(parsed.components)
    } else {
        Err(config_problems(parsed.problems.into_iter().map(|(_, p)| p).collect()))
    }
}

/// One `BAD_CONFIG` error listing every problem (message lines and `details.errors`).
pub fn config_problems(problems: Vec<String>) -> ApplicationError {
    ApplicationError::config(
        "BAD_CONFIG",
        format!("Configuration has {} problem(s): {}", problems.len(), problems.join("; ")),
    )
    .with_details("errors", problems)
}

/// A serde deserializer over a JSON value that accepts Pip's text-typed scalars.
struct Lenient<'de>(&'de Value);

type DeError = de::value::Error;

fn is_absent(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(str::is_empty)
}

impl<'de> Lenient<'de> {
    fn invalid(&self, exp: &str) -> DeError {
        de::Error::custom(format!("invalid value {}, expected {exp}", self.0))
    }

    fn int<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Number(n) if n.is_i64() => visitor.visit_i64(n.as_i64().unwrap_or_default()),
            Value::Number(n) if n.is_u64() => visitor.visit_u64(n.as_u64().unwrap_or_default()),
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => visitor.visit_i64(i),
                Err(_) => Err(self.invalid("an integer")),
            },
            _ => Err(self.invalid("an integer")),
        }
    }
}

impl<'de> de::Deserializer<'de> for Lenient<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or_default())
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(a) => visitor.visit_seq(LenientSeq(a.iter())),
            Value::Object(m) => visitor.visit_map(LenientMap { iter: m.iter(), value: None }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::String(s) => {
                super::data::boolean_word(s).map_or_else(|| Err(self.invalid("a boolean")), |b| visitor.visit_bool(b))
            }
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                visitor.visit_bool(n.as_i64() == Some(1))
            }
            _ => Err(self.invalid("a boolean")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.int(v)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Number(n) => visitor.visit_f64(n.as_f64().unwrap_or_default()),
            Value::String(s) => {
                s.trim().parse::<f64>().map_or_else(|_| Err(self.invalid("a number")), |f| visitor.visit_f64(f))
            }
            _ => Err(self.invalid("a number")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => Err(self.invalid("a string")),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if is_absent(self.0) {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(LenientSeq(a.iter())),
            // Pip passes lists as comma-separated text (`cors_origins: "a, b"`).
            Value::String(s) => {
                let items: Vec<Value> = s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                visitor.visit_seq(OwnedSeq(items.into_iter()))
            }
            _ => Err(self.invalid("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(LenientMap { iter: m.iter(), value: None }),
            _ => Err(self.invalid("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.trim().to_ascii_lowercase().into_deserializer()),
            _ => Err(self.invalid("one of the documented words")),
        }
    }

    forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

struct LenientSeq<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for LenientSeq<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        self.0.next().map(|v| seed.deserialize(Lenient(v))).transpose()
    }
}

struct OwnedSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for OwnedSeq {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(v) => seed.deserialize(v).map(Some).map_err(de::Error::custom),
            None => Ok(None),
        }
    }
}

struct LenientMap<'de> {
    iter: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for LenientMap<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        // Absent values (null or empty text) are skipped so that defaults apply.
        for (k, v) in self.iter.by_ref() {
            if !is_absent(v) {
                self.value = Some(v);
                return seed.deserialize(k.as_str().into_deserializer()).map(Some);
            }
        }
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(Lenient(v)),
            None => Err(de::Error::custom("value without a key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Conn {
        host: String,
        port: u16,
        secure: bool,
        origins: Vec<String>,
        timeout: Option<u64>,
        mode: Mode,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Always,
        Never,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Entry {
        name: String,
        connection: Conn,
    }

    fn entry(v: Value) -> ComponentConfig {
        ComponentConfig::new("a:b:c:d:1.0".parse().unwrap(), v)
    }

    #[test]
    fn text_scalars_convert_and_empty_means_default() {
        let c = entry(json!({"descriptor": "a:b:c:d:1.0", "name": 5, "connection": {
            "host": "", "port": "8080", "secure": "yes", "origins": "a.com, b.com", "timeout": null, "mode": "NEVER"}}));
        let e: Entry = c.section().unwrap();
        assert_eq!(
            e,
            Entry {
                name: "5".into(),
                connection: Conn {
                    host: String::new(),
                    port: 8080,
                    secure: true,
                    origins: vec!["a.com".into(), "b.com".into()],
                    timeout: None,
                    mode: Mode::Never
                }
            }
        );
    }

    #[test]
    fn bad_values_name_the_component() {
        let c = entry(json!({"connection": {"port": "eighty"}}));
        let err = c.section::<Entry>().unwrap_err();
        assert_eq!(err.code, "BAD_CONFIG");
        assert!(err.message.starts_with("Component #1 (a:b:c:d:1.0): invalid value \"eighty\""), "{}", err.message);
        let big = entry(json!({"connection": {"port": 70000}}));
        assert!(big.section::<Entry>().is_err());
    }

    #[test]
    fn redacts_secrets() {
        let c = entry(
            json!({"credential": {"username": "u", "password": "p"}, "connection": {"uri": "mongodb://u:p@h"}, "options": {"max_page_size": 100}}),
        );
        let r = c.redacted();
        assert_eq!(r["credential.username"], "u");
        assert_eq!(r["credential.password"], "***");
        assert_eq!(r["connection.uri"], "***");
        assert_eq!(r["options.max_page_size"], "100");
    }

    #[test]
    fn parses_lists_and_reports_every_bad_entry() {
        let p = ConfigParameters::new();
        let ok = parse_config("- descriptor: a:b:c:d:1.0\n  x: 1\n- descriptor: e:f:g:h:1.0\n", &p).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].index, 1);
        assert_eq!(ok[1].descriptor.to_string(), "e:f:g:h:1.0");
        let err = parse_config("- descriptor: bad\n- x: 1\n- descriptor: a:b:c:d:1.0\n", &p).unwrap_err();
        let errors = err.details["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].as_str().unwrap().starts_with("Component #1: Descriptor \"bad\""));
        assert_eq!(errors[1], "Component #2: component configuration must have a descriptor");
        let yaml = parse_config("- descriptor: a:b:c:d:1.0\n  x: [1\n", &p).unwrap_err();
        assert_eq!(yaml.code, "BAD_CONFIG");
        assert!(yaml.details.contains_key("line"));
    }

    #[test]
    fn entries_with_bad_descriptors_become_problems_beside_the_good_ones() {
        let p = ConfigParameters::new();
        let parsed = parse_config_entries(
            "- descriptor: a:b:c:d:1.0\n- descriptor: bad\n- x: 1\n- descriptor: e:f:g:h:1.0\n",
            &p,
        )
        .unwrap();
        let good: Vec<(usize, String)> =
            parsed.components.iter().map(|c| (c.index, c.descriptor.to_string())).collect();
        assert_eq!(good, vec![(0, "a:b:c:d:1.0".to_string()), (3, "e:f:g:h:1.0".to_string())]);
        assert_eq!(parsed.problems.len(), 2);
        assert_eq!(parsed.problems[0].0, 1);
        assert!(parsed.problems[0].1.starts_with("Component #2: Descriptor \"bad\""), "{:?}", parsed.problems);
        assert_eq!(parsed.problems[1], (2, "Component #3: component configuration must have a descriptor".to_string()));
        assert!(parse_config_entries("- descriptor: [\n", &p).is_err(), "YAML errors still stop at once");
        assert!(parse_config_entries("just text", &p).is_err());
    }

    #[test]
    fn renders_templates_before_parsing() {
        let mut p = ConfigParameters::new();
        p.insert("HTTP_PORT".into(), "9000".into());
        let cfg =
            parse_config("- descriptor: a:b:c:d:1.0\n  port: {{HTTP_PORT}}{{#unless HTTP_PORT}}8080{{/unless}}\n", &p)
                .unwrap();
        assert_eq!(cfg[0].value["port"], 9000);
    }
}
