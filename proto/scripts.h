/*
 * The regeneration scripts of proto/scripts/, embedded at build time (see
 * proto/embed_scripts.cmake): the .lua files are the single source.
 *
 *   commit.lua  KEYS K, L(K), S(K); ARGV token, value, ttl_ms.
 *               Writes K only if L(K) holds token, then deletes L(K) and
 *               S(K). Returns 1 (committed) or 0 (fenced).
 *   unlock.lua  KEYS L(K); ARGV token. Deletes L(K) if it holds token.
 *               Returns 1 or 0.
 *   soft.lua    KEYS K, L(K), S(K); ARGV grace_ms. Moves K to S(K) with the
 *               grace TTL and deletes L(K). Returns 1 (moved) or 0 (K absent).
 *
 * Callers send EVALSHA with sha and, on a NOSCRIPT reply (a restarted or
 * flushed script cache), the same call as EVAL with src, which also loads
 * the script for the next EVALSHA.
 */
#ifndef INV_SCRIPTS_H
#define INV_SCRIPTS_H

#include <stddef.h>

typedef struct inv_script_s {
  const char *name; /* "commit", "unlock", "soft" */
  const char *src;  /* NUL-terminated Lua source */
  size_t len;
  const char *sha;  /* 40 lowercase hex digits */
} inv_script_t;

extern const inv_script_t inv_script_commit;
extern const inv_script_t inv_script_unlock;
extern const inv_script_t inv_script_soft;

#endif
