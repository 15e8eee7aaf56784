//! Paging and pages: [`PagingParams`] and [`DataPage`] with Pip's semantics.

use super::errors::ApplicationError;
use super::json::WriteJson;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Pip's boolean words: `true/1/t/yes/y` and `false/0/f/no/n` (any case, trimmed); anything else
/// is `None`. The one reading of booleans sent as text (config values, filters, query strings).
pub fn boolean_word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" | "y" => Some(true),
        "false" | "0" | "f" | "no" | "n" => Some(false),
        _ => None,
    }
}

/// `{skip, take, total}` of a page request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagingParams {
    /// Items to skip (`None` = 0).
    pub skip: Option<u64>,
    /// Items to return (`None` or 0 = the store's maximum page size).
    pub take: Option<u64>,
    /// Whether to count all matching items.
    pub total: bool,
}

impl PagingParams {
    /// A request for one page.
    pub fn new(skip: u64, take: u64, total: bool) -> Self {
        Self { skip: Some(skip), take: Some(take), total }
    }

    /// Reads `paging` from command parameters (already schema-checked: integers ≥ 0, boolean).
    ///
    /// # Errors
    /// `INVALID_DATA` for a non-object or negative/non-integer values.
    pub fn from_value(value: Option<&Value>) -> Result<Self, ApplicationError> {
        let Some(v) = value.filter(|v| !v.is_null()) else { return Ok(Self::default()) };
        let obj = v.as_object().ok_or_else(|| {
            ApplicationError::bad_request("INVALID_DATA", "Validation failed: paging must be an object")
        })?;
        let number = |name: &str| -> Result<Option<u64>, ApplicationError> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    ApplicationError::bad_request(
                        "INVALID_DATA",
                        format!("Validation failed: paging.{name} must be a non-negative integer"),
                    )
                }),
            }
        };
        let total = match obj.get("total") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApplicationError::bad_request(
                    "INVALID_DATA",
                    "Validation failed: paging.total type must be boolean",
                ))
            }
        };
        Ok(Self { skip: number("skip")?, take: number("take")?, total })
    }

    /// Items to skip.
    pub fn skip(&self) -> u64 {
        self.skip.unwrap_or(0)
    }

    /// Items to take: `take` capped at `max`, and `max` when absent or 0.
    pub fn take(&self, max: u64) -> u64 {
        match self.take {
            None | Some(0) => max,
            Some(t) => t.min(max),
        }
    }
}

/// A page of items: `{"total": n | null, "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPage<T> {
    /// Count of all matching items, when asked for.
    pub total: Option<u64>,
    /// The items.
    pub data: Vec<T>,
}

impl<T: WriteJson> WriteJson for DataPage<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"total\":");
        match self.total {
            Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"data\":[");
        for (i, item) in self.data.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_json(out);
        }
        out.extend_from_slice(b"]}");
    }

    fn size_hint(&self) -> usize {
        32 + self.data.first().map_or(0, |item| item.size_hint() * self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paging_defaults_and_caps() {
        let p = PagingParams::from_value(None).unwrap();
        assert_eq!((p.skip(), p.take(100), p.total), (0, 100, false));
        let p = PagingParams::from_value(Some(&json!({"skip": 5, "take": 0, "total": true}))).unwrap();
        assert_eq!((p.skip(), p.take(100), p.total), (5, 100, true));
        let p = PagingParams::from_value(Some(&json!({"take": 1000}))).unwrap();
        assert_eq!(p.take(100), 100);
        assert!(PagingParams::from_value(Some(&json!({"skip": -1}))).is_err());
        assert!(PagingParams::from_value(Some(&json!({"take": "1"}))).is_err());
        assert!(PagingParams::from_value(Some(&json!({"total": "yes"}))).is_err());
        let page = DataPage { total: None, data: vec![1] };
        assert_eq!((boolean_word(" Yes"), boolean_word("0"), boolean_word("maybe")), (Some(true), Some(false), None));
        assert_eq!(serde_json::to_string(&page).unwrap(), r#"{"total":null,"data":[1]}"#);
    }
}
