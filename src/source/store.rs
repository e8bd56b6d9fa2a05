//! Opening URIs as `object_store` locations: local paths, `file://` and `s3://` alike.
//!
//! S3 settings come from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …). Plain `http://` endpoints (a local MinIO,
//! moto or s3s server) are allowed without further settings. Stores are cached per bucket so
//! that a manifest naming a million objects opens one client, not a million.

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::SourceError;

/// A place in an object store: the store, a path inside it, and how to print it as a URI.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: ObjPath,
    /// `s3://bucket/` or `file:///`: prepended to a store path to print it as a URI.
    pub scheme_root: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

impl Location {
    /// This location as a URI.
    pub fn uri(&self) -> String {
        self.uri_of(&self.path)
    }

    /// Any path of the same store as a URI.
    pub fn uri_of(&self, path: &ObjPath) -> String {
        format!("{}{}", self.scheme_root, path)
    }

    /// The same store at another path.
    pub fn at(&self, path: ObjPath) -> Location {
        Location {
            store: self.store.clone(),
            path,
            scheme_root: self.scheme_root.clone(),
        }
    }

    /// The same store at `self.path/relative`.
    pub fn child(&self, relative: &str) -> Location {
        let mut path = self.path.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        self.at(path)
    }

    /// `path` relative to this location (the whole path when it is not below it).
    pub fn relative(&self, path: &ObjPath) -> String {
        match path.prefix_match(&self.path) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    /// The local file-system path, for `file://` locations.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        (self.scheme_root == "file:///")
            .then(|| std::path::PathBuf::from(format!("/{}", self.path)))
    }
}

/// Opens URIs, keeping one store per bucket (and one for the local file system).
#[derive(Default)]
pub struct Stores {
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    pub fn new() -> Stores {
        Stores::default()
    }

    /// Opens an existing input location. A local path must exist; an S3 URI is not contacted.
    pub fn open(&self, uri: &str) -> Result<Location, SourceError> {
        self.open_inner(uri, false)
    }

    /// Opens an output location, creating a local folder if it does not exist yet.
    pub fn open_for_output(&self, uri: &str) -> Result<Location, SourceError> {
        self.open_inner(uri, true)
    }

    fn open_inner(&self, uri: &str, create: bool) -> Result<Location, SourceError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(SourceError::BadUri {
                    uri: uri.to_string(),
                    message: "an s3:// URI must name a bucket".to_string(),
                });
            }
            let store = self.cached(&format!("s3://{bucket}"), || s3_store(bucket))?;
            return Ok(Location {
                store,
                path: ObjPath::from(prefix.trim_end_matches('/')),
                scheme_root: format!("s3://{bucket}/"),
            });
        }
        let local = uri.strip_prefix("file://").unwrap_or(uri);
        if create {
            std::fs::create_dir_all(local).map_err(|e| SourceError::BadUri {
                uri: uri.to_string(),
                message: format!("cannot create the output folder: {e}"),
            })?;
        }
        let path = ObjPath::from_filesystem_path(local).map_err(|e| match e {
            object_store::path::Error::Canonicalize { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                SourceError::NotFound {
                    uri: uri.to_string(),
                }
            }
            other => SourceError::BadUri {
                uri: uri.to_string(),
                message: other.to_string(),
            },
        })?;
        let store = self.cached("file://", || Ok(Arc::new(LocalFileSystem::new())))?;
        Ok(Location {
            store,
            path,
            scheme_root: "file:///".to_string(),
        })
    }

    fn cached(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<Arc<dyn ObjectStore>, SourceError>,
    ) -> Result<Arc<dyn ObjectStore>, SourceError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = cache.get(key) {
            return Ok(store.clone());
        }
        let store = make()?;
        cache.insert(key.to_string(), store.clone());
        Ok(store)
    }
}

fn s3_store(bucket: &str) -> Result<Arc<dyn ObjectStore>, SourceError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok());
    if endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        builder = builder.with_allow_http(true);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region("us-east-1");
    }
    let store = builder.build().map_err(|e| SourceError::BadUri {
        uri: format!("s3://{bucket}"),
        message: format!("cannot configure S3 from the AWS_* variables: {e}"),
    })?;
    Ok(Arc::new(store))
}
