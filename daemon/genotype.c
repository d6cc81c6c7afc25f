/* genotype.c: DARTS cell genotypes: the named ones, the strict parser of the form the
 * reference code prints, and a printer whose output the parser reads back unchanged.
 *
 * The printed form is Python's repr of the reference's Genotype namedtuple:
 *   Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
 *            reduce=[...], reduce_concat=[2, 3, 4, 5])
 * train_search.py prints the concats as range(2, 6); both forms are read. Whitespace
 * between tokens and either quote character are accepted, nothing else: every error names
 * the byte (from 0) where the text stops making sense. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "genotype.h"

static const char *const op_names[RXD_OP_COUNT] = {
	"none",         "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
	"sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "sep_conv_7x7", "conv_7x1_1x7",
};

const char *genotype_op_name(int op)
{
	return op >= 0 && op < RXD_OP_COUNT ? op_names[op] : "?";
}

int genotype_op_parse(const char *s, size_t len)
{
	for (int i = 0; i < RXD_OP_COUNT; i++)
		if (strlen(op_names[i]) == len && memcmp(op_names[i], s, len) == 0)
			return i;
	return -ENOENT;
}

/* ---- the named genotypes (the reference's genotypes.py) ---- */

struct named_cell {
	const char *ops[2 * RXD_GENOTYPE_MAX_NODES];
	uint8_t inputs[2 * RXD_GENOTYPE_MAX_NODES];
	uint8_t n_nodes;
	uint8_t concat[RXD_GENOTYPE_MAX_NODES];
	uint8_t n_concat;
};

struct named_genotype {
	const char *name;
	struct named_cell normal, reduce;
};

static const struct named_genotype named[] = {
	{ "DARTS_V1",
	  { { "sep_conv_3x3", "sep_conv_3x3", "skip_connect", "sep_conv_3x3", "skip_connect",
	      "sep_conv_3x3", "sep_conv_3x3", "skip_connect" },
	    { 1, 0, 0, 1, 0, 1, 0, 2 }, 4, { 2, 3, 4, 5 }, 4 },
	  { { "max_pool_3x3", "max_pool_3x3", "skip_connect", "max_pool_3x3", "max_pool_3x3",
	      "skip_connect", "skip_connect", "avg_pool_3x3" },
	    { 0, 1, 2, 0, 0, 2, 2, 0 }, 4, { 2, 3, 4, 5 }, 4 } },
	{ "DARTS_V2",
	  { { "sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3",
	      "skip_connect", "skip_connect", "dil_conv_3x3" },
	    { 0, 1, 0, 1, 1, 0, 0, 2 }, 4, { 2, 3, 4, 5 }, 4 },
	  { { "max_pool_3x3", "max_pool_3x3", "skip_connect", "max_pool_3x3", "max_pool_3x3",
	      "skip_connect", "skip_connect", "max_pool_3x3" },
	    { 0, 1, 2, 1, 0, 2, 2, 1 }, 4, { 2, 3, 4, 5 }, 4 } },
	{ "NASNet",
	  { { "sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
	      "skip_connect", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "skip_connect" },
	    { 1, 0, 0, 0, 1, 0, 0, 0, 1, 1 }, 5, { 2, 3, 4, 5, 6 }, 5 },
	  { { "sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7", "avg_pool_3x3",
	      "sep_conv_5x5", "skip_connect", "avg_pool_3x3", "sep_conv_3x3", "max_pool_3x3" },
	    { 1, 0, 1, 0, 1, 0, 3, 2, 2, 1 }, 5, { 4, 5, 6 }, 3 } },
	{ "AmoebaNet",
	  { { "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3",
	      "avg_pool_3x3", "sep_conv_3x3", "skip_connect", "skip_connect", "avg_pool_3x3" },
	    { 0, 1, 0, 2, 0, 3, 1, 1, 0, 1 }, 5, { 4, 5, 6 }, 3 },
	  { { "avg_pool_3x3", "sep_conv_3x3", "max_pool_3x3", "sep_conv_7x7", "sep_conv_7x7",
	      "avg_pool_3x3", "max_pool_3x3", "max_pool_3x3", "conv_7x1_1x7", "sep_conv_3x3" },
	    { 0, 1, 0, 2, 0, 1, 0, 1, 0, 5 }, 5, { 3, 4, 6 }, 3 } },
};

#define N_NAMED (sizeof(named) / sizeof(named[0]))

const char *genotype_name(size_t i)
{
	return i < N_NAMED ? named[i].name : NULL;
}

static void cell_from_named(struct rxd_genotype_cell *c, const struct named_cell *n)
{
	memset(c, 0, sizeof(*c));
	c->n_nodes = n->n_nodes;
	for (int j = 0; j < 2 * n->n_nodes; j++) {
		c->op[j] = (uint8_t)genotype_op_parse(n->ops[j], strlen(n->ops[j]));
		c->input[j] = n->inputs[j];
	}
	c->n_concat = n->n_concat;
	memcpy(c->concat, n->concat, n->n_concat);
}

int genotype_named(const char *name, struct rxd_genotype *g)
{
	for (size_t i = 0; i < N_NAMED; i++) {
		if (strcmp(named[i].name, name) == 0) {
			cell_from_named(&g->normal, &named[i].normal);
			cell_from_named(&g->reduce, &named[i].reduce);
			return 0;
		}
	}
	return -ENOENT;
}

/* ---- checking a cell ---- */

/* 0, or -EINVAL with *bad the index of the offending edge (0..) or concat entry (100 +
 * index) and a sentence in err. */
static int cell_check(const struct rxd_genotype_cell *c, const char *which, int *bad,
		      struct rxd_error *err)
{
	if (c->n_nodes < 1 || c->n_nodes > RXD_GENOTYPE_MAX_NODES) {
		*bad = 0;
		error_set(err, RXD_S_INVALID_ARGUMENT, "%s has %d nodes; a cell has 1 to %d", which,
			  c->n_nodes, RXD_GENOTYPE_MAX_NODES);
		return -EINVAL;
	}
	for (int j = 0; j < 2 * c->n_nodes; j++) {
		if (c->op[j] >= RXD_OP_COUNT) {
			*bad = j;
			error_set(err, RXD_S_INVALID_ARGUMENT, "%s edge %d has an unknown "
				  "operation", which, j);
			return -EINVAL;
		}
		/* Node i (0..) sees the two cell inputs and the nodes before it. */
		if (c->input[j] >= j / 2 + 2) {
			*bad = j;
			error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s edge %d (node %d) takes input %d; it can take 0 to %d", which,
				 j, j / 2, c->input[j], j / 2 + 1);
			return -EINVAL;
		}
	}
	if (c->n_concat < 1) {
		*bad = 100;
		error_set(err, RXD_S_INVALID_ARGUMENT, "%s concatenates no node", which);
		return -EINVAL;
	}
	for (int k = 0; k < c->n_concat; k++) {
		if (c->concat[k] < 2 || c->concat[k] > c->n_nodes + 1) {
			*bad = 100 + k;
			error_set(err, RXD_S_INVALID_ARGUMENT, "%s concat entry %d is %d; the "
				  "nodes are 2 to %d", which, k, c->concat[k], c->n_nodes + 1);
			return -EINVAL;
		}
		if (k > 0 && c->concat[k] <= c->concat[k - 1]) {
			*bad = 100 + k;
			error_set(err, RXD_S_INVALID_ARGUMENT, "%s concat entries must increase "
				  "(entry %d is %d after %d)", which, k, c->concat[k],
				  c->concat[k - 1]);
			return -EINVAL;
		}
	}
	return 0;
}

int genotype_check(const struct rxd_genotype *g, struct rxd_error *err)
{
	int bad;

	if (cell_check(&g->normal, "normal", &bad, err) < 0 ||
	    cell_check(&g->reduce, "reduce", &bad, err) < 0)
		return -EINVAL;
	return 0;
}

/* ---- the parser ---- */

struct parser {
	const char *s;
	size_t len, pos;
	struct rxd_error *err;
};

static int perr(struct parser *p, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int perr(struct parser *p, size_t at, const char *fmt, ...)
{
	char msg[RXD_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	error_set(p->err, RXD_S_INVALID_ARGUMENT, "genotype text, byte %zu: %s", at, msg);
	return -EINVAL;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
				   p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
		p->pos++;
}

/* What is at the current position, for messages. */
static const char *here(const struct parser *p, char *buf, size_t len)
{
	size_t n = 0;

	if (p->pos >= p->len)
		return "the end of the text";
	buf[n++] = '\'';
	for (size_t i = p->pos; i < p->len && n + 5 < len && i < p->pos + 12; i++)
		buf[n++] = p->s[i] >= 0x20 && p->s[i] < 0x7f ? p->s[i] : '?';
	buf[n++] = '\'';
	buf[n] = 0;
	return buf;
}

static int expect(struct parser *p, const char *tok)
{
	size_t n = strlen(tok);
	char b[32];

	skip_ws(p);
	if (p->len - p->pos < n || memcmp(p->s + p->pos, tok, n) != 0)
		return perr(p, p->pos, "expected '%s', found %s", tok, here(p, b, sizeof(b)));
	p->pos += n;
	return 0;
}

static bool peek(struct parser *p, char ch)
{
	skip_ws(p);
	return p->pos < p->len && p->s[p->pos] == ch;
}

/* A small non-negative decimal integer. */
static int parse_int(struct parser *p, int *out, size_t *at)
{
	char b[32];
	long v = 0;

	skip_ws(p);
	*at = p->pos;
	if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
		return perr(p, p->pos, "expected a node index, found %s", here(p, b, sizeof(b)));
	while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
		v = v * 10 + (p->s[p->pos++] - '0');
		if (v > 255)
			return perr(p, *at, "node index too large");
	}
	*out = (int)v;
	return 0;
}

static int parse_edges(struct parser *p, struct rxd_genotype_cell *c, size_t *edge_at,
		       size_t *list_at)
{
	int n = 0, r;

	skip_ws(p);
	*list_at = p->pos;
	if ((r = expect(p, "[")) < 0)
		return r;
	if (!peek(p, ']')) {
		for (;;) {
			char b[32], q;
			size_t name_at, int_at, start;
			int op, input;

			if ((r = expect(p, "(")) < 0)
				return r;
			skip_ws(p);
			name_at = p->pos;
			if (p->pos >= p->len || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
				return perr(p, p->pos, "expected a quoted operation name, found %s",
					    here(p, b, sizeof(b)));
			q = p->s[p->pos++];
			start = p->pos;
			while (p->pos < p->len && p->s[p->pos] != q && p->s[p->pos] != '\n')
				p->pos++;
			if (p->pos >= p->len || p->s[p->pos] != q)
				return perr(p, name_at, "unterminated operation name");
			op = genotype_op_parse(p->s + start, p->pos - start);
			if (op < 0)
				return perr(p, name_at, "unknown operation '%.*s'",
					    (int)(p->pos - start > 40 ? 40 : p->pos - start),
					    p->s + start);
			p->pos++;
			if ((r = expect(p, ",")) < 0 || (r = parse_int(p, &input, &int_at)) < 0 ||
			    (r = expect(p, ")")) < 0)
				return r;
			if (n >= 2 * RXD_GENOTYPE_MAX_NODES)
				return perr(p, name_at, "more than %d edges in a cell",
					    2 * RXD_GENOTYPE_MAX_NODES);
			c->op[n] = (uint8_t)op;
			c->input[n] = (uint8_t)input;
			edge_at[n] = int_at;
			n++;
			if (peek(p, ']'))
				break;
			if ((r = expect(p, ",")) < 0)
				return r;
		}
	}
	if (n % 2 != 0)
		return perr(p, *list_at, "%d edges; a cell needs two per node", n);
	if (n == 0)
		return perr(p, *list_at, "a cell needs at least one node (two edges)");
	c->n_nodes = (uint8_t)(n / 2);
	return expect(p, "]");
}

static int parse_concat(struct parser *p, struct rxd_genotype_cell *c, size_t *at)
{
	int n = 0, v, r;
	size_t a;

	skip_ws(p);
	if (p->len - p->pos >= 5 && memcmp(p->s + p->pos, "range", 5) == 0) {
		int lo, hi;
		size_t lo_at, hi_at;

		p->pos += 5;
		if ((r = expect(p, "(")) < 0 || (r = parse_int(p, &lo, &lo_at)) < 0 ||
		    (r = expect(p, ",")) < 0 || (r = parse_int(p, &hi, &hi_at)) < 0 ||
		    (r = expect(p, ")")) < 0)
			return r;
		if (hi <= lo)
			return perr(p, hi_at, "range(%d, %d) is empty", lo, hi);
		if (hi - lo > RXD_GENOTYPE_MAX_NODES)
			return perr(p, hi_at, "range(%d, %d) has more than %d nodes", lo, hi,
				    RXD_GENOTYPE_MAX_NODES);
		for (v = lo; v < hi; v++) {
			at[n] = lo_at;
			c->concat[n++] = (uint8_t)v;
		}
		c->n_concat = (uint8_t)n;
		return 0;
	}
	if ((r = expect(p, "[")) < 0)
		return r;
	for (;;) {
		if ((r = parse_int(p, &v, &a)) < 0)
			return r;
		if (n >= RXD_GENOTYPE_MAX_NODES)
			return perr(p, a, "more than %d concat entries", RXD_GENOTYPE_MAX_NODES);
		at[n] = a;
		c->concat[n++] = (uint8_t)v;
		if (peek(p, ']'))
			break;
		if ((r = expect(p, ",")) < 0)
			return r;
	}
	c->n_concat = (uint8_t)n;
	return expect(p, "]");
}

int genotype_parse(const char *text, size_t len, struct rxd_genotype *g, struct rxd_error *err)
{
	static const char *const fields[4] = { "normal_concat", "normal", "reduce_concat",
					       "reduce" };
	struct parser p = { text, len, 0, err };
	size_t edge_at[2][2 * RXD_GENOTYPE_MAX_NODES], concat_at[2][RXD_GENOTYPE_MAX_NODES];
	size_t list_at[2];
	bool seen[4] = { false };
	struct rxd_genotype_cell *cells[2] = { &g->normal, &g->reduce };
	char b[32];
	int r;

	memset(g, 0, sizeof(*g));
	if ((r = expect(&p, "Genotype")) < 0 || (r = expect(&p, "(")) < 0)
		return r;
	for (int k = 0; k < 4; k++) {
		int f = -1;

		skip_ws(&p);
		/* The longer names first: "normal" is a prefix of "normal_concat". */
		for (int i = 0; i < 4 && f < 0; i++) {
			size_t n = strlen(fields[i]);

			if (p.len - p.pos >= n && memcmp(p.s + p.pos, fields[i], n) == 0)
				f = i;
		}
		if (f < 0)
			return perr(&p, p.pos,
				    "expected normal=, normal_concat=, reduce= or reduce_concat=, "
				    "found %s",
				    here(&p, b, sizeof(b)));
		if (seen[f])
			return perr(&p, p.pos, "%s given twice", fields[f]);
		seen[f] = true;
		p.pos += strlen(fields[f]);
		if ((r = expect(&p, "=")) < 0)
			return r;
		if (f % 2 == 1)
			r = parse_edges(&p, cells[f / 2], edge_at[f / 2], &list_at[f / 2]);
		else
			r = parse_concat(&p, cells[f / 2], concat_at[f / 2]);
		if (r < 0)
			return r;
		if (k < 3 && (r = expect(&p, ",")) < 0)
			return r;
	}
	if ((r = expect(&p, ")")) < 0)
		return r;
	skip_ws(&p);
	if (p.pos != p.len)
		return perr(&p, p.pos, "unexpected %s after the genotype", here(&p, b, sizeof(b)));
	for (int c = 0; c < 2; c++) {
		struct rxd_error cell_err;
		int bad;

		if (cell_check(cells[c], c ? "reduce" : "normal", &bad, &cell_err) < 0) {
			size_t at = bad >= 100 ? concat_at[c][bad - 100] : edge_at[c][bad];

			if (cells[c]->n_nodes < 1 || cells[c]->n_nodes > RXD_GENOTYPE_MAX_NODES)
				at = list_at[c];
			return perr(&p, at, "%s", cell_err.msg);
		}
	}
	return 0;
}

/* ---- the printer ---- */

static void cell_format(const struct rxd_genotype_cell *c, const char *name, char *buf,
			size_t len, size_t *n)
{
#define PUT(...)                                                                          \
	do {                                                                              \
		int w_ = snprintf(buf + (*n < len ? *n : len), *n < len ? len - *n : 0,   \
				  __VA_ARGS__);                                           \
		*n += (size_t)(w_ > 0 ? w_ : 0);                                          \
	} while (0)
	PUT("%s=[", name);
	for (int j = 0; j < 2 * c->n_nodes; j++)
		PUT("%s('%s', %d)", j ? ", " : "", genotype_op_name(c->op[j]), c->input[j]);
	PUT("], %s_concat=[", name);
	for (int k = 0; k < c->n_concat; k++)
		PUT("%s%d", k ? ", " : "", c->concat[k]);
	PUT("]");
#undef PUT
}

size_t genotype_format(const struct rxd_genotype *g, char *buf, size_t len)
{
	size_t n = 0;

	if (len)
		buf[0] = 0;
	n += (size_t)snprintf(buf, len, "Genotype(");
	cell_format(&g->normal, "normal", buf, len, &n);
	if (n < len)
		snprintf(buf + n, len - n, ", ");
	n += 2;
	cell_format(&g->reduce, "reduce", buf, len, &n);
	if (n < len)
		snprintf(buf + n, len - n, ")");
	n += 1;
	return n;
}
