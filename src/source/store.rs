//! Opening URIs as `object_store` locations: local paths, `file://` and `s3://` alike.
//!
//! S3 settings come from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …). Plain `http://` endpoints (a local MinIO,
//! moto or s3s server) are allowed without further settings. Stores are cached per bucket so
//! that a manifest naming a million objects opens one client, not a million. Retries, back-off
//! and time-outs come from `[run.object_store]`; credentials stay inside the client (no error
//! or log line made here prints them).

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::SourceError;
use crate::config::ObjectStoreConfig;

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
    faults: ObjectStoreConfig,
}

impl Stores {
    /// Stores with the default retries and time-outs.
    pub fn new() -> Stores {
        Stores::default()
    }

    /// These stores, their S3 clients retrying and timing out as `faults` says.
    pub fn with_object_store_config(mut self, faults: &ObjectStoreConfig) -> Stores {
        self.faults = faults.clone();
        self
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
            let store =
                self.cached(&format!("s3://{bucket}"), || s3_store(bucket, &self.faults))?;
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

/// `object_store`'s retry policy for these settings (validated by `config`).
pub fn retry_config(faults: &ObjectStoreConfig) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_secs_f64(faults.backoff_initial_s),
            max_backoff: Duration::from_secs_f64(faults.backoff_max_s),
            base: faults.backoff_base,
        },
        max_retries: faults.max_retries as usize,
        retry_timeout: Duration::from_secs_f64(faults.retry_timeout_s),
    }
}

/// `object_store`'s HTTP client options for these settings: connect and read (stall) time-outs,
/// and a whole-request limit only when one is set.
pub fn client_options(faults: &ObjectStoreConfig) -> ClientOptions {
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs_f64(faults.connect_timeout_s))
        .with_config(
            object_store::ClientConfigKey::ReadTimeout,
            format!("{}ms", (faults.read_timeout_s * 1000.0).round() as u64),
        );
    if faults.request_timeout_s > 0.0 {
        options.with_timeout(Duration::from_secs_f64(faults.request_timeout_s))
    } else {
        options.with_timeout_disabled()
    }
}

fn s3_store(bucket: &str, faults: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, SourceError> {
    // Our time-outs first, then every AWS_* variable as `AmazonS3Builder::from_env` reads
    // them, so that a client setting from the environment (a proxy, say) still applies.
    let mut builder = AmazonS3Builder::new()
        .with_client_options(client_options(faults))
        .with_retry(retry_config(faults));
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
            if key.starts_with("AWS_") {
                if let Ok(config_key) = key.to_ascii_lowercase().parse() {
                    builder = builder.with_config(config_key, value);
                }
            }
        }
    }
    builder = builder.with_bucket_name(bucket);
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
