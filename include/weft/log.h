/* weft/log.h - the logging facility every layer uses.
 *
 * Each line: wall-clock time, level, the current actor's uid when the line is
 * written from a handler, then the message, to stderr. A disabled level costs
 * one relaxed load and a compare: no formatting is done.
 * Any thread may call these functions. */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

#include "weft/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most severe first. CANCEL and RUNTIME sit between INFO and DEBUG, as in
 * tractor. */
typedef enum weft_log_level {
	WEFT_LOG_ERROR = 0,
	WEFT_LOG_WARNING,
	WEFT_LOG_INFO,
	WEFT_LOG_CANCEL,
	WEFT_LOG_RUNTIME,
	WEFT_LOG_DEBUG,
	WEFT_LOG_TRACE,
} weft_log_level;

/* Lines at a level <= this are written. Read with weft_log_enabled(). */
WEFT_EXTERN extern int weft__log_threshold;

/* Sets the threshold; a level outside the enum is clamped. */
WEFT_EXTERN void weft_log_set_level(int level);
/* Parses "error", "warning", "info", "cancel", "runtime", "debug", "trace"
 * (any case) or a digit; -1 if unknown or NULL. */
WEFT_EXTERN int weft_log_level_parse(const char *name);
/* Applies WEFT_LOG from the environment, if set and valid; returns the
 * threshold now in force. */
WEFT_EXTERN int weft_log_init_from_env(void);
/* Redirects output to `fn` (NULL: stderr). `fn` gets one whole line
 * without the newline; it may be called from any thread at once. */
typedef void (*weft_log_sink_fn)(const char *line, void *arg);
WEFT_EXTERN void weft_log_set_sink(weft_log_sink_fn fn, void *arg);

static inline int
weft_log_enabled(int level)
{
	return level <= __atomic_load_n(&weft__log_threshold, __ATOMIC_RELAXED);
}

WEFT_EXTERN void weft_log_write(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define WEFT_LOG(level, ...)                                              \
	do {                                                              \
		if (weft_log_enabled(level))                              \
			weft_log_write((level), __VA_ARGS__);             \
	} while (0)

#ifdef __cplusplus
}
#endif
#endif /* WEFT_LOG_H */
