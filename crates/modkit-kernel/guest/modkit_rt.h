/* SPDX-License-Identifier: GPL-2.0 */
/*
 * modkit_rt: the helpers generated scenario modules call (docs/kernel-driver.md).
 *
 * Every function returns 0 or a negative errno. Names are NUL-terminated strings of at
 * most MODKIT_RT_NAME_MAX bytes; keys are "kind:name".
 */
#ifndef MODKIT_RT_H
#define MODKIT_RT_H

#include <linux/types.h>

#define MODKIT_RT_NAME_MAX 255

struct module;
struct workqueue_struct;

/* try_module_get() of a live or coming module (-ENOENT otherwise). */
int modkit_rt_get_module(const char *name);
/* module_put() of a reference taken through modkit_rt (-EINVAL when there is none). */
int modkit_rt_put_module(const char *name);

/* The named table for kinds the kernel has no registry modkit can use. */
int modkit_rt_register(const char *key, struct module *owner);
int modkit_rt_unregister(const char *key);
/* fs: /proc/filesystems, then get_fs_type(); misc: /dev/NAME; others: the table. */
int modkit_rt_lookup(const char *key, bool get);

/* Named open files, shared by every module and event: misc:NAME opens /dev/NAME. */
int modkit_rt_open(const char *key, const char *fd);
int modkit_rt_close(const char *fd);

/* Named completions: complete_all(), and a killable wait (-ETIME on timeout). */
int modkit_rt_complete(const char *name);
int modkit_rt_wait_for(const char *name, s64 timeout_ns);

/* GPL-only kernel calls, for modules whose licence is not GPL-compatible. */
int modkit_rt_debugfs_create(const char *name);
int modkit_rt_debugfs_remove(const char *name);
struct workqueue_struct *modkit_rt_alloc_wq(const char *name);
void modkit_rt_destroy_wq(struct workqueue_struct *wq);

#endif /* MODKIT_RT_H */
