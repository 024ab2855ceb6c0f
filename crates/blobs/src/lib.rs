//! The blob stores files live in: evidence files now, archives and exports next.
//!
//! * [`store::BlobStore`] — one store (a local directory or S3-compatible storage), objects
//!   content-addressed and never overwritten, hashed (SHA-256 and BLAKE3) while streaming.
//! * [`BlobStores`] — the platform's stores: the default one (`CUSTOS_BLOB_STORE`) and one per
//!   named region (`CUSTOS_BLOB_STORES`), which data residency chooses between. A stored object
//!   is found again by its region (none: the default store) and key.

pub mod store;

use std::collections::BTreeMap;

pub use store::{BlobError, BlobStore, Digests, StoredBlob, check_prefix};

/// The default store and the regional ones.
#[derive(Clone, Debug)]
pub struct BlobStores {
    default: BlobStore,
    regions: BTreeMap<String, BlobStore>,
}

impl BlobStores {
    /// Only the default store (no regions).
    pub fn new(default: BlobStore) -> Self {
        BlobStores { default, regions: BTreeMap::new() }
    }

    /// The default store at `default_url` and the regions of `regions`
    /// (`CUSTOS_BLOB_STORES`: `region=url` pairs separated by commas, e.g.
    /// `eu-west-1=file:///srv/eu,us-east-1=s3://bucket/us`).
    pub fn from_config(default_url: &str, regions: Option<&str>) -> Result<Self, BlobError> {
        let mut stores = BlobStores::new(BlobStore::from_url(default_url)?);
        for (name, url) in parse_regions(regions.unwrap_or_default()).map_err(BlobError::Config)? {
            let store = BlobStore::from_url(&url).map_err(|e| BlobError::Config(format!("region {name}: {e}")))?;
            stores.regions.insert(name, store);
        }
        Ok(stores)
    }

    /// The store of `region`, the default one for `None`; `None` for a region without a store.
    pub fn get(&self, region: Option<&str>) -> Option<&BlobStore> {
        match region {
            None => Some(&self.default),
            Some(name) => self.regions.get(name),
        }
    }

    pub fn default_store(&self) -> &BlobStore {
        &self.default
    }

    /// The named regions, in order.
    pub fn region_names(&self) -> Vec<String> {
        self.regions.keys().cloned().collect()
    }

    /// Every store with its region (`None` first: the default store).
    pub fn all(&self) -> impl Iterator<Item = (Option<&str>, &BlobStore)> {
        std::iter::once((None, &self.default)).chain(self.regions.iter().map(|(k, v)| (Some(k.as_str()), v)))
    }

    /// The largest object every store takes.
    pub fn max_object_bytes(&self) -> u64 {
        self.all().map(|(_, s)| s.max_object_bytes()).min().unwrap_or(u64::MAX)
    }
}

/// A region's name: lowercase letters, digits and `-`, 1 to 64 characters (`eu-west-1`).
pub fn check_region_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a region name (lowercase letters, digits and '-')")) }
}

/// `region=url` pairs separated by commas; blank is none.
pub fn parse_regions(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut seen = BTreeMap::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = pair.split_once('=') else {
            return Err(format!("CUSTOS_BLOB_STORES: {pair:?} is not region=url"));
        };
        let (name, url) = (name.trim(), url.trim());
        check_region_name(name).map_err(|e| format!("CUSTOS_BLOB_STORES: {e}"))?;
        if seen.insert(name.to_owned(), url.to_owned()).is_some() {
            return Err(format!("CUSTOS_BLOB_STORES: region {name} is given twice"));
        }
    }
    Ok(seen.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_read_from_pairs_and_bad_ones_refused_by_name() {
        let got = parse_regions(" eu-west-1=memory:// , us-east-1=file:///tmp/us").unwrap();
        assert_eq!(got, [("eu-west-1".into(), "memory://".into()), ("us-east-1".into(), "file:///tmp/us".into())]);
        assert_eq!(parse_regions("").unwrap(), []);
        assert!(parse_regions("eu-west-1").unwrap_err().contains("region=url"));
        assert!(parse_regions("EU=memory://").unwrap_err().contains("not a region name"));
        assert!(parse_regions("a=memory://,a=memory://").unwrap_err().contains("twice"));
        let stores = BlobStores::from_config("memory://", Some("eu-west-1=memory://")).unwrap();
        assert_eq!(stores.region_names(), ["eu-west-1"]);
        assert!(stores.get(Some("eu-west-1")).is_some() && stores.get(Some("us-east-1")).is_none());
        assert!(matches!(
            BlobStores::from_config("memory://", Some("eu=ftp://x")),
            Err(BlobError::Config(e)) if e.starts_with("region eu:")
        ));
    }
}
