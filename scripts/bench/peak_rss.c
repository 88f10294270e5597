/* peak_rss OUT CMD [ARGS...]: run CMD and write its peak RSS in KiB (ru_maxrss) to the file OUT; exits
 * with CMD's status (128 + signal when killed by one).
 *
 * Why not wait4() on a child spawned from the benchmark's Python: Linux takes a process's ru_maxrss
 * over the memory it had before exec too, and a child that Python spawns (vfork, or fork) starts from
 * the parent's address space: a Python holding 90 MB gives every child it runs a peak of at least
 * 90 MB (measured here: /bin/true showed 214 MB from a parent of 214 MB, 14 MB from a small one). This
 * program forks from its own ~1 MB, so what it reports is the command's own peak (scripts/bench/).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: peak_rss OUT CMD [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak_rss: fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("peak_rss: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("peak_rss: wait4");
        return 2;
    }
    FILE *out = fopen(argv[1], "w");
    if (out == NULL || fprintf(out, "%ld\n", ru.ru_maxrss) < 0 || fclose(out) != 0) {
        perror("peak_rss: writing the result");
        return 2;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
