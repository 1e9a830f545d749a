/*
 * invalctl: msgpack to JSON, for `stats --json`. The output is always
 * valid JSON: integers are printed exactly, strings and binary values are
 * escaped (bytes that do not form valid UTF-8 become \u00XX, as if they
 * were Latin-1), non-finite floats become null and map keys of any type
 * become strings.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "proto/codec.h"
#include "proto/invalctl/invalctl.h"

static void json_string(FILE *out, const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  fputc('"', out);
  while (i < len) {
    unsigned char ch = p[i];
    size_t n;
    if (ch == '"' || ch == '\\') {
      fputc('\\', out);
      fputc(ch, out);
      i++;
    } else if (ch == '\n') {
      fputs("\\n", out);
      i++;
    } else if (ch == '\t') {
      fputs("\\t", out);
      i++;
    } else if (ch == '\r') {
      fputs("\\r", out);
      i++;
    } else if (ch < 0x20 || ch == 0x7f) {
      fprintf(out, "\\u%04x", ch);
      i++;
    } else if ((n = inv_utf8_seq(p + i, len - i)) > 0) {
      fwrite(p + i, 1, n, out);
      i += n;
    } else {
      fprintf(out, "\\u%04x", ch);
      i++;
    }
  }
  fputc('"', out);
}

static void newline(FILE *out, int indent, int level) {
  if (indent <= 0) return;
  fputc('\n', out);
  fprintf(out, "%*s", indent * level, "");
}

/* Prints a scalar map key as a JSON string. */
static void json_key(FILE *out, const msgpack_object *k) {
  char tmp[64];
  switch (k->type) {
    case MSGPACK_OBJECT_STR:
      json_string(out, k->via.str.ptr, k->via.str.size);
      return;
    case MSGPACK_OBJECT_BIN:
      json_string(out, k->via.bin.ptr, k->via.bin.size);
      return;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      snprintf(tmp, sizeof tmp, "%" PRIu64, k->via.u64);
      break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      snprintf(tmp, sizeof tmp, "%" PRId64, k->via.i64);
      break;
    case MSGPACK_OBJECT_BOOLEAN:
      snprintf(tmp, sizeof tmp, "%s", k->via.boolean ? "true" : "false");
      break;
    case MSGPACK_OBJECT_NIL:
      snprintf(tmp, sizeof tmp, "%s", "null");
      break;
    default:
      /* Floats, arrays, maps and ext as keys do not occur in our stats;
       * naming the type keeps the output valid. */
      snprintf(tmp, sizeof tmp, "<type %d>", (int)k->type);
      break;
  }
  json_string(out, tmp, strlen(tmp));
}

void inv__ctl_print_json(FILE *out, const msgpack_object *o, int indent,
                         int level) {
  uint32_t i;
  switch (o->type) {
    case MSGPACK_OBJECT_NIL:
      fputs("null", out);
      break;
    case MSGPACK_OBJECT_BOOLEAN:
      fputs(o->via.boolean ? "true" : "false", out);
      break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      fprintf(out, "%" PRIu64, o->via.u64);
      break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      fprintf(out, "%" PRId64, o->via.i64);
      break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      if (isfinite(o->via.f64))
        fprintf(out, "%.17g", o->via.f64);
      else
        fputs("null", out);
      break;
    case MSGPACK_OBJECT_STR:
      json_string(out, o->via.str.ptr, o->via.str.size);
      break;
    case MSGPACK_OBJECT_BIN:
      json_string(out, o->via.bin.ptr, o->via.bin.size);
      break;
    case MSGPACK_OBJECT_EXT:
      json_string(out, o->via.ext.ptr, o->via.ext.size);
      break;
    case MSGPACK_OBJECT_ARRAY:
      fputc('[', out);
      for (i = 0; i < o->via.array.size; i++) {
        if (i > 0) fputc(',', out);
        newline(out, indent, level + 1);
        inv__ctl_print_json(out, &o->via.array.ptr[i], indent, level + 1);
      }
      if (o->via.array.size > 0) newline(out, indent, level);
      fputc(']', out);
      break;
    case MSGPACK_OBJECT_MAP:
      fputc('{', out);
      for (i = 0; i < o->via.map.size; i++) {
        if (i > 0) fputc(',', out);
        newline(out, indent, level + 1);
        json_key(out, &o->via.map.ptr[i].key);
        fputs(indent > 0 ? ": " : ":", out);
        inv__ctl_print_json(out, &o->via.map.ptr[i].val, indent, level + 1);
      }
      if (o->via.map.size > 0) newline(out, indent, level);
      fputc('}', out);
      break;
    default:
      fputs("null", out);
      break;
  }
}
