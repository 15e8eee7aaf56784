//! Component locators: `group:type:kind:name:version` descriptors with `*` wildcards.
//!
//! Equality (`==`, `Hash`) is structural; wildcard matching is [`Descriptor::matches`], which is
//! symmetric but not transitive, so it is deliberately not `PartialEq`.

use super::errors::ApplicationError;
use std::fmt;
use std::str::FromStr;

/// A Pip.Services descriptor. `None` fields are wildcards (printed as `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Descriptor {
    group: Option<String>,
    typ: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    version: Option<String>,
}

fn field(s: &str) -> Option<String> {
    let s = s.trim();
    (s != "*").then(|| s.to_string())
}

impl Descriptor {
    /// The locator of a dependency: the configured `dependencies.*` text parsed, else `default`.
    ///
    /// # Errors
    /// `BAD_DESCRIPTOR` when the configured text is not a descriptor.
    pub fn configured_or(configured: Option<&str>, default: impl FnOnce() -> Self) -> Result<Self, ApplicationError> {
        configured.map_or_else(|| Ok(default()), str::parse)
    }

    /// Builds a descriptor from its five parts; `"*"` is a wildcard.
    pub fn new(group: &str, typ: &str, kind: &str, name: &str, version: &str) -> Self {
        Self { group: field(group), typ: field(typ), kind: field(kind), name: field(name), version: field(version) }
    }

    /// The group (`None` = any).
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
    /// The logical type (`None` = any).
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    /// The implementation kind (`None` = any).
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }
    /// The instance name (`None` = any).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The contract version (`None` = any).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    fn fields(&self) -> [&Option<String>; 5] {
        [&self.group, &self.typ, &self.kind, &self.name, &self.version]
    }

    /// Symmetric wildcard match: each field matches when either side is a wildcard or both are equal.
    pub fn matches(&self, other: &Descriptor) -> bool {
        self.fields().iter().zip(other.fields()).all(|(a, b)| a.is_none() || b.is_none() || *a == b)
    }

    /// Exact match: wildcards only match wildcards.
    pub fn exact_match(&self, other: &Descriptor) -> bool {
        self == other
    }

    /// Whether no field is a wildcard.
    pub fn is_complete(&self) -> bool {
        self.fields().iter().all(|f| f.is_some())
    }

    /// Fills every wildcard of `self` from `other` (the container's "locator clarification").
    #[must_use]
    pub fn clarify(&self, other: &Descriptor) -> Descriptor {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        Descriptor {
            group: pick(&self.group, &other.group),
            typ: pick(&self.typ, &other.typ),
            kind: pick(&self.kind, &other.kind),
            name: pick(&self.name, &other.name),
            version: pick(&self.version, &other.version),
        }
    }
}

impl FromStr for Descriptor {
    type Err = ApplicationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 5 || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(ApplicationError::config(
                "BAD_DESCRIPTOR",
                format!("Descriptor \"{s}\" is in wrong format: expected group:type:kind:name:version"),
            )
            .with_details("descriptor", s));
        }
        Ok(Self::new(parts[0], parts[1], parts[2], parts[3], parts[4]))
    }
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |o: &Option<String>| o.clone().unwrap_or_else(|| "*".to_string());
        write!(f, "{}:{}:{}:{}:{}", s(&self.group), s(&self.typ), s(&self.kind), s(&self.name), s(&self.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_dependency_wins_over_the_default() {
        let default = || Descriptor::new("*", "endpoint", "http", "*", "1.0");
        assert_eq!(Descriptor::configured_or(None, default).ok(), Some(default()));
        let configured = Descriptor::configured_or(Some("a:endpoint:grpc:b:1.0"), default).ok();
        assert_eq!(configured, Some(Descriptor::new("a", "endpoint", "grpc", "b", "1.0")));
        let bad = Descriptor::configured_or(Some("a:b"), default).err().map(|e| e.code);
        assert_eq!(bad.as_deref(), Some("BAD_DESCRIPTOR"));
    }

    fn d(s: &str) -> Descriptor {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let x = d("pip-services:logger:console:default:1.0");
        assert_eq!(x.group(), Some("pip-services"));
        assert_eq!(x.typ(), Some("logger"));
        assert_eq!(x.kind(), Some("console"));
        assert_eq!(x.name(), Some("default"));
        assert_eq!(x.version(), Some("1.0"));
        assert_eq!(x.to_string(), "pip-services:logger:console:default:1.0");
        assert!(x.is_complete());
        let w = d(" *:logger: * :*:1.0 ");
        assert_eq!(w.to_string(), "*:logger:*:*:1.0");
        assert!(!w.is_complete());
    }

    #[test]
    fn rejects_bad_strings_naming_them() {
        for bad in ["", "a:b:c:d", "a:b:c:d:e:f", "a::c:d:e"] {
            let e = bad.parse::<Descriptor>().unwrap_err();
            assert_eq!(e.code, "BAD_DESCRIPTOR");
            assert!(e.message.contains(&format!("\"{bad}\"")), "{}", e.message);
            assert_eq!(e.details["descriptor"], bad);
        }
    }

    #[test]
    fn wildcard_matching_is_symmetric_and_exact_otherwise() {
        let full = d("service-sessions:persistence:memory:default:1.0");
        let q = d("service-sessions:persistence:*:*:1.0");
        assert!(full.matches(&q) && q.matches(&full));
        assert!(!full.matches(&d("service-sessions:persistence:*:*:1")));
        assert!(!full.matches(&d("Service-sessions:persistence:*:*:1.0")));
        assert!(!full.exact_match(&q));
        assert!(full.exact_match(&full.clone()));
        assert_ne!(full, q);
    }

    #[test]
    fn clarify_fills_wildcards() {
        let cfg = d("a:b:*:default:1.0");
        let reg = d("a:b:c:*:1.0");
        assert_eq!(cfg.clarify(&reg).to_string(), "a:b:c:default:1.0");
    }
}
