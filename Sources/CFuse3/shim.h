#ifndef PEACH_CFUSE3_SHIM_H
#define PEACH_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse_opt.h>
#include <sys/xattr.h>
/* renameat2(2) flags, which glibc's headers give only with _GNU_SOURCE. */
static const unsigned int PEACH_RENAME_NOREPLACE = 1;
static const unsigned int PEACH_RENAME_EXCHANGE = 2;
/* posix_spawn's new-session flag, also _GNU_SOURCE only. */
static const short PEACH_POSIX_SPAWN_SETSID = 0x80;
#endif
