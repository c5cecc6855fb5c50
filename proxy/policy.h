/*
 * policy: the decision engine as a Postfix policy service, on
 * policy.listen (README.md, "As a Postfix policy service"). Postfix's
 * smtpd asks with check_policy_service; each request at protocol_state
 * RCPT runs the RCPT rule table (rcpt_check.h) with the rows marked for
 * the policy service, against the same store, with the same logs and
 * metrics as the proxy. Answers: DUNNO (pass, or nothing to decide),
 * PREPEND X-Greylist: ... (a triplet that waited, with
 * policy.prepend_header), DEFER_IF_PERMIT <text> (greylisted, a temporary
 * failure), REJECT <text>.
 *
 * Promises: requests on one connection are answered in the order they
 * came, one decided at a time; the input held per connection is bounded
 * (lib/policy_proto.h) and so is the output (reading stops while the
 * answers are not read). A connection that breaks the protocol is closed
 * and logged; no other is touched. Served in every worker, like the SMTP
 * listen addresses (the supervisor binds it once per worker).
 */
#ifndef GG_POLICY_H
#define GG_POLICY_H

#include "config.h"

/* Takes over FD, a bound and listening socket on CFG->policy.listen; -1,
 * logged, when it cannot. */
int policy_adopt(int fd, const char *spec);
/* Alone: binds policy.listen and serves it (0 when it is off); -1, logged,
 * when it cannot. */
int policy_open(const struct gg_config *cfg);
/* Stops accepting and closes every policy connection (a request being
 * decided is dropped: Postfix treats the closed connection as the
 * service's temporary failure). */
void policy_close(void);

#endif
