/* runtime/spawn.c - actors in child processes (WEFT_SPAWN_PROCESS).
 *
 * The parent forks. The child keeps only the forking thread, which may be
 * a worker running a task on a fiber, with the parent's runtime in its
 * thread-locals: it touches none of that. It starts one fresh thread that
 * opens a new runtime, spawns the actor with the options and the uid the
 * parent chose (the functions and their arguments are valid in the copy of
 * the parent's memory), dials the parent, and lives until its actor exits
 * (cancelled by the parent) or the connection to the parent ends (the
 * parent died: the child cancels its actor and exits, protocol.md §5.4,
 * semantics.md §14). No child outlives its parent: PR_SET_PDEATHSIG is the
 * backstop for a parent killed before the connection could tell.
 *
 * Locks other parent threads may hold at the fork: malloc's (glibc resets
 * them), the message pools' (pool.c's atfork handlers), libuv's (its own
 * atfork); the child never uses the parent's runtime, whose locks stay
 * as they were. */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/host.h"
#include "runtime/net.h"
#include "runtime/spawn.h"

struct child_spec {
	weft_config cfg;
	weft_function *owned_fns; /* exec mode: filtered from the table */
	weft_net_opts net;
	uint8_t token[64];
	weft_uid uid;
	char name[WEFT_NAME_MAX];
	const weft_function *fns;
	size_t nfns;
	uint16_t parent_port;
	pid_t parent_pid;
	/* The registry the parent joined: the child joins it and registers
	 * its actor (tractor's actors register on start). */
	char reg_host[64];
	uint16_t reg_port;
};

struct child_state {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool exited;
	bool parent_gone;
};

static void
child_actor_exited(weft_aid self, void *state, weft_exit_reason why)
{
	(void)self;
	(void)why;
	struct child_state *st = state;
	pthread_mutex_lock(&st->lock);
	st->exited = true;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

static void
parent_gone(void *arg)
{
	struct child_state *st = arg;
	pthread_mutex_lock(&st->lock);
	st->parent_gone = true;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

/* Waits for the actor's exit until `ms` have passed; true if it exited. */
static bool
wait_exited(struct child_state *st, unsigned ms)
{
	uint64_t deadline = weft__now_ns() + (uint64_t)ms * 1000000u;
	pthread_mutex_lock(&st->lock);
	while (!st->exited && weft__now_ns() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&st->cond, &st->lock, &ts);
	}
	bool done = st->exited;
	pthread_mutex_unlock(&st->lock);
	return done;
}

static int
run_child(struct child_spec *sp)
{
	char uid[WEFT_NAME_MAX + 16], prefix[112];
	weft_uid_format(&sp->uid, uid, sizeof(uid));
	snprintf(prefix, sizeof(prefix), "%s pid %d, child of %d", uid,
	         (int)getpid(), (int)getppid());
	weft__log_set_process(prefix);
	struct child_state st = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                         .cond = PTHREAD_COND_INITIALIZER};
	weft_runtime *rt = NULL;
	if (weft_runtime_open(&sp->cfg, &rt) != WEFT_OK)
		return 70;
	weft_net_configure(rt, &sp->net);
	weft_spawn_opts so = {.name = sp->name,
	                      .functions = sp->fns,
	                      .nfunctions = sp->nfns,
	                      .state = &st,
	                      .on_exit = child_actor_exited};
	weft_aid aid;
	weft_portal *parent = NULL;
	int rc = 0;
	if (weft__spawn_uid(rt, &so, &sp->uid, &aid) != WEFT_OK ||
	    weft_net_set_primary(rt, aid) != WEFT_OK) {
		rc = 71;
		goto out;
	}
	/* The parent's registry, known before anything can run a function
	 * of ours (a function may look others up at once). */
	if (sp->reg_port)
		weft__net_registry_use(rt, sp->reg_host, sp->reg_port);
	/* Listen before dialing: the hello then carries the address, so a
	 * reference to this child's actor (weft_actor_ref_of) works from any
	 * process of the tree. */
	if (weft_net_listen(rt, "127.0.0.1", 0, NULL) != WEFT_OK ||
	    weft_net_connect(rt, "127.0.0.1", sp->parent_port, 0, &parent) !=
	            WEFT_OK) {
		rc = 72;
		goto out;
	}
	if (sp->reg_port && weft_registry_register(rt, aid) != WEFT_OK)
		WEFT_LOG(WEFT_LOG_WARNING, "%s: cannot register with %s:%u",
		         sp->name, sp->reg_host, (unsigned)sp->reg_port);
	struct weft__conn *c = weft__net_conn_hold(rt, weft_portal_aid(parent));
	if (c) {
		weft__net_conn_on_end(c, parent_gone, &st);
		weft__net_conn_rele(c);
	} else {
		parent_gone(&st);
	}
	pthread_mutex_lock(&st.lock);
	while (!st.exited && !st.parent_gone)
		pthread_cond_wait(&st.cond, &st.lock);
	bool orphan = !st.exited;
	pthread_mutex_unlock(&st.lock);
	if (orphan) {
		/* The parent is gone: cancel ourselves (the actor's contexts
		 * end with ContextCancelled naming it) and leave. */
		WEFT_LOG(WEFT_LOG_CANCEL,
		         "parent process gone: cancelling actor %s", sp->name);
		weft_msg *m = weft_msg_new(WEFT__MSG_ACTOR_CANCEL,
		                           sizeof(weft_uid));
		if (m) {
			memcpy(weft_msg_data(m), &sp->uid, sizeof(weft_uid));
			weft__send_sys(rt, aid, m);
		}
		if (!wait_exited(&st, 1500))
			weft__actor_kill(rt, aid);
		rc = 0;
	}
out:
	weft_portal_free(parent);
	/* What the actor sent last (acks, finals) reaches the connection
	 * before the close's bye. */
	weft_runtime_wait_idle(rt, 200u * 1000000u);
	weft_runtime_close(rt, NULL);
	return rc;
}

static void *
child_thread(void *arg)
{
	return (void *)(intptr_t)run_child(arg);
}

_Noreturn static void
child_process(struct child_spec *sp)
{
	/* Inherited descriptors (the parent's sockets, epoll, eventfds)
	 * would keep its connections open behind its back. */
	close_range(3, ~0u, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != sp->parent_pid)
		_exit(1);
	char title[16];
	snprintf(title, sizeof(title), "weft:%.10s", sp->name);
	prctl(PR_SET_NAME, title);
	sigset_t all;
	sigemptyset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	/* A terminal's Ctrl-C reaches the whole process group: the parent
	 * cancels its children, they do not act on it themselves. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	pthread_t th;
	void *rv = (void *)(intptr_t)73;
	if (pthread_create(&th, NULL, child_thread, sp) == 0)
		pthread_join(th, &rv);
	/* What the child's functions printed (a pipe or a file is fully
	 * buffered): _exit would drop it. */
	fflush(NULL);
	_exit((int)(intptr_t)rv);
}

weft_err
weft__spawn_process(weft_runtime *rt, const weft_spawn_opts *o,
                    weft_aid *aid, pid_t *pid)
{
	struct weft__task *t = weft__task_current();
	uint16_t port = weft__net_parent_port(rt);
	if (port == 0)
		return WEFT_ECLOSED;
	struct child_spec *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return WEFT_ENOMEM;
	sp->cfg = rt->cfg;
	weft__net_opts_get(rt, &sp->net, sp->token);
	snprintf(sp->name, sizeof(sp->name), "%s", o->name ? o->name : "actor");
	snprintf(sp->uid.name, sizeof(sp->uid.name), "%s", sp->name);
	weft__random_bytes(sp->uid.uuid, sizeof(sp->uid.uuid));
	sp->fns = o->functions;
	sp->nfns = o->nfunctions;
	sp->parent_port = port;
	sp->parent_pid = getpid();
	sp->reg_port = weft__net_registry_addr(rt, sp->reg_host,
	                                       sizeof(sp->reg_host));
	struct weft__expect *x = weft__net_expect_child(rt, &sp->uid);
	if (x == NULL) {
		free(sp);
		return WEFT_ENOMEM;
	}
	fflush(NULL);
	pid_t p = fork();
	if (p == 0)
		child_process(sp);
	if (p < 0) {
		WEFT_LOG(WEFT_LOG_WARNING, "fork: %s", strerror(errno));
		/* The expectation never matches; shutdown frees it. */
		weft__net_expect_wait(x, 1, aid);
		free(sp);
		return WEFT_ENOMEM;
	}
	free(sp);
	/* A child that dies before it dials back must not hang us: wait for
	 * its connection with a bound. */
	weft_err rc = weft__net_expect_wait_pid(
		x, weft__now_ns() + 10000000000ull, p, aid);
	if (rc != WEFT_OK) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		if (t && rc != WEFT_ECANCELED)
			weft__task_set_error(
				t, weft__error_here(WEFT_ERRKIND_RUNTIME, NULL,
				                    "child process %d (%s) did not "
				                    "connect back: %s",
				                    (int)p, o->name ? o->name : "actor",
				                    weft_strerror(rc)));
		return rc;
	}
	*pid = p;
	weft__sigint_child(p, true);
	return WEFT_OK;
}

bool
weft__reap(pid_t pid, unsigned wait_ms)
{
	uint64_t deadline = weft__now_ns() + (uint64_t)wait_ms * 1000000u;
	for (;;) {
		pid_t r = waitpid(pid, NULL, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD)) {
			weft__sigint_child(pid, false);
			return true;
		}
		if (weft__now_ns() >= deadline)
			return false;
		/* A child that closed its connection is exiting: poll briefly
		 * without holding the worker for long. */
		struct weft__task *t = weft__task_current();
		if (t)
			weft__task_block(t, NULL, weft__now_ns() + 1000000u, true);
		else
			usleep(1000);
	}
}

/* ------------------------------------------------------------ exec mode */

static pthread_mutex_t exposed_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_function *exposed;
static size_t nexposed;

weft_err
weft_expose(const weft_function *fns, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fns[i].name == NULL || fns[i].fn == NULL)
			return WEFT_EINVAL;
	pthread_mutex_lock(&exposed_lock);
	weft_function *t = realloc(exposed, (nexposed + n) * sizeof(*t));
	if (t == NULL) {
		pthread_mutex_unlock(&exposed_lock);
		return WEFT_ENOMEM;
	}
	memcpy(t + nexposed, fns, n * sizeof(*t));
	exposed = t;
	nexposed += n;
	pthread_mutex_unlock(&exposed_lock);
	return WEFT_OK;
}

static void
hex(char *out, const uint8_t *in, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = 0;
}

static bool
unhex(const char *in, uint8_t *out, size_t max, size_t *n)
{
	size_t len = strlen(in);
	if (len % 2 || len / 2 > max)
		return false;
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;
		if (sscanf(in + 2 * i, "%2x", &v) != 1)
			return false;
		out[i] = (uint8_t)v;
	}
	*n = len / 2;
	return true;
}

/* The namespaces of a function table, "a,b" (each once). */
static void
namespaces(const weft_function *fns, size_t n, char *out, size_t cap)
{
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(fns[i].name, ':');
		size_t len = colon ? (size_t)(colon - fns[i].name)
		                   : strlen(fns[i].name);
		char ns[64];
		snprintf(ns, sizeof(ns), "%.*s", (int)len, fns[i].name);
		/* already listed? */
		bool seen = false;
		for (const char *p = out; *p;) {
			const char *e = strchr(p, ',');
			size_t l = e ? (size_t)(e - p) : strlen(p);
			if (l == strlen(ns) && memcmp(p, ns, l) == 0)
				seen = true;
			p += l + (e ? 1 : 0);
		}
		if (!seen && strlen(out) + strlen(ns) + 2 < cap) {
			if (out[0])
				strcat(out, ",");
			strcat(out, ns);
		}
	}
}

static bool
in_namespaces(const char *name, const char *list)
{
	if (list[0] == 0)
		return true;
	const char *colon = strchr(name, ':');
	size_t len = colon ? (size_t)(colon - name) : strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == len && memcmp(p, name, l) == 0)
			return true;
		p += l + (e ? 1 : 0);
	}
	return false;
}

extern char **environ;

weft_err
weft__spawn_exec(weft_runtime *rt, const weft_spawn_opts *o, weft_aid *aid,
                 pid_t *pid)
{
	struct weft__task *t = weft__task_current();
	uint16_t port = weft__net_parent_port(rt);
	if (port == 0)
		return WEFT_ECLOSED;
	weft_net_opts net;
	uint8_t token[64];
	weft__net_opts_get(rt, &net, token);
	weft_uid uid;
	memset(&uid, 0, sizeof(uid));
	snprintf(uid.name, sizeof(uid.name), "%s", o->name ? o->name : "actor");
	weft__random_bytes(uid.uuid, sizeof(uid.uuid));

	char a_port[32], a_uid[WEFT_NAME_MAX + 48], a_ns[1100], a_tok[160],
		a_work[32], a_hb[32], a_log[32], a_ppid[32], a_reg[96];
	char reg_host[64];
	uint16_t reg_port = weft__net_registry_addr(rt, reg_host,
	                                            sizeof(reg_host));
	snprintf(a_reg, sizeof(a_reg), "registry=%s:%u",
	         reg_port ? reg_host : "", (unsigned)reg_port);
	char uuid_hex[33], tok_hex[129], ns[1024];
	hex(uuid_hex, uid.uuid, 16);
	hex(tok_hex, token, net.auth_token_len);
	namespaces(o->functions, o->nfunctions, ns, sizeof(ns));
	snprintf(a_port, sizeof(a_port), "port=%u", (unsigned)port);
	snprintf(a_uid, sizeof(a_uid), "uid=%s:%s", uuid_hex, uid.name);
	snprintf(a_ns, sizeof(a_ns), "ns=%s", ns);
	snprintf(a_tok, sizeof(a_tok), "token=%s", tok_hex);
	snprintf(a_work, sizeof(a_work), "workers=%u", rt->cfg.workers);
	snprintf(a_hb, sizeof(a_hb), "heartbeat=%u", net.heartbeat_ms);
	snprintf(a_log, sizeof(a_log), "log=%d", weft__log_threshold);
	snprintf(a_ppid, sizeof(a_ppid), "ppid=%d", (int)getpid());
	const char *prog = rt->cfg.child_program ? rt->cfg.child_program
	                                         : "/proc/self/exe";
	char *argv[] = {(char *)prog, "--weft-child", a_port, a_uid, a_ns,
	                a_tok, a_work, a_hb, a_log, a_ppid, a_reg, NULL};

	struct weft__expect *x = weft__net_expect_child(rt, &uid);
	if (x == NULL)
		return WEFT_ENOMEM;
	pid_t p = 0;
	int err = posix_spawn(&p, prog, NULL, NULL, argv, environ);
	if (err != 0) {
		weft__net_expect_wait(x, 1, aid);
		if (t)
			weft__task_set_error(
				t, weft__error_here(WEFT_ERRKIND_RUNTIME, NULL,
				                    "cannot run %s: %s", prog,
				                    strerror(err)));
		return WEFT_ESYS;
	}
	weft_err rc = weft__net_expect_wait_pid(
		x, weft__now_ns() + 10000000000ull, p, aid);
	if (rc != WEFT_OK) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		if (t && rc != WEFT_ECANCELED)
			weft__task_set_error(
				t, weft__error_here(WEFT_ERRKIND_RUNTIME, NULL,
				                    "child %s (pid %d) did not connect "
				                    "back: %s (does it call "
				                    "weft_main()?)",
				                    prog, (int)p, weft_strerror(rc)));
		return rc;
	}
	*pid = p;
	weft__sigint_child(p, true);
	return WEFT_OK;
}

int
weft_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--weft-child") != 0)
		return 0;
	struct child_spec *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		exit(70);
	weft_config_init(&sp->cfg);
	weft_net_opts_init(&sp->net);
	char ns[1024] = "";
	bool have_uid = false;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "port=", 5) == 0) {
			sp->parent_port = (uint16_t)atoi(a + 5);
		} else if (strncmp(a, "uid=", 4) == 0) {
			size_t n = 0;
			char h[33];
			snprintf(h, sizeof(h), "%.32s", a + 4);
			have_uid = strlen(a + 4) > 33 && a[4 + 32] == ':' &&
			           unhex(h, sp->uid.uuid, 16, &n) && n == 16;
			snprintf(sp->name, sizeof(sp->name), "%s",
			         have_uid ? a + 4 + 33 : "actor");
			snprintf(sp->uid.name, sizeof(sp->uid.name), "%s",
			         sp->name);
		} else if (strncmp(a, "ns=", 3) == 0) {
			snprintf(ns, sizeof(ns), "%s", a + 3);
		} else if (strncmp(a, "token=", 6) == 0) {
			size_t n = 0;
			if (unhex(a + 6, sp->token, sizeof(sp->token), &n)) {
				sp->net.auth_token = sp->token;
				sp->net.auth_token_len = n;
			}
		} else if (strncmp(a, "workers=", 8) == 0) {
			sp->cfg.workers = (unsigned)atoi(a + 8);
		} else if (strncmp(a, "heartbeat=", 10) == 0) {
			sp->net.heartbeat_ms = (uint32_t)atoi(a + 10);
		} else if (strncmp(a, "log=", 4) == 0) {
			sp->cfg.log_level = atoi(a + 4);
		} else if (strncmp(a, "ppid=", 5) == 0) {
			sp->parent_pid = (pid_t)atoi(a + 5);
		} else if (strncmp(a, "registry=", 9) == 0) {
			const char *colon = strrchr(a + 9, ':');
			if (colon && colon > a + 9) {
				snprintf(sp->reg_host, sizeof(sp->reg_host), "%.*s",
				         (int)(colon - (a + 9)), a + 9);
				sp->reg_port = (uint16_t)atoi(colon + 1);
			}
		}
	}
	if (!have_uid || sp->parent_port == 0) {
		fprintf(stderr, "weft: bad --weft-child arguments\n");
		exit(64);
	}
	/* The functions this child serves: the exposed ones in the
	 * namespaces the parent listed. */
	pthread_mutex_lock(&exposed_lock);
	sp->owned_fns = calloc(nexposed ? nexposed : 1, sizeof(weft_function));
	for (size_t i = 0; sp->owned_fns && i < nexposed; i++)
		if (in_namespaces(exposed[i].name, ns))
			sp->owned_fns[sp->nfns++] = exposed[i];
	pthread_mutex_unlock(&exposed_lock);
	sp->fns = sp->owned_fns;
	close_range(3, ~0u, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (sp->parent_pid && getppid() != sp->parent_pid)
		exit(1);
	char title[16];
	snprintf(title, sizeof(title), "weft:%.10s", sp->name);
	prctl(PR_SET_NAME, title);
	signal(SIGINT, SIG_IGN);
	int rc = run_child(sp);
	free(sp->owned_fns);
	free(sp);
	exit(rc);
}
