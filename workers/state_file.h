/*
 * The worker's state file, <state-dir>/worker-<id>.state: one line holding
 * the last log id the worker applied. It is replaced atomically (write a
 * temporary file, fsync it, rename it over the old one, fsync the
 * directory), so a crash leaves either the old or the new id, never a torn
 * file. The caller decides how often to save (state-save-interval).
 */
#ifndef INV_WORKER_STATE_FILE_H
#define INV_WORKER_STATE_FILE_H

#include <stddef.h>

#include "workers/stream_id.h"

/* Builds the path for worker id in dir into out. Characters of id other
 * than [A-Za-z0-9._-] become '_' (":" in "host:port" is fine on Linux but
 * awkward in shells). Returns 0, or INV_EINVAL when out is too small. */
int inv_state_path(const char *dir, const char *id, char *out, size_t outlen);

/* Reads the id. Returns 1 with *out set, 0 when the file does not exist,
 * or INV_EIO (unreadable) / INV_EINVAL (not an id), with err set. */
int inv_state_load(const char *path, inv_sid_t *out, char *err, size_t errlen);

/* Writes the id atomically. Blocking file I/O of a few bytes: callers run
 * it at most every state-save-interval. Returns 0, or INV_EIO with err set
 * (the old file is then intact). */
int inv_state_save(const char *path, inv_sid_t id, char *err, size_t errlen);

#endif
