/* sig.c -- flags and a self-pipe for SIGINT/SIGTERM/SIGHUP; SIGPIPE ignored.
 * Owns the pipe for the process lifetime. Handlers are async-signal-safe:
 * they save errno, set a flag and write one byte. */
#include "sig.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t sig_stop;
volatile sig_atomic_t sig_reload;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int signo)
{
	int saved = errno;
	if (signo == SIGHUP)
		sig_reload = 1;
	else
		sig_stop = 1;
	if (wake_pipe[1] >= 0) {
		ssize_t r = write(wake_pipe[1], "x", 1);
		(void)r;
	}
	errno = saved;
}

int sig_install(void)
{
	struct sigaction sa;

	if (wake_pipe[0] < 0) {
		if (pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
			return -1;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGHUP, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -1;
	return 0;
}

int sig_wake_fd(void)
{
	return wake_pipe[0];
}

void sig_drain(void)
{
	char buf[64];
	if (wake_pipe[0] < 0)
		return;
	while (read(wake_pipe[0], buf, sizeof buf) > 0)
		;
}

void sig_request_stop(void)
{
	on_signal(SIGTERM);
}

void sig_sleep_ms(long ms)
{
	if (sig_stop)
		return;
	struct pollfd p = {.fd = wake_pipe[0], .events = POLLIN};
	if (wake_pipe[0] < 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		return;
	}
	poll(&p, 1, (int)ms);
}
