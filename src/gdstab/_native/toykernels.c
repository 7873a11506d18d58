/*
 * Register-blocked gradient-descent kernels for gdstab's closed-form toy losses.
 *
 * Each kernel runs n trajectories of G(theta) = theta - eta * grad L(theta) with the
 * classification rules of gdstab.dynamics (see _classify docs there): the two
 * implementations follow the same step-by-step definition, so that statuses and
 * decision steps agree exactly with the JAX engine.
 *
 * A block of L = 4*NV trajectories lives in AVX registers (GCC vector extensions, four
 * float64 lanes per vector) for all its steps; memory is touched only at the start and
 * the end of a block.  Floating-point contraction is disabled at compile time
 * (-ffp-contract=off), so results do not depend on the block a trajectory lands in.
 *
 * Status codes: 0 running, 1 settled, 2 diverged, 3 periodic, 4 bounded (T reached).
 */
#include <stdint.h>
#include <Python.h>

typedef double vd __attribute__((vector_size(32)));
typedef long long vl __attribute__((vector_size(32)));
#ifndef NV
#define NV 4
#endif
#define LANES (4 * NV)
#define MAXD 2

/* per-lane verdict flags (int64 lanes); a lane is running while its flags are 0 */
#define FLAG_DIV 1
#define FLAG_SET 2
#define FLAG_PER 4
#define FLAG_BND 8
#define FLAG_EMPTY 16
#define F_DIV ((vl){FLAG_DIV, FLAG_DIV, FLAG_DIV, FLAG_DIV})
#define F_SET ((vl){FLAG_SET, FLAG_SET, FLAG_SET, FLAG_SET})
#define F_PER ((vl){FLAG_PER, FLAG_PER, FLAG_PER, FLAG_PER})
#define F_BND ((vl){FLAG_BND, FLAG_BND, FLAG_BND, FLAG_BND})
#define F_EMPTY ((vl){FLAG_EMPTY, FLAG_EMPTY, FLAG_EMPTY, FLAG_EMPTY})

/* flags -> status code (1 settled, 2 diverged, 3 periodic, 4 bounded), by priority */
static inline double decode_status(long long f)
{
    if (f & FLAG_DIV) return 2.0;
    if (f & FLAG_SET) return 1.0;
    if (f & FLAG_PER) return 3.0;
    return 4.0;
}

/* select a where the mask m is set, else b; and a broadcast constant (macros, not functions, so
 * that every target clone inlines them with its own instruction set) */
#define sel(m, a, b) ((vd)((((vl)(a)) & (m)) | (((vl)(b)) & ~(m))))
#define bc(s) ((vd){(s), (s), (s), (s)})

/* ---- gradients: g = grad L(x), written for one vector of four lanes ---- */
/* hyperbola: L = 1/2 (1 - x y)^2 */
#define GRAD_hyperbola { vd r_ = 1.0 - x[0] * x[1]; g[0] = -x[1] * r_; g[1] = -x[0] * r_; }
/* saddle_quartic: L = 1/2 (y^2 - x^2)^2 */
#define GRAD_saddle_quartic { vd s_ = x[1] * x[1] - x[0] * x[0]; g[0] = -2.0 * x[0] * s_; g[1] = 2.0 * x[1] * s_; }
/* zhu: L = 1/4 (x^2 y^2 - 1)^2 */
#define GRAD_zhu { vd s_ = x[0] * x[0] * (x[1] * x[1]) - 1.0; g[0] = x[0] * (x[1] * x[1]) * s_; g[1] = (x[0] * x[0]) * x[1] * s_; }
/* rosenbrock: L = (a - x)^2 + b (y - x^2)^2, prm = {a, b} */
#define GRAD_rosenbrock { vd w_ = x[1] - x[0] * x[0]; g[0] = -2.0 * (prm[0] - x[0]) - 4.0 * prm[1] * x[0] * w_; g[1] = 2.0 * prm[1] * w_; }
/* quartic: L = x^4 / 4 */
#define GRAD_quartic { g[0] = x[0] * x[0] * x[0]; }
/* quad_quartic: L = x^2/2 + x^4/4 */
#define GRAD_quad_quartic { g[0] = x[0] + x[0] * x[0] * x[0]; }

/*
 * Arguments (all arrays C-contiguous float64):
 *   n         number of trajectories
 *   theta0    (n, D) initial points
 *   eta       (n,) step sizes
 *   prm       problem parameters (may be unused)
 *   T         maximum number of steps
 *   opts      {tol, window, max_norm, max_period, check_every, period_checks}
 *   out_theta (n, D) iterate at the decision step
 *   out_info  (n, 3): status, decision step, period
 *
 * The lanes are persistent: a decided trajectory is written out at the next segment boundary
 * (every check_every steps) and its lane is refilled with the next pending trajectory, so
 * lanes do not idle while slow neighbours finish.  Every trajectory starts at a segment
 * boundary, so its step phase (and therefore its result) does not depend on its lane.
 */
#define DEFINE_KERNEL(NAME, D)                                                                 \
KERNEL_ATTR void gdstab_run_##NAME(int64_t n, const double *theta0, const double *eta,          \
                                   const double *prm, int64_t T, const double *opts,            \
                                   double *out_theta, double *out_info)                          \
{                                                                                              \
    const double tol = opts[0], window = opts[1], max_norm = opts[2];                          \
    const int64_t P = (int64_t)opts[3], K = (int64_t)opts[4];                                   \
    const vd tol2 = bc(tol * tol), W = bc(window), maxn2 = bc(max_norm * max_norm);             \
    const vd zero = bc(0.0), one = bc(1.0), Tf = bc((double)T), checks = bc(opts[5]);          \
    const vd inf = bc(__builtin_inf());                                                        \
    const vl izero = {0, 0, 0, 0};                                                             \
    vl st[NV];                                                                                  \
    vd th[MAXD][NV], e[NV], cnt[NV], start[NV], s1[NV], anc[MAXD][NV];                 \
    vd pseg[NV], pprev[NV], pcnt[NV], pdec[NV];                                                \
    int64_t idx[LANES];                                                                        \
    int64_t next = 0;                                                                          \
    for (int v = 0; v < NV; v++) {                                                             \
        st[v] = F_EMPTY; cnt[v] = zero; start[v] = zero; s1[v] = zero; e[v] = zero;           \
        pseg[v] = zero; pprev[v] = zero; pcnt[v] = zero; pdec[v] = zero;                       \
        for (int c = 0; c < D; c++) { th[c][v] = zero; anc[c][v] = zero; }                     \
    }                                                                                          \
    for (int i = 0; i < LANES; i++) idx[i] = -1;                                               \
    for (int64_t t = 0;; t++) {                                                                \
        const int64_t k = t % K;                                                               \
        if (k == 0) {                                                                          \
            int busy = 0;                                                                      \
            for (int v = 0; v < NV; v++)                                                       \
                for (int j = 0; j < 4; j++) {                                                  \
                    int64_t *id = &idx[4 * v + j];                                             \
                    if (*id >= 0 && st[v][j] != 0) {                                         \
                        for (int c = 0; c < D; c++) out_theta[*id * D + c] = th[c][v][j];      \
                        out_info[3 * *id] = decode_status(st[v][j]);                                          \
                        out_info[3 * *id + 1] = cnt[v][j] - 1.0;                               \
                        out_info[3 * *id + 2] = pdec[v][j];                                    \
                        *id = -1; st[v][j] = FLAG_EMPTY;                                             \
                    }                                                                          \
                    if (*id < 0 && next < n) {                                                 \
                        *id = next;                                                            \
                        for (int c = 0; c < D; c++) th[c][v][j] = theta0[next * D + c];        \
                        e[v][j] = eta[next];                                                   \
                        st[v][j] = 0; cnt[v][j] = 0.0; start[v][j] = (double)t; s1[v][j] = 0.0; \
                        pseg[v][j] = 0.0; pprev[v][j] = 0.0; pcnt[v][j] = 0.0; pdec[v][j] = 0.0; \
                        next++;                                                                \
                    }                                                                          \
                    busy |= (*id >= 0);                                                        \
                }                                                                              \
            if (!busy) break;                                                                  \
            for (int v = 0; v < NV; v++) for (int c = 0; c < D; c++) anc[c][v] = th[c][v];     \
        }                                                                                      \
        const vd tf = bc((double)t);                                                           \
        const int probe = (k >= 1 && k <= P);                                                  \
        const int seg_end = (k == P);                                                          \
        for (int v = 0; v < NV; v++) {                                                         \
            vd x[MAXD], g[MAXD];                                                               \
            for (int c = 0; c < D; c++) x[c] = th[c][v];                                       \
            GRAD_##NAME                                                                        \
            vd n2 = x[0] * x[0], gg = g[0] * g[0];                                             \
            for (int c = 1; c < D; c++) { n2 = n2 + x[c] * x[c]; gg = gg + g[c] * g[c]; }      \
            vd d2 = (e[v] * e[v]) * gg;                                                        \
            vl ok = (n2 <= maxn2) & (d2 < inf);                                                \
            vl small = d2 <= tol2;                                                             \
            vd s1n = (vd)((vl)(s1[v] + one) & small);                                          \
            vl settled = s1n >= W;                                                             \
            /* verdict flags of this step; the decoder applies the priority               */ \
            /* diverged > settled > periodic > bounded                                    */ \
            vl ns = (F_DIV & ~ok) | (F_SET & settled);                                         \
            vl act = st[v] == izero;                                                           \
            if (probe) {                                                                       \
                vd dd = (x[0] - anc[0][v]) * (x[0] - anc[0][v]);                               \
                for (int c = 1; c < D; c++) dd = dd + (x[c] - anc[c][v]) * (x[c] - anc[c][v]); \
                vl ret = dd <= tol2;                                                           \
                if (k == 1) pseg[v] = sel(ret, bc(-1.0), zero);                                \
                else pseg[v] = sel(ret & (pseg[v] == zero), bc((double)k), pseg[v]);          \
                if (seg_end) {                                                                 \
                    vl found = pseg[v] > zero;                                                 \
                    vl same = found & (pseg[v] == pprev[v]);                                   \
                    pcnt[v] = sel(same, pcnt[v] + one, (vd)((vl)one & found));                 \
                    pprev[v] = pseg[v];                                                        \
                    vl isper = found & (pcnt[v] >= checks);                                    \
                    ns |= F_PER & isper;                                                       \
                    pdec[v] = sel(act & isper, pseg[v], pdec[v]);                              \
                }                                                                              \
            }                                                                                  \
            ns |= F_BND & ((tf - start[v]) == Tf);                                             \
            st[v] |= ns & act;                                                                 \
            cnt[v] = cnt[v] + (vd)((vl)one & act);                                             \
            s1[v] = s1n;                                                                       \
            vl go = st[v] == izero;                                                            \
            for (int c = 0; c < D; c++) th[c][v] = x[c] - (vd)((vl)(e[v] * g[c]) & go);       \
        }                                                                                      \
    }                                                                                          \
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* one clone for AVX2+FMA machines (x86-64-v3), one baseline; chosen when the library loads */
#define KERNEL_ATTR __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KERNEL_ATTR
#endif

DEFINE_KERNEL(hyperbola, 2)
DEFINE_KERNEL(saddle_quartic, 2)
DEFINE_KERNEL(zhu, 2)
DEFINE_KERNEL(rosenbrock, 2)
DEFINE_KERNEL(quartic, 1)
DEFINE_KERNEL(quad_quartic, 1)

/* An importable (empty) module, so that the shared library installs as gdstab._native._toykernels
 * and is found with importlib; the kernels themselves are called through ctypes, which releases
 * the GIL during the call and lets Python threads run blocks on all cores. */
static struct PyModuleDef toykernels_module = {PyModuleDef_HEAD_INIT, "_toykernels", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__toykernels(void) { return PyModule_Create(&toykernels_module); }
