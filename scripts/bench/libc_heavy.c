/* A workload that spends its time in libc, for `bpfprof record --lines` (scripts/bench/bench_lines.py):
 * formatting and parsing numbers, sorting, copying, searching and hashing strings, allocating.
 *
 *   libc_heavy SECONDS    runs for SECONDS of wall time, then prints the rounds it made
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile unsigned long sink;

static int by_value(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void round_of_libc(unsigned seed) {
    enum { N = 512 };
    char *words[N];
    char buf[64];
    for (int i = 0; i < N; i++) {  /* printf family, malloc */
        snprintf(buf, sizeof buf, "%08x-%.3f-%s", seed * 2654435761u + i, i / 7.0, i % 2 ? "odd" : "even");
        words[i] = strdup(buf);
    }
    qsort(words, N, sizeof words[0], by_value);  /* msort with a comparator calling strcmp */
    for (int i = 0; i < N; i++) {  /* strto*, string search */
        sink += strtoul(words[i], NULL, 16) + (unsigned long)strtod(strchr(words[i], '-') + 1, NULL);
        sink += strstr(words[i], "odd") != NULL;
    }
    char *big = malloc(1 << 16), *copy = malloc(1 << 16);
    memset(big, 'a' + seed % 26, 1 << 16);
    big[(1 << 16) - 1] = 0;
    for (int i = 0; i < 16; i++) {  /* memcpy, strlen */
        memcpy(copy, big, 1 << 16);
        sink += strlen(copy);
    }
    free(big);
    free(copy);
    for (int i = 0; i < N; i++)
        free(words[i]);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    double end = now() + seconds;
    unsigned long rounds = 0;
    while (now() < end)
        round_of_libc((unsigned)rounds++);
    printf("rounds %lu\n", rounds);
    return 0;
}
