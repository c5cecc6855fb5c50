#include "hostname.h"

bool hostname_valid(const char *name, size_t len)
{
	if (len == 0 || len > HOSTNAME_MAX)
		return false;
	size_t label = 0;
	bool non_numeric = false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool digit = c >= '0' && c <= '9';
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!digit && !alpha && c != '-' && c != '_')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!digit)
			non_numeric = true;
		if (++label > HOSTNAME_LABEL_MAX)
			return false;
	}
	return label > 0 && name[len - 1] != '-' && non_numeric;
}
