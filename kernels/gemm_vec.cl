/* gemm_vec.cl: SGEMM for CPU devices, C = alpha * A * op(B) + beta * C, column-major.
 *
 * OpenCL C 1.1 (and Mesa's rules: no static or inline functions). CPU OpenCL drivers (PoCL,
 * llvmpipe) run a work-group's work-items as a loop on one thread; what makes them fast is
 * explicit vector code that the compiler maps onto the CPU's SIMD registers, not local
 * memory. Each work-item computes VW rows x NB columns of C:
 * - op(A) = A (NN, NT): NB vector accumulators; for every k it loads VW consecutive
 *   elements of A's column k and adds them times one element of op(B) broadcast, per
 *   column: an outer-product micro-kernel with NB + 1 vector registers in flight.
 * - A^T B (TN): columns of A and B are both contiguous in k, so each element of C is a dot
 *   product: blocks of 4 x 4 elements keep 16 vector accumulators over k, summed across
 *   the vector at the end.
 * - A^T B^T (TT): C^T = B A is an NN product, so the host swaps the operands (and M, N)
 *   and this build (STORE_T) writes the result transposed.
 * The host cuts long K into launches of KC (the config's tsk) accumulating into C, so that
 * the slice of the operands a launch reads stays in the CPU's caches across all of C.
 *
 * Edges (a work-item whose VW x NB block crosses M or N) take a guarded scalar path.
 * Parameters (-D): VW (4, 8 or 16), NB (1 to 16), TRANS_A, TRANS_B, STORE_T. */

#ifndef VW
#define VW 16
#endif
#ifndef NB
#define NB 8
#endif
#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#ifndef STORE_T
#define STORE_T 0
#endif
#define DOT (TRANS_A && !TRANS_B)
#if STORE_T
#define CEL(r, s) C[(s) + (r) * ldc] /* element (r, s) of C^T: the product computed */
#else
#define CEL(r, s) C[(r) + (s) * ldc]
#endif

#define GV_CAT(a, b) a##b
#define GV_XCAT(a, b) GV_CAT(a, b)
#define VT GV_XCAT(float, VW)
#define VLOAD GV_XCAT(vload, VW)
#define VSTORE GV_XCAT(vstore, VW)
/* The sum of a vector's elements, halving it down to four. */
#define HSUM4(x) ((x).s0 + (x).s1 + (x).s2 + (x).s3)
#define HSUM8(x) HSUM4((x).lo + (x).hi)
#define HSUM16(x) HSUM8((x).lo + (x).hi)
#define HSUM GV_XCAT(HSUM, VW)
#if TRANS_B && !TRANS_A
#define BEL(k, j) B[(j) + (k) * ldb]
#else
#define BEL(k, j) B[(k) + (j) * ldb]
#endif
#if TRANS_A && !STORE_T
#define AEL(i, k) A[(k) + (i) * lda]
#else
#define AEL(i, k) A[(i) + (k) * lda]
#endif

__kernel void gemm_vec(const int M, const int N, const int K,
		       const float alpha,
		       const __global float *A, const int lda,
		       const __global float *B, const int ldb,
		       const float beta,
		       __global float *C, const int ldc,
		       const int stride_a, const int stride_b, const int stride_c,
		       const ulong off_a, const ulong off_b, const ulong off_c)
{
	const int i = get_global_id(0) * VW;
	const int j = get_global_id(1) * NB;
	const int batch = get_group_id(2);

	A += off_a + batch * stride_a;
	B += off_b + batch * stride_b;
	C += off_c + batch * stride_c;
	if (i >= M || j >= N)
		return;
#if DOT
	if (i + VW <= M && j + NB <= N && NB % 4 == 0) {
		const int kv = K / VW * VW;

		for (int r0 = 0; r0 < VW; r0 += 4)
			for (int c0 = 0; c0 < NB; c0 += 4) {
				VT acc[4][4];

				for (int r = 0; r < 4; r++)
					for (int c = 0; c < 4; c++)
						acc[r][c] = (VT)(0.0f);
				for (int k = 0; k < kv; k += VW) {
					VT a[4], b[4];

					for (int r = 0; r < 4; r++)
						a[r] = VLOAD(0, A + k + (i + r0 + r) * lda);
					for (int c = 0; c < 4; c++)
						b[c] = VLOAD(0, B + k + (j + c0 + c) * ldb);
					for (int r = 0; r < 4; r++)
						for (int c = 0; c < 4; c++)
							acc[r][c] = mad(a[r], b[c], acc[r][c]);
				}
				for (int r = 0; r < 4; r++)
					for (int c = 0; c < 4; c++) {
						float t = 0.0f;
						__global float *cp = C + i + r0 + r + (j + c0 + c) * ldc;
						float v;

						t = HSUM(acc[r][c]);
						for (int k = kv; k < K; k++)
							t = mad(AEL(i + r0 + r, k), BEL(k, j + c0 + c), t);
						v = alpha * t;
						if (beta != 0.0f)
							v += beta * cp[0];
						cp[0] = v;
					}
			}
		return;
	}
#else
	if (i + VW <= M && j + NB <= N) {
		VT acc[NB];

		for (int jj = 0; jj < NB; jj++)
			acc[jj] = (VT)(0.0f);
		for (int k = 0; k < K; k++) {
			const VT a = VLOAD(0, A + i + k * lda);

			for (int jj = 0; jj < NB; jj++)
				acc[jj] = mad(a, (VT)(BEL(k, j + jj)), acc[jj]);
		}
		for (int jj = 0; jj < NB; jj++) {
#if STORE_T
			/* Row j + jj of C, strided: written element by element. */
			float part[VW];

			VSTORE(acc[jj], 0, part);
			for (int q = 0; q < VW; q++) {
				__global float *cp = &CEL(i + q, j + jj);
				float v = alpha * part[q];

				if (beta != 0.0f)
					v += beta * cp[0];
				cp[0] = v;
			}
#else
			__global float *c = C + i + (j + jj) * ldc;
			VT v = alpha * acc[jj];

			/* beta == 0 never reads C (it may hold NaN), as in the other kernels. */
			if (beta != 0.0f)
				v += beta * VLOAD(0, c);
			VSTORE(v, 0, c);
#endif
		}
		return;
	}
#endif
	{
		const int mi = M - i < VW ? M - i : VW;
		const int nj = N - j < NB ? N - j : NB;
		int ii0 = 0;

#if !DOT
		/* Whole groups of four rows still go four wide (a 127-row C would otherwise
		 * spend most of its time on its last 15 rows). */
		for (; ii0 + 4 <= mi; ii0 += 4)
			for (int jj = 0; jj < nj; jj++) {
				float4 acc4 = (float4)(0.0f);
				float part[4];

				for (int k = 0; k < K; k++)
					acc4 = mad(vload4(0, A + i + ii0 + k * lda), (float4)(BEL(k, j + jj)),
						   acc4);
				vstore4(acc4, 0, part);
				for (int q = 0; q < 4; q++) {
					__global float *c = &CEL(i + ii0 + q, j + jj);
					float v = alpha * part[q];

					if (beta != 0.0f)
						v += beta * c[0];
					c[0] = v;
				}
			}
#endif
		for (int jj = 0; jj < nj; jj++)
			for (int ii = ii0; ii < mi; ii++) {
				__global float *c = &CEL(i + ii, j + jj);
				float sum = 0.0f;
				float v;
				int k = 0;

#if DOT
				/* Both operands contiguous in k: four at a time. */
				float4 acc4 = (float4)(0.0f);

				for (; k + 4 <= K; k += 4)
					acc4 = mad(vload4(0, A + k + (i + ii) * lda),
						   vload4(0, B + k + (j + jj) * ldb), acc4);
				sum = HSUM4(acc4);
#endif
				for (; k < K; k++)
					sum = mad(AEL(i + ii, k), BEL(k, j + jj), sum);
				v = alpha * sum;
				if (beta != 0.0f)
					v += beta * c[0];
				c[0] = v;
			}
	}
}
