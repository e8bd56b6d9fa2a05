//! The model-output cache, `<output>/state/model-outputs/clip-<weights>/`: what a CLIP
//! checkpoint made of a sample (its image and caption embeddings, CLIP score, caption token
//! count), keyed by the sample's content (media sha256, caption sha256, and the settings that
//! change what the model is fed) under a folder named by the weights' sha256. A run or a
//! re-enrichment with weights seen before takes their outputs from here instead of running the
//! model again. Each run that computed new outputs adds one segment (CBOR); segments are never
//! rewritten. It stores and looks up; it decides nothing and runs no model.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{codec, get, put, sub, StateError};
use crate::store::Location;
use futures::TryStreamExt;

/// The cache's folder under the output root.
pub const MODEL_OUTPUTS_DIR: &str = "state/model-outputs";
const SEGMENT_EXT: &str = "cbor";

/// One sample's outputs from one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedOutput {
    /// The media's sha256 (hex): what `mmcurate forget` and `mmcurate verify` look for.
    pub sha256: String,
    /// Unit-length image embedding (a video's normalised frame mean).
    pub image: Vec<f32>,
    /// Unit-length caption embedding, when the sample has a caption the tokenizer took.
    pub text: Option<Vec<f32>>,
    pub clip_score: Option<f64>,
    pub caption_tokens: Option<u32>,
    pub caption_truncated: Option<bool>,
    pub clip_note: Option<String>,
}

/// The cache of one checkpoint, loaded, with what this run looked up and added.
pub struct ModelOutputCache {
    folder: Location,
    runtime: tokio::runtime::Handle,
    settings: String,
    known: HashMap<String, CachedOutput>,
    added: Mutex<BTreeMap<String, CachedOutput>>,
    hits: AtomicU64,
    computed: AtomicU64,
}

/// Embeddings taken from the cache and computed by the model in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOutputCounts {
    pub computed: u64,
    pub from_cache: u64,
}

impl ModelOutputCache {
    /// Loads every segment of the checkpoint whose weights sha256 is `weights_sha256` from the
    /// output `root`; `settings` is a text naming whatever else changes the outputs (dtype,
    /// input size, video frame sampling), folded into every key.
    pub fn open(
        root: &Location,
        weights_sha256: &str,
        settings: &str,
        runtime: &tokio::runtime::Handle,
    ) -> Result<ModelOutputCache, StateError> {
        let folder = sub(root, &format!("{MODEL_OUTPUTS_DIR}/clip-{weights_sha256}"));
        let mut known = HashMap::new();
        runtime.block_on(async {
            for name in segment_names(&folder).await? {
                let Some(bytes) = get(&folder, &name).await? else {
                    continue;
                };
                let segment: BTreeMap<String, CachedOutput> =
                    codec::decode(&bytes).map_err(|message| StateError::Corrupt {
                        uri: sub(&folder, &name).uri(),
                        message: message.to_string(),
                    })?;
                known.extend(segment);
            }
            Ok::<_, StateError>(())
        })?;
        Ok(ModelOutputCache {
            folder,
            runtime: runtime.clone(),
            settings: settings.to_string(),
            known,
            added: Mutex::default(),
            hits: AtomicU64::new(0),
            computed: AtomicU64::new(0),
        })
    }

    /// The key of a sample's content: its media sha256, its caption's bytes (if any) and the
    /// cache's settings.
    pub fn key(&self, media_sha256: &str, caption: Option<&[u8]>) -> String {
        let caption = caption.map_or("-".to_string(), |c| hex::encode(Sha256::digest(c)));
        let settings = hex::encode(Sha256::digest(self.settings.as_bytes()));
        format!("{media_sha256}:{caption}:{}", &settings[..16])
    }

    /// The outputs cached under `key`, counted as a hit.
    pub fn lookup(&self, key: &str) -> Option<&CachedOutput> {
        let found = self.known.get(key);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Outputs the model computed now, kept for [`ModelOutputCache::persist`].
    pub fn add(&self, key: String, output: CachedOutput) {
        self.computed.fetch_add(1, Ordering::Relaxed);
        self.added
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, output);
    }

    pub fn counts(&self) -> ModelOutputCounts {
        ModelOutputCounts {
            computed: self.computed.load(Ordering::Relaxed),
            from_cache: self.hits.load(Ordering::Relaxed),
        }
    }

    /// Writes what was added as one new segment, named by a digest of its keys (the same
    /// outputs make the same segment, so a rerun rewrites nothing new).
    pub fn persist(&self) -> Result<(), StateError> {
        let added = std::mem::take(&mut *self.added.lock().unwrap_or_else(|p| p.into_inner()));
        if added.is_empty() {
            return Ok(());
        }
        let mut hasher = Sha256::new();
        for key in added.keys() {
            hasher.update(key.as_bytes());
            hasher.update(b"\n");
        }
        let name = format!("{}.{SEGMENT_EXT}", &hex::encode(hasher.finalize())[..16]);
        self.runtime
            .block_on(put(&self.folder, &name, codec::encode(&added)))
    }
}

/// The media sha256 of every cached output under the output `root`, with the segment that
/// holds it (relative to the root): for `mmcurate verify`.
pub async fn cached_sha256s(root: &Location) -> Result<Vec<(String, String)>, StateError> {
    let mut found = Vec::new();
    for (relative, segment) in all_segments(root).await? {
        found.extend(
            segment
                .into_values()
                .map(|output| (output.sha256, relative.clone())),
        );
    }
    Ok(found)
}

/// Takes the outputs of the media whose sha256 is given out of every segment under `root`
/// (`mmcurate forget`): a segment holding any is rewritten without them, or removed when
/// nothing is left. Returns the segments changed, relative to the root.
pub async fn purge(
    root: &Location,
    sha256s: &std::collections::HashSet<String>,
) -> Result<Vec<String>, StateError> {
    let mut changed = Vec::new();
    for (relative, mut segment) in all_segments(root).await? {
        let before = segment.len();
        segment.retain(|_, output| !sha256s.contains(&output.sha256));
        if segment.len() == before {
            continue;
        }
        if segment.is_empty() {
            use object_store::ObjectStoreExt;
            let at = root.child(&relative);
            at.store
                .delete(&at.path)
                .await
                .map_err(|e| StateError::Store {
                    uri: at.uri(),
                    message: e.to_string(),
                })?;
        } else {
            put(root, &relative, codec::encode(&segment)).await?;
        }
        changed.push(relative);
    }
    Ok(changed)
}

/// Every segment of every checkpoint under the output `root`, decoded, with its path relative
/// to the root.
async fn all_segments(
    root: &Location,
) -> Result<Vec<(String, BTreeMap<String, CachedOutput>)>, StateError> {
    let base = sub(root, MODEL_OUTPUTS_DIR);
    let listed: Vec<_> = match base.store.list(Some(&base.path)).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => {
            return Err(StateError::Store {
                uri: base.uri(),
                message: e.to_string(),
            })
        }
    };
    let mut segments = Vec::new();
    for object in listed {
        let path = object.location;
        if path.extension() != Some(SEGMENT_EXT) {
            continue;
        }
        let relative = root.relative(&path);
        let Some(bytes) = get(root, &relative).await? else {
            continue;
        };
        let segment = codec::decode(&bytes).map_err(|message| StateError::Corrupt {
            uri: root.at(path.clone()).uri(),
            message: message.to_string(),
        })?;
        segments.push((relative, segment));
    }
    Ok(segments)
}

async fn segment_names(folder: &Location) -> Result<Vec<String>, StateError> {
    let listed: Vec<_> = match folder.store.list(Some(&folder.path)).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => {
            return Err(StateError::Store {
                uri: folder.uri(),
                message: e.to_string(),
            })
        }
    };
    let mut names: Vec<String> = listed
        .iter()
        .filter_map(|o| o.location.filename())
        .filter(|name| name.ends_with(&format!(".{SEGMENT_EXT}")))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stores;

    fn output(text: Option<Vec<f32>>) -> CachedOutput {
        CachedOutput {
            sha256: "ab".repeat(32),
            image: vec![0.6, 0.8],
            text,
            clip_score: Some(0.25),
            caption_tokens: Some(4),
            caption_truncated: Some(false),
            clip_note: None,
        }
    }

    #[test]
    fn outputs_come_back_by_weights_and_content_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let root = Stores::new().open(dir.path().to_str().unwrap()).unwrap();
        let io = runtime.handle();
        {
            let cache = ModelOutputCache::open(&root, "w1", "f32", io).unwrap();
            let key = cache.key(&"ab".repeat(32), Some(b"a cat"));
            assert!(cache.lookup(&key).is_none());
            cache.add(key.clone(), output(Some(vec![1.0, 0.0])));
            cache.persist().unwrap();
            assert_eq!(
                cache.counts(),
                ModelOutputCounts {
                    computed: 1,
                    from_cache: 0
                }
            );

            let again = ModelOutputCache::open(&root, "w1", "f32", io).unwrap();
            assert_eq!(again.lookup(&key), Some(&output(Some(vec![1.0, 0.0]))));
            // Another caption, other weights, other settings: not the same outputs.
            assert!(again
                .lookup(&again.key(&"ab".repeat(32), Some(b"a dog")))
                .is_none());
            assert!(again.lookup(&again.key(&"ab".repeat(32), None)).is_none());
            assert_eq!(again.counts().from_cache, 1);
            let other = ModelOutputCache::open(&root, "w2", "f32", io).unwrap();
            assert!(other.lookup(&key).is_none());
            let bf16 = ModelOutputCache::open(&root, "w1", "bf16", io).unwrap();
            assert_ne!(bf16.key(&"ab".repeat(32), Some(b"a cat")), key);

            let found = runtime.block_on(cached_sha256s(&root)).unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].0, "ab".repeat(32));
            assert!(
                found[0].1.starts_with("state/model-outputs/clip-w1/"),
                "{}",
                found[0].1
            );
        }
    }
}
