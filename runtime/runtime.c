/* runtime/runtime.c - opening and closing a runtime. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/host.h"
#include "runtime/internal.h"
#include "runtime/net.h"


void
weft_config_init(weft_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = -1;
	const char *w = getenv("WEFT_SPAWN");
	cfg->spawn_where = w && strcmp(w, "process") == 0 ? WEFT_SPAWN_PROCESS
	                   : w && strcmp(w, "exec") == 0  ? WEFT_SPAWN_EXEC
	                                                  : WEFT_SPAWN_IN_PROCESS;
}

_Noreturn void
weft__panic(const char *file, int line, const char *what)
{
	fprintf(stderr, "weft: assertion failed at %s:%d: %s\n", file, line,
	        what);
	abort();
}

weft_err
weft_runtime_open(const weft_config *user_cfg, weft_runtime **out)
{
	weft_config cfg;
	weft_runtime *rt;
	weft_err rv;

	if (user_cfg)
		cfg = *user_cfg;
	else
		weft_config_init(&cfg);
	if (cfg.log_level >= 0) {
		weft_log_set_level(cfg.log_level);
	} else {
		weft_log_set_level(WEFT_LOG_WARNING);
		weft_log_init_from_env();
	}
	if (cfg.workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg.workers = n > 0 ? (unsigned)n : 1;
	}
	if (cfg.deterministic) {
		cfg.workers = 1;
		if (cfg.seed == 0)
			cfg.seed = weft__now_ns() | 1;
		WEFT_LOG(WEFT_LOG_WARNING,
		         "deterministic mode, seed %llu (rerun with the same "
		         "seed to replay)",
		         (unsigned long long)cfg.seed);
	}
	if (cfg.batch == 0)
		cfg.batch = 64;
	if (cfg.spin_us == 0)
		cfg.spin_us = 50;
	if (cfg.ctx_cancel_timeout_ms == 0)
		cfg.ctx_cancel_timeout_ms = 616;
	if (cfg.cancel_actor_timeout_ms == 0)
		cfg.cancel_actor_timeout_ms = 500;
	if (cfg.nursery_cancel_timeout_ms == 0)
		cfg.nursery_cancel_timeout_ms = 3000;
	if (cfg.sigterm_timeout_ms == 0)
		cfg.sigterm_timeout_ms = 1000;
	if (cfg.spawn_where != WEFT_SPAWN_PROCESS &&
	    cfg.spawn_where != WEFT_SPAWN_EXEC)
		cfg.spawn_where = WEFT_SPAWN_IN_PROCESS;

	if ((rt = calloc(1, sizeof(*rt))) == NULL)
		return WEFT_ENOMEM;
	rt->cfg = cfg;
	atomic_init(&rt->nslots, 0);
	atomic_init(&rt->free_head, WEFT__SLOT_NONE);
	atomic_init(&rt->closing, false);
	pthread_mutex_init(&rt->grow_lock, NULL);
	pthread_mutex_init(&rt->outside_lock, NULL);
	pthread_mutex_init(&rt->close_lock, NULL);
	pthread_mutex_init(&rt->net_lock, NULL);
	pthread_mutex_init(&rt->roots_lock, NULL);
	pthread_mutex_init(&rt->timers_lock, NULL);
	pthread_cond_init(&rt->close_cond, NULL);
	rt->pc = aligned_alloc(64, sizeof(*rt->pc) * (cfg.workers + 1));
	if (rt->pc == NULL) {
		rv = WEFT_ENOMEM;
		goto out_free_rt;
	}
	memset(rt->pc, 0, sizeof(*rt->pc) * (cfg.workers + 1));

	struct weft__sched_config scfg = {
		.workers = cfg.workers,
		.deterministic = cfg.deterministic,
		.seed = cfg.seed,
		.spin_us = cfg.spin_us,
	};
	if ((rv = weft__sched_create(&scfg, &rt->sched)) != WEFT_OK)
		goto out_free_pc;
	WEFT_LOG(WEFT_LOG_RUNTIME, "runtime open: %u worker(s), batch %u",
	         cfg.workers, cfg.batch);
	*out = rt;
	return WEFT_OK;

out_free_pc:
	free(rt->pc);
out_free_rt:
	free(rt);
	return rv;
}

static uint64_t
live_actors(weft_runtime *rt, uint64_t *dropped)
{
	uint64_t spawned, exited, d;
	weft__actor_stats(rt, &spawned, &exited, &d);
	if (dropped)
		*dropped = d;
	return spawned > exited ? spawned - exited : 0;
}

weft_err
weft_runtime_close(weft_runtime *rt, weft_close_report *report)
{
	uint64_t dropped_before, dropped_after, stopped = 0;

	if (weft__sched_current(rt->sched) != NULL)
		return WEFT_ESTATE;
	/* seq_cst: a spawn that reads closing=false happens before our first
	 * sweep reads its slot, or it sees true and fails. */
	atomic_store_explicit(&rt->closing, true, memory_order_seq_cst);
	/* Connections first: peers get a bye, contexts over them end. */
	weft__net_shutdown(rt);
	live_actors(rt, &dropped_before);
	for (;;) {
		stopped += weft__actor_stop_all(rt);
		pthread_mutex_lock(&rt->close_lock);
		if (live_actors(rt, NULL) == 0) {
			pthread_mutex_unlock(&rt->close_lock);
			break;
		}
		/* Exits broadcast; the timeout re-sweeps for an actor whose
		 * spawn raced with the first sweep. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&rt->close_cond, &rt->close_lock, &ts);
		pthread_mutex_unlock(&rt->close_lock);
	}
	weft__timers_stop(rt);
	weft__sched_destroy(rt->sched);
	live_actors(rt, &dropped_after);
	if (report) {
		report->actors_stopped = stopped;
		report->messages_dropped = dropped_after - dropped_before;
	}
	WEFT_LOG(WEFT_LOG_RUNTIME, "runtime closed: %llu actor(s) stopped",
	         (unsigned long long)stopped);
	for (uint32_t c = 0; c < WEFT__MAX_CHUNKS; c++) {
		struct weft__actor *chunk = atomic_load(&rt->chunks[c]);
		if (chunk == NULL)
			break;
		free(chunk);
	}
	pthread_mutex_destroy(&rt->grow_lock);
	pthread_mutex_destroy(&rt->outside_lock);
	pthread_mutex_destroy(&rt->close_lock);
	pthread_mutex_destroy(&rt->net_lock);
	weft__sigint_forget(rt);
	pthread_mutex_destroy(&rt->roots_lock);
	free(rt->roots);
	pthread_mutex_destroy(&rt->timers_lock);
	pthread_cond_destroy(&rt->close_cond);
	free(rt->pc);
	free(rt);
	return WEFT_OK;
}

weft_err
weft_runtime_wait_idle(weft_runtime *rt, uint64_t timeout_ns)
{
	return weft__sched_wait_idle(rt->sched, timeout_ns);
}

void
weft_runtime_stats_get(weft_runtime *rt, weft_runtime_stats *out)
{
	struct weft__sched_stats ss;
	uint64_t spawned, exited, dropped;

	weft__sched_stats(rt->sched, &ss);
	weft__actor_stats(rt, &spawned, &exited, &dropped);
	memset(out, 0, sizeof(*out));
	out->workers = ss.workers;
	out->actors_live = spawned > exited ? spawned - exited : 0;
	out->actors_spawned = spawned;
	out->turns = ss.jobs_run;
	out->steals = ss.steals;
	out->parks = ss.parks;
	out->messages_dropped = dropped;
}

int64_t
weft_live_tasks(void)
{
	return weft__host_live_tasks();
}

int64_t
weft_live_contexts(void)
{
	return weft__host_live_ctxs();
}

int64_t
weft_live_errors(void)
{
	return weft__error_live();
}
