/* SPDX-License-Identifier: MIT */
#include "spawn.h"

#include <fcntl.h>
#include <unistd.h>

pid_t spawn_piped(const char *path, char *const argv[], int *to_child,
                  int *from_child)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) { /* exec at once: only async-signal-safe calls here */
        dup2(in[0], 0);  /* dup2 clears close-on-exec on 0 and 1 */
        dup2(out[1], 1);
        execv(path, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    *to_child = in[1];
    *from_child = out[0];
    return pid;
}
