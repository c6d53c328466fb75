/* examples/context.c - a callee and a caller as straight-line C.
 *
 * The "counter" actor exposes "words:count": it says it is ready
 * (started), then reads lines from its stream, answers each with the
 * running word count, and returns the total when the caller closes its
 * side. The caller is a task (main's body runs as one): it opens a
 * context, streams lines, reads the answers, and gets the result. Then it
 * opens a second context to "words:wait", which blocks until cancelled,
 * cancels it, and shows that its own cancel is absorbed. No callbacks: each
 * side blocks in weft calls, and a blocked task holds no worker thread. */
#include <stdio.h>
#include <string.h>

#include "weft/weft.h"

static int
count_words(const uint8_t *s, size_t n)
{
	int words = 0, in = 0;
	for (size_t i = 0; i < n; i++) {
		int space = s[i] == ' ' || s[i] == '\t' || s[i] == '\n';
		words += !space && !in;
		in = !space;
	}
	return words;
}

/* Callee: runs as a task of the counter actor, once per context. */
static weft_err
words_count(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	weft_stream *s;
	weft_payload line;
	weft_err rc;
	int total = 0;

	(void)args;
	(void)arg;
	if ((rc = weft_ctx_started(ctx, "ready", 5)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK)
		return rc;
	while ((rc = weft_stream_recv(s, &line)) == WEFT_OK) {
		total += count_words(line.data, line.len);
		weft_payload_free(&line);
		if ((rc = weft_stream_send(s, &total, sizeof(total))) != WEFT_OK)
			return rc;
	}
	if (rc != WEFT_EEOC) /* anything but the caller's end of stream */
		return rc;
	return weft_ctx_return(ctx, &total, sizeof(total));
}

/* Callee: blocks until its caller cancels it. */
static weft_err
words_wait(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	(void)args;
	(void)arg;
	weft_err rc = weft_ctx_started(ctx, NULL, 0);
	if (rc != WEFT_OK)
		return rc;
	return weft_sleep(3600ull * 1000000000ull); /* WEFT_ECANCELED */
}

static const weft_function counter_fns[] = {
	{"words:count", words_count, NULL},
	{"words:wait", words_wait, NULL},
};

/* Caller: main's body, run as a task. */
static weft_err
caller(void *arg)
{
	weft_portal *counter = arg;
	const char *lines[] = {"the quick brown fox", "jumps over",
	                       "the lazy dog"};
	weft_ctx *ctx;
	weft_stream *s;
	weft_payload first, reply, result;
	weft_err rc;

	rc = weft_open_context(counter, "words:count", NULL, 0, NULL, &ctx,
	                       &first);
	if (rc != WEFT_OK)
		return rc;
	printf("caller: counter says '%.*s'\n", (int)first.len, first.data);
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK)
		return weft_ctx_exit(ctx, rc);
	for (size_t i = 0; i < 3; i++) {
		rc = weft_stream_send(s, lines[i], strlen(lines[i]));
		if (rc == WEFT_OK)
			rc = weft_stream_recv(s, &reply);
		if (rc != WEFT_OK)
			break;
		int n;
		memcpy(&n, reply.data, sizeof(n));
		weft_payload_free(&reply);
		printf("caller: sent \"%s\", words so far: %d\n", lines[i], n);
	}
	weft_stream_close(s);
	if (rc == WEFT_OK)
		rc = weft_ctx_result(ctx, &result);
	if (rc == WEFT_OK) {
		int total;
		memcpy(&total, result.data, sizeof(total));
		printf("caller: the counter's result: %d words\n", total);
	}
	rc = weft_ctx_exit(ctx, rc);
	weft_ctx_free(ctx);
	if (rc != WEFT_OK)
		return rc;

	/* A context we cancel ourselves: the ContextCancelled that comes
	 * back names us, so exit absorbs it. */
	rc = weft_open_context(counter, "words:wait", NULL, 0, NULL, &ctx,
	                       NULL);
	if (rc != WEFT_OK)
		return rc;
	weft_ctx_cancel(ctx);
	rc = weft_ctx_exit(ctx, WEFT_OK);
	printf("caller: cancelled words:wait; exit returned %s, cancel_acked=%d,"
	       " canceller=%s\n",
	       weft_errname(rc), weft_ctx_cancel_acked(ctx),
	       weft_ctx_canceller(ctx) ? weft_ctx_canceller(ctx)->name : "-");
	weft_ctx_free(ctx);
	return rc;
}

int
main(void)
{
	weft_runtime *rt;
	weft_portal *counter;
	weft_aid aid;
	weft_error *err = NULL;

	if (weft_runtime_open(NULL, &rt) != WEFT_OK)
		return 1;
	weft_spawn_opts o = {.name = "counter",
	                     .functions = counter_fns,
	                     .nfunctions = 2};
	if (weft_spawn(rt, &o, &aid) != WEFT_OK ||
	    weft_portal_open(rt, aid, &counter) != WEFT_OK)
		return 1;
	weft_err rc = weft_task_run(rt, "caller", caller, counter, &err);
	if (rc != WEFT_OK) {
		char buf[256];
		fprintf(stderr, "caller failed: %s\n",
		        err ? weft_error_format(err, buf, sizeof(buf))
		            : weft_strerror(rc));
	}
	weft_error_release(err);
	weft_portal_free(counter);
	weft_stop(rt, aid);
	weft_runtime_close(rt, NULL);
	return rc == WEFT_OK ? 0 : 1;
}
