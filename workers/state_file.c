/*
 * Atomic state file (see state_file.h).
 */
#include "workers/state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/errors.h"

int inv_state_path(const char *dir, const char *id, char *out, size_t outlen) {
  int n = snprintf(out, outlen, "%s/worker-", dir);
  if (n < 0 || (size_t)n >= outlen) return INV_EINVAL;
  size_t len = (size_t)n;
  for (const char *p = id; *p; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (len + 1 >= outlen) return INV_EINVAL;
    out[len++] = ok ? c : '_';
  }
  if (len + sizeof(".state") > outlen) return INV_EINVAL;
  memcpy(out + len, ".state", sizeof(".state"));
  return 0;
}

int inv_state_load(const char *path, inv_sid_t *out, char *err, size_t errlen) {
  char line[128];
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return INV_EIO;
  }
  size_t n = fread(line, 1, sizeof(line) - 1, f);
  int rerr = ferror(f);
  fclose(f);
  if (rerr) {
    snprintf(err, errlen, "%s: read error", path);
    return INV_EIO;
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' ||
                   line[n - 1] == ' '))
    n--;
  if (inv_sid_parse(line, n, out) != 0) {
    snprintf(err, errlen, "%s: not a stream id", path);
    return INV_EINVAL;
  }
  return 1;
}

int inv_state_save(const char *path, inv_sid_t id, char *err, size_t errlen) {
  char tmp[4200], text[INV_SID_STRLEN + 1], dirbuf[4200];
  int fd = -1;
  size_t n;
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
    snprintf(err, errlen, "%s: path too long", path);
    return INV_EIO;
  }
  inv_sid_format(id, text);
  n = strlen(text);
  text[n++] = '\n';
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) goto err;
  if (write(fd, text, n) != (ssize_t)n) goto err;
  if (fsync(fd) != 0) goto err;
  if (close(fd) != 0) {
    fd = -1;
    goto err;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto err;
  /* The rename is durable only once the directory is synced. */
  snprintf(dirbuf, sizeof(dirbuf), "%s", path);
  fd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  return 0;
err:
  snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
  if (fd >= 0) close(fd);
  unlink(tmp);
  return INV_EIO;
}
