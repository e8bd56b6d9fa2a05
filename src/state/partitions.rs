//! The state of a decide phase spread over partition tasks, under the decide folder
//! (`state/measure-<key>/decide-<key>/partitions/`): the shared input every task searches (the
//! run-wide decisions so far and the embeddings' rows, `shared.cbor`; the image embeddings as
//! a float32 matrix, `embeddings.npy`) and each task's pairs (`pairs-IIIII-of-NNNNN.cbor`).
//! It names, stores, lists and fetches these objects; what they hold, and what is decided from
//! them, is the phases' business.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;

use super::{store_error, sub, StateError};
use crate::store::Location;

/// What every partition task reads besides the embeddings (CBOR of the phase's own type).
pub const SHARED: &str = "partitions/shared.cbor";
/// The image embeddings the tasks search, one row per embedded sample in id order.
pub const EMBEDDINGS: &str = "partitions/embeddings.npy";

/// The object holding the pairs of task `index` of `count`.
pub fn pairs_name(index: u32, count: u32) -> String {
    format!("partitions/pairs-{index:05}-of-{count:05}.cbor")
}

/// The `(index, count)` of every task's pairs under the decide folder, sorted.
pub async fn pair_files(decided: &Location) -> Result<Vec<(u32, u32)>, StateError> {
    let folder = sub(decided, "partitions");
    let listed: Vec<_> = match folder.store.list(Some(&folder.path)).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(store_error(&folder, e)),
    };
    let mut found: Vec<(u32, u32)> = listed
        .iter()
        .filter_map(|o| o.location.filename())
        .filter_map(parse_pairs_name)
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// `pairs-IIIII-of-NNNNN.cbor` → `(I, N)`.
fn parse_pairs_name(name: &str) -> Option<(u32, u32)> {
    let (index, count) = name
        .strip_prefix("pairs-")?
        .strip_suffix(".cbor")?
        .split_once("-of-")?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index < count).then_some((index, count))
}

/// A local file holding the object `relative` under `folder`, for memory-mapping: the object
/// itself for a local output, else a copy streamed into a temporary file in `scratch` (removed
/// when the returned guard is dropped). `None` when there is no such object.
pub async fn local_file(
    folder: &Location,
    relative: &str,
    scratch: &Path,
) -> Result<Option<(PathBuf, Option<tempfile::TempPath>)>, StateError> {
    let at = sub(folder, relative);
    if let Some(path) = at.local_path() {
        return Ok(path.exists().then_some((path, None)));
    }
    let result = match at.store.get(&at.path).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error(&at, e)),
    };
    let local = |source| StateError::Local {
        path: scratch.display().to_string(),
        source,
    };
    std::fs::create_dir_all(scratch).map_err(local)?;
    let temp = tempfile::Builder::new()
        .prefix("mmcurate-embeddings-")
        .suffix(".npy")
        .tempfile_in(scratch)
        .map_err(local)?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.try_next().await.map_err(|e| store_error(&at, e))? {
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    Ok(Some((path.to_path_buf(), Some(path))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stores;

    #[test]
    fn pair_files_are_named_listed_and_fetched() {
        assert_eq!(pairs_name(2, 13), "partitions/pairs-00002-of-00013.cbor");
        assert_eq!(parse_pairs_name("pairs-00002-of-00013.cbor"), Some((2, 13)));
        assert_eq!(parse_pairs_name("pairs-00003-of-00003.cbor"), None);
        assert_eq!(parse_pairs_name("pairs-x-of-00003.cbor"), None);
        assert_eq!(parse_pairs_name("shared.cbor"), None);

        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let decided = Stores::new()
            .open_for_output(dir.path().to_str().unwrap())
            .unwrap();
        assert!(runtime.block_on(pair_files(&decided)).unwrap().is_empty());
        for (i, n) in [(1, 3), (0, 3), (0, 1)] {
            let name = pairs_name(i, n);
            runtime
                .block_on(super::super::put(&decided, &name, vec![i as u8]))
                .unwrap();
        }
        runtime
            .block_on(super::super::put(&decided, SHARED, vec![7]))
            .unwrap();
        assert_eq!(
            runtime.block_on(pair_files(&decided)).unwrap(),
            [(0, 1), (0, 3), (1, 3)]
        );
        // A local output's object is used where it lies.
        let scratch = dir.path().join("scratch");
        let (path, guard) = runtime
            .block_on(local_file(&decided, SHARED, &scratch))
            .unwrap()
            .unwrap();
        assert!(guard.is_none());
        assert_eq!(std::fs::read(path).unwrap(), [7]);
        assert!(runtime
            .block_on(local_file(&decided, EMBEDDINGS, &scratch))
            .unwrap()
            .is_none());
    }
}
