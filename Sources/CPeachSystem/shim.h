#ifndef PEACH_SYSTEM_SHIM_H
#define PEACH_SYSTEM_SHIM_H
/* Linux interfaces that glibc declares only under _GNU_SOURCE, which Swift's Glibc module does
   not define: extended attributes, renameat2 flags, posix_spawn extensions. */
#include <sys/xattr.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/fsuid.h>
#include <malloc.h>

static const unsigned int PEACH_RENAME_NOREPLACE = 1;
static const unsigned int PEACH_RENAME_EXCHANGE = 2;

/* glibc 2.34+: close every descriptor from fd up in the spawned child. */
int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int fd);
/* glibc 2.29+: chdir in the spawned child. */
int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);

/* lseek's data and hole seeking (Linux 3.1+), for copying sparse files. */
static const int PEACH_SEEK_DATA = 3;
static const int PEACH_SEEK_HOLE = 4;

/* glibc 2.27+: in-kernel copy of a byte range. */
ssize_t copy_file_range(int fd_in, long *off_in, int fd_out, long *off_out, size_t len, unsigned int flags);

/* posix_spawn's new-session flag. */
static const short PEACH_POSIX_SPAWN_SETSID = 0x80;
#endif
