/* mk(): a triplet from text, failing the test when triplet_make refuses
 * it. Included after <cmocka.h> and "triplet.h". */
#ifndef GG_TEST_MK_TRIPLET_H
#define GG_TEST_MK_TRIPLET_H

#include <string.h>

static struct triplet mk(const char *net, const char *sender, const char *rcpt)
{
	struct triplet t;
	if (triplet_make(&t, net, sender, strlen(sender), rcpt, strlen(rcpt)) != 0)
		fail_msg("triplet_make(%s, %s, %s) failed", net, sender, rcpt);
	return t;
}

#endif
