/*
 * The other half of modkit's stand-in testsuite.h: prints, for every test a kmod
 * test-*.c file defines, one JSON object holding its configuration (rootfs, uname,
 * init/delete_module return codes, expected outputs, generated files, modules that must
 * or must not be loaded, environment, expected failure) and the command line its test
 * function spawns (with the directory it changed into first), found by running the
 * function in a child whose test_spawn_prog() and chdir() only record. A test whose
 * function spawns nothing (a libkmod API test) is printed with "args": null.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsuite.h"

static const char *argv0;
static char cwd_rec[4096] = "/";
static int out_fd = -1;

static void jstr(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void jkv(FILE *f, const struct keyval *kv)
{
	if (kv == NULL) {
		fputs("null", f);
		return;
	}
	fputc('[', f);
	for (int i = 0; kv[i].key; i++) {
		fputs(i ? ",[" : "[", f);
		jstr(f, kv[i].key);
		fputc(',', f);
		jstr(f, kv[i].val);
		fputc(']', f);
	}
	fputc(']', f);
}

int test_init(const struct test *start, const struct test *stop, int argc, char *const argv[])
{
	(void)start;
	(void)stop;
	argv0 = argc > 0 ? argv[0] : "?";
	return 1;
}

const struct test *test_find(const struct test *start, const struct test *stop, const char *name)
{
	for (const struct test *t = start; t < stop; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* Test functions chdir() into the rootfs before spawning (module-from-relpath): record. */
int chdir(const char *path)
{
	snprintf(cwd_rec, sizeof(cwd_rec), "%s", path);
	return 0;
}

int test_spawn_prog(const char *prog, const char *const args[])
{
	FILE *f = fdopen(out_fd, "w");
	fputs("{\"prog\":", f);
	jstr(f, prog);
	fputs(",\"cwd\":", f);
	jstr(f, cwd_rec);
	fputs(",\"args\":[", f);
	for (int i = 0; args[i]; i++) {
		if (i)
			fputc(',', f);
		jstr(f, args[i]);
	}
	fputs("]}", f);
	fflush(f);
	_exit(0);
}

int test_run(const struct test *t)
{
	int p[2];
	char buf[65536];
	size_t n = 0;
	ssize_t r;
	pid_t pid;
	int status = 0;

	if (pipe(p) != 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		out_fd = p[1];
		/* a library test's output must not mix with ours */
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(2);
		t->func(t);
		_exit(3);
	}
	close(p[1]);
	while (n < sizeof(buf) - 1 && (r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(p[0]);
	waitpid(pid, &status, 0);

	printf("{\"file\":");
	jstr(stdout, argv0);
	printf(",\"name\":");
	jstr(stdout, t->name);
	printf(",\"description\":");
	jstr(stdout, t->description);
	printf(",\"rootfs\":");
	jstr(stdout, t->config[TC_ROOTFS]);
	printf(",\"uname_r\":");
	jstr(stdout, t->config[TC_UNAME_R]);
	printf(",\"init_module_retcodes\":");
	jstr(stdout, t->config[TC_INIT_MODULE_RETCODES]);
	printf(",\"delete_module_retcodes\":");
	jstr(stdout, t->config[TC_DELETE_MODULE_RETCODES]);
	printf(",\"out\":");
	jstr(stdout, t->output.out);
	printf(",\"err\":");
	jstr(stdout, t->output.err);
	printf(",\"regex\":%s,\"files\":", t->output.regex ? "true" : "false");
	jkv(stdout, t->output.files);
	printf(",\"modules_loaded\":");
	jstr(stdout, t->modules_loaded);
	printf(",\"modules_not_loaded\":");
	jstr(stdout, t->modules_not_loaded);
	printf(",\"path\":");
	jstr(stdout, t->path);
	printf(",\"env\":");
	jkv(stdout, t->env_vars);
	printf(",\"expected_fail\":%s,\"skip\":%s,\"spawn\":%s}\n",
	       t->expected_fail ? "true" : "false", t->skip ? "true" : "false",
	       n > 0 ? buf : "null");
	fflush(stdout);
	return 0;
}
