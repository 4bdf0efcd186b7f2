/* SPDX-License-Identifier: MIT */
/* A child process of the tests' own, with its stdin and stdout on pipes. */
#ifndef COURIER_TEST_SPAWN_H
#define COURIER_TEST_SPAWN_H

#include <sys/types.h>

/* fork + execv(path, argv) with the child's stdin fed from *to_child and
 * its stdout read from *from_child (both close-on-exec in the parent's
 * other children). Returns the pid, or -1 (nothing left open). */
pid_t spawn_piped(const char *path, char *const argv[], int *to_child,
                  int *from_child);

#endif
