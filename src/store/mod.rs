//! Object storage, below every stage that reads or writes: opening URIs as `object_store`
//! locations (local paths and `file://`, `s3://`, `gs://`, `az://` and `abfs[s]://`), reading
//! a whole object, and the run's one HTTP downloader for `http(s)://` manifest rows. `plan`
//! lists and reads manifests through it, `source` fetches samples, `write` writes the output.
//!
//! Each cloud store takes the usual settings of its platform: S3 the `AWS_*` variables and the
//! shared config files' profile (`aws_profile`); GCS the `GOOGLE_*` variables or application
//! default credentials; Azure the `AZURE_*` variables (README, "Object stores"). Stores are
//! cached per bucket or container, so a manifest naming a million objects opens one client.
//! Retries, back-off and time-outs come from `[run.object_store]`; credentials stay inside the
//! client (no error or log line made here prints them). This module knows no samples.

pub mod aws_profile;
pub mod http;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::{HttpConfig, ObjectStoreConfig};
use http::{ClientError, HttpDownloader};

/// Why a location cannot be opened, listed or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{uri}: no such file or folder; check the path")]
    NotFound { uri: String },
    #[error("{uri}: {message}")]
    BadUri { uri: String, message: String },
    #[error("cannot list {uri}: {message}\n{hint}", hint = setup_hint(.uri))]
    Unreachable { uri: String, message: String },
    #[error("{uri}: {message}")]
    Credentials { uri: String, message: String },
}

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

/// Opens URIs, keeping one store per bucket (and one for the local file system), and
/// downloads URLs with one HTTP client, made on first use.
pub struct Stores {
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// The process environment, read once when the stores are made: the cloud stores take
    /// their settings from it (tests pass their own with [`Stores::with_env`]).
    env: BTreeMap<String, String>,
    http_config: HttpConfig,
    http: OnceLock<Result<HttpDownloader, ClientError>>,
    /// Retries, back-off and time-outs of the cloud stores' clients (`[run.object_store]`).
    faults: ObjectStoreConfig,
}

impl Default for Stores {
    fn default() -> Stores {
        Stores::with_http(HttpConfig::default())
    }
}

impl Stores {
    /// Stores with the default `[http]` settings.
    pub fn new() -> Stores {
        Stores::default()
    }

    /// Stores whose URL downloads follow `[http]`.
    pub fn with_http(http_config: HttpConfig) -> Stores {
        Stores {
            cache: Mutex::new(HashMap::new()),
            env: std::env::vars().collect(),
            http_config,
            http: OnceLock::new(),
            faults: ObjectStoreConfig::default(),
        }
    }

    /// These stores, their cloud clients retrying and timing out as `faults` says.
    pub fn with_object_store_config(mut self, faults: &ObjectStoreConfig) -> Stores {
        self.faults = faults.clone();
        self
    }

    /// The same stores reading their settings from `env` instead of the process environment.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Stores {
        self.env = env;
        self
    }

    /// The HTTP downloader for `http(s)://` rows.
    pub fn http(&self) -> Result<&HttpDownloader, ClientError> {
        self.http
            .get_or_init(|| HttpDownloader::new(&self.http_config))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// How many objects to fetch at once: enough to keep every allowed download busy.
    pub fn fetch_concurrency(&self, at_least: usize) -> usize {
        at_least.max(self.http_config.effective_concurrency())
    }

    /// Opens an existing input location. A local path must exist; an S3 URI is not contacted.
    pub fn open(&self, uri: &str) -> Result<Location, StoreError> {
        self.open_inner(uri, false)
    }

    /// Opens an output location, creating a local folder if it does not exist yet.
    pub fn open_for_output(&self, uri: &str) -> Result<Location, StoreError> {
        self.open_inner(uri, true)
    }

    fn open_inner(&self, uri: &str, create: bool) -> Result<Location, StoreError> {
        if let Some((scheme, rest)) = uri.split_once("://") {
            if scheme != "file" {
                return self.open_cloud(uri, scheme, rest);
            }
        }
        let local = uri.strip_prefix("file://").unwrap_or(uri);
        if create {
            std::fs::create_dir_all(local).map_err(|e| StoreError::BadUri {
                uri: uri.to_string(),
                message: format!("cannot create the output folder: {e}"),
            })?;
        }
        let path = ObjPath::from_filesystem_path(local).map_err(|e| match e {
            object_store::path::Error::Canonicalize { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                StoreError::NotFound {
                    uri: uri.to_string(),
                }
            }
            other => StoreError::BadUri {
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

    /// A bucket or container URI: `SCHEME://AUTHORITY/PREFIX`.
    fn open_cloud(&self, uri: &str, scheme: &str, rest: &str) -> Result<Location, StoreError> {
        let bad = |message: &str| StoreError::BadUri {
            uri: uri.to_string(),
            message: message.to_string(),
        };
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(bad(&format!(
                "a {scheme}:// URI must name a bucket or container"
            )));
        }
        let root = format!("{scheme}://{authority}");
        let store = match scheme {
            "s3" => self.cached(&root, || s3_store(authority, &self.env, &self.faults))?,
            "gs" => self.cached(&root, || gcs_store(&root, &self.env, &self.faults))?,
            "az" | "abfs" | "abfss" => {
                self.cached(&root, || azure_store(&root, &self.env, &self.faults))?
            }
            _ => return Err(bad(
                "unsupported scheme: use a local path, file://, s3://, gs://, az:// or abfs[s]://",
            )),
        };
        let path = ObjPath::from(prefix.trim_end_matches('/'));
        Ok(Location {
            store,
            path,
            scheme_root: format!("{root}/"),
        })
    }

    fn cached(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<Arc<dyn ObjectStore>, StoreError>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = cache.get(key) {
            return Ok(store.clone());
        }
        let store = make()?;
        cache.insert(key.to_string(), store.clone());
        Ok(store)
    }
}

/// Why an object was not read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// Its size is over a limit (the message says which); the body was not read.
    #[error("{0}")]
    TooLarge(String),
}

/// The whole object as bytes, unless `refuse` refuses its size: the size the GET answers with
/// (the file's size, or `Content-Length`) is checked before the body is read. That covers an
/// object grown since it was listed: object_store reads a local file to that size only, and
/// an HTTP body cannot run past its `Content-Length`.
pub async fn get_bytes_within(
    base: &Location,
    path: &ObjPath,
    refuse: &dyn Fn(u64) -> Option<String>,
) -> Result<bytes::Bytes, GetError> {
    use object_store::ObjectStoreExt;
    let result = base.store.get(path).await?;
    if let Some(why) = refuse(result.meta.size) {
        return Err(GetError::TooLarge(why));
    }
    Ok(result.bytes().await?)
}

/// The whole object as bytes, or the store's error.
pub async fn get_bytes(
    base: &Location,
    path: &ObjPath,
) -> Result<bytes::Bytes, object_store::Error> {
    use object_store::ObjectStoreExt;
    base.store.get(path).await?.bytes().await
}

/// Splits a file name at its last dot: `a/b.c.jpg` → (`a/b.c`, `jpg`), extension lowercased.
pub fn split_extension(name: &str) -> (&str, String) {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[file_start..].rfind('.') {
        Some(dot) if dot > 0 => {
            let dot = file_start + dot;
            (&name[..dot], name[dot + 1..].to_ascii_lowercase())
        }
        _ => (name, String::new()),
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

type Env = BTreeMap<String, String>;

fn get(env: &Env, key: &str) -> Option<String> {
    env.get(key).filter(|v| !v.is_empty()).cloned()
}

/// The `PREFIX*` variables that parse as config keys of a store builder, applied to it (what
/// the builders' `from_env` do, from `env` rather than the process environment).
fn with_prefixed<K: std::str::FromStr, B>(
    env: &Env,
    prefix: &str,
    builder: B,
    apply: impl Fn(B, K, &str) -> B,
) -> B {
    env.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .fold(builder, |b, (k, v)| match k.to_ascii_lowercase().parse() {
            Ok(key) => apply(b, key, v),
            Err(_) => b,
        })
}

/// S3 from the `AWS_*` variables, then the selected profile of the shared config files for
/// what the variables leave unset (the AWS CLI's order).
fn s3_store(
    bucket: &str,
    env: &Env,
    faults: &ObjectStoreConfig,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let uri = format!("s3://{bucket}");
    let profile = aws_profile::load(|k| get(env, k)).map_err(|e| StoreError::Credentials {
        uri: uri.clone(),
        message: e.to_string(),
    })?;
    // Our time-outs first, then every AWS_* variable, so that a client setting from the
    // environment (a proxy, say) still applies.
    let s3 = AmazonS3Builder::new()
        .with_client_options(client_options(faults))
        .with_retry(retry_config(faults));
    let builder = with_prefixed(env, "AWS_", s3, |b, k, v| b.with_config(k, v));
    let mut builder = builder.with_bucket_name(bucket);
    let mut endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| get(env, k));
    let mut region = get(env, "AWS_REGION").or_else(|| get(env, "AWS_DEFAULT_REGION"));
    if let Some(profile) = profile {
        if get(env, "AWS_ACCESS_KEY_ID").is_none() {
            if let (Some(id), Some(secret)) = (profile.access_key_id, profile.secret_access_key) {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = profile.session_token {
                    builder = builder.with_token(token);
                }
            }
        }
        if endpoint.is_none() {
            if let Some(url) = profile.endpoint_url {
                builder = builder.with_endpoint(&url);
                endpoint = Some(url);
            }
        }
        region = region.or(profile.region);
    }
    if endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        builder = builder.with_allow_http(true);
    }
    builder = builder.with_region(region.unwrap_or_else(|| "us-east-1".to_string()));
    let store = builder.build().map_err(|e| StoreError::Credentials {
        uri,
        message: format!("cannot configure S3 from the AWS_* variables and profile: {e}"),
    })?;
    Ok(Arc::new(store))
}

/// GCS from the `GOOGLE_*` variables, application default credentials, or the metadata
/// server of a Google Cloud machine.
fn gcs_store(
    root: &str,
    env: &Env,
    faults: &ObjectStoreConfig,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let explicit = [
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ]
    .iter()
    .any(|k| get(env, k).is_some());
    let adc_file = get(env, "HOME").map(|h| {
        std::path::Path::new(&h).join(".config/gcloud/application_default_credentials.json")
    });
    let has_adc = adc_file.as_ref().is_some_and(|f| f.is_file());
    if !explicit && !has_adc && !on_google_cloud(env) {
        return Err(StoreError::Credentials {
            uri: root.to_string(),
            message: "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service account key file, or run `gcloud auth application-default login`; on a Google Cloud machine the metadata server is used".to_string(),
        });
    }
    let builder = with_prefixed(
        env,
        "GOOGLE_",
        GoogleCloudStorageBuilder::new()
            .with_client_options(client_options(faults))
            .with_retry(retry_config(faults)),
        |b, k, v| b.with_config(k, v),
    );
    let store = builder
        .with_url(root)
        .build()
        .map_err(|e| StoreError::Credentials {
            uri: root.to_string(),
            message: format!("cannot configure Google Cloud Storage: {e}"),
        })?;
    Ok(Arc::new(store))
}

/// Whether the metadata server may hold credentials. Asking it would reach the network (and
/// hang off Google Cloud), so this is decided as google-auth decides it on Linux: the DMI
/// product name, or the variables Cloud Run and the metadata emulator set.
fn on_google_cloud(env: &Env) -> bool {
    ["GCE_METADATA_HOST", "K_SERVICE", "CLOUD_RUN_JOB"]
        .iter()
        .any(|k| get(env, k).is_some())
        || std::fs::read_to_string("/sys/class/dmi/id/product_name")
            .is_ok_and(|name| name.trim_start().starts_with("Google"))
}

/// Azure Blob Storage (and ADLS Gen2) from the `AZURE_*` variables: account name, then a key,
/// SAS token, service principal, Azure CLI, managed identity, or the Azurite emulator.
fn azure_store(
    root: &str,
    env: &Env,
    faults: &ObjectStoreConfig,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let azure = MicrosoftAzureBuilder::new()
        .with_client_options(client_options(faults))
        .with_retry(retry_config(faults));
    let mut builder = with_prefixed(env, "AZURE_", azure, |b, k, v| b.with_config(k, v));
    if let Some(endpoint) = get(env, "MSI_ENDPOINT") {
        builder = builder.with_msi_endpoint(endpoint);
    }
    let store = builder
        .with_url(root)
        .build()
        .map_err(|e| StoreError::Credentials {
            uri: root.to_string(),
            message: format!(
                "cannot configure Azure Blob Storage: {e}; set AZURE_STORAGE_ACCOUNT_NAME and a credential (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_CLIENT_ID + AZURE_CLIENT_SECRET + AZURE_TENANT_ID, or AZURE_USE_AZURE_CLI=true), or AZURE_STORAGE_USE_EMULATOR=true for Azurite"
            ),
        })?;
    Ok(Arc::new(store))
}

/// What to check when a store cannot be listed, by the URI's scheme.
pub fn setup_hint(uri: &str) -> &'static str {
    match uri.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3") => "Check that the bucket exists and that AWS_ENDPOINT_URL, AWS_REGION and the AWS credentials (variables or AWS_PROFILE) are set for it.",
        Some("gs") => "Check that the bucket exists and that the Google credentials (GOOGLE_APPLICATION_CREDENTIALS or application default credentials) may list it.",
        Some("az" | "abfs" | "abfss") => "Check that the container exists and that AZURE_STORAGE_ACCOUNT_NAME and an Azure credential are set for it.",
        _ => "Check the path.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_split_at_the_last_dot_of_the_file_name() {
        assert_eq!(
            split_extension("dir.x/a.b.JPG"),
            ("dir.x/a.b", "jpg".to_string())
        );
        assert_eq!(
            split_extension("dir.x/noext"),
            ("dir.x/noext", String::new())
        );
        assert_eq!(split_extension(".hidden"), (".hidden", String::new()));
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Azurite's published development key: any valid base64 key would do.
    const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn gcs_and_azure_uris_open_as_locations_without_contacting_anyone() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path().to_str().unwrap();
        let key = r#"{"disable_oauth": true, "gcs_base_url": "http://127.0.0.1:1", "client_email": "", "private_key": "", "private_key_id": ""}"#;
        let stores = Stores::new().with_env(env(&[
            ("HOME", home),
            ("GOOGLE_SERVICE_ACCOUNT_KEY", key),
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_ACCOUNT_KEY", DEV_KEY),
        ]));
        let gs = stores.open("gs://bucket/a/b/").unwrap();
        assert_eq!(
            (gs.uri(), gs.path.as_ref()),
            ("gs://bucket/a/b".into(), "a/b")
        );
        assert_eq!(gs.child("c.jpg").uri(), "gs://bucket/a/b/c.jpg");
        assert!(gs.local_path().is_none());
        let az = stores.open("az://container/x").unwrap();
        assert_eq!(az.uri(), "az://container/x");
        let abfss = stores
            .open("abfss://data@acct.dfs.core.windows.net/p/q")
            .unwrap();
        assert_eq!(abfss.uri(), "abfss://data@acct.dfs.core.windows.net/p/q");
        assert_eq!(abfss.path.as_ref(), "p/q");
        // One client per bucket or container.
        assert!(Arc::ptr_eq(
            &gs.store,
            &stores.open("gs://bucket/other").unwrap().store
        ));
        let e = stores.open("gs:///x").unwrap_err().to_string();
        assert_eq!(e, "gs:///x: a gs:// URI must name a bucket or container");
        let e = stores.open("ftp://h/x").unwrap_err().to_string();
        assert!(e.starts_with("ftp://h/x: unsupported scheme"), "{e}");
    }

    #[test]
    fn missing_cloud_credentials_say_what_to_set() {
        let home = tempfile::tempdir().unwrap();
        let stores = Stores::new().with_env(env(&[("HOME", home.path().to_str().unwrap())]));
        let e = stores.open("gs://bucket/x").unwrap_err().to_string();
        if !on_google_cloud(&Env::new()) {
            assert_eq!(
                e,
                "gs://bucket: no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service account key file, or run `gcloud auth application-default login`; on a Google Cloud machine the metadata server is used"
            );
        }
        let e = stores.open("az://container/x").unwrap_err().to_string();
        assert!(
            e.starts_with("az://container: cannot configure Azure Blob Storage: ")
                && e.contains("set AZURE_STORAGE_ACCOUNT_NAME and a credential"),
            "{e}"
        );
        let e = stores.open("s3://bucket/x");
        assert!(e.is_ok(), "S3 needs no settings to be opened");
        let stores = Stores::new().with_env(env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_PROFILE", "nope"),
        ]));
        let e = stores.open("s3://bucket/x").unwrap_err().to_string();
        assert!(
            e.starts_with("s3://bucket: AWS_PROFILE=nope: there is no [profile nope] in "),
            "{e}"
        );
    }
}
