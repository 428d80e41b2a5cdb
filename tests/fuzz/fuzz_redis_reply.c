/* fuzz_redis_reply.c: what the hub does with bytes from Redis. The input
 * is read by hiredis's protocol reader (as the link does); every reply is
 * walked as a topic stream read (backlogs) with its frames rebuilt, and as
 * a log read (replays, catch-up) with its records turned into messages;
 * the raw bytes are also parsed as a pub/sub payload. A broken or hostile
 * Redis must not crash the hub. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

static void visit(const cluster_entry_t *e, void *ud)
{
	size_t len;

	(void)ud;
	free(cluster_entry_json(e, &len));
}

/* hiredis 0.14 allocates an array for a multi-bulk header's count at
 * once (no limit): inputs announcing huge arrays only measure malloc. Any
 * '*' counts, not only one at a line's start: the reader skips the two
 * bytes after a bulk string without checking they are CRLF. */
static int huge_array(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned long long v = 0;
		size_t k = i + 1;

		if (d[i] != '*')
			continue;
		while (k < n && d[k] >= '0' && d[k] <= '9' && v < 1000000)
			v = v * 10 + (unsigned)(d[k++] - '0');
		if (v > 100000)
			return 1;
	}
	return 0;
}

/* Each well-formed record must rebuild a message, or be refused, without
 * a crash. */
static void on_record(uint64_t seq, const char *path, size_t plen,
		      const char *json, size_t jlen, void *ud)
{
	(void)ud;
	msg_unref(
	    cluster_record_msg("fuzz.example", seq, path, plen, json, jlen));
}

static void on_log(const char *topic, uint64_t seq, const char *path,
		   size_t plen, const char *json, size_t jlen, void *ud)
{
	(void)topic;
	on_record(seq, path, plen, json, jlen, ud);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd = redisReaderCreate();
	void *reply;

	if (!rd)
		return 0;
	if (huge_array(data, size)) {
		redisReaderFree(rd);
		return 0;
	}
	redisReaderFeed(rd, (const char *)data, size);
	/* A handful of replies at most: the reader is not what is tested. */
	for (int i = 0; i < 16; i++) {
		reply = NULL;
		if (redisReaderGetReply(rd, &reply) != REDIS_OK || !reply)
			break;
		cluster_stream_walk(reply, visit, NULL);
		cluster_log_walk(reply, on_log, NULL);
		freeReplyObject(reply);
	}
	redisReaderFree(rd);
	/* The same bytes as a pub/sub payload of NUL-separated records. */
	cluster_each_record((const char *)data, size, on_record, NULL);
	return 0;
}
