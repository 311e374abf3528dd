/*
 * plexus, the CNI plugin the runtime execs (type "plexus"), is a pipe: CNI_*
 * and stdin go to the node agent unparsed, and what the agent says to print
 * and exit with comes back out as it is. What and why C: cni/README.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
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
#define MAX_MESSAGE ((size_t)8 << 20) /* one framed message, as server.MaxMessageSize */
#define DEFAULT_CONNECT_TIMEOUT 3.0
#define DEFAULT_CALL_TIMEOUT 300.0

static const char version_reply[] = "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":"
				    "[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}";

struct buf { unsigned char *p; size_t len, cap; };

static void grow(struct buf *b, size_t n)
{
	static const char oom[] = "{\"code\":5,\"msg\":\"plexus: out of memory\"}";
	size_t cap = b->cap ? b->cap : 4096;
	if (b->len + n <= b->cap) return;
	while (cap < b->len + n) cap *= 2;
	if (!(b->p = realloc(b->p, cap))) _exit(write(1, oom, sizeof(oom) - 1) ? 1 : 1);
	b->cap = cap;
}

static void add(struct buf *b, const void *p, size_t n)
{
	grow(b, n);
	if (n) memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void addc(struct buf *b, unsigned char c) { add(b, &c, 1); }

static void addf(struct buf *b, const char *fmt, ...)
{
	char s[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s, sizeof(s), fmt, ap);
	va_end(ap);
	add(b, s, strlen(s));
}

static int in(const char *set, unsigned char c) { return c && strchr(set, c); }

/* add_escaped appends s for a JSON string, keeping it ASCII: bytes outside
 * printable ASCII as \u00XX, one each, so they stay recoverable. */
static void add_escaped(struct buf *b, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] >= 0x7F || s[i] == '"' || s[i] == '\\') addf(b, "\\u%04x", s[i]);
		else addc(b, s[i]);
}

static int write_all(int fd, const void *p, size_t n)
{
	for (ssize_t w; n > 0; p = (const char *)p + w, n -= (size_t)w)
		if ((w = write(fd, p, n)) < 0 && (w = 0, errno != EINTR)) return -1;
	return 0;
}

/* ---- the tolerant scan ---------------------------------------------------
 * It looks for the top-level keys socketPath (a string) and the timeouts
 * (numbers), counting brackets and passing over strings; it validates
 * nothing (that is the agent's) and stops where it cannot go on, keeping
 * what it found. Keys compare as written: an escaped one is another key. */

#define WS(s, n, i) while (i < n && in(" \t\r\n", s[i])) i++

/* hex4 reads the 4 hex digits at s. */
static int hex4(const unsigned char *s, uint32_t *v)
{
	char h[5] = {0}, *end;
	memcpy(h, s, 4);
	*v = (uint32_t)strtoul(h, &end, 16);
	return strspn(h, "0123456789abcdefABCDEF") == 4 ? 0 : -1;
}

static void utf8_put(struct buf *b, uint32_t v)
{
	unsigned char u[4];
	size_t n = v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4;
	for (size_t k = n - 1; k > 0; k--, v >>= 6) u[k] = (unsigned char)(0x80 | (v & 0x3F));
	u[0] = (unsigned char)(n == 1 ? v : 0xFF00 >> n | v);
	add(b, u, n);
}

/* str passes over the string at s[*i], decoding it into out if set as
 * encoding/json does (surrogate pairs joined, lone ones as U+FFFD). */
static int str(const unsigned char *s, size_t n, size_t *i, struct buf *out)
{
	static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
	for (++*i; *i < n; ++*i) {
		unsigned char c = s[*i];
		uint32_t v, lo;
		if (c == '"') return ++*i, 0;
		if (c != '\\') {
			if (out) addc(out, c);
			continue;
		}
		if (++*i >= n) return -1;
		if (in(esc, c = s[*i])) {
			if (out) addc(out, (unsigned char)val[strchr(esc, c) - esc]);
			continue;
		}
		if (c != 'u' || n - *i < 5 || hex4(s + *i + 1, &v) < 0) return -1;
		*i += 4;
		if (v >= 0xD800 && v < 0xDC00 && n - *i >= 7 && s[*i + 1] == '\\' && s[*i + 2] == 'u' &&
		    hex4(s + *i + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000)
			v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00), *i += 6;
		else if (v >= 0xD800 && v < 0xE000) v = 0xFFFD;
		if (out) utf8_put(out, v);
	}
	return -1;
}

#define KEY(name) (klen == sizeof(name) - 1 && memcmp(s + k0, name, klen) == 0)

static void scan(const unsigned char *s, size_t n, struct buf *path, double *connect, double *call)
{
	size_t i = 0, depth = 0, k0, klen;
	int key = 0; /* a string here is a key of the top-level object */
	WS(s, n, i);
	while (i < n && (depth > 0 || s[i] == '{')) {
		unsigned char c = s[i];
		if (c != '"') {
			depth += c == '{' || c == '[' ? 1 : 0;
			if ((c == '}' || c == ']') && --depth == 0) return;
			if (!in(" \t\r\n", c)) key = depth == 1 && (c == '{' || c == ',');
			i++;
			continue;
		}
		k0 = i + 1;
		if (str(s, n, &i, NULL) < 0) return;
		if (!key) continue;
		klen = i - 1 - k0, key = 0;
		WS(s, n, i);
		if (i >= n || s[i++] != ':') return;
		WS(s, n, i);
		double *t = KEY("connectTimeoutSeconds") ? connect : KEY("timeoutSeconds") ? call : NULL;
		if (KEY("socketPath") && i < n && s[i] == '"') {
			path->len = 0;
			if (str(s, n, &i, path) < 0) return (void)(path->len = 0);
		} else if (t && i < n && in("-0123456789", s[i])) {
			char num[64], *end;
			size_t j = 0;
			while (i < n && j < sizeof(num) - 1 && in("0123456789+-.eE", s[i]))
				num[j++] = (char)s[i++];
			num[j] = 0;
			double v = strtod(num, &end);
			if (*end || j == sizeof(num) - 1) return;
			*t = v;
		}
	}
}

/* ---- protobuf wire ------------------------------------------------------ */

static void put_varint(struct buf *b, uint64_t v)
{
	for (; v >= 0x80; v >>= 7) addc(b, (unsigned char)(v | 0x80));
	addc(b, (unsigned char)v);
}

static void put_uint(struct buf *b, unsigned num, uint64_t v)
{
	if (v) put_varint(b, num << 3), put_varint(b, v);
}

static void put_bytes(struct buf *b, unsigned num, const char *p, size_t n)
{
	if (p && n) put_varint(b, num << 3 | 2), put_varint(b, n), add(b, p, n);
}

static void put_env(struct buf *b, unsigned num, const char *name)
{
	const char *v = getenv(name);
	put_bytes(b, num, v, v ? strlen(v) : 0);
}

static int get_varint(const unsigned char *b, size_t n, size_t *i, uint64_t *v)
{
	*v = 0;
	for (unsigned k = 0; k < 10 && *i < n; k++) {
		unsigned char c = b[(*i)++];
		*v |= (uint64_t)(c & 0x7F) << (7 * k);
		if (c < 0x80) return k == 9 && c > 1 ? -1 : 0;
	}
	return -1;
}

/* The fields of a reply the shim reads. */
struct reply {
	const unsigned char *out;
	size_t out_len;
	uint64_t code, flag;
};

/*
 * decode reads the bytes field out_num, the uint32 code_num and the bool
 * flag_num of m (0: none) and skips every other field. Groups are refused:
 * proto3 has none, so no agent sends one.
 */
static int decode(const struct buf *m, unsigned out_num, unsigned code_num, unsigned flag_num, struct reply *r)
{
	for (size_t i = 0; i < m->len;) {
		uint64_t tag, v = 0, num, type;
		if (get_varint(m->p, m->len, &i, &tag) < 0 || (num = tag >> 3) == 0 || num >= 1u << 29)
			return -1;
		if ((type = tag & 7) == 1 || type == 5) v = type == 1 ? 8 : 4;
		else if ((type != 0 && type != 2) || get_varint(m->p, m->len, &i, &v) < 0) return -1;
		if (type != 0 && v > m->len - i) return -1;
		if (type != 0) i += (size_t)v;
		if (num == out_num && type == 2) r->out = m->p + i - v, r->out_len = (size_t)v;
		if (num == code_num && type == 0)
			r->code = (uint32_t)v; /* a uint32 field, truncated as protobuf does */
		if (num == flag_num && type == 0) r->flag = v;
	}
	return 0;
}

/* ---- the socket --------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ready waits for events on fd; -1 once past deadline. */
static int ready(int fd, short events, double deadline)
{
	for (double left; (left = deadline - now()) > 0;) {
		struct pollfd pfd = {fd, events, 0};
		if (poll(&pfd, 1, left > 86400 ? 86400000 : (int)(left * 1000) + 1) > 0) return 0;
	}
	return -1;
}

/* dial connects, retrying while the socket is absent or refuses (the agent
 * is starting) until timeout; errno says why not. */
static int dial(const char *path, double timeout)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	double deadline = now() + timeout;
	memcpy(sa.sun_path, path, strlen(path));
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), e;
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) return fd;
		e = errno;
		close(fd);
		if (!(e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == EINTR) || now() > deadline)
			return errno = e, -1;
		nanosleep(&(struct timespec){0, 50000000L}, NULL);
	}
}

/* io sends or receives exactly n bytes before deadline; errno says why not
 * (0 for an early EOF). */
static int io(int fd, int sending, unsigned char *p, size_t n, double deadline)
{
	while (n > 0) {
		ssize_t k = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
		if (k > 0) p += k, n -= (size_t)k;
		else if (k == 0) return errno = 0, -1;
		else if (errno == EAGAIN && ready(fd, sending ? POLLOUT : POLLIN, deadline) < 0)
			return errno = ETIMEDOUT, -1;
		else if (errno != EAGAIN && errno != EINTR) return -1;
	}
	return 0;
}

/* read_frame reads one varint-length-prefixed message into msg. */
static const char *read_frame(int fd, double deadline, struct buf *msg)
{
	static char why[96];
	uint64_t n = 0;
	unsigned char c = 0x80;
	for (unsigned shift = 0; c >= 0x80; shift += 7) {
		if (shift >= 64) return "frame length varint overflows";
		if (io(fd, 0, &c, 1, deadline) < 0) return errno ? strerror(errno) : "unexpected EOF";
		n |= (uint64_t)(c & 0x7F) << shift;
	}
	if (n > MAX_MESSAGE) {
		snprintf(why, sizeof(why), "frame of %llu bytes exceeds the %zu byte limit", (unsigned long long)n, MAX_MESSAGE);
		return why;
	}
	msg->len = 0;
	grow(msg, (size_t)n);
	if (io(fd, 0, msg->p, (size_t)n, deadline) < 0) return errno ? strerror(errno) : "unexpected EOF";
	msg->len = (size_t)n;
	return NULL;
}

/* ---- the invocation ------------------------------------------------------- */

int main(void)
{
	static const char *const verbs[] = {"ADD", "DEL", "CHECK", "STATUS", "GC"};
	/* CNIRequest fields 2 to 8; 7 is the config. */
	static const char *const env[] = {[2] = "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", NULL, "CNI_COMMAND"};
	const char *command = getenv("CNI_COMMAND"), *why;
	struct buf config = {0}, path = {0}, err = {0}, hello = {0}, req = {0}, out = {0}, msg = {0};
	struct reply hr = {0}, r = {0};
	double connect = 0, call = 0, deadline;
	uint64_t verb = 0;
	int fd;

	for (unsigned k = 0; command && k < 5; k++) verb = strcmp(command, verbs[k]) == 0 ? k + 1 : verb;
	/* STATUS must say "plugin not available" while the agent is down. */
	int code = verb == 4 ? 50 : 11;
	const char *what = "plexus agent not available";
	signal(SIGPIPE, SIG_IGN); /* a runtime closing our stdout early gets EPIPE, not a kill */
	for (ssize_t got = 1; got != 0 && config.len <= MAX_MESSAGE; config.len += got > 0 ? (size_t)got : 0) {
		grow(&config, 65536);
		if ((got = read(0, config.p + config.len, config.cap - config.len)) < 0 && errno != EINTR) {
			code = 5, what = "read network configuration from stdin";
			addf(&err, "%s", strerror(errno));
			goto fail;
		}
	}
	if (command && strcmp(command, "VERSION") == 0)
		return write_all(1, version_reply, sizeof(version_reply) - 1) < 0;

	put_uint(&hello, 1, 1); /* API_VERSION_1 */
	put_bytes(&hello, 2, PLEXUS_VERSION, strlen(PLEXUS_VERSION));
	put_uint(&hello, 3, 1); /* raw_output */
	put_uint(&req, 1, verb);
	for (unsigned k = 2; k <= 8; k++)
		if (k == 7) put_bytes(&req, 7, (const char *)config.p, config.len);
		else put_env(&req, k, env[k]);
	put_varint(&out, hello.len), add(&out, hello.p, hello.len);
	put_varint(&out, req.len), add(&out, req.p, req.len);
	if (req.len > MAX_MESSAGE) {
		code = 6, what = "network configuration too large";
		addf(&err, "the request exceeds the %zu byte message limit", MAX_MESSAGE);
		goto fail;
	}

	scan(config.p, config.len, &path, &connect, &call);
	if (path.len == 0) add(&path, DEFAULT_SOCKET, strlen(DEFAULT_SOCKET));
	addc(&path, 0);
	connect = connect > 0 && connect < 1e9 ? connect : DEFAULT_CONNECT_TIMEOUT;
	call = call > 0 && call < 1e9 ? call : DEFAULT_CALL_TIMEOUT;
	addf(&err, "agent socket ");
	add_escaped(&err, path.p, path.len - 1);
	addf(&err, ": ");
	if (strlen((char *)path.p) != path.len - 1) {
		addf(&err, "contains a NUL byte");
	} else if (path.len > sizeof(((struct sockaddr_un *)0)->sun_path)) {
		addf(&err, "too long");
	} else if ((fd = dial((char *)path.p, connect)) < 0) {
		addf(&err, "connect (waited %gs): %s", connect, strerror(errno));
	} else if (io(fd, 1, out.p, out.len, deadline = now() + call) < 0) {
		addf(&err, "send request: %s", strerror(errno ? errno : EPIPE));
	} else if ((why = read_frame(fd, deadline, &msg))) {
		addf(&err, "read handshake: %s", why);
	} else if (decode(&msg, 0, 0, 4, &hr) < 0) {
		addf(&err, "decode HelloReply: malformed message");
	} else if (!hr.flag) { /* an agent from before raw_output, or one refusing this shim */
		addf(&err, "the agent did not accept this shim's protocol (agent and shim versions differ)");
	} else if ((why = read_frame(fd, deadline, &msg))) {
		addf(&err, "read response: %s", why);
	} else if (decode(&msg, 3, 4, 0, &r) < 0) {
		addf(&err, "decode CNIResponse: malformed message");
	} else if (write_all(1, r.out, r.out_len) < 0) {
		fprintf(stderr, "plexus: write result: %s\n", strerror(errno));
		return 1;
	} else {
		return r.code == 0 ? 0 : r.code < 256 ? (int)r.code : 1;
	}
fail:
	/* The shim's own errors: fixed ASCII but for the escaped socket path. */
	msg.len = 0;
	addf(&msg, "{\"code\":%d,\"msg\":\"%s\",\"details\":\"", code, what);
	add(&err, "\"}", 2);
	add(&msg, err.p, err.len);
	write_all(1, msg.p, msg.len);
	return 1;
}
