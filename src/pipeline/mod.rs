//! Running the stages together: plan → (source → decode → measure → per-sample filters,
//! streamed over worker threads, candidates staged; videos and audio in [`av`]) → exact, pHash,
//! video and audio dedup → CLIP embeddings of the survivors (with a model) → semantic dedup →
//! alignment thresholds → write.
//!
//! Sources are asynchronous (`object_store` on a tokio runtime) and feed a bounded channel;
//! worker threads decode and measure. Dedup needs the whole run, so it waits for every sample
//! to be measured; then kept samples are written from staging in id order, which is what makes
//! the output independent of thread count and arrival order.

pub mod av;
pub mod embed;
pub mod progress;

use futures::StreamExt;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::decide::alignment::{decide_alignment, AlignmentSummary};
use crate::decide::dedup::{
    audio_duplicates, exact_duplicates, near_duplicates, semantic_duplicates, video_duplicates,
    Candidate,
};
use crate::decide::filters::{check_header, check_quality};
use crate::decide::{Decision, Drop, Reason, Stage};
use crate::decode::{probe, sniff_av, CpuDecoder, DecodeError, ImageDecoder};
use crate::measure::video::Signature;
use crate::measure::Embeddings;
use crate::measure::{
    sha256_hex, CpuKernels, Measurements, QualityKernels, ANALYSIS_SHORT_SIDE, MEASURE_VERSION,
};
use crate::models::checkpoint::load_clip;
use crate::models::clip::Clip;
use crate::models::ModelError;
use crate::plan::{self, Plan, Units};
use crate::source::{files, manifest, webdataset, Sample, SourceError, Stores, AV_EXTENSIONS};
use crate::write::manifest::{
    Counts, InputRecord, ModelsRecord, OutputFile, RunInfo, RunManifest, ToolInfo,
};
use crate::write::staging::{StagedPart, Staging};
use crate::write::{self, Record, WriteError};
use av::Judged;
use embed::{embed_kept, EmbedError, Preprocessing, VideoEmbedding};
use progress::Progress;

/// nvJPEG and the kernels on one GPU: JPEGs are decoded and measured in device memory.
type OnDevice<'a> = (&'a crate::gpu::GpuJpegDecoder, &'a crate::gpu::CudaKernels);

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("staging folder {path}: {source}")]
    Staging {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("models.clip: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The device in `run.device` cannot be used: a setup error, like a bad config.
    #[error(transparent)]
    Device(crate::gpu::GpuError),
}

/// The device `run.device` asks for (validated with the config, so it parses).
fn select_device(config: &Config) -> Result<crate::gpu::Selected, RunError> {
    let request = crate::gpu::DeviceRequest::parse(&config.run.device).unwrap_or(
        // Unreachable after `Config::validate`; the CPU is the safe reading.
        crate::gpu::DeviceRequest::Cpu,
    );
    crate::gpu::select(request).map_err(RunError::Device)
}

/// Objects fetched at once per input (files and manifest rows).
const FETCH_CONCURRENCY: usize = 32;
/// Shards streamed at once per input.
const SHARD_CONCURRENCY: usize = 2;

/// The finished run: its manifest, as written to `<output>/manifest.json`.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub manifest: RunManifest,
    pub seconds: f64,
}

/// Resolves the inputs and returns the plan, without fetching any media (`mmcurate plan`).
pub fn plan_only(config: &Config) -> Result<Plan, RunError> {
    let runtime = io_runtime(config)?;
    let stores = Stores::new();
    Ok(runtime.block_on(plan::resolve(config, &stores))?)
}

fn io_runtime(config: &Config) -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads().clamp(2, 8))
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

/// Runs a whole curation job.
pub fn run(config: &Config, progress: &Progress) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let runtime = io_runtime(config)?;
    let handle = runtime.handle().clone();
    let stores = Stores::with_http(config.http.clone());
    let mut stage_seconds = BTreeMap::new();

    // The device first, before any work: `run.device = "cuda"` without a GPU is a setup
    // error, and `auto` says once which device it took and why.
    let device = select_device(config)?;
    // Videos decode with NVDEC on that GPU unless `[video] gpu_decode = false`.
    let config = &av::resolve_video_decoding(config, &device);
    let cuda_kernels = match &device.cuda {
        Some(gpu) => Some(crate::gpu::CudaKernels::new(gpu).map_err(RunError::Device)?),
        None => None,
    };
    let kernels: &dyn QualityKernels = match &cuda_kernels {
        Some(cuda) => cuda,
        None => &CpuKernels,
    };
    tracing::info!("measuring on {}", device.description());
    // JPEGs decode with nvJPEG only when asked (`run.gpu_jpeg_decode`): its inverse DCT rounds
    // differently from libjpeg-turbo's, so the numbers, unlike the kernels', are not
    // bit-identical to a CPU run's.
    let gpu_decoder = if config.run.gpu_jpeg_decode {
        let decoder = crate::gpu::nvjpeg::decoder_for(&device);
        if decoder.is_none() {
            tracing::warn!(
                "run.gpu_jpeg_decode = true, but nvJPEG cannot be used on {}: JPEGs decode on the CPU",
                device.label()
            );
        }
        decoder
    } else {
        None
    };
    let jpeg_decoder = gpu_decoder
        .as_ref()
        .map_or("libjpeg-turbo (cpu)".to_string(), |d| d.description());
    let decoder: &dyn ImageDecoder = match &gpu_decoder {
        Some(gpu) => gpu,
        None => &CpuDecoder,
    };
    // nvJPEG and the kernels on the same GPU: JPEG pixels stay in device memory for measuring.
    let on_device: Option<OnDevice> = gpu_decoder.as_ref().zip(cuda_kernels.as_ref());
    // The model next, on that device: a wrong path, a failed download or a dtype the device
    // cannot run is a setup error, found before any work starts.
    let clip = match &config.models.clip {
        Some(model) => {
            let clip = load_clip(model, &device)?;
            tracing::info!(
                "CLIP model {} (weights sha256 {}{}) on {} in {}, batch size {}",
                clip.info.id,
                clip.info.weights_sha256,
                if clip.info.card_verified {
                    ", matches its model card"
                } else {
                    ", no model card"
                },
                clip.info.device,
                clip.info.dtype,
                model.batch_size
            );
            Some(clip)
        }
        None => {
            tracing::info!(
                "no [models.clip] in the config: CLIP embeddings, semantic dedup and CLIP scores are skipped"
            );
            None
        }
    };
    let plan = runtime.block_on(plan::resolve(config, &stores))?;
    let output = stores.open_for_output(&config.run.output)?;
    runtime.block_on(check_output(&output))?;
    runtime.block_on(write::clear_success_marker(&output))?;
    stage_seconds.insert("plan".to_string(), started.elapsed().as_secs_f64());
    tracing::info!(
        "planned {} input(s): {} unit(s) of work, {} sample(s) expected",
        plan.inputs.len(),
        plan.unit_count(),
        plan.expected_samples()
            .map_or("an unknown number of".to_string(), |n| n.to_string())
    );

    let staging_dir = staging_dir(config);
    let staging = Staging::create(&staging_dir).map_err(|source| RunError::Staging {
        path: staging_dir.display().to_string(),
        source,
    })?;
    let measure_started = Instant::now();
    let videos_before = crate::decode::av::video_decoder_counts();
    let (mut records, input_errors) = measure_all(
        &plan, config, decoder, kernels, on_device, &handle, &stores, &staging, progress,
    )?;
    let videos_after = crate::decode::av::video_decoder_counts();
    let mut video_decoders = BTreeMap::new();
    for (name, before, after) in [
        ("nvdec", videos_before.nvdec, videos_after.nvdec),
        ("cpu", videos_before.cpu, videos_after.cpu),
    ] {
        if after > before {
            video_decoders.insert(name.to_string(), after - before);
        }
    }
    // The GPU's busy time by stage and step (only for a run on a GPU).
    let mut gpu_busy_seconds = BTreeMap::new();
    let jpeg_busy = || gpu_decoder.as_ref().map_or(0.0, |d| d.busy_seconds());
    let measure_jpeg_busy = jpeg_busy();
    if let Some(cuda) = &cuda_kernels {
        gpu_busy_seconds.insert("measure.kernels".to_string(), cuda.busy().measure);
        if gpu_decoder.is_some() {
            gpu_busy_seconds.insert("measure.jpeg_decode".to_string(), measure_jpeg_busy);
        }
    }
    stage_seconds.insert(
        "measure".to_string(),
        measure_started.elapsed().as_secs_f64(),
    );

    let decide_started = Instant::now();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    decide_duplicates(&mut records, config);
    stage_seconds.insert("decide".to_string(), decide_started.elapsed().as_secs_f64());

    let reader = staging.finish().map_err(|source| RunError::Staging {
        path: staging_dir.display().to_string(),
        source,
    })?;
    let mut alignment = None;
    let mut embeddings_files = Vec::new();
    if let (Some(clip), Some(model)) = (&clip, &config.models.clip) {
        let embed_started = Instant::now();
        let sampling = av::frame_sampling(config, true);
        let video = VideoEmbedding {
            sampling: &sampling,
            score: config.video.clip_score,
        };
        let preprocessing = match &cuda_kernels {
            Some(kernels) => Preprocessing::Gpu {
                kernels,
                jpeg: gpu_decoder.as_ref(),
            },
            None => Preprocessing::Cpu,
        };
        let mut model_gpu_seconds = 0.0;
        let embeddings = embed_kept(
            &mut records,
            &reader,
            clip,
            model.batch_size,
            &video,
            preprocessing,
            &mut model_gpu_seconds,
            progress,
        )?;
        if let Some(cuda) = &cuda_kernels {
            gpu_busy_seconds.insert("embed.clip_inputs".to_string(), cuda.busy().clip_inputs);
            if gpu_decoder.is_some() {
                let seconds = jpeg_busy() - measure_jpeg_busy;
                gpu_busy_seconds.insert("embed.jpeg_decode".to_string(), seconds);
            }
            if clip.on_gpu() {
                gpu_busy_seconds.insert("embed.model".to_string(), model_gpu_seconds);
            }
        }
        stage_seconds.insert("embed".to_string(), embed_started.elapsed().as_secs_f64());
        let decide_started = Instant::now();
        alignment = decide_semantic_and_alignment(&mut records, &embeddings, config);
        *stage_seconds.entry("decide".to_string()).or_default() +=
            decide_started.elapsed().as_secs_f64();
        embeddings_files = write::embeddings::write_embeddings(
            &output,
            &records,
            &embeddings,
            &clip.info,
            &handle,
        )?;
    }

    let write_started = Instant::now();
    let kept = records.iter().filter(|r| r.decision.is_keep()).count() as u64;
    let bar = progress.stage("write", Some(kept));
    let written = write::write_shards_and_ledger(
        &output,
        &mut records,
        &reader,
        &config.output,
        &embeddings_files,
        &handle,
        || bar.inc(),
    )?;
    bar.finish();
    drop(reader);
    if config.run.staging_dir.is_none() {
        // The default staging folder is ours: remove it (a configured one is the user's).
        let _ = std::fs::remove_dir(&staging_dir);
    }

    stage_seconds.insert("write".to_string(), write_started.elapsed().as_secs_f64());
    let manifest = run_manifest(RunFacts {
        config,
        plan: &plan,
        output: &output,
        records: &records,
        input_errors: &input_errors,
        written,
        embeddings: embeddings_files,
        clip: clip.as_ref(),
        alignment,
        stage_seconds,
        gpu_busy_seconds,
        started_at,
        device: device.label(),
        jpeg_decoder,
        video_decoders,
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    runtime.block_on(async {
        write::put(&output, "manifest.json", manifest_bytes).await?;
        write::put(&output, "_SUCCESS", Vec::new()).await
    })?;
    Ok(RunSummary {
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the run manifest is made from.
struct RunFacts<'a> {
    config: &'a Config,
    plan: &'a Plan,
    output: &'a crate::source::Location,
    records: &'a [Record],
    input_errors: &'a [(usize, String)],
    written: write::Written,
    embeddings: Vec<OutputFile>,
    clip: Option<&'a Clip>,
    alignment: Option<AlignmentSummary>,
    stage_seconds: BTreeMap<String, f64>,
    gpu_busy_seconds: BTreeMap<String, f64>,
    started_at: chrono::DateTime<chrono::Utc>,
    /// `cpu` or `cuda:N`.
    device: String,
    /// What decoded the JPEGs.
    jpeg_decoder: String,
    /// Videos decoded while measuring, by decoder.
    video_decoders: BTreeMap<String, u64>,
}

/// The run manifest: provenance, counts by status and reason, outputs with checksums.
fn run_manifest(facts: RunFacts) -> RunManifest {
    let kept = facts
        .records
        .iter()
        .filter(|r| r.decision.is_keep())
        .count() as u64;
    let (config_json, config_sha256) = facts.config.resolved_json_and_sha256();
    let mut counts = Counts {
        samples: facts.records.len() as u64,
        kept,
        dropped: facts.records.len() as u64 - kept,
        ..Counts::default()
    };
    for record in facts.records {
        let kind = record.measurements.media_kind.unwrap_or("unknown");
        let entry = counts.by_media_kind.entry(kind.to_string()).or_default();
        entry.samples += 1;
        entry.kept += u64::from(record.decision.is_keep());
    }
    for drop in facts.records.iter().filter_map(|r| r.decision.dropped()) {
        *counts
            .dropped_by_stage
            .entry(drop.stage.as_str().to_string())
            .or_default() += 1;
        *counts
            .dropped_by_reason
            .entry(drop.reason.as_str().to_string())
            .or_default() += 1;
    }
    let inputs = facts
        .plan
        .inputs
        .iter()
        .map(|input| InputRecord {
            uri: input.config.uri.clone(),
            format: input.config.format.as_str().to_string(),
            object_count: input.objects.len() as u64,
            total_bytes: input.total_bytes(),
            listing_sha256: input.listing_sha256(),
            objects: match input.units {
                Units::Files(_) => None,
                _ => Some(input.objects.clone()),
            },
            errors: facts
                .input_errors
                .iter()
                .filter(|(i, _)| *i == input.index)
                .map(|(_, e)| e.clone())
                .collect(),
        })
        .collect();
    RunManifest {
        tool: ToolInfo::current(),
        run: RunInfo {
            name: facts.config.run.name.clone(),
            output: facts.output.uri(),
            started_at: facts
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            device: facts.device,
            jpeg_decoder: facts.jpeg_decoder,
            video_decoders: facts.video_decoders,
            threads: facts.config.worker_threads(),
        },
        config: config_json,
        config_sha256,
        inputs,
        counts,
        shards: facts.written.shards,
        ledger: facts.written.ledger,
        embeddings: facts.embeddings,
        models: ModelsRecord {
            clip: facts.clip.map(|c| c.info.clone()),
        },
        alignment: facts.alignment,
        measure_version: MEASURE_VERSION.to_string(),
        stage_seconds: facts.stage_seconds,
        gpu_busy_seconds: facts.gpu_busy_seconds,
    }
}

/// Lists the output location once, so that an unreachable bucket fails before any work.
async fn check_output(output: &crate::source::Location) -> Result<(), SourceError> {
    use object_store::ObjectStoreExt;
    let probe = crate::write::shards::relative_path(&output.path, "_SUCCESS");
    match output.store.head(&probe).await {
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(SourceError::Unreachable {
            uri: output.uri(),
            message: e.to_string(),
        }),
    }
}

fn staging_dir(config: &Config) -> PathBuf {
    if let Some(dir) = &config.run.staging_dir {
        return PathBuf::from(dir);
    }
    let output = &config.run.output;
    if output.contains("://") && !output.starts_with("file://") {
        std::env::temp_dir().join(format!("mmcurate-staging-{}", std::process::id()))
    } else {
        PathBuf::from(output.strip_prefix("file://").unwrap_or(output)).join(".staging")
    }
}

/// Streams every input through decode and measure on `threads` workers. Returns one record
/// per sample (in no particular order) and the input errors, by input index.
#[allow(clippy::type_complexity)]
#[allow(clippy::too_many_arguments)]
fn measure_all(
    plan: &Plan,
    config: &Config,
    decoder: &dyn ImageDecoder,
    kernels: &dyn QualityKernels,
    on_device: Option<OnDevice>,
    runtime: &tokio::runtime::Handle,
    stores: &Stores,
    staging: &Staging,
    progress: &Progress,
) -> Result<(Vec<Record>, Vec<(usize, String)>), RunError> {
    let threads = config.worker_threads();
    let (sender, receiver) = async_channel::bounded::<Sample>(threads * 8);
    let errors: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let read_bar = progress.stage("read", Some(plan.unit_count()));
    let measure_bar = progress.stage("measure", plan.expected_samples());

    let records = std::thread::scope(|scope| -> Result<Vec<Record>, RunError> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let receiver = receiver.clone();
                let measure_bar = &measure_bar;
                scope.spawn(move || -> Result<Vec<Record>, std::io::Error> {
                    let mut out = Vec::new();
                    while let Ok(sample) = receiver.recv_blocking() {
                        let record =
                            measure_sample(sample, config, decoder, kernels, on_device, staging)?;
                        match record.decision.dropped() {
                            Some(d) => measure_bar.inc_dropped(d.reason.as_str()),
                            None => measure_bar.inc(),
                        }
                        out.push(record);
                    }
                    Ok(out)
                })
            })
            .collect();
        drop(receiver);
        read_inputs(
            plan,
            runtime,
            stores,
            sender,
            &errors,
            &read_bar,
            &measure_bar,
        );
        let mut records = Vec::new();
        for worker in workers {
            let part = worker
                .join()
                .expect("measure workers catch panics per sample")
                .map_err(|source| RunError::Staging {
                    path: "staging file".to_string(),
                    source,
                })?;
            records.extend(part);
        }
        Ok(records)
    })?;
    read_bar.finish();
    measure_bar.finish();
    let mut errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|p| p.into_inner()));
    // Shards are read concurrently: sort so the manifest does not depend on timing.
    errors.sort();
    Ok((records, errors))
}

/// Fetches every unit of every input into the channel; returns when all are sent.
fn read_inputs(
    plan: &Plan,
    runtime: &tokio::runtime::Handle,
    stores: &Stores,
    sender: async_channel::Sender<Sample>,
    errors: &Mutex<Vec<(usize, String)>>,
    read_bar: &progress::StageBar,
    measure_bar: &progress::StageBar,
) {
    for input in &plan.inputs {
        let base = &input.base;
        let index = input.index;
        match &input.units {
            Units::Files(units) => {
                let fetches = units.iter().map(|unit| files::fetch(base, index, unit));
                forward(runtime, fetches, &sender, read_bar, FETCH_CONCURRENCY);
            }
            Units::Manifests(manifests) => {
                for m in manifests {
                    let fetches = m.rows.iter().map(|row| {
                        manifest::fetch_row(stores, &m.location, &m.relative, index, row)
                    });
                    // URL rows wait on the downloader's own limits (`[http]`).
                    let concurrency = stores.fetch_concurrency(FETCH_CONCURRENCY);
                    forward(runtime, fetches, &sender, read_bar, concurrency);
                }
            }
            Units::Shards(shards) => {
                let next = Mutex::new(shards.iter());
                std::thread::scope(|scope| {
                    for _ in 0..SHARD_CONCURRENCY.min(shards.len()) {
                        scope.spawn(|| loop {
                            let Some(shard) = next.lock().unwrap_or_else(|p| p.into_inner()).next()
                            else {
                                break;
                            };
                            let location = base.at(shard.location.clone());
                            let relative = base.relative(&shard.location);
                            let result = webdataset::read_shard(
                                &location,
                                &relative,
                                index,
                                runtime,
                                |sample| {
                                    measure_bar.add_expected(1);
                                    let _ = sender.send_blocking(sample);
                                },
                            );
                            if let Err(message) = result {
                                tracing::error!("{message}");
                                errors
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((index, message));
                            }
                            read_bar.inc();
                        });
                    }
                });
            }
        }
    }
}

/// Runs the fetches, `concurrency` at a time, and sends each sample on as it arrives.
fn forward<F: std::future::Future<Output = Sample>>(
    runtime: &tokio::runtime::Handle,
    fetches: impl Iterator<Item = F>,
    sender: &async_channel::Sender<Sample>,
    read_bar: &progress::StageBar,
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

/// Decodes, measures and filters one sample; stages its parts if it may be kept. Only an I/O
/// error on the staging file is an error: everything about the sample itself is a decision.
fn measure_sample(
    sample: Sample,
    config: &Config,
    decoder: &dyn ImageDecoder,
    kernels: &dyn QualityKernels,
    on_device: Option<OnDevice>,
    staging: &Staging,
) -> Result<Record, std::io::Error> {
    let mut measurements = Measurements::default();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        judge(
            &sample,
            config,
            decoder,
            kernels,
            on_device,
            &mut measurements,
        )
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
        stage_parts(
            &sample,
            judged.media_ext.as_deref(),
            &judged.extra_parts,
            staging,
        )?
    } else {
        Vec::new()
    };
    let decision = judged.decision;
    Ok(Record {
        id: sample.id,
        key: sample.key,
        name: sample.name,
        origin: sample.origin,
        measurements,
        decision,
        staged,
        shard: None,
    })
}

/// The per-sample decision, cheap checks first; fills `m` as it goes. For samples that pass,
/// also says the output extension of the media part (from the detected format).
fn judge(
    sample: &Sample,
    config: &Config,
    decoder: &dyn ImageDecoder,
    kernels: &dyn QualityKernels,
    on_device: Option<OnDevice>,
    m: &mut Measurements,
) -> Judged {
    if let Some(error) = &sample.fetch_error {
        let reason = match sample.opted_out {
            true => Reason::OptedOut,
            false => Reason::FetchFailed,
        };
        return Judged::drop(Stage::Source, reason, error.clone());
    }
    let Some(media) = sample.media_bytes() else {
        let parts: Vec<&str> = sample.parts.iter().map(|p| p.ext.as_str()).collect();
        return Judged::drop(
            Stage::Source,
            Reason::NoMedia,
            format!(
                "no image, video or audio part among the sample's parts ({})",
                parts.join(", ")
            ),
        );
    };
    m.size_bytes = media.len() as u64;
    if media.is_empty() {
        return Judged::drop(
            Stage::Decode,
            Reason::EmptyFile,
            DecodeError::Empty.to_string(),
        );
    }
    m.sha256 = Some(sha256_hex(media));
    let info = match probe(media) {
        Ok(info) => info,
        Err(DecodeError::NotAnImage(what)) => {
            if let Some(container) = sniff_av(media) {
                return av::judge_av(sample, media, container, config, kernels, m);
            }
            let declared = sample.media.as_deref().unwrap_or_default();
            return if AV_EXTENSIONS.contains(&declared) {
                Judged::drop(
                    Stage::Decode,
                    Reason::NotMedia,
                    format!("not a known video or audio container: {what}"),
                )
            } else {
                Judged::drop(
                    Stage::Decode,
                    Reason::NotAnImage,
                    DecodeError::NotAnImage(what).to_string(),
                )
            };
        }
        Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e.to_string()),
    };
    m.media_kind = Some("image");
    m.format = Some(info.extension().to_string());
    m.width = Some(info.width);
    m.height = Some(info.height);
    let filters = &config.filters.image;
    if let Some(d) = check_header(&info, filters) {
        return Judged::dropped(d);
    }
    if let Some(dropped) = av::check_sample_caption(sample, config, m) {
        return dropped;
    }
    let gpu_path_given = on_device.is_some();
    let on_device = on_device.and_then(|(gpu, cuda)| gpu.measure_on_device(media, &info, cuda));
    let quality = match on_device {
        Some(quality) => quality,
        None => {
            // What the device path did not take, the CPU decodes (the GPU decoder would only
            // refuse it again).
            let decoder = if gpu_path_given { &CpuDecoder } else { decoder };
            let luma = match decoder.decode_luma(media, &info, ANALYSIS_SHORT_SIDE) {
                Ok(luma) => luma,
                Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e.to_string()),
            };
            kernels.measure_owned(luma)
        }
    };
    m.sharpness = Some(quality.sharpness);
    m.brightness = Some(quality.brightness);
    m.clipped_fraction = Some(quality.clipped_fraction);
    m.phash = Some(quality.phash);
    m.dhash = Some(quality.dhash);
    if let Some(d) = check_quality(&quality, filters) {
        return Judged::dropped(d);
    }
    Judged {
        decision: Decision::Keep,
        media_ext: Some(info.extension().to_string()),
        extra_parts: Vec::new(),
    }
}

/// Stages the parts in output order: media (named by its detected format, unless another part
/// already has that name), caption `.txt`, the source `.json`, any other parts, then the parts
/// made while measuring (keyframes).
fn stage_parts(
    sample: &Sample,
    media_ext: Option<&str>,
    extra_parts: &[(String, Vec<u8>)],
    staging: &Staging,
) -> std::io::Result<Vec<StagedPart>> {
    let media_in = sample.media.as_deref().unwrap_or_default();
    let media_out = match media_ext {
        Some(ext) if ext == media_in || sample.part(ext).is_none() => ext,
        _ => media_in,
    };
    let caption = sample.caption.as_deref().map(str::as_bytes);
    let mut parts: Vec<(&str, &[u8])> = Vec::with_capacity(sample.parts.len() + 1);
    if let Some(media) = sample.media_bytes() {
        parts.push((media_out, media));
    }
    match (sample.part("txt"), caption) {
        (Some(txt), _) => parts.push(("txt", &txt.bytes)),
        (None, Some(caption)) => parts.push(("txt", caption)),
        (None, None) => {}
    }
    if let Some(json) = sample.part("json") {
        parts.push(("json", &json.bytes));
    }
    for part in &sample.parts {
        if part.ext != media_in && part.ext != "txt" && part.ext != "json" {
            parts.push((&part.ext, &part.bytes));
        }
    }
    for (ext, bytes) in extra_parts {
        if sample.part(ext).is_none() {
            parts.push((ext, bytes));
        }
    }
    staging.put(parts)
}

/// What dedup knows of a record. Audio has neither sharpness nor pixels: of two copies, the
/// one with more samples per second (rate × channels) is kept, then the higher bit rate.
fn candidate(record: &Record) -> Candidate<'_> {
    let m = &record.measurements;
    let (sharpness, pixels) = match (m.media_kind, &m.audio) {
        (Some("audio"), Some(audio)) => (
            f64::from(audio.sample_rate) * f64::from(audio.channels),
            m.duration_seconds
                .filter(|&d| d > 0.0)
                .map_or(m.size_bytes, |d| (m.size_bytes as f64 / d) as u64),
        ),
        _ => (
            m.sharpness.unwrap_or_default(),
            m.width.unwrap_or(0) as u64 * m.height.unwrap_or(0) as u64,
        ),
    };
    Candidate {
        id: &record.id,
        sha256: m.sha256.as_deref().unwrap_or_default(),
        phash: m.phash.unwrap_or_default(),
        sharpness,
        pixels,
    }
}

/// What dedup knows of the records at `indices`.
fn candidates<'a>(indices: &[usize], records: &'a [Record]) -> Vec<Candidate<'a>> {
    indices.iter().map(|&i| candidate(&records[i])).collect()
}

/// Drops `records[indices[k]]` where `drops[k]` says so.
fn apply_drops(records: &mut [Record], indices: &[usize], drops: Vec<Option<Drop>>) {
    for (&i, drop) in indices.iter().zip(drops) {
        if let Some(drop) = drop {
            records[i].decision = Decision::Drop(drop);
            records[i].staged.clear();
        }
    }
}

/// Global dedup over the samples still kept: exact copies first (any media), then pHash
/// neighbours among images, signature matches among videos and fingerprint matches among
/// audio files.
fn decide_duplicates(records: &mut [Record], config: &Config) {
    /// Finds the drops among the records at the indices given.
    type FindDrops<'f> = &'f dyn Fn(&[usize], &[Record]) -> Vec<Option<Drop>>;
    let dedup = &config.dedup;
    let run = |records: &mut [Record], applies: &dyn Fn(&Record) -> bool, find: FindDrops| {
        let kept: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].decision.is_keep() && applies(&records[i]))
            .collect();
        let drops = find(&kept, records);
        apply_drops(records, &kept, drops);
    };
    if dedup.exact {
        run(records, &|_| true, &|kept, records| {
            exact_duplicates(&candidates(kept, records))
        });
    }
    if dedup.phash_max_distance > 0 {
        let d = dedup.phash_max_distance;
        run(
            records,
            &|r| r.measurements.phash.is_some(),
            &|kept, records| near_duplicates(&candidates(kept, records), d),
        );
    }
    if dedup.video_max_distance > 0.0 {
        let tolerance = 0.5 / config.video.sample_fps;
        run(
            records,
            &|r| r.measurements.video.is_some(),
            &|kept, records| {
                let signatures: Vec<Signature> = kept
                    .iter()
                    .filter_map(|&i| records[i].measurements.video.as_ref().map(Signature::of))
                    .collect();
                video_duplicates(
                    &candidates(kept, records),
                    &signatures,
                    dedup.video_max_distance,
                    tolerance,
                )
            },
        );
    }
    if dedup.audio_max_bit_error_rate > 0.0 {
        let is_audio = |r: &Record| {
            r.measurements.media_kind == Some("audio") && r.measurements.audio.is_some()
        };
        run(records, &is_audio, &|kept, records| {
            let prints: Vec<&[u32]> = kept
                .iter()
                .filter_map(|&i| records[i].measurements.audio.as_ref())
                .map(|a| a.fingerprint.as_slice())
                .collect();
            audio_duplicates(
                &candidates(kept, records),
                &prints,
                dedup.audio_max_bit_error_rate,
            )
        });
    }
}

/// After embedding: semantic dedup over the embedded samples (all still kept), then the
/// alignment thresholds over the CLIP scores of the samples still kept after it.
fn decide_semantic_and_alignment(
    records: &mut [Record],
    embeddings: &Embeddings,
    config: &Config,
) -> Option<AlignmentSummary> {
    let min_cosine = config.dedup.embedding_min_cosine;
    if min_cosine > 0.0 && embeddings.rows.len() > 1 {
        let rows = &embeddings.rows;
        let started = Instant::now();
        tracing::info!(
            "semantic dedup: indexing and searching {} image embeddings (cosine >= {min_cosine})",
            rows.len()
        );
        let drops = semantic_duplicates(
            &rows
                .iter()
                .map(|&i| candidate(&records[i]))
                .collect::<Vec<_>>(),
            &embeddings.image,
            embeddings.dim,
            min_cosine as f32,
        );
        let dropped = drops.iter().flatten().count();
        apply_drops(records, rows, drops);
        tracing::info!(
            "semantic dedup: {dropped} semantic duplicates dropped in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let rules = &config.filters.alignment;
    if rules.min_clip_score.is_none() && rules.keep_top_fraction.is_none() {
        return None;
    }
    let kept: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].decision.is_keep())
        .collect();
    let scores: Vec<Option<f64>> = kept
        .iter()
        .map(|&i| records[i].measurements.clip_score)
        .collect();
    let (drops, summary) = decide_alignment(&scores, rules);
    apply_drops(records, &kept, drops);
    tracing::info!(
        "alignment: {} of {} scored samples dropped{}",
        summary.dropped,
        summary.scored,
        summary
            .quantile_threshold
            .map_or(String::new(), |t| format!(
                " (keep_top_fraction threshold {t:.4})"
            ))
    );
    Some(summary)
}
