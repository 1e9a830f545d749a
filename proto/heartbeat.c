/*
 * Encoding and decoding of worker heartbeat records (see heartbeat.h).
 */
#include "proto/heartbeat.h"

#include <string.h>

#include "inval/errors.h"
#include "proto/codec_check.h"

static void pack_cstr(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v) {
  pack_cstr(pk, k);
  pack_cstr(pk, v);
}

static void pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v) {
  pack_cstr(pk, k);
  msgpack_pack_uint64(pk, v);
}

static void pack_health(msgpack_packer *pk, const inv_heartbeat_health_t *h) {
  uint32_t n = 1;
#define HB_COUNT(key) n++;
  INV_HEARTBEAT_HEALTH_MAP(HB_COUNT)
#undef HB_COUNT
  msgpack_pack_map(pk, n);
#define HB_PACK(key) pack_kv_u64(pk, #key, h->key);
  INV_HEARTBEAT_HEALTH_MAP(HB_PACK)
#undef HB_PACK
  pack_cstr(pk, "mem_fragmentation_ratio");
  msgpack_pack_double(pk, h->fragmentation);
}

uint32_t inv_heartbeat_entries(const inv_heartbeat_t *hb) {
  return 8u + (hb->instance[0] != '\0') + (hb->has_health != 0) +
         (hb->nshards > 0);
}

void inv_heartbeat_pack(msgpack_packer *pk, const inv_heartbeat_t *hb) {
  msgpack_pack_map(pk, inv_heartbeat_entries(hb));
  inv_heartbeat_pack_entries(pk, hb);
}

void inv_heartbeat_pack_entries(msgpack_packer *pk, const inv_heartbeat_t *hb) {
  pack_kv_str(pk, "id", hb->id);
  pack_kv_str(pk, "node", hb->node);
  pack_kv_str(pk, "role", hb->role);
  pack_kv_str(pk, "last_id", hb->last_id);
  pack_kv_u64(pk, "lag_ms", hb->lag_ms);
  pack_kv_u64(pk, "behind", hb->behind);
  pack_kv_u64(pk, "ts_ms", hb->ts_ms);
  pack_kv_u64(pk, "ttl_ms", hb->ttl_ms);
  if (hb->instance[0] != '\0') pack_kv_str(pk, "instance", hb->instance);
  if (hb->has_health) {
    pack_cstr(pk, "health");
    pack_health(pk, &hb->health);
  }
  if (hb->nshards > 0) {
    pack_cstr(pk, "shards");
    msgpack_pack_array(pk, (uint32_t)hb->nshards);
    for (size_t i = 0; i < hb->nshards; i++) {
      msgpack_pack_array(pk, 2);
      msgpack_pack_unsigned_int(pk, hb->shards[i].shard);
      pack_cstr(pk, hb->shards[i].acked);
    }
  }
}

/* The write callback that remembers an allocation failure, so encode can
 * report it (msgpack's packer would otherwise swallow it). */
typedef struct enc_s {
  inv_buf_t *out;
  int err;
} enc_t;

static int enc_write(void *data, const char *p, size_t len) {
  enc_t *e = data;
  if (e->err == 0 && inv_buf_append(e->out, p, len) != 0) e->err = INV_ENOMEM;
  return e->err;
}

int inv_heartbeat_encode(const inv_heartbeat_t *hb, inv_buf_t *out) {
  enc_t e = {out, 0};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &e, enc_write);
  inv_heartbeat_pack(&pk, hb);
  return e.err;
}

static int key_is(const msgpack_object *k, const char *s) {
  size_t n = strlen(s);
  if (k->type == MSGPACK_OBJECT_STR)
    return k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
  if (k->type == MSGPACK_OBJECT_BIN)
    return k->via.bin.size == n && memcmp(k->via.bin.ptr, s, n) == 0;
  return 0;
}

static void copy_str(const msgpack_object *v, char *dst, size_t dstlen) {
  const char *p = NULL;
  size_t n = 0;
  if (v->type == MSGPACK_OBJECT_STR) {
    p = v->via.str.ptr;
    n = v->via.str.size;
  } else if (v->type == MSGPACK_OBJECT_BIN) {
    p = v->via.bin.ptr;
    n = v->via.bin.size;
  }
  if (n >= dstlen) n = dstlen - 1;
  if (n > 0) memcpy(dst, p, n);
  dst[n] = '\0';
}

/* Reads an unsigned number; a float is clamped to [0, UINT64_MAX] first
 * (NaN reads as 0), since converting one out of range is undefined. */
static uint64_t get_u64(const msgpack_object *v) {
  if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return v->via.u64;
  if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) {
    if (!(v->via.f64 > 0)) return 0;
    if (v->via.f64 >= 18446744073709551616.0) return UINT64_MAX;
    return (uint64_t)v->via.f64;
  }
  return 0;
}

/* Reads a ratio: a finite number clamped to [0, INV_HEARTBEAT_FRAG_MAX], so
 * that what is decoded encodes and compares back as itself. */
static double get_ratio(const msgpack_object *v) {
  double d;
  if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
    d = v->via.f64;
  else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
    d = (double)v->via.u64;
  else
    return 0.0;
  if (!(d > 0)) return 0.0; /* negative, zero or NaN */
  return d > INV_HEARTBEAT_FRAG_MAX ? INV_HEARTBEAT_FRAG_MAX : d;
}

/* Reads "shards": pairs [shard < 64, id str] are kept, anything else is
 * skipped (the record is untrusted). */
static void decode_shards(const msgpack_object *a, inv_heartbeat_t *hb) {
  for (uint32_t i = 0; i < a->via.array.size; i++) {
    const msgpack_object *e = &a->via.array.ptr[i];
    if (hb->nshards == INV_HEARTBEAT_SHARDS_MAX) return;
    if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
        e->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        e->via.array.ptr[0].via.u64 >= INV_HEARTBEAT_SHARDS_MAX ||
        e->via.array.ptr[1].type != MSGPACK_OBJECT_STR)
      continue;
    hb->shards[hb->nshards].shard = (unsigned)e->via.array.ptr[0].via.u64;
    copy_str(&e->via.array.ptr[1], hb->shards[hb->nshards].acked,
             sizeof(hb->shards[0].acked));
    hb->nshards++;
  }
}

static void decode_health(const msgpack_object *m, inv_heartbeat_health_t *h) {
  for (uint32_t i = 0; i < m->via.map.size; i++) {
    const msgpack_object *k = &m->via.map.ptr[i].key;
    const msgpack_object *v = &m->via.map.ptr[i].val;
#define HB_GET(key)      \
  if (key_is(k, #key))   \
    h->key = get_u64(v); \
  else
    INV_HEARTBEAT_HEALTH_MAP(HB_GET)
#undef HB_GET
    if (key_is(k, "mem_fragmentation_ratio")) h->fragmentation = get_ratio(v);
  }
}

int inv_heartbeat_decode(const char *data, size_t len, inv_heartbeat_t *hb) {
  msgpack_unpacked u;
  size_t off = 0;
  int rc = INV_EPROTO;
  char why[128];
  memset(hb, 0, sizeof(*hb));
  /* msgpack-c sizes an array's storage from its declared count before it
   * reads the elements, so a five-byte record could ask for gigabytes:
   * bound the bytes, then check every declared size against them. */
  if (len > INV_HEARTBEAT_MAX_BYTES ||
      inv__msgpack_check(data, len, why, sizeof(why)) != 0)
    return INV_EPROTO;
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, data, len, &off) != MSGPACK_UNPACK_SUCCESS ||
      u.data.type != MSGPACK_OBJECT_MAP)
    goto out;
  for (uint32_t i = 0; i < u.data.via.map.size; i++) {
    const msgpack_object *k = &u.data.via.map.ptr[i].key;
    const msgpack_object *v = &u.data.via.map.ptr[i].val;
    if (key_is(k, "id"))
      copy_str(v, hb->id, sizeof(hb->id));
    else if (key_is(k, "node"))
      copy_str(v, hb->node, sizeof(hb->node));
    else if (key_is(k, "role"))
      copy_str(v, hb->role, sizeof(hb->role));
    else if (key_is(k, "last_id"))
      copy_str(v, hb->last_id, sizeof(hb->last_id));
    else if (key_is(k, "lag_ms"))
      hb->lag_ms = get_u64(v);
    else if (key_is(k, "behind"))
      hb->behind = get_u64(v);
    else if (key_is(k, "ts_ms"))
      hb->ts_ms = get_u64(v);
    else if (key_is(k, "ttl_ms"))
      hb->ttl_ms = get_u64(v);
    else if (key_is(k, "instance"))
      copy_str(v, hb->instance, sizeof(hb->instance));
    else if (key_is(k, "shards") && v->type == MSGPACK_OBJECT_ARRAY)
      decode_shards(v, hb);
    else if (key_is(k, "health") && v->type == MSGPACK_OBJECT_MAP) {
      hb->has_health = 1;
      decode_health(v, &hb->health);
    }
  }
  rc = 0;
out:
  msgpack_unpacked_destroy(&u);
  return rc;
}

int inv_heartbeat_is_stale(const inv_heartbeat_t *hb, uint64_t now_ms) {
  return now_ms > hb->ts_ms && now_ms - hb->ts_ms > hb->ttl_ms;
}
