/*
 * The scripts of proto/scripts/, embedded at build time (see
 * proto/embed_scripts.cmake): the .lua files are the single source.
 *
 * The regeneration scripts (proto/PROTOCOL.md, "Scripts"):
 *
 *   commit.lua  KEYS K, L(K), S(K); ARGV token, value, ttl_ms.
 *               Writes K only if L(K) holds token, then deletes L(K) and
 *               S(K). Returns 1 (committed) or 0 (fenced).
 *   unlock.lua  KEYS L(K); ARGV token. Deletes L(K) if it holds token.
 *               Returns 1 or 0.
 *   soft.lua    KEYS K, L(K), S(K); ARGV grace_ms. Moves K to S(K) with the
 *               grace TTL and deletes L(K). Returns 1 (moved) or 0 (K absent).
 *
 * The publisher's (proto/PROTOCOL.md, "The entry and the per-shard script"):
 *
 *   log_append.lua  KEYS the shard's stream; ARGV max-log-len, payload, hint
 *               channel. Creates the stream with the group INV_LOG_GROUP
 *               when it is absent, appends the payload (XADD MAXLEN ~) and
 *               SPUBLISHes the new id. Returns the id.
 *
 * Callers send EVALSHA with sha and, on a NOSCRIPT reply (a restarted or
 * flushed script cache), the same call as EVAL with src, which also loads
 * the script for the next EVALSHA.
 */
#ifndef INV_SCRIPTS_H
#define INV_SCRIPTS_H

#include <stddef.h>

typedef struct inv_script_s {
  const char *name; /* the file's name without ".lua" */
  const char *src;  /* NUL-terminated Lua source */
  size_t len;
  const char *sha; /* 40 lowercase hex digits */
} inv_script_t;

extern const inv_script_t inv_script_commit;
extern const inv_script_t inv_script_unlock;
extern const inv_script_t inv_script_soft;
extern const inv_script_t inv_script_log_append;

#endif
