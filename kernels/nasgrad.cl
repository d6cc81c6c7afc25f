/* nasgrad.cl: the backward passes and optimiser updates of a DARTS search (daemon/nasgrad.c),
 * mirroring the forward step kinds of nas.cl: convolutions (dense, grouped, depthwise,
 * dilated, strided, with ReLU on the input and FactorizedReduce's shifted read), pooling,
 * ReLU, BatchNorm in training mode (forward and backward), global average pooling, the
 * linear classifier, softmax cross-entropy, the mixed operation's architecture gradient,
 * SGD with momentum, Adam and gradient-norm clipping.
 *
 * OpenCL C 1.1 and Mesa's rules as in nas.cl: no static or inline functions, no fma(), no
 * double. Tensors are NCHW float32 at a ulong element offset; indices from there are ints.
 *
 * Conventions shared with nas.cl: a forward step reads its whole input x and writes
 * scale * op(x) into channels [c_off, c_off + C) of a tensor y of ctot channels. Its
 * backward reads dy from that same slice, times the same scale, and writes the gradient of
 * the whole input (dx = ..., or dx += ... when accumulate is set: an input that feeds several
 * steps sums their gradients).
 *
 * Reductions (weight gradients, BatchNorm, dot products) run in one work-group per result
 * with a power-of-two local size, each work-item summing a strided share in a fixed order
 * and the group halving in local memory: the same inputs give the same bits every run, as
 * the search's determinism needs. */

#define PUTG(y, i, v)                                                                       \
	do {                                                                                \
		float r_ = (v);                                                             \
		if (accumulate)                                                             \
			r_ += (y)[i];                                                       \
		(y)[i] = r_;                                                                \
	} while (0)

/* part[0] = sum of part[0 .. ls), ls a power of two; every work-item reaches the barriers. */
#define REDUCE(part, lid, ls)                                                               \
	do {                                                                                \
		barrier(CLK_LOCAL_MEM_FENCE);                                               \
		for (int step_ = (ls) / 2; step_ > 0; step_ /= 2) {                         \
			if ((lid) < step_)                                                  \
				(part)[lid] += (part)[(lid) + step_];                       \
			barrier(CLK_LOCAL_MEM_FENCE);                                       \
		}                                                                           \
	} while (0)

/* Convolution, gradient of the input: one work-item per element of the stored x (dimension
 * 0 its plane, 1 its channel, 2 its image). It gathers every output whose window covers it,
 * so no two work-items write the same element (no atomics). With relu_in the gradient
 * passes only where x > 0 (PyTorch's ReLU derivative, 0 at 0); the row and column that the
 * shifted read of FactorizedReduce skips get zero. */
__kernel void nasgrad_conv_dx(const __global float *dy, const ulong dy_off, const int ctot,
			      const int c_off, const int cout, const int ho, const int wo,
			      const float scale, const __global float *wt, const ulong w_off,
			      const __global float *x, const ulong x_off, __global float *dx,
			      const ulong dx_off, const int cin, const int h, const int w,
			      const int kh, const int kw, const int sh, const int sw, const int ph,
			      const int pw, const int dh, const int dw, const int groups,
			      const int relu_in, const int shift, const int accumulate)
{
	const int p = get_global_id(0), ci = get_global_id(1), n = get_global_id(2);
	const int hw = h * w;

	if (p >= hw)
		return;
	{
		const int ih = p / w - shift, iw = p - (p / w) * w - shift;
		const int cpg = cin / groups, opg = cout / groups;
		const int g = ci / cpg, cil = ci - g * cpg;
		const int idx = (n * cin + ci) * hw + p;
		float acc = 0.0f;

		if (ih >= 0 && iw >= 0 && (!relu_in || x[x_off + idx] > 0.0f)) {
			for (int co = g * opg; co < (g + 1) * opg; co++) {
				const __global float *dyc =
					dy + dy_off + (n * ctot + c_off + co) * ho * wo;
				const __global float *wc = wt + w_off + (co * cpg + cil) * kh * kw;
				for (int ki = 0; ki < kh; ki++) {
					const int t = ih + ph - ki * dh;
					int oh;
					if (t < 0)
						break; /* t only falls as ki grows */
					oh = t / sh;
					if (oh * sh != t || oh >= ho)
						continue;
					for (int kj = 0; kj < kw; kj++) {
						const int u = iw + pw - kj * dw;
						int ow;
						if (u < 0)
							break;
						ow = u / sw;
						if (ow * sw != u || ow >= wo)
							continue;
						acc = dyc[oh * wo + ow] * wc[ki * kw + kj] + acc;
					}
				}
			}
		}
		PUTG(dx, dx_off + idx, scale * acc);
	}
}

/* Convolution, gradient of the weights: one work-group per weight (dimension 1), its
 * work-items sharing the sum over images and output pixels. */
__kernel void nasgrad_conv_dw(const __global float *dy, const ulong dy_off, const int ctot,
			      const int c_off, const int cout, const int ho, const int wo,
			      const float scale, const __global float *x, const ulong x_off,
			      const int nb, const int cin, const int h, const int w,
			      __global float *dwt, const ulong dw_off, const int kh, const int kw,
			      const int sh, const int sw, const int ph, const int pw, const int dh,
			      const int dw, const int groups, const int relu_in, const int shift,
			      const int accumulate, __local float *part)
{
	const int lid = get_local_id(0), ls = get_local_size(0), r = get_group_id(1);
	const int kk = kh * kw, cpg = cin / groups, opg = cout / groups;
	const int co = r / (cpg * kk), rem = r - co * cpg * kk;
	const int cil = rem / kk, ki = (rem - cil * kk) / kw, kj = rem - cil * kk - ki * kw;
	const int ci = (co / opg) * cpg + cil;
	const int hwo = ho * wo, total = nb * hwo;
	float s = 0.0f;

	for (int i = lid; i < total; i += ls) {
		const int b = i / hwo, q = i - b * hwo, oh = q / wo, ow = q - oh * wo;
		const int ih = oh * sh - ph + ki * dh, iw = ow * sw - pw + kj * dw;
		float v;
		if (ih < 0 || ih >= h - shift || iw < 0 || iw >= w - shift)
			continue;
		v = x[x_off + ((b * cin + ci) * h + ih + shift) * w + iw + shift];
		if (relu_in && !(v > 0.0f))
			continue;
		s = dy[dy_off + (b * ctot + c_off + co) * hwo + q] * v + s;
	}
	part[lid] = s;
	REDUCE(part, lid, ls);
	if (lid == 0)
		PUTG(dwt, dw_off + r, scale * part[0]);
}

/* The columns of a convolution's input for the GEMM engine, as nas.cl's nas_im2col lays
 * them out: col[b][r][p], r = (ci * kh + ki) * kw + kj, p the output pixel, for images
 * n0 + b; padding reads as zero; relu_in and shift as in nasgrad_conv_dx. The weight
 * gradient is then dW^T += col_b dy_b^T per image. */
__kernel void nasgrad_im2col(const __global float *x, const ulong x_off, const int cin,
			     const int h, const int w, __global float *col, const int ho,
			     const int wo, const int kh, const int kw, const int sh, const int sw,
			     const int ph, const int pw, const int dh, const int dw,
			     const int relu_in, const int shift, const int n0)
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
			if (relu_in && !(v > 0.0f))
				v = 0.0f;
		}
		col[(b * cin * kk + r) * hwo + p] = v;
	}
}

/* The input's gradient from the columns' gradient (dcol[b] = W^T dy_b, from the GEMM
 * engine, scale applied): each input element gathers the column entries its position fed,
 * as nasgrad_conv_dx gathers dy * W, masked by ReLU; images n0 + b. */
__kernel void nasgrad_col2im(const __global float *dcol, const __global float *x,
			     const ulong x_off, __global float *dx, const ulong dx_off,
			     const int cin, const int h, const int w, const int ho, const int wo,
			     const int kh, const int kw, const int sh, const int sw, const int ph,
			     const int pw, const int dh, const int dw, const int relu_in,
			     const int shift, const int n0, const int accumulate)
{
	const int p = get_global_id(0), ci = get_global_id(1), b = get_global_id(2);
	const int hw = h * w;

	if (p >= hw)
		return;
	{
		const int ih = p / w - shift, iw = p - (p / w) * w - shift;
		const int idx = ((n0 + b) * cin + ci) * hw + p;
		const int hwo = ho * wo;
		const __global float *dc = dcol + (b * cin + ci) * kh * kw * hwo;
		float acc = 0.0f;

		if (ih >= 0 && iw >= 0 && (!relu_in || x[x_off + idx] > 0.0f)) {
			for (int ki = 0; ki < kh; ki++) {
				const int t = ih + ph - ki * dh;
				int oh;
				if (t < 0)
					break;
				oh = t / sh;
				if (oh * sh != t || oh >= ho)
					continue;
				for (int kj = 0; kj < kw; kj++) {
					const int u = iw + pw - kj * dw;
					int ow;
					if (u < 0)
						break;
					ow = u / sw;
					if (ow * sw != u || ow >= wo)
						continue;
					acc += dc[(ki * kw + kj) * hwo + oh * wo + ow];
				}
			}
		}
		PUTG(dx, dx_off + idx, acc);
	}
}

/* Pooling, gradient of the input: one work-item per input element, gathering from every
 * window that covers it. Average: each window's gradient spread over the elements it
 * counted (padding not counted). Max: a window's gradient goes to its first maximum in
 * row-major order, as PyTorch's argmax does. */
__kernel void nasgrad_pool_dx(const __global float *dy, const ulong dy_off, const int ctot,
			      const int c_off, const int ho, const int wo, const float scale,
			      const __global float *x, const ulong x_off, __global float *dx,
			      const ulong dx_off, const int c, const int h, const int w,
			      const int kh, const int kw, const int sh, const int sw, const int ph,
			      const int pw, const int is_avg, const int accumulate)
{
	const int p = get_global_id(0), ch = get_global_id(1), n = get_global_id(2);

	if (p >= h * w)
		return;
	{
		const int ih = p / w, iw = p - ih * w;
		const __global float *xc = x + x_off + (n * c + ch) * h * w;
		const __global float *dyc = dy + dy_off + (n * ctot + c_off + ch) * ho * wo;
		float acc = 0.0f;

		for (int ki = 0; ki < kh; ki++) {
			const int t = ih + ph - ki, oh = t / sh;
			if (t < 0 || oh * sh != t || oh >= ho)
				continue;
			for (int kj = 0; kj < kw; kj++) {
				const int u = iw + pw - kj, ow = u / sw;
				const int h0 = oh * sh - ph, w0 = ow * sw - pw;
				const int h1 = min(h0 + kh, h), w1 = min(w0 + kw, w);
				if (u < 0 || ow * sw != u || ow >= wo)
					continue;
				if (is_avg) {
					const int cnt = (h1 - max(h0, 0)) * (w1 - max(w0, 0));
					acc += dyc[oh * wo + ow] / (float)cnt;
				} else {
					float best = -INFINITY;
					int at = -1;
					for (int a = max(h0, 0); a < h1; a++)
						for (int b = max(w0, 0); b < w1; b++)
							if (xc[a * w + b] > best) {
								best = xc[a * w + b];
								at = a * w + b;
							}
					if (at == p)
						acc += dyc[oh * wo + ow];
				}
			}
		}
		PUTG(dx, dx_off + (n * c + ch) * h * w + p, scale * acc);
	}
}

/* Identity or ReLU, gradient of the input (relu: only where x > 0). */
__kernel void nasgrad_relu_dx(const __global float *dy, const ulong dy_off, const int ctot,
			      const int c_off, const int hw, const float scale,
			      const __global float *x, const ulong x_off, const int relu,
			      __global float *dx, const ulong dx_off, const int c,
			      const int accumulate)
{
	const int p = get_global_id(0), ch = get_global_id(1), n = get_global_id(2);

	if (p >= hw)
		return;
	{
		const int idx = (n * c + ch) * hw + p;
		float v = scale * dy[dy_off + (n * ctot + c_off + ch) * hw + p];
		if (relu && !(x[x_off + idx] > 0.0f))
			v = 0.0f;
		PUTG(dx, dx_off + idx, v);
	}
}

/* Global average pooling, gradient of the input: dy / (h * w) everywhere in the plane. */
__kernel void nasgrad_gap_dx(const __global float *dy, const ulong dy_off, const int ctot,
			     const int c_off, const float scale, __global float *dx,
			     const ulong dx_off, const int c, const int hw, const int accumulate)
{
	const int p = get_global_id(0), ch = get_global_id(1), n = get_global_id(2);

	if (p >= hw)
		return;
	PUTG(dx, dx_off + (n * c + ch) * hw + p,
	     scale * dy[dy_off + n * ctot + c_off + ch] / (float)hw);
}

/* BatchNorm in training mode: one work-group per channel (dimension 1). The batch mean,
 * then the biased variance around it (two passes: no cancellation), normalise, and
 * y = gamma * xhat + beta (affine) or xhat into the slice. stats[ch] = mean and
 * stats[c + ch] = 1 / sqrt(var + eps) are kept for the backward pass; with track, the
 * running statistics move by momentum as PyTorch's do (the unbiased variance). */
__kernel void nasgrad_bn_fwd(const __global float *x, const ulong x_off, const int c,
			     const int hw, const int nb, __global float *y, const ulong y_off,
			     const int ctot, const int c_off, const float scale,
			     const int accumulate, const __global float *gamma, const ulong g_off,
			     const __global float *beta, const ulong b_off, const int affine,
			     __global float *stats, const ulong s_off, __global float *running,
			     const ulong r_off, const int track, const float momentum,
			     const float eps, __local float *part)
{
	const int lid = get_local_id(0), ls = get_local_size(0), ch = get_group_id(1);
	const int total = nb * hw;
	float s = 0.0f, mean, var, invstd, ga = 1.0f, be = 0.0f;

	for (int i = lid; i < total; i += ls) {
		const int b = i / hw;
		s += x[x_off + (b * c + ch) * hw + i - b * hw];
	}
	part[lid] = s;
	REDUCE(part, lid, ls);
	mean = part[0] / (float)total;
	barrier(CLK_LOCAL_MEM_FENCE); /* everyone has read part[0] */
	s = 0.0f;
	for (int i = lid; i < total; i += ls) {
		const int b = i / hw;
		const float d = x[x_off + (b * c + ch) * hw + i - b * hw] - mean;
		s = d * d + s;
	}
	part[lid] = s;
	REDUCE(part, lid, ls);
	var = part[0] / (float)total;
	invstd = 1.0f / sqrt(var + eps);
	if (affine) {
		ga = gamma[g_off + ch];
		be = beta[b_off + ch];
	}
	for (int i = lid; i < total; i += ls) {
		const int b = i / hw, q = i - b * hw;
		const float xh = (x[x_off + (b * c + ch) * hw + q] - mean) * invstd;
		PUTG(y, y_off + (b * ctot + c_off + ch) * hw + q, scale * (ga * xh + be));
	}
	if (lid == 0) {
		stats[s_off + ch] = mean;
		stats[s_off + c + ch] = invstd;
		if (track) {
			const float unbiased =
				total > 1 ? var * (float)total / (float)(total - 1) : var;
			running[r_off + ch] =
				(1.0f - momentum) * running[r_off + ch] + momentum * mean;
			running[r_off + c + ch] =
				(1.0f - momentum) * running[r_off + c + ch] + momentum * unbiased;
		}
	}
}

/* BatchNorm in training mode, backward: one work-group per channel. With g = gamma * dy
 * (dy already times scale) and M elements per channel,
 *   dx = invstd / M * (M g - sum g - xhat sum(g xhat)),
 * dgamma = sum(dy xhat) and dbeta = sum(dy), both sums reduced together in part[0, 2 ls).
 * want_params: 1 writes dgamma and dbeta (accumulate_params: adds to them). */
__kernel void nasgrad_bn_bwd(const __global float *dy, const ulong dy_off, const int ctot,
			     const int c_off, const float scale, const __global float *x,
			     const ulong x_off, const int c, const int hw, const int nb,
			     const __global float *stats, const ulong s_off,
			     const __global float *gamma, const ulong g_off, const int affine,
			     __global float *dx, const ulong dx_off, const int want_dx,
			     const int accumulate, __global float *dgamma, const ulong dg_off,
			     __global float *dbeta, const ulong db_off, const int want_params,
			     const int accumulate_params, __local float *part)
{
	const int lid = get_local_id(0), ls = get_local_size(0), ch = get_group_id(1);
	const int total = nb * hw;
	const float mean = stats[s_off + ch], invstd = stats[s_off + c + ch];
	const float ga = affine ? gamma[g_off + ch] : 1.0f;
	float sdy = 0.0f, sdyx = 0.0f;

	for (int i = lid; i < total; i += ls) {
		const int b = i / hw, q = i - b * hw;
		const float d = scale * dy[dy_off + (b * ctot + c_off + ch) * hw + q];
		const float xh = (x[x_off + (b * c + ch) * hw + q] - mean) * invstd;
		sdy += d;
		sdyx = d * xh + sdyx;
	}
	part[lid] = sdy;
	part[ls + lid] = sdyx;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int step = ls / 2; step > 0; step /= 2) {
		if (lid < step) {
			part[lid] += part[lid + step];
			part[ls + lid] += part[ls + lid + step];
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	sdy = part[0];
	sdyx = part[ls];
	if (want_dx) {
		const float k = ga * invstd / (float)total;
		for (int i = lid; i < total; i += ls) {
			const int b = i / hw, q = i - b * hw;
			const float d = scale * dy[dy_off + (b * ctot + c_off + ch) * hw + q];
			const float xh = (x[x_off + (b * c + ch) * hw + q] - mean) * invstd;
			PUTG(dx, dx_off + (b * c + ch) * hw + q,
			     k * ((float)total * d - sdy - xh * sdyx));
		}
	}
	if (lid == 0 && want_params) {
		if (accumulate_params) {
			dgamma[dg_off + ch] += sdyx;
			dbeta[db_off + ch] += sdy;
		} else {
			dgamma[dg_off + ch] = sdyx;
			dbeta[db_off + ch] = sdy;
		}
	}
}

/* Partial dot products of rows: row r of a starts at a_off + r * a_stride (b likewise),
 * len elements each. Work-group (chunk, r) sums elements chunk * ls + lid, stepping by the
 * chunks' total width, into partial[r * chunks + chunk]; nasgrad_sum adds them up. */
__kernel void nasgrad_dot(const __global float *a, const ulong a_off, const int a_stride,
			  const __global float *b, const ulong b_off, const int b_stride,
			  const int len, __global float *partial, __local float *part)
{
	const int lid = get_local_id(0), ls = get_local_size(0);
	const int chunk = get_group_id(0), chunks = get_num_groups(0), r = get_group_id(1);
	const __global float *ar = a + a_off + r * a_stride;
	const __global float *br = b + b_off + r * b_stride;
	float s = 0.0f;

	for (int i = chunk * ls + lid; i < len; i += chunks * ls)
		s = ar[i] * br[i] + s;
	part[lid] = s;
	REDUCE(part, lid, ls);
	if (lid == 0)
		partial[r * chunks + chunk] = part[0];
}

/* out[out_off] = scale * sum(partial[p_off ..][0 .. count)) (+ out): one work-group. */
__kernel void nasgrad_sum(const __global float *partial, const ulong p_off, const int count,
			  __global float *out, const ulong out_off, const float scale,
			  const int accumulate, __local float *part)
{
	const int lid = get_local_id(0), ls = get_local_size(0);
	float s = 0.0f;

	for (int i = lid; i < count; i += ls)
		s += partial[p_off + i];
	part[lid] = s;
	REDUCE(part, lid, ls);
	if (lid == 0)
		PUTG(out, out_off, scale * part[0]);
}

/* The mixed operation's architecture gradient, one work-item per edge (row of k): with
 * w = softmax(alpha row) and g[j] = dL/dw[j] (the dot of dy with operation j's output),
 * dL/dalpha[j] = w[j] (g[j] - sum_i w[i] g[i]). */
__kernel void nasgrad_alpha(const __global float *alpha, const ulong a_off,
			    const __global float *g, const ulong g_off, __global float *dalpha,
			    const ulong d_off, const int rows, const int k, const int accumulate)
{
	const int r = get_global_id(0);

	if (r >= rows)
		return;
	{
		const __global float *ar = alpha + a_off + r * k;
		const __global float *gr = g + g_off + r * k;
		float mx = -INFINITY, sum = 0.0f, dot = 0.0f;

		for (int j = 0; j < k; j++)
			mx = fmax(mx, ar[j]);
		for (int j = 0; j < k; j++)
			sum += exp(ar[j] - mx);
		for (int j = 0; j < k; j++)
			dot += exp(ar[j] - mx) / sum * gr[j];
		for (int j = 0; j < k; j++) {
			const float wj = exp(ar[j] - mx) / sum;
			PUTG(dalpha, d_off + r * k + j, wj * (gr[j] - dot));
		}
	}
}

/* Linear layer, gradient of the input: dx[n][i] = scale * sum_o dy[n][o] W[o][i]. */
__kernel void nasgrad_linear_dx(const __global float *dy, const ulong dy_off, const int ctot,
				const int c_off, const int out, const float scale,
				const __global float *wt, const ulong w_off, __global float *dx,
				const ulong dx_off, const int in, const int accumulate)
{
	const int i = get_global_id(0), n = get_global_id(1);

	if (i >= in)
		return;
	{
		const __global float *dyr = dy + dy_off + n * ctot + c_off;
		float acc = 0.0f;

		for (int o = 0; o < out; o++)
			acc = dyr[o] * wt[w_off + o * in + i] + acc;
		PUTG(dx, dx_off + n * in + i, scale * acc);
	}
}

/* Linear layer, gradients of the weights (i < in: dW[o][i] = sum_n dy[n][o] x[n][i]) and
 * of the bias (i == in, when has_bias: db[o] = sum_n dy[n][o]). */
__kernel void nasgrad_linear_dw(const __global float *dy, const ulong dy_off, const int ctot,
				const int c_off, const int out, const float scale,
				const __global float *x, const ulong x_off, const int in,
				const int nb, __global float *dwt, const ulong dw_off,
				__global float *dbias, const ulong db_off, const int has_bias,
				const int accumulate)
{
	const int i = get_global_id(0), o = get_global_id(1);

	if (i > in || (i == in && !has_bias))
		return;
	{
		float acc = 0.0f;

		for (int n = 0; n < nb; n++) {
			const float d = dy[dy_off + n * ctot + c_off + o];
			acc = i == in ? acc + d : d * x[x_off + n * in + i] + acc;
		}
		if (i == in)
			PUTG(dbias, db_off + o, scale * acc);
		else
			PUTG(dwt, dw_off + o * in + i, scale * acc);
	}
}

/* Softmax cross-entropy, one work-item per image (launched exactly nb wide: an early
 * return for padding work-items makes Mesa warn about the argument loads after it):
 * per_image[n] = -log softmax(z)[label], per_image[nb + n] = 1 when the first maximum of
 * z is the label, and dz[n] = (softmax(z) - onehot(label)) / nb (the gradient of the batch
 * mean). A label out of range gives a NaN loss and a NaN gradient row, never a read out
 * of bounds. */
__kernel void nasgrad_xent(const __global float *z, const ulong z_off, const int ctot,
			   const int c_off, const int classes, const __global int *labels,
			   const ulong l_off, const int nb, __global float *dz, const ulong dz_off,
			   __global float *per_image)
{
	const int n = get_global_id(0);
	const __global float *zr = z + z_off + n * ctot + c_off;
	__global float *dr = dz + dz_off + n * classes;
	const int label = labels[l_off + n];
	const int ok = label >= 0 && label < classes;
	const int lab = ok ? label : 0; /* read in range; the result is NaN then */
	float mx = -INFINITY, sum = 0.0f, loss;
	int arg = 0;

	for (int j = 0; j < classes; j++)
		if (zr[j] > mx) {
			mx = zr[j];
			arg = j;
		}
	for (int j = 0; j < classes; j++)
		sum += exp(zr[j] - mx);
	for (int j = 0; j < classes; j++) {
		const float d = (exp(zr[j] - mx) / sum - (j == lab ? 1.0f : 0.0f)) / (float)nb;
		dr[j] = ok ? d : NAN;
	}
	loss = mx + log(sum) - zr[lab];
	per_image[n] = ok ? loss : NAN;
	per_image[nb + n] = ok && arg == label ? 1.0f : 0.0f;
}

/* SGD with momentum and weight decay, PyTorch's formula (dampening 0, not Nesterov):
 * d = g + wd w; buf = momentum buf + d; w -= lr buf. A zero buffer makes the first step
 * PyTorch's (which starts buf at d). */
__kernel void nasgrad_sgd(__global float *wt, const ulong w_off, const __global float *g,
			  const ulong g_off, __global float *buf, const ulong b_off, const int len,
			  const float lr, const float momentum, const float wd)
{
	const int i = get_global_id(0);

	if (i >= len)
		return;
	{
		const float w = wt[w_off + i];
		const float d = g[g_off + i] + wd * w;
		const float b = momentum * buf[b_off + i] + d;
		buf[b_off + i] = b;
		wt[w_off + i] = w - lr * b;
	}
}

/* Adam, PyTorch's formula (weight decay added to the gradient, not AdamW):
 * g += wd w; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * w -= step_size m / (sqrt(v) / sqrt_bc2 + eps), where the host computes
 * step_size = lr / (1 - b1^t), sqrt_bc2 = sqrt(1 - b2^t) and 1 - b1, 1 - b2 (omb1, omb2)
 * in double as PyTorch does: 1.0f - 0.999f is off from 0.001 by 1e-5 relative. */
__kernel void nasgrad_adam(__global float *wt, const ulong w_off, const __global float *g,
			   const ulong g_off, __global float *m, const ulong m_off,
			   __global float *v, const ulong v_off, const int len,
			   const float step_size, const float sqrt_bc2, const float beta1,
			   const float omb1, const float beta2, const float omb2, const float eps,
			   const float wd)
{
	const int i = get_global_id(0);

	if (i >= len)
		return;
	{
		const float w = wt[w_off + i];
		const float gg = g[g_off + i] + wd * w;
		const float mi = beta1 * m[m_off + i] + omb1 * gg;
		const float vi = beta2 * v[v_off + i] + omb2 * (gg * gg);
		m[m_off + i] = mi;
		v[v_off + i] = vi;
		wt[w_off + i] = w - step_size * (mi / (sqrt(vi) / sqrt_bc2 + eps));
	}
}

/* Gradient-norm clipping, PyTorch's clip_grad_norm_: with the global norm sqrt(*sumsq),
 * g *= min(1, max_norm / (norm + 1e-6)). */
__kernel void nasgrad_clip(__global float *g, const ulong g_off, const int len,
			   const __global float *sumsq, const ulong s_off, const float max_norm)
{
	const int i = get_global_id(0);

	if (i >= len)
		return;
	{
		const float coef = max_norm / (sqrt(sumsq[s_off]) + 1e-6f);
		if (coef < 1.0f)
			g[g_off + i] *= coef;
	}
}
