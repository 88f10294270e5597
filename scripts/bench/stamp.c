/* Prints CLOCK_MONOTONIC (ns) at its first instruction of main: exec-to-sampling latency probe. */
#include <stdio.h>
#include <time.h>
int main(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	printf("STAMP %lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	return 0;
}
