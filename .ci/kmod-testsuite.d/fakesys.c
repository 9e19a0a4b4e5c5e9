/*
 * LD_PRELOAD fake of the kernel's module system calls and of uname(2), written for modkit
 * (it plays the part of kmod's testsuite/init_module.c, delete_module.c and uname.c, which
 * need libkmod's internals; this one needs nothing). Loaded into every tool the kmod
 * testsuite runner starts in a test's chroot: kmod 30, kmod 34 and modkit alike.
 *
 *  - uname(2): release = $TESTSUITE_UNAME_R when set (modkit reads
 *    /proc/sys/kernel/osrelease instead, which the runner writes into the chroot).
 *  - init_module(2), finit_module(2) (also through syscall(2)): the module's name is read
 *    from its .gnu.linkonce.this_module section (struct module's name field: offset 24 in
 *    64-bit ELF, 12 in 32-bit, as for the kernels the test modules were built for); the
 *    result is the one $TESTSUITE_INIT_MODULE_RETCODES gives for it
 *    ("name:ret:errno:name:ret:errno..."), else EEXIST when /sys/module/NAME/initstate
 *    says "live", else success, which creates /sys/module/NAME/initstate = "live".
 *    An image that is not ELF (or has no such section) succeeds and creates nothing.
 *    finit_module fails with ENOSYS when the (fake) release is older than 3.8, as the
 *    kernel did, so that tools fall back to init_module.
 *  - delete_module(2): the result $TESTSUITE_DELETE_MODULE_RETCODES gives, else success
 *    (nothing is removed from /sys/module).
 * No real module system call is ever made.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static int (*real_uname)(struct utsname *);

int uname(struct utsname *u)
{
	const char *r = getenv("TESTSUITE_UNAME_R");
	if (!real_uname)
		real_uname = (int (*)(struct utsname *))dlsym(RTLD_NEXT, "uname");
	if (real_uname(u) < 0)
		return -1;
	if (r) {
		memset(u->release, 0, sizeof(u->release));
		strncpy(u->release, r, sizeof(u->release) - 1);
	}
	return 0;
}

/* Looks NAME up in "name:ret:errno:..." ($var); 1 and ret, err set when listed. */
static int retcode(const char *var, const char *name, long *ret, int *err)
{
	const char *s = getenv(var);
	size_t n = strlen(name);
	while (s && *s) {
		const char *c = strchr(s, ':');
		if (!c)
			return 0;
		char *end;
		long r = strtol(c + 1, &end, 10);
		int e = 0;
		if (*end == ':')
			e = (int)strtol(end + 1, &end, 10);
		if ((size_t)(c - s) == n && strncmp(s, name, n) == 0) {
			*ret = r;
			*err = e;
			return 1;
		}
		s = *end == ':' ? end + 1 : end;
	}
	return 0;
}

/* The module name in the image's .gnu.linkonce.this_module section, or NULL. */
static const char *module_name(const unsigned char *m, size_t len)
{
	if (len < EI_NIDENT || memcmp(m, ELFMAG, SELFMAG) != 0)
		return NULL;
	if (m[EI_CLASS] == ELFCLASS64) {
		const Elf64_Ehdr *h = (const void *)m;
		if (len < sizeof(*h) || h->e_shoff == 0 || h->e_shstrndx >= h->e_shnum ||
		    h->e_shoff + (size_t)h->e_shnum * sizeof(Elf64_Shdr) > len)
			return NULL;
		const Elf64_Shdr *sh = (const void *)(m + h->e_shoff);
		const Elf64_Shdr *str = &sh[h->e_shstrndx];
		for (int i = 0; i < h->e_shnum; i++) {
			if (str->sh_offset + sh[i].sh_name >= len)
				continue;
			if (strcmp((const char *)m + str->sh_offset + sh[i].sh_name,
				   ".gnu.linkonce.this_module") == 0 &&
			    sh[i].sh_offset + 24 + 56 <= len)
				return (const char *)m + sh[i].sh_offset + 24;
		}
	} else if (m[EI_CLASS] == ELFCLASS32) {
		const Elf32_Ehdr *h = (const void *)m;
		if (len < sizeof(*h) || h->e_shoff == 0 || h->e_shstrndx >= h->e_shnum ||
		    h->e_shoff + (size_t)h->e_shnum * sizeof(Elf32_Shdr) > len)
			return NULL;
		const Elf32_Shdr *sh = (const void *)(m + h->e_shoff);
		const Elf32_Shdr *str = &sh[h->e_shstrndx];
		for (int i = 0; i < h->e_shnum; i++) {
			if (str->sh_offset + sh[i].sh_name >= len)
				continue;
			if (strcmp((const char *)m + str->sh_offset + sh[i].sh_name,
				   ".gnu.linkonce.this_module") == 0 &&
			    sh[i].sh_offset + 12 + 56 <= len)
				return (const char *)m + sh[i].sh_offset + 12;
		}
	}
	return NULL;
}

static int is_live(const char *name)
{
	char p[512], buf[16] = "";
	snprintf(p, sizeof(p), "/sys/module/%s/initstate", name);
	FILE *f = fopen(p, "re");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strcmp(buf, "live\n") == 0;
}

static void make_live(const char *name)
{
	char p[512];
	mkdir("/sys", 0755);
	mkdir("/sys/module", 0755);
	snprintf(p, sizeof(p), "/sys/module/%s", name);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "/sys/module/%s/initstate", name);
	FILE *f = fopen(p, "we");
	if (f) {
		fputs("live\n", f);
		fclose(f);
	}
}

static long fake_init(const void *mem, unsigned long len)
{
	char name[64];
	const char *n = module_name(mem, len);
	long ret;
	int err;
	if (!n)
		return 0;
	snprintf(name, sizeof(name), "%s", n);
	if (retcode("TESTSUITE_INIT_MODULE_RETCODES", name, &ret, &err)) {
		errno = err;
		return ret;
	}
	if (is_live(name)) {
		errno = EEXIST;
		return -1;
	}
	make_live(name);
	return 0;
}

static int release_at_least(int major, int minor)
{
	struct utsname u;
	int maj = 0, min = 0;
	const char *p;
	if (uname(&u) < 0)
		return 0;
	for (p = u.release; *p >= '0' && *p <= '9'; p++)
		maj = maj * 10 + *p - '0';
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			min = min * 10 + *p - '0';
	return maj > major || (maj == major && min >= minor);
}

static long fake_finit(int fd)
{
	struct stat st;
	if (!release_at_least(3, 8)) {
		errno = ENOSYS;
		return -1;
	}
	if (fstat(fd, &st) < 0)
		return -1;
	unsigned char *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	size_t done = 0;
	while (buf && done < (size_t)st.st_size) {
		ssize_t r = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);
		if (r <= 0)
			break;
		done += (size_t)r;
	}
	long ret = buf ? fake_init(buf, done) : 0;
	free(buf);
	return ret;
}

static long fake_delete(const char *name)
{
	long ret;
	int err;
	if (retcode("TESTSUITE_DELETE_MODULE_RETCODES", name, &ret, &err)) {
		errno = err;
		return ret;
	}
	return 0;
}

long init_module(void *mem, unsigned long len, const char *args)
{
	(void)args;
	return fake_init(mem, len);
}

int finit_module(int fd, const char *args, int flags)
{
	(void)args;
	(void)flags;
	return (int)fake_finit(fd);
}

long delete_module(const char *name, unsigned int flags)
{
	(void)flags;
	return fake_delete(name);
}

long syscall(long no, ...)
{
	static long (*real)(long, ...);
	va_list ap;
	long a[6];
	va_start(ap, no);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	switch (no) {
	case SYS_init_module:
		return fake_init((const void *)a[0], (unsigned long)a[1]);
	case SYS_finit_module:
		return fake_finit((int)a[0]);
	case SYS_delete_module:
		return fake_delete((const char *)a[0]);
	}
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	return real(no, a[0], a[1], a[2], a[3], a[4], a[5]);
}
