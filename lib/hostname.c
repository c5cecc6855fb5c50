#include "hostname.h"

static bool letter_or_digit(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool hostname_valid(const char *name, size_t len)
{
	if (len == 0 || len > HOSTNAME_MAX)
		return false;
	size_t label = 0;
	bool numeric = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return false;
		} else if (!letter_or_digit(c) && c != '_') {
			return false;
		}
		if (!(c >= '0' && c <= '9'))
			numeric = false;
		if (++label > HOSTNAME_LABEL_MAX)
			return false;
	}
	/* the name ends a label: neither empty (trailing dot) nor after '-' */
	return label > 0 && name[len - 1] != '-' && !numeric;
}
