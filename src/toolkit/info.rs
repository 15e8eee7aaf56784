//! Context info (`pip-services:context-info:default:default:1.0`, and its older name
//! `pip-services:container-info:default:default:1.0`): the service's name, description, host id,
//! start time and free-form properties, reported by `/status` and logs.

use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::references::References;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Deserialize;

/// Identity of the running service.
#[derive(Debug, Clone)]
pub struct ContextInfo {
    /// Service name (default `unknown`).
    pub name: String,
    /// Service description.
    pub description: String,
    /// The host name.
    pub context_id: String,
    /// When the container started.
    pub start_time: DateTime<Utc>,
    /// Free-form properties.
    pub properties: IndexMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InfoSettings {
    name: Option<String>,
    description: Option<String>,
    properties: IndexMap<String, String>,
}

impl Default for ContextInfo {
    fn default() -> Self {
        Self {
            name: "unknown".to_string(),
            description: String::new(),
            context_id: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            start_time: crate::toolkit::time::truncate_millis(Utc::now()),
            properties: IndexMap::new(),
        }
    }
}

impl ContextInfo {
    /// Builds the info from its config entry.
    ///
    /// # Errors
    /// `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: InfoSettings = config.section()?;
        let mut info = Self::default();
        if let Some(n) = s.name {
            info.name = n;
        }
        info.description = s.description.unwrap_or_default();
        info.properties = s.properties;
        Ok(info)
    }
}

impl Component for ContextInfo {}

/// Whether a descriptor type names a context info (`context-info` or `container-info`).
pub fn is_info_type(typ: Option<&str>) -> bool {
    matches!(typ, Some("context-info" | "container-info"))
}

/// The context info in use: the newest `*:context-info:*:*:*`, else the newest
/// `*:container-info:*:*:*`, else a default one. (Pip looks for `context-info` only, so a
/// `container-info` entry there names nothing; here it names the service as its keys say.)
pub fn find(references: &References) -> std::sync::Arc<ContextInfo> {
    references
        .get_one_optional::<ContextInfo>(&Descriptor::new("*", "context-info", "*", "*", "*"))
        .or_else(|| references.get_one_optional::<ContextInfo>(&Descriptor::new("*", "container-info", "*", "*", "*")))
        .unwrap_or_else(|| std::sync::Arc::new(ContextInfo::default()))
}
