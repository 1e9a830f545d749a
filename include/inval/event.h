/*
 * The event an application sends to inval-publisher, and the id of the log
 * shard entry that holds it: the value types of the public API, shared by
 * the client library (inval/client.h) and the codec inside the service
 * (proto/event.h, which adds decoding, packing and the service's names).
 * See proto/PROTOCOL.md for their meaning on the wire.
 */
#ifndef INV_PUBLIC_EVENT_H
#define INV_PUBLIC_EVENT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The size of a buffer that holds any log entry id's text ("<ms>-<seq>")
 * and its NUL. The longest id, two 20-digit numbers and '-', takes 42
 * bytes; the rest is slack that the protocol has always allowed, so an id
 * of INV_SID_STRLEN bytes or more is refused wherever one is read
 * (payloads, acks, heartbeat records, Redis replies). The one constant for
 * every such buffer, inside the service too (proto/stream_id.h). */
#define INV_SID_STRLEN 48

/* What an event deletes: one key, every key with a prefix, or every key a
 * Redis glob pattern matches. */
typedef enum {
  INV_KIND_KEY = 0,
  INV_KIND_PREFIX = 1,
  INV_KIND_PATTERN = 2
} inv_kind_t;
/* Hard deletes the key; soft keeps a stale copy for the read path. */
typedef enum { INV_MODE_HARD = 0, INV_MODE_SOFT = 1 } inv_mode_t;

typedef struct inv_event_s {
  inv_kind_t kind;
  inv_mode_t mode;
  const char *target; /* not NUL-terminated; the client only reads it during
                       * the call, a decoded event points into its payload */
  size_t target_len;
} inv_event_t;

/* One log shard entry that holds events: its shard and its stream id
 * ("<ms>-<seq>", NUL-terminated). An ack and a broadcast name these. */
typedef struct inv_payload_id_s {
  unsigned shard; /* below the protocol's 64 log shards */
  char id[INV_SID_STRLEN];
} inv_payload_id_t;

#ifdef __cplusplus
}
#endif

#endif
