/*
 * Register-blocked gradient-descent kernels for gdstab's closed-form toy losses.
 *
 * Each kernel runs n trajectories of G(theta) = theta - eta * grad L(theta) with the
 * classification rules of gdstab.dynamics (see _classify docs there): the two
 * implementations follow the same step-by-step definition, so that statuses and
 * decision steps agree exactly with the JAX engine.
 *
 * A block of LANES = 16 trajectories lives in vector registers (GCC vector extensions: two
 * vectors of eight float64 lanes with AVX-512, four of four with AVX2) for all its steps;
 * memory is touched only at the segment boundaries and when a lane is decided.  Floating-point
 * contraction is disabled at compile time (-ffp-contract=off), so results depend neither on
 * the block a trajectory lands in nor on the instruction-set variant that runs it.
 *
 * Status codes: 0 running, 1 settled, 2 diverged, 3 periodic, 4 bounded (T reached).
 */
#include <stdint.h>
#include <Python.h>

/* vectors of four (AVX2) and eight (AVX-512) float64/int64 lanes; each variant below sets vd and
 * vl to one width VW and runs NV of them, LANES = VW * NV = 16 trajectories per block */
typedef double vd4 __attribute__((vector_size(32)));
typedef long long vl4 __attribute__((vector_size(32)));
typedef double vd8 __attribute__((vector_size(64)));
typedef long long vl8 __attribute__((vector_size(64)));
#define LANES (VW * NV)
#define MAXD 2

/* per-lane verdict flags (int64 lanes), set at the decision; whether a lane runs is its mask */
#define FLAG_DIV 1
#define FLAG_SET 2
#define FLAG_PER 4
#define FLAG_BND 8
#define F_DIV ((vl){} + FLAG_DIV)
#define F_SET ((vl){} + FLAG_SET)
#define F_PER ((vl){} + FLAG_PER)
#define F_BND ((vl){} + FLAG_BND)

/* flags -> status code (1 settled, 2 diverged, 3 periodic, 4 bounded), by priority */
static inline int64_t decode_status(long long f)
{
    if (f & FLAG_DIV) return 2;
    if (f & FLAG_SET) return 1;
    if (f & FLAG_PER) return 3;
    return 4;
}

/* select a where the mask m is set, else b; and a broadcast constant (macros, not functions, so
 * that every instruction-set variant inlines them with its own vector width) */
#define sel(m, a, b) ((vd)((((vl)(a)) & (m)) | (((vl)(b)) & ~(m))))
#define bc(s) ((vd){} + (s))

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
 *              (out_period must come zeroed: only a lane with a detected period writes it, so
 *              the pages of a batch without cycles are never written)
 *   out_loss, out_gnorm (n,) L and |grad L| at the decision iterate
 *   stop       polled at every segment boundary: when non-zero the kernel returns at once,
 *              leaving undecided trajectories unwritten (the caller raises an interrupt)
 *
 * The lanes are persistent: a decided trajectory is written out at the next segment boundary
 * (every check_every steps) and its lane is refilled with the next pending trajectory, so
 * lanes do not idle while slow neighbours finish.  Every trajectory starts at a segment
 * boundary, so its step phase (and therefore its result) does not depend on its lane.
 *
 * A step touches only what every step needs: the iterate, eta, the settle counter and a mask of
 * the running lanes (12 eight-lane vectors with AVX-512, in its 32 registers; 24 four-lane ones
 * with AVX2, which has 16).  It
 * computes each lane's "something happened" mask (not finite or too far: diverged; settled;
 * at the end of a probe window: periodic); only when some running lane has an event, or at the
 * one step of a segment at which lanes can reach T, does a rarely taken branch record verdict
 * flags and decision steps (in memory) and drop the lanes from the running mask.  The steps
 * that probe for a return to the anchor (1 <= k <= max_period) are compiled as separate loops
 * with the period detector's state in memory.  The verdicts are the same step-by-step
 * definition as before (tests/test_dynamics.py compares with the JAX engine and the references,
 * tests/test_native.py every instruction-set variant with the baseline, bit for bit).
 */
/* constants of a run, and what a segment keeps outside registers: verdict flags, decision steps,
 * the period detector (one pair of types per variant: their vectors have its width) */
#define DEFINE_TYPES(SUF)                                                                      \
typedef struct { vd tol2, W, maxn2, Tf, checks, persist2, drift2, rnd2; } consts##SUF;         \
typedef struct {                                                                               \
    vl st[NV];                                                                                 \
    vd dstep[NV], start[NV], anc[MAXD][NV];                                                    \
    vd pseg[NV], pprev[NV], pcnt[NV], pdec[NV], pdmx[NV], pdprev[NV], pret[NV], prprev[NV];    \
} lanes##SUF;

#define DEFINE_STEP(NAME, D, SUF)                                                                 \
static inline __attribute__((always_inline)) void NAME##_step##SUF(                          \
    vd TH[MAXD][NV], const vd E[NV], const vd E2[NV], vd S1[NV], vl ACT[NV], lanes##SUF *L,   \
    const double *prm, const consts##SUF *C, const double tfs, const double kfs,                  \
    const int probe, const int k1, const int seg_end, const int lastc)                         \
{                                                                                              \
    const vd zero = bc(0.0), one = bc(1.0), inf = bc(__builtin_inf());                         \
    const vl izero = {};                                                                       \
    vd X[MAXD][NV], G[MAXD][NV];                                                               \
    vl OK[NV], SET[NV], PER[NV], any = izero;                                                  \
    _Pragma("GCC unroll 8")                                                                    \
    for (int v = 0; v < NV; v++) {                                                             \
        vd x[MAXD], g[MAXD];                                                                   \
        for (int c = 0; c < D; c++) x[c] = TH[c][v];                                           \
        GRAD_##NAME                                                                            \
        vd n2 = x[0] * x[0], gg = g[0] * g[0];                                                 \
        for (int c = 1; c < D; c++) { n2 = n2 + x[c] * x[c]; gg = gg + g[c] * g[c]; }          \
        vd d2 = E2[v] * gg;                                                                    \
        vl ok = (n2 <= C->maxn2) & (d2 < inf);                                                 \
        vl small = d2 <= C->tol2;                                                              \
        vd s1n = (vd)((vl)(S1[v] + one) & small);                                              \
        vl set = s1n >= C->W, per = izero;                                                     \
        if (probe) {                                                                           \
            vd dd = (x[0] - L->anc[0][v]) * (x[0] - L->anc[0][v]);                             \
            for (int c = 1; c < D; c++) dd = dd + (x[c] - L->anc[c][v]) * (x[c] - L->anc[c][v]); \
            vl ret = dd <= C->tol2;                                                            \
            if (k1) { L->pseg[v] = sel(ret, bc(-1.0), zero); L->pdmx[v] = d2; L->pret[v] = zero; } \
            else {                                                                             \
                vl first = ret & (L->pseg[v] == zero);                                         \
                L->pseg[v] = sel(first, bc(kfs), L->pseg[v]);                                  \
                L->pdmx[v] = sel(d2 > L->pdmx[v], d2, L->pdmx[v]);                             \
                L->pret[v] = sel(first, dd, L->pret[v]);                                       \
            }                                                                                  \
            if (seg_end) {                                                                     \
                vl found = L->pseg[v] > zero;                                                  \
                vd fl = C->rnd2 * (one + n2);                                                  \
                fl = sel(fl > C->drift2, fl, C->drift2);                                       \
                vl closes = (L->pret[v] <= L->prprev[v]) | (L->pret[v] <= fl);                 \
                vl same = found & (L->pseg[v] == L->pprev[v])                                  \
                          & (L->pdmx[v] >= L->pdprev[v] * C->persist2) & closes;               \
                L->pcnt[v] = sel(same, L->pcnt[v] + one, (vd)((vl)one & found));               \
                L->pprev[v] = L->pseg[v];                                                      \
                L->pdprev[v] = L->pdmx[v];                                                     \
                L->prprev[v] = L->pret[v];                                                     \
                per = found & (L->pcnt[v] >= C->checks);                                       \
                L->pdec[v] = sel(ACT[v] & per, L->pseg[v], L->pdec[v]);                        \
            }                                                                                  \
        }                                                                                      \
        any |= (~ok | set | per) & ACT[v];                                                     \
        S1[v] = s1n; OK[v] = ok; SET[v] = set; PER[v] = per;                                   \
        for (int c = 0; c < D; c++) { X[c][v] = x[c]; G[c][v] = g[c]; }                        \
    }                                                                                          \
    if (__builtin_expect(ANY_SET(any) || lastc, 0)) {                                          \
        /* verdict flags of this step; decode_status applies the priority */                   \
        for (int v = 0; v < NV; v++) {                                                         \
            vl ns = (F_DIV & ~OK[v]) | (F_SET & SET[v]) | (F_PER & PER[v]);                    \
            if (lastc) ns |= F_BND & ((bc(tfs) - L->start[v]) == C->Tf);                       \
            ns &= ACT[v];                                                                      \
            vl dec = ns != izero;                                                              \
            L->st[v] |= ns;                                                                    \
            L->dstep[v] = sel(dec, bc(tfs) - L->start[v], L->dstep[v]);                        \
            ACT[v] &= ~dec;                                                                    \
        }                                                                                      \
    }                                                                                          \
    for (int v = 0; v < NV; v++)                                                               \
        for (int c = 0; c < D; c++) TH[c][v] = X[c][v] - (vd)((vl)(E[v] * G[c][v]) & ACT[v]);  \
}

/* steps k0 <= k < k1 of a segment starting at t0 with the probe variant (probe, first, last) */
#define STEPS(NAME, SUF, K0, K1, PROBE, FIRST, SEGEND)                                         \
    for (int64_t k = (K0); k < (K1); k++) {                                                    \
        const double tf = (double)(t0 + k), kf = (double)k;                                    \
        if (k == kT) NAME##_step##SUF(TH_, E_, E2_, S1_, ACT_, &L, prm, &C, tf, kf, PROBE, FIRST, SEGEND, 1); \
        else NAME##_step##SUF(TH_, E_, E2_, S1_, ACT_, &L, prm, &C, tf, kf, PROBE, FIRST, SEGEND, 0); \
    }

#define DEFINE_KERNEL(NAME, D, SUF)                                                            \
DEFINE_STEP(NAME, D, SUF)                                                                         \
void gdstab_run_##NAME##SUF(int64_t n, const double *theta0, const double *eta,          \
                                   const double *prm, int64_t T, const double *opts,            \
                                   double *out_theta, int8_t *out_status, int64_t *out_step,    \
                                   int64_t *out_period, double *out_loss, double *out_gnorm,     \
                                   const volatile int *stop)                                     \
{                                                                                              \
    const int64_t P = (int64_t)opts[3], K = (int64_t)opts[4];                                   \
    const int64_t kT = T % K; /* the step of a segment at which lanes can reach T */           \
    consts##SUF C;                                                                             \
    C.tol2 = bc(opts[0] * opts[0]); C.W = bc(opts[1]); C.maxn2 = bc(opts[2] * opts[2]);        \
    C.Tf = bc((double)T); C.checks = bc(opts[5]); C.persist2 = bc(opts[6]);                    \
    C.drift2 = bc(opts[7]); C.rnd2 = bc(opts[8]);                                              \
    /* lane state between segments (addressable: refilled lane by lane) */                     \
    lanes##SUF L;                                                                              \
    vl act[NV];                                                                                \
    vd th[MAXD][NV], e[NV], s1[NV];                                                            \
    int64_t idx[LANES];                                                                        \
    int64_t next = 0;                                                                          \
    for (int v = 0; v < NV; v++) {                                                             \
        L.st[v] = (vl){}; act[v] = (vl){};                                                     \
        L.dstep[v] = bc(0.0); L.start[v] = bc(0.0); s1[v] = bc(0.0); e[v] = bc(0.0);           \
        L.pseg[v] = bc(0.0); L.pprev[v] = bc(0.0); L.pcnt[v] = bc(0.0); L.pdec[v] = bc(0.0);   \
        L.pdmx[v] = bc(0.0); L.pdprev[v] = bc(0.0); L.pret[v] = bc(0.0); L.prprev[v] = bc(0.0); \
        for (int c = 0; c < MAXD; c++) { th[c][v] = bc(0.0); L.anc[c][v] = bc(0.0); }          \
    }                                                                                          \
    for (int i = 0; i < LANES; i++) idx[i] = -1;                                               \
    for (int64_t t0 = 0;; t0 += K) {                                                           \
        int busy = 0;                                                                          \
        if (*stop) return;                                                                     \
        for (int v = 0; v < NV; v++)                                                           \
            for (int j = 0; j < VW; j++) {                                                     \
                int64_t *id = &idx[VW * v + j];                                                \
                if (*id >= 0 && act[v][j] == 0) {                                              \
                    vd x[MAXD], g[MAXD], l;                                                    \
                    for (int c = 0; c < MAXD; c++) { x[c] = bc(0.0); g[c] = bc(0.0); }         \
                    for (int c = 0; c < D; c++) {                                              \
                        out_theta[*id * D + c] = th[c][v][j];                                  \
                        x[c][0] = th[c][v][j]; /* lane 0 */                                      \
                    }                                                                          \
                    GRAD_##NAME                                                                \
                    LOSS_##NAME                                                                \
                    vd gg = g[0] * g[0];                                                       \
                    for (int c = 1; c < D; c++) gg = gg + g[c] * g[c];                         \
                    out_loss[*id] = l[0];                                                      \
                    out_gnorm[*id] = __builtin_sqrt(gg[0]);                                    \
                    out_status[*id] = (int8_t)decode_status(L.st[v][j]);                       \
                    out_step[*id] = (int64_t)L.dstep[v][j];                                    \
                    if (L.pdec[v][j] != 0.0) out_period[*id] = (int64_t)L.pdec[v][j]; /* zeroed */ \
                    *id = -1;                                                                  \
                }                                                                              \
                if (*id < 0 && next < n) {                                                     \
                    *id = next;                                                                \
                    for (int c = 0; c < D; c++) th[c][v][j] = theta0[next * D + c];            \
                    e[v][j] = eta[next];                                                       \
                    L.st[v][j] = 0; act[v][j] = -1; L.dstep[v][j] = 0.0;                       \
                    L.start[v][j] = (double)t0; s1[v][j] = 0.0;                                \
                    L.pseg[v][j] = 0.0; L.pprev[v][j] = 0.0; L.pcnt[v][j] = 0.0; L.pdec[v][j] = 0.0; \
                    L.pdmx[v][j] = 0.0; L.pdprev[v][j] = 0.0; L.pret[v][j] = 0.0; L.prprev[v][j] = 0.0; \
                    next++;                                                                    \
                }                                                                              \
                busy |= (*id >= 0);                                                            \
            }                                                                                  \
        if (!busy) break;                                                                      \
        /* the segment runs on copies that the compiler can keep in registers */               \
        vl ACT_[NV]; vd TH_[MAXD][NV], E_[NV], E2_[NV], S1_[NV];                               \
        for (int v = 0; v < NV; v++) {                                                         \
            ACT_[v] = act[v]; E_[v] = e[v]; E2_[v] = e[v] * e[v]; S1_[v] = s1[v];              \
            for (int c = 0; c < D; c++) { TH_[c][v] = th[c][v]; L.anc[c][v] = th[c][v]; }      \
        }                                                                                      \
        STEPS(NAME, SUF, 0, 1, 0, 0, 0)                                                             \
        if (P == 1) { STEPS(NAME, SUF, 1, 2, 1, 1, 1) }                                             \
        else {                                                                                 \
            STEPS(NAME, SUF, 1, 2, 1, 1, 0)                                                         \
            STEPS(NAME, SUF, 2, P, 1, 0, 0)                                                         \
            STEPS(NAME, SUF, P, P + 1, 1, 0, 1)                                                     \
        }                                                                                      \
        STEPS(NAME, SUF, P + 1, K, 0, 0, 0)                                                         \
        for (int v = 0; v < NV; v++) {                                                         \
            act[v] = ACT_[v]; s1[v] = S1_[v];                                                  \
            for (int c = 0; c < D; c++) th[c][v] = TH_[c][v];                                  \
        }                                                                                      \
    }                                                                                          \
}

#define KERNEL_ARGS int64_t n, const double *theta0, const double *eta, const double *prm, int64_t T, \
    const double *opts, double *out_theta, int8_t *out_status, int64_t *out_step, int64_t *out_period,  \
    double *out_loss, double *out_gnorm, const volatile int *stop
#define KERNEL_PASS n, theta0, eta, prm, T, opts, out_theta, out_status, out_step, out_period, out_loss, \
    out_gnorm, stop
#define DEFINE_ALL(SUF)                                                                         \
    DEFINE_TYPES(SUF)                                                                           \
    DEFINE_KERNEL(hyperbola, 2, SUF) DEFINE_KERNEL(saddle_quartic, 2, SUF)                      \
    DEFINE_KERNEL(zhu, 2, SUF) DEFINE_KERNEL(rosenbrock, 2, SUF)                                \
    DEFINE_KERNEL(quartic, 1, SUF) DEFINE_KERNEL(quad_quartic, 1, SUF)

/*
 * Instruction-set variants.  Every kernel is compiled once per variant, each exported under its
 * own name (gdstab_run_<name>_<variant>, so that the tests can run every variant the CPU allows)
 * and behind one entry point, gdstab_run_<name>, that calls the best variant for the CPU (chosen
 * once).  On x86-64 with GCC: x86-64-v4 (AVX-512: 32 vector registers hold a step's live
 * vectors), x86-64-v3 (AVX2 + FMA) and the baseline; the "did any lane have an event" test is a
 * single vptestmq / vptest where AVX-512 / AVX exists.  Contraction stays off (-ffp-contract=off), so every variant
 * gives the same bits (tests/test_native.py).
 */
#define ANY_GENERIC(m) (((m)[0] | (m)[1] | (m)[2] | (m)[3]) != 0)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GDSTAB_X86_VARIANTS 1
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define vd vd8
#define vl vl8
#define VW 8
#define NV 2
#define ANY_SET(m) (__builtin_ia32_ptestmq512((m), (m), 0xff) != 0)
DEFINE_ALL(_v4)
#undef vd
#undef vl
#undef VW
#undef NV
#undef ANY_SET
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define vd vd4
#define vl vl4
#define VW 4
#define NV 4
#define ANY_SET(m) (!__builtin_ia32_ptestz256((m), (m)))
DEFINE_ALL(_v3)
#undef vd
#undef vl
#undef VW
#undef NV
#undef ANY_SET
#pragma GCC pop_options
#endif
#define vd vd4
#define vl vl4
#define VW 4
#define NV 4
#define ANY_SET(m) ANY_GENERIC(m)
DEFINE_ALL(_base)

/* the variant the entry points call: 4 (x86-64-v4), 3 (x86-64-v3) or 0 (baseline) */
int gdstab_variant(void)
{
#ifdef GDSTAB_X86_VARIANTS
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        /* the vector and bit-manipulation features of each level (libgcc checks that the OS saves
         * the vector state); spelled out, as GCC before 12 has no level names here (every CPU with
         * these also has the level's F16C, LZCNT and MOVBE) */
        int v3 = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                 && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                 && __builtin_cpu_supports("avx512cd");
        level = v4 ? 4 : v3 ? 3 : 0;
    }
    return level;
#else
    return 0;
#endif
}

#ifdef GDSTAB_X86_VARIANTS
#define DEFINE_ENTRY(NAME)                                                                     \
void gdstab_run_##NAME(KERNEL_ARGS)                                                            \
{                                                                                              \
    int level = gdstab_variant();                                                              \
    if (level == 4) gdstab_run_##NAME##_v4(KERNEL_PASS);                                       \
    else if (level == 3) gdstab_run_##NAME##_v3(KERNEL_PASS);                                  \
    else gdstab_run_##NAME##_base(KERNEL_PASS);                                                \
}
#else
#define DEFINE_ENTRY(NAME)                                                                     \
void gdstab_run_##NAME(KERNEL_ARGS)                                                            \
{                                                                                              \
    gdstab_run_##NAME##_base(KERNEL_PASS);                                                     \
}
#endif
DEFINE_ENTRY(hyperbola)
DEFINE_ENTRY(saddle_quartic)
DEFINE_ENTRY(zhu)
DEFINE_ENTRY(rosenbrock)
DEFINE_ENTRY(quartic)
DEFINE_ENTRY(quad_quartic)

/* An importable (empty) module, so that the shared library installs as gdstab._native._toykernels
 * and is found with importlib; the kernels themselves are called through ctypes, which releases
 * the GIL during the call and lets Python threads run blocks on all cores. */
static struct PyModuleDef toykernels_module = {PyModuleDef_HEAD_INIT, "_toykernels", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__toykernels(void) { return PyModule_Create(&toykernels_module); }
