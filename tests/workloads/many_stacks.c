/* Test workload with thousands of distinct stacks, to put the kernel's stack map under pressure.
 * Built by the tests (tests/workloads/build.py).
 *
 *   many_stacks [SECONDS] [DEPTH]
 *
 * Each round walks a path of DEPTH (default 12, at most 20) left/right steps chosen by the bits of a
 * counter, and burns a little CPU at the end: 2^DEPTH distinct call chains (main -> run -> step ->
 * left|right -> step -> ... -> burn), every one of them sampled about equally often.
 */
#include <stdlib.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

volatile unsigned long sink;

NOINLINE void burn(void)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < 20000; i++)
		x = x * 2862933555777941757UL + i;
	sink = x;
}

NOINLINE void step(int depth, unsigned path);

/* Two callers of step at different addresses: a left and a right turn are different frames. */
NOINLINE void left(int depth, unsigned path)
{
	step(depth, path);
	sink++;
}

NOINLINE void right(int depth, unsigned path)
{
	step(depth, path);
	sink++;
}

NOINLINE void step(int depth, unsigned path)
{
	if (depth == 0) {
		burn();
		return;
	}
	if (path & 1)
		right(depth - 1, path >> 1);
	else
		left(depth - 1, path >> 1);
	sink++;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE void run(double seconds, int depth)
{
	double end = now() + seconds;
	unsigned path = 0;
	while (now() < end)
		for (int i = 0; i < 64; i++)
			step(depth, path++);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	int depth = argc > 2 ? atoi(argv[2]) : 12;
	if (depth < 1 || depth > 20)
		depth = 12;
	run(seconds, depth);
	return 0;
}
