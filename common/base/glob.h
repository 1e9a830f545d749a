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

/* Returns 0 when pat is well-formed, INV_EINVAL (inval/errors.h) when it
 * is malformed: a '[' class that reaches the end of the pattern without
 * its closing ']' (a "\]" inside a class is a literal ']', and "[a-]" is
 * the range 'a'..']', so neither closes it), or a lone '\' at the end.
 * Redis still matches such patterns (the class ends with the pattern, the
 * '\' is literal) and so does inv_glob_match(), but what they match is
 * rarely what their author meant: "*[^" matches every key. */
int inv_glob_check(const char *pat, size_t patlen);

/* Returns a byte value b (0..255) such that no key made only of b's, of
 * any length, matches pat; or -1 when there is none, i.e. when every token
 * of pat other than '*' accepts all 256 byte values. Some one-byte token
 * rejects b, and every token but '*' consumes one byte of the key, so a
 * key of b's can match it nowhere. Tokens are judged by the matcher itself,
 * malformed ones included. */
int inv_glob_unmatched_byte(const char *pat, size_t patlen);

/* Returns 1 if pat is a flush: no token of it restricts the key's bytes
 * (inv_glob_unmatched_byte() is -1), so it matches every key of every
 * length it allows: "*", "**", "*?*", "?", "??*", "*[^]*", "[^]?",
 * "*[\x80-\x7f]" (range ends compare as signed char, as in Redis), ... :
 * the lengths alone decide. Otherwise 0, and the key of
 * inv_glob_unmatched_byte()'s b's is a key it leaves alone. Exact both
 * ways, with two edges that match (almost) nothing and so return 0: the
 * empty pattern (only the empty key), and a pattern whose match would
 * have to pass more than 1000 '*' runs followed by a token (Redis's
 * nesting limit, which makes it match no key). */
int inv_glob_matches_everything(const char *pat, size_t patlen);

/* Length of the literal prefix of pat: the bytes before the first
 * unescaped metacharacter, counting escapes as their literal byte. The
 * literal bytes themselves (escapes removed) are written to out if out is
 * not NULL (out needs patlen bytes). On a malformed pattern it agrees with
 * the matcher: the prefix stops at an unclosed '[', and a trailing lone
 * '\' counts as a literal backslash. */
size_t inv_glob_literal_prefix(const char *pat, size_t patlen, char *out);

/* If every key matching pat has the same hash slot, because the hash tag
 * lies wholly inside pat's literal prefix and is non-empty, returns 1 and
 * sets *slot. Example: "{user:42}:*" → slot of "user:42". Otherwise 0.
 * Built on inv_glob_literal_prefix(), so it holds on malformed patterns
 * too: every key they match still starts with the prefix. */
int inv_glob_pinned_slot(const char *pat, size_t patlen, unsigned *slot);

/* Writes prefix with every glob metacharacter escaped, followed by '*', to
 * out (needs 2 * prefixlen + 1 bytes). Returns the written length. This is
 * the SCAN MATCH pattern for a "prefix" event. */
size_t inv_glob_from_prefix(const char *prefix, size_t prefixlen, char *out);

#endif
