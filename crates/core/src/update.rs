//! Partial updates (HTTP PATCH, gRPC `update_mask`), done once for every resource.
//!
//! A partial update overlays the named fields of `patch` onto the resource's current writable
//! fields; the result is then validated exactly like a full replacement (HTTP PUT), so both paths
//! share every rule. [`apply`] is the one entry every update method calls.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Problem;

/// The writable input an update asks for, given the resource's current writable fields, the
/// request's input `I` and its `update_mask` (AIP-134), for a resource whose message is `R`:
///
/// - no mask, or `*` alone (AIP-161): `input` replaces every writable field (HTTP PUT);
/// - a mask naming fields: those are taken from `input`, the rest kept (HTTP PATCH);
/// - a mask naming no writable field (empty: a PATCH of `{}`; or only output-only fields a client
///   sent back): `None`, nothing changes — the caller answers the resource as it stands and
///   records nothing;
/// - a name that is no field of `R` or `I` at all: 400 / INVALID_ARGUMENT naming it.
pub fn apply<I, R>(current: I, input: I, mask: Option<&[String]>) -> Result<Option<I>, Problem>
where
    I: Serialize + DeserializeOwned + Default,
    R: Serialize + Default,
{
    let Some(mask) = mask else { return Ok(Some(input)) };
    // AIP-161: `*` alone asks for a full replacement.
    if mask.len() == 1 && mask[0] == "*" {
        return Ok(Some(input));
    }
    let writable = field_names(&I::default())?;
    let resource = field_names(&R::default())?;
    for name in mask {
        if !writable.contains(name) && !resource.contains(name) {
            return Err(Problem::invalid_field(
                "update_mask",
                format!("{name:?} names no field of this resource; its writable fields are: {}", writable.join(", ")),
            ));
        }
    }
    if !mask.iter().any(|name| writable.contains(name)) {
        return Ok(None);
    }
    overlay(current, input, mask).map(Some)
}

fn field_names<T: Serialize>(message: &T) -> Result<Vec<String>, Problem> {
    match serde_json::to_value(message).map_err(Problem::internal)? {
        Value::Object(fields) => Ok(fields.keys().cloned().collect()),
        _ => Err(Problem::internal("an update names fields of something that is not a message")),
    }
}

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

    #[derive(Debug, Default, Serialize)]
    struct ThingOut {
        id: String,
        name: String,
        note: Option<String>,
        tags: Vec<String>,
    }

    #[test]
    fn a_mask_replaces_patches_changes_nothing_or_is_refused() {
        let base = || Thing { name: "a".into(), note: Some("keep".into()), tags: vec!["x".into()] };
        let input = || Thing { name: "b".into(), note: None, tags: vec![] };
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // No mask, or `*`: replace.
        assert_eq!(apply::<_, ThingOut>(base(), input(), None).unwrap(), Some(input()));
        assert_eq!(apply::<_, ThingOut>(base(), input(), Some(&names(&["*"]))).unwrap(), Some(input()));
        // A mask: only those.
        let patched = apply::<_, ThingOut>(base(), input(), Some(&names(&["name"]))).unwrap().unwrap();
        assert_eq!(patched, Thing { name: "b".into(), ..base() });
        // Empty, or only output-only names: nothing changes.
        assert_eq!(apply::<_, ThingOut>(base(), input(), Some(&[])).unwrap(), None);
        assert_eq!(apply::<_, ThingOut>(base(), input(), Some(&names(&["id"]))).unwrap(), None);
        // A name of nothing: refused, naming it and the writable fields.
        let err = apply::<_, ThingOut>(base(), input(), Some(&names(&["name", "colour"]))).unwrap_err();
        assert_eq!(err.error, "Invalid value for 'update_mask'");
        assert!(
            err.details.as_str().unwrap().contains("\"colour\"")
                && err.details.as_str().unwrap().contains("name, note, tags")
        );
    }

    #[test]
    fn only_masked_fields_change() {
        let base = Thing { name: "a".into(), note: Some("keep".into()), tags: vec!["x".into()] };
        let patch = Thing { name: "b".into(), note: None, tags: vec![] };
        let out = overlay(base, patch, &["name".into(), "note".into(), "id".into()]).unwrap();
        assert_eq!(out, Thing { name: "b".into(), note: None, tags: vec!["x".into()] });
    }
}
