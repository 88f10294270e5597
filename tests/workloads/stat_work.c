/* Workloads with known counts for `bpfprof stat`.
 *
 *   stat_work [-w] MODE N [MODE N...] runs each in turn, then prints "STAT_WORK <pid>"; modes:
 *   touch PAGES                      a thread named "toucher" writes to PAGES fresh anonymous pages:
 *                                     exactly PAGES page faults in that thread (its stack is faulted
 *                                     in beforehand, huge pages are off, it skips glibc's exit path)
 *   pingpong ROUNDS [procs|threads]
 *                                     two processes (or threads) pass a byte back and forth over two
 *                                     pipes ROUNDS times: context-switch heavy (procs by default)
 *   spin MSEC                        the main thread runs on the CPU for MSEC ms of its own CPU time
 *   -w                               first wait for a line on stdin (so counters can attach)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STACK_BYTES (256 * 1024)

static long pages;
static long page_size;
static volatile long sink;

static void *toucher(void *arg)
{
	char *area = arg;
	prctl(PR_SET_NAME, "toucher");
	for (long i = 0; i < pages; i++)
		area[i * page_size] = 1; /* one write fault per fresh page */
	sink = area[0];
	/* exit the thread at once: glibc's thread exit path faults a few pages of its own, a varying
	 * number; the kernel still clears the tid for pthread_join */
	syscall(SYS_exit, 0);
	return NULL;
}

static int touch(void)
{
	page_size = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)pages * page_size;
	char *area = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return 1;
	madvise(area, len ? len : 1, MADV_NOHUGEPAGE);
	/* the thread's stack (and its TLS and descriptor, which glibc puts at its top) faulted in here */
	char *stack = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stack == MAP_FAILED)
		return 1;
	memset(stack, 0, STACK_BYTES);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, stack, STACK_BYTES);
	pthread_t t;
	if (pthread_create(&t, &attr, toucher, area))
		return 1;
	pthread_join(t, NULL);
	/* unmapped here, not by exit_mmap: perf's per-task counters stop before a process's exit path */
	munmap(area, len ? len : 1);
	munmap(stack, STACK_BYTES);
	return 0;
}

static int fds_ab[2], fds_ba[2];
static long rounds;

static void *pong(void *arg)
{
	char c;
	(void)arg;
	for (long i = 0; i < rounds; i++) {
		if (read(fds_ab[0], &c, 1) != 1 || write(fds_ba[1], &c, 1) != 1)
			break;
	}
	return NULL;
}

static int pingpong(int threads)
{
	char c = 'x';
	if (pipe(fds_ab) || pipe(fds_ba))
		return 1;
	pthread_t t;
	pid_t child = -1;
	if (threads) {
		if (pthread_create(&t, NULL, pong, NULL))
			return 1;
	} else {
		child = fork();
		if (child == 0) {
			pong(NULL);
			_exit(0);
		}
	}
	for (long i = 0; i < rounds; i++) {
		if (write(fds_ab[1], &c, 1) != 1 || read(fds_ba[0], &c, 1) != 1)
			return 1;
	}
	if (threads)
		pthread_join(t, NULL);
	else
		waitpid(child, NULL, 0);
	return 0;
}

static int spin(long msec)
{
	struct timespec t;
	long end_ns = 0, now_ns;
	do {
		if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t))
			return 1;
		now_ns = t.tv_sec * 1000000000L + t.tv_nsec;
		if (!end_ns)
			end_ns = now_ns + msec * 1000000L;
		for (int i = 0; i < 10000; i++)
			sink += i;
	} while (now_ns < end_ns);
	return 0;
}

int main(int argc, char **argv)
{
	int arg = 1;
	if (arg < argc && strcmp(argv[arg], "-w") == 0) {
		char line[16];
		arg++;
		if (!fgets(line, sizeof(line), stdin))
			return 2;
	}
	if (arg >= argc)
		return 2;
	while (arg + 1 < argc) { /* a sequence of MODE N [procs|threads] */
		long n = atol(argv[arg + 1]);
		int rc;
		if (strcmp(argv[arg], "touch") == 0) {
			pages = n;
			rc = touch();
			arg += 2;
		} else if (strcmp(argv[arg], "spin") == 0) {
			rc = spin(n);
			arg += 2;
		} else if (strcmp(argv[arg], "pingpong") == 0) {
			rounds = n;
			int threads = arg + 2 < argc && strcmp(argv[arg + 2], "threads") == 0;
			int procs = arg + 2 < argc && strcmp(argv[arg + 2], "procs") == 0;
			rc = pingpong(threads);
			arg += 2 + (threads || procs);
		} else {
			return 2;
		}
		if (rc)
			return rc;
	}
	printf("STAT_WORK %d\n", (int)getpid());
	return arg == argc ? 0 : 2;
}
