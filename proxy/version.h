#ifndef GG_VERSION_H
#define GG_VERSION_H
#define GREYGATE_VERSION "0.1.0"
#endif
