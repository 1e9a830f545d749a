/*
 * The wire codec: MessagePack-RPC framing and message decoding, with no I/O.
 *
 * A connection's bytes are fed to an inv_framer_t, which yields one complete
 * msgpack object (a frame) at a time. The framer knows each object's size
 * from its headers, so it enforces the limits before buffering: a frame
 * declared larger than max_message_bytes, nested deeper than max_depth or
 * holding more than max_items elements in total is refused at once. After
 * an error the framer stays in its error state (like hiredis's reader) and
 * every later call returns the same error.
 *
 * A frame is then decoded into an inv_msg_t, which checks the msgpack-rpc
 * shape: [0, msgid, method, params], [1, msgid, error, result] or
 * [2, method, params].
 */
#ifndef INV_CODEC_H
#define INV_CODEC_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

typedef struct inv_codec_limits_s {
  size_t max_message_bytes; /* default 1 MiB */
  unsigned max_depth;       /* default 16 */
  size_t
      max_items; /* array elements + map pairs per frame; default 1,000,000 */
} inv_codec_limits_t;

/* Fills the defaults named above. */
void inv_codec_limits_default(inv_codec_limits_t *lim);

/* The short name of a msgpack type for error messages ("str", "map", ...);
 * the integer and float variants share one name each. */
const char *inv_msgpack_type_name(msgpack_object_type t);

typedef struct inv_framer_s {
  int err;          /* 0, INV_EPROTO or INV_ETOOBIG; sticky */
  char errstr[128]; /* human-readable reason when err != 0 */
  inv_codec_limits_t lim;
  char *buf; /* owned; unconsumed input */
  size_t len, cap, pos;
  /* Incremental scan state, private to codec.c. */
  size_t scan_off;
  size_t scan_items;
  unsigned scan_depth;
  uint32_t scan_stack[64];
} inv_framer_t;

/* Initializes f with limits (NULL for defaults). Never fails. */
void inv_framer_init(inv_framer_t *f, const inv_codec_limits_t *lim);

/* Frees the buffer. Accepts NULL. */
void inv_framer_free(inv_framer_t *f);

/* Copies len bytes in. Returns 0, the sticky error, or INV_ENOMEM. */
int inv_framer_feed(inv_framer_t *f, const char *data, size_t len);

/* Yields the next complete frame. Returns 1 and sets *frame and *len (valid
 * until the next feed or next call) when a frame is ready, 0 when more bytes
 * are needed, or the sticky error (INV_EPROTO for bytes that are not
 * msgpack, such as 0xc1; INV_ETOOBIG for a limit). */
int inv_framer_next(inv_framer_t *f, const char **frame, size_t *len);

typedef enum {
  INV_MSG_REQUEST = 0,
  INV_MSG_RESPONSE = 1,
  INV_MSG_NOTIFY = 2
} inv_msg_type_t;

typedef struct inv_msg_s {
  inv_msg_type_t type;
  int has_msgid;      /* 1 when msgid could be read, even if decode failed */
  uint32_t msgid;     /* REQUEST and RESPONSE */
  const char *method; /* REQUEST and NOTIFY; not NUL-terminated */
  size_t method_len;
  msgpack_object params;     /* REQUEST and NOTIFY: always an array */
  msgpack_object error;      /* RESPONSE: nil or {"code":..,"message":..} */
  msgpack_object result;     /* RESPONSE */
  msgpack_unpacked unpacked; /* owns the objects above */
} inv_msg_t;

/*
 * Decodes one frame. Returns 0, or INV_EPROTO with errstr set (the message
 * says what is wrong: "expected an array of 4 elements", "msgid is not an
 * unsigned integer", ...). On INV_EPROTO, msg->has_msgid tells whether an
 * error response can name the request. inv_msg_destroy() must be called in
 * both cases.
 */
int inv_msg_decode(const char *frame, size_t len, inv_msg_t *msg,
                   char errstr[128]);

void inv_msg_destroy(inv_msg_t *msg); /* accepts NULL */

/* Looks up key (NUL-terminated) in a msgpack map; NULL when absent or when
 * map is not a map. */
const msgpack_object *inv_map_get(const msgpack_object *map, const char *key);

/* Returns 1 if o is a str or bin equal to s (NUL-terminated). */
int inv_obj_streq(const msgpack_object *o, const char *s);

/* Packing helpers. Each packs exactly the named message. */
void inv_pack_request_header(msgpack_packer *pk, uint32_t msgid,
                             const char *method); /* then pack params */
void inv_pack_notify_header(msgpack_packer *pk, const char *method);
void inv_pack_response_header(msgpack_packer *pk,
                              uint32_t msgid); /* nil error; then pack result */
void inv_pack_response_error(msgpack_packer *pk, uint32_t msgid,
                             const char *code, const char *message);
void inv_pack_str(msgpack_packer *pk, const char *s); /* NUL-terminated */

/* Returns the length of the valid UTF-8 sequence starting at p (len > 0
 * bytes at hand), or 0 when the bytes there are not valid UTF-8. Overlong
 * forms and surrogates are invalid. */
size_t inv_utf8_seq(const unsigned char *p, size_t len);

/* Returns 1 when s[0..len) is valid UTF-8 (an empty string is), else 0. */
int inv_utf8_valid(const char *s, size_t len);

#endif
