/* sigv4_dump.c - sign one request described on stdin and print the headers
 * signing produced.  A test tool (tests/client-sigv4-botocore.sh compares its
 * output with botocore's), not installed.
 *
 * Input, one item a line ("KEY VALUE", VALUE is the rest of the line):
 *   method PUT | host H[:PORT] | path /raw/path | region R | service S
 *   time EPOCH_SECONDS | access-key AKID | secret-key SK | token TOK
 *   query NAME [VALUE]        (decoded; repeat as needed)
 *   header NAME VALUE         (repeat as needed)
 *   body-hex HEX              (the body, hex; absent = empty)
 *   unsigned-payload
 * Output: "Authorization: ...", "X-Amz-Date: ...", "X-Amz-Content-SHA256: ..."
 * (when sent) and "Query: ..." (the canonical query the transport puts on
 * the wire).  With -c the canonical request goes to stderr as well.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "credentials.h"
#include "sigv4.h"

#define MAX_ITEMS 32

static int
hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static char *
dup_or_die(const char *s)
{
  char *d = strdup(s);
  if (d == NULL) {
    perror("strdup");
    exit(2);
  }
  return d;
}

int
main(int argc, char **argv)
{
  struct sigv4_param query[MAX_ITEMS];
  struct sigv4_header headers[MAX_ITEMS];
  struct sigv4_request req = { .query = query, .headers = headers };
  struct aws_credentials creds = { .source = "sigv4_dump" };
  struct sigv4_signed out;
  const char *region = NULL, *service = NULL;
  unsigned char *body = NULL;
  size_t body_len = 0;
  time_t now = 0;
  char *line = NULL, *q;
  size_t cap = 0;
  ssize_t n;
  bool show_canonical = argc > 1 && strcmp(argv[1], "-c") == 0;
  int r;

  while ((n = getline(&line, &cap, stdin)) >= 0) {
    char *key = line, *val;
    if (n > 0 && line[n - 1] == '\n')
      line[--n] = '\0';
    if (*line == '\0' || *line == '#')
      continue;
    val = strchr(line, ' ');
    if (val)
      *val++ = '\0';
    else
      val = line + n;
    if (strcmp(key, "method") == 0)
      req.method = dup_or_die(val);
    else if (strcmp(key, "host") == 0)
      req.host = dup_or_die(val);
    else if (strcmp(key, "path") == 0)
      req.path = dup_or_die(val);
    else if (strcmp(key, "region") == 0)
      region = dup_or_die(val);
    else if (strcmp(key, "service") == 0)
      service = dup_or_die(val);
    else if (strcmp(key, "time") == 0)
      now = (time_t) strtoll(val, NULL, 10);
    else if (strcmp(key, "access-key") == 0)
      creds.access_key_id = dup_or_die(val);
    else if (strcmp(key, "secret-key") == 0)
      creds.secret_access_key = dup_or_die(val);
    else if (strcmp(key, "token") == 0)
      creds.session_token = dup_or_die(val);
    else if (strcmp(key, "unsigned-payload") == 0)
      req.unsigned_payload = true;
    else if ((strcmp(key, "query") == 0 || strcmp(key, "header") == 0)) {
      char *sp = strchr(val, ' ');
      const char *v = "";
      if (sp) {
        *sp = '\0';
        v = sp + 1;
      }
      if (req.nquery >= MAX_ITEMS || req.nheaders >= MAX_ITEMS) {
        fprintf(stderr, "sigv4_dump: too many items\n");
        return 2;
      }
      if (key[0] == 'q')
        query[req.nquery++] = (struct sigv4_param) { dup_or_die(val), dup_or_die(v) };
      else
        headers[req.nheaders++] = (struct sigv4_header) { dup_or_die(val), dup_or_die(v) };
    }
    else if (strcmp(key, "body-hex") == 0) {
      size_t len = strlen(val);
      if (len % 2 || (body = malloc(len / 2 + 1)) == NULL) {
        fprintf(stderr, "sigv4_dump: bad body-hex\n");
        return 2;
      }
      for (size_t i = 0; i < len; i += 2) {
        int hi = hexval(val[i]), lo = hexval(val[i + 1]);
        if (hi < 0 || lo < 0) {
          fprintf(stderr, "sigv4_dump: bad body-hex\n");
          return 2;
        }
        body[body_len++] = (unsigned char) (hi << 4 | lo);
      }
    }
    else {
      fprintf(stderr, "sigv4_dump: unknown item '%s'\n", key);
      return 2;
    }
  }
  free(line);
  if (!req.method || !req.host || !req.path || !region || !service ||
      !creds.access_key_id || !creds.secret_access_key || now == 0) {
    fprintf(stderr, "sigv4_dump: need method, host, path, region, service, time, "
            "access-key and secret-key\n");
    return 2;
  }
  req.body = body;
  req.body_len = body_len;

  r = sigv4_sign(&req, &creds, region, service, now, &out);
  if (r < 0) {
    fprintf(stderr, "sigv4_dump: sigv4_sign: %s\n", strerror(-r));
    return 1;
  }
  if (show_canonical) {
    char *cr = sigv4_canonical_request(&req, &creds, out.amz_date);
    fprintf(stderr, "%s\n", cr ? cr : "(error)");
    free(cr);
  }
  q = sigv4_canonical_query(query, req.nquery);
  if (q == NULL) {
    fprintf(stderr, "sigv4_dump: out of memory\n");
    return 1;
  }
  printf("Authorization: %s\nX-Amz-Date: %s\n", out.authorization, out.amz_date);
  if (out.content_sha256[0])
    printf("X-Amz-Content-SHA256: %s\n", out.content_sha256);
  printf("Query: %s\n", q);
  free(q);
  r = fflush(stdout) == 0 ? 0 : 1;

  for (size_t i = 0; i < req.nquery; i++) {
    free((char *) query[i].name);
    free((char *) query[i].value);
  }
  for (size_t i = 0; i < req.nheaders; i++) {
    free((char *) headers[i].name);
    free((char *) headers[i].value);
  }
  free((char *) req.method);
  free((char *) req.host);
  free((char *) req.path);
  free((char *) region);
  free((char *) service);
  free(creds.access_key_id);
  free(creds.secret_access_key);
  free(creds.session_token);
  free(body);
  return r;
}
