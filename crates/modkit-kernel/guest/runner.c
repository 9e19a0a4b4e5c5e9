// SPDX-License-Identifier: GPL-2.0
/*
 * runner: modkit's guest program (docs/kernel-driver.md, "Guest protocol").
 *
 *   runner PLAN > REPORT
 *
 * Reads the plan and plays its events: one coordinator process per event forks the
 * event's THREADS children, blocked on a pipe, before the scenario starts; once every
 * coordinator is ready the main process takes the start time and releases them; each
 * sleeps until start + AT_NS and closes its pipe, so that the event's children start at
 * once and no event waits for another. Then it dumps /proc/modules, holders, refcounts
 * and /dev/kmsg.
 *
 * Every child writes its report lines (each shorter than PIPE_BUF, so atomic) into one
 * pipe that only the main process reads; the main process forwards them to stdout, one
 * write(2) per line, and knows from the result lines which threads finished. At the
 * deadline it stops forwarding, reports the threads without a result as unfinished
 * (they are not killed; a late writer blocks on the pipe) and dumps the state, so that
 * nothing a late child writes can land inside the dump.
 *
 * With `kmsg_marker` in the plan it writes "modkit-runner: start" to /dev/kmsg just
 * before the start: observe.rs takes the log's origin and order from that record. An
 * empty action list is the field "%", written to /proc/modkit_rt as a bare "run".
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_OUT 16384	/* a report line (a child's stay under PIPE_BUF: stderr is capped) */
#define STDERR_KEEP 1000	/* bytes of one tool stderr line kept (before encoding) */
#define MAX_THREADS 100000	/* per event and in all (the scenario format's limits) */
#define MAX_EVENTS 100000
#define MAX_PLAN (16u << 20)	/* bytes of plan */
#define MAX_KO (512u << 20)	/* bytes of a module file read for init_module */
#define MODPROBE_SYSCTL "/proc/sys/kernel/modprobe"
#define RT_FILE "/proc/modkit_rt"

enum kind { K_MODPROBE, K_INSMOD, K_RMMOD, K_REQUEST, K_RUN, K_SET_MODPROBE, K_KILL, K_KILL_MODPROBE };

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
	int target;	/* kill: the index of the event whose threads it kills */
	int slot0;	/* first of its threads' slots in the shared pid table */
	unsigned char *done;	/* main process: result (or error) seen per thread */
};

static struct event *events;
static int nevents;
static int report_fd = 1;	/* where report lines go: stdout in main, the pipe in children */
static uint64_t deadline_ns = 60ull * 1000000000ull;
static uint64_t settle_ns;
static char *initial_modprobe;	/* decoded; NULL: leave the kernel's */
static int kmsg_marker;
static volatile uint64_t *shared_start;	/* written by main before it releases the coordinators */

/*
 * Kill events (docs/kernel-driver.md, "Kill events"): one slot per thread, shared by every
 * process. A thread's slot holds the pid of the process that is in the kernel for it (the
 * thread itself, or the modprobe it runs) while it works, 0 before and after, -1 once a
 * kill event took it. A kill takes a slot with a compare-and-swap pid -> -1 before it sends
 * SIGKILL; a thread gives its slot back (pid -> 0) before it writes its result, and if
 * that fails a kill is on its way: it writes nothing and waits to die, and its
 * coordinator reports the signal. So every thread has exactly one result line.
 */
static int *slots;
static int total_threads;
static int *my_slot;	/* in a thread's process: its slot */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };

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

/* The runner cannot go on: says why on the report and on stderr, exits 2. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit("@@ fatal runner: %s", msg);
	dprintf(2, "runner: %s\n", msg);
	exit(2);
}

/* Decodes a plan field in place ("%" alone is the empty string); NULL if malformed. */
static char *decode(char *s)
{
	char *o = s, *p = s;

	if (!strcmp(s, "%")) {
		s[0] = '\0';
		return s;
	}
	while (*p) {
		int h, l;

		if (*p == '%') {
			h = hexval(p[1]);
			l = h < 0 ? -1 : hexval(p[2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return NULL;
			*o++ = (char)(h << 4 | l);
			p += 3;
		} else if (plain((unsigned char)*p)) {
			*o++ = *p++;
		} else {
			return NULL;
		}
	}
	*o = '\0';
	return s;
}

/* A field passed on as it stands: plan-safe bytes, ';' and '%' (checked by modkit_rt). */
static int verbatim_ok(const char *s)
{
	for (; *s; s++)
		if (!plain((unsigned char)*s) && *s != ';' && *s != '%')
			return 0;
	return 1;
}

/* ---------------------------------------------------------------- plan */

/* The whole file, NUL-terminated (NULL with errno set if it cannot be read). */
static char *read_file(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 65536, n = 0;
	char *buf, *nb;

	if (fd < 0)
		return NULL;
	buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			if (cap >= max)
				break;	/* keep what fits */
			cap = cap * 2 > max ? max : cap * 2;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				close(fd);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;

			free(buf);
			close(fd);
			errno = err;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static uint64_t number(const char *s, uint64_t max, int line)
{
	uint64_t v = 0;
	const char *p = s;

	if (!*p)
		die("plan line %d: empty number", line);
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (max - (uint64_t)(*p - '0')) / 10)
			die("plan line %d: `%s` is not a number up to %llu", line, s,
			    (unsigned long long)max);
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return v;
}

static void parse_plan(const char *path)
{
	size_t len;
	char *text = read_file(path, MAX_PLAN, &len), *line, *next;
	int cap = 0, first = 1, lineno = 0, total = 0;

	if (!text)
		die("cannot read the plan %s: %s", path, strerror(errno));
	if (strlen(text) != len)
		die("the plan has a NUL byte");
	for (line = text; *line; line = next) {
		char *w[9], *save = NULL, *t;
		int n = 0;
		struct event *e;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		else
			next = line + strlen(line);
		lineno++;
		for (t = strtok_r(line, " ", &save); t && n < 9; t = strtok_r(NULL, " ", &save))
			w[n++] = t;
		if (!n)
			continue;
		if (n == 9)
			die("plan line %d: too many fields", lineno);
		if (first) {
			if (n != 2 || strcmp(w[0], "modkit-plan") || strcmp(w[1], "1"))
				die("plan line %d: not a `modkit-plan 1` file", lineno);
			first = 0;
			continue;
		}
		if (!strcmp(w[0], "deadline_ns") && n == 2) {
			deadline_ns = number(w[1], UINT64_MAX / 4, lineno);
			continue;
		}
		if (!strcmp(w[0], "settle_ns") && n == 2) {
			settle_ns = number(w[1], UINT64_MAX / 4, lineno);
			continue;
		}
		if (!strcmp(w[0], "kmsg_marker") && n == 1) {
			kmsg_marker = 1;
			continue;
		}
		if (!strcmp(w[0], "modprobe") && n == 2) {
			initial_modprobe = decode(w[1]);
			if (!initial_modprobe)
				die("plan line %d: bad modprobe path", lineno);
			continue;
		}
		if (strcmp(w[0], "event") || n < 5)
			die("plan line %d: unknown record `%s`", lineno, w[0]);
		if (nevents == cap) {
			struct event *ne;

			if (nevents == MAX_EVENTS)
				die("plan line %d: more than %d events", lineno, MAX_EVENTS);
			cap = cap ? cap * 2 : 16;
			ne = realloc(events, (size_t)cap * sizeof(*events));
			if (!ne)
				die("out of memory");
			events = ne;
		}
		e = &events[nevents++];
		memset(e, 0, sizeof(*e));
		e->idx = (int)number(w[1], MAX_EVENTS, lineno);
		e->at_ns = number(w[2], UINT64_MAX / 4, lineno);
		e->threads = (int)number(w[3], MAX_THREADS, lineno);
		total += e->threads;
		if (e->threads < 1 || total > MAX_THREADS)
			die("plan line %d: threads must be 1..%d per event and in all", lineno,
			    MAX_THREADS);
		if (!strcmp(w[4], "modprobe") && n == 6) {
			e->kind = K_MODPROBE;
			e->name = decode(w[5]);
			if (e->name && (!e->name[0] || e->name[0] == '-'))
				e->name = NULL;	/* not an option for modprobe */
		} else if (!strcmp(w[4], "insmod") && n == 8) {
			e->kind = K_INSMOD;
			e->name = decode(w[5]);
			e->path = decode(w[6]);
			if (!e->path || (strcmp(w[7], "init") && strcmp(w[7], "finit")))
				e->name = NULL;
			e->init = !strcmp(w[7], "init");
		} else if (!strcmp(w[4], "rmmod") && n == 7) {
			e->kind = K_RMMOD;
			e->name = decode(w[5]);
			e->flags = (long)number(w[6], 0xffffffffu, lineno);
		} else if (!strcmp(w[4], "request_module") && n == 7) {
			e->kind = K_REQUEST;
			e->name = verbatim_ok(w[5]) ? w[5] : NULL;
			e->wait = w[6];
			if (strcmp(w[6], "0") && strcmp(w[6], "1"))
				e->name = NULL;
		} else if (!strcmp(w[4], "run") && n == 6) {
			e->kind = K_RUN;
			e->actions = w[5];
			e->name = verbatim_ok(w[5]) ? w[5] : NULL;
		} else if (!strcmp(w[4], "set_modprobe") && n == 6) {
			e->kind = K_SET_MODPROBE;
			e->name = decode(w[5]);
		} else if (!strcmp(w[4], "kill") && n == 6) {
			e->kind = K_KILL;
			e->target = (int)number(w[5], MAX_EVENTS, lineno);
			e->name = w[5];
		} else if (!strcmp(w[4], "kill_modprobe") && n == 6) {
			e->kind = K_KILL_MODPROBE;
			e->name = decode(w[5]);
		} else {
			die("plan line %d: unknown event kind `%s` or wrong field count", lineno,
			    w[4]);
		}
		if (!e->name)
			die("plan line %d: malformed %s event", lineno, w[4]);
		e->done = calloc((size_t)e->threads, 1);
		if (!e->done)
			die("out of memory");
		e->slot0 = total_threads;
		total_threads += e->threads;
	}
	if (first)
		die("the plan is empty");
	for (lineno = 0; lineno < nevents; lineno++)
		if (events[lineno].kind == K_KILL &&
		    (events[lineno].target >= nevents || events[lineno].target == lineno))
			die("event %d kills event %d, which is not another event of the plan",
			    lineno, events[lineno].target);
	/* text stays allocated: the events point into it */
}

/* ---------------------------------------------------------------- work */

/* The thread leaves the kernel and is about to write its result: gives its slot back.
 * If a kill took it, SIGKILL is on its way: the thread writes nothing and waits for it. */
static void leave_slot(void)
{
	int expect;

	if (!my_slot)
		return;
	expect = __atomic_load_n(my_slot, __ATOMIC_SEQ_CST);
	if (expect == -1 || !__atomic_compare_exchange_n(my_slot, &expect, 0, 0, __ATOMIC_SEQ_CST,
							 __ATOMIC_SEQ_CST))
		for (;;)
			pause();
	my_slot = NULL;
}

static void result_errno(const struct event *e, int thread, int err)
{
	leave_slot();
	emit("@@ result %d %d errno %d %llu", e->idx, thread, err, (unsigned long long)now_ns());
}

/* The runner itself could not do the thread's work (no result from the kernel). */
static void result_error(const struct event *e, int thread, const char *what, int err)
{
	char msg[STDERR_KEEP], enc[3 * STDERR_KEEP + 2];

	leave_slot();
	snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
	encode(msg, strlen(msg), enc);
	emit("@@ error %d %d %s", e->idx, thread, enc);
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
	for (e = 1; e < 200; e++)
		if (!strcmp(t, strerror(e)))
			return e;
	if (!strncmp(t, "Unknown error ", 14)) {	/* glibc's text for the others */
		char *end;
		long v = strtol(t + 14, &end, 10);

		if (!*end && v > 0 && v < 4096)
			return (int)v;
	}
	return 0;
}

/* The errno a line of modprobe's stderr names, or 0. */
static int stderr_errno(const char *line)
{
	static const char *const failed[] = { "could not insert '", "could not remove '" };
	size_t i;

	for (i = 0; i < sizeof(failed) / sizeof(failed[0]); i++) {
		const char *p = strstr(line, failed[i]);

		if (p) {
			p = strstr(p + strlen(failed[i]), "': ");
			return p ? kmod_text_errno(p + 3) : 0;
		}
	}
	/* "FATAL: Module X not found in directory D", "Module X not found." */
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
		result_error(e, thread, "pipe", errno);
		return;
	}
	pid = fork();
	if (pid < 0) {
		result_error(e, thread, "fork for modprobe", errno);
		close(err[0]);
		close(err[1]);
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
		signal(SIGPIPE, SIG_DFL);
		execve("/sbin/modprobe", argv, envp);
		dprintf(2, "runner: cannot execute /sbin/modprobe: %s\n", strerror(errno));
		_exit(127);
	}
	close(err[1]);
	if (my_slot) {
		/* a kill now reaches the modprobe, the process in the kernel */
		int self = getpid();

		if (!__atomic_compare_exchange_n(my_slot, &self, pid, 0, __ATOMIC_SEQ_CST,
						 __ATOMIC_SEQ_CST))
			kill(pid, SIGKILL);	/* a kill took the slot just now */
	}
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
			result_error(e, thread, "waitpid for modprobe", errno);
			return;
		}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && my_slot &&
	    __atomic_load_n(my_slot, __ATOMIC_SEQ_CST) == -1) {
		/* killed by a kill event: the slot stays taken */
		my_slot = NULL;
		emit("@@ result %d %d signal %d %llu", e->idx, thread, WTERMSIG(status),
		     (unsigned long long)now_ns());
		return;
	}
	if (my_slot) {
		int expect = pid;

		/* modprobe exited by itself: the slot is the thread's again */
		__atomic_compare_exchange_n(my_slot, &expect, getpid(), 0, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		if (expect == -1)
			my_slot = NULL;	/* a kill took it after the exit: too late, report */
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		result_errno(e, thread, 0);
	else if (found)
		result_errno(e, thread, found);
	else if (WIFSIGNALED(status))
		emit("@@ result %d %d signal %d %llu", e->idx, thread, WTERMSIG(status),
		     (unsigned long long)now_ns());
	else
		emit("@@ result %d %d exit %d %llu", e->idx, thread, WEXITSTATUS(status),
		     (unsigned long long)now_ns());
}

static void do_insmod(const struct event *e, int thread)
{
	int fd = open(e->path, O_RDONLY | O_CLOEXEC);
	long r;

	if (fd < 0) {
		result_errno(e, thread, errno);	/* as insmod reports a missing file */
		return;
	}
	if (e->init) {
		size_t len;
		char *image;

		close(fd);
		image = read_file(e->path, MAX_KO, &len);
		if (!image) {
			result_error(e, thread, "reading the module file", errno);
			return;
		}
		r = syscall(SYS_init_module, image, (unsigned long)len, "");
		result_errno(e, thread, r < 0 ? errno : 0);
		free(image);
	} else {
		r = syscall(SYS_finit_module, fd, "", 0);
		result_errno(e, thread, r < 0 ? errno : 0);
		close(fd);
	}
}

static void do_rt(const struct event *e, int thread)
{
	int fd = open(RT_FILE, O_RDWR | O_CLOEXEC);
	size_t len;
	char *cmd, num[32], *end;
	ssize_t r;
	long v;

	if (fd < 0) {
		result_error(e, thread, "open " RT_FILE, errno);
		return;
	}
	if (e->kind == K_REQUEST)
		len = strlen(e->name) + strlen(e->wait) + 17;
	else
		len = strlen(e->actions) + 6;
	cmd = malloc(len);
	if (!cmd) {
		result_error(e, thread, "command for " RT_FILE, ENOMEM);
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
	if (r < 0 || (size_t)r != len) {
		/* EINVAL: modkit_rt refused the command as malformed, nothing of it ran */
		result_error(e, thread, "write " RT_FILE, r < 0 ? errno : EIO);
		close(fd);
		return;
	}
	lseek(fd, 0, SEEK_SET);
	do
		r = read(fd, num, sizeof(num) - 1);
	while (r < 0 && errno == EINTR);
	close(fd);
	if (r <= 0) {
		result_error(e, thread, "read " RT_FILE, r < 0 ? errno : ENODATA);
		return;
	}
	num[r] = '\0';
	errno = 0;
	v = strtol(num, &end, 10);
	if (end == num || (*end && *end != '\n') || errno || v < INT32_MIN || v > INT32_MAX) {
		result_error(e, thread, "the answer of " RT_FILE, EPROTO);
		return;
	}
	if (v <= 0) {
		result_errno(e, thread, (int)-v);
	} else {
		leave_slot();
		emit("@@ result %d %d status %ld %llu", e->idx, thread, v,
		     (unsigned long long)now_ns());
	}
}

/* SIGKILL to every thread of event @t still in its work: 0 or ESRCH (none). */
static int kill_event(const struct event *t)
{
	int i, n = 0;

	for (i = 0; i < t->threads; i++) {
		int *slot = &slots[t->slot0 + i];
		int pid = __atomic_load_n(slot, __ATOMIC_SEQ_CST);

		while (pid > 0) {
			if (__atomic_compare_exchange_n(slot, &pid, -1, 0, __ATOMIC_SEQ_CST,
							__ATOMIC_SEQ_CST)) {
				if (kill(pid, SIGKILL) == 0)
					n++;
				break;
			}
		}
	}
	return n ? 0 : ESRCH;
}

/* SIGKILL to every process whose command line is "ANY -q -- NAME", as call_modprobe()
 * (kernel/kmod.c) starts modprobe for request_module(NAME): 0 or ESRCH (none). */
static int kill_modprobe(const char *name)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	if (!d)
		return errno;
	while ((de = readdir(d)) != NULL) {
		char path[64], *cmd, *a[5];
		size_t len, off = 0;
		int argc = 0;
		long pid;
		char *end;

		pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 1 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		cmd = read_file(path, 4096, &len);
		if (!cmd)
			continue;
		while (off < len && argc < 5) {
			a[argc++] = cmd + off;
			off += strlen(cmd + off) + 1;
		}
		if (argc == 4 && !strcmp(a[1], "-q") && !strcmp(a[2], "--") && !strcmp(a[3], name) &&
		    kill((pid_t)pid, SIGKILL) == 0)
			n++;
		free(cmd);
	}
	closedir(d);
	return n ? 0 : ESRCH;
}

/* Writes /proc/sys/kernel/modprobe; 0 or an errno. proc_dostring() takes the text up to
 * a newline, so "\n" alone sets the empty path (request_module then fails with ENOENT). */
static int set_modprobe(const char *path)
{
	int fd = open(MODPROBE_SYSCTL, O_WRONLY | O_TRUNC | O_CLOEXEC);
	size_t len = strlen(path);
	char *s = malloc(len + 2);
	ssize_t r;
	int err = 0;

	if (!s) {
		if (fd >= 0)
			close(fd);
		return ENOMEM;
	}
	if (fd < 0) {
		free(s);
		return errno;
	}
	memcpy(s, path, len);
	s[len++] = '\n';
	do
		r = write(fd, s, len);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		err = errno;
	close(fd);
	free(s);
	return err;
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
		result_errno(e, thread, set_modprobe(e->name));
		break;
	case K_KILL:
		result_errno(e, thread, kill_event(&events[e->target]));
		break;
	case K_KILL_MODPROBE:
		result_errno(e, thread, kill_modprobe(e->name));
		break;
	}
}

/*
 * The coordinator of one event: forks its children, blocked on a gate; says it is ready;
 * waits for the start; at start + AT_NS opens the gate (closes its write end) for all of
 * them at once.
 */
static void __attribute__((noreturn)) coordinate(const struct event *e, int ready_w, int go_r)
{
	int gate[2], gate_err = 0, t, status;
	int *fork_err = calloc((size_t)e->threads, sizeof(int));
	pid_t *pids = calloc((size_t)e->threads, sizeof(pid_t));
	char c = 'r';
	pid_t pid;

	if (pipe2(gate, O_CLOEXEC) < 0)
		gate_err = errno;
	for (t = 0; !gate_err && fork_err && pids && t < e->threads; t++) {
		pid = fork();
		if (pid < 0) {
			fork_err[t] = errno;
			continue;
		}
		if (pid == 0) {
			int zero = 0;

			close(gate[1]);
			close(ready_w);
			close(go_r);
			while (read(gate[0], &c, 1) < 0 && errno == EINTR)
				;
			close(gate[0]);
			/* from here on a kill event can reach this thread */
			my_slot = &slots[e->slot0 + t];
			if (!__atomic_compare_exchange_n(my_slot, &zero, (int)getpid(), 0,
							 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
				my_slot = NULL;
			work(e, t);
			_exit(0);
		}
		pids[t] = pid;
	}
	if (!gate_err)
		close(gate[0]);
	write_all(ready_w, &c, 1);
	close(ready_w);
	for (;;) {	/* the main process closes the other end at the start */
		ssize_t r = read(go_r, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	close(go_r);
	for (t = 0; t < e->threads; t++) {
		if (gate_err)
			result_error(e, t, "pipe", gate_err);
		else if (!fork_err || !pids)
			result_error(e, t, "fork", ENOMEM);
		else if (fork_err[t])
			result_error(e, t, "fork", fork_err[t]);
	}
	if (!gate_err) {
		sleep_until(*shared_start + e->at_ns);
		close(gate[1]);
	}
	/* A thread killed by a kill event wrote no result: say how it ended. */
	while ((pid = wait(&status)) > 0 || errno == EINTR) {
		if (pid <= 0 || !WIFSIGNALED(status))
			continue;
		for (t = 0; pids && t < e->threads; t++)
			if (pids[t] == pid && slots[e->slot0 + t] == -1)
				emit("@@ result %d %d signal %d %llu", e->idx, t, WTERMSIG(status),
				     (unsigned long long)now_ns());
	}
	_exit(0);
}

/* ---------------------------------------------------------------- dumps */

static void dump_modules(void)
{
	char *text = read_file("/proc/modules", 16u << 20, NULL), *save = NULL, *line;
	char **names = NULL;
	int n = 0, i;

	if (!text) {
		char enc[256];
		const char *why = strerror(errno);

		encode(why, strlen(why) < 80 ? strlen(why) : 80, enc);
		emit("@@ modules_unavailable %s", enc);
	}
	emit("@@ modules_begin");
	if (text) {
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char *sp = strchr(line, ' ');
			char **nn;

			emit("%s", line);
			nn = realloc(names, (size_t)(n + 1) * sizeof(*names));
			if (!nn)
				die("out of memory");
			names = nn;
			names[n] = strndup(line, sp ? (size_t)(sp - line) : strlen(line));
			if (!names[n])
				die("out of memory");
			n++;
		}
	}
	emit("@@ modules_end");
	for (i = 0; i < n; i++) {
		char path[512], holders[4000];
		size_t hl = 0;
		char *rc;
		DIR *d;
		struct dirent *de;

		if (strlen(names[i]) > 255 || strchr(names[i], '/'))
			continue;
		snprintf(path, sizeof(path), "/sys/module/%s/refcnt", names[i]);
		rc = read_file(path, 4096, NULL);
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

/* /dev/kmsg from its first record on: each record's first line (its dictionary lines,
 * which start with a space, are left out). */
static void dump_dmesg(void)
{
	static char rec[16384];
	unsigned long lost = 0;
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		char enc[256];
		const char *why = strerror(errno);

		encode(why, strlen(why) < 80 ? strlen(why) : 80, enc);
		emit("@@ dmesg_unavailable %s", enc);
	}
	emit("@@ dmesg_begin");
	if (fd >= 0) {
		for (;;) {
			ssize_t r = read(fd, rec, sizeof(rec) - 1);
			char *nl;

			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EPIPE) {	/* overwritten before it was read */
					lost++;
					continue;
				}
				break;	/* EAGAIN: no more records */
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
	if (lost)
		emit("@@ dmesg_lost %lu", lost);
}

/* ---------------------------------------------------------------- main */

/* Marks a thread of a result or error line as done; the count of threads newly done. */
static int mark_done(const char *line)
{
	int idx, thread, i;

	if (sscanf(line, "@@ result %d %d ", &idx, &thread) != 2 &&
	    sscanf(line, "@@ error %d %d ", &idx, &thread) != 2)
		return 0;
	for (i = 0; i < nevents; i++)
		if (events[i].idx == idx && thread >= 0 && thread < events[i].threads &&
		    !events[i].done[thread]) {
			events[i].done[thread] = 1;
			return 1;
		}
	return 0;
}

/* Forwards complete lines of @buf (@len bytes) to stdout; returns the bytes left. */
static size_t forward(char *buf, size_t len, int *pending)
{
	char *p = buf, *nl;

	while ((nl = memchr(p, '\n', len - (size_t)(p - buf))) != NULL) {
		*nl = '\0';
		*pending -= mark_done(p);
		*nl = '\n';
		write_all(1, p, (size_t)(nl - p + 1));
		p = nl + 1;
	}
	len -= (size_t)(p - buf);
	memmove(buf, p, len);
	return len;
}

int main(int argc, char **argv)
{
	static char buf[65536];
	uint64_t start, deadline;
	int rp[2], ready[2], go[2], i, t, kmsg, pending = 0, coordinators = 0, got = 0;
	size_t have = 0;

	if (argc != 2) {
		dprintf(2, "usage: runner PLAN\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	parse_plan(argv[1]);
	for (i = 0; i < nevents; i++)
		pending += events[i].threads;
	if (initial_modprobe) {
		int err = set_modprobe(initial_modprobe);

		if (err)
			die("cannot set " MODPROBE_SYSCTL ": %s", strerror(err));
	}
	shared_start = mmap(NULL, sizeof(*shared_start), PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared_start == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	slots = mmap(NULL, (size_t)(total_threads ? total_threads : 1) * sizeof(int),
		     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));

	/* Every event's threads exist before the start. */
	for (i = 0; i < nevents; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			close(rp[0]);
			close(ready[0]);
			close(go[1]);
			report_fd = rp[1];
			signal(SIGPIPE, SIG_DFL);
			coordinate(&events[i], ready[1], go[0]);
		}
		if (pid < 0) {
			int err = errno;

			for (t = 0; t < events[i].threads; t++) {
				result_error(&events[i], t, "fork", err);
				events[i].done[t] = 1;
				pending--;
			}
		} else {
			coordinators++;
		}
	}
	close(rp[1]);
	close(ready[1]);
	close(go[0]);
	while (got < coordinators) {
		char c[64];
		ssize_t r = read(ready[0], c, sizeof(c));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;	/* a coordinator died before it was ready */
		got += (int)r;
	}
	close(ready[0]);

	/* A marker in the kernel log: records after it are the scenario's, and its
	 * timestamp is the start on the log's own clock (local_clock(), which need not
	 * agree with CLOCK_MONOTONIC). */
	if (kmsg_marker) {
		kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
		if (kmsg >= 0) {
			static const char marker[] = "modkit-runner: start\n";

			if (write(kmsg, marker, sizeof(marker) - 1) < 0)
				dprintf(2, "runner: cannot write the start marker to /dev/kmsg\n");
			close(kmsg);
		}
	}
	start = now_ns();
	*shared_start = start;
	deadline = start + deadline_ns;
	emit("@@ start %llu", (unsigned long long)start);
	close(go[1]);	/* the coordinators read the start and sleep until their events */

	while (pending > 0) {
		uint64_t now = now_ns();
		struct pollfd pfd = { .fd = rp[0], .events = POLLIN };
		int wait_ms, r;
		ssize_t n;

		if (now >= deadline)
			break;
		wait_ms = (int)((deadline - now + 999999) / 1000000 > 1000 ?
					1000 : (deadline - now + 999999) / 1000000);
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
	/* Deferred work (work items, request_module_nowait) may still be running. */
	if (pending <= 0 && settle_ns) {
		uint64_t now = now_ns();

		sleep_until(now + settle_ns < deadline ? now + settle_ns : deadline);
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
