/* Test-only LD_PRELOAD shim: moves the wall clock (CLOCK_REALTIME, gettimeofday, time)
 * of the process it is loaded into by WH_CLOCK_OFFSET seconds, and nothing else.
 *
 * tests/harness.py starts both clusters with it (WH_FAKETIME) so the end-to-end suite
 * proves it passes on 1 January, on 29 February and across midnight UTC. libfaketime
 * was tried first: its sleep/poll wrappers make the clock calls of PostgreSQL's SIGALRM
 * handler return the real time, so statement_timeout never fires under it. This shim
 * takes no lock and keeps no state but one offset, so it is safe in signal handlers;
 * timers and monotonic clocks are untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset;
static int (*real_clock_gettime)(clockid_t, struct timespec *);

__attribute__((constructor)) static void clock_shift_init(void)
{
    const char *s = getenv("WH_CLOCK_OFFSET");
    offset = s ? atoll(s) : 0;
    real_clock_gettime = (int (*)(clockid_t, struct timespec *)) dlsym(RTLD_NEXT, "clock_gettime");
}

static int now_real(clockid_t id, struct timespec *ts)
{
    if (!real_clock_gettime)
        clock_shift_init();
    return real_clock_gettime(id, ts);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int r = now_real(id, ts);
    if (r == 0 && ts && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += offset;
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;
    int r = now_real(CLOCK_REALTIME, &ts);
    (void) tz;
    if (r == 0 && tv) {
        tv->tv_sec = ts.tv_sec + offset;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return r;
}

time_t time(time_t *t)
{
    struct timespec ts;
    now_real(CLOCK_REALTIME, &ts);
    time_t v = ts.tv_sec + offset;
    if (t)
        *t = v;
    return v;
}
