/* runtime/log.c - see weft/log.h. A line is formatted into a stack buffer
 * and written with one write(2), so lines from several threads never
 * interleave. */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "runtime/internal.h"

int weft__log_threshold = WEFT_LOG_WARNING;

static weft_log_sink_fn sink_fn;
static void *sink_arg;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local const weft_uid *tls_actor;

static const char *const level_names[] = {
	"error", "warning", "info", "cancel", "runtime", "debug", "trace",
};
#define NLEVELS (int)(sizeof(level_names) / sizeof(level_names[0]))

void
weft__log_set_actor(const weft_uid *uid)
{
	tls_actor = uid;
}

void
weft_log_set_level(int level)
{
	if (level < WEFT_LOG_ERROR)
		level = WEFT_LOG_ERROR;
	if (level >= NLEVELS)
		level = NLEVELS - 1;
	__atomic_store_n(&weft__log_threshold, level, __ATOMIC_RELAXED);
}

int
weft_log_level_parse(const char *name)
{
	if (name == NULL || *name == '\0')
		return -1;
	if (isdigit((unsigned char)name[0]) && name[1] == '\0')
		return name[0] - '0' < NLEVELS ? name[0] - '0' : -1;
	for (int i = 0; i < NLEVELS; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	if (strcasecmp(name, "warn") == 0)
		return WEFT_LOG_WARNING;
	return -1;
}

int
weft_log_init_from_env(void)
{
	int lvl = weft_log_level_parse(getenv("WEFT_LOG"));
	if (lvl >= 0)
		weft_log_set_level(lvl);
	return __atomic_load_n(&weft__log_threshold, __ATOMIC_RELAXED);
}

void
weft_log_set_sink(weft_log_sink_fn fn, void *arg)
{
	pthread_mutex_lock(&sink_lock);
	sink_fn = fn;
	sink_arg = arg;
	pthread_mutex_unlock(&sink_lock);
}

/* A child process says which it is in every line (spawn.c). */
static char proc_prefix[112];

void
weft__log_set_process(const char *prefix)
{
	snprintf(proc_prefix, sizeof(proc_prefix), "%s", prefix);
}

void
weft_log_write(int level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;

	if (level < 0)
		level = 0;
	if (level >= NLEVELS)
		level = NLEVELS - 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ld %-7s ",
	                      ts.tv_nsec / 1000, level_names[level]);
	if (proc_prefix[0])
		n += (size_t)snprintf(line + n, sizeof(line) - n, "{%s} ",
		                      proc_prefix);
	if (tls_actor) {
		char uid[WEFT_NAME_MAX + 16];
		weft_uid_format(tls_actor, uid, sizeof(uid));
		n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] ", uid);
	}
	va_start(ap, fmt);
	int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (k > 0)
		n += (size_t)k;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2; /* truncated */

	pthread_mutex_lock(&sink_lock);
	weft_log_sink_fn fn = sink_fn;
	void *arg = sink_arg;
	pthread_mutex_unlock(&sink_lock);
	if (fn) {
		line[n] = '\0';
		fn(line, arg);
		return;
	}
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
