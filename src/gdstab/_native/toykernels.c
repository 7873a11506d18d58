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
static inline int64_t decode_status(long long f)
{
    if (f & FLAG_DIV) return 2;
    if (f & FLAG_SET) return 1;
    if (f & FLAG_PER) return 3;
    return 4;
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

/* ---- losses, same conventions (only evaluated once per trajectory, at its decision) ---- */
#define LOSS_hyperbola { vd r_ = 1.0 - x[0] * x[1]; l = 0.5 * (r_ * r_); }
#define LOSS_saddle_quartic { vd s_ = x[1] * x[1] - x[0] * x[0]; l = 0.5 * (s_ * s_); }
#define LOSS_zhu { vd s_ = x[0] * x[0] * (x[1] * x[1]) - 1.0; l = 0.25 * (s_ * s_); }
#define LOSS_rosenbrock { vd a_ = prm[0] - x[0], w_ = x[1] - x[0] * x[0]; l = a_ * a_ + prm[1] * (w_ * w_); }
#define LOSS_quartic { vd q_ = x[0] * x[0]; l = 0.25 * (q_ * q_); }
#define LOSS_quad_quartic { vd q_ = x[0] * x[0]; l = 0.5 * q_ + 0.25 * (q_ * q_); }

/*
 * Arguments (all arrays C-contiguous):
 *   n          number of trajectories
 *   theta0     (n, D) initial points
 *   eta        (n,) step sizes
 *   prm        problem parameters (may be unused)
 *   T          maximum number of steps
 *   opts       {tol, window, max_norm, max_period, check_every, period_checks, (1 - persistence)^2}
 *   out_theta  (n, D) iterate at the decision step
 *   out_status (n,) int8 status code; out_step, out_period (n,) int64 decision step and period
 *   out_loss, out_gnorm (n,) L and |grad L| at the decision iterate
 *   stop       polled at every segment boundary: when non-zero the kernel returns at once,
 *              leaving undecided trajectories unwritten (the caller raises an interrupt)
 *
 * The lanes are persistent: a decided trajectory is written out at the next segment boundary
 * (every check_every steps) and its lane is refilled with the next pending trajectory, so
 * lanes do not idle while slow neighbours finish.  Every trajectory starts at a segment
 * boundary, so its step phase (and therefore its result) does not depend on its lane.
 *
 * Inside a segment the lane state is held in local vectors (registers where they fit); the
 * steps that probe for a return to the anchor (1 <= k <= max_period) and the one step of a
 * segment at which a lane can reach its step limit (k = T mod check_every) are compiled as
 * separate variants, so the common step does only the work every step needs.
 */
typedef struct {
    vd tol2, W, maxn2, Tf, checks, persist2, drift2, rnd2;
} consts_t;

#define DEFINE_STEP(NAME, D)                                                                   \
static inline __attribute__((always_inline)) void NAME##_step(                                \
    vd TH[MAXD][NV], const vd E[NV], vl ST[NV], vd CNT[NV], vd S1[NV], const vd START[NV],    \
    const vd ANC[MAXD][NV], vd PSEG[NV], vd PPREV[NV], vd PCNT[NV], vd PDEC[NV],               \
    vd PDMX[NV], vd PDPREV[NV], vd PRET[NV], vd PRPREV[NV],                                    \
    const double *prm, const consts_t *C, const double tfs, const double kfs,                  \
    const int probe, const int k1, const int seg_end, const int lastc)                         \
{                                                                                              \
    const vd zero = bc(0.0), one = bc(1.0), inf = bc(__builtin_inf());                         \
    const vl izero = {0, 0, 0, 0};                                                             \
    _Pragma("GCC unroll 8")                                                                    \
    for (int v = 0; v < NV; v++) {                                                             \
        vd x[MAXD], g[MAXD];                                                                   \
        for (int c = 0; c < D; c++) x[c] = TH[c][v];                                           \
        GRAD_##NAME                                                                            \
        vd n2 = x[0] * x[0], gg = g[0] * g[0];                                                 \
        for (int c = 1; c < D; c++) { n2 = n2 + x[c] * x[c]; gg = gg + g[c] * g[c]; }          \
        vd d2 = (E[v] * E[v]) * gg;                                                            \
        vl ok = (n2 <= C->maxn2) & (d2 < inf);                                                 \
        vl small = d2 <= C->tol2;                                                              \
        vd s1n = (vd)((vl)(S1[v] + one) & small);                                              \
        /* verdict flags of this step; decode_status applies the priority */                   \
        vl ns = (F_DIV & ~ok) | (F_SET & (s1n >= C->W));                                       \
        vl act = ST[v] == izero;                                                               \
        if (probe) {                                                                           \
            vd dd = (x[0] - ANC[0][v]) * (x[0] - ANC[0][v]);                                   \
            for (int c = 1; c < D; c++) dd = dd + (x[c] - ANC[c][v]) * (x[c] - ANC[c][v]);     \
            vl ret = dd <= C->tol2;                                                            \
            if (k1) { PSEG[v] = sel(ret, bc(-1.0), zero); PDMX[v] = d2; PRET[v] = zero; }      \
            else {                                                                             \
                vl first = ret & (PSEG[v] == zero);                                            \
                PSEG[v] = sel(first, bc(kfs), PSEG[v]);                                        \
                PDMX[v] = sel(d2 > PDMX[v], d2, PDMX[v]);                                      \
                PRET[v] = sel(first, dd, PRET[v]);                                             \
            }                                                                                  \
            if (seg_end) {                                                                     \
                vl found = PSEG[v] > zero;                                                     \
                vd fl = C->rnd2 * (one + n2);                                                  \
                fl = sel(fl > C->drift2, fl, C->drift2);                                       \
                vl closes = (PRET[v] <= PRPREV[v]) | (PRET[v] <= fl);                          \
                vl same = found & (PSEG[v] == PPREV[v]) & (PDMX[v] >= PDPREV[v] * C->persist2) \
                          & closes;                                                            \
                PCNT[v] = sel(same, PCNT[v] + one, (vd)((vl)one & found));                     \
                PPREV[v] = PSEG[v];                                                            \
                PDPREV[v] = PDMX[v];                                                           \
                PRPREV[v] = PRET[v];                                                           \
                vl isper = found & (PCNT[v] >= C->checks);                                     \
                ns |= F_PER & isper;                                                           \
                PDEC[v] = sel(act & isper, PSEG[v], PDEC[v]);                                  \
            }                                                                                  \
        }                                                                                      \
        if (lastc) ns |= F_BND & ((bc(tfs) - START[v]) == C->Tf);                              \
        ST[v] |= ns & act;                                                                     \
        CNT[v] = CNT[v] + (vd)((vl)one & act);                                                 \
        S1[v] = s1n;                                                                           \
        vl go = ST[v] == izero;                                                                \
        for (int c = 0; c < D; c++) TH[c][v] = x[c] - (vd)((vl)(E[v] * g[c]) & go);           \
    }                                                                                          \
}

#define DEFINE_KERNEL(NAME, D)                                                                 \
DEFINE_STEP(NAME, D)                                                                           \
KERNEL_ATTR void gdstab_run_##NAME(int64_t n, const double *theta0, const double *eta,          \
                                   const double *prm, int64_t T, const double *opts,            \
                                   double *out_theta, int8_t *out_status, int64_t *out_step,    \
                                   int64_t *out_period, double *out_loss, double *out_gnorm,     \
                                   const volatile int *stop)                                     \
{                                                                                              \
    const int64_t P = (int64_t)opts[3], K = (int64_t)opts[4];                                   \
    const int64_t kT = T % K; /* the step of a segment at which lanes can reach T */           \
    consts_t C;                                                                                \
    C.tol2 = bc(opts[0] * opts[0]); C.W = bc(opts[1]); C.maxn2 = bc(opts[2] * opts[2]);        \
    C.Tf = bc((double)T); C.checks = bc(opts[5]); C.persist2 = bc(opts[6]);                    \
    C.drift2 = bc(opts[7]); C.rnd2 = bc(opts[8]);                                              \
    /* lane state between segments (addressable: refilled lane by lane) */                     \
    vl st[NV];                                                                                 \
    vd th[MAXD][NV], e[NV], cnt[NV], start[NV], s1[NV];                                        \
    vd pseg[NV], pprev[NV], pcnt[NV], pdec[NV], pdmx[NV], pdprev[NV], pret[NV], prprev[NV];    \
    int64_t idx[LANES];                                                                        \
    int64_t next = 0;                                                                          \
    for (int v = 0; v < NV; v++) {                                                             \
        st[v] = F_EMPTY; cnt[v] = bc(0.0); start[v] = bc(0.0); s1[v] = bc(0.0); e[v] = bc(0.0); \
        pseg[v] = bc(0.0); pprev[v] = bc(0.0); pcnt[v] = bc(0.0); pdec[v] = bc(0.0);           \
        pdmx[v] = bc(0.0); pdprev[v] = bc(0.0); pret[v] = bc(0.0); prprev[v] = bc(0.0);        \
        for (int c = 0; c < D; c++) th[c][v] = bc(0.0);                                        \
    }                                                                                          \
    for (int i = 0; i < LANES; i++) idx[i] = -1;                                               \
    for (int64_t t0 = 0;; t0 += K) {                                                           \
        int busy = 0;                                                                          \
        if (*stop) return;                                                                     \
        for (int v = 0; v < NV; v++)                                                           \
            for (int j = 0; j < 4; j++) {                                                      \
                int64_t *id = &idx[4 * v + j];                                                 \
                if (*id >= 0 && st[v][j] != 0) {                                               \
                    vd x[MAXD], g[MAXD], l;                                                    \
                    for (int c = 0; c < MAXD; c++) { x[c] = bc(0.0); g[c] = bc(0.0); }         \
                    for (int c = 0; c < D; c++) {                                              \
                        out_theta[*id * D + c] = th[c][v][j];                                  \
                        x[c] = bc(th[c][v][j]);                                                \
                    }                                                                          \
                    GRAD_##NAME                                                                \
                    LOSS_##NAME                                                                \
                    vd gg = g[0] * g[0];                                                       \
                    for (int c = 1; c < D; c++) gg = gg + g[c] * g[c];                         \
                    out_loss[*id] = l[0];                                                      \
                    out_gnorm[*id] = __builtin_sqrt(gg[0]);                                    \
                    out_status[*id] = (int8_t)decode_status(st[v][j]);                         \
                    out_step[*id] = (int64_t)cnt[v][j] - 1;                                    \
                    out_period[*id] = (int64_t)pdec[v][j];                                     \
                    *id = -1; st[v][j] = FLAG_EMPTY;                                           \
                }                                                                              \
                if (*id < 0 && next < n) {                                                     \
                    *id = next;                                                                \
                    for (int c = 0; c < D; c++) th[c][v][j] = theta0[next * D + c];            \
                    e[v][j] = eta[next];                                                       \
                    st[v][j] = 0; cnt[v][j] = 0.0; start[v][j] = (double)t0; s1[v][j] = 0.0;   \
                    pseg[v][j] = 0.0; pprev[v][j] = 0.0; pcnt[v][j] = 0.0; pdec[v][j] = 0.0;   \
                    pdmx[v][j] = 0.0; pdprev[v][j] = 0.0; pret[v][j] = 0.0; prprev[v][j] = 0.0;  \
                    next++;                                                                    \
                }                                                                              \
                busy |= (*id >= 0);                                                            \
            }                                                                                  \
        if (!busy) break;                                                                      \
        /* the segment runs on copies that the compiler can keep in registers */               \
        vl ST_[NV]; vd TH_[MAXD][NV], E_[NV], CNT_[NV], S1_[NV], START_[NV], ANC_[MAXD][NV];    \
        vd PSEG_[NV], PPREV_[NV], PCNT_[NV], PDEC_[NV], PDMX_[NV], PDPREV_[NV], PRET_[NV], PRPREV_[NV]; \
        for (int v = 0; v < NV; v++) {                                                         \
            ST_[v] = st[v]; E_[v] = e[v]; CNT_[v] = cnt[v]; S1_[v] = s1[v]; START_[v] = start[v]; \
            PSEG_[v] = pseg[v]; PPREV_[v] = pprev[v]; PCNT_[v] = pcnt[v]; PDEC_[v] = pdec[v];  \
            PDMX_[v] = pdmx[v]; PDPREV_[v] = pdprev[v]; PRET_[v] = pret[v]; PRPREV_[v] = prprev[v]; \
            for (int c = 0; c < D; c++) { TH_[c][v] = th[c][v]; ANC_[c][v] = th[c][v]; }       \
        }                                                                                      \
        for (int64_t k = 0; k < K; k++) {                                                      \
            const double tf = (double)(t0 + k), kf = (double)k;                                \
            const int lastc = (k == kT);                                                       \
            if (k >= 1 && k <= P) {                                                            \
                if (k == P) {                                                                  \
                    if (k == 1) NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 1, 1, 1, lastc); \
                    else if (lastc) NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 1, 0, 1, 1); \
                    else NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 1, 0, 1, 0); \
                } else if (k == 1) {                                                           \
                    NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 1, 1, 0, lastc); \
                } else if (lastc) {                                                            \
                    NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 1, 0, 0, 1); \
                } else {                                                                       \
                    NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 1, 0, 0, 0); \
                }                                                                              \
            } else if (lastc) {                                                                \
                NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 0, 0, 0, 1); \
            } else {                                                                           \
                NAME##_step(TH_, E_, ST_, CNT_, S1_, START_, ANC_, PSEG_, PPREV_, PCNT_, PDEC_, PDMX_, PDPREV_, PRET_, PRPREV_, prm, &C, tf, kf, 0, 0, 0, 0); \
            }                                                                                  \
        }                                                                                      \
        for (int v = 0; v < NV; v++) {                                                         \
            st[v] = ST_[v]; cnt[v] = CNT_[v]; s1[v] = S1_[v];                                  \
            pseg[v] = PSEG_[v]; pprev[v] = PPREV_[v]; pcnt[v] = PCNT_[v]; pdec[v] = PDEC_[v];  \
            pdmx[v] = PDMX_[v]; pdprev[v] = PDPREV_[v]; pret[v] = PRET_[v]; prprev[v] = PRPREV_[v]; \
            for (int c = 0; c < D; c++) th[c][v] = TH_[c][v];                                  \
        }                                                                                      \
    }                                                                                          \
}

#ifndef KERNEL_ATTR /* (the tests build one variant at a time with -DKERNEL_ATTR=...) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* one clone for AVX-512 machines (x86-64-v4: 32 vector registers, fewer spills of the ~60 live
 * vectors; +10 % best / +23 % median executed point-steps/s on the Zen 4 VM, same run), one for
 * AVX2+FMA (x86-64-v3), one baseline; chosen when the library loads.  Contraction stays off
 * (-ffp-contract=off), so every clone gives the same bits (tests/test_native.py) */
#define KERNEL_ATTR __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL_ATTR
#endif
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
