#ifndef PEACH_CFUSE3_SHIM_H
#define PEACH_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse_opt.h>
#endif
