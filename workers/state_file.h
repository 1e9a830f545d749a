/*
 * The worker's state file, <state-dir>/worker-<id>.state. Its first line is
 * the last log id the worker applied (the only line of files written
 * before ownership records existed; those still load). Optional lines
 * follow, one record each:
 *
 *   role primary | role replica <host:port of its primary>
 *   slots <ranges>                    the slots owned as a primary
 *   owed <from> <upto> all|<ranges>   a replay the worker still owes
 *
 * where <ranges> is "a-b,c,..." (slot numbers 0..16383, ascending or not)
 * or "-" for none. An "owed" record says: entries in (from, upto] must
 * still be applied for those slots ("all": a takeover after a promotion,
 * every slot), although the position may be past them for the others. The
 * role and slots say what the worker owned when it saved, so that a
 * restart can tell a promotion or a slot gain it never saw.
 *
 * The file is replaced atomically (write a temporary file, fsync it,
 * rename it over the old one, fsync the directory), so a crash leaves
 * either the old or the new state, never a torn file, and the position
 * and the records always go together. The caller decides how often to
 * save (state-save-interval, and at once on an ownership change).
 */
#ifndef INV_WORKER_STATE_FILE_H
#define INV_WORKER_STATE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/slot.h"
#include "workers/stream_id.h"

/* Largest state file read (a slot set of 8192 single slots is 48 KiB). */
#define INV_STATE_MAX_BYTES (256u * 1024u)
/* Owed records kept: one per kind (slots, all); more in a file merge. */
#define INV_STATE_OWED_MAX 2

enum { INV_STATE_ROLE_NONE = 0, INV_STATE_PRIMARY = 1, INV_STATE_REPLICA = 2 };

typedef struct inv_state_owed_s {
  inv_sid_t from, upto;
  int all;                      /* every slot (a takeover) */
  uint8_t slots[INV_SLOTS / 8]; /* when not all */
} inv_state_owed_t;

typedef struct inv_state_s {
  inv_sid_t pos;
  int role;          /* INV_STATE_ROLE_NONE when the file has no record */
  char master[300];  /* role replica: its primary, "host:port" */
  int has_slots;
  uint8_t slots[INV_SLOTS / 8];
  int nowed;
  inv_state_owed_t owed[INV_STATE_OWED_MAX];
} inv_state_t;

/* Builds the path for worker id in dir into out. Characters of id other
 * than [A-Za-z0-9._-] become '_' (":" in "host:port" is fine on Linux but
 * awkward in shells). Returns 0, or INV_EINVAL when out is too small. */
int inv_state_path(const char *dir, const char *id, char *out, size_t outlen);

/* Reads the whole state into *st (zeroed first). Owed records of the same
 * kind are merged (earliest from, latest upto, union of slots), which only
 * ever replays more. Returns 1 when read, 0 when the file does not exist,
 * INV_EIO (unreadable, or larger than INV_STATE_MAX_BYTES) or INV_EINVAL
 * (the first line is not an id) with err set, or INV_EPROTO when the
 * position was read but a record after it was not (st->pos is then valid,
 * the records are not; err names the line). */
int inv_state_read(const char *path, inv_state_t *st, char *err, size_t errlen);

/* Writes the whole state atomically. Blocking file I/O of a few bytes to a
 * few KiB. Returns 0, or INV_EIO with err set (the old file is intact). */
int inv_state_write(const char *path, const inv_state_t *st, char *err,
                    size_t errlen);

/* The position only (inv_state_read, records ignored; a bad record is
 * not an error here). Returns 1 with *out set, 0, INV_EIO or INV_EINVAL. */
int inv_state_load(const char *path, inv_sid_t *out, char *err, size_t errlen);

/* A state holding the position only. Returns as inv_state_write. */
int inv_state_save(const char *path, inv_sid_t id, char *err, size_t errlen);

/* Number of slots set in a slot bitmap. */
unsigned inv_state_slot_count(const uint8_t slots[INV_SLOTS / 8]);

#endif
