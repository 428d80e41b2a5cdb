/* test_auth.c: token hashing and lookup, the anonymous user, and publish and
 * subscribe permissions against the patterns of a config. */
#include <string.h>

#include "auth.h"
#include "config.h"
#include "tap.h"

#define ALICE_SHA                                                              \
	"e706f2008f191924f4f6d6107fa56e8677a25a416815975bb848eb48e9694416"
#define BOT_SHA                                                                \
	"488b2115e7b46d21a9f6abf79364319488f76f251526aab4b104bcd8153dddea"

static const char cfg_text[] =
    "{\"node\":\"a.example\",\"listen\":{},\"auth\":{"
    "\"anonymous\":{\"subscribe\":[\"forum/#\"],\"publish\":[]},"
    "\"tokens\":["
    "{\"user\":\"alice\",\"token_sha256\":\"" ALICE_SHA "\","
    "\"subscribe\":[\"#\"],\"publish\":[\"forum/#\"]},"
    "{\"user\":\"bot\",\"token_sha256\":\"" BOT_SHA "\","
    "\"subscribe\":[\"forum/+/updates\",\"bots/x\"],"
    "\"publish\":[\"forum/+/updates\",\"bots/x\"]},"
    "{\"user\":\"mute\",\"token_sha256\":"
    "\"0000000000000000000000000000000000000000000000000000000000000000\"}"
    "]}}";

static void test_hash(void)
{
	char hex[65];
	unsigned char raw[32];

	/* FIPS 180-2 vectors. */
	auth_hash_hex("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff"
		       "61f20015ad");
	auth_hash_hex("", 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49599"
		       "1b7852b855");
	auth_hash_hex(NULL, 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49599"
		       "1b7852b855");
	auth_hash_hex(
	    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
	    hex);
	CHECK_STR(hex,
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd4"
		  "19db06c1");
	/* The length counts, not a NUL. */
	auth_hash_hex("abcdef", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff"
		       "61f20015ad");
	/* The example config's tokens. */
	auth_hash_hex("alice-secret-token", 18, hex);
	CHECK_STR(hex, ALICE_SHA);
	auth_hash_hex("bot-secret-token", 16, hex);
	CHECK_STR(hex, BOT_SHA);

	CHECK_INT(auth_parse_hex(ALICE_SHA, raw), 0);
	CHECK_INT(raw[0], 0xe7);
	CHECK_INT(raw[1], 0x06);
	CHECK_INT(raw[31], 0x16);
	CHECK_INT(auth_parse_hex("E706F2008F191924F4F6D6107FA56E8677A25A4168159"
				 "75BB848EB48E9694416",
				 raw),
		  0);
	CHECK_INT(raw[0], 0xe7);
	memset(raw, 0x55, sizeof raw);
	CHECK_INT(auth_parse_hex("", raw), -1);
	CHECK_INT(auth_parse_hex("abc", raw), -1);
	CHECK_INT(auth_parse_hex(ALICE_SHA "0", raw), -1);
	CHECK_INT(
	    auth_parse_hex("g706f2008f191924f4f6d6107fa56e8677a25a416815975"
			   "bb848eb48e9694416",
			   raw),
	    -1);
	CHECK_INT(
	    auth_parse_hex("e706f2008f191924f4f6d6107fa56e8677a25a416815975"
			   "bb848eb48e969441",
			   raw),
	    -1);
	CHECK_INT(
	    auth_parse_hex(" 706f2008f191924f4f6d6107fa56e8677a25a416815975"
			   "bb848eb48e9694416",
			   raw),
	    -1);
	/* A refused string leaves out untouched. */
	CHECK_INT(raw[0], 0x55);
}

static void test_lookup(auth_t *a)
{
	auth_user_t *u, *anon;
	unsigned char h[32];

	u = auth_lookup(a, "alice-secret-token", 18);
	CHECK(u != NULL);
	if (u) {
		CHECK_STR(u->name, "alice");
		CHECK_INT(u->anonymous, 0);
		CHECK_INT(u->sha256[0], 0xe7);
	}
	u = auth_lookup(a, "bot-secret-token", 16);
	CHECK(u != NULL);
	if (u)
		CHECK_STR(u->name, "bot");
	/* Unknown, truncated, longer, empty. */
	CHECK(auth_lookup(a, "mallory", 7) == NULL);
	CHECK(auth_lookup(a, "alice-secret-toke", 17) == NULL);
	CHECK(auth_lookup(a, "alice-secret-token!", 19) == NULL);
	CHECK(auth_lookup(a, "", 0) == NULL);
	CHECK(auth_lookup(a, NULL, 0) == NULL);
	/* The length counts: a longer buffer, a prefix of it. */
	u = auth_lookup(a, "alice-secret-token and more", 18);
	CHECK(u != NULL && !strcmp(u->name, "alice"));

	/* By hash, as a reload carries connections over. */
	CHECK_INT(auth_parse_hex(BOT_SHA, h), 0);
	u = auth_lookup_hash(a, h);
	CHECK(u != NULL && !strcmp(u->name, "bot"));
	h[31] ^= 1;
	CHECK(auth_lookup_hash(a, h) == NULL);
	/* The last entry is found too (no early exit hides it). */
	memset(h, 0, sizeof h);
	u = auth_lookup_hash(a, h);
	CHECK(u != NULL && !strcmp(u->name, "mute"));

	anon = auth_anonymous(a);
	CHECK(anon != NULL);
	CHECK_STR(anon->name, "anonymous");
	CHECK_INT(anon->anonymous, 1);
	CHECK(auth_anonymous(a) == anon);
}

static void test_permissions(auth_t *a)
{
	auth_user_t *alice = auth_lookup(a, "alice-secret-token", 18);
	auth_user_t *bot = auth_lookup(a, "bot-secret-token", 16);
	auth_user_t *anon = auth_anonymous(a);
	unsigned char zero[32] = {0};
	auth_user_t *mute = auth_lookup_hash(a, zero);

	if (!alice || !bot || !mute)
		return;

	/* alice: subscribe "#", publish "forum/#". */
	CHECK_INT(auth_can_publish(alice, "forum"), 1);
	CHECK_INT(auth_can_publish(alice, "forum/zev/heavy-duty"), 1);
	CHECK_INT(auth_can_publish(alice, "bots/x"), 0);
	CHECK_INT(auth_can_publish(alice, "forums"), 0);
	CHECK_INT(auth_can_subscribe(alice, "#"), 1);
	CHECK_INT(auth_can_subscribe(alice, "anything/+/x"), 1);
	CHECK_INT(auth_can_subscribe(alice, "bots/x"), 1);

	/* bot: "forum/+/updates" and "bots/x" for both. */
	CHECK_INT(auth_can_publish(bot, "forum/zev/updates"), 1);
	CHECK_INT(auth_can_publish(bot, "forum/zev/other"), 0);
	CHECK_INT(auth_can_publish(bot, "forum/zev/updates/more"), 0);
	CHECK_INT(auth_can_publish(bot, "bots/x"), 1);
	CHECK_INT(auth_can_publish(bot, "bots/y"), 0);
	/* A subscription must fall within a pattern, not just overlap. */
	CHECK_INT(auth_can_subscribe(bot, "forum/zev/updates"), 1);
	CHECK_INT(auth_can_subscribe(bot, "forum/+/updates"), 1);
	CHECK_INT(auth_can_subscribe(bot, "forum/#"), 0);
	CHECK_INT(auth_can_subscribe(bot, "forum/zev/+"), 0);
	CHECK_INT(auth_can_subscribe(bot, "+/zev/updates"), 0);
	CHECK_INT(auth_can_subscribe(bot, "bots/x"), 1);
	CHECK_INT(auth_can_subscribe(bot, "bots/+"), 0);
	CHECK_INT(auth_can_subscribe(bot, "#"), 0);

	/* anonymous: subscribe "forum/#", publish nothing. */
	CHECK_INT(auth_can_subscribe(anon, "forum/#"), 1);
	CHECK_INT(auth_can_subscribe(anon, "forum"), 1);
	CHECK_INT(auth_can_subscribe(anon, "forum/+/updates"), 1);
	CHECK_INT(auth_can_subscribe(anon, "bots/x"), 0);
	CHECK_INT(auth_can_subscribe(anon, "#"), 0);
	CHECK_INT(auth_can_subscribe(anon, "+/x"), 0);
	CHECK_INT(auth_can_publish(anon, "forum/x"), 0);

	/* No patterns at all: nothing, and NULL is nobody. */
	CHECK_INT(auth_can_publish(mute, "forum/x"), 0);
	CHECK_INT(auth_can_subscribe(mute, "forum/x"), 0);
	CHECK_INT(auth_can_publish(NULL, "forum/x"), 0);
	CHECK_INT(auth_can_subscribe(NULL, "forum/x"), 0);
}

static void test_empty(void)
{
	static const char text[] = "{\"node\":\"a\",\"listen\":{}}";
	config_t *c = NULL;
	char err[256];
	auth_t *a;
	auth_user_t *anon;
	unsigned char zero[32] = {0};

	CHECK_INT(config_parse(text, strlen(text), "t", &c, err, sizeof err),
		  0);
	if (!c)
		return;
	a = auth_new(c);
	CHECK(auth_lookup(a, "alice-secret-token", 18) == NULL);
	CHECK(auth_lookup_hash(a, zero) == NULL);
	anon = auth_anonymous(a);
	CHECK_INT(auth_can_subscribe(anon, "forum/x"), 0);
	CHECK_INT(auth_can_publish(anon, "forum/x"), 0);
	auth_free(a);
	auth_free(NULL);
	config_free(c);
}

int main(void)
{
	config_t *c = NULL;
	char err[256];
	auth_t *a;

	test_hash();
	CHECK_INT(config_parse(cfg_text, strlen(cfg_text), "auth.json", &c, err,
			       sizeof err),
		  0);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return tap_done();
	}
	a = auth_new(c);
	CHECK(a != NULL);
	test_lookup(a);
	test_permissions(a);
	auth_free(a);
	config_free(c);
	test_empty();
	return tap_done();
}
