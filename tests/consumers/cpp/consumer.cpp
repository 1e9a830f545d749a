// A C++ application of the installed client library: the cache read path
// and the publisher client, through the public headers only.
//
//   consumer HOST REDIS_PORT PUBLISHER_PORT PREFIX
//
// Fills PREFIX "keep" and PREFIX "gone" through inv_cache_get_or_fill (each
// regenerated as "value of <key>"), reads PREFIX "keep" again (a hit), then
// invalidates PREFIX "gone" through the publisher. Prints one line per step
// and exits 0, or prints the failure and exits 1.
#include <inval/cache.h>
#include <inval/client.h>
#include <inval/errors.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int regenerations = 0;

// The source of truth: "value of <key>", malloc'ed as the callback's
// contract asks (the read path frees it with free()).
int regenerate(void *, const char *key, size_t keylen, char **data,
               size_t *len) {
  std::string value = "value of " + std::string(key, keylen);
  *data = static_cast<char *>(std::malloc(value.size()));
  if (*data == nullptr) return INV_ENOMEM;
  std::memcpy(*data, value.data(), value.size());
  *len = value.size();
  regenerations++;
  return 0;
}

bool fail(const char *what, int rc, const char *detail) {
  std::printf("%s: %s: %s\n", what, inv_err_name(rc), detail);
  return false;
}

// Reads key through the lock protocol and prints how it was answered.
bool read_key(inv_cache_redis_t *redis, const std::string &key) {
  inv_cache_value_t value;
  int rc = inv_cache_get_or_fill(redis, key.data(), key.size(), 60000,
                                 regenerate, nullptr, nullptr, &value);
  if (rc < 0) return fail("get_or_fill", rc, inv_cache_redis_errstr(redis));
  std::printf("%s %s %s\n", inv_cache_source_name(value.source), key.c_str(),
              std::string(value.data, value.len).c_str());
  inv_cache_value_free(&value);
  return true;
}

bool invalidate(const char *host, int port, const std::string &key) {
  inv_client_opts_t opts;
  inv_client_opts_default(&opts);
  opts.client_name = "consumer-cpp";
  inv_client_t *client = nullptr;
  char err[256];
  int rc = inv_client_connect(host, port, &opts, &client, err, sizeof(err));
  if (rc < 0) return fail("connect", rc, err);
  inv_event_t ev = {INV_KIND_KEY, INV_MODE_HARD, key.data(), key.size()};
  inv_client_ack_t ack;
  rc = inv_client_invalidate(client, &ev, 1, &ack);
  if (rc < 0) {
    fail("invalidate", rc, inv_client_errstr(client));
    inv_client_close(client);
    return false;
  }
  std::printf("acked %llu server %s shard %u id %s\n",
              static_cast<unsigned long long>(ack.accepted),
              inv_client_server(client)->name,
              ack.nids > 0 ? ack.ids[0].shard : 99u, ack.id);
  inv_client_close(client);
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s HOST REDIS_PORT PUBLISHER_PORT PREFIX\n",
                 argv[0]);
    return 2;
  }
  std::string seed = std::string(argv[1]) + ":" + argv[2];
  const char *seeds[] = {seed.c_str()};
  std::string prefix = argv[4];
  inv_cache_redis_t *redis = nullptr;
  char err[256];
  int rc = inv_cache_redis_open(seeds, 1, nullptr, &redis, err, sizeof(err));
  if (rc < 0) {
    fail("open", rc, err);
    return 1;
  }
  bool ok = read_key(redis, prefix + "keep") &&
            read_key(redis, prefix + "gone") &&
            read_key(redis, prefix + "keep");
  inv_cache_redis_close(redis);
  if (ok) std::printf("regenerations %d\n", regenerations);
  ok = ok && invalidate(argv[1], std::atoi(argv[3]), prefix + "gone");
  return ok ? 0 : 1;
}
