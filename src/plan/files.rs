//! The `files` input's units: every object under a prefix is a sample, except `.txt` and
//! `.json` objects, which are sidecars of the media object with the same stem (`a.jpg` +
//! `a.txt`). This groups a listing; `source::files` fetches the bytes.

use object_store::ObjectMeta;
use std::collections::BTreeMap;

use crate::store::{split_extension, Location};

/// One media object and its sidecars, as found by listing.
#[derive(Debug, Clone)]
pub struct FileUnit {
    pub media: ObjectMeta,
    pub sidecars: Vec<ObjectMeta>,
}

const SIDECAR_EXTENSIONS: &[&str] = &["txt", "json"];

/// Groups a listing into media objects with their sidecars, in path order. Hidden files and
/// object_store's in-progress upload files (`name#N`) are skipped. Returns the units and the
/// sidecars that have no media object beside them.
pub fn group(base: &Location, mut objects: Vec<ObjectMeta>) -> (Vec<FileUnit>, Vec<ObjectMeta>) {
    objects.retain(|o| {
        let name = o.location.filename().unwrap_or_default();
        !name.starts_with('.') && !name.contains('#')
    });
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let mut sidecars: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    let mut media = Vec::new();
    for object in objects {
        let rel = base.relative(&object.location);
        let (stem, ext) = split_extension(&rel);
        if SIDECAR_EXTENSIONS.contains(&ext.as_str()) {
            sidecars.entry(stem.to_string()).or_default().push(object);
        } else {
            media.push(object);
        }
    }
    let mut used = std::collections::BTreeSet::new();
    let units = media
        .into_iter()
        .map(|media| {
            let rel = base.relative(&media.location);
            let stem = split_extension(&rel).0.to_string();
            let found = sidecars.get(&stem).cloned().unwrap_or_default();
            used.insert(stem);
            FileUnit {
                media,
                sidecars: found,
            }
        })
        .collect();
    let orphans = sidecars
        .into_iter()
        .filter(|(stem, _)| !used.contains(stem))
        .flat_map(|(_, v)| v)
        .collect();
    (units, orphans)
}
