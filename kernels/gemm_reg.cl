/* gemm_reg.cl: register-blocked SGEMM for large sizes, C = alpha * op(A) * op(B) + beta * C,
 * all matrices column-major (the host maps row-major requests onto this).
 *
 * OpenCL C 1.1 and Mesa Clover's rules: no static or inline
 * functions, no volatile privates; the host checks work-group and local-memory limits.
 *
 * Shape of the work:
 * - A work-group computes a TSM x TSN tile of C with RTSM x RTSN work-items; each computes
 *   WPTM x WPTN elements. With VWM = 4 a work-item's rows come in groups of 4 adjacent rows
 *   (rows (g * RTSM + lx) * 4 + 0..3), so that it reads its A values from local memory as
 *   float4 and neighbouring work-items read neighbouring float4s; likewise columns and B
 *   with VWN. With VWM = 1 its rows are g * RTSM + lx.
 * - K is walked TSK at a time. Each step's tiles of op(A) and op(B) are staged in local
 *   memory, k-major (As[k][m], Bs[k][n]) so the inner loop reads both along m and n. The
 *   next step's tiles are loaded from global memory into registers while the current one
 *   is computed (register prefetch), hiding global latency with one local buffer.
 * - Global loads are float4 wide along whichever index is contiguous in memory (m for A,
 *   k for A^T, k for B, n for B^T). A tile that lies wholly inside the matrices, in a call
 *   whose leading dimensions are multiples of 4 (vec_ok, decided by the host), takes the
 *   vector path; edge tiles take a guarded scalar path with the same element mapping, so
 *   any M, N, K works with no padding pass and the interior runs at full speed.
 * - Strided batches: work-groups along the third dimension each take the matrices
 *   stride_a, stride_b and stride_c elements further on (vec_ok covers the strides), all
 *   of them off_a, off_b and off_c elements into the buffers. Split-K runs as such a
 *   batch of K slices into a workspace that gemm_splitk_reduce then sums into C.
 *
 * Parameters (-D): TRANS_A, TRANS_B, TSM, TSN, TSK, WPTM, WPTN, VWM, VWN (1 or 4), PADA,
 * PADB (floats of padding per local row, multiples of 4), MADD (0: a * b + c, 1: mad,
 * 2: fma). Offsets are int: the host rejects matrices of more than INT_MAX elements. */

#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#ifndef TSM
#define TSM 128
#endif
#ifndef TSN
#define TSN 128
#endif
#ifndef TSK
#define TSK 16
#endif
#ifndef WPTM
#define WPTM 8
#endif
#ifndef WPTN
#define WPTN 8
#endif
#ifndef VWM
#define VWM 4
#endif
#ifndef VWN
#define VWN 4
#endif
#ifndef PADA
#define PADA 0
#endif
#ifndef PADB
#define PADB 0
#endif
#ifndef MADD
#define MADD 0
#endif

#if MADD == 2
#define MAC(acc, a, b) acc = fma(a, b, acc)
#elif MADD == 1
#define MAC(acc, a, b) acc = mad(a, b, acc)
#else
#define MAC(acc, a, b) acc += (a) * (b)
#endif

#define RTSM (TSM / WPTM)
#define RTSN (TSN / WPTN)
#define NTHREADS (RTSM * RTSN)
#define LDA_S (TSM + PADA) /* floats per k-row of As */
#define LDB_S (TSN + PADB)
#define LA4 ((TSK * TSM) / (4 * NTHREADS)) /* float4 loads of A per work-item per step */
#define LB4 ((TSK * TSN) / (4 * NTHREADS))

/* Row of the wm-th element a work-item computes, and column of the wn-th. */
#if VWM == 4
#define ROW_OF(wm) ((((wm) / 4) * RTSM + lx) * 4 + ((wm) % 4))
#else
#define ROW_OF(wm) ((wm) * RTSM + lx)
#endif
#if VWN == 4
#define COL_OF(wn) ((((wn) / 4) * RTSN + ly) * 4 + ((wn) % 4))
#else
#define COL_OF(wn) ((wn) * RTSN + ly)
#endif

/* Load step k0's share of op(A) into ra[] (a float4 per load; fast: whole tile, aligned). */
#if TRANS_A
/* A stored k x m: contiguous along k. Element group: 4 consecutive k of one m. */
#define LOAD_A(k0, fast)                                                                    \
	for (int l = 0; l < LA4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int k4 = e % (TSK / 4), mm = e / (TSK / 4);                           \
		const int gm = row0 + mm, gk = (k0) + k4 * 4;                               \
		if (fast) {                                                                 \
			ra[l] = *(const __global float4 *)(A + gk + gm * lda);              \
		} else {                                                                    \
			const bool in = gm < M;                                             \
			ra[l].x = in && gk + 0 < K ? A[gk + 0 + gm * lda] : 0.0f;           \
			ra[l].y = in && gk + 1 < K ? A[gk + 1 + gm * lda] : 0.0f;           \
			ra[l].z = in && gk + 2 < K ? A[gk + 2 + gm * lda] : 0.0f;           \
			ra[l].w = in && gk + 3 < K ? A[gk + 3 + gm * lda] : 0.0f;           \
		}                                                                           \
	}
#define STORE_A()                                                                           \
	for (int l = 0; l < LA4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int k4 = e % (TSK / 4), mm = e / (TSK / 4);                           \
		As[(k4 * 4 + 0) * LDA_S + mm] = ra[l].x;                                    \
		As[(k4 * 4 + 1) * LDA_S + mm] = ra[l].y;                                    \
		As[(k4 * 4 + 2) * LDA_S + mm] = ra[l].z;                                    \
		As[(k4 * 4 + 3) * LDA_S + mm] = ra[l].w;                                    \
	}
#else
/* A stored m x k: contiguous along m. Element group: 4 consecutive m of one k. */
#define LOAD_A(k0, fast)                                                                    \
	for (int l = 0; l < LA4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int m4 = e % (TSM / 4), kk = e / (TSM / 4);                           \
		const int gm = row0 + m4 * 4, gk = (k0) + kk;                               \
		if (fast) {                                                                 \
			ra[l] = *(const __global float4 *)(A + gm + gk * lda);              \
		} else {                                                                    \
			const bool in = gk < K;                                             \
			ra[l].x = in && gm + 0 < M ? A[gm + 0 + gk * lda] : 0.0f;           \
			ra[l].y = in && gm + 1 < M ? A[gm + 1 + gk * lda] : 0.0f;           \
			ra[l].z = in && gm + 2 < M ? A[gm + 2 + gk * lda] : 0.0f;           \
			ra[l].w = in && gm + 3 < M ? A[gm + 3 + gk * lda] : 0.0f;           \
		}                                                                           \
	}
#define STORE_A()                                                                           \
	for (int l = 0; l < LA4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int m4 = e % (TSM / 4), kk = e / (TSM / 4);                           \
		*(__local float4 *)(As + kk * LDA_S + m4 * 4) = ra[l];                      \
	}
#endif

#if TRANS_B
/* B stored n x k: contiguous along n. Element group: 4 consecutive n of one k. */
#define LOAD_B(k0, fast)                                                                    \
	for (int l = 0; l < LB4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int n4 = e % (TSN / 4), kk = e / (TSN / 4);                           \
		const int gn = col0 + n4 * 4, gk = (k0) + kk;                               \
		if (fast) {                                                                 \
			rb[l] = *(const __global float4 *)(B + gn + gk * ldb);              \
		} else {                                                                    \
			const bool in = gk < K;                                             \
			rb[l].x = in && gn + 0 < N ? B[gn + 0 + gk * ldb] : 0.0f;           \
			rb[l].y = in && gn + 1 < N ? B[gn + 1 + gk * ldb] : 0.0f;           \
			rb[l].z = in && gn + 2 < N ? B[gn + 2 + gk * ldb] : 0.0f;           \
			rb[l].w = in && gn + 3 < N ? B[gn + 3 + gk * ldb] : 0.0f;           \
		}                                                                           \
	}
#define STORE_B()                                                                           \
	for (int l = 0; l < LB4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int n4 = e % (TSN / 4), kk = e / (TSN / 4);                           \
		*(__local float4 *)(Bs + kk * LDB_S + n4 * 4) = rb[l];                      \
	}
#else
/* B stored k x n: contiguous along k. Element group: 4 consecutive k of one n. */
#define LOAD_B(k0, fast)                                                                    \
	for (int l = 0; l < LB4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int k4 = e % (TSK / 4), nn = e / (TSK / 4);                           \
		const int gn = col0 + nn, gk = (k0) + k4 * 4;                               \
		if (fast) {                                                                 \
			rb[l] = *(const __global float4 *)(B + gk + gn * ldb);              \
		} else {                                                                    \
			const bool in = gn < N;                                             \
			rb[l].x = in && gk + 0 < K ? B[gk + 0 + gn * ldb] : 0.0f;           \
			rb[l].y = in && gk + 1 < K ? B[gk + 1 + gn * ldb] : 0.0f;           \
			rb[l].z = in && gk + 2 < K ? B[gk + 2 + gn * ldb] : 0.0f;           \
			rb[l].w = in && gk + 3 < K ? B[gk + 3 + gn * ldb] : 0.0f;           \
		}                                                                           \
	}
#define STORE_B()                                                                           \
	for (int l = 0; l < LB4; l++) {                                                     \
		const int e = tid + l * NTHREADS;                                           \
		const int k4 = e % (TSK / 4), nn = e / (TSK / 4);                           \
		Bs[(k4 * 4 + 0) * LDB_S + nn] = rb[l].x;                                    \
		Bs[(k4 * 4 + 1) * LDB_S + nn] = rb[l].y;                                    \
		Bs[(k4 * 4 + 2) * LDB_S + nn] = rb[l].z;                                    \
		Bs[(k4 * 4 + 3) * LDB_S + nn] = rb[l].w;                                    \
	}
#endif

__kernel __attribute__((reqd_work_group_size(RTSM, RTSN, 1)))
void gemm_reg(const int M, const int N, const int K,
	      const float alpha,
	      const __global float *A, const int lda,
	      const __global float *B, const int ldb,
	      const float beta,
	      __global float *C, const int ldc,
	      const int vec_ok,
	      const int stride_a, const int stride_b, const int stride_c,
	      const ulong off_a, const ulong off_b, const ulong off_c)
{
	/* Declared as float4 so that the float4 accesses below are 16-byte aligned: a plain
	 * float array in local memory is only 4-byte aligned on some devices. */
	__local float4 As4[TSK * LDA_S / 4];
	__local float4 Bs4[TSK * LDB_S / 4];
	__local float *As = (__local float *)As4;
	__local float *Bs = (__local float *)Bs4;
	float4 ra[LA4], rb[LB4];
	float acc[WPTM][WPTN];

	const int lx = get_local_id(0);
	const int ly = get_local_id(1);
	const int tid = ly * RTSM + lx;
	const int row0 = get_group_id(0) * TSM;
	const int col0 = get_group_id(1) * TSN;
	const int batch = get_group_id(2);
	/* Whether this work-group's rows of A and columns of B lie wholly inside. */
	const bool full_mn = vec_ok && row0 + TSM <= M && col0 + TSN <= N;

	/* Batched calls: one matrix triple per index of the third dimension. The offsets
	 * select a part of each matrix (split-K's K slices, a chunk's columns of C). */
	A += off_a + batch * stride_a;
	B += off_b + batch * stride_b;
	C += off_c + batch * stride_c;
	for (int wm = 0; wm < WPTM; wm++)
		for (int wn = 0; wn < WPTN; wn++)
			acc[wm][wn] = 0.0f;

	{
		const bool fast = full_mn && TSK <= K;
		LOAD_A(0, fast)
		LOAD_B(0, fast)
	}
	for (int k0 = 0; k0 < K; k0 += TSK) {
		STORE_A()
		STORE_B()
		barrier(CLK_LOCAL_MEM_FENCE);
		/* Start the next step's global loads; they complete while we compute. */
		if (k0 + TSK < K) {
			const bool fast = full_mn && k0 + 2 * TSK <= K;
			LOAD_A(k0 + TSK, fast)
			LOAD_B(k0 + TSK, fast)
		}
#pragma unroll
		for (int p = 0; p < TSK; p++) {
			float a[WPTM], b[WPTN];
#if VWM == 4
			for (int g = 0; g < WPTM / 4; g++) {
				const float4 v = *(__local const float4 *)(As + p * LDA_S +
									   (g * RTSM + lx) * 4);
				a[g * 4 + 0] = v.x;
				a[g * 4 + 1] = v.y;
				a[g * 4 + 2] = v.z;
				a[g * 4 + 3] = v.w;
			}
#else
			for (int wm = 0; wm < WPTM; wm++)
				a[wm] = As[p * LDA_S + wm * RTSM + lx];
#endif
#if VWN == 4
			for (int g = 0; g < WPTN / 4; g++) {
				const float4 v = *(__local const float4 *)(Bs + p * LDB_S +
									   (g * RTSN + ly) * 4);
				b[g * 4 + 0] = v.x;
				b[g * 4 + 1] = v.y;
				b[g * 4 + 2] = v.z;
				b[g * 4 + 3] = v.w;
			}
#else
			for (int wn = 0; wn < WPTN; wn++)
				b[wn] = Bs[p * LDB_S + wn * RTSN + ly];
#endif
			for (int wm = 0; wm < WPTM; wm++)
				for (int wn = 0; wn < WPTN; wn++)
					MAC(acc[wm][wn], a[wm], b[wn]);
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}

#if VWM == 4
	/* Whole tile, aligned columns: each column's 4-row groups go out as float4. */
	if (full_mn) {
		for (int wn = 0; wn < WPTN; wn++) {
			const int gn = col0 + COL_OF(wn);
			for (int g = 0; g < WPTM / 4; g++) {
				__global float4 *c4 = (__global float4 *)(C + row0 + (g * RTSM + lx) * 4 +
									  gn * ldc);
				float4 r = (float4)(acc[g * 4 + 0][wn], acc[g * 4 + 1][wn],
						    acc[g * 4 + 2][wn], acc[g * 4 + 3][wn]) * alpha;
				if (beta != 0.0f)
					r += beta * *c4;
				*c4 = r;
			}
		}
		return;
	}
#endif
	for (int wn = 0; wn < WPTN; wn++) {
		const int gn = col0 + COL_OF(wn);
		if (gn >= N)
			continue;
		for (int wm = 0; wm < WPTM; wm++) {
			const int gm = row0 + ROW_OF(wm);
			if (gm >= M)
				continue;
			/* beta == 0 must not read C: its old contents may be NaN. */
			if (beta == 0.0f)
				C[gm + gn * ldc] = alpha * acc[wm][wn];
			else
				C[gm + gn * ldc] = alpha * acc[wm][wn] + beta * C[gm + gn * ldc];
		}
	}
}

/* Split-K's second step: C = alpha * (the sum of S partial products, each M x N with
 * leading dimension M, one after another in W) + beta * C. With beta == 0 C is not read,
 * as in the GEMM kernels. One work-item per element of C; consecutive work-items take
 * consecutive rows, so every read of W and C is coalesced. */
__kernel void gemm_splitk_reduce(const int M, const int N, const int S, const float alpha,
				 const __global float *W, const float beta,
				 __global float *C, const int ldc, const ulong off_c)
{
	const int i = get_global_id(0);
	const int j = get_global_id(1);
	const int mn = M * N; /* the host keeps S * M * N within INT_MAX */
	float sum = 0.0f;
	float v;

	if (i >= M || j >= N)
		return;
	W += i + j * M;
	for (int z = 0; z < S; z++)
		sum += W[z * mn];
	C += off_c + i + j * ldc;
	v = alpha * sum;
	if (beta != 0.0f)
		v += beta * C[0];
	C[0] = v;
}
