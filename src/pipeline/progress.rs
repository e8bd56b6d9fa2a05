//! Progress per stage: done/total, rate, ETA and drops by reason. On a terminal these are
//! `indicatif` bars on stderr; otherwise (a batch job's log) a `tracing` line every 10 s.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(10);

/// How progress is shown for a run.
pub struct Progress {
    multi: MultiProgress,
    bars: bool,
    log_lines: bool,
}

impl Progress {
    /// Bars when stderr is a terminal, else periodic log lines.
    pub fn for_terminal() -> Progress {
        let bars = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress {
            multi: MultiProgress::with_draw_target(if bars {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            }),
            bars,
            log_lines: !bars,
        }
    }

    /// Shows nothing (tests, `--quiet`).
    pub fn hidden() -> Progress {
        Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            bars: false,
            log_lines: false,
        }
    }

    /// The bars' container: log output must go through [`MultiProgress::suspend`] so it does
    /// not tear the bars.
    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }

    /// A bar for one stage; `total` is `None` when the count is learnt on the way.
    pub fn stage(&self, name: &str, total: Option<u64>) -> StageBar {
        let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
        let template = "{prefix:>8} [{bar:30.cyan/blue}] {human_pos}/{human_len} {per_sec:1} ETA {eta:>4} {msg}";
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        if !self.bars {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        StageBar {
            bar,
            name: name.to_string(),
            drops: Mutex::new(BTreeMap::new()),
            last_log: Mutex::new(Instant::now()),
            log_lines: self.log_lines,
        }
    }
}

/// One stage's progress.
pub struct StageBar {
    bar: ProgressBar,
    name: String,
    drops: Mutex<BTreeMap<String, u64>>,
    last_log: Mutex<Instant>,
    log_lines: bool,
}

impl StageBar {
    pub fn inc(&self) {
        self.bar.inc(1);
        self.maybe_log();
    }

    /// Counts one done item that was dropped, by reason.
    pub fn inc_dropped(&self, reason: &str) {
        let message = {
            let mut drops = self.drops.lock().unwrap_or_else(|p| p.into_inner());
            *drops.entry(reason.to_string()).or_default() += 1;
            drops_summary(&drops)
        };
        self.bar.set_message(message);
        self.inc();
    }

    /// Raises the total when it is learnt on the way (samples inside shards).
    pub fn add_expected(&self, n: u64) {
        self.bar.inc_length(n);
    }

    pub fn finish(&self) {
        self.bar.finish();
        if self.log_lines {
            self.log();
        }
    }

    fn maybe_log(&self) {
        if !self.log_lines {
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            drop(last);
            self.log();
        }
    }

    fn log(&self) {
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let drops = drops_summary(&self.drops.lock().unwrap_or_else(|p| p.into_inner()));
        tracing::info!(
            "{}: {done}/{total} ({:.1}/s, ETA {}s) {drops}",
            self.name,
            self.bar.per_sec(),
            self.bar.eta().as_secs()
        );
    }
}

fn drops_summary(drops: &BTreeMap<String, u64>) -> String {
    if drops.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("dropped: {}", parts.join(", "))
}
