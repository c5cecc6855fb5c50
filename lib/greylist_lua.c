#include "greylist_lua.h"

#include <stdio.h>
#include <string.h>

/* Keep in step with gl_decide() in greylist.c: the functional tests run
 * the same scenarios against both stores. */
const char greylist_lua[] =
	"local now = tonumber(redis.call('TIME')[1])\n"
	"local delay, win, life = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"local thr, maxnew, dry = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'\n"
	"local grace, hour = 3600, 3600\n"
	"local t = redis.call('HMGET', KEYS[1], '" GL_F_FIRST "', '" GL_F_PASSED "', '" GL_F_BACKUP "')\n"
	"local first, passed = tonumber(t[1]), t[2] == '1'\n"
	"if first and not passed and first < (tonumber(ARGV[10]) or 0) then first = nil end\n"
	"local b = 0\n"
	"if first and not passed and t[3] == '1' and now - first <= win then\n"
	"  b = 1\n"
	"  if ARGV[14] == '1' then return {2, 'triplet', 0, now - first, 0, 0, 1} end\n"
	"  delay, thr = tonumber(ARGV[12]) or delay, tonumber(ARGV[13]) or thr\n"
	"end\n"
	"local a = redis.call('HMGET', KEYS[2], '" GL_A_COUNT "', '" GL_A_COUNTED "')\n"
	"local ac, at = tonumber(a[1]) or 0, tonumber(a[2]) or 0\n"
	"local function awl_count()\n"
	"  if dry then return end\n"
	"  if not (ac > 0 and now - at < hour) then\n"
	"    redis.call('HSET', KEYS[2], '" GL_A_COUNT "', ac + 1, '" GL_A_COUNTED "', now)\n"
	"  end\n"
	"  redis.call('EXPIRE', KEYS[2], life)\n"
	"end\n"
	/* the flag only when set: no field in most triplets' hashes */
	"local function store_new()\n"
	"  if dry then return end\n"
	"  redis.call('HSET', KEYS[1], '" GL_F_FIRST "', now, '" GL_F_PASSED "', 0,"
	" '" GL_F_NET "', ARGV[7], '" GL_F_SENDER "', ARGV[8], '" GL_F_RCPT "', ARGV[9])\n"
	"  if ARGV[11] == '1' then redis.call('HSET', KEYS[1], '" GL_F_BACKUP "', 1)\n"
	"  elseif t[3] then redis.call('HDEL', KEYS[1], '" GL_F_BACKUP "') end\n"
	"  redis.call('EXPIRE', KEYS[1], win + grace)\n"
	"end\n"
	"if first and passed then\n"
	"  if not dry then redis.call('EXPIRE', KEYS[1], life) end\n"
	"  awl_count()\n"
	"  return {0, 'triplet', 0, now - first, 0, 0, 0}\n"
	"end\n"
	"if thr > 0 and ac >= thr then\n"
	"  if not dry then redis.call('EXPIRE', KEYS[2], life) end\n"
	"  return {0, 'awl', 0, 0, 0, 0, b}\n"
	"end\n"
	"if first then\n"
	"  local age = now - first\n"
	"  if age < delay then return {1, 'early', delay - age, age, 0, 0, b} end\n"
	"  if age > win then\n"
	"    store_new()\n"
	"    return {1, 'retry-window-expired', delay, 0, 0, 0, 0}\n"
	"  end\n"
	"  if not dry then\n"
	"    redis.call('HSET', KEYS[1], '" GL_F_PASSED "', 1)\n"
	"    redis.call('EXPIRE', KEYS[1], life)\n"
	"  end\n"
	"  awl_count()\n"
	"  return {0, 'triplet', 0, age, 0, 1, b}\n"
	"end\n"
	"local n = tonumber(redis.call('GET', KEYS[3])) or 0\n"
	"if n >= maxnew then return {1, 'new', delay, 0, 1, 0, 0} end\n"
	"if not dry then\n"
	"  if redis.call('INCR', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], hour) end\n"
	"end\n"
	"store_new()\n"
	"return {1, 'new', delay, 0, 0, 0, 0}\n";

/* Keep in step with gl_mark_apply() in greylist.c. TTL answers -1 for a
 * key without one and -2 for none: both below any TTL asked. */
const char marks_lua[] =
	"local now = tonumber(redis.call('TIME')[1])\n"
	"local k, op = KEYS[1], ARGV[1]\n"
	"local life, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"if op == 'trap' then\n"
	"  redis.call('HSET', k, '" GL_M_TRAPPED_UNTIL "', now + life, '" GL_M_TRAPPED_AT "', now)\n"
	"end\n"
	"if op ~= '' and redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end\n"
	"local m = redis.call('HMGET', k, '" GL_M_TRAPPED_UNTIL "', '" GL_M_TRAPPED_AT "')\n"
	"return {now, tonumber(m[1]) or 0, tonumber(m[2]) or 0}\n";

const char *gl_mark_op(enum gl_mark kind)
{
	return kind == GL_MARK_TRAP ? "trap" : "";
}

const char *gl_marks_answer(const redisReply *r, struct gl_marks *m)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return "unexpected reply from the marks script";
	int64_t v[3];
	for (size_t i = 0; i < 3; i++) {
		if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
			return "unexpected reply from the marks script";
		v[i] = r->element[i]->integer;
	}
	*m = (struct gl_marks){ v[0], v[1], v[2] };
	return NULL;
}

bool gl_key_tagged(char *buf, size_t len, const char *prefix, const char *kind,
		   const char *tag, const char *id)
{
	int n = tag ? snprintf(buf, len, "%s%s{%s}%s", prefix, kind, tag, id)
		    : snprintf(buf, len, "%s%s%s", prefix, kind, id);
	return n >= 0 && (size_t)n < len;
}

bool gl_mark_key(const char *prefix, const char *net, bool tagged, char *buf, size_t len)
{
	return gl_key_tagged(buf, len, prefix, GL_KEY_MARK, tagged ? net : NULL, tagged ? "" : net);
}

void gl_script_keys(const char *prefix, const struct triplet *t, bool tagged,
		    struct gl_script_keys *k)
{
	/* In a cluster every key of one decision carries the triplet's key
	 * text (its pool key, else its network) as the hash tag: one slot. */
	const char *text = triplet_keytext(t);
	const char *tag = tagged ? text : NULL;
	gl_key_tagged(k->triplet, sizeof k->triplet, prefix, GL_KEY_TRIPLET, tag, t->hex);
	gl_key_tagged(k->awl, sizeof k->awl, prefix, GL_KEY_AWL, tag, tagged ? "" : text);
	gl_key_tagged(k->new_count, sizeof k->new_count, prefix, GL_KEY_NEW, tag,
		      tagged && !t->pool[0] ? "" : t->net);
}

void gl_script_args(const char *prefix, const struct gl_params *p, const struct triplet *t,
		    bool tagged, bool dry_run, struct gl_script_args *a)
{
	gl_script_keys(prefix, t, tagged, &a->k);
	const long long num[8] = { p->delay, p->retry_window, p->pass_lifetime, p->awl_threshold,
				   p->max_new_per_client, p->void_before, p->flagged_delay,
				   p->flagged_awl_threshold };
	for (size_t i = 0; i < 8; i++)
		snprintf(a->num[i], sizeof a->num[i], "%lld", num[i]);
	const char *v[GL_SCRIPT_NARGS] = {
		a->k.triplet, a->k.awl, a->k.new_count,
		a->num[0], a->num[1], a->num[2], a->num[3], a->num[4], dry_run ? "1" : "0",
		triplet_keytext(t), t->sender, t->rcpt, a->num[5],
		p->set_backup_first ? "1" : "0", a->num[6], a->num[7],
		p->flagged_refuse ? "1" : "0",
	};
	memcpy(a->v, v, sizeof v);
}

const char *gl_script_answer(const redisReply *r, struct gl_decision *d)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 ||
	    r->element[1]->type != REDIS_REPLY_STRING)
		return "unexpected reply from the greylist script";
	for (size_t i = 0; i < 7; i++)
		if (i != 1 && r->element[i]->type != REDIS_REPLY_INTEGER)
			return "unexpected reply from the greylist script";
	if (!gl_reason_parse(r->element[1]->str, &d->reason))
		return "unknown reason from the greylist script";
	long long action = r->element[0]->integer;
	d->action = action == 0 ? GL_PASS : action == 2 ? GL_REFUSE : GL_GREYLIST;
	d->delay_left = r->element[2]->integer;
	d->waited = r->element[3]->integer;
	d->capped = r->element[4]->integer != 0;
	d->first_pass = r->element[5]->integer != 0;
	d->backup_first = r->element[6]->integer != 0;
	return NULL;
}
