/* test_presence.c: unit tests of the presence reference counts. */
#include <string.h>

#include "presence.h"
#include "tap.h"

static void count_visit(const char *ident, void *ud)
{
	(void)ident;
	(*(int *)ud)++;
}

int main(void)
{
	presence_t *p = presence_new();
	int n = 0;

	CHECK_INT(presence_join(p, "forum/a", "alice@x"), 1);
	CHECK_INT(presence_join(p, "forum/a", "alice@x"), 0);
	CHECK_INT(presence_join(p, "forum/a", "bob@y"), 1);
	CHECK_INT(presence_join(p, "forum/b", "alice@x"), 1);
	CHECK_INT(presence_list(p, "forum/a", count_visit, &n), 2);
	CHECK_INT(n, 2);
	CHECK_INT(presence_list(p, "forum/none", count_visit, &n), 0);
	CHECK_INT(presence_leave(p, "forum/a", "alice@x"), 0);
	CHECK_INT(presence_leave(p, "forum/a", "alice@x"), 1);
	CHECK_INT(presence_leave(p, "forum/a", "alice@x"), 0);
	CHECK_INT(presence_leave(p, "forum/none", "alice@x"), 0);
	CHECK_INT(presence_topic_count(p), 2);
	CHECK_INT(presence_leave(p, "forum/a", "bob@y"), 1);
	CHECK_INT(presence_topic_count(p), 1);
	/* A table freed with members still present frees them too. */
	presence_free(p);
	presence_free(NULL);
	return tap_done();
}
