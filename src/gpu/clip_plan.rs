//! CLIP preprocessing on the GPU as data: for a batch of RGB images, the resampling passes that
//! `models::clip_preprocess::clip_pixel_values_rgb` makes (shorter side to the model size with
//! Pillow's bicubic filter, each channel on its own), laid out in one byte arena, and where the
//! `clip_normalise` kernel reads each image's centre crop. `cuda` uploads and launches it;
//! [`ClipPlan::emulate`] runs it with host loops in the kernels' arithmetic for the tests.
//!
//! Only the outputs inside the crop are computed: each output pixel depends on its own weights
//! alone, so skipping the cropped-off ones changes no byte of the rest.

use super::plan::{axis_table, BuiltTables, Launch, PassJob, Weights, BLOCK_THREADS};
use crate::pixels::resample::Filter;

/// One image of a batch: interleaved RGB (`3 * width` bytes a row) at `offset` in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RgbPlane {
    pub offset: u64,
    pub width: u32,
    pub height: u32,
}

impl RgbPlane {
    pub fn len(&self) -> u64 {
        3 * self.width as u64 * self.height as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where `clip_normalise` reads an image's crop: channel 0 of its top-left pixel at `base`,
/// rows `line` bytes apart, pixels 3 bytes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropSource {
    pub base: u64,
    pub line: u64,
}

/// Everything the GPU does for one batch: up to two pass launches, then one `clip_normalise`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipPlan {
    /// The model's input side.
    pub size: u32,
    pub arena_len: u64,
    /// The input images, packed in order at the arena's start (one upload).
    pub inputs: Vec<RgbPlane>,
    /// Pass launches in order; the jobs of one launch are independent.
    pub stages: Vec<Vec<PassJob>>,
    pub bounds: Vec<i32>,
    pub weights: Vec<i32>,
    pub crops: Vec<CropSource>,
    tables: BuiltTables,
}

/// A plane between passes: `width` pixels a row (interleaved RGB), of which the crop starts at
/// column `left` and row `top`, ready after `ready` pass launches.
#[derive(Debug, Clone, Copy)]
struct Cropped {
    offset: u64,
    width: u32,
    left: u32,
    top: u32,
    ready: usize,
}

/// The size `clip_pixel_values_rgb` resizes to: the shorter side becomes `size`, the longer one
/// `size * longer / shorter` (transformers' `get_resize_output_image_size`).
pub fn resized_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    if width <= height {
        (size, (size as u64 * height as u64 / width as u64) as u32)
    } else {
        ((size as u64 * width as u64 / height as u64) as u32, size)
    }
}

impl ClipPlan {
    /// Plans the preprocessing of RGB images of these sizes (width, height), none empty, into
    /// `size x size` model inputs.
    pub fn new(sizes: &[(u32, u32)], size: u32) -> ClipPlan {
        let mut plan = ClipPlan {
            size,
            arena_len: 0,
            inputs: Vec::with_capacity(sizes.len()),
            stages: Vec::new(),
            bounds: Vec::new(),
            weights: Vec::new(),
            crops: Vec::with_capacity(sizes.len()),
            tables: Vec::new(),
        };
        for &(width, height) in sizes {
            let input = RgbPlane {
                offset: plan.arena_len,
                width,
                height,
            };
            plan.arena_len += input.len();
            plan.inputs.push(input);
        }
        for i in 0..sizes.len() {
            plan.plan_image(i);
        }
        plan.tables.clear();
        plan
    }

    /// Floats of the model input: `3 x size x size` per image.
    pub fn output_len(&self) -> usize {
        self.inputs.len() * self.image_floats()
    }

    fn image_floats(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// `clip_pixel_values_rgb`'s passes for image `i`: horizontal, then vertical, each only if
    /// that side changes (Pillow's order), then the centre crop, as transformers rounds it.
    fn plan_image(&mut self, i: usize) {
        let input = self.inputs[i];
        let (w, h, size) = (input.width, input.height, self.size);
        let (new_w, new_h) = resized_size(w, h, size);
        let top = ((new_h - size) as f64 / 2.0) as u32;
        let left = ((new_w - size) as f64 / 2.0) as u32;
        let bicubic = Weights::Filter(Filter::Bicubic);
        let mut plane = Cropped {
            offset: input.offset,
            width: w,
            left,
            top,
            ready: 0,
        };
        if new_w != w {
            let (bounds, weights, taps) = self.table(w as usize, new_w as usize, bicubic);
            let out = self.alloc(3 * size as u64 * h as u64);
            for c in 0..3 {
                self.push(
                    plane.ready,
                    PassJob {
                        src: input.offset + c,
                        dst: out + c,
                        out_len: size,
                        lines: h,
                        src_step: 3,
                        src_line: 3 * w as u64,
                        dst_step: 3,
                        dst_line: 3 * size as u64,
                        taps,
                        // From the first output column inside the crop.
                        bounds: bounds + 2 * left,
                        weights: weights + taps * left,
                    },
                );
            }
            plane = Cropped {
                offset: out,
                width: size,
                left: 0,
                top,
                ready: plane.ready + 1,
            };
        }
        if new_h != h {
            let (bounds, weights, taps) = self.table(h as usize, new_h as usize, bicubic);
            let out = self.alloc(3 * size as u64 * size as u64);
            let line = 3 * plane.width as u64;
            for c in 0..3 {
                self.push(
                    plane.ready,
                    PassJob {
                        src: plane.offset + 3 * plane.left as u64 + c,
                        dst: out + c,
                        out_len: size,
                        lines: size,
                        src_step: line,
                        src_line: 3,
                        dst_step: 3 * size as u64,
                        dst_line: 3,
                        taps,
                        bounds: bounds + 2 * top,
                        weights: weights + taps * top,
                    },
                );
            }
            plane = Cropped {
                offset: out,
                width: size,
                left: 0,
                top: 0,
                ready: plane.ready + 1,
            };
        }
        let line = 3 * plane.width as u64;
        self.crops.push(CropSource {
            base: plane.offset + plane.top as u64 * line + 3 * plane.left as u64,
            line,
        });
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let offset = self.arena_len;
        self.arena_len += len;
        offset
    }

    fn push(&mut self, stage: usize, job: PassJob) {
        if self.stages.len() <= stage {
            self.stages.resize(stage + 1, Vec::new());
        }
        self.stages[stage].push(job);
    }

    fn table(&mut self, in_size: usize, out_size: usize, weights: Weights) -> (u32, u32, u32) {
        axis_table(
            &mut self.bounds,
            &mut self.weights,
            &mut self.tables,
            in_size,
            out_size,
            weights,
        )
    }

    /// The crops as `clip_normalise` takes them: base and line stride per image.
    pub fn crop_table(&self) -> Vec<i64> {
        self.crops
            .iter()
            .flat_map(|c| [c.base as i64, c.line as i64])
            .collect()
    }

    /// Runs the plan on the host, each step by a loop that does what its kernel does. `images`
    /// are the packed inputs (`RgbPlane::len` bytes each, in order); `None` when they are not.
    pub fn emulate(&self, images: &[&[u8]], mean: [f32; 3], std: [f32; 3]) -> Option<Vec<f32>> {
        if images.len() != self.inputs.len()
            || images
                .iter()
                .zip(&self.inputs)
                .any(|(image, plane)| image.len() as u64 != plane.len())
        {
            return None;
        }
        let mut arena = vec![0u8; self.arena_len as usize];
        for (image, plane) in images.iter().zip(&self.inputs) {
            arena[plane.offset as usize..][..image.len()].copy_from_slice(image);
        }
        for stage in &self.stages {
            for job in stage {
                super::plan::pass_on_host(&mut arena, job, &self.bounds, &self.weights);
            }
        }
        let mut out = vec![0f32; self.output_len()];
        let norm = normalisation(mean, std);
        for (i, crop) in self.crops.iter().enumerate() {
            let image = &mut out[i * self.image_floats()..][..self.image_floats()];
            for (t, value) in image.iter_mut().enumerate() {
                *value = normalise_on_host(&arena, crop, self.size, t, &norm);
            }
        }
        Some(out)
    }
}

/// The `norm` table of `clip_normalise`: the three means, then the three deviations.
pub fn normalisation(mean: [f32; 3], std: [f32; 3]) -> [f32; 6] {
    [mean[0], mean[1], mean[2], std[0], std[1], std[2]]
}

/// `clip_normalise` for output `t` of one image (CHW order): the CPU's `(v / 255 - mean) / std`
/// in f32, which CUDA rounds the same way (IEEE division and subtraction, no contraction).
pub fn normalise_on_host(
    arena: &[u8],
    crop: &CropSource,
    size: u32,
    t: usize,
    norm: &[f32; 6],
) -> f32 {
    let plane = size as usize * size as usize;
    let (c, rest) = (t / plane, t % plane);
    let (y, x) = ((rest / size as usize) as u64, (rest % size as usize) as u64);
    let v = arena[(crop.base + y * crop.line + 3 * x) as usize + c];
    (v as f32 / 255.0 - norm[c]) / norm[3 + c]
}

/// Launch size of `clip_normalise`: one block row per image, threads over its outputs.
pub fn normalise_launch(images: usize, size: u32) -> Launch {
    let per_image = 3 * size as u64 * size as u64;
    let blocks = per_image.div_ceil(BLOCK_THREADS as u64).clamp(1, 4096) as u32;
    Launch {
        grid: (blocks, images as u32, 1),
        block: (BLOCK_THREADS, 1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::clip_preprocess::{clip_pixel_values_rgb, OPENAI_MEAN, OPENAI_STD};

    fn rgb(width: u32, height: u32, seed: u32) -> Vec<u8> {
        // Smooth gradients plus a hash: every channel different, edges and texture.
        (0..width * height * 3)
            .map(|i| {
                let (p, c) = (i / 3, i % 3);
                let (x, y) = (p % width, p / width);
                let noise = (p
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97 + c * 31))
                    >> 27;
                ((x * (3 + c) + y * (5 - c) + noise) % 256) as u8
            })
            .collect()
    }

    #[test]
    fn the_emulated_plan_preprocesses_as_the_cpu_bit_for_bit() {
        // Wider, taller, square, already at size, upscaled, one side at size, thin.
        let sizes = [
            (640, 480),
            (480, 640),
            (300, 300),
            (224, 224),
            (100, 60),
            (224, 500),
            (700, 224),
            (1000, 3),
            (2, 2),
        ];
        let images: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(w, h))| rgb(w, h, i as u32))
            .collect();
        let plan = ClipPlan::new(&sizes, 224);
        let inputs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let gpu = plan.emulate(&inputs, OPENAI_MEAN, OPENAI_STD).unwrap();
        let floats = 3 * 224 * 224;
        for (i, (&(w, h), image)) in sizes.iter().zip(&images).enumerate() {
            let cpu = clip_pixel_values_rgb(image, w, h, 224, OPENAI_MEAN, OPENAI_STD);
            let got = &gpu[i * floats..(i + 1) * floats];
            let differing = cpu
                .iter()
                .zip(got)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "{w}x{h}: {differing} values differ");
        }
    }

    #[test]
    fn passes_stay_in_the_arena_and_follow_their_inputs() {
        let sizes = [(640, 480), (224, 224), (224, 400), (50, 80)];
        let plan = ClipPlan::new(&sizes, 224);
        // An image with its shorter side at the model size is only cropped; any other takes
        // both passes (the longer side's new size is then never its old one).
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(plan.stages[0].len(), 2 * 3);
        assert_eq!(plan.stages[1].len(), 2 * 3);
        let inputs_end = plan.inputs.last().map_or(0, |p| p.offset + p.len());
        for job in plan.stages.iter().flatten() {
            let last_out =
                (job.out_len as u64 - 1) * job.dst_step + (job.lines as u64 - 1) * job.dst_line;
            assert!(job.dst >= inputs_end, "outputs never overwrite inputs");
            assert!(job.dst + last_out < plan.arena_len);
            let bounds = &plan.bounds[job.bounds as usize..][..2 * job.out_len as usize];
            for pair in bounds.chunks_exact(2) {
                let last_in = (pair[0] + pair[1]) as u64 - 1;
                let last = job.src + last_in * job.src_step + (job.lines as u64 - 1) * job.src_line;
                assert!(last < plan.arena_len);
            }
        }
        // Images already at size are read in place, the taller one from row 88 of 400.
        let line = 3 * 224;
        assert_eq!(
            plan.crops[1],
            CropSource {
                base: plan.inputs[1].offset,
                line
            }
        );
        assert_eq!(
            plan.crops[2],
            CropSource {
                base: plan.inputs[2].offset + 88 * line,
                line
            }
        );
        assert!(plan.crops[0].base >= inputs_end && plan.crops[3].base >= inputs_end);
        // A different batch of the same sizes plans the same arena.
        assert_eq!(plan, ClipPlan::new(&sizes, 224));
        let launch = normalise_launch(4, 224);
        assert!(launch.grid.0 as u64 * launch.block.0 as u64 >= 3 * 224 * 224);
        assert_eq!(launch.grid.1, 4);
    }

    #[test]
    fn resized_sizes_follow_transformers() {
        assert_eq!(resized_size(640, 480, 224), (298, 224));
        assert_eq!(resized_size(480, 640, 224), (224, 298));
        assert_eq!(resized_size(10, 10, 224), (224, 224));
    }
}
