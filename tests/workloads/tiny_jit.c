/* A tiny JIT for the container tests: copies a hot loop into anonymous executable memory, writes
 * /tmp/perf-<its pid>.map naming it (as V8 or the JVM agents do), and runs it for SECONDS.
 * Built static, so it runs alone in a chroot; in a PID namespace its pid is small.
 *   tiny_jit [SECONDS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* long spin(long n): x = 0; do { x = x * 31 + n; } while (--n); return x; */
static const unsigned char SPIN[] = {
	0x31, 0xc0,             /* xor eax, eax */
	0x48, 0x6b, 0xc0, 0x1f, /* imul rax, rax, 31 */
	0x48, 0x01, 0xf8,       /* add rax, rdi */
	0x48, 0xff, 0xcf,       /* dec rdi */
	0x75, 0xf4,             /* jnz -12 (the imul) */
	0xc3,                   /* ret */
};

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return 1;
	memcpy(code, SPIN, sizeof(SPIN));
	char path[64];
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
	FILE *map = fopen(path, "w");
	if (!map)
		return 2;
	fprintf(map, "%lx %zx jitted_spin_for_bpfprof\n", (unsigned long)code, sizeof(SPIN));
	fclose(map);
	long (*spin)(long) = (long (*)(long))code;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double end = ts.tv_sec + ts.tv_nsec / 1e9 + seconds;
	volatile long sink = 0;
	do {
		sink += spin(1000000);
		clock_gettime(CLOCK_MONOTONIC, &ts);
	} while (ts.tv_sec + ts.tv_nsec / 1e9 < end);
	return 0;
}
