//! The measuring of one work unit as threads and channels: the sources fetch the unit's samples
//! on the I/O runtime into a bounded channel ([`read_unit`]); worker threads take them off it, have `decide`
//! judge each one (which calls decode and measure), have `write` encode keyframes and stage the
//! parts of the samples that may be kept, and return one [`Record`] per sample. Orchestration
//! only: what is measured and what is dropped is decided in the stages.

use futures::StreamExt;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use super::progress::StageBar;
use super::RunError;
use crate::config::Config;
use crate::decide::judge::{judge, Judged};
use crate::decide::{Reason, Stage};
use crate::measure::backend::MeasureBackend;
use crate::measure::Measurements;
use crate::plan::units::{UnitSpan, WorkUnit};
use crate::plan::{Plan, Units};
use crate::record::Record;
use crate::source::{files, manifest, webdataset, ReadLimits, Sample};
use crate::store::Stores;
use crate::write::keyframes::keyframe_parts;
use crate::write::staging::{stage_sample, Staging};

/// Objects fetched at once per input (files and manifest rows).
const FETCH_CONCURRENCY: usize = 32;
/// Samples waiting in the channel per worker.
const QUEUE_PER_WORKER: usize = 8;

/// The input errors of a run, by input index, sorted.
pub type InputErrors = Vec<(usize, String)>;

/// Streams one work unit through the measure phase, staging into `staging`. Returns one
/// record per sample, in id order, and the unit's input errors, sorted.
#[allow(clippy::too_many_arguments)]
pub fn measure_unit(
    plan: &Plan,
    unit: &WorkUnit,
    config: &Config,
    backend: &dyn MeasureBackend,
    runtime: &tokio::runtime::Handle,
    stores: &Stores,
    staging: &Staging,
    bars: (&StageBar, &StageBar),
) -> Result<(Vec<Record>, InputErrors), RunError> {
    let (read_bar, measure_bar) = bars;
    let errors: Mutex<InputErrors> = Mutex::default();
    let records = measure_samples(
        |sender| {
            read_unit(
                plan,
                unit,
                ReadLimits::from_config(&config.limits),
                runtime,
                stores,
                sender,
                &errors,
                read_bar,
                measure_bar,
            )
        },
        config,
        backend,
        staging,
        measure_bar,
    )?;
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort();
    Ok((records, errors))
}

/// Measures what `produce` sends on `config.worker_threads()` workers. Returns the records in
/// id order, which is what makes the rest of the run independent of thread count and arrival
/// order; a staging error stops the workers, and with them the producer.
pub fn measure_samples(
    produce: impl FnOnce(async_channel::Sender<Sample>),
    config: &Config,
    backend: &dyn MeasureBackend,
    staging: &Staging,
    bar: &StageBar,
) -> Result<Vec<Record>, RunError> {
    let threads = config.worker_threads();
    let mut records = fan_out(threads, threads * QUEUE_PER_WORKER, produce, |sample| {
        let record = measure_sample(sample, config, backend, staging)?;
        match record.decision.dropped() {
            Some(d) => bar.inc_dropped(d.reason.as_str()),
            None => bar.inc(),
        }
        Ok(record)
    })
    .map_err(|source| RunError::Staging {
        path: "staging file".to_string(),
        source,
    })?;
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

/// Runs `work` on `threads` threads over what `produce` sends through a channel of `capacity`
/// and returns the results, in no particular order. The first error stops its worker; when no
/// worker is left the channel closes, so the producer's sends fail and it can stop too.
pub fn fan_out<T: Send, R: Send, E: Send>(
    threads: usize,
    capacity: usize,
    produce: impl FnOnce(async_channel::Sender<T>),
    work: impl Fn(T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let (sender, receiver) = async_channel::bounded::<T>(capacity.max(1));
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let receiver = receiver.clone();
                scope.spawn(move || -> Result<Vec<R>, E> {
                    let mut out = Vec::new();
                    while let Ok(item) = receiver.recv_blocking() {
                        out.push(work(item)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        drop(receiver);
        produce(sender);
        let mut results = Vec::new();
        let mut first_error = None;
        for worker in workers {
            match worker.join().expect("workers catch panics per item") {
                Ok(part) => results.extend(part),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    })
}

/// Judges one sample, then stages its parts (with its keyframes) if it may be kept. Only an
/// I/O error on the staging file is an error: everything about the sample itself is a
/// decision, a panic while judging too.
pub fn measure_sample(
    sample: Sample,
    config: &Config,
    backend: &dyn MeasureBackend,
    staging: &Staging,
) -> Result<Record, std::io::Error> {
    let mut measurements = Measurements::default();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        judge(&sample, config, backend, &mut measurements)
    }));
    let judged = outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Judged::drop(
            Stage::Decode,
            Reason::Unreadable,
            format!("decoder crashed: {message}"),
        )
    });
    let staged = if judged.decision.is_keep() {
        let keyframes = keyframe_parts(&sample.id, &judged.keyframes);
        stage_sample(staging, &sample, judged.media_ext.as_deref(), &keyframes)?
    } else {
        Vec::new()
    };
    Ok(Record {
        id: sample.id,
        key: sample.key,
        name: sample.name,
        origin: sample.origin,
        measurements,
        decision: judged.decision,
        staged,
        shard: None,
    })
}

/// Fetches the samples of one work unit into the channel; returns when all are sent.
#[allow(clippy::too_many_arguments)]
fn read_unit(
    plan: &Plan,
    unit: &WorkUnit,
    limits: ReadLimits,
    runtime: &tokio::runtime::Handle,
    stores: &Stores,
    sender: async_channel::Sender<Sample>,
    errors: &Mutex<InputErrors>,
    read_bar: &StageBar,
    measure_bar: &StageBar,
) {
    let Some(input) = plan.inputs.iter().find(|i| i.index == unit.input) else {
        return;
    };
    let base = &input.base;
    let index = input.index;
    match (&input.units, &unit.span) {
        (Units::Files(units), UnitSpan::Files(range)) => {
            let fetches = units[range.clone()]
                .iter()
                .map(|unit| files::fetch(base, index, unit, limits));
            forward(runtime, fetches, &sender, read_bar, FETCH_CONCURRENCY);
        }
        (Units::Manifests(manifests), UnitSpan::ManifestRows { manifest, rows }) => {
            let m = &manifests[*manifest];
            let rows = &m.rows[rows.clone()];
            // Rows that could not be read are input errors too (each is also a row).
            let mut unreadable: Vec<(usize, String)> = rows
                .iter()
                .filter_map(|row| Some((index, row.error.clone()?)))
                .collect();
            errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut unreadable);
            let rules = manifest::RowRules {
                input: base,
                allow_outside: input.config.allow_outside,
                limits,
            };
            let fetches = rows.iter().map(|row| {
                manifest::fetch_row(stores, &m.location, &m.relative, index, row, rules)
            });
            forward(runtime, fetches, &sender, read_bar, FETCH_CONCURRENCY);
        }
        (Units::Shards(shards), UnitSpan::Shard(shard)) => {
            let shard = &shards[*shard];
            let location = base.at(shard.location.clone());
            let relative = base.relative(&shard.location);
            let result =
                webdataset::read_shard(&location, &relative, index, limits, runtime, |sample| {
                    measure_bar.add_expected(1);
                    let _ = sender.send_blocking(sample);
                });
            if let Err(message) = result {
                tracing::error!("{message}");
                errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((index, message.to_string()));
            }
            read_bar.inc();
        }
        // `plan::units::work_units` cuts each input by its own kind of units.
        _ => tracing::error!("work unit {} does not match its input's kind", unit.id),
    }
}

/// Runs the fetches, `concurrency` at a time, and sends each sample on as it arrives.
fn forward<F: std::future::Future<Output = Sample>>(
    runtime: &tokio::runtime::Handle,
    fetches: impl Iterator<Item = F>,
    sender: &async_channel::Sender<Sample>,
    read_bar: &StageBar,
    concurrency: usize,
) {
    runtime.block_on(async {
        let mut samples =
            std::pin::pin!(futures::stream::iter(fetches).buffer_unordered(concurrency));
        while let Some(sample) = samples.next().await {
            read_bar.inc();
            // Sending fails only when every worker has stopped (the run is failing): stop too.
            if sender.send(sample).await.is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeError, ImageInfo};
    use crate::measure::backend::CpuBackend;
    use crate::measure::{ImageQuality, QualityKernels};
    use crate::pipeline::progress::Progress;
    use crate::source::{Origin, Part};
    use bytes::Bytes;

    fn config(threads: usize) -> Config {
        let text = format!(
            "[run]\noutput = \"/tmp/unused\"\nthreads = {threads}\n[[inputs]]\nuri = \"/tmp/unused\"\n\
             [filters.image]\nmin_side = 8\nmin_sharpness = 0.0\nmin_brightness = 0.0\nmax_brightness = 255.0\n"
        );
        Config::from_toml_str(&text, "test", &[]).unwrap()
    }

    /// A PNG whose pixels depend on `seed`, with a caption part.
    fn sample(name: &str, seed: u32) -> Sample {
        let image = image::GrayImage::from_fn(40, 30, |x, y| {
            image::Luma([((x * seed + y * 7 + seed * 13) % 256) as u8])
        });
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        Sample {
            id: format!("0:{name}"),
            key: name.replace('.', "_"),
            name: name.to_string(),
            origin: Origin::default(),
            parts: vec![
                Part {
                    ext: "png".into(),
                    bytes: Bytes::from(png),
                },
                Part {
                    ext: "txt".into(),
                    bytes: Bytes::from(format!("picture {seed}")),
                },
            ],
            media: Some("png".into()),
            caption: None,
            fetch_error: None,
            opted_out: false,
            refused: None,
        }
    }

    fn send_all(samples: Vec<Sample>) -> impl FnOnce(async_channel::Sender<Sample>) {
        move |sender| {
            for s in samples {
                sender.send_blocking(s).unwrap();
            }
        }
    }

    #[test]
    fn records_come_back_in_id_order_whatever_the_arrival_order_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let progress = Progress::hidden();
        let names: Vec<String> = (0..24).map(|i| format!("img{i:02}.png")).collect();
        let mut outcomes = Vec::new();
        for (threads, reversed) in [(1, false), (4, true)] {
            let staging = Staging::create(dir.path()).unwrap();
            let mut samples: Vec<Sample> = names
                .iter()
                .enumerate()
                .map(|(i, n)| sample(n, i as u32 + 1))
                .collect();
            if reversed {
                samples.reverse();
            }
            let bar = progress.stage("measure", None);
            let records = measure_samples(
                send_all(samples),
                &config(threads),
                &CpuBackend,
                &staging,
                &bar,
            )
            .unwrap();
            let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, sorted);
            assert_eq!(ids.len(), 24);
            assert!(records.iter().all(|r| r.decision.is_keep()));
            // Media first, then the caption: the order the shard gets them in.
            let exts: Vec<&str> = records[0].staged.iter().map(|p| p.ext.as_str()).collect();
            assert_eq!(exts, ["png", "txt"]);
            let measured: Vec<_> = records
                .iter()
                .map(|r| (r.id.clone(), r.measurements.clone()))
                .collect();
            outcomes.push(measured);
        }
        assert_eq!(outcomes[0], outcomes[1]);
    }

    /// A backend whose image decoder crashes on every image of a given width.
    struct CrashesOnWidth(u32);

    impl MeasureBackend for CrashesOnWidth {
        fn measure_image(
            &self,
            media: &[u8],
            info: &ImageInfo,
        ) -> Result<ImageQuality, DecodeError> {
            assert_ne!(info.width, self.0, "decoder bug on width {}", self.0);
            CpuBackend.measure_image(media, info)
        }

        fn kernels(&self) -> &dyn QualityKernels {
            CpuBackend.kernels()
        }
    }

    #[test]
    fn a_stage_that_panics_drops_its_sample_and_the_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(dir.path()).unwrap();
        let progress = Progress::hidden();
        let bar = progress.stage("measure", None);
        let samples = vec![sample("a.png", 3), sample("b.png", 5)];
        let records = measure_samples(
            send_all(samples),
            &config(2),
            &CrashesOnWidth(40),
            &staging,
            &bar,
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        for record in &records {
            let drop = record.decision.dropped().expect("dropped");
            assert_eq!(drop.reason, Reason::Unreadable);
            assert_eq!(drop.stage, Stage::Decode);
            assert!(
                drop.detail.starts_with("decoder crashed:")
                    && drop.detail.contains("decoder bug on width 40"),
                "{}",
                drop.detail
            );
            assert!(record.staged.is_empty(), "a dropped sample stages nothing");
            // What was measured before the crash is still recorded.
            assert_eq!(record.measurements.width, Some(40));
        }
    }

    #[test]
    fn a_failing_worker_fails_the_run_and_stops_the_producer() {
        let mut sent = 0;
        let mut stopped = false;
        let result: Result<Vec<u32>, String> = fan_out(
            2,
            2,
            |sender| {
                for i in 0..100_000u32 {
                    if sender.send_blocking(i).is_err() {
                        stopped = true;
                        break;
                    }
                    sent += 1;
                }
            },
            |i| {
                // Every worker fails on its next item after the fifth.
                if i >= 5 {
                    Err(format!("staging write failed at {i}"))
                } else {
                    Ok(i)
                }
            },
        );
        let error = result.unwrap_err();
        assert!(error.starts_with("staging write failed at "), "{error}");
        assert!(stopped, "the producer saw the channel close");
        assert!(sent < 100_000, "the producer stopped early ({sent} sent)");
    }

    #[test]
    fn every_item_is_worked_once_on_any_number_of_threads() {
        for threads in [1, 3, 8] {
            let mut out: Vec<u32> = fan_out(
                threads,
                4,
                |sender| (0..1000).for_each(|i| sender.send_blocking(i).unwrap()),
                |i| Ok::<_, ()>(i * 2),
            )
            .unwrap();
            out.sort();
            assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        }
    }
}
