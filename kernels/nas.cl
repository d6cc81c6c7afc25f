/* nas.cl: the step kinds of a NAS network (daemon/nasops.c): convolutions (direct,
 * im2col for the GEMM engine, streamed through registers, depthwise in tiles or in
 * register rows), pooling, copies, zeros, global average pooling, linear.
 *
 * OpenCL C 1.1 and Mesa's rules: no static or inline functions,
 * no fma() (llvmpipe miscompiles it at long sums: a * b + c instead). Tensors are NCHW
 * float32 starting at a ulong offset in their buffer; indices from there are ints (the
 * host rejects tensors and weight arrays of more than INT_MAX elements).
 *
 * Launch shape, shared by the per-element kernels: dimension 0 walks the pixels of one
 * channel plane (ho * wo, padded up to the work-group size, which the host picks from the
 * kernel's device queries), dimension 1 the channels, dimension 2 the images. Neighbouring
 * work-items then read and write neighbouring addresses of NCHW (coalesced).
 *
 * Every kernel writes channels [c_off, c_off + C) of a tensor of ctot channels:
 * y = scale * v, or y += scale * v when accumulate is set (plus an added tensor: PUT_ADD). */

#define RELU(v) ((v) > 0.0f ? (v) : 0.0f)
#define PUT(y, i, v)                                                                        \
	do {                                                                                \
		float r_ = scale * (v);                                                     \
		if (accumulate)                                                             \
			r_ += (y)[i];                                                       \
		(y)[i] = r_;                                                                \
	} while (0)

/* The kernels that write a node's slice may add a second tensor as they write (an identity
 * edge of the node, so that it costs no launch): add_scale * addp[image n, channel a_c_off
 * + ch of a_ctot, pixel p of hw] when has_add. These are their arguments. */
#define ADD_ARGS                                                                            \
	const __global float *addp, const ulong a_off, const int a_ctot, const int a_c_off, \
		const int has_add, const float add_scale
#define PUT_ADD(y, i, v, n, ch, hw, p)                                                      \
	do {                                                                                \
		float r_ = scale * (v);                                                     \
		if (has_add)                                                                \
			r_ += add_scale * addp[a_off + ((n) * a_ctot + a_c_off + (ch)) * (hw) + (p)]; \
		if (accumulate)                                                             \
			r_ += (y)[i];                                                       \
		(y)[i] = r_;                                                                \
	} while (0)

/* Direct convolution, any groups (depthwise: groups == cin == cout), stride, padding and
 * dilation. The input is x[:, :, shift:, shift:] of a stored h x w map; relu_in applies
 * ReLU as it is read. One work-item per output element. */
__kernel void nas_conv(const __global float *x, const ulong x_off, const int cin, const int h,
		       const int w, __global float *y, const ulong y_off, const int ctot,
		       const int c_off, const int cout, const int ho, const int wo,
		       const __global float *wt, const ulong w_off, const __global float *bias,
		       const ulong b_off, const int has_bias, const int kh, const int kw,
		       const int sh, const int sw, const int ph, const int pw, const int dh,
		       const int dw, const int groups, const int relu_in, const int shift,
		       const int accumulate, const float scale, ADD_ARGS)
{
	const int p = get_global_id(0), co = get_global_id(1), n = get_global_id(2);
	const int hwo = ho * wo;

	if (p >= hwo)
		return;
	{
		const int oh = p / wo, ow = p - oh * wo;
		const int cpg = cin / groups, g = co / (cout / groups);
		const int hl = h - shift, wl = w - shift; /* the shifted map's extent */
		const int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
		const __global float *xb = x + x_off + (n * cin + g * cpg) * h * w + shift * w + shift;
		const __global float *wb = wt + w_off + co * cpg * kh * kw;
		float acc = 0.0f;

		for (int ci = 0; ci < cpg; ci++) {
			const __global float *xc = xb + ci * h * w;
			const __global float *wc = wb + ci * kh * kw;
			for (int ki = 0; ki < kh; ki++) {
				const int ih = ih0 + ki * dh;
				if (ih < 0 || ih >= hl)
					continue;
				for (int kj = 0; kj < kw; kj++) {
					const int iw = iw0 + kj * dw;
					float v;
					if (iw < 0 || iw >= wl)
						continue;
					v = xc[ih * w + iw];
					if (relu_in)
						v = RELU(v);
					acc = v * wc[ki * kw + kj] + acc;
				}
			}
		}
		if (has_bias)
			acc += bias[b_off + co];
		PUT_ADD(y, y_off + (n * ctot + c_off + co) * hwo + p, acc, n, co, hwo, p);
	}
}

/* Depthwise convolution (groups == cin == cout), one tile of the output plane per
 * work-group: the tile's input patch ((lh - 1) * sh + (kh - 1) * dh + 1 rows by the like
 * in columns, padding as zeros, ReLU applied) is read into patch once, and each work-item
 * makes one output from it. nas_conv reads every input kh * kw times from global memory;
 * here each is read once per tile. Launch: dimension 0 the tile columns times the local
 * width, dimension 1 the tile rows times the local height, dimension 2 the n * c planes;
 * patch holds the patch's floats (the host sizes it). Other arguments as nas_conv's. */
__kernel void nas_dwconv(const __global float *x, const ulong x_off, const int c, const int h,
			 const int w, __global float *y, const ulong y_off, const int ctot,
			 const int c_off, const int ho, const int wo, const __global float *wt,
			 const ulong w_off, const __global float *bias, const ulong b_off,
			 const int has_bias, const int kh, const int kw, const int sh,
			 const int sw, const int ph, const int pw, const int dh, const int dw,
			 const int relu_in, const int shift, const int accumulate,
			 const float scale, ADD_ARGS, __local float *patch)
{
	const int lx = get_local_id(0), ly = get_local_id(1);
	const int lw = get_local_size(0), lh = get_local_size(1);
	const int plane = get_global_id(2), n = plane / c, ch = plane - n * c;
	const int pcols = (lw - 1) * sw + (kw - 1) * dw + 1;
	const int prows = (lh - 1) * sh + (kh - 1) * dh + 1;
	const int ih0 = get_group_id(1) * lh * sh - ph, iw0 = get_group_id(0) * lw * sw - pw;
	const int hl = h - shift, wl = w - shift; /* the shifted map's extent */
	const __global float *xp = x + x_off + (n * c + ch) * h * w + shift * w + shift;
	const int oh = get_global_id(1), ow = get_global_id(0);

	for (int i = ly * lw + lx; i < prows * pcols; i += lw * lh) {
		const int r = i / pcols, q = i - r * pcols;
		const int ih = ih0 + r, iw = iw0 + q;
		float v = 0.0f;

		if (ih >= 0 && ih < hl && iw >= 0 && iw < wl) {
			v = xp[ih * w + iw];
			if (relu_in)
				v = RELU(v);
		}
		patch[i] = v;
	}
	barrier(CLK_LOCAL_MEM_FENCE);
	if (oh < ho && ow < wo) {
		const __global float *wc = wt + w_off + ch * kh * kw;
		const __local float *pp = patch + ly * sh * pcols + lx * sw;
		float acc = 0.0f;

		for (int ki = 0; ki < kh; ki++)
			for (int kj = 0; kj < kw; kj++)
				acc = pp[ki * dh * pcols + kj * dw] * wc[ki * kw + kj] + acc;
		if (has_bias)
			acc += bias[b_off + ch];
		PUT_ADD(y, y_off + (n * ctot + c_off + ch) * ho * wo + oh * wo + ow, acc, n, ch,
			ho * wo, oh * wo + ow);
	}
}

/* The columns of a convolution for the GEMM engine: col[b][r][p] with r = (ci * kh + ki) *
 * kw + kj the row of the weights' [cout][cin * kh * kw] layout and p the output pixel, for
 * images n0 + b. Padding reads as zero; relu_in and shift as in nas_conv. */
__kernel void nas_im2col(const __global float *x, const ulong x_off, const int cin, const int h,
			 const int w, __global float *col, const int ho, const int wo,
			 const int kh, const int kw, const int sh, const int sw, const int ph,
			 const int pw, const int dh, const int dw, const int relu_in,
			 const int shift, const int n0)
{
	const int p = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
	const int hwo = ho * wo, kk = kh * kw;

	if (p >= hwo)
		return;
	{
		const int ci = r / kk, ki = (r - ci * kk) / kw, kj = r - ci * kk - ki * kw;
		const int oh = p / wo, ow = p - oh * wo;
		const int ih = oh * sh - ph + ki * dh, iw = ow * sw - pw + kj * dw;
		float v = 0.0f;

		if (ih >= 0 && ih < h - shift && iw >= 0 && iw < w - shift) {
			v = x[x_off + ((n0 + b) * cin + ci) * h * w + (ih + shift) * w + iw + shift];
			if (relu_in)
				v = RELU(v);
		}
		col[(b * cin * kk + r) * hwo + p] = v;
	}
}

/* y = scale * bias[c] (+ the added tensor) (+ y): the first half of a GEMM convolution's
 * epilogue; the GEMM then adds scale * W x with beta = 1. */
__kernel void nas_bias(__global float *y, const ulong y_off, const int ctot, const int c_off,
		       const int hw, const __global float *bias, const ulong b_off,
		       const int has_bias, const int accumulate, const float scale, ADD_ARGS)
{
	const int p = get_global_id(0), c = get_global_id(1), n = get_global_id(2);

	if (p >= hw)
		return;
	PUT_ADD(y, y_off + (n * ctot + c_off + c) * hw + p, has_bias ? bias[b_off + c] : 0.0f,
		n, c, hw, p);
}

/* Max or average pooling; the average counts only the window's elements inside the map
 * (count_include_pad=False), the maximum ignores the padding. */
__kernel void nas_pool(const __global float *x, const ulong x_off, const int c, const int h,
		       const int w, __global float *y, const ulong y_off, const int ctot,
		       const int c_off, const int ho, const int wo, const int kh, const int kw,
		       const int sh, const int sw, const int ph, const int pw, const int is_avg,
		       const int accumulate, const float scale, ADD_ARGS)
{
	const int p = get_global_id(0), ch = get_global_id(1), n = get_global_id(2);
	const int hwo = ho * wo;

	if (p >= hwo)
		return;
	{
		const int oh = p / wo, ow = p - oh * wo;
		const int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
		const int ih1 = min(ih0 + kh, h), iw1 = min(iw0 + kw, w);
		const __global float *xc = x + x_off + (n * c + ch) * h * w;
		float acc = is_avg ? 0.0f : -INFINITY;
		int count = 0;

		for (int ih = max(ih0, 0); ih < ih1; ih++)
			for (int iw = max(iw0, 0); iw < iw1; iw++) {
				const float v = xc[ih * w + iw];
				acc = is_avg ? acc + v : fmax(acc, v);
				count++;
			}
		/* A window wholly in the padding (pad >= k: the host refuses it) stays 0. */
		if (count == 0)
			acc = 0.0f;
		else if (is_avg)
			acc /= (float)count;
		PUT_ADD(y, y_off + (n * ctot + c_off + ch) * hwo + p, acc, n, ch, hwo, p);
	}
}

/* Identity with optional ReLU, into a slice. */
__kernel void nas_copy(const __global float *x, const ulong x_off, const int c, const int hw,
		       __global float *y, const ulong y_off, const int ctot, const int c_off,
		       const int relu_in, const int accumulate, const float scale, ADD_ARGS)
{
	const int p = get_global_id(0), ch = get_global_id(1), n = get_global_id(2);

	if (p >= hw)
		return;
	{
		float v = x[x_off + (n * c + ch) * hw + p];
		if (relu_in)
			v = RELU(v);
		PUT_ADD(y, y_off + (n * ctot + c_off + ch) * hw + p, v, n, ch, hw, p);
	}
}

/* Zeros into a slice (clEnqueueFillBuffer is OpenCL 1.2, and a slice is strided). */
__kernel void nas_zero(__global float *y, const ulong y_off, const int ctot, const int c_off,
		       const int hw)
{
	const int p = get_global_id(0), ch = get_global_id(1), n = get_global_id(2);

	if (p < hw)
		y[y_off + (n * ctot + c_off + ch) * hw + p] = 0.0f;
}

/* Global average pooling: one work-group per (channel, image) sums the plane in strides of
 * its size (coalesced) and reduces in local memory; the local size is a power of two. */
__kernel void nas_gap(const __global float *x, const ulong x_off, const int c, const int hw,
		      __global float *y, const ulong y_off, const int ctot, const int c_off,
		      const int accumulate, const float scale, __local float *part)
{
	const int lid = get_local_id(0), ls = get_local_size(0);
	const int ch = get_group_id(1), n = get_group_id(2);
	const __global float *xc = x + x_off + (n * c + ch) * hw;
	float s = 0.0f;

	for (int i = lid; i < hw; i += ls)
		s += xc[i];
	part[lid] = s;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int step = ls / 2; step > 0; step /= 2) {
		if (lid < step)
			part[lid] += part[lid + step];
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	if (lid == 0)
		PUT(y, y_off + n * ctot + c_off + ch, part[0] / (float)hw);
}

/* y[n][c_off + o] = x[n] . W[o] + b[o], one work-item per output; the daemon uses the GEMM
 * engine instead when it has one. */
__kernel void nas_linear(const __global float *x, const ulong x_off, const int in,
			 const __global float *wt, const ulong w_off, const __global float *bias,
			 const ulong b_off, const int has_bias, __global float *y, const ulong y_off,
			 const int ctot, const int c_off, const int out, const int accumulate,
			 const float scale)
{
	const int o = get_global_id(0), n = get_global_id(1);

	if (o >= out)
		return;
	{
		const __global float *xr = x + x_off + n * in;
		const __global float *wr = wt + w_off + o * in;
		float acc = has_bias ? bias[b_off + o] : 0.0f;

		for (int i = 0; i < in; i++)
			acc = xr[i] * wr[i] + acc;
		PUT(y, y_off + n * ctot + c_off + o, acc);
	}
}

/* A dense 1x1 convolution, or a depthwise convolution followed by one (a DWPW step: half
 * a SepConv, or a DilConv), as one tiled kernel with the epilogue (bias, added tensor,
 * scale, accumulation) in its writes: no im2col columns, no separate bias pass, and for a
 * DWPW no depthwise output in global memory. y[n, co, p] = bias[co] + sum over ci of
 * wt[co][ci] * v(n, ci, p), where v is
 *   kh == 0: relu_in? ReLU of x[n, ci, oh * sh + shift, ow * sw + shift] (the 1x1 case,
 *            strided and shifted for FactorizedReduce);
 *   kh > 0:  the depthwise convolution of channel ci at output pixel p (kh x kw window,
 *            stride sh x sw, padding ph x pw, dilation dh x dw, ReLU on its input when
 *            relu_in), plus its bias dwb[ci] when dw_has_bias.
 * Each work-group makes a tile of PW_RP * lp pixels by PW_RC * lc output channels of one
 * image (launch: dimension 0 the pixel tiles times lp, dimension 1 the channel tiles times
 * lc, dimension 2 the images); each work-item PW_RP pixels strided by lp (neighbouring
 * work-items, neighbouring addresses) by PW_RC channels strided by lc, in registers.
 * The input channels go PW_KS at a time through local memory: xs[PW_KS][tile pixels]
 * (each work-item makes the values of its own pixels, so their input offsets are worked
 * out once) and ws[PW_KS][tile channels + 1] (the one more: neighbouring work-items
 * store neighbouring kk, which would fall into one bank at a stride of 32 or 64); the host
 * sizes both. */
#ifndef PW_RP /* the host may set the register tile (RXGEMMD_NAS_PW_TILE) */
#define PW_RP 4
#endif
#ifndef PW_RC
#define PW_RC 4
#endif
#define PW_KS 16
__kernel void nas_pw(const __global float *x, const ulong x_off, const int cin, const int h,
		     const int w, __global float *y, const ulong y_off, const int ctot,
		     const int c_off, const int cout, const int ho, const int wo,
		     const __global float *wt, const ulong w_off, const __global float *bias,
		     const ulong b_off, const int has_bias, const int sh, const int sw,
		     const int relu_in, const int shift, const __global float *dwt,
		     const ulong dw_off, const __global float *dwb, const ulong dwb_off,
		     const int dw_has_bias, const int kh, const int kw, const int ph,
		     const int pw, const int dh, const int dw, const int accumulate,
		     const float scale, ADD_ARGS, __local float *xs, __local float *ws)
{
	const int lx = get_local_id(0), ly = get_local_id(1);
	const int lp = get_local_size(0), lc = get_local_size(1);
	const int tp = lp * PW_RP, tc = lc * PW_RC, nthreads = lp * lc, lid = ly * lp + lx;
	const int p0 = get_group_id(0) * tp, co0 = get_group_id(1) * tc, n = get_group_id(2);
	const int hwo = ho * wo, hw = h * w;
	const __global float *xb = x + x_off + n * cin * hw;
	int pin[PW_RP], ih0[PW_RP], iw0[PW_RP];
	float acc[PW_RP][PW_RC];

	/* Where each of this work-item's pixels reads: -1 for pixels past the plane. */
	for (int i = 0; i < PW_RP; i++) {
		const int p = p0 + lx + i * lp, oh = p / wo, ow = p - oh * wo;

		ih0[i] = oh * sh - ph;
		iw0[i] = ow * sw - pw;
		pin[i] = p < hwo ? (oh * sh + shift) * w + ow * sw + shift : -1;
		for (int j = 0; j < PW_RC; j++)
			acc[i][j] = 0.0f;
	}
	for (int k0 = 0; k0 < cin; k0 += PW_KS) {
		for (int kk = ly; kk < PW_KS; kk += lc) {
			const int ci = k0 + kk;

			for (int i = 0; i < PW_RP; i++) {
				float v = 0.0f;

				if (ci < cin && pin[i] >= 0) {
					const __global float *xc = xb + ci * hw;

					if (kh == 0) {
						v = xc[pin[i]];
						if (relu_in)
							v = RELU(v);
					} else {
						const __global float *wc = dwt + dw_off + ci * kh * kw;

						for (int ki = 0; ki < kh; ki++) {
							const int ih = ih0[i] + ki * dh;

							if (ih < 0 || ih >= h)
								continue;
							for (int kj = 0; kj < kw; kj++) {
								const int iw = iw0[i] + kj * dw;
								float u;

								if (iw < 0 || iw >= w)
									continue;
								u = xc[ih * w + iw];
								if (relu_in)
									u = RELU(u);
								v = u * wc[ki * kw + kj] + v;
							}
						}
						if (dw_has_bias)
							v += dwb[dwb_off + ci];
					}
				}
				xs[kk * tp + lx + i * lp] = v;
			}
		}
		for (int idx = lid; idx < tc * PW_KS; idx += nthreads) {
			const int cc = idx / PW_KS, kk = idx - cc * PW_KS;
			const int co = co0 + cc, ci = k0 + kk;

			ws[kk * (tc + 1) + cc] = co < cout && ci < cin ? wt[w_off + co * cin + ci] : 0.0f;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		for (int kk = 0; kk < PW_KS; kk++) {
			float xr[PW_RP], wr[PW_RC];

			for (int i = 0; i < PW_RP; i++)
				xr[i] = xs[kk * tp + lx + i * lp];
			for (int j = 0; j < PW_RC; j++)
				wr[j] = ws[kk * (tc + 1) + ly + j * lc];
			for (int i = 0; i < PW_RP; i++)
				for (int j = 0; j < PW_RC; j++)
					acc[i][j] = xr[i] * wr[j] + acc[i][j];
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	for (int j = 0; j < PW_RC; j++) {
		const int co = co0 + ly + j * lc;

		if (co >= cout)
			continue;
		for (int i = 0; i < PW_RP; i++) {
			const int p = p0 + lx + i * lp;
			float v;

			if (p >= hwo)
				continue;
			v = acc[i][j];
			if (has_bias)
				v += bias[b_off + co];
			PUT_ADD(y, y_off + (n * ctot + c_off + co) * hwo + p, v, n, co, hwo, p);
		}
	}
}

/* A dense 1x1 convolution streamed through registers, for devices where nas_pw's local
 * tiles and barriers cost more than they save (a 1x1 convolution of a few dozen channels
 * reads and writes far more than it computes): no local memory, no barrier. Each
 * work-item makes PS_P pixels of one image, strided by the local width (neighbouring
 * work-items, neighbouring addresses, for both the reads of x and the writes of y), by
 * C consecutive output channels (PS_C, or PS_CN in nas_pws_n); it reads each input
 * channel's values of its pixels once and every weight it needs once, the same weight for
 * the whole work-group row.
 * Launch: dimension 0 the pixel tiles (PS_P * local width pixels) times the local width,
 * dimension 1 the channel groups (C channels; past cout the loads repeat the last
 * channel's row and the writes are left out), dimension 2 the images. ReLU on the input,
 * stride and shift (FactorizedReduce) and the epilogue (bias, added tensor, scale,
 * accumulation) as nas_pw's; a pixel past the plane reads pixel 0 and is not written.
 * (Its weights as float4s where aligned, a branch in its loop, took ImageNet at batch 64
 * on the H200 from 9.1 to 10.3 ms, 2026-12-04: not kept.) */
#ifndef PS_P
#define PS_P 4
#endif
#ifndef PS_C
#define PS_C 16
#endif
/* The narrow variants' channels (nas_pws_n, nas_pwv_n): half as many outputs a work-item,
 * twice the work-items, for launches too small to fill the device with PS_C. */
#ifndef PS_CN
#define PS_CN (PS_C > 1 ? PS_C / 2 : 1)
#endif
/* nas_pws's and nas_cvs's shared parts (no functions in OpenCL C 1.1 for Mesa): one input
 * tap, v[PS_P] the work-item's pixels' values and wc + wrow[j] its weight for channel j
 * of C, into acc; and the writes of acc through the epilogue. */
#define PS_TAP(v, wc, C)                                                                    \
	for (int j_ = 0; j_ < (C); j_++) {                                                  \
		const float wv_ = (wc)[wrow[j_]];                                           \
                                                                                            \
		for (int i_ = 0; i_ < PS_P; i_++)                                           \
			acc[i_][j_] = (v)[i_] * wv_ + acc[i_][j_];                          \
	}
#define PS_WRITE(C)                                                                         \
	for (int j_ = 0; j_ < (C); j_++) {                                                  \
		const int co_ = co0 + j_;                                                   \
                                                                                            \
		if (co_ >= cout)                                                            \
			break;                                                              \
		for (int i_ = 0; i_ < PS_P; i_++) {                                         \
			const int p_ = p0 + i_ * lp;                                        \
			float v_;                                                           \
                                                                                            \
			if (p_ >= hwo)                                                      \
				break;                                                      \
			v_ = acc[i_][j_];                                                   \
			if (has_bias)                                                       \
				v_ += bias[b_off + co_];                                    \
			PUT_ADD(y, y_off + (n * ctot + c_off + co_) * hwo + p_, v_, n, co_, \
				hwo, p_);                                                   \
		}                                                                           \
	}
/* nas_pws's and nas_cvs's first arguments. */
#define PS_ARGS                                                                             \
	const __global float *x, const ulong x_off, const int cin, const int h, const int w, \
		__global float *y, const ulong y_off, const int ctot, const int c_off,       \
		const int cout, const int ho, const int wo, const __global float *wt,       \
		const ulong w_off, const __global float *bias, const ulong b_off,           \
		const int has_bias
#define PWS_KERNEL(NAME, C)                                                                 \
__kernel void NAME(PS_ARGS, const int sh, const int sw, const int relu_in,                 \
		   const int shift, const int accumulate, const float scale, ADD_ARGS)      \
{                                                                                           \
	const int lp = get_local_size(0), n = get_global_id(2);                             \
	const int p0 = get_group_id(0) * lp * PS_P + get_local_id(0);                       \
	const int co0 = get_global_id(1) * C, hwo = ho * wo, hw = h * w;                    \
	const __global float *xb = x + x_off + n * cin * hw;                                \
	int pin[PS_P], wrow[C];                                                             \
	float acc[PS_P][C];                                                                 \
                                                                                            \
	for (int i = 0; i < PS_P; i++) {                                                    \
		const int p = p0 + i * lp, oh = p / wo, ow = p - oh * wo;                   \
                                                                                            \
		pin[i] = p >= hwo ? 0 : (oh * sh + shift) * w + ow * sw + shift;            \
		for (int j = 0; j < C; j++)                                                 \
			acc[i][j] = 0.0f;                                                   \
	}                                                                                   \
	for (int j = 0; j < C; j++)                                                         \
		wrow[j] = min(co0 + j, cout - 1) * cin;                                     \
	/* Four input channels a turn: their loads are issued together, so that a work-item \
	 * waits for memory once per four channels, not once per channel. */                \
	int ci = 0;                                                                         \
	for (; ci + 4 <= cin; ci += 4) {                                                    \
		const __global float *wc = wt + w_off + ci;                                 \
		float v[4][PS_P];                                                           \
                                                                                            \
		for (int u = 0; u < 4; u++) {                                               \
			const __global float *xc = xb + (ci + u) * hw;                      \
                                                                                            \
			for (int i = 0; i < PS_P; i++) {                                    \
				v[u][i] = xc[pin[i]];                                       \
				if (relu_in)                                                \
					v[u][i] = RELU(v[u][i]);                            \
			}                                                                   \
		}                                                                           \
		for (int j = 0; j < C; j++) {                                               \
			const __global float *wj = wc + wrow[j];                            \
                                                                                            \
			for (int u = 0; u < 4; u++) {                                       \
				const float wv = wj[u];                                     \
                                                                                            \
				for (int i = 0; i < PS_P; i++)                              \
					acc[i][j] = v[u][i] * wv + acc[i][j];               \
			}                                                                   \
		}                                                                           \
	}                                                                                   \
	for (; ci < cin; ci++) {                                                            \
		const __global float *xc = xb + ci * hw;                                    \
		const __global float *wc = wt + w_off + ci;                                 \
		float v[PS_P];                                                              \
                                                                                            \
		for (int i = 0; i < PS_P; i++) {                                            \
			v[i] = xc[pin[i]];                                                  \
			if (relu_in)                                                        \
				v[i] = RELU(v[i]);                                          \
		}                                                                           \
		PS_TAP(v, wc, C);                                                           \
	}                                                                                   \
	PS_WRITE(C);                                                                        \
}
PWS_KERNEL(nas_pws, PS_C)
PWS_KERNEL(nas_pws_n, PS_CN)

/* nas_pws with its loads as float4: each work-item makes 4 neighbouring pixels by C
 * output channels (PS_C, or PS_CN in nas_pwv_n), and each turn of four input channels is
 * four float4 loads of x (one per channel, the work-item's four pixels) and C float4 loads
 * of the weights (four input channels of one output channel's row): a quarter of
 * nas_pws's load instructions for the same multiply-adds, which on a GPU is what nas_pws
 * waits on. Only for a 1x1 at stride 1 with no shift where every float4 is aligned: cin,
 * the plane and the offsets of x, y and the weights multiples of 4 (the host checks;
 * nasops_pwv_fits). Launch: dimension 0 the plane's quads (padded up to the local width;
 * those past it read the last quad and are not written), dimension 1 the channel groups
 * as nas_pws's, dimension 2 the images. ReLU on the input and the epilogue as nas_pws's. */
#define PWV_KERNEL(NAME, C)                                                                 \
__kernel void NAME(const __global float *x, const ulong x_off, const int cin, const int hw, \
		   __global float *y, const ulong y_off, const int ctot, const int c_off,    \
		   const int cout, const __global float *wt, const ulong w_off,             \
		   const __global float *bias, const ulong b_off, const int has_bias,       \
		   const int relu_in, const int accumulate, const float scale, ADD_ARGS)    \
{                                                                                           \
	const int hq = hw / 4, q = get_global_id(0), n = get_global_id(2);                  \
	const int co0 = get_global_id(1) * C;                                               \
	const __global float4 *xq = (const __global float4 *)(x + x_off) + n * cin * hq +   \
				    min(q, hq - 1);                                         \
	const __global float4 *w4 = (const __global float4 *)(wt + w_off);                  \
	int wrow[C];                                                                        \
	float4 acc[C];                                                                      \
                                                                                            \
	for (int j = 0; j < C; j++) {                                                       \
		wrow[j] = min(co0 + j, cout - 1) * (cin / 4);                               \
		acc[j] = (float4)(0.0f);                                                    \
	}                                                                                   \
	for (int c4 = 0; c4 < cin / 4; c4++) {                                              \
		const __global float4 *xc = xq + 4 * c4 * hq;                               \
		float4 v0 = xc[0], v1 = xc[hq], v2 = xc[2 * hq], v3 = xc[3 * hq];           \
                                                                                            \
		if (relu_in) {                                                              \
			v0 = fmax(v0, 0.0f);                                                \
			v1 = fmax(v1, 0.0f);                                                \
			v2 = fmax(v2, 0.0f);                                                \
			v3 = fmax(v3, 0.0f);                                                \
		}                                                                           \
		for (int j = 0; j < C; j++) {                                               \
			const float4 wv = w4[wrow[j] + c4];                                 \
                                                                                            \
			acc[j] = v0 * wv.x + acc[j];                                        \
			acc[j] = v1 * wv.y + acc[j];                                        \
			acc[j] = v2 * wv.z + acc[j];                                        \
			acc[j] = v3 * wv.w + acc[j];                                        \
		}                                                                           \
	}                                                                                   \
	if (q >= hq)                                                                        \
		return;                                                                     \
	for (int j = 0; j < C; j++) {                                                       \
		const int co = co0 + j;                                                     \
		__global float4 *yq;                                                        \
		float4 r;                                                                   \
                                                                                            \
		if (co >= cout)                                                             \
			break;                                                              \
		yq = (__global float4 *)(y + y_off) + (n * ctot + c_off + co) * hq + q;     \
		r = acc[j];                                                                 \
		if (has_bias)                                                               \
			r += bias[b_off + co];                                              \
		r *= scale;                                                                 \
		if (has_add)                                                                \
			r += add_scale *                                                    \
			     vload4(0, addp + a_off + ((n * a_ctot + a_c_off + co) * hw + 4 * q)); \
		if (accumulate)                                                             \
			r += *yq;                                                           \
		*yq = r;                                                                    \
	}                                                                                   \
}
PWV_KERNEL(nas_pwv, PS_C)
PWV_KERNEL(nas_pwv_n, PS_CN)

/* Depthwise convolutions with the window's shape known to the compiler: a KS x KS kernel at
 * stride ST and dilation DL in both directions, one kernel for each of the search space's
 * eight (3 and 5, stride 1 and 2, dilation 1 and 2). Each work-item makes DWR_H rows by
 * DWR_W neighbouring columns of outputs of one plane: it reads each input row of its
 * window once into registers and uses every value for each output that covers it, and
 * its index arithmetic and the plane's weights serve all of them. On a GPU that is what
 * a depthwise convolution is short of: nas_dwconv and nas_conv spend more instructions on
 * indices, barriers and bounds per output than on its nine multiply-adds. Launch:
 * dimension 0 the column groups (DWR_W outputs), dimension 1 the row groups (DWR_H),
 * dimension 2 the n * c planes (padded up to the local size; planes past np are left).
 * Padding (ph, pw), ReLU on the input, the shift and the epilogue as nas_dwconv's. */
#define DWR_W 4
#define DWR_H 2
/* VEC (nas_dwrv*: stride 1, "same" padding (KS - 1) * DL / 2, w and the plane's offset
 * multiples of 4, no shift; the host checks): each input row's segment is read as the
 * aligned float4s that cover it, DWR_NC of them from ow0 - 4, not value by value: a
 * third of the load instructions, each of a warp's or wavefront's loads one contiguous
 * run. */
#define DWR_NC(KS, DL) (1 + ((DWR_W - 1) + ((KS) - 1) * (DL) + 1 + 3) / 4)
#define DWR_KERNEL(NAME, KS, ST, DL, VEC)                                                   \
__kernel void NAME(const __global float *x, const ulong x_off, const int c, const int h,    \
		   const int w, __global float *y, const ulong y_off, const int ctot,       \
		   const int c_off, const int ho, const int wo, const __global float *wt,   \
		   const ulong w_off, const __global float *bias, const ulong b_off,         \
		   const int has_bias, const int ph, const int pw, const int relu_in,       \
		   const int shift, const int np, const int accumulate, const float scale,  \
		   ADD_ARGS)                                                                \
{                                                                                           \
	const int ow0 = get_global_id(0) * DWR_W, oh0 = get_global_id(1) * DWR_H;          \
	const int plane = get_global_id(2), n = plane / c, ch = plane - n * c;              \
	const int hl = h - shift, wl = w - shift, iw0 = ow0 * ST - pw;                      \
	const __global float *xp = x + x_off + plane * h * w + shift * w + shift;           \
	const __global float *wc = wt + w_off + ch * KS * KS;                               \
	float wk[KS * KS], acc[DWR_H][DWR_W], seg[(DWR_W - 1) * ST + (KS - 1) * DL + 1];   \
                                                                                            \
	if (plane >= np || ow0 >= wo || oh0 >= ho)                                          \
		return;                                                                     \
	for (int i = 0; i < KS * KS; i++)                                                   \
		wk[i] = wc[i];                                                              \
	for (int r = 0; r < DWR_H; r++)                                                     \
		for (int q = 0; q < DWR_W; q++)                                             \
			acc[r][q] = 0.0f;                                                   \
	/* Input row t of the window serves output row r where t = r * ST + ki * DL. */    \
	for (int t = 0; t < (DWR_H - 1) * ST + (KS - 1) * DL + 1; t++) {                    \
		const int ih = oh0 * ST - ph + t;                                           \
		const bool row_in = ih >= 0 && ih < hl;                                     \
                                                                                            \
		if (VEC) {                                                                  \
			/* Aligned float4s from ow0 - 4: each wholly inside the row or      \
			 * wholly outside it (w a multiple of 4), then the segment from     \
			 * them, its start (the padding) known to the compiler. */          \
			float rv[4 * DWR_NC(KS, DL)];                                       \
                                                                                            \
			for (int c_ = 0; c_ < DWR_NC(KS, DL); c_++) {                       \
				const int iwc = ow0 - 4 + 4 * c_;                           \
				float4 v4 = (float4)(0.0f);                                 \
                                                                                            \
				if (row_in && iwc >= 0 && iwc < wl) {                       \
					v4 = *(const __global float4 *)(xp + ih * w + iwc); \
					if (relu_in)                                        \
						v4 = fmax(v4, 0.0f);                        \
				}                                                           \
				rv[4 * c_] = v4.x, rv[4 * c_ + 1] = v4.y;                   \
				rv[4 * c_ + 2] = v4.z, rv[4 * c_ + 3] = v4.w;               \
			}                                                                   \
			for (int q = 0; q < (DWR_W - 1) + (KS - 1) * DL + 1; q++)           \
				seg[q] = rv[4 + q - (KS - 1) * DL / 2];                     \
		} else {                                                                    \
			for (int q = 0; q < (DWR_W - 1) * ST + (KS - 1) * DL + 1; q++) {    \
				const int iw = iw0 + q;                                     \
				float v = 0.0f;                                             \
                                                                                            \
				if (row_in && iw >= 0 && iw < wl) {                         \
					v = xp[ih * w + iw];                                \
					if (relu_in)                                        \
						v = RELU(v);                                \
				}                                                           \
				seg[q] = v;                                                 \
			}                                                                   \
		}                                                                           \
		for (int r = 0; r < DWR_H; r++) {                                           \
			const int d = t - r * ST;                                           \
                                                                                            \
			if (d < 0 || d % DL != 0 || d / DL >= KS)                           \
				continue;                                                   \
			for (int q = 0; q < DWR_W; q++)                                     \
				for (int kj = 0; kj < KS; kj++)                             \
					acc[r][q] = seg[q * ST + kj * DL] *                 \
							    wk[d / DL * KS + kj] +          \
						    acc[r][q];                              \
		}                                                                           \
	}                                                                                   \
	for (int r = 0; r < DWR_H; r++) {                                                   \
		const int oh = oh0 + r;                                                     \
                                                                                            \
		if (oh >= ho)                                                               \
			break;                                                              \
		for (int q = 0; q < DWR_W; q++) {                                           \
			const int ow = ow0 + q;                                             \
			float v = acc[r][q];                                                \
                                                                                            \
			if (ow >= wo)                                                       \
				break;                                                      \
			if (has_bias)                                                       \
				v += bias[b_off + ch];                                      \
			PUT_ADD(y, y_off + (n * ctot + c_off + ch) * ho * wo + oh * wo + ow, v, \
				n, ch, ho * wo, oh * wo + ow);                              \
		}                                                                           \
	}                                                                                   \
}
DWR_KERNEL(nas_dwr3s1d1, 3, 1, 1, 0)
DWR_KERNEL(nas_dwr3s1d2, 3, 1, 2, 0)
DWR_KERNEL(nas_dwr3s2d1, 3, 2, 1, 0)
DWR_KERNEL(nas_dwr3s2d2, 3, 2, 2, 0)
DWR_KERNEL(nas_dwr5s1d1, 5, 1, 1, 0)
DWR_KERNEL(nas_dwr5s1d2, 5, 1, 2, 0)
DWR_KERNEL(nas_dwr5s2d1, 5, 2, 1, 0)
DWR_KERNEL(nas_dwr5s2d2, 5, 2, 2, 0)
DWR_KERNEL(nas_dwrv3d1, 3, 1, 1, 1)
DWR_KERNEL(nas_dwrv3d2, 3, 1, 2, 1)
DWR_KERNEL(nas_dwrv5d1, 5, 1, 1, 1)
DWR_KERNEL(nas_dwrv5d2, 5, 1, 2, 1)

/* A dense convolution of any window (kh x kw, stride, padding, dilation) laid out as
 * nas_pws: each work-item makes PS_P pixels (strided by the local width) by C output
 * channels (PS_C, or PS_CN in nas_cvs_n), every input value it reads serving C outputs
 * and every weight PS_P. For the stems (3x3 on three or a few dozen channels at large
 * planes), where im2col writes and the GEMM reads back nine times the input. Launch and
 * epilogue as nas_pws's; the input's shift is as nas_conv's. */
#define CVS_KERNEL(NAME, C)                                                                 \
__kernel void NAME(PS_ARGS, const int kh, const int kw, const int sh, const int sw,        \
		   const int ph, const int pw, const int dh, const int dw, const int relu_in, \
		   const int shift, const int accumulate, const float scale, ADD_ARGS)      \
{                                                                                           \
	const int lp = get_local_size(0), n = get_global_id(2);                             \
	const int p0 = get_group_id(0) * lp * PS_P + get_local_id(0);                       \
	const int co0 = get_global_id(1) * C, hwo = ho * wo, kk = kh * kw;                  \
	const int hl = h - shift, wl = w - shift;                                           \
	const __global float *xb = x + x_off + n * cin * h * w + shift * w + shift;         \
	int ih0[PS_P], iw0[PS_P], wrow[C];                                                  \
	float acc[PS_P][C];                                                                 \
                                                                                            \
	for (int i = 0; i < PS_P; i++) {                                                    \
		const int p = min(p0 + i * lp, hwo - 1), oh = p / wo, ow = p - oh * wo;     \
                                                                                            \
		ih0[i] = oh * sh - ph;                                                      \
		iw0[i] = ow * sw - pw;                                                      \
		for (int j = 0; j < C; j++)                                                 \
			acc[i][j] = 0.0f;                                                   \
	}                                                                                   \
	for (int j = 0; j < C; j++)                                                         \
		wrow[j] = min(co0 + j, cout - 1) * cin * kk;                                \
	for (int ci = 0; ci < cin; ci++) {                                                  \
		const __global float *xc = xb + ci * h * w;                                 \
                                                                                            \
		for (int ki = 0; ki < kh; ki++)                                             \
			for (int kj = 0; kj < kw; kj++) {                                   \
				const __global float *wc = wt + w_off + ci * kk + ki * kw + kj; \
				float v[PS_P];                                              \
                                                                                            \
				for (int i = 0; i < PS_P; i++) {                            \
					const int ih = ih0[i] + ki * dh, iw = iw0[i] + kj * dw; \
                                                                                            \
					v[i] = 0.0f;                                        \
					if (ih >= 0 && ih < hl && iw >= 0 && iw < wl) {     \
						v[i] = xc[ih * w + iw];                     \
						if (relu_in)                                \
							v[i] = RELU(v[i]);                  \
					}                                                   \
				}                                                           \
				PS_TAP(v, wc, C);                                           \
			}                                                                   \
	}                                                                                   \
	PS_WRITE(C);                                                                        \
}
CVS_KERNEL(nas_cvs, PS_C)
CVS_KERNEL(nas_cvs_n, PS_CN)
