/* Test workload that page-faults a known number of times in a known function.
 * Built by the tests (tests/workloads/build.py).
 *
 *   faults PAGES [ROUNDS] [DELAY_MS]
 *   main -> fault_pages -> touch_pages: maps PAGES anonymous pages (THP off, so one fault per 4 KiB
 *   page) and writes one byte to each: PAGES minor faults, all with touch_pages as the user leaf.
 *   ROUNDS (default 1) repeats it with a fresh mapping each time; DELAY_MS (default 0) sleeps
 *   first, so a profiler has seen the process before the faults begin.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

volatile long touched;

NOINLINE void count_touched(long pages) { touched += pages; }

/* Not a leaf (count_touched), so GCC gives it a frame and frame pointers reach fault_pages. */
NOINLINE void touch_pages(volatile char *p, long pages, long page_size)
{
	for (long i = 0; i < pages; i++)
		p[i * page_size] = 1;
	count_touched(pages);
}

NOINLINE int fault_pages(long pages)
{
	long page_size = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	madvise(p, pages * page_size, MADV_NOHUGEPAGE);
	touch_pages(p, pages, page_size);
	munmap(p, pages * page_size);
	return 0;
}

int main(int argc, char **argv)
{
	long pages = argc > 1 ? atol(argv[1]) : 1024;
	long rounds = argc > 2 ? atol(argv[2]) : 1;
	long delay_ms = argc > 3 ? atol(argv[3]) : 0;
	struct timespec delay = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
	if (delay_ms > 0)
		nanosleep(&delay, NULL);
	for (long r = 0; r < rounds; r++)
		if (fault_pages(pages))
			return 1;
	return 0;
}
