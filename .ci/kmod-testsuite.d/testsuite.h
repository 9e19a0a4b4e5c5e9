/*
 * modkit's stand-in for kmod's testsuite/testsuite.h (written for modkit, not copied):
 * the same declarations the test-*.c files of kmod 30 and kmod 34 use (struct test with
 * the fields of both versions, DEFINE_TEST, TESTSUITE_MAIN, test_spawn_prog), so those
 * files compile unchanged against dump.c, which prints each test's configuration and the
 * command line its function spawns as one JSON line instead of running it. The runner
 * (.ci/kmod-testsuite.d/run.py) then runs that command in a chroot of the test's rootfs.
 */
#pragma once

#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <shared/macro.h>

struct test;
typedef int (*testfunc)(const struct test *t);

enum test_config {
	TC_ROOTFS = 0,
	TC_UNAME_R,
	TC_INIT_MODULE_RETCODES,
	TC_DELETE_MODULE_RETCODES,
	_TC_LAST,
};

#define S_TC_ROOTFS "TESTSUITE_ROOTFS"
#define S_TC_UNAME_R "TESTSUITE_UNAME_R"
#define S_TC_INIT_MODULE_RETCODES "TESTSUITE_INIT_MODULE_RETCODES"
#define S_TC_DELETE_MODULE_RETCODES "TESTSUITE_DELETE_MODULE_RETCODES"

struct keyval {
	const char *key;
	const char *val;
};

struct test {
	const char *name;
	const char *description;
	struct {
		const char *out;
		const char *err;
		bool regex;
		const struct keyval *files;
	} output;
	const char *modules_loaded;
	const char *modules_not_loaded;
	testfunc func;
	const char *config[_TC_LAST];
	const char *path;
	const struct keyval *env_vars;
	bool need_spawn;
	bool expected_fail;
	bool skip;
	bool print_outputs;
} __attribute__((aligned(8)));

int test_init(const struct test *start, const struct test *stop, int argc, char *const argv[]);
const struct test *test_find(const struct test *start, const struct test *stop, const char *name);
int test_spawn_prog(const char *prog, const char *const args[]);
int test_run(const struct test *t);

#define TS_EXPORT __attribute__((visibility("default")))
#define _LOG(prefix, fmt, ...) fprintf(stderr, "TESTSUITE: " prefix fmt, ##__VA_ARGS__)
#define LOG(fmt, ...) _LOG("", fmt, ##__VA_ARGS__)
#define WARN(fmt, ...) _LOG("WARN: ", fmt, ##__VA_ARGS__)
#define ERR(fmt, ...) _LOG("ERR: ", fmt, ##__VA_ARGS__)
#define assert_return(expr, r) \
	do { if (!(expr)) return (r); } while (false)

#define MODKIT_TS_CAT2(a, b) a##b
#define MODKIT_TS_CAT(a, b) MODKIT_TS_CAT2(a, b)
#define DEFINE_TEST_WITH_FUNC(_name, _func, ...)                                      \
	static const struct test MODKIT_TS_CAT(s##_name, __COUNTER__)                 \
		__attribute__((used, section("kmod_tests"), aligned(8))) = {          \
			.name = #_name, .func = _func, ##__VA_ARGS__                  \
		};
#define DEFINE_TEST(_name, ...) DEFINE_TEST_WITH_FUNC(_name, _name, __VA_ARGS__)

#define TESTSUITE_MAIN()                                                                \
	extern struct test __start_kmod_tests[] __attribute__((weak, visibility("hidden"))); \
	extern struct test __stop_kmod_tests[] __attribute__((weak, visibility("hidden")));  \
	int main(int argc, char *argv[])                                                \
	{                                                                               \
		const struct test *t;                                                   \
		test_init(__start_kmod_tests, __stop_kmod_tests, argc, argv);           \
		for (t = __start_kmod_tests; t < __stop_kmod_tests; t++)                \
			test_run(t);                                                    \
		return 0;                                                               \
	}

#ifdef noreturn
#define __noreturn noreturn
#elif __STDC_VERSION__ >= 201112L
#define __noreturn _Noreturn
#else
#define __noreturn __attribute__((noreturn))
#endif
