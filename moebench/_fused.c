// Fused float64 moment kernels of the tensor step (AVX2/FMA), used by
// moebench.tensor.moments when this CPU has AVX2 and FMA (``available()``); numpy's BLAS
// path otherwise. Issue 13: T2 + whitened T3 in 1.42-1.47x one X^T X (docs/performance.md).
//
// wsyrk: T2's sum_n s_n x_n x_n^T as a weighted SYRK that scales the rows while packing
//   them (BLIS-style 6x8 microkernel, upper-triangle tiles only, 6x4 for half tiles,
//   any sign of s).
// wt3: the whitened T3's sums for k <= 12 in one pass: u_n = W^T x_n (4 rows at a time,
//   12 lanes), then G[p][c] += s_n u_a u_b u_c over the pairs p = (a <= b) sorted by b,
//   for the 4-lane chunks holding a c >= b only, and v[c] += s_n u_c.
// wt3f_f32: the same for float32 X (6 rows at a time, 16 lanes, float32 block sums).
// They take C-contiguous arrays by address (the Python side checks them) and run
// without the GIL. Compiled without global -m flags: only these functions use AVX2.
// Elsewhere (not x86-64 with GCC or Clang, or built with -DMOEBENCH_NO_KERNELS) the module
// only reports available() == False.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(MOEBENCH_NO_KERNELS)
#define HAVE_KERNELS 1
#include <immintrin.h>
#define TARGET __attribute__((target("avx2,fma")))
#define MR 6
#define NR 8
#define KP 12
#define MAX_PAIRS 80  /* 12 * 13 / 2 = 78, padded to a multiple of 4 */
#define KC_ROWS 128   /* rows per packed block of wsyrk */
#define MB_ROWS 1024  /* rows per projected block of wt3 and wt3f */

// The pairs (a <= b < k) sorted by b, padded with (0, k-1) to a multiple of 4 (their rows
// of G are unused); returns the number of groups of 4.
static int sorted_pairs(int k, int* pa, int* pb) {
    int p = 0;
    for (int b = 0; b < k; b++) for (int a = 0; a <= b; a++) { pa[p] = a; pb[p] = b; p++; }
    int npg = (p + 3) / 4;
    for (; p < 4 * npg; p++) { pa[p] = 0; pb[p] = k - 1; }
    return npg;
}

static double* alloc64(size_t count) {  // 64-byte aligned, size rounded up as C11 asks
    size_t bytes = (count * sizeof(double) + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

TARGET static void kernel_6x8(long kc, const double* restrict a, const double* restrict b,
                       double* restrict c, long ldc) {
    __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
    __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
    __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
    __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
    __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd();
    __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd();
    for (long k = 0; k < kc; k++) {
        __m256d b0 = _mm256_load_pd(b), b1 = _mm256_load_pd(b + 4);
        __m256d a0 = _mm256_broadcast_sd(a + 0);
        c00 = _mm256_fmadd_pd(a0, b0, c00); c01 = _mm256_fmadd_pd(a0, b1, c01);
        a0 = _mm256_broadcast_sd(a + 1);
        c10 = _mm256_fmadd_pd(a0, b0, c10); c11 = _mm256_fmadd_pd(a0, b1, c11);
        a0 = _mm256_broadcast_sd(a + 2);
        c20 = _mm256_fmadd_pd(a0, b0, c20); c21 = _mm256_fmadd_pd(a0, b1, c21);
        a0 = _mm256_broadcast_sd(a + 3);
        c30 = _mm256_fmadd_pd(a0, b0, c30); c31 = _mm256_fmadd_pd(a0, b1, c31);
        a0 = _mm256_broadcast_sd(a + 4);
        c40 = _mm256_fmadd_pd(a0, b0, c40); c41 = _mm256_fmadd_pd(a0, b1, c41);
        a0 = _mm256_broadcast_sd(a + 5);
        c50 = _mm256_fmadd_pd(a0, b0, c50); c51 = _mm256_fmadd_pd(a0, b1, c51);
        a += MR; b += NR;
    }
#define UPD(r, lo, hi) \
    _mm256_storeu_pd(c + r * ldc, _mm256_add_pd(_mm256_loadu_pd(c + r * ldc), lo)); \
    _mm256_storeu_pd(c + r * ldc + 4, _mm256_add_pd(_mm256_loadu_pd(c + r * ldc + 4), hi));
    UPD(0, c00, c01) UPD(1, c10, c11) UPD(2, c20, c21)
    UPD(3, c30, c31) UPD(4, c40, c41) UPD(5, c50, c51)
}

// Half a tile: 6 rows x 4 columns (b still packed 8 wide), for the tiles whose other half
// lies wholly below the diagonal or in the padding past d.
TARGET static void kernel_6x4(long kc, const double* restrict a, const double* restrict b,
                              double* restrict c, long ldc) {
    __m256d c0 = _mm256_setzero_pd(), c1 = _mm256_setzero_pd(), c2 = _mm256_setzero_pd();
    __m256d c3 = _mm256_setzero_pd(), c4 = _mm256_setzero_pd(), c5 = _mm256_setzero_pd();
    for (long k = 0; k < kc; k++) {
        __m256d b0 = _mm256_load_pd(b);
        c0 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + 0), b0, c0);
        c1 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + 1), b0, c1);
        c2 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + 2), b0, c2);
        c3 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + 3), b0, c3);
        c4 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + 4), b0, c4);
        c5 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + 5), b0, c5);
        a += MR; b += NR;
    }
#define UPD4(r, v) _mm256_storeu_pd(c + r * ldc, _mm256_add_pd(_mm256_loadu_pd(c + r * ldc), v));
    UPD4(0, c0) UPD4(1, c1) UPD4(2, c2) UPD4(3, c3) UPD4(4, c4) UPD4(5, c5)
}

// Cp: (ceil(d/6)*6 x ceil(d/8)*8) accumulator, row-major; only its upper tiles are added to.
TARGET static int wsyrk(const double* X, const double* s, long n, long d, double* Cp, long KC) {
    long nA = (d + MR - 1) / MR, nB = (d + NR - 1) / NR;
    long dB = nB * NR;
    double* Ap = alloc64(KC * nA * MR);
    double* Bp = alloc64(KC * nB * NR);
    if (Ap == NULL || Bp == NULL) { free(Ap); free(Bp); return -1; }
    memset(Ap, 0, sizeof(double) * KC * nA * MR);
    memset(Bp, 0, sizeof(double) * KC * nB * NR);
    for (long k0 = 0; k0 < n; k0 += KC) {
        long kc = (n - k0 < KC) ? n - k0 : KC;
        for (long kk = 0; kk < kc; kk++) {
            const double* x = X + (k0 + kk) * d;
            double w = s[k0 + kk];
            for (long ip = 0; ip < nA; ip++) {
                double* dst = Ap + (ip * kc + kk) * MR;
                long i0 = ip * MR, m = (d - i0 < MR) ? d - i0 : MR;
                for (long ii = 0; ii < m; ii++) dst[ii] = w * x[i0 + ii];
            }
            for (long jp = 0; jp < nB; jp++) {
                double* dst = Bp + (jp * kc + kk) * NR;
                long j0 = jp * NR;
                if (d - j0 >= NR) {
                    _mm256_store_pd(dst, _mm256_loadu_pd(x + j0));
                    _mm256_store_pd(dst + 4, _mm256_loadu_pd(x + j0 + 4));
                } else {
                    for (long jj = 0; jj < d - j0; jj++) dst[jj] = x[j0 + jj];
                }
            }
        }
        for (long ip = 0; ip < nA; ip++) {
            long i0 = ip * MR;
            for (long jp = i0 / NR; jp < nB; jp++) {
                long j0 = jp * NR;
                long lo = (i0 - j0 >= 4) ? 4 : 0;  /* columns j0..j0+3 all below row i0 */
                long hi = (d - j0 <= 4) ? 4 : NR;  /* columns j0+4.. all past d */
                const double* a = Ap + ip * kc * MR;
                const double* b = Bp + jp * kc * NR + lo;
                double* c = Cp + i0 * dB + j0 + lo;
                if (hi - lo == NR) kernel_6x8(kc, a, b, c, dB);
                else if (hi > lo) kernel_6x4(kc, a, b, c, dB);
            }
        }
    }
    free(Ap); free(Bp);
    return 0;
}

// Wp: (d x 12) row-major, columns k..11 zero. G: (ceil(k(k+1)/2 / 4)*4 x 12) and v (12)
// are added to; G's rows are the pairs (a <= b < k) sorted by b, then a.
TARGET static int wt3(const double* X, const double* s, long n, long d, int k,
                      const double* Wp, double* G, double* v, long MB) {
    double* Us = alloc64(MB * KP);
    double* U = alloc64(MB * KP);
    if (Us == NULL || U == NULL) { free(Us); free(U); return -1; }
    int pa[MAX_PAIRS], pb[MAX_PAIRS];
    int npg = sorted_pairs(k, pa, pb);
    __m256d v0 = _mm256_setzero_pd(), v1 = _mm256_setzero_pd(), v2 = _mm256_setzero_pd();
    for (long r0 = 0; r0 < n; r0 += MB) {
        long mb = (n - r0 < MB) ? n - r0 : MB;
        long r = 0;
        for (; r + 4 <= mb; r += 4) {  // projection, 4 rows at a time
            const double* x0 = X + (r0 + r) * d;
            const double* x1 = x0 + d; const double* x2 = x1 + d; const double* x3 = x2 + d;
            __m256d a00 = _mm256_setzero_pd(), a01 = _mm256_setzero_pd(), a02 = _mm256_setzero_pd();
            __m256d a10 = _mm256_setzero_pd(), a11 = _mm256_setzero_pd(), a12 = _mm256_setzero_pd();
            __m256d a20 = _mm256_setzero_pd(), a21 = _mm256_setzero_pd(), a22 = _mm256_setzero_pd();
            __m256d a30 = _mm256_setzero_pd(), a31 = _mm256_setzero_pd(), a32 = _mm256_setzero_pd();
            const double* w = Wp;
            for (long j = 0; j < d; j++, w += KP) {
                __m256d w0 = _mm256_loadu_pd(w), w1 = _mm256_loadu_pd(w + 4), w2 = _mm256_loadu_pd(w + 8);
                __m256d xb = _mm256_broadcast_sd(x0 + j);
                a00 = _mm256_fmadd_pd(xb, w0, a00); a01 = _mm256_fmadd_pd(xb, w1, a01); a02 = _mm256_fmadd_pd(xb, w2, a02);
                xb = _mm256_broadcast_sd(x1 + j);
                a10 = _mm256_fmadd_pd(xb, w0, a10); a11 = _mm256_fmadd_pd(xb, w1, a11); a12 = _mm256_fmadd_pd(xb, w2, a12);
                xb = _mm256_broadcast_sd(x2 + j);
                a20 = _mm256_fmadd_pd(xb, w0, a20); a21 = _mm256_fmadd_pd(xb, w1, a21); a22 = _mm256_fmadd_pd(xb, w2, a22);
                xb = _mm256_broadcast_sd(x3 + j);
                a30 = _mm256_fmadd_pd(xb, w0, a30); a31 = _mm256_fmadd_pd(xb, w1, a31); a32 = _mm256_fmadd_pd(xb, w2, a32);
            }
#define STORE(q, c0, c1, c2) { double* u = U + (r + q) * KP; double* us = Us + (r + q) * KP; \
            __m256d sw = _mm256_set1_pd(s[r0 + r + q]); \
            _mm256_store_pd(u, c0); _mm256_store_pd(u + 4, c1); _mm256_store_pd(u + 8, c2); \
            __m256d t0 = _mm256_mul_pd(sw, c0), t1 = _mm256_mul_pd(sw, c1), t2 = _mm256_mul_pd(sw, c2); \
            _mm256_store_pd(us, t0); _mm256_store_pd(us + 4, t1); _mm256_store_pd(us + 8, t2); \
            v0 = _mm256_add_pd(v0, t0); v1 = _mm256_add_pd(v1, t1); v2 = _mm256_add_pd(v2, t2); }
            STORE(0, a00, a01, a02) STORE(1, a10, a11, a12) STORE(2, a20, a21, a22) STORE(3, a30, a31, a32)
        }
        for (; r < mb; r++) {  // leftover rows, one at a time
            const double* x = X + (r0 + r) * d;
            __m256d c0 = _mm256_setzero_pd(), c1 = _mm256_setzero_pd(), c2 = _mm256_setzero_pd();
            const double* w = Wp;
            for (long j = 0; j < d; j++, w += KP) {
                __m256d xb = _mm256_broadcast_sd(x + j);
                c0 = _mm256_fmadd_pd(xb, _mm256_loadu_pd(w), c0);
                c1 = _mm256_fmadd_pd(xb, _mm256_loadu_pd(w + 4), c1);
                c2 = _mm256_fmadd_pd(xb, _mm256_loadu_pd(w + 8), c2);
            }
            STORE(0, c0, c1, c2)
        }
        // cubic: 4 pairs x 12 lanes in 12 accumulators, over the block's rows
        for (int g = 0; g < npg; g++) {
            int p0 = 4 * g;
            int a0 = pa[p0], b0 = pb[p0], a1 = pa[p0+1], b1 = pb[p0+1];
            int a2 = pa[p0+2], b2 = pb[p0+2], a3 = pa[p0+3], b3 = pb[p0+3];
            int cs = b0 / 4;  /* b ascending: b0 is the group's smallest; lanes c < b unused */
            __m256d g0[3], g1[3], g2[3], g3[3];
            for (int c = 0; c < 3; c++) g0[c] = g1[c] = g2[c] = g3[c] = _mm256_setzero_pd();
#define CUBIC(CS) \
            for (long q = 0; q < mb; q++) { \
                const double* u = U + q * KP; const double* us = Us + q * KP; \
                __m256d t0 = _mm256_set1_pd(u[a0] * u[b0]), t1 = _mm256_set1_pd(u[a1] * u[b1]); \
                __m256d t2 = _mm256_set1_pd(u[a2] * u[b2]), t3 = _mm256_set1_pd(u[a3] * u[b3]); \
                for (int c = CS; c < 3; c++) { \
                    __m256d sc = _mm256_load_pd(us + 4 * c); \
                    g0[c] = _mm256_fmadd_pd(t0, sc, g0[c]); g1[c] = _mm256_fmadd_pd(t1, sc, g1[c]); \
                    g2[c] = _mm256_fmadd_pd(t2, sc, g2[c]); g3[c] = _mm256_fmadd_pd(t3, sc, g3[c]); \
                } \
            }
            if (cs == 0) { CUBIC(0) } else if (cs == 1) { CUBIC(1) } else { CUBIC(2) }
            for (int c = cs; c < 3; c++) {
                double* gg;
                gg = G + (p0 + 0) * KP + 4 * c; _mm256_storeu_pd(gg, _mm256_add_pd(_mm256_loadu_pd(gg), g0[c]));
                gg = G + (p0 + 1) * KP + 4 * c; _mm256_storeu_pd(gg, _mm256_add_pd(_mm256_loadu_pd(gg), g1[c]));
                gg = G + (p0 + 2) * KP + 4 * c; _mm256_storeu_pd(gg, _mm256_add_pd(_mm256_loadu_pd(gg), g2[c]));
                gg = G + (p0 + 3) * KP + 4 * c; _mm256_storeu_pd(gg, _mm256_add_pd(_mm256_loadu_pd(gg), g3[c]));
            }
        }
    }
    double tmp[12];
    _mm256_storeu_pd(tmp, v0); _mm256_storeu_pd(tmp + 4, v1); _mm256_storeu_pd(tmp + 8, v2);
    for (int c = 0; c < KP; c++) v[c] += tmp[c];
    free(Us); free(U);
    return 0;
}

// wt3f: wt3 in float32 for X stored as float32 (dtype=float32): 8 lanes per register, 16
// lanes for k <= 12, 6 rows per projection block (12 accumulators: enough independent
// FMA chains to hide their latency). Sums over a block of MB rows are float32; the blocks
// are added to G and v in float64.
#define KPF 16
TARGET static int wt3f_f32(const float* X, const double* s, long n, long d, int k,
                           const float* Wp, double* G, double* v, long MB) {
    float* U = (float*)alloc64((MB * KPF + 1) / 2);
    float* Us = (float*)alloc64((MB * KPF + 1) / 2);
    if (U == NULL || Us == NULL) { free(U); free(Us); return -1; }
    int pa[MAX_PAIRS], pb[MAX_PAIRS];
    int npg = sorted_pairs(k, pa, pb);
    for (long r0 = 0; r0 < n; r0 += MB) {
        long mb = (n - r0 < MB) ? n - r0 : MB;
        __m256 v0 = _mm256_setzero_ps(), v1 = _mm256_setzero_ps();
        long r = 0;
#define STOREF(q, c0, c1) { float* u = U + (r + q) * KPF; float* us = Us + (r + q) * KPF; \
    __m256 sw = _mm256_set1_ps((float)s[r0 + r + q]); \
    __m256 t0 = _mm256_mul_ps(sw, c0), t1 = _mm256_mul_ps(sw, c1); \
    _mm256_store_ps(u, c0); _mm256_store_ps(u + 8, c1); \
    _mm256_store_ps(us, t0); _mm256_store_ps(us + 8, t1); \
    v0 = _mm256_add_ps(v0, t0); v1 = _mm256_add_ps(v1, t1); }
        for (; r + 6 <= mb; r += 6) {  /* 6 rows per block */
            const float* x0 = X + (r0 + r) * d;
            const float* x1 = x0 + d; const float* x2 = x1 + d; const float* x3 = x2 + d;
            const float* x4 = x3 + d; const float* x5 = x4 + d;
            __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps();
            __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
            __m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps();
            __m256 a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
            __m256 a40 = _mm256_setzero_ps(), a41 = _mm256_setzero_ps();
            __m256 a50 = _mm256_setzero_ps(), a51 = _mm256_setzero_ps();
            const float* w = Wp;
            for (long j = 0; j < d; j++, w += KPF) {
                __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
                __m256 xb = _mm256_broadcast_ss(x0 + j);
                a00 = _mm256_fmadd_ps(xb, w0, a00); a01 = _mm256_fmadd_ps(xb, w1, a01);
                xb = _mm256_broadcast_ss(x1 + j);
                a10 = _mm256_fmadd_ps(xb, w0, a10); a11 = _mm256_fmadd_ps(xb, w1, a11);
                xb = _mm256_broadcast_ss(x2 + j);
                a20 = _mm256_fmadd_ps(xb, w0, a20); a21 = _mm256_fmadd_ps(xb, w1, a21);
                xb = _mm256_broadcast_ss(x3 + j);
                a30 = _mm256_fmadd_ps(xb, w0, a30); a31 = _mm256_fmadd_ps(xb, w1, a31);
                xb = _mm256_broadcast_ss(x4 + j);
                a40 = _mm256_fmadd_ps(xb, w0, a40); a41 = _mm256_fmadd_ps(xb, w1, a41);
                xb = _mm256_broadcast_ss(x5 + j);
                a50 = _mm256_fmadd_ps(xb, w0, a50); a51 = _mm256_fmadd_ps(xb, w1, a51);
            }
            STOREF(0, a00, a01) STOREF(1, a10, a11) STOREF(2, a20, a21)
            STOREF(3, a30, a31) STOREF(4, a40, a41) STOREF(5, a50, a51)
        }
        for (; r < mb; r++) {
            const float* x0 = X + (r0 + r) * d;
            __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps();
            const float* w = Wp;
            for (long j = 0; j < d; j++, w += KPF) {
                __m256 xb = _mm256_broadcast_ss(x0 + j);
                a00 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w), a00);
                a01 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w + 8), a01);
            }
            STOREF(0, a00, a01)
        }
        float vb[KPF];
        _mm256_storeu_ps(vb, v0); _mm256_storeu_ps(vb + 8, v1);
        for (int c = 0; c < KPF; c++) v[c] += vb[c];
        for (int g = 0; g < npg; g++) {
            int p0 = 4 * g;
            int a0 = pa[p0], b0 = pb[p0], a1 = pa[p0+1], b1 = pb[p0+1];
            int a2 = pa[p0+2], b2 = pb[p0+2], a3 = pa[p0+3], b3 = pb[p0+3];
            __m256 g00 = _mm256_setzero_ps(), g01 = _mm256_setzero_ps();
            __m256 g10 = _mm256_setzero_ps(), g11 = _mm256_setzero_ps();
            __m256 g20 = _mm256_setzero_ps(), g21 = _mm256_setzero_ps();
            __m256 g30 = _mm256_setzero_ps(), g31 = _mm256_setzero_ps();
            if (b0 < 8) {
                for (long q = 0; q < mb; q++) {
                    const float* u = U + q * KPF; const float* us = Us + q * KPF;
                    __m256 s0 = _mm256_load_ps(us), s1 = _mm256_load_ps(us + 8);
                    __m256 t = _mm256_set1_ps(u[a0] * u[b0]);
                    g00 = _mm256_fmadd_ps(t, s0, g00); g01 = _mm256_fmadd_ps(t, s1, g01);
                    t = _mm256_set1_ps(u[a1] * u[b1]);
                    g10 = _mm256_fmadd_ps(t, s0, g10); g11 = _mm256_fmadd_ps(t, s1, g11);
                    t = _mm256_set1_ps(u[a2] * u[b2]);
                    g20 = _mm256_fmadd_ps(t, s0, g20); g21 = _mm256_fmadd_ps(t, s1, g21);
                    t = _mm256_set1_ps(u[a3] * u[b3]);
                    g30 = _mm256_fmadd_ps(t, s0, g30); g31 = _mm256_fmadd_ps(t, s1, g31);
                }
            } else {
                for (long q = 0; q < mb; q++) {
                    const float* u = U + q * KPF; const float* us = Us + q * KPF;
                    __m256 s1 = _mm256_load_ps(us + 8);
                    g01 = _mm256_fmadd_ps(_mm256_set1_ps(u[a0] * u[b0]), s1, g01);
                    g11 = _mm256_fmadd_ps(_mm256_set1_ps(u[a1] * u[b1]), s1, g11);
                    g21 = _mm256_fmadd_ps(_mm256_set1_ps(u[a2] * u[b2]), s1, g21);
                    g31 = _mm256_fmadd_ps(_mm256_set1_ps(u[a3] * u[b3]), s1, g31);
                }
            }
#define GADDF(q, c0, c1) { float gb[KPF]; double* gg = G + (p0 + q) * KPF; \
    _mm256_storeu_ps(gb, c0); _mm256_storeu_ps(gb + 8, c1); \
    for (int c = 0; c < KPF; c++) gg[c] += gb[c]; }
            GADDF(0, g00, g01) GADDF(1, g10, g11) GADDF(2, g20, g21) GADDF(3, g30, g31)
        }
    }
    free(U); free(Us);
    return 0;
}
#else
#define HAVE_KERNELS 0
#endif

#if HAVE_KERNELS
static PyObject* kernel_result(int rc) {  // rc: 0, or -1 when a buffer could not be allocated
    if (rc != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}
#else
static PyObject* not_compiled(void) {
    PyErr_SetString(PyExc_RuntimeError, "the fused kernels were not compiled for this platform");
    return NULL;
}
#endif

static PyObject* fused_available(PyObject* self, PyObject* args) {
#if HAVE_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) Py_RETURN_TRUE;
#endif
    Py_RETURN_FALSE;
}

static PyObject* fused_wsyrk(PyObject* self, PyObject* args) {
    Py_ssize_t x, s, n, d, c;
    if (!PyArg_ParseTuple(args, "nnnnn", &x, &s, &n, &d, &c)) return NULL;
#if HAVE_KERNELS
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = wsyrk((const double*)x, (const double*)s, (long)n, (long)d, (double*)c, KC_ROWS);
    Py_END_ALLOW_THREADS
    return kernel_result(rc);
#else
    return not_compiled();
#endif
}

static PyObject* fused_wt3(PyObject* self, PyObject* args) {
    Py_ssize_t x, s, n, d, k, w, g, v, single = 0;
    if (!PyArg_ParseTuple(args, "nnnnnnnn|n", &x, &s, &n, &d, &k, &w, &g, &v, &single))
        return NULL;
#if HAVE_KERNELS
    if (k < 1 || k > KP) {
        PyErr_Format(PyExc_ValueError, "wt3 handles 1 <= k <= %d; got k = %zd", KP, k);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    if (single)
        rc = wt3f_f32((const float*)x, (const double*)s, (long)n, (long)d, (int)k,
                      (const float*)w, (double*)g, (double*)v, MB_ROWS);
    else
        rc = wt3((const double*)x, (const double*)s, (long)n, (long)d, (int)k,
                 (const double*)w, (double*)g, (double*)v, MB_ROWS);
    Py_END_ALLOW_THREADS
    return kernel_result(rc);
#else
    return not_compiled();
#endif
}

static PyMethodDef methods[] = {
    {"available", fused_available, METH_NOARGS, "Whether this CPU runs the kernels (AVX2, FMA)."},
    {"wsyrk", fused_wsyrk, METH_VARARGS,
     "wsyrk(x, s, n, d, c): add sum_n s_n x_n x_n^T to c's upper 6x8 tiles (addresses)."},
    {"wt3", fused_wt3, METH_VARARGS,
     "wt3(x, s, n, d, k, w, g, v, single=0): add the whitened third moment's sums to g "
     "and v; single: x and w float32 (w with 16 lanes), sums in float32 per block."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&module); }
