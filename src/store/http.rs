//! Downloading the objects that manifest rows name by `http://` or `https://` URL, as
//! img2dataset does: bounded concurrency overall and per host, time-outs, retries with
//! exponential back-off, a size limit checked before and while reading, redirects followed
//! within a limit, and `X-Robots-Tag` opt-outs honoured before the body is read.
//!
//! It returns bytes or a failure that says why; it never decodes, and the ledger row is the
//! pipeline's to write. Settings are `[http]` (`config::HttpConfig`).

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, ETAG, RETRY_AFTER};
use reqwest::Url;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HttpConfig;

/// The longest wait between two attempts, whatever the back-off or `Retry-After` ask for.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The HTTP client could not be made (its TLS backend failed to start, say).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start the HTTP client: {0}")]
pub struct ClientError(String);

/// A body as it arrived, with where it finally came from.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub bytes: Bytes,
    /// The URL after redirects.
    pub final_url: String,
    pub status: u16,
    pub etag: Option<String>,
}

/// Why a URL gave no body, said for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadFailure {
    pub message: String,
    /// The server opted the object out (`X-Robots-Tag`); nothing is wrong with the fetch.
    pub opted_out: bool,
    /// The last answer's HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The URL after the redirects that were followed, when known.
    pub final_url: Option<String>,
}

/// What one attempt gave when it gave no body.
struct AttemptFailure {
    failure: DownloadFailure,
    /// A later attempt may succeed (time-outs, connection errors, 408, 429, 5xx, cut bodies).
    retryable: bool,
    /// `Retry-After` in seconds, when the server sent one.
    retry_after: Option<Duration>,
}

/// Downloads URLs with one connection pool for the whole run.
pub struct HttpDownloader {
    client: reqwest::Client,
    config: HttpConfig,
    all_hosts: Arc<Semaphore>,
    /// One semaphore per `host:port` with downloads in flight; removed when the host is idle,
    /// so a list over millions of hosts does not keep millions of entries.
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HttpDownloader {
    pub fn new(config: &HttpConfig) -> Result<HttpDownloader, ClientError> {
        let timeout = Duration::from_secs_f64(config.timeout_seconds);
        let client = reqwest::Client::builder()
            .user_agent(format!(
                "Mozilla/5.0 (compatible; {}; mmcurate/{})",
                config.user_agent_token,
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .timeout(Duration::from_secs_f64(config.total_timeout_seconds))
            .redirect(reqwest::redirect::Policy::limited(
                config.max_redirects as usize,
            ))
            .pool_max_idle_per_host(config.per_host_concurrency.clamp(1, 64))
            .build()
            .map_err(|e| ClientError(error_chain(&e)))?;
        Ok(HttpDownloader {
            client,
            config: config.clone(),
            all_hosts: Arc::new(Semaphore::new(config.effective_concurrency())),
            per_host: Mutex::new(HashMap::new()),
        })
    }

    /// Downloads in flight at once at most.
    pub fn concurrency(&self) -> usize {
        self.config.effective_concurrency()
    }

    /// Downloads `url`, retrying what may pass; the failure of the last attempt otherwise.
    pub async fn download(&self, url: &str) -> Result<Downloaded, DownloadFailure> {
        let parsed = Url::parse(url).map_err(|e| DownloadFailure {
            message: format!("not a valid URL: {e}"),
            opted_out: false,
            status: None,
            final_url: None,
        })?;
        let host = format!(
            "{}:{}",
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default().unwrap_or(0)
        );
        let attempts = self.config.retries + 1;
        let mut attempt = 1;
        loop {
            let result = {
                let _permits = self.permits(&host).await;
                let result = self.attempt(&parsed).await;
                drop(_permits);
                self.forget_idle_host(&host);
                result
            };
            let failed = match result {
                Ok(downloaded) => return Ok(downloaded),
                Err(failed) => failed,
            };
            if !failed.retryable || attempt >= attempts {
                let mut failure = failed.failure;
                if attempt > 1 {
                    failure.message = format!("{} ({attempt} attempts)", failure.message);
                }
                return Err(failure);
            }
            let backoff = Duration::from_secs_f64(
                self.config.retry_backoff_seconds * 2f64.powi(attempt as i32 - 1),
            );
            tokio::time::sleep(failed.retry_after.unwrap_or(backoff).min(MAX_BACKOFF)).await;
            attempt += 1;
        }
    }

    /// A permit for the host (when limited), then one of the run's.
    async fn permits(&self, host: &str) -> (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit) {
        let host_permit = if self.config.per_host_concurrency > 0 {
            let semaphore = self
                .per_host
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_host_concurrency)))
                .clone();
            semaphore.acquire_owned().await.ok()
        } else {
            None
        };
        let permit = self
            .all_hosts
            .clone()
            .acquire_owned()
            .await
            .expect("the run's semaphore is never closed");
        (host_permit, permit)
    }

    fn forget_idle_host(&self, host: &str) {
        let mut hosts = self.per_host.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody is downloading from or waiting for this host.
        if hosts.get(host).is_some_and(|s| Arc::strong_count(s) == 1) {
            hosts.remove(host);
        }
    }

    async fn attempt(&self, url: &Url) -> Result<Downloaded, AttemptFailure> {
        let started = Instant::now();
        let mut response = match self.client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(e) => return Err(self.request_error(&e, started, None)),
        };
        let status = response.status();
        let final_url = response.url().to_string();
        let fail = |message: String, retryable: bool| AttemptFailure {
            failure: DownloadFailure {
                message,
                opted_out: false,
                status: Some(status.as_u16()),
                final_url: Some(final_url.clone()),
            },
            retryable,
            retry_after: None,
        };
        if !status.is_success() {
            let mut failed = fail(
                format!(
                    "HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_string(),
                status.is_server_error() || matches!(status.as_u16(), 408 | 429),
            );
            failed.retry_after = retry_after(response.headers());
            return Err(failed);
        }
        if let Some(header) = opt_out(
            response.headers(),
            &self.config.user_agent_token,
            &self.config.disallowed_header_directives,
        ) {
            let mut failed = fail(
                format!(
                    "X-Robots-Tag {header:?} opts this object out (http.disallowed_header_directives)"
                ),
                false,
            );
            failed.failure.opted_out = true;
            return Err(failed);
        }
        let max = self.config.max_bytes.0;
        let declared = response.content_length();
        if let Some(length) = declared.filter(|&l| l > max) {
            return Err(fail(
                format!("Content-Length {length} is above http.max_bytes ({max})"),
                false,
            ));
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Allocated from Content-Length only once it is known to be within max_bytes.
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > max {
                        return Err(fail(
                            format!("the body grew past http.max_bytes ({max})"),
                            false,
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    let mut failed = self.request_error(&e, started, Some(status.as_u16()));
                    failed.failure.final_url = Some(final_url.clone());
                    return Err(failed);
                }
                Err(e) => {
                    let arrived = match declared {
                        Some(length) => format!("{} of {length} bytes arrived", body.len()),
                        None => format!("{} bytes arrived", body.len()),
                    };
                    return Err(fail(
                        format!("the body was cut short: {arrived} ({})", error_chain(&e)),
                        true,
                    ));
                }
            }
        }
        if let Some(length) = declared.filter(|&l| l != body.len() as u64) {
            return Err(fail(
                format!(
                    "the body was cut short: {} of {length} bytes arrived",
                    body.len()
                ),
                true,
            ));
        }
        Ok(Downloaded {
            bytes: body.freeze(),
            final_url,
            status: status.as_u16(),
            etag,
        })
    }

    /// Describes a failed request (no answer, or an answer cut off by a time-out).
    fn request_error(
        &self,
        e: &reqwest::Error,
        started: Instant,
        status: Option<u16>,
    ) -> AttemptFailure {
        let (message, retryable) = if e.is_redirect() {
            (
                format!(
                    "more than {} redirects (http.max_redirects)",
                    self.config.max_redirects
                ),
                false,
            )
        } else if e.is_timeout() {
            let message = if started.elapsed().as_secs_f64() >= self.config.total_timeout_seconds {
                format!(
                    "timed out: the download took more than {} s (http.total_timeout_seconds)",
                    self.config.total_timeout_seconds
                )
            } else {
                format!(
                    "timed out: the server sent nothing for {} s (http.timeout_seconds)",
                    self.config.timeout_seconds
                )
            };
            (message, true)
        } else if e.is_connect() {
            (format!("cannot connect: {}", error_chain(e)), true)
        } else if e.is_builder() {
            (format!("cannot request it: {}", error_chain(e)), false)
        } else {
            (format!("the request failed: {}", error_chain(e)), true)
        };
        AttemptFailure {
            failure: DownloadFailure {
                message,
                opted_out: false,
                status,
                final_url: e.url().map(|u| u.to_string()),
            },
            retryable,
            retry_after: None,
        }
    }
}

/// `Retry-After` given in seconds (the HTTP-date form is not honoured: the back-off applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The first `X-Robots-Tag` value that opts the object out, as img2dataset reads them: each
/// value is `[AGENT:] directive, directive, …`; a value naming an agent applies only when it
/// names ours, and directives compare case-insensitively.
pub fn opt_out(headers: &HeaderMap, agent_token: &str, disallowed: &[String]) -> Option<String> {
    if disallowed.is_empty() {
        return None;
    }
    headers
        .get_all("x-robots-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|value| {
            let (agent, directives) = match value.split_once(':') {
                Some((agent, rest)) => (Some(agent.trim()), rest),
                None => (None, *value),
            };
            let ours = agent.is_none_or(|a| a.eq_ignore_ascii_case(agent_token));
            ours && directives
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .any(|d| disallowed.contains(&d))
        })
        .map(str::to_string)
}

/// An error and its causes, one after the other: reqwest's own message alone ("error sending
/// request") does not say what went wrong. The URL is left out: the ledger row has it.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("X-Robots-Tag", HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn opt_outs_are_read_as_img2dataset_reads_them() {
        let disallowed = HttpConfig::default().disallowed_header_directives;
        let check = |values: &[&str]| opt_out(&headers(values), "mmcurate", &disallowed);
        assert_eq!(check(&["noai"]), Some("noai".to_string()));
        assert_eq!(
            check(&["nofollow, NoImageAI"]),
            Some("nofollow, NoImageAI".to_string())
        );
        assert_eq!(check(&["none"]), Some("none".to_string()));
        assert_eq!(check(&["noindex"]), Some("noindex".to_string()));
        assert_eq!(check(&["nofollow", "noarchive"]), None);
        // A directive for another agent does not apply; one for ours does.
        assert_eq!(check(&["otherbot: noai"]), None);
        assert_eq!(
            check(&["otherbot: noai", "MMCurate: noai"]),
            Some("MMCurate: noai".to_string())
        );
        assert_eq!(opt_out(&headers(&["noai"]), "mmcurate", &[]), None);
        assert_eq!(check(&[]), None);
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut map = HeaderMap::new();
        map.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&map), Some(Duration::from_secs(3)));
        map.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&map), None);
    }
}
