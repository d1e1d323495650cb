/* ebs_json_test.c - response parsing, including hostile, oversized and
 * malformed bodies: every one must fail cleanly (-EPROTO), never crash or
 * return half-filled pages. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "buf.h"
#include "ebs_json.h"
#include "testing.h"

static int
page(const char *s, struct ebs_block_page *p)
{
  char err[200];
  return ebs_json_block_page(s, strlen(s), p, err, sizeof err);
}

int
main(void)
{
  struct ebs_block_page p;
  struct ebs_changed_page cp;
  struct ebs_snapshot_info si;
  char err[200], status[16];
  int r;

  /* A normal page. */
  r = page("{\"Blocks\":[{\"BlockIndex\":0,\"BlockToken\":\"AAA+/=\"},"
           "{\"BlockIndex\":7,\"BlockToken\":\"BBB\"}],"
           "\"ExpiryTime\":1.7e9,\"VolumeSize\":16384,\"BlockSize\":524288,"
           "\"NextToken\":\"nxt+/=\"}", &p);
  CHECK_INTEQ(r, 0);
  CHECK_INTEQ(p.nblocks, 2);
  CHECK_INTEQ(p.blocks[1].index, 7);
  CHECK_STREQ(p.blocks[0].token, "AAA+/=");
  CHECK_STREQ(p.blocks[1].token, "BBB");
  CHECK_STREQ(p.next_token, "nxt+/=");
  CHECK_INTEQ(p.volume_size_gib, 16384);
  CHECK_INTEQ(p.block_size, 524288);
  CHECK(p.expiry_time == 1.7e9);
  ebs_block_page_free(&p);
  CHECK(p.blocks == NULL && p.storage_ == NULL);
  ebs_block_page_free(&p);           /* twice is harmless */

  /* Last page: no NextToken, null NextToken, empty block list. */
  CHECK_INTEQ(page("{\"Blocks\":[],\"VolumeSize\":1,\"BlockSize\":524288}", &p), 0);
  CHECK(p.next_token == NULL && p.nblocks == 0);
  ebs_block_page_free(&p);
  CHECK_INTEQ(page("{\"Blocks\":[],\"NextToken\":null}", &p), 0);
  CHECK(p.next_token == NULL);
  ebs_block_page_free(&p);
  CHECK_INTEQ(page("{}", &p), 0);
  CHECK(p.nblocks == 0);
  ebs_block_page_free(&p);

  /* Malformed. */
  CHECK_INTEQ(page("", &p), -EPROTO);
  CHECK_INTEQ(page("[]", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":", &p), -EPROTO);
  CHECK_INTEQ(page("not json", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":{}}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[1,2]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":\"1\",\"BlockToken\":\"x\"}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":-1,\"BlockToken\":\"x\"}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":1.5,\"BlockToken\":\"x\"}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":4294967296,\"BlockToken\":\"x\"}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":1e300,\"BlockToken\":\"x\"}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":1}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":1,\"BlockToken\":7}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":5,\"BlockToken\":\"a\"},"
                   "{\"BlockIndex\":5,\"BlockToken\":\"b\"}]}", &p), -EPROTO);   /* not ascending */
  CHECK_INTEQ(page("{\"Blocks\":[{\"BlockIndex\":6,\"BlockToken\":\"a\"},"
                   "{\"BlockIndex\":5,\"BlockToken\":\"b\"}]}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[],\"NextToken\":5}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[],\"VolumeSize\":-3}", &p), -EPROTO);
  CHECK_INTEQ(page("{\"Blocks\":[],\"BlockSize\":\"big\"}", &p), -EPROTO);
  CHECK(p.blocks == NULL && p.storage_ == NULL);     /* failures leave nothing */

  /* Hostile: an over-long token, too many entries, a body over the cap,
   * deep nesting. */
  {
    struct buf b;
    buf_init(&b, 64u << 20);
    CHECK_INTEQ(buf_append_str(&b, "{\"Blocks\":[{\"BlockIndex\":1,\"BlockToken\":\""), 0);
    for (int i = 0; i < EBS_JSON_MAX_TOKEN + 1; i++)
      buf_append_str(&b, "A");
    buf_append_str(&b, "\"}]}");
    CHECK_INTEQ(page(b.data, &p), -EPROTO);

    buf_reset(&b);
    buf_append_str(&b, "{\"Blocks\":[");
    for (int i = 0; i <= EBS_JSON_MAX_ENTRIES; i++)
      buf_printf(&b, "%s{\"BlockIndex\":%d,\"BlockToken\":\"t\"}", i ? "," : "", i);
    buf_append_str(&b, "]}");
    CHECK_INTEQ(page(b.data, &p), -EPROTO);

    /* Exactly the maximum is fine, and the tokens land in one block. */
    buf_reset(&b);
    buf_append_str(&b, "{\"Blocks\":[");
    for (int i = 0; i < EBS_JSON_MAX_ENTRIES; i++)
      buf_printf(&b, "%s{\"BlockIndex\":%d,\"BlockToken\":\"tok%d\"}", i ? "," : "", i * 3, i);
    buf_append_str(&b, "],\"NextToken\":\"n\"}");
    CHECK_INTEQ(page(b.data, &p), 0);
    CHECK_INTEQ(p.nblocks, EBS_JSON_MAX_ENTRIES);
    CHECK_STREQ(p.blocks[9999].token, "tok9999");
    CHECK_INTEQ(p.blocks[9999].index, 29997);
    CHECK((char *) p.blocks[9999].token > (char *) p.storage_);
    ebs_block_page_free(&p);

    buf_reset(&b);
    for (size_t i = 0; i < EBS_JSON_MAX_PAGE_BODY + 1; i++)
      buf_append(&b, " ", 1);
    CHECK_INTEQ(ebs_json_block_page(b.data, b.len, &p, err, sizeof err), -EPROTO);
    CHECK(strstr(err, "limit") != NULL);

    buf_reset(&b);
    for (int i = 0; i < 100000; i++)
      buf_append_str(&b, "[");
    CHECK_INTEQ(page(b.data, &p), -EPROTO);
    buf_free(&b);
  }
  /* Not NUL-terminated at len: parsing stops at len. */
  {
    const char s[] = "{\"Blocks\":[]}GARBAGE";
    CHECK_INTEQ(ebs_json_block_page(s, 13, &p, err, sizeof err), 0);
    ebs_block_page_free(&p);
    CHECK_INTEQ(ebs_json_block_page(s, 12, &p, err, sizeof err), -EPROTO);
  }

  /* ListChangedBlocks: tokens optional on either side; empty page + NextToken. */
  {
    const char *s = "{\"ChangedBlocks\":[{\"BlockIndex\":1,\"FirstBlockToken\":\"f1\","
                    "\"SecondBlockToken\":\"s1\"},{\"BlockIndex\":2,\"SecondBlockToken\":\"s2\"},"
                    "{\"BlockIndex\":3,\"FirstBlockToken\":\"f3\"}],\"VolumeSize\":2,"
                    "\"BlockSize\":524288,\"ExpiryTime\":5}";
    CHECK_INTEQ(ebs_json_changed_page(s, strlen(s), &cp, err, sizeof err), 0);
    CHECK_INTEQ(cp.nblocks, 3);
    CHECK_STREQ(cp.blocks[0].first_token, "f1");
    CHECK_STREQ(cp.blocks[0].second_token, "s1");
    CHECK(cp.blocks[1].first_token == NULL);
    CHECK_STREQ(cp.blocks[1].second_token, "s2");
    CHECK(cp.blocks[2].second_token == NULL);
    CHECK(cp.next_token == NULL);
    ebs_changed_page_free(&cp);
    s = "{\"ChangedBlocks\":[],\"NextToken\":\"more\"}";
    CHECK_INTEQ(ebs_json_changed_page(s, strlen(s), &cp, err, sizeof err), 0);
    CHECK(cp.nblocks == 0);
    CHECK_STREQ(cp.next_token, "more");
    ebs_changed_page_free(&cp);
    s = "{\"ChangedBlocks\":[{\"BlockIndex\":1,\"FirstBlockToken\":[]}]}";
    CHECK_INTEQ(ebs_json_changed_page(s, strlen(s), &cp, err, sizeof err), -EPROTO);
  }

  /* StartSnapshot and CompleteSnapshot answers. */
  {
    const char *s = "{\"SnapshotId\":\"snap-0123abc\",\"OwnerId\":\"1\",\"Status\":\"pending\","
                    "\"StartTime\":1.5e9,\"VolumeSize\":8,\"BlockSize\":524288,"
                    "\"ParentSnapshotId\":\"snap-01\"}";
    CHECK_INTEQ(ebs_json_snapshot_info(s, strlen(s), &si, err, sizeof err), 0);
    CHECK_STREQ(si.snapshot_id, "snap-0123abc");
    CHECK_STREQ(si.status, "pending");
    CHECK_STREQ(si.parent_snapshot_id, "snap-01");
    CHECK_INTEQ(si.volume_size_gib, 8);
    s = "{\"SnapshotId\":\"snap-../../x\",\"Status\":\"pending\"}";
    CHECK_INTEQ(ebs_json_snapshot_info(s, strlen(s), &si, err, sizeof err), -EPROTO);
    s = "{\"SnapshotId\":\"snap-01\",\"Status\":\"a-status-far-too-long-for-us\"}";
    CHECK_INTEQ(ebs_json_snapshot_info(s, strlen(s), &si, err, sizeof err), -EPROTO);
    s = "{\"Status\":\"completed\"}";
    CHECK_INTEQ(ebs_json_status(s, strlen(s), status, sizeof status, err, sizeof err), 0);
    CHECK_STREQ(status, "completed");
    s = "{\"Status\":null}";
    CHECK_INTEQ(ebs_json_status(s, strlen(s), status, sizeof status, err, sizeof err), -EPROTO);
  }
  TEST_EXIT();
}
