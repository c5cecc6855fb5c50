/*
 * config_doc: what man/greygate.conf.5 says about a setting on the line
 * under its name, made from the setting's row in the table: its type and
 * range, its default (when the row holds it; a default computed by a
 * named function is in the page's prose), and whether SIGHUP or only a
 * restart brings a change in. test_config_doc checks every row of the
 * table against the page this way, so the page cannot drift from the code;
 * `make man-settings` prints every row's line for writing the page.
 */
#ifndef GG_CONFIG_DOC_H
#define GG_CONFIG_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "config_schema.h"

/* The summary of R into BUF (LEN bytes, NUL-ended); false for a group
 * (no value, nothing to say) or when BUF is too small. */
bool cfg_doc_line(const struct cfg_setting *r, char *buf, size_t len);

#endif
