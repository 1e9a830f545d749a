/*
 * Glob patterns with the semantics of Redis KEYS/SCAN MATCH: '*' any run,
 * '?' any byte, '[abc]', '[^a]', '[a-z]' classes, '\x' a literal x.
 * Matching is byte-wise and binary-safe.
 */
#ifndef INV_GLOB_H
#define INV_GLOB_H

#include <stddef.h>

/* Returns 1 if s matches pat, 0 otherwise. Never recurses without bound:
 * runs of '*' are collapsed and the match is iterative or depth-limited. */
int inv_glob_match(const char *pat, size_t patlen, const char *s, size_t slen);

/* Returns 1 if pat matches every key of any length ("*", "**", "*?*"),
 * which is what a flush looks like: the pattern holds at least one '*' and
 * nothing but '*' and '?' ("*?*" misses only the empty key, which Redis
 * cannot store). "", "?" and "??" match keys of one length only, so they
 * return 0. */
int inv_glob_matches_everything(const char *pat, size_t patlen);

/* Length of the literal prefix of pat: the bytes before the first
 * unescaped metacharacter, counting escapes as their literal byte. The
 * literal bytes themselves (escapes removed) are written to out if out is
 * not NULL (out needs patlen bytes). */
size_t inv_glob_literal_prefix(const char *pat, size_t patlen, char *out);

/* If every key matching pat has the same hash slot, because the hash tag
 * lies wholly inside pat's literal prefix and is non-empty, returns 1 and
 * sets *slot. Example: "{user:42}:*" → slot of "user:42". Otherwise 0. */
int inv_glob_pinned_slot(const char *pat, size_t patlen, unsigned *slot);

/* Writes prefix with every glob metacharacter escaped, followed by '*', to
 * out (needs 2 * prefixlen + 1 bytes). Returns the written length. This is
 * the SCAN MATCH pattern for a "prefix" event. */
size_t inv_glob_from_prefix(const char *prefix, size_t prefixlen, char *out);

#endif
