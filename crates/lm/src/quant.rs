//! Products with quantized or half-precision weights in f32 arithmetic, for the types SmolLM2's GGUF
//! uses (Q4_1 for the blocks, Q8_0 for the embedding) and for F16 and BF16 weights (GGUF or
//! safetensors), which stay 2 bytes a weight in memory and are widened as they are multiplied. candle multiplies Q4_1 with scalar code and rounds each
//! activation row to 8 bits first (as llama.cpp does); here the weights are expanded block by
//! block and multiplied with the activations as they are, so the results are the dequantized
//! model's to f32 rounding (the reference's numbers), and faster. The blocks stay as the file
//! stores them (20 bytes per 32 weights for Q4_1); their f16 scales are widened as they are read.
//!
//! A Q4_1 block holds 32 weights `w_j = d q_j + m` (4-bit `q_j`), a Q8_0 block `w_j = d q_j`
//! (8-bit signed `q_j`); so a block's share of `w . x` is `d sum_j q_j x_j (+ m sum_j x_j)`.

use candle_core::quantized::GgmlDType;
#[cfg(test)]
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// Weights per block of the 32-weight types (and the unit of the Q4_1 block sums).
const BLOCK: usize = 32;
/// Weights per super-block of the K-quants.
const SUPER_BLOCK: usize = 256;

/// The block types multiplied here. F16 and BF16 have no block structure; they are cut into blocks of
/// 32 weights like the others so that one code path serves all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockType {
    /// `d`, `m` (f16), then 16 bytes of nibbles: byte `j` holds weight `j` in its low nibble
    /// and weight `j + 16` in its high one.
    Q4_1,
    /// `d` (f16), then 32 signed bytes.
    Q8_0,
    /// `d` (f16), then 16 bytes of nibbles laid out as Q4_1's: `w_j = d (q_j - 8)`.
    Q4_0,
    /// `d` (f16), 4 bytes holding bit 4 of each weight, 16 bytes of nibbles: `w_j = d (q_j - 16)`.
    Q5_0,
    /// `d`, `m` (f16), then Q5_0's bits: `w_j = d q_j + m`.
    Q5_1,
    /// 256 weights in 8 sub-blocks of 32: `d`, `dmin` (f16), 12 bytes of 6-bit sub-block scales
    /// and minima, 128 bytes of nibbles; `w = d sc q - dmin m`.
    Q4K,
    /// 256 weights in 16 sub-blocks of 16: the low 4 bits (128 bytes), the high 2 bits (64 bytes),
    /// 16 signed 8-bit sub-block scales, `d` (f16); `w = d sc (q - 32)`.
    Q6K,
    /// Q4_K with a fifth bit per weight (32 bytes after the scales): `w = d sc q - dmin m`.
    Q5K,
    /// 32 IEEE half-precision weights.
    F16,
    /// 32 bfloat16 weights (the top half of an f32).
    BF16,
}

impl BlockType {
    pub fn of(dtype: GgmlDType) -> Option<BlockType> {
        match dtype {
            GgmlDType::Q4_1 => Some(BlockType::Q4_1),
            GgmlDType::Q8_0 => Some(BlockType::Q8_0),
            GgmlDType::Q4_0 => Some(BlockType::Q4_0),
            GgmlDType::Q5_0 => Some(BlockType::Q5_0),
            GgmlDType::Q5_1 => Some(BlockType::Q5_1),
            GgmlDType::Q5K => Some(BlockType::Q5K),
            GgmlDType::Q4K => Some(BlockType::Q4K),
            GgmlDType::Q6K => Some(BlockType::Q6K),
            GgmlDType::F16 => Some(BlockType::F16),
            GgmlDType::BF16 => Some(BlockType::BF16),
            _ => None,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            BlockType::Q4_1 => 20,
            BlockType::Q8_0 => 34,
            BlockType::Q4_0 => 18,
            BlockType::Q5_0 => 22,
            BlockType::Q5_1 => 24,
            BlockType::Q5K => 176,
            BlockType::Q4K => 144,
            BlockType::Q6K => 210,
            BlockType::F16 | BlockType::BF16 => 64,
        }
    }

    /// Whether the dot products expand each block to f32 first (no kernel of its own).
    fn expanded(self) -> bool {
        !matches!(
            self,
            BlockType::Q4_1 | BlockType::Q8_0 | BlockType::F16 | BlockType::BF16
        )
    }

    /// Weights per block.
    pub fn weights(self) -> usize {
        match self {
            BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => SUPER_BLOCK,
            _ => BLOCK,
        }
    }
}

/// A `[rows, cols]` matrix of blocks, byte for byte as the file stores them (`cols` a multiple of
/// the block's weights).
pub(crate) struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    kind: BlockType,
    data: Vec<u8>,
    /// The whole matrix in f32 once [`QuantMatrix::expand`] ran: products of many rows read it
    /// instead of expanding bands of blocks every time.
    dense: Option<Tensor>,
}

fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

fn bf16_at(b: &[u8]) -> f32 {
    half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
}

impl QuantMatrix {
    /// The matrix over `data` (`None` when the sizes disagree).
    pub fn from_bytes(
        kind: BlockType,
        data: Vec<u8>,
        rows: usize,
        cols: usize,
    ) -> Option<QuantMatrix> {
        let n = kind.weights();
        (cols % n == 0 && data.len() == rows * cols / n * kind.bytes()).then_some(QuantMatrix {
            rows,
            cols,
            kind,
            data,
            dense: None,
        })
    }

    /// Keeps the matrix in f32 beside its blocks (4 bytes per weight more): for work that runs
    /// many texts (probes, scans), where expanding the blocks anew for every product cost about
    /// as much as the product itself. Decoding (fewer than 8 rows) still reads the blocks.
    pub fn expand(&mut self) -> candle_core::Result<()> {
        if self.dense.is_none() {
            let w = self.dequantize_all();
            self.dense = Some(Tensor::from_vec(w, (self.rows, self.cols), &Device::Cpu)?);
        }
        Ok(())
    }

    /// The whole matrix as f32, `[rows, cols]` row-major.
    pub fn dequantize_all(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.rows * self.cols];
        w.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, row)| self.dequantize_row(r, row));
        w
    }

    /// The matrix of a tensor of one of the block types (`None` for other types).
    #[cfg(test)]
    pub fn from_qtensor(t: &QTensor) -> Option<QuantMatrix> {
        let (rows, cols) = t.shape().dims2().ok()?;
        QuantMatrix::from_bytes(
            BlockType::of(t.dtype())?,
            t.data().ok()?.into_owned(),
            rows,
            cols,
        )
    }

    /// The f32 copy [`QuantMatrix::expand`] made, if it ran.
    pub fn dense(&self) -> Option<&Tensor> {
        self.dense.as_ref()
    }

    pub fn memory_bytes(&self) -> usize {
        self.data.len() + self.dense.as_ref().map_or(0, |_| self.rows * self.cols * 4)
    }

    fn block(&self, b: usize) -> &[u8] {
        let n = self.kind.bytes();
        &self.data[b * n..(b + 1) * n]
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let n = self.kind.weights();
        let per_row = self.cols / n;
        for (i, dst) in out.chunks_exact_mut(n).enumerate() {
            dequantize_block(self.kind, self.block(r * per_row + i), dst);
        }
    }

    /// `y = x W^T` for `x` of `m` rows (`[m, cols]` row-major); returns `[m, rows]`.
    pub fn matmul(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        // Many rows: expand a band of weights to f32 and hand it to the dense GEMM, which reuses
        // each weight across rows far better than dot products can. Few rows (decoding): dot
        // products straight from the blocks, the weights read once.
        if m >= 8 {
            if let Some(w) = &self.dense {
                let xt = Tensor::from_slice(x, (m, self.cols), &Device::Cpu)?;
                return xt.matmul(&w.t()?)?.flatten_all()?.to_vec1::<f32>();
            }
            self.matmul_dense(x, m)
        } else {
            Ok(self.matmul_dots(x, m))
        }
    }

    fn matmul_dense(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let xt = Tensor::from_slice(x, (m, self.cols), &Device::Cpu)?;
        // Bands of about 1 MB of f32 weights bound the temporary memory.
        let band = ((1 << 18) / self.cols).clamp(1, self.rows);
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
        let per_row = self.cols / self.kind.weights();
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
                    let sr = &sums[i * self.cols / BLOCK..(i + 1) * self.cols / BLOCK];
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
        if self.kind.expanded() {
            return self.dot_dequantized(b0, x);
        }
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time); indices are in bounds as
            // in the portable loop below.
            return unsafe { self.dot_avx2(b0, x, block_sums) };
        }
        let _ = avx2;
        let mut acc = 0f32;
        for (i, xb) in x.chunks_exact(BLOCK).enumerate() {
            let blk = self.block(b0 + i);
            match self.kind {
                BlockType::Q4_1 => {
                    let mut s = 0f32;
                    for j in 0..16 {
                        s += (blk[4 + j] & 0x0F) as f32 * xb[j]
                            + (blk[4 + j] >> 4) as f32 * xb[j + 16];
                    }
                    acc += f16_at(&blk[0..2]) * s + f16_at(&blk[2..4]) * block_sums[i];
                }
                BlockType::Q8_0 => {
                    let s: f32 = blk[2..]
                        .iter()
                        .zip(xb)
                        .map(|(&q, &xj)| q as i8 as f32 * xj)
                        .sum();
                    acc += f16_at(&blk[0..2]) * s;
                }
                BlockType::F16 => {
                    acc += xb
                        .iter()
                        .enumerate()
                        .map(|(j, &xj)| f16_at(&blk[2 * j..]) * xj)
                        .sum::<f32>();
                }
                BlockType::BF16 => {
                    acc += xb
                        .iter()
                        .enumerate()
                        .map(|(j, &xj)| bf16_at(&blk[2 * j..]) * xj)
                        .sum::<f32>();
                }
                _ => unreachable!("dot() sends the other types to dot_dequantized"),
            }
        }
        acc
    }

    /// The dot product by way of each block expanded to f32: the types without a kernel of their own.
    fn dot_dequantized(&self, b0: usize, x: &[f32]) -> f32 {
        let n = self.kind.weights();
        let mut w = [0f32; SUPER_BLOCK];
        let mut lanes = [0f32; 8];
        for (i, xb) in x.chunks_exact(n).enumerate() {
            dequantize_block(self.kind, self.block(b0 + i), &mut w[..n]);
            // Eight partial sums that the compiler keeps in one vector register.
            for (wc, xc) in w[..n].chunks_exact(8).zip(xb.chunks_exact(8)) {
                for k in 0..8 {
                    lanes[k] += wc[k] * xc[k];
                }
            }
        }
        lanes.iter().sum()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_avx2(&self, b0: usize, x: &[f32], block_sums: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let blocks = x.len() / BLOCK;
        let (xp, size) = (x.as_ptr(), self.kind.bytes());
        let base = self.data.as_ptr().add(b0 * size);
        let mut acc = _mm256_setzero_ps();
        let mut offsets = _mm_setzero_ps();
        let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        let widen_signed = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        match self.kind {
            BlockType::Q4_1 => {
                let low = _mm_set1_epi8(0x0F);
                for i in 0..blocks {
                    let blk = base.add(i * size);
                    // `d` and `m`, both f16, widened together: lanes 0 and 1.
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((blk as *const i32).read_unaligned()));
                    let packed = _mm_loadu_si128(blk.add(4) as *const __m128i);
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
                    acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), t, acc);
                    // m * sum(x): lane 1 of dm times the block's sum, kept in lane 1.
                    offsets = _mm_fmadd_ps(
                        dm,
                        _mm_set_ps(0.0, 0.0, *block_sums.get_unchecked(i), 0.0),
                        offsets,
                    );
                }
            }
            BlockType::Q8_0 => {
                for i in 0..blocks {
                    let blk = base.add(i * size);
                    let d = _mm_cvtph_ps(_mm_cvtsi32_si128(
                        (blk as *const u16).read_unaligned() as i32
                    ));
                    let q0 = _mm_loadu_si128(blk.add(2) as *const __m128i);
                    let q1 = _mm_loadu_si128(blk.add(18) as *const __m128i);
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
                    acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), t, acc);
                }
            }
            BlockType::F16 | BlockType::BF16 => {
                let bf16 = self.kind == BlockType::BF16;
                for i in 0..blocks {
                    let blk = base.add(i * size);
                    let xs = xp.add(i * BLOCK);
                    for k in 0..4 {
                        let h = _mm_loadu_si128(blk.add(16 * k) as *const __m128i);
                        let w = if bf16 {
                            // A bfloat16 is the high 16 bits of the f32 it stands for.
                            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                        } else {
                            _mm256_cvtph_ps(h)
                        };
                        acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(xs.add(8 * k)), acc);
                    }
                }
            }
            _ => unreachable!("dot() sends the other types to dot_dequantized"),
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        _mm_cvtss_f32(one) + _mm_cvtss_f32(_mm_shuffle_ps(offsets, offsets, 1))
    }
}

/// Sub-block `j`'s 6-bit scale and minimum in a Q4_K or Q5_K block's 12 scale bytes: bytes 0-3 hold
/// scales 0-3 (low 6 bits), bytes 4-7 minima 0-3, bytes 8-11 the low 4 bits of scales and minima
/// 4-7, whose high 2 bits are the top bits of bytes 0-7.
fn k_scale_min(scales: &[u8], j: usize) -> (f32, f32) {
    if j < 4 {
        ((scales[j] & 63) as f32, (scales[j + 4] & 63) as f32)
    } else {
        (
            ((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4)) as f32,
            ((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)) as f32,
        )
    }
}

/// One block of `kind` (`blk`, its bytes) as f32 weights.
fn dequantize_block(kind: BlockType, blk: &[u8], dst: &mut [f32]) {
    match kind {
        BlockType::Q4_1 => {
            let (d, m) = (f16_at(&blk[0..2]), f16_at(&blk[2..4]));
            for j in 0..16 {
                dst[j] = d * (blk[4 + j] & 0x0F) as f32 + m;
                dst[j + 16] = d * (blk[4 + j] >> 4) as f32 + m;
            }
        }
        BlockType::Q4_0 => {
            let d = f16_at(&blk[0..2]);
            for j in 0..16 {
                dst[j] = d * ((blk[2 + j] & 0x0F) as i32 - 8) as f32;
                dst[j + 16] = d * ((blk[2 + j] >> 4) as i32 - 8) as f32;
            }
        }
        BlockType::Q8_0 => {
            let d = f16_at(&blk[0..2]);
            for j in 0..BLOCK {
                dst[j] = d * blk[2 + j] as i8 as f32;
            }
        }
        BlockType::Q4K => {
            let (d, dmin) = (f16_at(&blk[0..2]), f16_at(&blk[2..4]));
            let scale_min = |j: usize| k_scale_min(&blk[4..16], j);
            // Each 32 bytes of nibbles hold two sub-blocks: the low nibbles, then the high ones.
            for (chunk, q) in blk[16..144].chunks_exact(32).enumerate() {
                let (sc_lo, m_lo) = scale_min(2 * chunk);
                let (sc_hi, m_hi) = scale_min(2 * chunk + 1);
                let (d_lo, min_lo, d_hi, min_hi) = (d * sc_lo, dmin * m_lo, d * sc_hi, dmin * m_hi);
                let out = &mut dst[64 * chunk..64 * (chunk + 1)];
                for l in 0..32 {
                    out[l] = d_lo * (q[l] & 0x0F) as f32 - min_lo;
                    out[l + 32] = d_hi * (q[l] >> 4) as f32 - min_hi;
                }
            }
        }
        BlockType::Q5_0 | BlockType::Q5_1 => {
            let d = f16_at(&blk[0..2]);
            let (m, rest) = match kind {
                BlockType::Q5_1 => (f16_at(&blk[2..4]), &blk[4..]),
                _ => (0.0, &blk[2..]),
            };
            let offset = if kind == BlockType::Q5_0 { 16 } else { 0 };
            // Bit j of `high` is bit 4 of weight j.
            let high = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let qs = &rest[4..20];
            for j in 0..16 {
                let lo = (qs[j] & 0x0F) as u32 | ((high >> j) & 1) << 4;
                let hi = (qs[j] >> 4) as u32 | ((high >> (j + 16)) & 1) << 4;
                dst[j] = d * (lo as i32 - offset) as f32 + m;
                dst[j + 16] = d * (hi as i32 - offset) as f32 + m;
            }
        }
        BlockType::Q5K => {
            let (d, dmin) = (f16_at(&blk[0..2]), f16_at(&blk[2..4]));
            let (high, qs) = (&blk[16..48], &blk[48..176]);
            // As Q4_K; sub-block pair `chunk` takes its fifth bits from bits 2 chunk and
            // 2 chunk + 1 of `high`.
            for (chunk, q) in qs.chunks_exact(32).enumerate() {
                let (sc_lo, m_lo) = k_scale_min(&blk[4..16], 2 * chunk);
                let (sc_hi, m_hi) = k_scale_min(&blk[4..16], 2 * chunk + 1);
                let (d_lo, min_lo, d_hi, min_hi) = (d * sc_lo, dmin * m_lo, d * sc_hi, dmin * m_hi);
                let out = &mut dst[64 * chunk..64 * (chunk + 1)];
                for l in 0..32 {
                    let h_lo = (high[l] >> (2 * chunk)) & 1;
                    let h_hi = (high[l] >> (2 * chunk + 1)) & 1;
                    out[l] = d_lo * ((q[l] & 0x0F) | h_lo << 4) as f32 - min_lo;
                    out[l + 32] = d_hi * ((q[l] >> 4) | h_hi << 4) as f32 - min_hi;
                }
            }
        }
        BlockType::Q6K => {
            let (low, high, scales) = (&blk[0..128], &blk[128..192], &blk[192..208]);
            let d = f16_at(&blk[208..210]);
            // Two halves of 128 weights; in each, weight `l + 32 k` takes its low 4 bits from
            // `low` (nibble k / 2 of byte l + 32 (k % 2)) and its high 2 bits from bits 2k of
            // `high[l]`, and the scale of its 16-weight sub-block.
            for half in 0..2 {
                let (ql, qh) = (&low[64 * half..], &high[32 * half..]);
                let sc = &scales[8 * half..8 * half + 8];
                let out = &mut dst[128 * half..128 * (half + 1)];
                for l in 0..32 {
                    let is = l / 16;
                    let q = [
                        (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                        (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                        (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                        (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                    ];
                    for (k, &qk) in q.iter().enumerate() {
                        out[l + 32 * k] =
                            d * (sc[is + 2 * k] as i8 as f32) * (qk as i32 - 32) as f32;
                    }
                }
            }
        }
        BlockType::F16 => {
            for (j, v) in dst.iter_mut().enumerate() {
                *v = f16_at(&blk[2 * j..]);
            }
        }
        BlockType::BF16 => {
            for (j, v) in dst.iter_mut().enumerate() {
                *v = bf16_at(&blk[2 * j..]);
            }
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dtype: GgmlDType) {
        let kind = BlockType::of(dtype).unwrap();
        let (rows, cols) = (40, 3 * kind.weights());
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
    fn block_products_equal_the_dequantized_ones() {
        check(GgmlDType::Q4_1);
        check(GgmlDType::Q8_0);
        check(GgmlDType::F16);
        check(GgmlDType::BF16);
        check(GgmlDType::Q4_0);
        check(GgmlDType::Q4K);
        check(GgmlDType::Q6K);
        check(GgmlDType::Q5_0);
        check(GgmlDType::Q5_1);
        check(GgmlDType::Q5K);
    }
}
