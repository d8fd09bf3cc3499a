//! Products with quantized weights in f32 arithmetic, for the types SmolLM2's GGUF uses (Q4_1 for
//! the blocks, Q8_0 for the embedding). candle multiplies Q4_1 with scalar code and rounds each
//! activation row to 8 bits first (as llama.cpp does); here the weights are expanded block by
//! block and multiplied with the activations as they are, so the results are the dequantized
//! model's to f32 rounding (the reference's numbers), and faster.
//!
//! A Q4_1 block holds 32 weights `w_j = d q_j + m` (4-bit `q_j`), a Q8_0 block `w_j = d q_j`
//! (8-bit signed `q_j`); so a block's share of `w . x` is `d sum_j q_j x_j (+ m sum_j x_j)`.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

const BLOCK: usize = 32;

enum Blocks {
    /// Scales, minimums, and 16 bytes of nibbles per block (byte `j` holds weight `j` in its
    /// low nibble and weight `j + 16` in its high one, as GGUF stores them).
    Q4_1 {
        scale: Vec<f32>,
        min: Vec<f32>,
        nibbles: Vec<[u8; 16]>,
    },
    Q8_0 {
        scale: Vec<f32>,
        q: Vec<[i8; BLOCK]>,
    },
}

/// A `[rows, cols]` matrix of Q4_1 or Q8_0 blocks, with the scales widened to f32 once, at load.
pub(crate) struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    blocks: Blocks,
}

impl QuantMatrix {
    /// The matrix of a Q4_1 or Q8_0 tensor (`None` for other types).
    pub fn from_qtensor(t: &QTensor) -> Option<QuantMatrix> {
        let (rows, cols) = t.shape().dims2().ok()?;
        if cols % BLOCK != 0 {
            return None;
        }
        let bytes = t.data().ok()?;
        let n = rows * cols / BLOCK;
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let blocks = match t.dtype() {
            GgmlDType::Q4_1 if bytes.len() == n * 20 => {
                let it = bytes.chunks_exact(20);
                Blocks::Q4_1 {
                    scale: it.clone().map(|b| f16(&b[0..2])).collect(),
                    min: it.clone().map(|b| f16(&b[2..4])).collect(),
                    nibbles: it.map(|b| b[4..20].try_into().expect("16 bytes")).collect(),
                }
            }
            GgmlDType::Q8_0 if bytes.len() == n * 34 => {
                let it = bytes.chunks_exact(34);
                Blocks::Q8_0 {
                    scale: it.clone().map(|b| f16(&b[0..2])).collect(),
                    q: it
                        .map(|b| std::array::from_fn(|j| b[2 + j] as i8))
                        .collect(),
                }
            }
            _ => return None,
        };
        Some(QuantMatrix { rows, cols, blocks })
    }

    pub fn memory_bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q4_1 { scale, .. } => scale.len() * (4 + 4 + 16),
            Blocks::Q8_0 { scale, .. } => scale.len() * (4 + BLOCK),
        }
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let per_row = self.cols / BLOCK;
        for (i, dst) in out.chunks_exact_mut(BLOCK).enumerate() {
            let b = r * per_row + i;
            match &self.blocks {
                Blocks::Q4_1 {
                    scale,
                    min,
                    nibbles,
                } => {
                    for j in 0..16 {
                        dst[j] = scale[b] * (nibbles[b][j] & 0x0F) as f32 + min[b];
                        dst[j + 16] = scale[b] * (nibbles[b][j] >> 4) as f32 + min[b];
                    }
                }
                Blocks::Q8_0 { scale, q } => {
                    for j in 0..BLOCK {
                        dst[j] = scale[b] * q[b][j] as f32;
                    }
                }
            }
        }
    }

    /// `y = x W^T` for `x` of `m` rows (`[m, cols]` row-major); returns `[m, rows]`.
    pub fn matmul(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        // Many rows: expand a band of weights to f32 and hand it to the dense GEMM, which reuses
        // each weight across rows far better than dot products can. Few rows (decoding): dot
        // products straight from the blocks, the weights read once.
        if m >= 8 {
            self.matmul_dense(x, m)
        } else {
            Ok(self.matmul_dots(x, m))
        }
    }

    fn matmul_dense(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let xt = Tensor::from_slice(x, (m, self.cols), &Device::Cpu)?;
        // Bands of about 4 MB of f32 weights bound the temporary memory.
        let band = ((1 << 20) / self.cols).clamp(1, self.rows);
        let mut y = vec![0f32; m * self.rows];
        let mut w = vec![0f32; band * self.cols];
        for r0 in (0..self.rows).step_by(band) {
            let r1 = (r0 + band).min(self.rows);
            let n = r1 - r0;
            w[..n * self.cols]
                .par_chunks_mut(self.cols)
                .enumerate()
                .for_each(|(i, row)| self.dequantize_row(r0 + i, row));
            let wt = Tensor::from_slice(&w[..n * self.cols], (n, self.cols), &Device::Cpu)?;
            let part = xt.matmul(&wt.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            for i in 0..m {
                y[i * self.rows + r0..i * self.rows + r1]
                    .copy_from_slice(&part[i * n..(i + 1) * n]);
            }
        }
        Ok(y)
    }

    fn matmul_dots(&self, x: &[f32], m: usize) -> Vec<f32> {
        let per_row = self.cols / BLOCK;
        // Per activation row, each block's sum (the Q4_1 minimum multiplies it).
        let sums: Vec<f32> = x.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect();
        let avx2 = has_avx2();
        let mut y = vec![0f32; m * self.rows];
        let chunk = 32;
        // Weight rows split across threads; output written per activation row afterwards.
        let parts: Vec<Vec<f32>> = (0..self.rows.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(self.rows));
                let mut out = Vec::with_capacity(m * (r1 - r0));
                for i in 0..m {
                    let xr = &x[i * self.cols..(i + 1) * self.cols];
                    let sr = &sums[i * per_row..(i + 1) * per_row];
                    out.extend((r0..r1).map(|r| self.dot(r * per_row, xr, sr, avx2)));
                }
                out
            })
            .collect();
        for (c, out) in parts.into_iter().enumerate() {
            let r0 = c * chunk;
            let n = out.len() / m;
            for i in 0..m {
                y[i * self.rows + r0..i * self.rows + r0 + n]
                    .copy_from_slice(&out[i * n..(i + 1) * n]);
            }
        }
        y
    }

    /// The dot product of the weight row whose first block is `b0` with `x`.
    fn dot(&self, b0: usize, x: &[f32], block_sums: &[f32], avx2: bool) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time); indices are in bounds as
            // in the portable loop below.
            return unsafe { self.dot_avx2(b0, x, block_sums) };
        }
        let _ = avx2;
        let mut acc = 0f32;
        for (i, xb) in x.chunks_exact(BLOCK).enumerate() {
            let b = b0 + i;
            match &self.blocks {
                Blocks::Q4_1 {
                    scale,
                    min,
                    nibbles,
                } => {
                    let mut s = 0f32;
                    for j in 0..16 {
                        s += (nibbles[b][j] & 0x0F) as f32 * xb[j]
                            + (nibbles[b][j] >> 4) as f32 * xb[j + 16];
                    }
                    acc += scale[b] * s + min[b] * block_sums[i];
                }
                Blocks::Q8_0 { scale, q } => {
                    let s: f32 = q[b].iter().zip(xb).map(|(&qj, &xj)| qj as f32 * xj).sum();
                    acc += scale[b] * s;
                }
            }
        }
        acc
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(&self, b0: usize, x: &[f32], block_sums: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let blocks = x.len() / BLOCK;
        let xp = x.as_ptr();
        let mut acc = _mm256_setzero_ps();
        let mut offsets = 0f32;
        let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        let widen_signed = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        match &self.blocks {
            Blocks::Q4_1 {
                scale,
                min,
                nibbles,
            } => {
                let low = _mm_set1_epi8(0x0F);
                for i in 0..blocks {
                    let b = b0 + i;
                    let packed = _mm_loadu_si128(nibbles.as_ptr().add(b) as *const __m128i);
                    let lo = _mm_and_si128(packed, low);
                    let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
                    let xs = xp.add(i * BLOCK);
                    let mut t = _mm256_mul_ps(widen(lo), _mm256_loadu_ps(xs));
                    t = _mm256_fmadd_ps(
                        widen(_mm_srli_si128(lo, 8)),
                        _mm256_loadu_ps(xs.add(8)),
                        t,
                    );
                    t = _mm256_fmadd_ps(widen(hi), _mm256_loadu_ps(xs.add(16)), t);
                    t = _mm256_fmadd_ps(
                        widen(_mm_srli_si128(hi, 8)),
                        _mm256_loadu_ps(xs.add(24)),
                        t,
                    );
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(*scale.get_unchecked(b)), t, acc);
                    offsets += *min.get_unchecked(b) * *block_sums.get_unchecked(i);
                }
            }
            Blocks::Q8_0 { scale, q } => {
                for i in 0..blocks {
                    let b = b0 + i;
                    let qp = q.as_ptr().add(b) as *const u8;
                    let q0 = _mm_loadu_si128(qp as *const __m128i);
                    let q1 = _mm_loadu_si128(qp.add(16) as *const __m128i);
                    let xs = xp.add(i * BLOCK);
                    let mut t = _mm256_mul_ps(widen_signed(q0), _mm256_loadu_ps(xs));
                    t = _mm256_fmadd_ps(
                        widen_signed(_mm_srli_si128(q0, 8)),
                        _mm256_loadu_ps(xs.add(8)),
                        t,
                    );
                    t = _mm256_fmadd_ps(widen_signed(q1), _mm256_loadu_ps(xs.add(16)), t);
                    t = _mm256_fmadd_ps(
                        widen_signed(_mm_srli_si128(q1, 8)),
                        _mm256_loadu_ps(xs.add(24)),
                        t,
                    );
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(*scale.get_unchecked(b)), t, acc);
                }
            }
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        _mm_cvtss_f32(one) + offsets
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dtype: GgmlDType) {
        let (rows, cols) = (40, 96);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let ours = QuantMatrix::from_qtensor(&q).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        for m in [1, 3, 9] {
            let x: Vec<f32> = (0..m * cols)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
                .collect();
            let y = ours.matmul(&x, m).unwrap();
            let xt = Tensor::from_vec(x.clone(), (m, cols), &Device::Cpu).unwrap();
            let expected = xt
                .matmul(&dense.t().unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for i in 0..y.len() {
                assert!(
                    (y[i] - expected[i]).abs() < 1e-4 * expected[i].abs().max(1.0),
                    "{dtype:?} m={m} {i}: {} vs {}",
                    y[i],
                    expected[i]
                );
            }
            // The portable path gives the AVX2 path's numbers.
            let sums: Vec<f32> = x[..cols]
                .chunks_exact(BLOCK)
                .map(|c| c.iter().sum())
                .collect();
            for r in 0..rows {
                let (a, b) = (
                    ours.dot(r * 3, &x[..cols], &sums, false),
                    ours.dot(r * 3, &x[..cols], &sums, has_avx2()),
                );
                assert!((a - b).abs() < 1e-4 * a.abs().max(1.0));
            }
        }
        let mut row = vec![0f32; cols];
        ours.dequantize_row(7, &mut row);
        assert_eq!(row, dense.get(7).unwrap().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn q4_1_and_q8_0_products_equal_the_dequantized_ones() {
        check(GgmlDType::Q4_1);
        check(GgmlDType::Q8_0);
    }
}
