//! Reading samples out of object storage: loose files with sidecars, WebDataset shards and the
//! objects manifest rows name, all through `store` so local folders, S3, GCS and Azure behave
//! the same; manifest rows may also name `http(s)://` URLs, downloaded by `store::http`.
//!
//! This stage only fetches and groups bytes into [`Sample`]s; it never decodes them (that is
//! `decode`) and never decides anything. A fetch that fails becomes a sample carrying the error,
//! so the run goes on and the ledger can say why that sample is missing.

pub mod files;
pub mod manifest;
pub mod webdataset;

use bytes::Bytes;
use sha2::Digest;

/// How many bytes a reader may take in for one part and for one sample (`[limits]`
/// `max_part_bytes` and `max_sample_bytes`). Sizes are checked before the bytes are read: a
/// listed object's size, a tar header's size, an object's `head`; a part over a limit is not
/// read, and its sample becomes a dropped row ([`Refusal::TooLarge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_part_bytes: u64,
    pub max_sample_bytes: u64,
}

impl ReadLimits {
    pub fn from_config(limits: &crate::config::LimitsConfig) -> ReadLimits {
        ReadLimits {
            max_part_bytes: limits.max_part_bytes.0,
            max_sample_bytes: limits.max_sample_bytes.0,
        }
    }

    /// Why a part of `size` bytes, after `before` bytes of the same sample, may not be read;
    /// `None` when it may.
    pub fn refuse(&self, name: &str, size: u64, before: u64) -> Option<String> {
        if size > self.max_part_bytes {
            return Some(format!(
                "{name}: {size} bytes > limits.max_part_bytes {}; not read",
                self.max_part_bytes
            ));
        }
        let total = before.saturating_add(size);
        (total > self.max_sample_bytes).then(|| {
            format!(
                "{name}: the sample's parts reach {total} bytes > limits.max_sample_bytes {}; not read",
                self.max_sample_bytes
            )
        })
    }
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits::from_config(&crate::config::LimitsConfig::default())
    }
}

/// Why a sample's bytes were refused rather than failed: the ledger gives each its own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A part or the sample is over `limits.max_part_bytes` / `max_sample_bytes`.
    TooLarge,
    /// A manifest row names a location outside its input's own (see `allow_outside`).
    OutsideInput,
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
    /// Parts whose names could not be written as they were: each original name and what was
    /// done (written under a sanitised extension, or dropped and why). See [`Sample::add_part`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_changes: Vec<String>,
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
    /// Set with `fetch_error` when the bytes were refused, not failed (over a limit, outside
    /// the input): the sample is dropped with that reason rather than `fetch_failed`.
    pub refused: Option<Refusal>,
}

impl Sample {
    /// A sample that could not be read: no parts, `fetch_error` saying why.
    pub fn failed(id: String, name: String, origin: Origin, error: String) -> Sample {
        Sample {
            id,
            key: sanitize_key(&name),
            name,
            origin,
            parts: Vec::new(),
            media: None,
            caption: None,
            fetch_error: Some(error),
            opted_out: false,
            refused: None,
        }
    }

    /// Marks this sample refused (`why` says which limit or rule); its parts are let go.
    pub fn refuse(&mut self, refusal: Refusal, why: String) {
        self.parts.clear();
        self.fetch_error = Some(why);
        self.refused = Some(refusal);
    }

    /// The media part's bytes, if there is a media part.
    pub fn media_bytes(&self) -> Option<&Bytes> {
        let ext = self.media.as_deref()?;
        self.parts.iter().find(|p| p.ext == ext).map(|p| &p.bytes)
    }

    /// The part with this extension.
    pub fn part(&self, ext: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.ext == ext)
    }

    /// Adds a part read under the name `original` (a tar member, a sidecar file), its extension
    /// sanitised as keys are ([`sanitize_extension`]). A part whose extension is empty or
    /// unusable, or the same as an earlier part's once sanitised, is dropped; every rename and
    /// drop is noted in `origin.part_changes`, so the ledger keeps the original name. Returns
    /// the extension the part was added under.
    pub fn add_part(&mut self, original: &str, part: Part) -> Option<String> {
        let original = printable_name(original);
        let Some(ext) = sanitize_extension(&part.ext) else {
            self.origin
                .part_changes
                .push(format!("{original}: dropped, no usable extension"));
            return None;
        };
        if self.parts.iter().any(|p| p.ext == ext) {
            self.origin.part_changes.push(format!(
                "{original}: dropped, a part with extension .{ext} came first"
            ));
            return None;
        }
        if ext != part.ext {
            self.origin
                .part_changes
                .push(format!("{original}: written as .{ext}"));
        }
        self.parts.push(Part {
            ext: ext.clone(),
            bytes: part.bytes,
        });
        Some(ext)
    }

    /// Notes a part that was read but left out (`why`: too large, cut short, …).
    pub fn note_dropped_part(&mut self, original: &str, why: &str) {
        let original = printable_name(original);
        self.origin
            .part_changes
            .push(format!("{original}: dropped, {why}"));
    }
}

/// A name as the ledger can show it: control characters escaped, at most 200 bytes (with
/// `…` when cut), so a hostile name cannot flood or garble the ledger.
fn printable_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if out.len() >= 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

/// The longest part extension: a key of [`MAX_KEY_LEN`], a dot and the extension fill ustar's
/// 100-byte member name.
pub const MAX_EXTENSION_LEN: usize = 100 - MAX_KEY_LEN - 1;

/// Turns a part extension into one every shard can hold: lowercase ASCII letters, digits, `-`,
/// `_`, and single dots between them (`seg.json`); any other character becomes `_` (as in
/// keys), empty dot-separated pieces are left out, and an extension over
/// [`MAX_EXTENSION_LEN`] bytes is cut and made unique again with a hash of the original.
/// `None` when nothing is left (the part cannot be named).
pub fn sanitize_extension(ext: &str) -> Option<String> {
    let cleaned: String = ext
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let joined = cleaned
        .split('.')
        .filter(|piece| !piece.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    if joined.is_empty() {
        return None;
    }
    if joined.len() > MAX_EXTENSION_LEN {
        let digest = hex::encode(sha2::Sha256::digest(ext.as_bytes()));
        let head = joined[..MAX_EXTENSION_LEN - 9].trim_end_matches('.');
        return Some(format!("{head}_{}", &digest[..8]));
    }
    Some(joined)
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
    fn extensions_are_sanitised_as_keys_are() {
        assert_eq!(sanitize_extension("jpg").as_deref(), Some("jpg"));
        assert_eq!(sanitize_extension("Seg.JSON").as_deref(), Some("seg.json"));
        assert_eq!(sanitize_extension("a b\\c").as_deref(), Some("a_b_c"));
        assert_eq!(sanitize_extension("x/./y").as_deref(), Some("x_._y"));
        assert_eq!(sanitize_extension("..jpg..").as_deref(), Some("jpg"));
        assert_eq!(
            sanitize_extension("\u{fffd}\u{fffd}").as_deref(),
            Some("__")
        );
        assert_eq!(sanitize_extension(""), None);
        assert_eq!(sanitize_extension("..."), None);
        let long = sanitize_extension(&"a".repeat(120)).unwrap();
        assert_eq!(long.len(), MAX_EXTENSION_LEN);
        assert!(long.starts_with("aaaaaaaaaa_"), "{long}");
        assert_ne!(Some(long), sanitize_extension(&"a".repeat(121)));
    }

    #[test]
    fn parts_that_cannot_be_named_are_dropped_and_renames_noted() {
        let mut sample = Sample {
            id: "0:k1".into(),
            key: "k1".into(),
            name: "k1".into(),
            origin: Origin::default(),
            parts: Vec::new(),
            media: None,
            caption: None,
            fetch_error: None,
            opted_out: false,
            refused: None,
        };
        let part = |ext: &str| Part {
            ext: ext.to_string(),
            bytes: Bytes::from_static(b"x"),
        };
        assert_eq!(
            sample.add_part("k1.jpg", part("jpg")).as_deref(),
            Some("jpg")
        );
        assert_eq!(sample.add_part("k1.", part("")), None);
        assert_eq!(
            sample.add_part("k1.JP G", part("jp g")).as_deref(),
            Some("jp_g")
        );
        assert_eq!(sample.add_part("k1.jp_g", part("jp_g")), None);
        assert_eq!(sample.parts.len(), 2);
        assert_eq!(
            sample.origin.part_changes,
            [
                "k1.: dropped, no usable extension",
                "k1.JP G: written as .jp_g",
                "k1.jp_g: dropped, a part with extension .jp_g came first",
            ]
        );
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
