//! CLIP's two transformers on the CPU, written for throughput: the same arithmetic as
//! `transformers.CLIPModel` (and as candle-transformers' CLIP, which `clip` keeps for other
//! devices), with the weights laid out once at load time and every activation buffer reused
//! across layers.
//!
//! Why not candle's modules on the CPU: a candle-transformers encoder layer makes about twenty
//! temporary tensors (each a fresh, zeroed allocation), runs its element-wise ops on one thread,
//! adds biases and residuals in separate passes, and copies q, k and v to contiguous heads. Here
//! q, k and v come out of one fused matrix product and are read in place by the attention,
//! biases and the residual are folded into the matrix products' outputs, and layer norm, softmax
//! and quick-GELU run on all cores. The matrix products are the `gemm` crate's, as in candle.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use rayon::prelude::*;

const LAYER_NORM_EPS: f32 = 1e-5;

/// Rows per rayon task in the element-wise passes: enough work to amortise a task.
const ROWS_PER_TASK: usize = 16;

/// The vision tower's dimensions, read from `config.json` by `clip`.
pub(crate) struct VisionShape {
    pub dim: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub projection_dim: usize,
}

/// The text tower's dimensions, read from `config.json` by `clip`.
pub(crate) struct TextShape {
    pub dim: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub vocab: usize,
    pub context: usize,
    pub projection_dim: usize,
}

/// A linear layer's weight as stored by PyTorch (`out x in`, row-major) and its bias.
struct Linear {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    out: usize,
    inp: usize,
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// One pre-norm encoder layer. `qkv` is q, k and v stacked (`3 dim x dim`), q already multiplied
/// by the attention scale `head_dim^-0.5` as transformers does it after the projection.
struct Layer {
    norm1: LayerNorm,
    qkv: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

struct Encoder {
    layers: Vec<Layer>,
    dim: usize,
    heads: usize,
    intermediate: usize,
}

/// The vision tower: patch embedding, class token, positions, pre-norm, encoder, post-norm of
/// the class token, projection.
pub(crate) struct VisionTower {
    /// `dim x (3 * patch * patch)`: the patch convolution as a matrix, inputs in (c, y, x) order.
    patch: Linear,
    class: Vec<f32>,
    positions: Vec<f32>,
    pre_norm: LayerNorm,
    encoder: Encoder,
    post_norm: LayerNorm,
    projection: Linear,
    image_size: usize,
    patch_size: usize,
}

/// The text tower: token and position embeddings, causal encoder, final norm of the pooled
/// token, projection.
pub(crate) struct TextTower {
    tokens: Vec<f32>,
    vocab: usize,
    positions: Vec<f32>,
    encoder: Encoder,
    final_norm: LayerNorm,
    projection: Linear,
}

fn load(vb: &VarBuilder, shape: &[usize], name: &str) -> candle_core::Result<Vec<f32>> {
    vb.get(shape, name)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

impl Linear {
    fn load(vb: VarBuilder, inp: usize, out: usize, bias: bool) -> candle_core::Result<Linear> {
        Ok(Linear {
            weight: load(&vb, &[out, inp], "weight")?,
            bias: if bias {
                Some(load(&vb, &[out], "bias")?)
            } else {
                None
            },
            out,
            inp,
        })
    }
}

impl LayerNorm {
    fn load(vb: VarBuilder, dim: usize) -> candle_core::Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: load(&vb, &[dim], "weight")?,
            beta: load(&vb, &[dim], "bias")?,
        })
    }
}

impl Encoder {
    fn load(
        vb: VarBuilder,
        layers: usize,
        dim: usize,
        heads: usize,
        intermediate: usize,
    ) -> candle_core::Result<Encoder> {
        let scale = ((dim / heads) as f32).powf(-0.5);
        let layers = (0..layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                let attn = vb.pp("self_attn");
                let mut q = Linear::load(attn.pp("q_proj"), dim, dim, true)?;
                let k = Linear::load(attn.pp("k_proj"), dim, dim, true)?;
                let v = Linear::load(attn.pp("v_proj"), dim, dim, true)?;
                q.weight.iter_mut().for_each(|w| *w *= scale);
                let mut q_bias = q.bias.take().unwrap_or_default();
                q_bias.iter_mut().for_each(|b| *b *= scale);
                let qkv = Linear {
                    weight: [q.weight, k.weight, v.weight].concat(),
                    bias: Some(
                        [
                            q_bias,
                            k.bias.unwrap_or_default(),
                            v.bias.unwrap_or_default(),
                        ]
                        .concat(),
                    ),
                    out: 3 * dim,
                    inp: dim,
                };
                Ok(Layer {
                    norm1: LayerNorm::load(vb.pp("layer_norm1"), dim)?,
                    qkv,
                    out: Linear::load(attn.pp("out_proj"), dim, dim, true)?,
                    norm2: LayerNorm::load(vb.pp("layer_norm2"), dim)?,
                    fc1: Linear::load(vb.pp("mlp.fc1"), dim, intermediate, true)?,
                    fc2: Linear::load(vb.pp("mlp.fc2"), intermediate, dim, true)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Encoder {
            layers,
            dim,
            heads,
            intermediate,
        })
    }

    /// Runs the encoder over `x` (`batch x seq` rows of `dim`) and returns the output rows
    /// that get pooled, row `pooled[i]` of sequence `i` (`batch x dim`). `x` is overwritten.
    ///
    /// The last layer computes only those rows: the other rows' outputs are never read, and
    /// a row's output depends on the other rows only through their keys and values, which
    /// the last layer still computes for every row. The pooled rows get the same values as a
    /// full last layer would give them, up to the order of float additions.
    fn forward_pooled(
        &self,
        x: &mut [f32],
        seq: usize,
        causal: bool,
        pooled: &[usize],
    ) -> Vec<f32> {
        let dim = self.dim;
        let rows = x.len() / dim;
        let mut normed = vec![0f32; rows * dim];
        let mut qkv = vec![0f32; rows * 3 * dim];
        let mut attended = vec![0f32; rows * dim];
        let mut hidden = vec![0f32; rows * self.intermediate];
        let Some((last, layers)) = self.layers.split_last() else {
            return gather(x, dim, seq, pooled);
        };
        for layer in layers {
            layer_norm(x, &mut normed, dim, &layer.norm1);
            matmul(&normed, &layer.qkv, &mut qkv, false);
            add_bias(&mut qkv, layer.qkv.bias.as_deref());
            attention(&qkv, &mut attended, seq, dim, self.heads, causal);
            add_bias(x, layer.out.bias.as_deref());
            matmul(&attended, &layer.out, x, true);
            mlp(layer, x, &mut normed, &mut hidden);
        }

        // The last layer, for the pooled rows only.
        layer_norm(x, &mut normed, dim, &last.norm1);
        matmul(&normed, &last.qkv, &mut qkv, false);
        add_bias(&mut qkv, last.qkv.bias.as_deref());
        let n = pooled.len();
        let mut y = gather(x, dim, seq, pooled);
        let mut attended = vec![0f32; n * dim];
        attend_one(&qkv, &mut attended, seq, dim, self.heads, causal, pooled);
        add_bias(&mut y, last.out.bias.as_deref());
        matmul(&attended, &last.out, &mut y, true);
        let mut normed = vec![0f32; n * dim];
        let mut hidden = vec![0f32; n * self.intermediate];
        mlp(last, &mut y, &mut normed, &mut hidden);
        y
    }
}

/// `x += fc2(quick_gelu(fc1(norm2(x))))`, with `normed` and `hidden` as scratch.
fn mlp(layer: &Layer, x: &mut [f32], normed: &mut [f32], hidden: &mut [f32]) {
    layer_norm(x, normed, layer.fc1.inp, &layer.norm2);
    matmul(normed, &layer.fc1, hidden, false);
    bias_quick_gelu(hidden, layer.fc1.bias.as_deref());
    add_bias(x, layer.fc2.bias.as_deref());
    matmul(hidden, &layer.fc2, x, true);
}

/// Row `pooled[i]` of each sequence `i` of `x`.
fn gather(x: &[f32], dim: usize, seq: usize, pooled: &[usize]) -> Vec<f32> {
    pooled
        .iter()
        .enumerate()
        .flat_map(|(i, &row)| x[(i * seq + row) * dim..][..dim].iter().copied())
        .collect()
}

impl VisionTower {
    pub(crate) fn load(
        vb: VarBuilder,
        projection: VarBuilder,
        config: &VisionShape,
    ) -> candle_core::Result<VisionTower> {
        let dim = config.dim;
        let p = config.patch_size;
        let grid = config.image_size / p;
        let embeddings = vb.pp("embeddings");
        Ok(VisionTower {
            patch: Linear {
                weight: load(
                    &embeddings.pp("patch_embedding"),
                    &[dim, config.channels, p, p],
                    "weight",
                )?,
                bias: None,
                out: dim,
                inp: config.channels * p * p,
            },
            class: load(&embeddings, &[dim], "class_embedding")?,
            positions: load(
                &embeddings.pp("position_embedding"),
                &[grid * grid + 1, dim],
                "weight",
            )?,
            pre_norm: LayerNorm::load(vb.pp("pre_layrnorm"), dim)?,
            encoder: Encoder::load(
                vb.pp("encoder"),
                config.layers,
                dim,
                config.heads,
                config.intermediate,
            )?,
            post_norm: LayerNorm::load(vb.pp("post_layernorm"), dim)?,
            projection: Linear::load(projection, dim, config.projection_dim, false)?,
            image_size: config.image_size,
            patch_size: p,
        })
    }

    /// Image features (before normalisation) of `n` CHW images, `n x projection_dim`.
    pub(crate) fn forward(&self, pixels: &[f32], n: usize) -> Vec<f32> {
        let (size, p, dim) = (self.image_size, self.patch_size, self.encoder.dim);
        let channels = self.patch.inp / (p * p);
        let grid = size / p;
        let patches = grid * grid;
        let seq = patches + 1;
        assert_eq!(
            pixels.len(),
            n * channels * size * size,
            "pixel buffer size"
        );

        // The stride-p convolution is a matrix product over the patches laid out as rows.
        let mut columns = vec![0f32; n * patches * self.patch.inp];
        columns
            .par_chunks_mut(self.patch.inp)
            .enumerate()
            .for_each(|(row, column)| {
                let (image, patch) = (row / patches, row % patches);
                let (py, px) = (patch / grid, patch % grid);
                let image = &pixels[image * channels * size * size..];
                for c in 0..channels {
                    for y in 0..p {
                        let from = c * size * size + (py * p + y) * size + px * p;
                        let to = (c * p + y) * p;
                        column[to..to + p].copy_from_slice(&image[from..from + p]);
                    }
                }
            });
        let mut embedded = vec![0f32; n * patches * dim];
        matmul(&columns, &self.patch, &mut embedded, false);
        drop(columns);

        let mut x = vec![0f32; n * seq * dim];
        x.par_chunks_mut(dim).enumerate().for_each(|(row, out)| {
            let (image, token) = (row / seq, row % seq);
            let from = if token == 0 {
                &self.class[..]
            } else {
                &embedded[(image * patches + token - 1) * dim..][..dim]
            };
            let position = &self.positions[token * dim..][..dim];
            for ((o, a), b) in out.iter_mut().zip(from).zip(position) {
                *o = a + b;
            }
        });
        drop(embedded);
        let mut normed = vec![0f32; x.len()];
        layer_norm(&x, &mut normed, dim, &self.pre_norm);
        let mut x = normed;
        // The class token, first in each sequence, is pooled.
        let pooled = self.encoder.forward_pooled(&mut x, seq, false, &vec![0; n]);
        project(&pooled, &self.post_norm, &self.projection)
    }
}

/// A token id the text tower has no embedding for.
#[derive(Debug, thiserror::Error)]
#[error("token id {id} is outside the vocabulary of {vocab}")]
pub(crate) struct OutsideVocabulary {
    id: u32,
    vocab: usize,
}

impl TextTower {
    pub(crate) fn load(
        vb: VarBuilder,
        projection: VarBuilder,
        config: &TextShape,
    ) -> candle_core::Result<TextTower> {
        let dim = config.dim;
        let embeddings = vb.pp("embeddings");
        Ok(TextTower {
            tokens: load(
                &embeddings.pp("token_embedding"),
                &[config.vocab, dim],
                "weight",
            )?,
            vocab: config.vocab,
            positions: load(
                &embeddings.pp("position_embedding"),
                &[config.context, dim],
                "weight",
            )?,
            encoder: Encoder::load(
                vb.pp("encoder"),
                config.layers,
                dim,
                config.heads,
                config.intermediate,
            )?,
            final_norm: LayerNorm::load(vb.pp("final_layer_norm"), dim)?,
            projection: Linear::load(projection, dim, config.projection_dim, false)?,
        })
    }

    /// Text features (before normalisation) of `ids` (`n x width` token ids, row-major),
    /// pooled at `ends[i]` in row i: `n x projection_dim`. Ids past the vocabulary are an error.
    pub(crate) fn forward(
        &self,
        ids: &[u32],
        width: usize,
        ends: &[usize],
    ) -> Result<Vec<f32>, OutsideVocabulary> {
        let dim = self.encoder.dim;
        let n = ends.len();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(OutsideVocabulary {
                id,
                vocab: self.vocab,
            });
        }
        let mut x = vec![0f32; n * width * dim];
        x.par_chunks_mut(dim).enumerate().for_each(|(row, out)| {
            let token = &self.tokens[ids[row] as usize * dim..][..dim];
            let position = &self.positions[(row % width) * dim..][..dim];
            for ((o, a), b) in out.iter_mut().zip(token).zip(position) {
                *o = a + b;
            }
        });
        let pooled = self.encoder.forward_pooled(&mut x, width, true, ends);
        Ok(project(&pooled, &self.final_norm, &self.projection))
    }
}

/// Layer norm of the pooled rows, then the projection.
fn project(pooled: &[f32], norm: &LayerNorm, projection: &Linear) -> Vec<f32> {
    let mut normed = vec![0f32; pooled.len()];
    layer_norm(pooled, &mut normed, projection.inp, norm);
    let mut features = vec![0f32; pooled.len() / projection.inp * projection.out];
    matmul(&normed, projection, &mut features, false);
    features
}

/// `c = a · wᵀ` (or `c += a · wᵀ`), `a` being rows of `w.inp`, `c` rows of `w.out`.
fn matmul(a: &[f32], w: &Linear, c: &mut [f32], accumulate: bool) {
    let m = a.len() / w.inp;
    assert_eq!(a.len(), m * w.inp);
    assert_eq!(c.len(), m * w.out);
    assert_eq!(w.weight.len(), w.out * w.inp);
    // SAFETY: the asserts above bound every access: a is m x inp (row stride inp), the right
    // operand is wᵀ, inp x out, read from w (out x inp) with row stride 1 and column stride
    // inp, and c is m x out (row stride out).
    unsafe {
        gemm::gemm(
            m,
            w.out,
            w.inp,
            c.as_mut_ptr(),
            1,
            w.out as isize,
            accumulate,
            a.as_ptr(),
            1,
            w.inp as isize,
            w.weight.as_ptr(),
            w.inp as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

fn parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

fn add_bias(x: &mut [f32], bias: Option<&[f32]>) {
    let Some(bias) = bias else { return };
    x.par_chunks_mut(bias.len() * ROWS_PER_TASK)
        .for_each(|rows| {
            for row in rows.chunks_exact_mut(bias.len()) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        });
}

/// `v = x + b; v * sigmoid(1.702 v)`, OpenAI CLIP's activation.
fn bias_quick_gelu(x: &mut [f32], bias: Option<&[f32]>) {
    let width = bias.map_or(x.len().max(1), |b| b.len());
    x.par_chunks_mut(width * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_exact_mut(width) {
            if let Some(bias) = bias {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            for v in row.iter_mut() {
                *v /= 1.0 + exp(-1.702 * *v);
            }
        }
    });
}

fn layer_norm(x: &[f32], out: &mut [f32], dim: usize, norm: &LayerNorm) {
    x.par_chunks(dim * ROWS_PER_TASK)
        .zip(out.par_chunks_mut(dim * ROWS_PER_TASK))
        .for_each(|(rows, outs)| {
            for (row, out) in rows.chunks_exact(dim).zip(outs.chunks_exact_mut(dim)) {
                let mean = row.iter().sum::<f32>() / dim as f32;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
                let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
                for (((o, v), g), b) in out.iter_mut().zip(row).zip(&norm.gamma).zip(&norm.beta) {
                    *o = (v - mean) * inv * g + b;
                }
            }
        });
}

/// Multi-head attention over `qkv` (rows of q, k, v, each `dim` wide, heads side by side),
/// into `out` (rows of `dim`). One task per sequence; q is already scaled.
fn attention(qkv: &[f32], out: &mut [f32], seq: usize, dim: usize, heads: usize, causal: bool) {
    let head_dim = dim / heads;
    let stride = 3 * dim;
    out.par_chunks_mut(seq * dim)
        .zip(qkv.par_chunks(seq * stride))
        .for_each(|(out, qkv)| {
            let mut scores = vec![0f32; seq * seq];
            for h in 0..heads {
                let q = qkv[h * head_dim..].as_ptr();
                let k = qkv[dim + h * head_dim..].as_ptr();
                let v = qkv[2 * dim + h * head_dim..].as_ptr();
                // SAFETY: q, k and v are seq rows of head_dim values, `stride` apart, inside
                // this sequence's qkv (the largest offset read is (seq - 1) * stride + 3 dim
                // - 1); scores is seq x seq; the output is seq rows of head_dim values, `dim`
                // apart, inside this sequence's out.
                unsafe {
                    // scores = q · kᵀ
                    gemm::gemm(
                        seq,
                        seq,
                        head_dim,
                        scores.as_mut_ptr(),
                        1,
                        seq as isize,
                        false,
                        q,
                        1,
                        stride as isize,
                        k,
                        stride as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (i, row) in scores.chunks_exact_mut(seq).enumerate() {
                    let visible = if causal { i + 1 } else { seq };
                    let max = row[..visible]
                        .iter()
                        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut sum = 0.0;
                    for s in &mut row[..visible] {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let inv = 1.0 / sum;
                    row[..visible].iter_mut().for_each(|s| *s *= inv);
                    row[visible..].iter_mut().for_each(|s| *s = 0.0);
                }
                unsafe {
                    // out_h = softmax(scores) · v
                    gemm::gemm(
                        seq,
                        head_dim,
                        seq,
                        out[h * head_dim..].as_mut_ptr(),
                        1,
                        dim as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        seq as isize,
                        v,
                        1,
                        stride as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        });
}

/// The attention output of one query row per sequence, row `pooled[i]` of sequence `i`, into
/// `out` (`pooled.len()` rows of `dim`): the sums `attention` makes for those rows.
fn attend_one(
    qkv: &[f32],
    out: &mut [f32],
    seq: usize,
    dim: usize,
    heads: usize,
    causal: bool,
    pooled: &[usize],
) {
    let head_dim = dim / heads;
    let stride = 3 * dim;
    out.par_chunks_mut(dim)
        .zip(qkv.par_chunks(seq * stride))
        .zip(pooled.par_iter())
        .for_each(|((out, qkv), &row)| {
            let visible = if causal { row + 1 } else { seq };
            let mut scores = vec![0f32; visible];
            for h in 0..heads {
                let q = &qkv[row * stride + h * head_dim..][..head_dim];
                for (j, score) in scores.iter_mut().enumerate() {
                    let k = &qkv[j * stride + dim + h * head_dim..][..head_dim];
                    *score = q.iter().zip(k).map(|(a, b)| a * b).sum();
                }
                softmax(&mut scores);
                let out = &mut out[h * head_dim..][..head_dim];
                out.fill(0.0);
                for (j, &p) in scores.iter().enumerate() {
                    let v = &qkv[j * stride + 2 * dim + h * head_dim..][..head_dim];
                    for (o, v) in out.iter_mut().zip(v) {
                        *o += p * v;
                    }
                }
            }
        });
}

/// Softmax of a row in place.
fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for s in row.iter_mut() {
        *s = exp(*s - max);
    }
    for s in row.iter() {
        sum += s;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
}

/// `e^x` within 2 ulp for the arguments that matter here (|x| < 87; beyond, the result
/// saturates), as Cephes' `expf` computes it: `2^n * e^r` with `r` in [-ln2/2, ln2/2] and a
/// degree-6 polynomial for `e^r`. Written without branches or library calls so that the
/// compiler vectorises the quick-GELU and softmax loops; libm's `expf`, called per element, was
/// 3% of a ViT-B/32 forward pass.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    // ln 2 split in two so that n * ln2 is exact in its high part.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    // Cephes' 5.0000001e-1, which is 0.5 in f32.
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, libm) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max((ours - libm).abs() / libm);
            x += 0.000_7;
        }
        // 2 ulp of a float is 2^-22 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e4) < 1e-37 && exp(1e4) > 1e38);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row = vec![1.0, 3.0, 2.0, -50.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[2] && row[2] > row[0] && row[0] > row[3]);
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp(), (-50f64).exp()];
        let total: f64 = e.iter().sum();
        for (got, want) in row.iter().zip(e) {
            assert!((*got as f64 - want / total).abs() < 1e-7);
        }
    }
}
