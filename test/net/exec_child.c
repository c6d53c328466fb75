/* test/net/exec_child.c - a separate program that can be a weft child
 * process (WEFT_SPAWN_EXEC with weft_config.child_program): it exposes its
 * own functions and hands its command line to weft_main(). Run by hand it
 * just says what it is. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "weft/weft.h"

static weft_err
whoami(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	(void)args;
	(void)arg;
	char buf[64];
	snprintf(buf, sizeof(buf), "exec_child pid %d", (int)getpid());
	return weft_ctx_return(ctx, buf, strlen(buf));
}

static const weft_function fns[] = {{"child:whoami", whoami, NULL}};

int
main(int argc, char **argv)
{
	weft_expose(fns, 1);
	weft_main(argc, argv); /* returns only when not started as a child */
	printf("weft_exec_child: a program weft nurseries can run as a child "
	       "(WEFT_SPAWN_EXEC)\n");
	return 0;
}
