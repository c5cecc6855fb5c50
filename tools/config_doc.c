/*
 * Prints, for every setting of the table, the two lines man/greygate.conf.5
 * has for it (".It Cm PATH" and its summary); `make man-settings`.
 */
#include <stdio.h>

#include "config_doc.h"

int main(void)
{
	char line[512];
	for (size_t i = 0; i < cfg_nsettings; i++)
		if (cfg_doc_line(&cfg_settings[i], line, sizeof line))
			printf(".It Cm %s\n%s\n", cfg_settings[i].path, line);
	return 0;
}
