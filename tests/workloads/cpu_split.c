/* Test workload with a known CPU split. Built by the tests (tests/workloads/build.py).
 *
 *   cpu_split [MODE] [SECONDS] [EXIT_CODE]
 *   MODE split    : main -> path_a -> func_a (50%), main -> path_b -> mid_b -> func_b (30%),
 *                   main -> func_c (20%); the split is by identical loop iterations, not by clock
 *        syscalls : main -> do_syscalls -> getppid() in a loop (kernel frames)
 *        forker   : forks a child that runs `split`; the parent runs `split` too, then waits
 *        deep     : recursion DEPTH deep (argv[3], default 40), then func_a
 *        rounds   : `split` for a fixed number of rounds (SECONDS is the count), for benchmarks
 *        threads  : sleeps 0.5 s, then starts two threads named late_worker that run `split`
 *        exec     : `split` for SECONDS, then execs argv[3] with argv[3...] (a different image)
 */
#include <pthread.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define UNIT 200000UL

volatile unsigned long sink;

/* A call in every burn loop keeps the burners non-leaf, so compilers give them a frame (GCC 12
 * omits the frame of a leaf function even with -fno-omit-frame-pointer, which would hide the
 * caller from a frame-pointer unwinder). */
NOINLINE void tick(unsigned long i) { sink += i; }

#define BURN(n)                                            \
	do {                                               \
		unsigned long x = sink;                    \
		for (unsigned long i = 0; i < (n); i++) {  \
			x = x * 2862933555777941757UL + i; \
			if ((i & 0xffff) == 0)             \
				tick(i);                   \
		}                                          \
		sink = x;                                  \
	} while (0)

/* A round of the split (path_a, path_b, func_c) takes ~2 ms here, as long as a sampling period at
 * 499 Hz: rounds of one length stay in step with a sampler for long stretches, which then hits the
 * same part of each one and sees a skewed split (func_a's share of ~740 samples ranged over 0.36-0.62
 * in 12 runs of 1.5 s, where sampling alone gives +-0.02; share tests failed on it). So run_split
 * gives each round a random length, 1 to 1.5 times the base, every function growing alike (the
 * split holds in every round, and no time goes elsewhere); `rounds` (benchmarks) keeps them fixed. */
static __thread unsigned long extra; /* iterations added to each UNIT in this round */
static __thread unsigned long jitter = 0x9E3779B97F4A7C15UL;

NOINLINE void func_a(void) { BURN(5 * (UNIT + extra)); }
NOINLINE void func_b(void) { BURN(3 * (UNIT + extra)); }
NOINLINE void func_c(void) { BURN(2 * (UNIT + extra)); }
NOINLINE void path_a(void) { func_a(); sink++; }
NOINLINE void mid_b(void) { func_b(); sink++; }
NOINLINE void path_b(void) { mid_b(); sink++; }

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE void run_split(double seconds)
{
	double end = now() + seconds;
	while (now() < end) {
		path_a();
		path_b();
		func_c();
		jitter ^= jitter << 13; /* xorshift64: the next round's length */
		jitter ^= jitter >> 7;
		jitter ^= jitter << 17;
		extra = jitter % (UNIT / 2);
	}
}

NOINLINE void do_syscalls(double seconds)
{
	double end = now() + seconds;
	while (now() < end)
		for (int i = 0; i < 1000; i++)
			syscall(SYS_getppid);
}

NOINLINE int recurse(int depth)
{
	volatile char pad[32]; /* a frame of a known size, so DEPTH frames overflow a small stack copy */
	pad[0] = (char)depth;
	if (depth == 0) {
		path_a();
		return pad[0];
	}
	int r = recurse(depth - 1);
	sink++;
	return r + pad[0];
}

NOINLINE void run_deep(double seconds, int depth)
{
	double end = now() + seconds;
	while (now() < end)
		recurse(depth);
}

static double thread_seconds;

static void *late_worker(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "late_worker");
	run_split(thread_seconds);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "split";
	double seconds = argc > 2 ? atof(argv[2]) : 2.0;
	int code = argc > 3 && strcmp(mode, "split") == 0 ? atoi(argv[3]) : 0;

	if (strcmp(mode, "syscalls") == 0) {
		do_syscalls(seconds);
	} else if (strcmp(mode, "forker") == 0) {
		pid_t child = fork();
		if (child == 0) {
			run_split(seconds);
			_exit(0);
		}
		run_split(seconds);
		waitpid(child, NULL, 0);
	} else if (strcmp(mode, "exec") == 0 && argc > 3) {
		run_split(seconds);
		execv(argv[3], &argv[3]);
		return 127;
	} else if (strcmp(mode, "threads") == 0) {
		pthread_t t[2];
		thread_seconds = seconds;
		usleep(500000);
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, late_worker, NULL);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
	} else if (strcmp(mode, "rounds") == 0) {
		for (long r = (long)seconds; r > 0; r--) {
			path_a();
			path_b();
			func_c();
		}
	} else if (strcmp(mode, "deep") == 0) {
		run_deep(seconds, argc > 3 ? atoi(argv[3]) : 40);
	} else {
		run_split(seconds);
	}
	return code;
}
