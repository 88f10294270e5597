/* The demo workload profiled by scripts/demo.sh: parse, hash, sort (libc qsort) and write out
 * records in rounds, so a flame graph shows user code, libc and kernel (write) frames. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 20000
#define NOINLINE __attribute__((noinline))

struct record { unsigned long key; char text[24]; };
static struct record recs[N];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE void parse_records(unsigned seed)
{
	for (int i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		recs[i].key = seed;
		for (int j = 0; j < 23; j++)
			recs[i].text[j] = 'a' + (char)((seed >> (j % 24)) % 26);
		recs[i].text[23] = 0;
	}
}

NOINLINE unsigned long hash_text(const char *s)
{
	unsigned long h = 1469598103934665603ul;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ul;
	return h;
}

NOINLINE void hash_records(void)
{
	for (int r = 0; r < 8; r++)
		for (int i = 0; i < N; i++)
			recs[i].key ^= hash_text(recs[i].text);
}

static int by_key(const void *a, const void *b)
{
	const struct record *x = a, *y = b;
	return (x->key > y->key) - (x->key < y->key);
}

NOINLINE void sort_records(void) { qsort(recs, N, sizeof(recs[0]), by_key); }

NOINLINE void write_records(int fd)
{
	for (int i = 0; i < N; i += 16)
		if (write(fd, &recs[i], 16 * sizeof(recs[0])) < 0)
			return;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	int fd = open("/dev/null", O_WRONLY);
	double end = now() + seconds;
	for (unsigned round = 1; now() < end; round++) {
		parse_records(round);
		hash_records();
		sort_records();
		write_records(fd);
	}
	close(fd);
	return 0;
}
