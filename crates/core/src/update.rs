//! Partial updates (HTTP PATCH, gRPC `update_mask`), done once for every resource.
//!
//! A partial update overlays the named fields of `patch` onto the resource's current writable
//! fields; the result is then validated exactly like a full replacement (HTTP PUT), so both paths
//! share every rule.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Problem;

/// `base` with the fields named in `mask` taken from `patch`. Names that are not writable fields
/// (`id`, `created_at`, … sent back by a client) are ignored, as read-only fields are on create.
pub fn overlay<T: Serialize + DeserializeOwned>(base: T, patch: T, mask: &[String]) -> Result<T, Problem> {
    let (Value::Object(mut base), Value::Object(patch)) = (
        serde_json::to_value(base).map_err(Problem::internal)?,
        serde_json::to_value(patch).map_err(Problem::internal)?,
    ) else {
        return Err(Problem::internal("update target is not a message"));
    };
    for field in mask {
        if let Some(value) = patch.get(field.as_str()) {
            base.insert(field.clone(), value.clone());
        }
    }
    serde_json::from_value(Value::Object(base)).map_err(Problem::internal)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Thing {
        name: String,
        note: Option<String>,
        tags: Vec<String>,
    }

    #[test]
    fn only_masked_fields_change() {
        let base = Thing { name: "a".into(), note: Some("keep".into()), tags: vec!["x".into()] };
        let patch = Thing { name: "b".into(), note: None, tags: vec![] };
        let out = overlay(base, patch, &["name".into(), "note".into(), "id".into()]).unwrap();
        assert_eq!(out, Thing { name: "b".into(), note: None, tags: vec!["x".into()] });
    }
}
