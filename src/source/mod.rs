//! Reading samples out of object storage: loose files with sidecars, WebDataset shards and
//! manifests, all through `object_store` so local folders, S3, GCS and Azure behave the same;
//! manifest rows may also name `http(s)://` URLs, downloaded by `http`.
//!
//! This stage only fetches and groups bytes into [`Sample`]s; it never decodes them (that is
//! `decode`) and never decides anything. A fetch that fails becomes a sample carrying the error,
//! so the run goes on and the ledger can say why that sample is missing.

pub mod aws_profile;
pub mod files;
pub mod http;
pub mod manifest;
pub mod store;
pub mod webdataset;

use bytes::Bytes;
use sha2::Digest;

pub use store::{Location, Stores};

/// Errors that stop a run before work starts (the input cannot be opened or listed).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{uri}: no such file or folder; check the path")]
    NotFound { uri: String },
    #[error("{uri}: {what}; check the path and the input's `format`")]
    Empty { uri: String, what: String },
    #[error("{uri}: {message}")]
    BadUri { uri: String, message: String },
    #[error("cannot list {uri}: {message}\n{hint}", hint = store::setup_hint(.uri))]
    Unreachable { uri: String, message: String },
    #[error("{uri}: {message}")]
    Manifest { uri: String, message: String },
    #[error("{uri}: {message}")]
    Read { uri: String, message: String },
    #[error("{uri}: {message}")]
    Credentials { uri: String, message: String },
}

/// One part of a sample, named by its WebDataset extension (`jpg`, `txt`, `json`, `cls`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub ext: String,
    pub bytes: Bytes,
}

/// Where a sample came from, precisely enough to fetch it again.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The object holding the media: a file, a `.tar` shard, or the object a manifest row names.
    pub uri: String,
    /// The media's member name inside a `.tar` shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar_member: Option<String>,
    /// The manifest and the 0-based row that named this object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_row: Option<u64>,
    /// The object's etag as the store reported it (files and manifest objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// For a URL: where it led after redirects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_uri: Option<String>,
    /// For a URL: the HTTP status of the last answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

/// A sample as read from its source: its identity, where it came from, and its parts as bytes.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Stable identifier: `<input index>:<location relative to the input>`; it orders the output.
    pub id: String,
    /// WebDataset key: no dots or path separators.
    pub key: String,
    /// The original name (file path relative to the input, tar key, or manifest URL).
    pub name: String,
    pub origin: Origin,
    /// All parts. `media` names the one that is measured; the others travel along unchanged.
    pub parts: Vec<Part>,
    /// The extension of the media part in `parts`, if the sample has one.
    pub media: Option<String>,
    /// A caption that did not come as a `.txt` part (from a sidecar `.json` or a manifest
    /// column); it is written out as the sample's `.txt`.
    pub caption: Option<String>,
    /// Set when the sample's bytes could not be fetched; the sample is then dropped with it.
    pub fetch_error: Option<String>,
    /// Set with `fetch_error` when the server opted the object out (`X-Robots-Tag`): the
    /// sample is dropped as `opted_out` rather than `fetch_failed`.
    pub opted_out: bool,
}

impl Sample {
    /// The media part's bytes, if there is a media part.
    pub fn media_bytes(&self) -> Option<&Bytes> {
        let ext = self.media.as_deref()?;
        self.parts.iter().find(|p| p.ext == ext).map(|p| &p.bytes)
    }

    /// The part with this extension.
    pub fn part(&self, ext: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.ext == ext)
    }
}

/// Extensions that are taken as the media part, in order of preference.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "img", "image",
];

/// Video and audio extensions taken as the media part when a sample has no image part.
pub const AV_EXTENSIONS: &[&str] = &[
    "mp4", "webm", "mkv", "mov", "m4v", "avi", "mpg", "mpeg", "ts", "flv", "wav", "flac", "mp3",
    "ogg", "oga", "opus", "m4a", "aac", "aiff", "aif", "video", "audio",
];

/// Chooses which part of a group is the media: the first known image extension, else the
/// first known video or audio one.
pub fn choose_media(parts: &[Part]) -> Option<String> {
    IMAGE_EXTENSIONS
        .iter()
        .chain(AV_EXTENSIONS)
        .find(|ext| parts.iter().any(|p| p.ext == **ext))
        .map(|ext| ext.to_string())
}

/// The longest key: with `.` and an extension, member names stay within ustar's 100 bytes.
pub const MAX_KEY_LEN: usize = 80;

/// Turns a name into a WebDataset key: letters, digits, `-` and `_` are kept, anything else
/// (dots, path separators, spaces, other characters) becomes `_`.
pub fn sanitize_key(name: &str) -> String {
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() {
        return "sample".to_string();
    }
    // Keep tar member names within ustar's 100 bytes: long names are cut and made unique
    // again with a hash of the full name.
    if key.len() > MAX_KEY_LEN {
        let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
        return format!("{}_{}", &key[..MAX_KEY_LEN - 9], &digest[..8]);
    }
    key
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_no_dots_or_separators() {
        assert_eq!(sanitize_key("images/cat.v2"), "images_cat_v2");
        assert_eq!(sanitize_key("a b\\c"), "a_b_c");
        assert_eq!(sanitize_key("Ünï"), "_n_");
        assert_eq!(sanitize_key(""), "sample");
        let long = sanitize_key(&"x".repeat(300));
        assert_eq!(long.len(), MAX_KEY_LEN);
        assert_ne!(long, sanitize_key(&"x".repeat(301)));
    }

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

    #[test]
    fn media_is_the_first_image_extension() {
        let part = |ext: &str| Part {
            ext: ext.to_string(),
            bytes: Bytes::new(),
        };
        assert_eq!(
            choose_media(&[part("txt"), part("png"), part("jpg")]),
            Some("jpg".into())
        );
        assert_eq!(choose_media(&[part("txt"), part("json")]), None);
        assert_eq!(
            choose_media(&[part("txt"), part("wav"), part("mp4")]),
            Some("mp4".into())
        );
    }
}
