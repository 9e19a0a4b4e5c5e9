// SPDX-License-Identifier: GPL-2.0
/*
 * runner: modkit's guest program (docs/kernel-driver.md, "Guest protocol").
 *
 *   runner PLAN > REPORT
 *
 * Reads the plan, plays its events (one coordinator process per event, which forks
 * the event's THREADS children blocked on a pipe, sleeps until start + AT_NS and
 * closes the pipe to release them at once), then dumps /proc/modules, holders,
 * refcounts and /dev/kmsg.
 *
 * Every child writes its report lines (each shorter than PIPE_BUF, so atomic) into one
 * pipe that only the main process reads; the main process forwards them to stdout, one
 * write(2) per line, and knows from the result lines which threads finished. At the
 * deadline it stops forwarding, reports the threads without a result as unfinished
 * (they are not killed; a late writer blocks on the pipe) and dumps the state, so that
 * nothing a late child writes can land inside the dump.
 *
 * Just before the start it writes "modkit-runner: start" to /dev/kmsg: observe.rs takes
 * the log's origin and order from that record. An empty action list is the field "%",
 * written to /proc/modkit_rt as a bare "run".
 *
 * Built with gcc -static -O2 -Wall -Werror (gnu11).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_OUT 16384	/* a report line (a child's stay under PIPE_BUF: stderr is capped) */
#define STDERR_KEEP 1000	/* bytes of one tool stderr line kept (before encoding) */
#define MAX_THREADS 100000

enum kind { K_MODPROBE, K_INSMOD, K_RMMOD, K_REQUEST, K_RUN, K_SET_MODPROBE };

struct event {
	int idx;
	uint64_t at_ns;
	int threads;
	enum kind kind;
	char *name;	/* decoded (modprobe, insmod, rmmod, set_modprobe) or verbatim (request_module) */
	char *path;	/* insmod: decoded guest path */
	int init;	/* insmod: init_module instead of finit_module */
	long flags;	/* rmmod */
	char *wait;	/* request_module: "0" or "1", verbatim */
	char *actions;	/* run: verbatim */
	unsigned char *done;	/* main process: result seen per thread */
	pid_t coord;
};

static struct event *events;
static int nevents;
static int report_fd = 1;	/* where report lines go: stdout in main, the pipe in children */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = t / 1000000000ull, .tv_nsec = t % 1000000000ull };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* One report line, one write(2). */
static void __attribute__((format(printf, 1, 2))) emit(const char *fmt, ...)
{
	char buf[LINE_MAX_OUT + 2];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, LINE_MAX_OUT, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= LINE_MAX_OUT)
		n = LINE_MAX_OUT - 1;
	buf[n++] = '\n';
	write_all(report_fd, buf, (size_t)n);
}

static void die(const char *what)
{
	dprintf(2, "runner: %s\n", what);
	exit(2);
}

/* ------------------------------------------------------------ encoding */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes a plan field in place ("%" alone is the empty string). */
static char *decode(char *s)
{
	char *o = s, *p = s;

	if (!strcmp(s, "%")) {
		s[0] = '\0';
		return s;
	}
	while (*p) {
		int h, l;

		if (*p == '%' && (h = hexval(p[1])) >= 0 && (l = hexval(p[2])) >= 0) {
			*o++ = (char)(h << 4 | l);
			p += 3;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return s;
}

static int plain(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("_.,:*?+=/@-", c));
}

/* Percent-encodes @n bytes of @s into @out (at least 3 * n + 2 bytes). */
static void encode(const char *s, size_t n, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	if (!n) {
		strcpy(out, "%");
		return;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (plain(c)) {
			*out++ = (char)c;
		} else {
			*out++ = '%';
			*out++ = hex[c >> 4];
			*out++ = hex[c & 15];
		}
	}
	*out = '\0';
}

/* ---------------------------------------------------------------- plan */

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 65536, n = 0;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap + 1);
	if (!buf)
		die("out of memory");
	for (;;) {
		ssize_t r;

		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				die("out of memory");
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static int split(char *line, char **w, int max)
{
	int n = 0;
	char *save = NULL, *t;

	for (t = strtok_r(line, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	return n;
}

static uint64_t parse_plan(const char *path)
{
	char *text = read_file(path, NULL), *save = NULL, *line;
	uint64_t deadline = 60ull * 1000000000ull;
	int cap = 0, first = 1;

	if (!text)
		die("cannot read the plan");
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *w[8];
		int n = split(line, w, 8);
		struct event *e;

		if (!n)
			continue;
		if (first) {
			if (n != 2 || strcmp(w[0], "modkit-plan") || strcmp(w[1], "1"))
				die("not a modkit-plan 1 file");
			first = 0;
			continue;
		}
		if (!strcmp(w[0], "deadline_ns") && n == 2) {
			deadline = strtoull(w[1], NULL, 10);
			continue;
		}
		if (strcmp(w[0], "event") || n < 5)
			die("malformed plan line");
		if (nevents == cap) {
			cap = cap ? cap * 2 : 16;
			events = realloc(events, (size_t)cap * sizeof(*events));
			if (!events)
				die("out of memory");
		}
		e = &events[nevents++];
		memset(e, 0, sizeof(*e));
		e->idx = atoi(w[1]);
		e->at_ns = strtoull(w[2], NULL, 10);
		e->threads = atoi(w[3]);
		if (e->threads < 1 || e->threads > MAX_THREADS)
			die("bad thread count in the plan");
		if (!strcmp(w[4], "modprobe") && n == 6) {
			e->kind = K_MODPROBE;
			e->name = decode(w[5]);
		} else if (!strcmp(w[4], "insmod") && n == 8) {
			e->kind = K_INSMOD;
			e->name = decode(w[5]);
			e->path = decode(w[6]);
			e->init = !strcmp(w[7], "init");
		} else if (!strcmp(w[4], "rmmod") && n == 7) {
			e->kind = K_RMMOD;
			e->name = decode(w[5]);
			e->flags = strtol(w[6], NULL, 10);
		} else if (!strcmp(w[4], "request_module") && n == 7) {
			e->kind = K_REQUEST;
			e->name = w[5];
			e->wait = w[6];
		} else if (!strcmp(w[4], "run") && n == 6) {
			e->kind = K_RUN;
			e->actions = w[5];
		} else if (!strcmp(w[4], "set_modprobe") && n == 6) {
			e->kind = K_SET_MODPROBE;
			e->name = decode(w[5]);
		} else {
			die("malformed event in the plan");
		}
		e->done = calloc((size_t)e->threads, 1);
		if (!e->done)
			die("out of memory");
	}
	if (first)
		die("empty plan");
	return deadline;
}

/* ---------------------------------------------------------------- work */

static void result_errno(const struct event *e, int thread, int err)
{
	emit("@@ result %d %d errno %d %llu", e->idx, thread, err, (unsigned long long)now_ns());
}

/* kmod's texts for errors it words itself (libkmod's mod_strerror, modprobe). */
static int kmod_text_errno(const char *t)
{
	static const struct {
		const char *text;
		int err;
	} known[] = {
		{ "Unknown symbol in module, or unknown parameter (see dmesg)", ENOENT },
		{ "Invalid module format", ENOEXEC },
		{ "Kernel does not have module support", ENOSYS },
		{ "Module already in kernel", EEXIST },
	};
	size_t i;
	int e;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(t, known[i].text))
			return known[i].err;
	for (e = 1; e <= 133; e++)
		if (!strcmp(t, strerror(e)))
			return e;
	return 0;
}

/* The errno a line of modprobe's stderr names, or 0. */
static int stderr_errno(const char *line)
{
	const char *p = strstr(line, "could not insert '");

	if (p) {
		p = strstr(p + 18, "': ");
		if (p)
			return kmod_text_errno(p + 3);
		return 0;
	}
	if (strstr(line, "Module ") && strstr(line, " not found"))
		return ENOENT;
	return 0;
}

static void do_modprobe(const struct event *e, int thread)
{
	int err[2], found = 0, status;
	char buf[STDERR_KEEP + 1], enc[3 * STDERR_KEEP + 2];
	size_t len = 0;
	int overlong = 0;
	pid_t pid;

	if (pipe2(err, O_CLOEXEC) < 0) {
		result_errno(e, thread, errno);
		return;
	}
	pid = fork();
	if (pid < 0) {
		result_errno(e, thread, errno);
		return;
	}
	if (pid == 0) {
		char *argv[] = { "modprobe", e->name, NULL };
		char *envp[] = { "PATH=/sbin:/bin", NULL };
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		dup2(err[1], 2);
		execve("/sbin/modprobe", argv, envp);
		_exit(127);
	}
	close(err[1]);
	for (;;) {
		char c;
		ssize_t r = read(err[0], &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == '\n') {
			if (len || overlong || r > 0) {
				buf[len] = '\0';
				encode(buf, len, enc);
				emit("@@ stderr %d %d %s", e->idx, thread, enc);
				if (!found)
					found = stderr_errno(buf);
			}
			len = 0;
			overlong = 0;
			if (r <= 0)
				break;
			continue;
		}
		if (len < STDERR_KEEP)
			buf[len++] = c;
		else
			overlong = 1;
	}
	close(err[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			result_errno(e, thread, errno);
			return;
		}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		result_errno(e, thread, 0);
	else if (found)
		result_errno(e, thread, found);
	else
		emit("@@ result %d %d exit %d %llu", e->idx, thread,
		     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
		     (unsigned long long)now_ns());
}

static void do_insmod(const struct event *e, int thread)
{
	int fd = open(e->path, O_RDONLY | O_CLOEXEC);
	long r;

	if (fd < 0) {
		result_errno(e, thread, errno);
		return;
	}
	if (e->init) {
		size_t len;
		char *image;

		close(fd);
		image = read_file(e->path, &len);
		if (!image) {
			result_errno(e, thread, errno);
			return;
		}
		r = syscall(SYS_init_module, image, (unsigned long)len, "");
	} else {
		r = syscall(SYS_finit_module, fd, "", 0);
	}
	result_errno(e, thread, r < 0 ? errno : 0);
}

static void do_rt(const struct event *e, int thread)
{
	int fd = open("/proc/modkit_rt", O_RDWR | O_CLOEXEC);
	size_t len;
	char *cmd, num[32];
	ssize_t r;
	long v;

	if (fd < 0) {
		result_errno(e, thread, errno);
		return;
	}
	if (e->kind == K_REQUEST)
		len = strlen(e->name) + strlen(e->wait) + 17;
	else
		len = strlen(e->actions) + 6;
	cmd = malloc(len);
	if (!cmd) {
		result_errno(e, thread, ENOMEM);
		close(fd);
		return;
	}
	if (e->kind == K_REQUEST)
		len = (size_t)snprintf(cmd, len, "request_module %s %s", e->name, e->wait);
	else if (!strcmp(e->actions, "%"))
		len = (size_t)snprintf(cmd, len, "run");	/* an empty action list */
	else
		len = (size_t)snprintf(cmd, len, "run %s", e->actions);
	do
		r = write(fd, cmd, len);
	while (r < 0 && errno == EINTR);
	free(cmd);
	if (r < 0) {
		result_errno(e, thread, errno);
		close(fd);
		return;
	}
	lseek(fd, 0, SEEK_SET);
	do
		r = read(fd, num, sizeof(num) - 1);
	while (r < 0 && errno == EINTR);
	if (r <= 0) {
		result_errno(e, thread, r < 0 ? errno : ENODATA);
		close(fd);
		return;
	}
	close(fd);
	num[r] = '\0';
	v = strtol(num, NULL, 10);
	if (v <= 0)
		result_errno(e, thread, (int)-v);
	else
		emit("@@ result %d %d status %ld %llu", e->idx, thread, v,
		     (unsigned long long)now_ns());
}

static void do_set_modprobe(const struct event *e, int thread)
{
	int fd = open("/proc/sys/kernel/modprobe", O_WRONLY | O_TRUNC | O_CLOEXEC);
	const char *s = e->name[0] ? e->name : "\n";
	ssize_t r;

	if (fd < 0) {
		result_errno(e, thread, errno);
		return;
	}
	do
		r = write(fd, s, strlen(s));
	while (r < 0 && errno == EINTR);
	result_errno(e, thread, r < 0 ? errno : 0);
	close(fd);
}

static void work(const struct event *e, int thread)
{
	switch (e->kind) {
	case K_MODPROBE:
		do_modprobe(e, thread);
		break;
	case K_INSMOD:
		do_insmod(e, thread);
		break;
	case K_RMMOD:
		result_errno(e, thread,
			     syscall(SYS_delete_module, e->name, e->flags) < 0 ? errno : 0);
		break;
	case K_REQUEST:
	case K_RUN:
		do_rt(e, thread);
		break;
	case K_SET_MODPROBE:
		do_set_modprobe(e, thread);
		break;
	}
}

/* The coordinator of one event: its children, blocked on a gate, released at once. */
static void coordinate(const struct event *e, uint64_t start)
{
	int gate[2], t;
	pid_t pid;

	if (pipe2(gate, O_CLOEXEC) < 0) {
		int err = errno;

		for (t = 0; t < e->threads; t++)
			result_errno(e, t, err);
		_exit(0);
	}
	for (t = 0; t < e->threads; t++) {
		pid = fork();
		if (pid < 0) {
			result_errno(e, t, errno);
			continue;
		}
		if (pid == 0) {
			char c;

			close(gate[1]);
			while (read(gate[0], &c, 1) < 0 && errno == EINTR)
				;
			close(gate[0]);
			work(e, t);
			_exit(0);
		}
	}
	close(gate[0]);
	sleep_until(start + e->at_ns);
	close(gate[1]);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	_exit(0);
}

/* ---------------------------------------------------------------- dumps */

static void dump_modules(void)
{
	char *text = read_file("/proc/modules", NULL), *save = NULL, *line;
	char **names = NULL;
	int n = 0, i;

	emit("@@ modules_begin");
	if (text) {
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char *sp = strchr(line, ' ');

			emit("%s", line);
			names = realloc(names, (size_t)(n + 1) * sizeof(*names));
			if (!names)
				die("out of memory");
			names[n++] = strndup(line, sp ? (size_t)(sp - line) : strlen(line));
		}
	}
	emit("@@ modules_end");
	for (i = 0; i < n; i++) {
		char path[512], holders[4000];
		size_t hl = 0;
		char *rc;
		DIR *d;
		struct dirent *de;

		snprintf(path, sizeof(path), "/sys/module/%s/refcnt", names[i]);
		rc = read_file(path, NULL);
		if (rc) {
			rc[strcspn(rc, "\n")] = '\0';
			emit("@@ refcnt %s %s", names[i], rc);
			free(rc);
		}
		snprintf(path, sizeof(path), "/sys/module/%s/holders", names[i]);
		holders[0] = '\0';
		d = opendir(path);
		if (d) {
			while ((de = readdir(d)) != NULL) {
				size_t l = strlen(de->d_name);

				if (de->d_name[0] == '.' || hl + l + 2 >= sizeof(holders))
					continue;
				holders[hl++] = ' ';
				memcpy(holders + hl, de->d_name, l + 1);
				hl += l;
			}
			closedir(d);
		}
		emit("@@ holders %s%s", names[i], holders);
		free(names[i]);
	}
	free(names);
	free(text);
}

static void dump_dmesg(void)
{
	static char rec[16384];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	emit("@@ dmesg_begin");
	if (fd >= 0) {
		for (;;) {
			ssize_t r = read(fd, rec, sizeof(rec) - 1);
			char *nl;

			if (r < 0) {
				if (errno == EINTR || errno == EPIPE)
					continue;
				break;
			}
			if (r == 0)
				break;
			rec[r] = '\0';
			nl = memchr(rec, '\n', (size_t)r);
			if (nl)
				*nl = '\0';
			emit("%s", rec);
		}
		close(fd);
	}
	emit("@@ dmesg_end");
}

/* ---------------------------------------------------------------- main */

/* Forwards complete lines of @buf (@len bytes) to stdout; returns the bytes left. */
static size_t forward(char *buf, size_t len, int *pending)
{
	char *p = buf, *nl;

	while ((nl = memchr(p, '\n', len - (size_t)(p - buf))) != NULL) {
		int idx, thread, i;

		write_all(1, p, (size_t)(nl - p + 1));
		if (sscanf(p, "@@ result %d %d ", &idx, &thread) == 2) {
			for (i = 0; i < nevents; i++)
				if (events[i].idx == idx && thread >= 0 && thread < events[i].threads &&
				    !events[i].done[thread]) {
					events[i].done[thread] = 1;
					(*pending)--;
					break;
				}
		}
		p = nl + 1;
	}
	len -= (size_t)(p - buf);
	memmove(buf, p, len);
	return len;
}

int main(int argc, char **argv)
{
	static char buf[65536];
	uint64_t start, deadline, deadline_ns;
	int rp[2], i, t, kmsg, pending = 0;
	size_t have = 0;

	if (argc != 2) {
		dprintf(2, "usage: runner PLAN\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	deadline_ns = parse_plan(argv[1]);
	for (i = 0; i < nevents; i++)
		pending += events[i].threads;
	if (pipe2(rp, O_CLOEXEC) < 0)
		die("pipe");
	/* A marker in the kernel log: records after it are the scenario's, and its
	 * timestamp is the start on the log's own clock (local_clock(), which need not
	 * agree with CLOCK_MONOTONIC). */
	kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (kmsg >= 0) {
		static const char marker[] = "modkit-runner: start\n";

		if (write(kmsg, marker, sizeof(marker) - 1) < 0)
			dprintf(2, "runner: cannot write the start marker to /dev/kmsg\n");
		close(kmsg);
	}
	start = now_ns();
	deadline = start + deadline_ns;
	emit("@@ start %llu", (unsigned long long)start);
	for (i = 0; i < nevents; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			close(rp[0]);
			report_fd = rp[1];
			signal(SIGPIPE, SIG_DFL);
			coordinate(&events[i], start);
		}
		events[i].coord = pid;
		if (pid < 0) {
			int err = errno;

			for (t = 0; t < events[i].threads; t++) {
				result_errno(&events[i], t, err);
				events[i].done[t] = 1;
				pending--;
			}
		}
	}
	close(rp[1]);
	while (pending > 0) {
		uint64_t now = now_ns();
		struct pollfd pfd = { .fd = rp[0], .events = POLLIN };
		int wait_ms, r;
		ssize_t n;

		if (now >= deadline)
			break;
		wait_ms = (int)((deadline - now + 999999) / 1000000);
		if (wait_ms > 1000)
			wait_ms = 1000;
		r = poll(&pfd, 1, wait_ms);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		n = read(rp[0], buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;	/* every writer is gone */
		have = forward(buf, have + (size_t)n, &pending);
		if (have == sizeof(buf))
			have = 0;	/* cannot happen: lines are shorter than PIPE_BUF */
	}
	/* Reap the coordinators that finished (the others are left running). */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	for (i = 0; i < nevents; i++)
		for (t = 0; t < events[i].threads; t++)
			if (!events[i].done[t])
				emit("@@ unfinished %d %d", events[i].idx, t);
	dump_modules();
	dump_dmesg();
	emit("@@ end %llu", (unsigned long long)now_ns());
	return 0;
}
