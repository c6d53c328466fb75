/* runtime/sigint.c - tractor's Ctrl-C (weft_runtime_handle_sigint).
 *
 * The handler only writes a byte to a pipe (async-signal-safe); a watcher
 * thread reads it and does the work with ordinary calls: the first SIGINT
 * sends INTERRUPT to every weft_task_run root of the runtime (task.c
 * cancels its tasks, naming the root itself), the second SIGKILLs every
 * child process and exits 130. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/host.h"

static int sig_pipe[2] = {-1, -1};
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_runtime *sig_rt;       /* under sig_lock */
static pthread_t watcher;
static bool watcher_started;
static pid_t *children;            /* under sig_lock */
static size_t nchildren, children_cap;

static void
on_sigint(int sig)
{
	(void)sig;
	int saved = errno;
	char b = 1;
	ssize_t r = write(sig_pipe[1], &b, 1);
	(void)r;
	errno = saved;
}

static void
interrupt_roots(weft_runtime *rt)
{
	pthread_mutex_lock(&rt->roots_lock);
	for (size_t i = 0; i < rt->nroots; i++) {
		weft_msg *m = weft_msg_new(WEFT__MSG_INTERRUPT, 0);
		if (m)
			weft__send_sys(rt, rt->roots[i], m);
	}
	pthread_mutex_unlock(&rt->roots_lock);
}

static void *
watch(void *arg)
{
	(void)arg;
	unsigned seen = 0;
	for (;;) {
		char b;
		ssize_t r = read(sig_pipe[0], &b, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
		seen++;
		pthread_mutex_lock(&sig_lock);
		if (seen == 1 && sig_rt) {
			fprintf(stderr, "weft: SIGINT: cancelling the actor tree "
			                "(again to kill it)\n");
			interrupt_roots(sig_rt);
			pthread_mutex_unlock(&sig_lock);
			continue;
		}
		/* The second: no more grace. */
		for (size_t i = 0; i < nchildren; i++)
			kill(children[i], SIGKILL);
		pthread_mutex_unlock(&sig_lock);
		fprintf(stderr, "weft: second SIGINT: killed %zu child "
		                "process(es), exiting\n",
		        nchildren);
		_exit(130);
	}
}

weft_err
weft_runtime_handle_sigint(weft_runtime *rt)
{
	pthread_mutex_lock(&sig_lock);
	if (!watcher_started) {
		if (pipe2(sig_pipe, O_CLOEXEC) != 0) {
			pthread_mutex_unlock(&sig_lock);
			return WEFT_ENOMEM;
		}
		if (pthread_create(&watcher, NULL, watch, NULL) != 0) {
			pthread_mutex_unlock(&sig_lock);
			return WEFT_ENOMEM;
		}
		pthread_detach(watcher);
		watcher_started = true;
	}
	sig_rt = rt;
	pthread_mutex_unlock(&sig_lock);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(SIGINT, &sa, NULL) == 0 ? WEFT_OK : WEFT_EINVAL;
}

void
weft__sigint_forget(weft_runtime *rt)
{
	pthread_mutex_lock(&sig_lock);
	if (sig_rt == rt)
		sig_rt = NULL;
	pthread_mutex_unlock(&sig_lock);
}

void
weft__sigint_root(weft_runtime *rt, weft_aid aid, bool add)
{
	pthread_mutex_lock(&rt->roots_lock);
	if (add) {
		if (rt->nroots == rt->roots_cap) {
			size_t cap = rt->roots_cap ? rt->roots_cap * 2 : 4;
			weft_aid *r = realloc(rt->roots, cap * sizeof(*r));
			if (r == NULL) {
				pthread_mutex_unlock(&rt->roots_lock);
				return;
			}
			rt->roots = r;
			rt->roots_cap = cap;
		}
		rt->roots[rt->nroots++] = aid;
	} else {
		for (size_t i = 0; i < rt->nroots; i++)
			if (rt->roots[i].id == aid.id) {
				rt->roots[i] = rt->roots[--rt->nroots];
				break;
			}
	}
	pthread_mutex_unlock(&rt->roots_lock);
}

void
weft__sigint_child(pid_t pid, bool add)
{
	pthread_mutex_lock(&sig_lock);
	if (add) {
		if (nchildren == children_cap) {
			size_t cap = children_cap ? children_cap * 2 : 8;
			pid_t *c = realloc(children, cap * sizeof(*c));
			if (c == NULL) {
				pthread_mutex_unlock(&sig_lock);
				return;
			}
			children = c;
			children_cap = cap;
		}
		children[nchildren++] = pid;
	} else {
		for (size_t i = 0; i < nchildren; i++)
			if (children[i] == pid) {
				children[i] = children[--nchildren];
				break;
			}
	}
	pthread_mutex_unlock(&sig_lock);
}
