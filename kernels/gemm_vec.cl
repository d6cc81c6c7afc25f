/* gemm_vec.cl: SGEMM for CPU devices, C = alpha * A * op(B) + beta * C, column-major.
 *
 * OpenCL C 1.1 (and Mesa's rules: no static or inline functions). CPU OpenCL drivers (PoCL,
 * llvmpipe) run a work-group's work-items as a loop on one thread; what makes them fast is
 * explicit vector code that the compiler maps onto the CPU's SIMD registers, not local
 * memory. So each work-item here computes VW rows x NB columns of C as NB vector
 * accumulators: for every k it loads VW consecutive elements of A's column k (contiguous:
 * A is not transposed, which is why this family serves only op(A) = A) and adds them times
 * one element of op(B) broadcast, per column: an outer-product micro-kernel with NB + 1
 * vector registers in flight. The host cuts long K into launches of KC (the config's tsk)
 * accumulating into C, so that the part of A every work-group of a launch reads stays in
 * the CPU's caches across the columns of C.
 *
 * Edges (a work-item whose VW x NB block crosses M or N) take a guarded scalar path.
 * Parameters (-D): VW (4, 8 or 16), NB (1 to 16), TRANS_B. */

#ifndef VW
#define VW 16
#endif
#ifndef NB
#define NB 8
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif

#define GV_CAT(a, b) a##b
#define GV_XCAT(a, b) GV_CAT(a, b)
#define VT GV_XCAT(float, VW)
#define VLOAD GV_XCAT(vload, VW)
#define VSTORE GV_XCAT(vstore, VW)
#if TRANS_B
#define BEL(k, j) B[(j) + (k) * ldb]
#else
#define BEL(k, j) B[(k) + (j) * ldb]
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
			__global float *c = C + i + (j + jj) * ldc;
			VT v = alpha * acc[jj];

			/* beta == 0 never reads C (it may hold NaN), as in the other kernels. */
			if (beta != 0.0f)
				v += beta * VLOAD(0, c);
			VSTORE(v, 0, c);
		}
	} else {
		const int mi = M - i < VW ? M - i : VW;
		const int nj = N - j < NB ? N - j : NB;

		for (int jj = 0; jj < nj; jj++)
			for (int ii = 0; ii < mi; ii++) {
				__global float *c = C + i + ii + (j + jj) * ldc;
				float sum = 0.0f;
				float v;

				for (int k = 0; k < K; k++)
					sum = mad(A[i + ii + k * lda], BEL(k, j + jj), sum);
				v = alpha * sum;
				if (beta != 0.0f)
					v += beta * c[0];
				c[0] = v;
			}
	}
}
