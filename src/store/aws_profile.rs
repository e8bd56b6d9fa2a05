//! AWS shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`) read for
//! the selected profile (`AWS_PROFILE`, else `default`): static keys, session token, region
//! and `endpoint_url`, as the AWS CLI and SDKs read them.
//!
//! Why by hand: object_store 0.14's `AmazonS3Builder::from_env` reads only `AWS_*` variables
//! and has no profile support, and the AWS SDK crates would bring a second HTTP and TLS stack
//! for two small files. This reads no role, SSO or `credential_process` settings: a profile
//! that relies on them is refused with the command that turns it into variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The settings of one profile that mmcurate uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsProfile {
    pub name: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Why the selected profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("AWS_PROFILE={name}: there is no [{config_section}] in {config_path} and no [{name}] in {credentials_path}")]
    Missing {
        name: String,
        config_section: String,
        config_path: String,
        credentials_path: String,
    },
    #[error(
        "AWS profile {name} uses `{key}`, which mmcurate cannot turn into credentials itself; \
         export them first: eval \"$(aws configure export-credentials --profile {name} --format env)\""
    )]
    NeedsSdk { name: String, key: String },
}

/// Settings that need an AWS SDK to turn into credentials.
const UNSUPPORTED: &[&str] = &[
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

/// Reads the profile `AWS_PROFILE` names (else `default`) from the files `AWS_CONFIG_FILE`
/// and `AWS_SHARED_CREDENTIALS_FILE` name (else `~/.aws/config` and `~/.aws/credentials`).
/// `None` when no file has that profile and `AWS_PROFILE` was not set; an error when it was
/// set and no file has it, or when a file cannot be read.
pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Option<AwsProfile>, ProfileError> {
    let explicit = env("AWS_PROFILE").filter(|p| !p.is_empty());
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| -> Option<PathBuf> {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let config_path = file("AWS_CONFIG_FILE", "config");
    let credentials_path = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_section = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    let config = read_section(config_path.as_deref(), &config_section)?;
    // The credentials file names sections without the `profile ` prefix and wins over the
    // config file, as in the AWS CLI.
    let credentials = read_section(credentials_path.as_deref(), &name)?;
    if config.is_none() && credentials.is_none() {
        return match explicit {
            None => Ok(None),
            Some(_) => Err(ProfileError::Missing {
                name,
                config_section,
                config_path: show(config_path.as_deref()),
                credentials_path: show(credentials_path.as_deref()),
            }),
        };
    }
    let mut settings = config.unwrap_or_default();
    settings.extend(credentials.unwrap_or_default());
    let get = |key: &str| settings.get(key).filter(|v| !v.is_empty()).cloned();
    let profile = AwsProfile {
        name: name.clone(),
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    };
    if profile.access_key_id.is_none() {
        if let Some(key) = UNSUPPORTED.iter().find(|k| settings.contains_key(**k)) {
            return Err(ProfileError::NeedsSdk {
                name,
                key: key.to_string(),
            });
        }
    }
    Ok(Some(profile))
}

fn show(path: Option<&Path>) -> String {
    path.map_or("(no HOME)".to_string(), |p| p.display().to_string())
}

/// The `key = value` pairs of one `[section]` of an AWS INI file; `None` when the file or the
/// section does not exist. Keys are lowercased; indented lines (the nested settings of a
/// service, such as `s3 =` followed by `  addressing_style = path`) are skipped.
fn read_section(
    path: Option<&Path>,
    section: &str,
) -> Result<Option<BTreeMap<String, String>>, ProfileError> {
    let Some(path) = path else { return Ok(None) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ProfileError::Unreadable {
                path: path.display().to_string(),
                source,
            })
        }
    };
    Ok(parse_section(&text, section))
}

fn parse_section(text: &str, section: &str) -> Option<BTreeMap<String, String>> {
    let mut found: Option<BTreeMap<String, String>> = None;
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            inside = name == section;
            if inside {
                found.get_or_insert_with(BTreeMap::new);
            }
            continue;
        }
        if !inside || line.starts_with([' ', '\t']) {
            continue;
        }
        if let (Some(map), Some((key, value))) = (found.as_mut(), trimmed.split_once('=')) {
            map.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(home: &Path, profile: Option<&str>) -> impl Fn(&str) -> Option<String> {
        let home = home.display().to_string();
        let profile = profile.map(str::to_string);
        move |key| match key {
            "HOME" => Some(home.clone()),
            "AWS_PROFILE" => profile.clone(),
            _ => None,
        }
    }

    #[test]
    fn profiles_come_from_both_files_credentials_first() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(
            aws.join("config"),
            "# comment\n[default]\nregion = eu-west-1\n\n[profile ci]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\ns3 =\n  addressing_style = path\naws_access_key_id = FROMCONFIG\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s3cret\n[ci]\nAWS_ACCESS_KEY_ID = AKIACI\naws_secret_access_key = ci-secret\naws_session_token = tok\n",
        )
        .unwrap();
        let default = load(env_with(home.path(), None)).unwrap().unwrap();
        assert_eq!(
            default,
            AwsProfile {
                name: "default".into(),
                access_key_id: Some("AKIADEFAULT".into()),
                secret_access_key: Some("s3cret".into()),
                session_token: None,
                region: Some("eu-west-1".into()),
                endpoint_url: None,
            }
        );
        let ci = load(env_with(home.path(), Some("ci"))).unwrap().unwrap();
        assert_eq!(ci.access_key_id.as_deref(), Some("AKIACI"));
        assert_eq!(ci.session_token.as_deref(), Some("tok"));
        assert_eq!(ci.region.as_deref(), Some("us-west-2"));
        assert_eq!(ci.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));

        let e = load(env_with(home.path(), Some("nope"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "AWS_PROFILE=nope: there is no [profile nope] in {} and no [nope] in {}",
                aws.join("config").display(),
                aws.join("credentials").display()
            )
        );
    }

    #[test]
    fn no_files_no_profile_and_sso_profiles_are_refused() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(load(env_with(home.path(), None)).unwrap(), None);
        let aws = home.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(
            aws.join("config"),
            "[profile sso]\nsso_session = corp\nregion = us-east-1\n",
        )
        .unwrap();
        let e = load(env_with(home.path(), Some("sso")))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("AWS profile sso uses `sso_session`")
                && e.contains("aws configure export-credentials --profile sso --format env"),
            "{e}"
        );
    }
}
