/*
 * plexus: the CNI plugin the container runtime execs (type "plexus").
 *
 * It forwards the CNI invocation to the node agent over a unix socket and
 * prints the agent's answer: the result on stdout and exit status 0, or a
 * CNI error object on stdout and exit status 1.
 *
 * Why C: every pod ADD and DEL pays this binary's start-up. A Go binary
 * needs 6-8 ms here just for its runtime to start (docs/benchmarks.md),
 * more than the whole per-pod budget leaves for it; this one starts like
 * any static C program (~2 ms). It does little on purpose: read stdin,
 * pick four fields out of the JSON config, send two protobuf messages
 * (proto/plexus/v1/plexus.proto) and print the reply. Everything else is
 * the agent's, in Go. cni/plexus_test.go drives this binary from Go and
 * reads what it sends with the generated protobuf code; cni/config_test.go
 * compares its JSON reading with encoding/json.
 *
 * Wire: varint-length-delimited messages, one connection per call: Hello
 * and CNIRequest in one write, HelloReply and CNIResponse back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <float.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef PLEXUS_VERSION
#define PLEXUS_VERSION "dev"
#endif

#define DEFAULT_SOCKET "/run/plexus/agent.sock"
/* Bounds one framed message either way (server.MaxMessageSize in agent/server). */
#define MAX_MESSAGE ((size_t)8 << 20)
/* VERSION reads at most this much of stdin, as the Go shim did. */
#define MAX_VERSION_STDIN ((size_t)1 << 20)
/* encoding/json's nesting limit. */
#define MAX_DEPTH 10000

#define DEFAULT_CONNECT_TIMEOUT 3.0
#define DEFAULT_CALL_TIMEOUT 300.0
#define DIAL_RETRY_NS 50000000L

/* CNI error codes the shim itself produces (CNI spec, "Error codes"). */
enum {
	CODE_INCOMPATIBLE_VERSION = 1,
	CODE_INVALID_ENV = 4,
	CODE_IO_FAILURE = 5,
	CODE_DECODE_FAILURE = 6,
	CODE_TRY_AGAIN_LATER = 11,
	CODE_PLUGIN_NOT_AVAILABLE = 50,
};

/* plexus.v1 values. */
enum { API_VERSION_1 = 1 };
enum { VERB_ADD = 1, VERB_DEL, VERB_CHECK, VERB_STATUS, VERB_GC };

static const char *const supported_versions[] = {
	"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
};
#define N_SUPPORTED (sizeof(supported_versions) / sizeof(supported_versions[0]))

/* ---- byte buffers --------------------------------------------------- */

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static void out_of_memory(void)
{
	static const char msg[] = "{\"code\":5,\"msg\":\"plexus: out of memory\"}";
	ssize_t unused = write(1, msg, sizeof(msg) - 1);
	(void)unused;
	_exit(1);
}

static void buf_reserve(struct buf *b, size_t extra)
{
	if (extra > SIZE_MAX / 2 - b->len)
		out_of_memory();
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	unsigned char *p = realloc(b->p, cap);
	if (!p)
		out_of_memory();
	b->p = p;
	b->cap = cap;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_addc(struct buf *b, unsigned char c) { buf_add(b, &c, 1); }

static void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* A NUL-terminated copy, for strings passed to libc. */
static char *buf_cstr(const struct buf *b)
{
	char *s = malloc(b->len + 1);
	if (!s)
		out_of_memory();
	if (b->len)
		memcpy(s, b->p, b->len);
	s[b->len] = 0;
	return s;
}

/* ---- UTF-8 ----------------------------------------------------------- */

/*
 * utf8_seq returns the length of the valid UTF-8 sequence at s (at most n
 * bytes) and its code point, or 0 for an invalid one: overlong forms,
 * surrogates and values over U+10FFFF are invalid, as in Go.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t len;
	uint32_t v, min;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2, v = c & 0x1F, min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3, v = c & 0x0F, min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return len;
}

static void utf8_append(struct buf *b, uint32_t cp)
{
	if (cp < 0x80) {
		buf_addc(b, (unsigned char)cp);
	} else if (cp < 0x800) {
		buf_addc(b, (unsigned char)(0xC0 | cp >> 6));
		buf_addc(b, (unsigned char)(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		buf_addc(b, (unsigned char)(0xE0 | cp >> 12));
		buf_addc(b, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
		buf_addc(b, (unsigned char)(0x80 | (cp & 0x3F)));
	} else {
		buf_addc(b, (unsigned char)(0xF0 | cp >> 18));
		buf_addc(b, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
		buf_addc(b, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
		buf_addc(b, (unsigned char)(0x80 | (cp & 0x3F)));
	}
}

/* ---- JSON output ------------------------------------------------------ */

/*
 * json_quote appends s as a JSON string the way encoding/json writes one:
 * control characters, <, > and & escaped, invalid UTF-8 as U+FFFD, U+2028
 * and U+2029 escaped.
 */
static void json_quote(struct buf *b, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_addc(b, '"');
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c < 0x80) {
			switch (c) {
			case '"': buf_adds(b, "\\\""); break;
			case '\\': buf_adds(b, "\\\\"); break;
			case '\n': buf_adds(b, "\\n"); break;
			case '\r': buf_adds(b, "\\r"); break;
			case '\t': buf_adds(b, "\\t"); break;
			case '\b': buf_adds(b, "\\b"); break;
			case '\f': buf_adds(b, "\\f"); break;
			default:
				if (c < 0x20 || c == '<' || c == '>' || c == '&') {
					buf_adds(b, "\\u00");
					buf_addc(b, (unsigned char)hex[c >> 4]);
					buf_addc(b, (unsigned char)hex[c & 0xF]);
				} else {
					buf_addc(b, c);
				}
			}
			i++;
			continue;
		}
		uint32_t cp;
		size_t len = utf8_seq(s + i, n - i, &cp);
		if (len == 0) {
			buf_adds(b, "\\ufffd");
			i++;
		} else if (cp == 0x2028 || cp == 0x2029) {
			buf_printf(b, "\\u%04x", (unsigned)cp);
			i += len;
		} else {
			buf_add(b, s + i, len);
			i += len;
		}
	}
	buf_addc(b, '"');
}

static void json_quote_str(struct buf *b, const char *s)
{
	json_quote(b, (const unsigned char *)s, strlen(s));
}

static int write_all_fd(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* bytes is a string that may hold NUL bytes (JSON "\u0000" decodes to one). */
struct bytes {
	const unsigned char *p;
	size_t n;
};

static struct bytes cstr(const char *s)
{
	struct bytes b = {(const unsigned char *)s, s ? strlen(s) : 0};
	return b;
}

static struct bytes of_buf(const struct buf *b)
{
	struct bytes r = {b->p, b->len};
	return r;
}

/*
 * fail_b prints a CNI error object and returns exit status 1. cni_version
 * and details are left out when empty, as encoding/json's omitempty does.
 */
static int fail_b(struct bytes cni_version, uint64_t code, struct bytes msg, struct bytes details)
{
	struct buf b = {0};
	buf_addc(&b, '{');
	if (cni_version.n > 0) {
		buf_adds(&b, "\"cniVersion\":");
		json_quote(&b, cni_version.p, cni_version.n);
		buf_addc(&b, ',');
	}
	buf_printf(&b, "\"code\":%llu,\"msg\":", (unsigned long long)code);
	json_quote(&b, msg.p, msg.n);
	if (details.n > 0) {
		buf_adds(&b, ",\"details\":");
		json_quote(&b, details.p, details.n);
	}
	buf_addc(&b, '}');
	write_all_fd(1, b.p, b.len);
	free(b.p);
	return 1;
}

static int fail(struct bytes cni_version, uint64_t code, const char *msg, const char *details)
{
	return fail_b(cni_version, code, cstr(msg), cstr(details));
}

/* ---- JSON input ------------------------------------------------------- */

/*
 * The config reader validates the whole document like encoding/json and
 * keeps four top-level members. Keys match exactly (JSON is case
 * sensitive), the last duplicate wins, and null leaves a field unset, as
 * decoding into a Go struct does.
 */
struct netconf {
	struct buf cni_version;
	struct buf socket_path;
	double connect_timeout; /* seconds; <= 0 means the default */
	double call_timeout;
};

struct parser {
	const unsigned char *s;
	size_t n, i;
	char err[160];
};

static int perr(struct parser *p, const char *fmt, ...)
{
	if (p->err[0])
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	return -1;
}

static int perr_char(struct parser *p, const char *where)
{
	if (p->i >= p->n)
		return perr(p, "unexpected end of JSON input");
	unsigned char c = p->s[p->i];
	if (c >= 0x20 && c < 0x7F && c != '\'')
		return perr(p, "invalid character '%c' %s (offset %zu)", c, where, p->i);
	return perr(p, "invalid character 0x%02x %s (offset %zu)", c, where, p->i);
}

static void skip_ws(struct parser *p)
{
	while (p->i < p->n) {
		unsigned char c = p->s[p->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		p->i++;
	}
}

static int hex4(struct parser *p, uint32_t *v)
{
	if (p->n - p->i < 4)
		return -1;
	uint32_t r = 0;
	for (int k = 0; k < 4; k++) {
		unsigned char c = p->s[p->i + k];
		r <<= 4;
		if (c >= '0' && c <= '9')
			r |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			r |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			r |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*v = r;
	return 0;
}

/*
 * parse_string reads a string at p->i (which is '"'). With out set it
 * appends the decoded value: escapes resolved, surrogate pairs joined,
 * lone surrogates and invalid UTF-8 as U+FFFD, like encoding/json.
 */
static int parse_string(struct parser *p, struct buf *out)
{
	p->i++; /* '"' */
	for (;;) {
		if (p->i >= p->n)
			return perr(p, "unexpected end of JSON input");
		unsigned char c = p->s[p->i];
		if (c == '"') {
			p->i++;
			return 0;
		}
		if (c < 0x20)
			return perr_char(p, "in string literal");
		if (c == '\\') {
			p->i++;
			if (p->i >= p->n)
				return perr(p, "unexpected end of JSON input");
			unsigned char e = p->s[p->i++];
			uint32_t cp;
			switch (e) {
			case '"': cp = '"'; break;
			case '\\': cp = '\\'; break;
			case '/': cp = '/'; break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case 'n': cp = '\n'; break;
			case 'r': cp = '\r'; break;
			case 't': cp = '\t'; break;
			case 'u':
				if (hex4(p, &cp) < 0)
					return perr(p, "invalid \\u escape in string literal (offset %zu)", p->i);
				p->i += 4;
				if (cp >= 0xD800 && cp < 0xDC00) {
					/* A high surrogate joins a following low one. */
					uint32_t lo;
					if (p->n - p->i >= 6 && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
						size_t save = p->i;
						p->i += 2;
						if (hex4(p, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
							p->i += 4;
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						} else {
							p->i = save;
							cp = 0xFFFD;
						}
					} else {
						cp = 0xFFFD;
					}
				} else if (cp >= 0xDC00 && cp < 0xE000) {
					cp = 0xFFFD;
				}
				break;
			default:
				p->i--;
				return perr_char(p, "in string escape code");
			}
			if (out)
				utf8_append(out, cp);
			continue;
		}
		if (c < 0x80) {
			if (out)
				buf_addc(out, c);
			p->i++;
			continue;
		}
		uint32_t cp;
		size_t len = utf8_seq(p->s + p->i, p->n - p->i, &cp);
		if (len == 0) {
			if (out)
				utf8_append(out, 0xFFFD);
			p->i++;
		} else {
			if (out)
				buf_add(out, p->s + p->i, len);
			p->i += len;
		}
	}
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* parse_number reads a JSON number; with out set, its value as a double. */
static int parse_number(struct parser *p, double *out)
{
	size_t start = p->i;
	if (p->i < p->n && p->s[p->i] == '-')
		p->i++;
	if (p->i >= p->n)
		return perr(p, "unexpected end of JSON input");
	if (p->s[p->i] == '0') {
		p->i++;
	} else if (is_digit(p->s[p->i])) {
		while (p->i < p->n && is_digit(p->s[p->i]))
			p->i++;
	} else {
		return perr_char(p, "in numeric literal");
	}
	if (p->i < p->n && p->s[p->i] == '.') {
		p->i++;
		if (p->i >= p->n)
			return perr(p, "unexpected end of JSON input");
		if (!is_digit(p->s[p->i]))
			return perr_char(p, "after decimal point in numeric literal");
		while (p->i < p->n && is_digit(p->s[p->i]))
			p->i++;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (p->i >= p->n)
			return perr(p, "unexpected end of JSON input");
		if (!is_digit(p->s[p->i]))
			return perr_char(p, "in exponent of numeric literal");
		while (p->i < p->n && is_digit(p->s[p->i]))
			p->i++;
	}
	if (out) {
		size_t len = p->i - start;
		char *tmp = malloc(len + 1);
		if (!tmp)
			out_of_memory();
		memcpy(tmp, p->s + start, len);
		tmp[len] = 0;
		double v = strtod(tmp, NULL);
		free(tmp);
		if (v > DBL_MAX || v < -DBL_MAX)
			return perr(p, "number out of range (offset %zu)", start);
		*out = v;
	}
	return 0;
}

static int parse_literal(struct parser *p, const char *word)
{
	size_t len = strlen(word);
	for (size_t k = 0; k < len; k++) {
		if (p->i >= p->n)
			return perr(p, "unexpected end of JSON input");
		if (p->s[p->i] != (unsigned char)word[k])
			return perr_char(p, "in literal (expecting a JSON value)");
		p->i++;
	}
	return 0;
}

/* parse_key reads an object key and its colon; with out set, the decoded key. */
static int parse_key(struct parser *p, struct buf *out)
{
	skip_ws(p);
	if (p->i >= p->n || p->s[p->i] != '"')
		return perr_char(p, "looking for beginning of object key string");
	if (parse_string(p, out) < 0)
		return -1;
	skip_ws(p);
	if (p->i >= p->n || p->s[p->i] != ':')
		return perr_char(p, "after object key");
	p->i++;
	return 0;
}

/*
 * parse_value validates any JSON value at p->i (after white space), nested
 * base levels deep. Containers are walked with an explicit stack of their
 * kinds, so deep nesting cannot exhaust the C stack.
 */
static int parse_value(struct parser *p, int base)
{
	char stack[MAX_DEPTH];
	int depth = 0;
	for (;;) {
		/* A value. */
		skip_ws(p);
		if (p->i >= p->n)
			return perr(p, "unexpected end of JSON input");
		unsigned char c = p->s[p->i];
		int opened = 0;
		if (c == '{' || c == '[') {
			if (base + depth >= MAX_DEPTH)
				return perr(p, "exceeded max depth");
			stack[depth++] = (char)c;
			p->i++;
			skip_ws(p);
			if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) {
				p->i++;
				depth--;
			} else {
				opened = 1;
			}
		} else if (c == '"') {
			if (parse_string(p, NULL) < 0)
				return -1;
		} else if (c == '-' || is_digit(c)) {
			if (parse_number(p, NULL) < 0)
				return -1;
		} else if (c == 't') {
			if (parse_literal(p, "true") < 0)
				return -1;
		} else if (c == 'f') {
			if (parse_literal(p, "false") < 0)
				return -1;
		} else if (c == 'n') {
			if (parse_literal(p, "null") < 0)
				return -1;
		} else {
			return perr_char(p, "looking for beginning of value");
		}
		if (opened && stack[depth - 1] == '{') {
			/* First key of a non-empty object. */
			if (parse_key(p, NULL) < 0)
				return -1;
			continue;
		}
		if (opened)
			continue; /* first element of a non-empty array */
		/* After a complete value: close containers or move to the next member. */
		for (;;) {
			if (depth == 0)
				return 0;
			skip_ws(p);
			if (p->i >= p->n)
				return perr(p, "unexpected end of JSON input");
			char kind = stack[depth - 1];
			c = p->s[p->i];
			if (c == ',') {
				p->i++;
				if (kind == '{' && parse_key(p, NULL) < 0)
					return -1;
				break;
			}
			if ((kind == '{' && c == '}') || (kind == '[' && c == ']')) {
				p->i++;
				depth--;
				continue;
			}
			return perr_char(p, kind == '{' ? "after object key:value pair" : "after array element");
		}
	}
}

enum field { F_OTHER, F_CNI_VERSION, F_SOCKET_PATH, F_CONNECT_TIMEOUT, F_CALL_TIMEOUT };

static enum field field_of(const struct buf *key)
{
	static const struct {
		const char *name;
		enum field f;
	} names[] = {
		{"cniVersion", F_CNI_VERSION},
		{"socketPath", F_SOCKET_PATH},
		{"connectTimeoutSeconds", F_CONNECT_TIMEOUT},
		{"timeoutSeconds", F_CALL_TIMEOUT},
	};
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		size_t len = strlen(names[k].name);
		if (key->len == len && memcmp(key->p, names[k].name, len) == 0)
			return names[k].f;
	}
	return F_OTHER;
}

static int is_null_at(struct parser *p)
{
	return p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0;
}

/* parse_netconf reads the plexus network configuration from s. */
static int parse_netconf(struct parser *p, struct netconf *nc)
{
	struct buf key = {0};
	int rc = -1;
	skip_ws(p);
	if (p->i >= p->n) {
		perr(p, "unexpected end of JSON input");
		goto out;
	}
	if (p->s[p->i] != '{') {
		/* Validate first, so malformed input gets the syntax error. */
		if (parse_value(p, 0) == 0)
			perr(p, "the network configuration is not a JSON object");
		goto out;
	}
	p->i++;
	skip_ws(p);
	if (p->i < p->n && p->s[p->i] == '}') {
		p->i++;
	} else {
		for (;;) {
			key.len = 0;
			if (parse_key(p, &key) < 0)
				goto out;
			skip_ws(p);
			enum field f = field_of(&key);
			if (f != F_OTHER && is_null_at(p)) {
				p->i += 4;
			} else if (f == F_CNI_VERSION || f == F_SOCKET_PATH) {
				if (p->i >= p->n || p->s[p->i] != '"') {
					if (parse_value(p, 1) == 0)
						perr(p, "field %s must be a string", f == F_CNI_VERSION ? "cniVersion" : "socketPath");
					goto out;
				}
				struct buf *dst = f == F_CNI_VERSION ? &nc->cni_version : &nc->socket_path;
				dst->len = 0;
				if (parse_string(p, dst) < 0)
					goto out;
			} else if (f == F_CONNECT_TIMEOUT || f == F_CALL_TIMEOUT) {
				unsigned char c = p->i < p->n ? p->s[p->i] : 0;
				if (c != '-' && !is_digit(c)) {
					if (parse_value(p, 1) == 0)
						perr(p, "field %s must be a number", f == F_CONNECT_TIMEOUT ? "connectTimeoutSeconds" : "timeoutSeconds");
					goto out;
				}
				if (parse_number(p, f == F_CONNECT_TIMEOUT ? &nc->connect_timeout : &nc->call_timeout) < 0)
					goto out;
			} else if (parse_value(p, 1) < 0) {
				goto out;
			}
			skip_ws(p);
			if (p->i < p->n && p->s[p->i] == ',') {
				p->i++;
				continue;
			}
			if (p->i < p->n && p->s[p->i] == '}') {
				p->i++;
				break;
			}
			perr_char(p, "after object key:value pair");
			goto out;
		}
	}
	skip_ws(p);
	if (p->i < p->n) {
		perr_char(p, "after top-level value");
		goto out;
	}
	rc = 0;
out:
	free(key.p);
	return rc;
}

/* ---- protobuf wire ------------------------------------------------------ */

static void pb_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_addc(b, (unsigned char)(v | 0x80));
		v >>= 7;
	}
	buf_addc(b, (unsigned char)v);
}

static void pb_uint(struct buf *b, unsigned num, uint64_t v)
{
	if (v == 0)
		return; /* proto3 default */
	pb_varint(b, (uint64_t)num << 3 | 0);
	pb_varint(b, v);
}

static void pb_bytes(struct buf *b, unsigned num, const void *p, size_t n)
{
	if (n == 0)
		return;
	pb_varint(b, (uint64_t)num << 3 | 2);
	pb_varint(b, n);
	buf_add(b, p, n);
}

static void pb_str(struct buf *b, unsigned num, const char *s)
{
	if (s)
		pb_bytes(b, num, s, strlen(s));
}

static void frame(struct buf *out, const struct buf *msg)
{
	pb_varint(out, msg->len);
	buf_add(out, msg->p, msg->len);
}

/* A decoded field: its number, wire type, varint value or payload. */
struct pb_field {
	uint64_t num;
	unsigned type;
	uint64_t v;
	const unsigned char *raw;
	size_t raw_len;
};

static int pb_get_varint(const unsigned char *b, size_t n, size_t *i, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned k = 0; k < 10; k++) {
		if (*i >= n)
			return -1;
		unsigned char c = b[(*i)++];
		if (k == 9 && c > 1)
			return -1;
		r |= (uint64_t)(c & 0x7F) << (7 * k);
		if (c < 0x80) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/*
 * pb_get_tag reads a field tag. Field numbers run from 1 to 2^29-1; inside
 * a group being skipped protobuf-go allows up to 2^31-1, and so do we
 * (max_num), so both accept the same messages.
 */
static int pb_get_tag(const unsigned char *b, size_t n, size_t *i, uint64_t *num, unsigned *type,
		      uint64_t max_num)
{
	uint64_t v;
	if (pb_get_varint(b, n, i, &v) < 0)
		return -1;
	*num = v >> 3;
	*type = (unsigned)(v & 7);
	if (*num == 0 || *num > max_num)
		return -1;
	return 0;
}

#define PB_MAX_FIELD ((1u << 29) - 1)
#define PB_MAX_FIELD_IN_GROUP ((uint64_t)INT32_MAX)
#define PB_MAX_GROUP_DEPTH 10000

/*
 * pb_next decodes the field at *i. Fixed-size fields and groups are
 * skipped over (unknown fields must be); groups are walked with a counter
 * of open ones per field number kept on the heap, not by recursion.
 */
static int pb_next(const unsigned char *b, size_t n, size_t *i, struct pb_field *f)
{
	if (pb_get_tag(b, n, i, &f->num, &f->type, PB_MAX_FIELD) < 0)
		return -1;
	f->v = 0, f->raw = NULL, f->raw_len = 0;
	switch (f->type) {
	case 0:
		return pb_get_varint(b, n, i, &f->v);
	case 2: {
		uint64_t len;
		if (pb_get_varint(b, n, i, &len) < 0 || len > n - *i)
			return -1;
		f->raw = b + *i;
		f->raw_len = (size_t)len;
		*i += (size_t)len;
		return 0;
	}
	case 1:
		if (n - *i < 8)
			return -1;
		*i += 8;
		return 0;
	case 5:
		if (n - *i < 4)
			return -1;
		*i += 4;
		return 0;
	case 3: {
		struct buf open = {0}; /* field numbers of open groups, as uint64_t */
		buf_add(&open, &f->num, sizeof(f->num));
		int rc = -1;
		while (open.len > 0) {
			uint64_t num, v;
			unsigned type;
			if (pb_get_tag(b, n, i, &num, &type, PB_MAX_FIELD_IN_GROUP) < 0)
				break;
			if (type == 4) {
				uint64_t top;
				memcpy(&top, open.p + open.len - sizeof(top), sizeof(top));
				if (top != num)
					break;
				open.len -= sizeof(top);
				if (open.len == 0)
					rc = 0;
				continue;
			}
			if (type == 3) {
				/* protobuf-go's recursion limit: 10001 nested groups. */
				if (open.len / sizeof(num) > PB_MAX_GROUP_DEPTH)
					break;
				buf_add(&open, &num, sizeof(num));
			} else if (type == 0) {
				if (pb_get_varint(b, n, i, &v) < 0)
					break;
			} else if (type == 2) {
				if (pb_get_varint(b, n, i, &v) < 0 || v > n - *i)
					break;
				*i += (size_t)v;
			} else if (type == 1 && n - *i >= 8) {
				*i += 8;
			} else if (type == 5 && n - *i >= 4) {
				*i += 4;
			} else {
				break;
			}
		}
		free(open.p);
		return rc;
	}
	}
	return -1;
}

struct pb_error {
	int set;
	uint64_t code;
	const unsigned char *msg, *details;
	size_t msg_len, details_len;
};

/* decode_error merges a plexus.v1.Error into e. */
static int decode_error(const unsigned char *b, size_t n, struct pb_error *e)
{
	size_t i = 0;
	struct pb_field f;
	e->set = 1;
	while (i < n) {
		if (pb_next(b, n, &i, &f) < 0)
			return -1;
		if (f.num == 1 && f.type == 0)
			e->code = (uint32_t)f.v; /* uint32 field, truncated as protobuf does */
		else if (f.num == 2 && f.type == 2)
			e->msg = f.raw, e->msg_len = f.raw_len;
		else if (f.num == 3 && f.type == 2)
			e->details = f.raw, e->details_len = f.raw_len;
	}
	return 0;
}

/*
 * decode_reply reads a HelloReply (error in field 3) or a CNIResponse
 * (result in field 1, error in field 2).
 */
static int decode_reply(const struct buf *m, unsigned result_field, unsigned error_field,
			const unsigned char **result, size_t *result_len, struct pb_error *e)
{
	size_t i = 0;
	struct pb_field f;
	while (i < m->len) {
		if (pb_next(m->p, m->len, &i, &f) < 0)
			return -1;
		if (f.type != 2)
			continue;
		if (result_field && f.num == result_field) {
			*result = f.raw;
			*result_len = f.raw_len;
		} else if (f.num == error_field) {
			if (decode_error(f.raw, f.raw_len, e) < 0)
				return -1;
		}
	}
	return 0;
}

/* ---- socket ------------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left until deadline, for poll; at least 1 while not past. */
static int ms_left(double deadline)
{
	double left = deadline - now();
	if (left <= 0)
		return 0;
	if (left > 86400.0)
		return 86400 * 1000;
	return (int)(left * 1000.0) + 1; /* rounded up: poll must not wake early */
}

static void describe_duration(char *out, size_t n, double seconds)
{
	snprintf(out, n, "%gs", seconds);
}

/* dial connects to the agent's socket, retrying while it is absent or
 * refuses (the agent is starting or restarting) until timeout. */
static int dial(const char *path, double timeout, struct buf *err)
{
	size_t len = strlen(path);
	if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		buf_adds(err, "invalid socket path ");
		json_quote_str(err, path);
		buf_adds(err, ": too long");
		return -1;
	}
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len);
	double deadline = now() + timeout;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			buf_printf(err, "socket: %s", strerror(errno));
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		int retry = e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == EINTR;
		if (!retry || now() > deadline) {
			char d[32];
			describe_duration(d, sizeof(d), timeout);
			buf_printf(err, "connect to agent socket %s (waited %s): %s", path, d, strerror(e));
			return -1;
		}
		struct timespec ts = {0, DIAL_RETRY_NS};
		nanosleep(&ts, NULL);
	}
}

static int send_all(int fd, const unsigned char *p, size_t n, double deadline, struct buf *err)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w >= 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			buf_printf(err, "send request: %s", strerror(errno));
			return -1;
		}
		struct pollfd pfd = {fd, POLLOUT, 0};
		int ms = ms_left(deadline);
		if (ms == 0 || (poll(&pfd, 1, ms) == 0 && ms_left(deadline) == 0)) {
			buf_adds(err, "send request: timed out");
			return -1;
		}
	}
	return 0;
}

/* reader buffers what the agent sends. */
struct reader {
	int fd;
	double deadline;
	unsigned char chunk[65536];
	size_t off, len;
};

/* fill reads more from the socket; -1 with err set on error, timeout or EOF. */
static int fill(struct reader *r, struct buf *err, const char *what)
{
	for (;;) {
		ssize_t got = recv(r->fd, r->chunk, sizeof(r->chunk), 0);
		if (got > 0) {
			r->off = 0;
			r->len = (size_t)got;
			return 0;
		}
		if (got == 0) {
			buf_printf(err, "read %s: unexpected EOF", what);
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			buf_printf(err, "read %s: %s", what, strerror(errno));
			return -1;
		}
		struct pollfd pfd = {r->fd, POLLIN, 0};
		int ms = ms_left(r->deadline);
		if (ms == 0 || (poll(&pfd, 1, ms) == 0 && ms_left(r->deadline) == 0)) {
			buf_printf(err, "read %s: timed out", what);
			return -1;
		}
	}
}

/* read_frame reads one varint-length-prefixed message into msg. */
static int read_frame(struct reader *r, struct buf *msg, struct buf *err, const char *what)
{
	uint64_t n = 0;
	for (unsigned shift = 0;; shift += 7) {
		if (shift >= 64) {
			buf_printf(err, "read %s: frame length varint overflows", what);
			return -1;
		}
		if (r->off == r->len && fill(r, err, what) < 0)
			return -1;
		unsigned char c = r->chunk[r->off++];
		n |= (uint64_t)(c & 0x7F) << shift;
		if (c < 0x80)
			break;
	}
	if (n > MAX_MESSAGE) {
		buf_printf(err, "read %s: frame of %llu bytes exceeds the %zu byte limit", what,
			   (unsigned long long)n, MAX_MESSAGE);
		return -1;
	}
	msg->len = 0;
	buf_reserve(msg, (size_t)n);
	while (msg->len < n) {
		if (r->off == r->len && fill(r, err, what) < 0)
			return -1;
		size_t take = r->len - r->off;
		if (take > n - msg->len)
			take = (size_t)(n - msg->len);
		buf_add(msg, r->chunk + r->off, take);
		r->off += take;
	}
	return 0;
}

/* ---- the invocation -------------------------------------------------------- */

/* read_stdin reads up to limit+1 bytes, so callers can tell "too large". */
static int read_stdin(struct buf *b, size_t limit)
{
	for (;;) {
		if (b->len > limit)
			return 0;
		buf_reserve(b, 65536);
		size_t room = b->cap - b->len;
		if (room > limit + 1 - b->len)
			room = limit + 1 - b->len;
		ssize_t got = read(0, b->p + b->len, room);
		if (got == 0)
			return 0;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b->len += (size_t)got;
	}
}

static int is_supported(const struct buf *v)
{
	for (size_t k = 0; k < N_SUPPORTED; k++) {
		size_t len = strlen(supported_versions[k]);
		if (v->len == len && memcmp(v->p, supported_versions[k], len) == 0)
			return 1;
	}
	return 0;
}

static void supported_list(struct buf *b, int quoted)
{
	buf_addc(b, '[');
	for (size_t k = 0; k < N_SUPPORTED; k++) {
		if (k > 0)
			buf_adds(b, quoted ? "," : " ");
		if (quoted)
			json_quote_str(b, supported_versions[k]);
		else
			buf_adds(b, supported_versions[k]);
	}
	buf_addc(b, ']');
}

static int print_version(void)
{
	/* VERSION may carry a config; only its cniVersion matters. */
	struct buf in = {0};
	struct netconf nc = {0};
	struct bytes answer = cstr("1.1.0");
	if (read_stdin(&in, MAX_VERSION_STDIN) == 0 && in.len > 0 && in.len <= MAX_VERSION_STDIN) {
		struct parser p = {in.p, in.len, 0, {0}};
		if (parse_netconf(&p, &nc) == 0 && nc.cni_version.len > 0) {
			answer = of_buf(&nc.cni_version);
			if (!is_supported(&nc.cni_version)) {
				struct buf msg = {0};
				buf_adds(&msg, "incompatible CNI versions: config is ");
				json_quote(&msg, answer.p, answer.n);
				buf_adds(&msg, ", plugin supports ");
				supported_list(&msg, 0);
				return fail_b(answer, CODE_INCOMPATIBLE_VERSION, of_buf(&msg), cstr(NULL));
			}
		}
	}
	struct buf out = {0};
	buf_adds(&out, "{\"cniVersion\":");
	json_quote(&out, answer.p, answer.n);
	buf_adds(&out, ",\"supportedVersions\":");
	supported_list(&out, 1);
	buf_addc(&out, '}');
	return write_all_fd(1, out.p, out.len) < 0 ? 1 : 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v ? v : "";
}

static int verb_of(const char *command)
{
	static const char *const names[] = {"ADD", "DEL", "CHECK", "STATUS", "GC"};
	for (int k = 0; k < 5; k++)
		if (strcmp(command, names[k]) == 0)
			return VERB_ADD + k;
	return 0;
}

int main(void)
{
	/* A runtime that closes our stdout early gets EPIPE, not a kill. */
	signal(SIGPIPE, SIG_IGN);

	const char *command = env("CNI_COMMAND");
	if (strcmp(command, "VERSION") == 0)
		return print_version();

	struct buf config = {0};
	if (read_stdin(&config, MAX_MESSAGE) < 0)
		return fail(cstr(NULL), CODE_IO_FAILURE, "read network configuration from stdin", strerror(errno));
	if (config.len > MAX_MESSAGE) {
		char d[64];
		snprintf(d, sizeof(d), "over %zu bytes", MAX_MESSAGE);
		return fail(cstr(NULL), CODE_DECODE_FAILURE, "network configuration too large", d);
	}
	struct netconf nc = {0};
	struct parser p = {config.p, config.len, 0, {0}};
	if (parse_netconf(&p, &nc) < 0)
		return fail(cstr(NULL), CODE_DECODE_FAILURE, "decode network configuration from stdin", p.err);
	struct bytes cni_version = of_buf(&nc.cni_version);

	int verb = verb_of(command);
	if (verb == 0) {
		struct buf msg = {0};
		buf_adds(&msg, "unknown CNI_COMMAND ");
		json_quote_str(&msg, command);
		return fail_b(cni_version, CODE_INVALID_ENV, of_buf(&msg), cstr(NULL));
	}

	/* The request: Hello and CNIRequest, framed, in one write. */
	struct buf hello = {0}, req = {0}, out = {0}, msg = {0}, err = {0};
	pb_uint(&hello, 1, API_VERSION_1);
	pb_str(&hello, 2, PLEXUS_VERSION);
	pb_uint(&req, 1, (uint64_t)verb);
	pb_str(&req, 2, env("CNI_CONTAINERID"));
	pb_str(&req, 3, env("CNI_NETNS"));
	pb_str(&req, 4, env("CNI_IFNAME"));
	pb_str(&req, 5, env("CNI_ARGS"));
	pb_str(&req, 6, env("CNI_PATH"));
	pb_bytes(&req, 7, config.p, config.len);
	frame(&out, &hello);
	frame(&out, &req);

	/* STATUS must say "plugin not available" while the agent is down. */
	uint64_t down_code = verb == VERB_STATUS ? CODE_PLUGIN_NOT_AVAILABLE : CODE_TRY_AGAIN_LATER;
	const char *socket_path = DEFAULT_SOCKET;
	if (nc.socket_path.len > 0) {
		if (memchr(nc.socket_path.p, 0, nc.socket_path.len) != NULL) {
			buf_adds(&err, "invalid socket path: contains a NUL byte");
			goto down;
		}
		socket_path = buf_cstr(&nc.socket_path);
	}
	double connect_timeout = nc.connect_timeout > 0 ? nc.connect_timeout : DEFAULT_CONNECT_TIMEOUT;
	double call_timeout = nc.call_timeout > 0 ? nc.call_timeout : DEFAULT_CALL_TIMEOUT;
	static struct reader r;
	r.fd = dial(socket_path, connect_timeout, &err);
	if (r.fd < 0)
		goto down;
	r.deadline = now() + call_timeout;
	if (send_all(r.fd, out.p, out.len, r.deadline, &err) < 0)
		goto down;

	const unsigned char *result = NULL;
	size_t result_len = 0;
	struct pb_error e = {0};
	if (read_frame(&r, &msg, &err, "handshake") < 0)
		goto down;
	if (decode_reply(&msg, 0, 3, NULL, NULL, &e) < 0) {
		buf_adds(&err, "decode HelloReply: malformed message");
		goto down;
	}
	if (!e.set) {
		/* Accepted; the answer follows. */
		if (read_frame(&r, &msg, &err, "response") < 0)
			goto down;
		if (decode_reply(&msg, 1, 2, &result, &result_len, &e) < 0) {
			buf_adds(&err, "decode CNIResponse: malformed message");
			goto down;
		}
	}
	close(r.fd);
	if (e.set) {
		/* The agent's own error (or its refusal of this shim): an answer,
		 * not an outage. */
		struct bytes msg_b = {e.msg, e.msg_len}, details_b = {e.details, e.details_len};
		return fail_b(cni_version, e.code, msg_b, details_b);
	}
	if (write_all_fd(1, result ? result : (const unsigned char *)"", result_len) < 0) {
		fprintf(stderr, "plexus: write result: %s\n", strerror(errno));
		return 1;
	}
	return 0;

down:
	return fail_b(cni_version, down_code, cstr("plexus agent not available"), of_buf(&err));
}
