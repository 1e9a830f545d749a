/*
 * Tenants: who may publish what, and how fast.
 *
 * A tenants file maps credentials to tenants. One tenant per line:
 *
 *   tenant NAME [token SECRET | token-file PATH | cert ID]...
 *               [namespaces NS[,NS...]] [namespace NS]... [rate N] [burst N]
 *
 * Words are separated by blanks; '#' at the start of a word starts a
 * comment; a word may be double-quoted (with \" and \\ inside). A credential
 * is a token (given inline or read from a file: its first line, relative
 * paths from the tenants file's folder) or a client-certificate identity
 * (the subject in RFC 2253 form, its CN, or one of its DNS, email or URI
 * subject alternative names, compared exactly). A tenant needs at least one
 * credential, and no credential may belong to two tenants.
 *
 * A namespace is a literal key prefix ("shop:"). A tenant without one is an
 * admin: it may touch any key (but never the service's own, which every
 * event is refused). With namespaces, an event is allowed only when every
 * key it can touch lies inside one of them: an exact key or a prefix that
 * starts with the namespace, or a pattern whose literal leading part (the
 * bytes before its first glob metacharacter, escapes read) does. Since
 * every key a pattern matches starts with that literal part, the rule is
 * exact: "shop:*" is the tenant's own flush and is allowed, "shop*",
 * "sho[p]:*", "?hop:*" and "*" are refused, "\s\h\o\p:x*" is "shop:x*".
 * A hash-tagged key is judged by its full name, like any other.
 *
 * rate N: at most N events a second, with bursts of burst events (default
 * N), as a token bucket; 0 (the default) is unlimited.
 *
 * Tokens are kept only as SHA-256 digests and compared in constant time;
 * nothing here logs or returns a token. Errors name the file and line
 * ("tenants.conf:4: namespace \"\" is empty").
 *
 * Pure code: no I/O but reading the files, no clock (callers pass the
 * time), no logging.
 */
#ifndef INV_TENANTS_H
#define INV_TENANTS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/event.h"

/* Longest tenant name; names are [A-Za-z0-9_.-] so that they can be a
 * Prometheus label value and a log word as they are. */
#define INV_TENANT_NAME_MAX 63
/* Longest namespace, in bytes. */
#define INV_TENANT_NS_MAX 256

typedef struct inv_tenants_s inv_tenants_t;

typedef struct inv_tenant_s {
  char name[INV_TENANT_NAME_MAX + 1];
  char **ns; /* owned; NULL with nns 0 for an admin */
  size_t *ns_len;
  size_t nns;
  char ns_text[160]; /* "shop:, cart:" for messages, shortened */
  double rate;       /* events a second; 0: unlimited */
  double burst;
  double tokens;                /* the bucket: events that may go now */
  uint64_t refilled_us;         /* when tokens was last brought up to date */
  unsigned char def_digest[32]; /* of the definition, to tell changes */
  uint64_t accepted, refused, limited; /* events, per outcome */
} inv_tenant_t;

/* Parses a whole tenants file held in text; name is used in messages (and
 * relative token-file paths are read from dir, which may be NULL for the
 * current folder). Returns 0 and *out, INV_ECONFIG with err naming the line,
 * or INV_ENOMEM. An empty file is valid: no tenant at all. */
int inv_tenants_parse(const char *name, const char *dir, const char *text,
                      inv_tenants_t **out, char *err, size_t errlen);

/* Reads and parses path (see inv_tenants_parse()). Returns 0 and *out, or
 * INV_ECONFIG (unreadable file, bad line) or INV_ENOMEM with err set. */
int inv_tenants_load_file(const char *path, inv_tenants_t **out, char *err,
                          size_t errlen);

/* Accepts NULL. */
void inv_tenants_free(inv_tenants_t *ts);

size_t inv_tenants_count(const inv_tenants_t *ts);
inv_tenant_t *inv_tenants_at(inv_tenants_t *ts, size_t i);

/* The tenant named name, or NULL. */
inv_tenant_t *inv_tenants_find(inv_tenants_t *ts, const char *name);

/*
 * The tenant a credential belongs to, or NULL. A token, when given (token
 * not NULL), decides alone: a wrong token is NULL even if a certificate
 * would match. Without a token the certificate identities are tried in
 * order. Tokens are compared as digests, in constant time, against every
 * token of the table.
 */
const inv_tenant_t *inv_tenants_authenticate(const inv_tenants_t *ts,
                                             const char *token,
                                             size_t token_len,
                                             const char *const *cert_ids,
                                             size_t ncert_ids);

/* 1 when the tenant may send an event of kind with target[0..len) (see
 * above), 0 when not. */
int inv_tenant_allows(const inv_tenant_t *t, inv_kind_t kind,
                      const char *target, size_t len);

/* Takes n events from the tenant's bucket at now_us. Returns 0, or
 * INV_EBUSY with *retry_after_ms set to when the bucket will hold enough.
 * A request larger than the burst passes once the bucket is full and
 * leaves it in debt, so no request size is refused for ever. */
int inv_tenant_take(inv_tenant_t *t, size_t n, uint64_t now_us,
                    uint64_t *retry_after_ms);

/* Carries over from old what a reload must keep, tenant by tenant (same
 * name): the bucket and the counters. old may be NULL. */
void inv_tenants_carry(inv_tenants_t *ts, const inv_tenants_t *old);

/* Describes in out how ts differs from old ("3 tenants; added a; removed
 * b; changed c" or "3 tenants; unchanged"); old may be NULL. */
void inv_tenants_describe_change(const inv_tenants_t *old,
                                 const inv_tenants_t *ts, char *out,
                                 size_t outlen);

#endif
