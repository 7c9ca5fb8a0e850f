/* sig.h -- signal handling shared by the daemons. Handlers only set
 * volatile sig_atomic_t flags and write one byte to a self-pipe, so an event
 * loop can poll sig_wake_fd(). SIGPIPE is ignored. Safe to signal twice. */
#ifndef SIG_H
#define SIG_H

#include <signal.h>

extern volatile sig_atomic_t sig_stop;   /* SIGINT / SIGTERM seen */
extern volatile sig_atomic_t sig_reload; /* SIGHUP seen (cleared by the reader) */

int sig_install(void);  /* 0 / -1 */
int sig_wake_fd(void);  /* read end of the self-pipe (non-blocking), -1 before install */
void sig_drain(void);   /* empty the self-pipe */
void sig_request_stop(void); /* same effect as SIGTERM, from code */
/* Sleep up to ms, returning early when a stop is requested. */
void sig_sleep_ms(long ms);

#endif
