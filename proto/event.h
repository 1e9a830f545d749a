/*
 * Invalidation events and the log and broadcast payloads.
 *
 * An event is {"kind": "key"|"prefix"|"pattern", "target": str|bin,
 * "mode": "hard"|"soft"}. A log shard entry (proto/log_shard.h) stores
 * {"v": 2, "ts": <ms>, "events": [event, ...]} in its field "p": the
 * batch's events routed to that shard. The payload published on
 * cache:invalidation is {"v": 2, "ts", "events": [every event of the
 * batch], "ids": [[shard, "<entry id>"], ...]}. See proto/PROTOCOL.md.
 *
 * The value types an application uses (inv_event_t, its kinds and modes,
 * inv_payload_id_t) are public, in inval/event.h; what is here is the
 * service's own: validation, packing, payloads and key names.
 */
#ifndef INV_EVENT_H
#define INV_EVENT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "inval/event.h"

#define INV_PROTO_VERSION 1
/* The service's own namespace: the broadcast channel's name, and the prefix
 * (followed by ':') of every key and channel the service keeps in Redis.
 * No event may ever delete a key of it (see inv_key_reserved). */
#define INV_NAMESPACE "cache:invalidation"
#define INV_CHANNEL INV_NAMESPACE
/* The log shards' hint channels are INV_SHARD_CHANNEL_PREFIX "{<tag>}"
 * (proto/log_shard.h, inv_log_shard_channel). */
#define INV_SHARD_CHANNEL_PREFIX INV_NAMESPACE ":shard:"

typedef struct inv_event_rules_s {
  size_t max_key_len; /* a longer target is EINVAL */
  int allow_flush;    /* when 0, a flush pattern or empty prefix is EINVAL */
} inv_event_rules_t;

/* Returns 1 when the len bytes at key name one of the service's own keys:
 * INV_NAMESPACE itself, or any name that starts with INV_NAMESPACE ":" (the
 * log, the heartbeats, and whatever the service adds there later). The
 * publisher refuses an exact key or a prefix for which this holds, and
 * workers never delete such a key, whatever pattern matched it. */
int inv_key_reserved(const char *key, size_t len);

const char *inv_kind_name(inv_kind_t kind); /* "key", "prefix", "pattern" */
const char *inv_mode_name(inv_mode_t mode); /* "hard", "soft" */

/* Reads and validates one event object. Returns 0, or INV_EINVAL with errstr
 * naming the problem ("event 3: target is empty"). index is used in the
 * message only. Always refused: a malformed pattern (inv_glob_check), and
 * a key or prefix for which inv_key_reserved() holds. Refused unless
 * allow_flush: a flush, i.e. an empty prefix or a pattern for which
 * inv_glob_matches_everything() holds. */
int inv_event_parse(const msgpack_object *o, const inv_event_rules_t *rules,
                    size_t index, inv_event_t *ev, char *errstr, size_t errlen);

/* Packs one event as a map of kind, target and mode. The target is packed
 * as str when it is valid UTF-8 and as bin otherwise, so that standard
 * decoders read it (receivers accept str or bin for targets). */
void inv_event_pack(msgpack_packer *pk, const inv_event_t *ev);

/* A decoded payload. events and ids point to arrays owned by the payload. */
typedef struct inv_payload_s {
  int version; /* INV_PAYLOAD_VERSION: other versions are refused */
  uint64_t ts_ms;
  inv_event_t *events;
  size_t nevents;
  inv_payload_id_t *ids; /* a broadcast's "ids" (at most INV_LOG_SHARDS) */
  size_t nids;
  msgpack_unpacked unpacked; /* owns the targets */
} inv_payload_t;

/* Decodes a published payload or a log entry's payload. "v" must be
 * INV_PAYLOAD_VERSION ("payload version 1 is not supported (expected 2)"
 * otherwise). Events are checked for shape only (kind, target, mode), not
 * against publisher rules. Returns 0, INV_EPROTO with errstr, or
 * INV_ENOMEM. inv_payload_destroy() must be
 * called in every case. */
int inv_payload_decode(const char *data, size_t len, inv_payload_t *p,
                       char *errstr, size_t errlen);
void inv_payload_destroy(inv_payload_t *p); /* accepts NULL */

#endif
