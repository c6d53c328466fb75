/* runtime/errors.c - names and messages from WEFT_ERR_MAP. */
#include "weft/errors.h"

static const char *const messages[] = {
#define WEFT__ERR_MSG(name, msg) msg,
	WEFT_ERR_MAP(WEFT__ERR_MSG)
#undef WEFT__ERR_MSG
};

static const char *const names[] = {
#define WEFT__ERR_NAME(name, msg) #name,
	WEFT_ERR_MAP(WEFT__ERR_NAME)
#undef WEFT__ERR_NAME
};

const char *
weft_strerror(weft_err err)
{
	if ((unsigned)err >= WEFT__ERR_COUNT)
		return "unknown error";
	return messages[err];
}

const char *
weft_errname(weft_err err)
{
	if ((unsigned)err >= WEFT__ERR_COUNT)
		return "EUNKNOWN";
	return names[err];
}
