// SPDX-License-Identifier: GPL-2.0
/*
 * modkit_rt: the runtime module of modkit's kernel driver (docs/kernel-driver.md).
 *
 * Loaded at boot before the scenario and never unloaded. It provides:
 *
 *  - /proc/modkit_rt, a control file: open, write one command, read "<int>\n".
 *      request_module NAME WAIT   request_module() / request_module_nowait()
 *      run ACTIONS                the scenario's actions, in the writer's task
 *  - helpers for generated modules (modkit_rt.h): references by module name, a
 *    named table for registration kinds the kernel has no usable registry for,
 *    named open files, named completions;
 *  - stand-ins for builtin exports the running kernel lacks (modkit_rt-builtin.c).
 *
 * Modules are found by name through a module notifier (find_module() is not
 * exported): an entry exists from MODULE_STATE_COMING until MODULE_STATE_GOING has
 * been notified, and the module cannot be freed while mk_lock is held by a lookup.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/init.h>
#include <linux/errno.h>
#include <linux/err.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/string.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/kmod.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/sched.h>
#include <linux/completion.h>
#include <linux/workqueue.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/fcntl.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>
#include <linux/debugfs.h>
#include <linux/dcache.h>
#include <linux/notifier.h>

#include "modkit_rt.h"

MODULE_LICENSE("GPL");
/* Not out of tree for the loader: the O taint and its once-per-boot line are left to the
 * scenario's modules (docs/kernel-driver.md, "Taints"). */
MODULE_INFO(intree, "Y");
MODULE_DESCRIPTION("modkit kernel driver runtime: control file and helpers for scenario modules");

#define MK_CMD_MAX		(64 * 1024)	/* one command written to /proc/modkit_rt */
#define MK_SPAWN_DEPTH		16		/* nested spawns in one action list */
#define MK_FS_LIST_MAX		(64 * 1024)	/* bytes of /proc/filesystems read */
#define MK_COMPLETIONS_MAX	4096

/* modkit_rt-builtin.c: the scenario's builtin module names, NULL-terminated. */
extern const char *const modkit_rt_builtin_names[];

/* ---------------------------------------------------------------- modules */

struct mk_mod {
	struct list_head list;
	struct module *mod;
	unsigned long pins;	/* references taken through modkit_rt, for put_module */
};

struct mk_reg {
	struct list_head list;
	struct module *owner;	/* NULL once the owner has gone */
	char owner_name[MODULE_NAME_LEN];
	char key[];
};

static LIST_HEAD(mk_mods);
static LIST_HEAD(mk_regs);
static DEFINE_MUTEX(mk_lock);	/* mk_mods, mk_regs */

static bool mk_name_ok(const char *s)
{
	return s && strnlen(s, MODKIT_RT_NAME_MAX + 1) <= MODKIT_RT_NAME_MAX;
}

static bool mk_is_builtin(const char *name)
{
	const char *const *p;

	for (p = modkit_rt_builtin_names; *p; p++)
		if (!strcmp(*p, name))
			return true;
	return false;
}

/* Under mk_lock. */
static struct mk_mod *mk_find_mod(const char *name)
{
	struct mk_mod *m;

	list_for_each_entry(m, &mk_mods, list)
		if (!strcmp(m->mod->name, name))
			return m;
	return NULL;
}

/* Under mk_lock. */
static struct mk_mod *mk_find_mod_ptr(struct module *mod)
{
	struct mk_mod *m;

	list_for_each_entry(m, &mk_mods, list)
		if (m->mod == mod)
			return m;
	return NULL;
}

/* Records a reference on @owner taken for a lookup, so that put_module may drop it. */
static void mk_note_pin(struct module *owner)
{
	struct mk_mod *m;

	if (!owner)
		return;
	mutex_lock(&mk_lock);
	m = mk_find_mod_ptr(owner);
	if (m)
		m->pins++;
	mutex_unlock(&mk_lock);
}

static int mk_module_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct module *mod = data;
	struct mk_mod *m;
	struct mk_reg *r;

	mutex_lock(&mk_lock);
	switch (action) {
	case MODULE_STATE_COMING:
		if (!mk_find_mod_ptr(mod)) {
			m = kzalloc(sizeof(*m), GFP_KERNEL);
			if (m) {
				m->mod = mod;
				list_add_tail(&m->list, &mk_mods);
			} else {
				pr_warn("modkit_rt: out of memory: %s cannot be found by name\n", mod->name);
			}
		}
		break;
	case MODULE_STATE_GOING:
		m = mk_find_mod_ptr(mod);
		if (m) {
			list_del(&m->list);
			kfree(m);
		}
		list_for_each_entry(r, &mk_regs, list)
			if (r->owner == mod)
				r->owner = NULL;
		break;
	default:
		break;
	}
	mutex_unlock(&mk_lock);
	return NOTIFY_DONE;
}

static struct notifier_block mk_module_nb = {
	.notifier_call = mk_module_notify,
};

int modkit_rt_get_module(const char *name)
{
	struct mk_mod *m;
	int ret = -ENOENT;

	if (!mk_name_ok(name))
		return -ENAMETOOLONG;
	if (mk_is_builtin(name))
		return 0;
	mutex_lock(&mk_lock);
	m = mk_find_mod(name);
	if (m && try_module_get(m->mod)) {
		m->pins++;
		ret = 0;
	}
	mutex_unlock(&mk_lock);
	return ret;
}
EXPORT_SYMBOL(modkit_rt_get_module);

int modkit_rt_put_module(const char *name)
{
	struct mk_mod *m;
	int ret = -EINVAL;

	if (!mk_name_ok(name))
		return -ENAMETOOLONG;
	if (mk_is_builtin(name))
		return 0;
	mutex_lock(&mk_lock);
	m = mk_find_mod(name);
	if (m && m->pins) {
		m->pins--;
		module_put(m->mod);
		ret = 0;
	}
	mutex_unlock(&mk_lock);
	return ret;
}
EXPORT_SYMBOL(modkit_rt_put_module);

/* ---------------------------------------------------------- named table */

/* Under mk_lock. */
static struct mk_reg *mk_find_reg(const char *key)
{
	struct mk_reg *r;

	list_for_each_entry(r, &mk_regs, list)
		if (!strcmp(r->key, key))
			return r;
	return NULL;
}

int modkit_rt_register(const char *key, struct module *owner)
{
	struct mk_reg *r;
	size_t len;
	int ret = 0;

	if (!mk_name_ok(key))
		return -ENAMETOOLONG;
	len = strlen(key);
	mutex_lock(&mk_lock);
	r = mk_find_reg(key);
	if (r) {
		const char *who = owner ? owner->name : "modkit_rt";

		/* The simulator's wording, so that one expectation fits both. */
		if (r->owner)
			pr_info("%s: cannot register %s: already registered by %s\n",
				who, key, r->owner_name);
		else
			pr_info("%s: cannot register %s: already registered by %s (left behind by %s, which is gone)\n",
				who, key, r->owner_name, r->owner_name);
		ret = -EEXIST;
		goto out;
	}
	r = kzalloc(sizeof(*r) + len + 1, GFP_KERNEL);
	if (!r) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(r->key, key, len + 1);
	r->owner = owner;
	strscpy(r->owner_name, owner ? owner->name : "modkit_rt", sizeof(r->owner_name));
	list_add_tail(&r->list, &mk_regs);
out:
	mutex_unlock(&mk_lock);
	return ret;
}
EXPORT_SYMBOL(modkit_rt_register);

int modkit_rt_unregister(const char *key)
{
	struct mk_reg *r;

	if (!mk_name_ok(key))
		return -ENAMETOOLONG;
	mutex_lock(&mk_lock);
	r = mk_find_reg(key);
	if (r)
		list_del(&r->list);
	mutex_unlock(&mk_lock);
	if (!r)
		return -ENOENT;
	kfree(r);
	return 0;
}
EXPORT_SYMBOL(modkit_rt_unregister);

/* ------------------------------------------------------------- lookups */

/* 0 when /proc/filesystems lists @name (a lookup that, unlike get_fs_type(), loads nothing). */
static int mk_fs_listed(const char *name)
{
	struct file *f;
	char *buf, *p, *line;
	size_t len = 0;
	loff_t pos = 0;
	ssize_t n;
	int ret = -ENOENT;

	f = filp_open("/proc/filesystems", O_RDONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	buf = kvmalloc(MK_FS_LIST_MAX + 1, GFP_KERNEL);
	if (!buf) {
		filp_close(f, NULL);
		return -ENOMEM;
	}
	while (len < MK_FS_LIST_MAX) {
		n = kernel_read(f, buf + len, MK_FS_LIST_MAX - len, &pos);
		if (n <= 0)
			break;
		len += n;
	}
	filp_close(f, NULL);
	buf[len] = '\0';
	p = buf;
	while ((line = strsep(&p, "\n")) != NULL) {
		char *tab = strrchr(line, '\t');

		if (tab && !strcmp(tab + 1, name)) {
			ret = 0;
			break;
		}
	}
	kvfree(buf);
	return ret;
}

static struct file *mk_open_dev(const char *name)
{
	char path[MODKIT_RT_NAME_MAX + 8];

	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return ERR_PTR(-ENOENT);
	snprintf(path, sizeof(path), "/dev/%s", name);
	return filp_open(path, O_RDWR, 0);
}

static const char *mk_kind(const char *key, size_t *kind_len)
{
	const char *colon = strchr(key, ':');

	if (!colon) {
		*kind_len = 0;
		return key;
	}
	*kind_len = colon - key;
	return colon + 1;
}

static bool mk_kind_is(const char *key, size_t kind_len, const char *kind)
{
	return kind_len == strlen(kind) && !strncmp(key, kind, kind_len);
}

/*
 * Finds @key; with @pinned, takes a reference on its owner and returns the owner
 * there (NULL for an owner that is built in).
 */
static int mk_lookup(const char *key, struct module **pinned)
{
	size_t kl;
	const char *name = mk_kind(key, &kl);
	struct mk_reg *r;
	int ret;

	if (pinned)
		*pinned = NULL;
	if (mk_kind_is(key, kl, "fs")) {
		struct file_system_type *fs;

		ret = mk_fs_listed(name);
		if (ret || !pinned)
			return ret;
		/* Listed: get_fs_type() finds it without loading anything (unless it is
		 * unregistered in between, or its owner is going). */
		fs = get_fs_type(name);
		if (!fs)
			return -ENOENT;
		*pinned = fs->owner;
		return 0;
	}
	if (mk_kind_is(key, kl, "misc")) {
		struct file *f = mk_open_dev(name);

		if (IS_ERR(f))
			return PTR_ERR(f);
		ret = 0;
		if (pinned) {
			struct module *owner = f->f_op ? f->f_op->owner : NULL;

			if (try_module_get(owner))
				*pinned = owner;
			else
				ret = -ENOENT;
		}
		filp_close(f, NULL);
		return ret;
	}
	if (mk_kind_is(key, kl, "debugfs")) {
		struct dentry *d;

		if (pinned)
			return -EOPNOTSUPP;	/* no owner to pin */
		d = debugfs_lookup(name, NULL);
		if (!d)
			return -ENOENT;
		dput(d);
		return 0;
	}
	mutex_lock(&mk_lock);
	r = mk_find_reg(key);
	ret = r ? 0 : -ENOENT;
	if (r && pinned) {
		if (r->owner && try_module_get(r->owner))
			*pinned = r->owner;
		else
			ret = -ENOENT;
	}
	mutex_unlock(&mk_lock);
	return ret;
}

int modkit_rt_lookup(const char *key, bool get)
{
	struct module *owner = NULL;
	int ret;

	if (!mk_name_ok(key))
		return -ENAMETOOLONG;
	ret = mk_lookup(key, get ? &owner : NULL);
	if (!ret && get)
		mk_note_pin(owner);
	return ret;
}
EXPORT_SYMBOL(modkit_rt_lookup);

/* ------------------------------------------------------------ open files */

struct mk_file {
	struct list_head list;
	struct file *file;	/* misc: the open device file, which pins its owner */
	struct module *pin;	/* other kinds: the owner pinned by the lookup */
	char name[];
};

static LIST_HEAD(mk_files);
static DEFINE_MUTEX(mk_files_lock);

static void mk_file_release(struct mk_file *e)
{
	if (e->file)
		filp_close(e->file, NULL);
	module_put(e->pin);
	kfree(e);
}

/* Under mk_files_lock. */
static struct mk_file *mk_find_file(const char *name)
{
	struct mk_file *e;

	list_for_each_entry(e, &mk_files, list)
		if (!strcmp(e->name, name))
			return e;
	return NULL;
}

int modkit_rt_open(const char *key, const char *fd)
{
	struct mk_file *e, *old;
	size_t kl, len;
	const char *name;
	int ret = 0;

	if (!mk_name_ok(key) || !mk_name_ok(fd))
		return -ENAMETOOLONG;
	name = mk_kind(key, &kl);
	len = strlen(fd);
	e = kzalloc(sizeof(*e) + len + 1, GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	memcpy(e->name, fd, len + 1);
	if (mk_kind_is(key, kl, "misc")) {
		struct file *f = mk_open_dev(name);

		if (IS_ERR(f))
			ret = PTR_ERR(f);
		else
			e->file = f;
	} else {
		ret = mk_lookup(key, &e->pin);
	}
	if (ret) {
		kfree(e);
		return ret;
	}
	mutex_lock(&mk_files_lock);
	old = mk_find_file(fd);
	if (old)
		list_del(&old->list);
	list_add_tail(&e->list, &mk_files);
	mutex_unlock(&mk_files_lock);
	if (old)
		mk_file_release(old);
	return 0;
}
EXPORT_SYMBOL(modkit_rt_open);

int modkit_rt_close(const char *fd)
{
	struct mk_file *e;

	if (!mk_name_ok(fd))
		return -ENAMETOOLONG;
	mutex_lock(&mk_files_lock);
	e = mk_find_file(fd);
	if (e)
		list_del(&e->list);
	mutex_unlock(&mk_files_lock);
	if (!e)
		return -EBADF;
	mk_file_release(e);
	return 0;
}
EXPORT_SYMBOL(modkit_rt_close);

/* ----------------------------------------------------------- completions */

struct mk_completion {
	struct list_head list;
	struct completion done;
	char name[];
};

static LIST_HEAD(mk_completions);
static DEFINE_MUTEX(mk_completions_lock);
static unsigned int mk_completions_count;

/* Finds or creates the completion @name; they live as long as modkit_rt. */
static struct mk_completion *mk_completion(const char *name)
{
	struct mk_completion *c;
	size_t len = strlen(name);

	mutex_lock(&mk_completions_lock);
	list_for_each_entry(c, &mk_completions, list)
		if (!strcmp(c->name, name))
			goto out;
	c = NULL;
	if (mk_completions_count >= MK_COMPLETIONS_MAX)
		goto out;
	c = kzalloc(sizeof(*c) + len + 1, GFP_KERNEL);
	if (!c)
		goto out;
	init_completion(&c->done);
	memcpy(c->name, name, len + 1);
	list_add_tail(&c->list, &mk_completions);
	mk_completions_count++;
out:
	mutex_unlock(&mk_completions_lock);
	return c;
}

int modkit_rt_complete(const char *name)
{
	struct mk_completion *c;

	if (!mk_name_ok(name))
		return -ENAMETOOLONG;
	c = mk_completion(name);
	if (!c)
		return -ENOMEM;
	complete_all(&c->done);
	return 0;
}
EXPORT_SYMBOL(modkit_rt_complete);

int modkit_rt_wait_for(const char *name, s64 timeout_ns)
{
	struct mk_completion *c;
	unsigned long timeout;
	long left;

	if (!mk_name_ok(name))
		return -ENAMETOOLONG;
	c = mk_completion(name);
	if (!c)
		return -ENOMEM;
	if (timeout_ns < 0)
		return wait_for_completion_killable(&c->done);
	timeout = msecs_to_jiffies((unsigned int)min_t(u64,
			DIV_ROUND_UP_ULL((u64)timeout_ns, NSEC_PER_MSEC), UINT_MAX));
	left = wait_for_completion_killable_timeout(&c->done, timeout);
	if (left > 0)
		return 0;
	return left ? (int)left : -ETIME;
}
EXPORT_SYMBOL(modkit_rt_wait_for);

/* ---------------------------------------------- GPL-only calls, re-exported */

int modkit_rt_debugfs_create(const char *name)
{
	struct dentry *d;

	if (!mk_name_ok(name))
		return -ENAMETOOLONG;
	d = debugfs_create_dir(name, NULL);
	return IS_ERR(d) ? PTR_ERR(d) : 0;
}
EXPORT_SYMBOL(modkit_rt_debugfs_create);

int modkit_rt_debugfs_remove(const char *name)
{
	struct dentry *d;

	if (!mk_name_ok(name))
		return -ENAMETOOLONG;
	d = debugfs_lookup(name, NULL);
	if (!d)
		return -ENOENT;
	debugfs_remove(d);
	dput(d);
	return 0;
}
EXPORT_SYMBOL(modkit_rt_debugfs_remove);

struct workqueue_struct *modkit_rt_alloc_wq(const char *name)
{
	return alloc_workqueue("modkit_%s", WQ_UNBOUND, 0, name);
}
EXPORT_SYMBOL(modkit_rt_alloc_wq);

void modkit_rt_destroy_wq(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}
EXPORT_SYMBOL(modkit_rt_destroy_wq);

/* --------------------------------------------------------------- actions */

enum mk_op {
	MK_SLEEP, MK_FAIL, MK_STOP, MK_REQUEST, MK_GET, MK_PUT, MK_USE, MK_REGISTER,
	MK_UNREGISTER, MK_LOOKUP, MK_OPEN, MK_CLOSE, MK_SPAWN, MK_COMPLETE, MK_WAIT_FOR,
};

static const struct {
	const char *word;
	enum mk_op op;
	int words;	/* the action word included */
} mk_ops[] = {
	{ "sleep", MK_SLEEP, 2 },
	{ "fail", MK_FAIL, 2 },
	{ "stop", MK_STOP, 1 },
	{ "request_module", MK_REQUEST, 4 },
	{ "get_module", MK_GET, 2 },
	{ "put_module", MK_PUT, 2 },
	{ "use_symbol", MK_USE, 2 },
	{ "register", MK_REGISTER, 2 },
	{ "unregister", MK_UNREGISTER, 2 },
	{ "lookup", MK_LOOKUP, 3 },
	{ "open", MK_OPEN, 3 },
	{ "close", MK_CLOSE, 2 },
	{ "spawn", MK_SPAWN, 2 },
	{ "complete", MK_COMPLETE, 2 },
	{ "wait_for", MK_WAIT_FOR, 3 },
};

#define MK_WORDS_MAX 4

struct mk_action {
	enum mk_op op;
	char *s[2];		/* decoded string arguments */
	s64 n;			/* the number argument */
	bool flag[2];		/* WAIT, REQUIRED / GET */
	const char *start;	/* the action's encoded text, for spawn */
	const char *end;
};

struct mk_list {
	struct mk_action *a;
	int n;
	char *strings;		/* decoded words */
};

static int mk_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes @len bytes at @src into @dst (NUL-terminated); the decoded length or -EINVAL. */
static int mk_decode(const char *src, size_t len, char *dst)
{
	size_t i, o = 0;

	if (len == 1 && src[0] == '%') {
		dst[0] = '\0';
		return 0;
	}
	for (i = 0; i < len; i++) {
		char c = src[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= len)
				return -EINVAL;
			h = mk_hex(src[i + 1]);
			l = mk_hex(src[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -EINVAL;
			c = (char)(h << 4 | l);
			i += 2;
		} else if (c == '\0' || c == ' ' || c == '\n') {
			return -EINVAL;
		}
		if (o >= MODKIT_RT_NAME_MAX)
			return -EINVAL;
		dst[o++] = c;
	}
	dst[o] = '\0';
	return o;
}

static int mk_number(const char *s, s64 min, s64 max, s64 *out)
{
	long long v;

	if (kstrtoll(s, 10, &v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int mk_bool(const char *s, bool *out)
{
	if (!strcmp(s, "0") || !strcmp(s, "1")) {
		*out = s[0] == '1';
		return 0;
	}
	return -EINVAL;
}

/* Parses one action at [@p, @end) into @a, its words decoded into *@strings. */
static int mk_parse_action(const char *p, const char *end, struct mk_action *a, char **strings)
{
	const char *w[MK_WORDS_MAX];
	size_t wl[MK_WORDS_MAX];
	char *dec[MK_WORDS_MAX];
	int nw = 0, i, ret;
	size_t k;
	const char *q = p;

	a->start = p;
	a->end = end;
	for (;;) {
		const char *c = memchr(q, ',', end - q);
		const char *e = c ? c : end;

		if (nw == MK_WORDS_MAX)
			return -EINVAL;
		w[nw] = q;
		wl[nw] = e - q;
		nw++;
		if (!c)
			break;
		q = c + 1;
	}
	for (i = 0; i < nw; i++) {
		dec[i] = *strings;
		ret = mk_decode(w[i], wl[i], dec[i]);
		if (ret < 0)
			return ret;
		*strings += ret + 1;
	}
	for (k = 0; k < ARRAY_SIZE(mk_ops); k++)
		if (!strcmp(dec[0], mk_ops[k].word))
			break;
	if (k == ARRAY_SIZE(mk_ops) || nw != mk_ops[k].words)
		return -EINVAL;
	a->op = mk_ops[k].op;
	switch (a->op) {
	case MK_SLEEP:
		return mk_number(dec[1], 0, S64_MAX, &a->n);
	case MK_FAIL:
		return mk_number(dec[1], 1, MAX_ERRNO, &a->n);
	case MK_STOP:
		return 0;
	case MK_REQUEST:
		a->s[0] = dec[1];
		ret = mk_bool(dec[2], &a->flag[0]);
		return ret ? ret : mk_bool(dec[3], &a->flag[1]);
	case MK_LOOKUP:
		a->s[0] = dec[1];
		return mk_bool(dec[2], &a->flag[0]);
	case MK_OPEN:
		a->s[0] = dec[1];
		a->s[1] = dec[2];
		return 0;
	case MK_WAIT_FOR:
		a->s[0] = dec[1];
		return mk_number(dec[2], -1, S64_MAX, &a->n);
	case MK_SPAWN:
		return mk_number(dec[1], 0, INT_MAX, &a->n);
	default:
		a->s[0] = dec[1];
		return 0;
	}
}

static void mk_free_list(struct mk_list *l)
{
	kvfree(l->a);
	kvfree(l->strings);
}

/* Parses and checks a whole action list (the spawn counts and their nesting). */
static int mk_parse(const char *text, struct mk_list *l)
{
	size_t len = strlen(text);
	int depth = 0, i, ret;
	int rem[MK_SPAWN_DEPTH];
	const char *p, *e;
	char *strings;

	l->n = 0;
	l->a = NULL;
	l->strings = NULL;
	if (!len)
		return 0;
	l->n = 1;
	for (p = text; *p; p++)
		if (*p == ';')
			l->n++;
	l->a = kvcalloc(l->n, sizeof(*l->a), GFP_KERNEL);
	l->strings = kvmalloc(len + 1, GFP_KERNEL);
	if (!l->a || !l->strings) {
		mk_free_list(l);
		return -ENOMEM;
	}
	strings = l->strings;
	p = text;
	for (i = 0; i < l->n; i++) {
		e = strchrnul(p, ';');
		ret = mk_parse_action(p, e, &l->a[i], &strings);
		if (ret)
			goto bad;
		p = e + 1;
	}
	for (i = 0; i < l->n; i++) {
		while (depth && !rem[depth - 1])
			depth--;
		if (depth)
			rem[depth - 1]--;
		if (l->a[i].op == MK_SPAWN && l->a[i].n > 0) {
			if (depth == MK_SPAWN_DEPTH)
				goto bad;
			rem[depth++] = l->a[i].n;
		}
	}
	while (depth && !rem[depth - 1])
		depth--;
	if (depth)
		goto bad;	/* a spawn takes more actions than follow it */
	return 0;
bad:
	mk_free_list(l);
	return -EINVAL;
}

/* The index after spawn @i and the actions it takes. */
static int mk_spawn_end(const struct mk_list *l, int i)
{
	s64 need = l->a[i].n;
	int j = i + 1;

	while (need > 0 && j < l->n) {
		need--;
		if (l->a[j].op == MK_SPAWN)
			need += l->a[j].n;
		j++;
	}
	return j;
}

static void mk_sleep_ns(u64 ns)
{
	unsigned long timeout;

	if (!ns)
		return;
	if (ns < NSEC_PER_MSEC) {
		unsigned long us = max_t(unsigned long, ns / NSEC_PER_USEC, 1);

		usleep_range(us, us);
		return;
	}
	timeout = msecs_to_jiffies((unsigned int)min_t(u64,
			DIV_ROUND_UP_ULL(ns, NSEC_PER_MSEC), UINT_MAX)) + 1;
	while (timeout)
		timeout = schedule_timeout_idle(timeout);
}

static struct workqueue_struct *mk_wq;

struct mk_work {
	struct work_struct work;
	char text[];
};

static int mk_run_text(const char *text, int *result);

static void mk_work_fn(struct work_struct *work)
{
	struct mk_work *w = container_of(work, struct mk_work, work);
	int result;

	mk_run_text(w->text, &result);
	kfree(w);
}

static int mk_spawn(const char *start, const char *end)
{
	size_t len = end - start;
	struct mk_work *w = kmalloc(sizeof(*w) + len + 1, GFP_KERNEL);

	if (!w)
		return -ENOMEM;
	memcpy(w->text, start, len);
	w->text[len] = '\0';
	INIT_WORK(&w->work, mk_work_fn);
	queue_work(mk_wq, &w->work);
	return 0;
}

/* One action, run as an event's (no module: register and use_symbol fail, as in the simulator). */
static int mk_do(const struct mk_action *a, bool *stop)
{
	size_t kl;
	int ret;

	switch (a->op) {
	case MK_SLEEP:
		mk_sleep_ns(a->n);
		return 0;
	case MK_FAIL:
		return -(int)a->n;
	case MK_STOP:
		*stop = true;
		return 0;
	case MK_REQUEST:
		ret = __request_module(a->flag[0], "%s", a->s[0]);
		return a->flag[1] ? ret : 0;
	case MK_GET:
		return modkit_rt_get_module(a->s[0]);
	case MK_PUT:
		return modkit_rt_put_module(a->s[0]);
	case MK_USE:
	case MK_REGISTER:
		return -EINVAL;
	case MK_UNREGISTER:
		mk_kind(a->s[0], &kl);
		if (mk_kind_is(a->s[0], kl, "debugfs"))
			return modkit_rt_debugfs_remove(a->s[0] + kl + 1);
		if (mk_kind_is(a->s[0], kl, "fs") || mk_kind_is(a->s[0], kl, "misc"))
			return -EOPNOTSUPP;
		return modkit_rt_unregister(a->s[0]);
	case MK_LOOKUP:
		return modkit_rt_lookup(a->s[0], a->flag[0]);
	case MK_OPEN:
		return modkit_rt_open(a->s[0], a->s[1]);
	case MK_CLOSE:
		return modkit_rt_close(a->s[0]);
	case MK_COMPLETE:
		return modkit_rt_complete(a->s[0]);
	case MK_WAIT_FOR:
		return modkit_rt_wait_for(a->s[0], a->n);
	case MK_SPAWN:
		break;
	}
	return -EINVAL;
}

/* Runs a list; *@result is 0 or the first failing action's value. -EINVAL if malformed. */
static int mk_run_text(const char *text, int *result)
{
	struct mk_list l;
	bool stop = false;
	int i = 0, ret = 0;

	*result = 0;
	ret = mk_parse(text, &l);
	if (ret)
		return ret;
	while (i < l.n && !stop) {
		const struct mk_action *a = &l.a[i];

		if (a->op == MK_SPAWN) {
			int end = mk_spawn_end(&l, i);

			ret = end > i + 1 ? mk_spawn(l.a[i + 1].start, l.a[end - 1].end) : 0;
			i = end;
		} else {
			ret = mk_do(a, &stop);
			i++;
		}
		if (ret) {
			*result = ret;
			break;
		}
	}
	mk_free_list(&l);
	return 0;
}

/* ---------------------------------------------------------- control file */

struct mk_session {
	int result;
	bool has_result;
};

static int mk_proc_open(struct inode *inode, struct file *file)
{
	struct mk_session *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return -ENOMEM;
	file->private_data = s;
	return 0;
}

static int mk_proc_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static int mk_command(char *cmd, int *result)
{
	if (!strncmp(cmd, "request_module ", 15)) {
		char *args = cmd + 15;
		char *name = strsep(&args, " ");
		char decoded[MODKIT_RT_NAME_MAX + 1];
		bool wait;

		if (!args || mk_decode(name, strlen(name), decoded) < 0 || mk_bool(args, &wait))
			return -EINVAL;
		*result = __request_module(wait, "%s", decoded);
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return mk_run_text("", result);
	if (!strncmp(cmd, "run ", 4))
		return mk_run_text(cmd + 4, result);
	return -EINVAL;
}

static ssize_t mk_proc_write(struct file *file, const char __user *ubuf, size_t count,
			     loff_t *ppos)
{
	struct mk_session *s = file->private_data;
	char *cmd;
	size_t len;
	int ret, result = 0;

	if (!count || count > MK_CMD_MAX)
		return -EINVAL;
	cmd = memdup_user_nul(ubuf, count);
	if (IS_ERR(cmd))
		return PTR_ERR(cmd);
	len = strlen(cmd);
	if (len != count && !(len + 1 == count && cmd[len] == '\0')) {
		ret = -EINVAL;	/* a NUL inside the command */
		goto out;
	}
	if (len && cmd[len - 1] == '\n')
		cmd[--len] = '\0';
	ret = mk_command(cmd, &result);
	if (!ret) {
		s->result = result;
		s->has_result = true;
		*ppos = 0;
	}
out:
	kfree(cmd);
	return ret ? ret : count;
}

static ssize_t mk_proc_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct mk_session *s = file->private_data;
	char tmp[24];
	int len;

	len = scnprintf(tmp, sizeof(tmp), "%d\n", s->has_result ? s->result : -ENODATA);
	return simple_read_from_buffer(ubuf, count, ppos, tmp, len);
}

static const struct proc_ops mk_proc_ops = {
	.proc_open = mk_proc_open,
	.proc_release = mk_proc_release,
	.proc_read = mk_proc_read,
	.proc_write = mk_proc_write,
	.proc_lseek = noop_llseek,
};

static struct proc_dir_entry *mk_proc;

/* ------------------------------------------------------------ init, exit */

static int __init modkit_rt_init(void)
{
	int ret;

	mk_wq = alloc_workqueue("modkit_rt", WQ_UNBOUND, 0);
	if (!mk_wq)
		return -ENOMEM;
	ret = register_module_notifier(&mk_module_nb);
	if (ret)
		goto fail_wq;
	mk_proc = proc_create("modkit_rt", 0600, NULL, &mk_proc_ops);
	if (!mk_proc) {
		ret = -ENOMEM;
		goto fail_notifier;
	}
	return 0;

fail_notifier:
	unregister_module_notifier(&mk_module_nb);
fail_wq:
	destroy_workqueue(mk_wq);
	return ret;
}
module_init(modkit_rt_init);

static void __exit modkit_rt_exit(void)
{
	struct mk_file *f, *fn;
	struct mk_completion *c, *cn;
	struct mk_reg *r, *rn;
	struct mk_mod *m, *mn;

	proc_remove(mk_proc);
	destroy_workqueue(mk_wq);
	unregister_module_notifier(&mk_module_nb);
	list_for_each_entry_safe(f, fn, &mk_files, list) {
		list_del(&f->list);
		mk_file_release(f);
	}
	list_for_each_entry_safe(c, cn, &mk_completions, list) {
		list_del(&c->list);
		kfree(c);
	}
	list_for_each_entry_safe(r, rn, &mk_regs, list) {
		list_del(&r->list);
		kfree(r);
	}
	list_for_each_entry_safe(m, mn, &mk_mods, list) {
		list_del(&m->list);
		kfree(m);
	}
}
module_exit(modkit_rt_exit);
