/* gemm.cl: SGEMM, C = alpha * op(A) * op(B) + beta * C, all matrices column-major.
 *
 * OpenCL C 1.1 and Mesa Clover's rules: no static or inline
 * functions, no volatile privates, work-groups of at most 256, local memory well under
 * 32 KiB. The host turns row-major requests into column-major ones (C^T = B^T A^T).
 *
 * A work-group computes a TSM x TSN tile of C; each of its RTSM x RTSN work-items computes
 * WPTM x WPTN elements of that tile, strided by RTSM and RTSN so that neighbouring
 * work-items touch neighbouring addresses (coalesced global stores, conflict-free local
 * reads). The K dimension is walked in steps of TSK through local-memory tiles of op(A)
 * and op(B). Loads outside the matrices read as zero and stores outside C are skipped,
 * so any M, N, K >= 1 works without padding passes.
 *
 * Compile-time parameters (-D): TRANS_A, TRANS_B (0 or 1), TSM, TSN, TSK, WPTM, WPTN.
 * Offsets are int: the host rejects any matrix of more than INT_MAX elements. */

#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#ifndef TSM
#define TSM 64
#endif
#ifndef TSN
#define TSN 64
#endif
#ifndef TSK
#define TSK 16
#endif
#ifndef WPTM
#define WPTM 4
#endif
#ifndef WPTN
#define WPTN 4
#endif

#define RTSM (TSM / WPTM)
#define RTSN (TSN / WPTN)
#define THREADS (RTSM * RTSN)
#define LOADS_A ((TSM * TSK) / THREADS)
#define LOADS_B ((TSK * TSN) / THREADS)

__kernel __attribute__((reqd_work_group_size(RTSM, RTSN, 1)))
void gemm_tiled(const int M, const int N, const int K,
		const float alpha,
		const __global float *A, const int lda,
		const __global float *B, const int ldb,
		const float beta,
		__global float *C, const int ldc,
		const int stride_a, const int stride_b, const int stride_c,
		const ulong off_a, const ulong off_b, const ulong off_c)
{
	__local float Asub[TSK][TSM];
	__local float Bsub[TSK][TSN];
	float acc[WPTM][WPTN];

	const int lx = get_local_id(0);
	const int ly = get_local_id(1);
	const int tid = ly * RTSM + lx;
	const int row0 = get_group_id(0) * TSM;
	const int col0 = get_group_id(1) * TSN;
	/* Batched calls: one matrix triple per index of the third dimension. */
	const int batch = get_group_id(2);

	A += off_a + batch * stride_a; /* the offsets select part of each matrix (chunks) */
	B += off_b + batch * stride_b;
	C += off_c + batch * stride_c;

	for (int wm = 0; wm < WPTM; wm++)
		for (int wn = 0; wn < WPTN; wn++)
			acc[wm][wn] = 0.0f;

	for (int k0 = 0; k0 < K; k0 += TSK) {
		/* Stage op(A)[row0 .. row0+TSM, k0 .. k0+TSK) into Asub[p][i]; the index that
		 * is contiguous in memory varies fastest across work-items. */
		for (int l = 0; l < LOADS_A; l++) {
			const int e = tid + l * THREADS;
#if TRANS_A
			const int p = e % TSK, i = e / TSK; /* A stored k x m: A[p + i * lda] */
			const int gi = row0 + i, gp = k0 + p;
			Asub[p][i] = (gi < M && gp < K) ? A[gp + gi * lda] : 0.0f;
#else
			const int i = e % TSM, p = e / TSM; /* A stored m x k: A[i + p * lda] */
			const int gi = row0 + i, gp = k0 + p;
			Asub[p][i] = (gi < M && gp < K) ? A[gi + gp * lda] : 0.0f;
#endif
		}
		for (int l = 0; l < LOADS_B; l++) {
			const int e = tid + l * THREADS;
#if TRANS_B
			const int j = e % TSN, p = e / TSN; /* B stored n x k: B[j + p * ldb] */
			const int gj = col0 + j, gp = k0 + p;
			Bsub[p][j] = (gj < N && gp < K) ? B[gj + gp * ldb] : 0.0f;
#else
			const int p = e % TSK, j = e / TSK; /* B stored k x n: B[p + j * ldb] */
			const int gj = col0 + j, gp = k0 + p;
			Bsub[p][j] = (gj < N && gp < K) ? B[gp + gj * ldb] : 0.0f;
#endif
		}
		barrier(CLK_LOCAL_MEM_FENCE);

		for (int p = 0; p < TSK; p++) {
			float a[WPTM], b[WPTN];

			for (int wm = 0; wm < WPTM; wm++)
				a[wm] = Asub[p][lx + wm * RTSM];
			for (int wn = 0; wn < WPTN; wn++)
				b[wn] = Bsub[p][ly + wn * RTSN];
			for (int wm = 0; wm < WPTM; wm++)
				for (int wn = 0; wn < WPTN; wn++)
					acc[wm][wn] += a[wm] * b[wn];
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}

	for (int wn = 0; wn < WPTN; wn++) {
		const int gj = col0 + ly + wn * RTSN;
		if (gj >= N)
			continue;
		for (int wm = 0; wm < WPTM; wm++) {
			const int gi = row0 + lx + wm * RTSM;
			if (gi >= M)
				continue;
			/* beta == 0 must not read C: its old contents may be NaN or garbage. */
			if (beta == 0.0f)
				C[gi + gj * ldc] = alpha * acc[wm][wn];
			else
				C[gi + gj * ldc] = alpha * acc[wm][wn] + beta * C[gi + gj * ldc];
		}
	}
}
