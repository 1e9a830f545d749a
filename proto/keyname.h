/*
 * The regeneration key contract (proto/PROTOCOL.md, "Regeneration: key
 * contract, scripts and read path"): the names of a value key's lock and
 * stale copy, and how a pattern invalidation recognises them.
 *
 * For a value key K, the base B(K) is K itself when K has a non-empty hash
 * tag, else "{" K "}"; the lock is B(K) ":lock" and the stale copy
 * B(K) ":stale". Both must hash to K's slot so that one script can touch
 * all three keys on one node. When they cannot (K = "a}{b": the braces of
 * "{a}{b}" make "a" the tag), K has no lock and no stale copy: readers use
 * plain GET and SET, and invalidation is a plain UNLINK K.
 *
 * Pure functions, no I/O; the worker and the read path both use them.
 */
#ifndef INV_KEYNAME_H
#define INV_KEYNAME_H

#include <stddef.h>

#define INV_LOCK_SUFFIX ":lock"
#define INV_STALE_SUFFIX ":stale"

typedef struct inv_regen_names_s {
  int keeps_slot; /* 0: K has no lock or stale copy (the names are NULL) */
  char *lock;     /* NUL-terminated, lock_len bytes */
  size_t lock_len;
  char *stale; /* NUL-terminated, stale_len bytes */
  size_t stale_len;
} inv_regen_names_t;

/* Fills *out with the lock and stale names of key (binary-safe). The names
 * live in one allocation released by inv_regen_names_free(). Returns 0, or
 * INV_ENOMEM (nothing to free). */
int inv_regen_names(const char *key, size_t len, inv_regen_names_t *out);

/* Releases what inv_regen_names() allocated. Accepts NULL. */
void inv_regen_names_free(inv_regen_names_t *names);

/* What a key found by a pattern scan is, for the pattern pat. */
typedef enum {
  INV_REGEN_VALUE = 0, /* a value key (whether or not it matches pat) */
  INV_REGEN_LOCK = 1,  /* the lock of a value key that matches pat */
  INV_REGEN_STALE = 2  /* the stale copy of a value key that matches pat */
} inv_regen_kind_t;

/* Classifies key against pat: INV_REGEN_LOCK or INV_REGEN_STALE when key is
 * the lock or stale copy of some value key K that matches pat and whose
 * names keep its slot (K is then key[*vstart .. *vstart + *vlen), when
 * vstart and vlen are not NULL), else INV_REGEN_VALUE. The derived reading
 * wins: a lock of a matching key is never handled as a value key in its
 * own right, even when it matches pat too. */
inv_regen_kind_t inv_regen_classify(const char *pat, size_t patlen,
                                    const char *key, size_t len, size_t *vstart,
                                    size_t *vlen);

/* Writes to out (needs patlen + 2 bytes) the SCAN MATCH pattern "*" pat "*",
 * which matches every key that matches pat and every lock and stale copy
 * of such a key ("{K}:lock" and "K:lock" alike), so that one SCAN pass
 * finds all three kinds; the exact kind is then told by inv_glob_match and
 * inv_regen_classify. Returns the length written, or 0 when pat ends inside
 * an unfinished construct (a class without ']' or a lone trailing '\'),
 * where appended bytes would change its meaning: the caller then scans
 * without MATCH and filters every key itself. */
size_t inv_regen_cover_pattern(const char *pat, size_t patlen, char *out);

#endif
